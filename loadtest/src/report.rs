//! The end of a run: the verdict (what makes a run fail), the table on
//! stdout, and a self-contained HTML page with the summary and plots of
//! throughput, latency and sessions over time (inline SVG, no scripts).

use std::fmt::Write as _;

use serde_json::Value;

use crate::metrics::Sample;

/// Figures that must be zero for a run to pass.
const MUST_BE_ZERO: &[&str] = &[
    "lost",
    "duplicates",
    "failed_logins",
    "sessions_lost_during_hold",
    "publishes_refused",
    "resume_refused",
    "not_resumed",
];

/// Every reason the run failed: nonzero figures of `MUST_BE_ZERO`
/// anywhere in the result, and scenario errors.
pub fn problems(result: &Value, errors: u64) -> Vec<String> {
    let mut out = Vec::new();
    walk(result, "", &mut out);
    if errors > 0 {
        out.push(format!("{errors} errors"));
    }
    out
}

fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
    let Value::Object(m) = v else { return };
    for (k, v) in m {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match v {
            Value::Object(_) => walk(v, &p, out),
            Value::Number(n) if MUST_BE_ZERO.contains(&k.as_str()) && n.as_f64() != Some(0.0) => {
                out.push(format!("{p} = {n}"));
            }
            Value::String(s) if k == "error" => out.push(format!("{p}: {s}")),
            _ => {}
        }
    }
}

/// The longest array printed row by row.
const MAX_ROWS: usize = 20;

/// Flatten an object into dotted names and printable values.
pub fn rows(v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    flatten(v, "", &mut out);
    out
}

fn flatten(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(v, &p, out);
            }
        }
        // Rows of a short table (the checkpoints of `nodes`), numbered
        // from 1; long series (a timeline) are for the JSON and HTML.
        Value::Array(a) if a.len() <= MAX_ROWS => {
            for (i, v) in a.iter().enumerate() {
                flatten(v, &format!("{path}.{}", i + 1), out);
            }
        }
        Value::Array(_) => {}
        Value::Null => out.push((path.to_string(), "-".into())),
        Value::Number(n) => out.push((path.to_string(), number(n))),
        Value::String(s) => out.push((path.to_string(), s.clone())),
        Value::Bool(b) => out.push((path.to_string(), b.to_string())),
    }
}

fn number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_u64() {
        return i.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f.abs() >= 100.0 {
        format!("{f:.0}")
    } else {
        format!("{f:.2}")
    }
}

/// The table printed at the end of a run.
pub fn table(report: &Value) -> String {
    let mut s = String::new();
    let r = rows(report);
    let width = r
        .iter()
        .map(|(k, _)| k.chars().count())
        .filter(|&w| w <= 40)
        .max()
        .unwrap_or(0);
    for (k, v) in r {
        let _ = writeln!(s, "  {k:<width$}  {v}");
    }
    s
}

fn esc(s: &str) -> String {
    proto::element::escape(s).into_owned()
}

