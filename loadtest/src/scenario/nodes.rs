//! `nodes`: many small PubSub nodes in one server (XEP-0060), the shape of
//! an IoT fleet whose every device keeps a node with its last few
//! readings. S sessions together create `--nodes` nodes, each with
//! `--items-per-node` items, keeping `--window` requests in flight per
//! session. At every tenth of the way the creation pauses and one session
//! retrieves one item by id from `--probes` nodes made earlier, one
//! request at a time: the retrieval latency at each node count shows
//! whether it stays flat as the count grows. Reports the creation rate,
//! and at each checkpoint the latency, the server's RSS and (with
//! `--server-data`) the size of its data directory.
//!
//! The nodes stay on the server: the run measures a full server, and
//! deleting a million nodes is a benchmark of its own.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Ctx, Report, ramp, require_all};
use crate::client::{Session, condition};
use crate::metrics::{histogram, latency_json, rss_kib};

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The name of node `k` of run `run`.
fn node_name(run: &str, k: u64) -> String {
    format!("{run}{k}")
}

/// What a request in flight was for: node `k`'s creation (`item` None)
/// or its item `item`.
#[derive(Clone, Copy)]
struct Step {
    k: u64,
    item: Option<u32>,
}

/// Session `s` of `sessions` creates its share of nodes `from..to` (every
/// `sessions`-th one) with `items` items each, `window` requests in flight.
async fn create_share(
    s: &mut Session,
    service: &str,
    run: &str,
    nodes: (u64, u64),
    stride: (u64, u64),
    items: u32,
    window: usize,
) -> anyhow::Result<u64> {
    let (from, to) = nodes;
    let (me, sessions) = stride;
    let mut next = from + (me + sessions - from % sessions) % sessions;
    let mut in_flight: HashMap<String, Step> = HashMap::new();
    let mut seq = 0u64;
    let mut created = 0u64;
    let mut ready: Vec<Step> = Vec::new();
    loop {
        // Fill the window: items of created nodes first, then new nodes.
        while in_flight.len() < window {
            let step = match ready.pop() {
                Some(s) => s,
                None if next < to => {
                    let s = Step {
                        k: next,
                        item: None,
                    };
                    next += sessions;
                    s
                }
                None => break,
            };
            seq += 1;
            let id = format!("n{seq}");
            let node = node_name(run, step.k);
            let body = match step.item {
                None => format!("<create node='{node}'/>"),
                Some(i) => format!(
                    "<publish node='{node}'><item id='i{i}'><reading xmlns='urn:example:meter'><v>{}</v></reading></item></publish>",
                    step.k * 31 + u64::from(i)
                ),
            };
            s.send(&format!(
                "<iq type='set' to='{service}' id='{id}'><pubsub xmlns='{PUBSUB}'>{body}</pubsub></iq>"
            ))
            .await?;
            in_flight.insert(id, step);
        }
        if in_flight.is_empty() {
            return Ok(created);
        }
        let raw = tokio::time::timeout(ANSWER_TIMEOUT, s.reader.next_raw())
            .await
            .map_err(|_| anyhow::anyhow!("no answer in {ANSWER_TIMEOUT:?}"))??;
        if let Some(pong) = s.reader.answer(&raw) {
            s.send(&pong).await?;
            continue;
        }
        if !raw.starts_with(b"<iq") {
            continue;
        }
        let e = s.reader.parse(&raw)?;
        let Some(step) = e.attr("id").and_then(|id| in_flight.remove(id)) else {
            continue;
        };
        if e.attr("type") != Some("result") {
            anyhow::bail!("node {}: {}", node_name(run, step.k), condition(&e));
        }
        let following = step.item.map_or(0, |i| i + 1);
        if following < items {
            ready.push(Step {
                k: step.k,
                item: Some(following),
            });
        } else {
            created += 1;
        }
    }
}

/// Retrieve one item by id from each of `probes` nodes below `made`, one
/// request at a time; the latencies in microseconds.
async fn probe(
    s: &mut Session,
    service: &str,
    run: &str,
    made: u64,
    probes: usize,
    items: u32,
    salt: u64,
) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    let mut h = histogram();
    if made == 0 || items == 0 {
        return Ok(h);
    }
    for p in 0..probes as u64 {
        // Spread over every node made so far (a fixed odd multiplier).
        let k = (p.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt) % made;
        let item = (p % u64::from(items)) as u32;
        let id = format!("g{p}");
        let iq = format!(
            "<iq type='get' to='{service}' id='{id}'><pubsub xmlns='{PUBSUB}'><items node='{}'><item id='i{item}'/></items></pubsub></iq>",
            node_name(run, k)
        );
        let t = Instant::now();
        let reply = tokio::time::timeout(ANSWER_TIMEOUT, s.request(&iq, &id, |_| {}))
            .await
            .map_err(|_| anyhow::anyhow!("no answer to a retrieval"))??;
        let us = t.elapsed().as_micros() as u64;
        let found = reply.to_xml("").contains(&format!("id='i{item}'"));
        if reply.attr("type") != Some("result") || !found {
            anyhow::bail!("retrieving {}: {}", node_name(run, k), condition(&reply));
        }
        let _ = h.record(us.max(1));
    }
    Ok(h)
}

/// The size in bytes of every file under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    ctx: &Ctx,
    first: usize,
    sessions: usize,
    nodes: u64,
    items: u32,
    probes: usize,
    checkpoints: u64,
) -> anyhow::Result<Report> {
    let sessions = sessions.max(1);
    let (logged_in, failed) = ramp(ctx, first, sessions, "<presence/>").await;
    require_all("nodes", failed, sessions)?;
    let mut sessions_v: Vec<Session> = logged_in.into_iter().map(|(_, s)| s).collect();
    let service = ctx
        .args
        .pubsub_service
        .clone()
        .unwrap_or_else(|| format!("pubsub.{}", ctx.args.domain));
    let run = format!("m{}-", std::process::id());
    let window = ctx.args.window.max(1);
    let checkpoints = checkpoints.clamp(1, nodes.max(1));
    let n = sessions_v.len() as u64;
    let t0 = Instant::now();
    let mut made = 0u64;
    let mut create_secs = 0.0;
    let mut table = Vec::new();
    for c in 1..=checkpoints {
        let to = nodes * c / checkpoints;
        let t = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for (i, mut s) in sessions_v.drain(..).enumerate() {
            let (service, run) = (service.clone(), run.clone());
            set.spawn(async move {
                let r = create_share(
                    &mut s,
                    &service,
                    &run,
                    (made, to),
                    (i as u64, n),
                    items,
                    window,
                )
                .await;
                (r, s)
            });
        }
        let mut made_now = 0;
        while let Some(r) = set.join_next().await {
            let (r, s) = r?;
            made_now += r?;
            sessions_v.push(s);
        }
        let secs = t.elapsed().as_secs_f64();
        create_secs += secs;
        made += made_now;
        ctx.metrics.delivered(made_now * (1 + u64::from(items)));
        let h = probe(&mut sessions_v[0], &service, &run, made, probes, items, c).await?;
        let rss = ctx.args.server_pid.and_then(rss_kib);
        let data = ctx
            .args
            .server_data
            .as_deref()
            .map(|d| dir_bytes(std::path::Path::new(d)));
        eprintln!(
            "nodes {made}: {:.0} nodes/s, retrieval p50 {} us p99 {} us, server RSS {} KiB, data {} bytes",
            made_now as f64 / secs.max(1e-6),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            rss.map_or("-".into(), |v| v.to_string()),
            data.map_or("-".into(), |v| v.to_string()),
        );
        let mut row = serde_json::Map::new();
        row.insert("nodes".into(), made.into());
        row.insert(
            "nodes_per_second".into(),
            (made_now as f64 / secs.max(1e-6)).into(),
        );
        row.insert("retrieval_us".into(), latency_json(&h));
        row.insert("server_rss_kib".into(), rss.into());
        row.insert("data_bytes".into(), data.into());
        table.push(serde_json::Value::Object(row));
    }
    for s in sessions_v {
        ctx.metrics
            .sessions
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        s.close().await;
    }
    let mut r = Report::new();
    r.insert("service".into(), service.into());
    r.insert("sessions".into(), n.into());
    r.insert("nodes".into(), made.into());
    r.insert("items_per_node".into(), items.into());
    r.insert("create_seconds".into(), create_secs.into());
    r.insert(
        "nodes_per_second".into(),
        (made as f64 / create_secs.max(1e-6)).into(),
    );
    r.insert(
        "requests_per_second".into(),
        ((made * (1 + u64::from(items))) as f64 / create_secs.max(1e-6)).into(),
    );
    r.insert("wall_seconds".into(), t0.elapsed().as_secs_f64().into());
    r.insert("checkpoints".into(), serde_json::Value::Array(table));
    Ok(r)
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_shares_of_the_sessions_cover_each_node_once() {
        // Session i of n starts at the first k >= from with k % n == i.
        let (from, n) = (7u64, 3u64);
        let firsts: Vec<u64> = (0..n).map(|me| from + (me + n - from % n) % n).collect();
        let mut firsts_mod: Vec<u64> = firsts.iter().map(|k| k % n).collect();
        firsts_mod.sort_unstable();
        assert_eq!(firsts_mod, [0, 1, 2]);
        assert!(firsts.iter().all(|k| (from..from + n).contains(k)));
    }
}