/// A self-contained HTML report.
pub fn html(title: &str, report: &Value, samples: &[Sample]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html><head><meta charset='utf-8'><title>{t}</title>\
<style>body{{font-family:sans-serif;margin:2em;max-width:960px}}\
table{{border-collapse:collapse}}td{{padding:2px 10px;border-bottom:1px solid #ddd}}\
td:last-child{{text-align:right;font-family:monospace}}\
.fail{{color:#b00;font-weight:bold}}.ok{{color:#070;font-weight:bold}}</style></head><body>\
<h1>{t}</h1>",
        t = esc(title)
    );
    let ok = report.get("ok").and_then(Value::as_bool).unwrap_or(false);
    let _ = write!(
        s,
        "<p class='{}'>{}</p>",
        if ok { "ok" } else { "fail" },
        if ok { "passed" } else { "FAILED" }
    );
    if let Some(Value::Array(p)) = report.get("problems")
        && !p.is_empty()
    {
        s.push_str("<ul>");
        for x in p {
            let _ = write!(s, "<li>{}</li>", esc(x.as_str().unwrap_or_default()));
        }
        s.push_str("</ul>");
    }
    let t = |v: &[Sample], f: fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
        v.iter().filter_map(|x| f(x).map(|y| (x.t, y))).collect()
    };
    s.push_str("<h2>Throughput</h2>");
    s.push_str(&chart(
        "stanzas/s",
        &[
            ("sent", "#1f77b4", t(samples, |x| Some(x.sent_per_s))),
            (
                "delivered",
                "#2ca02c",
                t(samples, |x| Some(x.delivered_per_s)),
            ),
            ("logins", "#ff7f0e", t(samples, |x| Some(x.logins_per_s))),
        ],
    ));
    s.push_str("<h2>Latency</h2>");
    s.push_str(&chart(
        "ms",
        &[
            (
                "p50",
                "#2ca02c",
                t(samples, |x| x.p50_us.map(|v| v as f64 / 1000.0)),
            ),
            (
                "p99",
                "#d62728",
                t(samples, |x| x.p99_us.map(|v| v as f64 / 1000.0)),
            ),
        ],
    ));
    s.push_str("<h2>Sessions and server memory</h2>");
    s.push_str(&chart(
        "sessions / MiB",
        &[
            (
                "sessions",
                "#1f77b4",
                t(samples, |x| Some(x.sessions as f64)),
            ),
            (
                "server RSS MiB",
                "#9467bd",
                t(samples, |x| x.server_rss_kib.map(|v| v as f64 / 1024.0)),
            ),
        ],
    ));
    s.push_str("<h2>Figures</h2><table>");
    let mut summary = report.clone();
    if let Value::Object(m) = &mut summary {
        m.remove("timeline");
    }
    for (k, v) in rows(&summary) {
        let _ = write!(s, "<tr><td>{}</td><td>{}</td></tr>", esc(&k), esc(&v));
    }
    s.push_str("</table></body></html>\n");
    s
}

/// A named, coloured line of (seconds, value) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// A line chart of several series sharing the x axis (seconds).
fn chart(unit: &str, series: &[Series<'_>]) -> String {
    const W: f64 = 860.0;
    const H: f64 = 260.0;
    const L: f64 = 70.0;
    const B: f64 = 30.0;
    let pts = series.iter().flat_map(|(_, _, p)| p.iter());
    let (mut xmax, mut ymax) = (1.0f64, 0.0f64);
    for &(x, y) in pts {
        xmax = xmax.max(x);
        ymax = ymax.max(y);
    }
    if ymax <= 0.0 {
        ymax = 1.0;
    }
    ymax *= 1.1;
    let sx = |x: f64| L + x / xmax * (W - L - 10.0);
    let sy = |y: f64| H - B - y / ymax * (H - B - 10.0);
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{}' font-size='11'>",
        H + 20.0
    );
    for i in 0..=4 {
        let y = ymax * i as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1='{L}' x2='{}' y1='{py}' y2='{py}' stroke='#eee'/><text x='{}' y='{}' text-anchor='end'>{}</text>",
            W - 10.0,
            L - 5.0,
            sy(y) + 4.0,
            short(y),
            py = sy(y)
        );
        let x = xmax * i as f64 / 4.0;
        let _ = write!(
            s,
            "<text x='{}' y='{}' text-anchor='middle'>{x:.0} s</text>",
            sx(x),
            H - B + 15.0
        );
    }
    let _ = write!(
        s,
        "<line x1='{L}' x2='{L}' y1='10' y2='{b}' stroke='#888'/><line x1='{L}' x2='{}' y1='{b}' y2='{b}' stroke='#888'/>\
<text x='12' y='{}' transform='rotate(-90 12 {})' text-anchor='middle'>{}</text>",
        W - 10.0,
        H / 2.0,
        H / 2.0,
        esc(unit),
        b = H - B
    );
    let mut lx = L;
    for (name, color, p) in series {
        if p.is_empty() {
            continue;
        }
        let path: Vec<String> = p
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            s,
            "<polyline fill='none' stroke='{color}' stroke-width='1.5' points='{}'/>\
<rect x='{lx}' y='{}' width='10' height='10' fill='{color}'/><text x='{}' y='{}'>{}</text>",
            path.join(" "),
            H + 6.0,
            lx + 14.0,
            H + 15.0,
            esc(name)
        );
        lx += 130.0;
    }
    s.push_str("</svg>");
    s
}

fn short(y: f64) -> String {
    if y >= 1_000_000.0 {
        format!("{:.1}M", y / 1_000_000.0)
    } else if y >= 10_000.0 {
        format!("{:.0}k", y / 1000.0)
    } else if y >= 10.0 {
        format!("{y:.0}")
    } else {
        format!("{y:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonzero_loss_anywhere_fails_the_run() {
        let v = serde_json::json!({"chat": {"lost": 3, "duplicates": 0}, "muc": {"error": "joining: item-not-found"}});
        let p = problems(&v, 2);
        assert_eq!(
            p,
            vec![
                "chat.lost = 3".to_string(),
                "muc.error: joining: item-not-found".to_string(),
                "2 errors".to_string()
            ]
        );
        assert!(problems(&serde_json::json!({"lost": 0, "sent": 5}), 0).is_empty());
    }

    #[test]
    fn tables_in_a_report_are_printed_row_by_row() {
        let v = serde_json::json!({"nodes": 20, "checkpoints": [{"nodes": 10, "p50": 0.5}, {"nodes": 20, "p50": 0.25}]});
        let t = table(&v);
        assert!(t.contains("checkpoints.1.nodes  10"), "{t}");
        assert!(t.contains("checkpoints.2.p50    0.25"), "{t}");
        let long = serde_json::json!({"timeline": vec![1; MAX_ROWS + 1]});
        assert!(table(&long).is_empty());
    }

    #[test]
    fn the_html_report_plots_every_series() {
        let samples: Vec<Sample> = (1..=3)
            .map(|i| Sample {
                t: i as f64,
                sessions: 10,
                logins_per_s: 0.0,
                sent_per_s: 100.0 * i as f64,
                delivered_per_s: 99.0,
                errors: 0,
                p50_us: Some(500),
                p99_us: Some(900),
                max_us: Some(1000),
                server_rss_kib: Some(2048),
            })
            .collect();
        let h = html(
            "chat <test>",
            &serde_json::json!({"ok": true, "sent": 300}),
            &samples,
        );
        assert!(h.contains("chat &lt;test&gt;"));
        assert_eq!(h.matches("<polyline").count(), 7);
        assert!(h.contains("<td>sent</td><td>300</td>"));
    }
}
