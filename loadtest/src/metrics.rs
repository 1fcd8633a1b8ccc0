//! Live counters shared by every task of a run, a sampler that turns them
//! into a per-second timeline and the live progress line, and CPU figures
//! for the generator and the server from /proc.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, up to a minute.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

#[derive(Default)]
pub struct Metrics {
    /// Sessions online now.
    pub sessions: AtomicI64,
    pub logins: AtomicU64,
    /// Stanzas the generator sent as load (not setup traffic).
    pub sent: AtomicU64,
    /// Load stanzas that arrived where they were meant to.
    pub delivered: AtomicU64,
    pub errors: AtomicU64,
    /// XEP-0198: sessions that enabled stream management, sessions
    /// resumed, and resumptions the server refused.
    pub sm_enabled: AtomicU64,
    pub sm_resumed: AtomicU64,
    pub sm_refused: AtomicU64,
    causes: Mutex<BTreeMap<String, u64>>,
    interval: Mutex<Option<Histogram<u64>>>,
}

impl Metrics {
    pub fn error(&self, cause: impl Into<String>) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut c = self.causes.lock().unwrap_or_else(|p| p.into_inner());
        *c.entry(cause.into()).or_default() += 1;
    }

    pub fn causes(&self) -> BTreeMap<String, u64> {
        self.causes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// One delivery's latency, for the timeline.
    pub fn latency(&self, micros: u64) {
        self.latencies([micros]);
    }

    /// Several deliveries' latencies, for the timeline, under one lock.
    pub fn latencies(&self, micros: impl IntoIterator<Item = u64>) {
        let mut h = self.interval.lock().unwrap_or_else(|p| p.into_inner());
        let h = h.get_or_insert_with(histogram);
        for us in micros {
            let _ = h.record(us.max(1));
        }
    }

    pub fn delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    fn take_interval(&self) -> Option<Histogram<u64>> {
        self.interval
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t: f64,
    pub sessions: i64,
    pub logins_per_s: f64,
    pub sent_per_s: f64,
    pub delivered_per_s: f64,
    pub errors: u64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub max_us: Option<u64>,
    pub server_rss_kib: Option<u64>,
}

/// Samples the metrics every second until stopped; prints the progress
/// line on stderr (rewritten in place on a terminal, a line every five
/// seconds otherwise).
pub struct Sampler {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

impl Sampler {
    pub fn start(m: std::sync::Arc<Metrics>, server_pid: Option<u32>) -> Sampler {
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let tty = std::io::stderr().is_terminal();
            let mut samples = Vec::new();
            let mut last = (0u64, 0u64, 0u64);
            let mut last_t = start;
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + Duration::from_secs(1),
                Duration::from_secs(1),
            );
            loop {
                let stopping = tokio::select! {
                    _ = tick.tick() => false,
                    _ = rx.changed() => true,
                };
                let now = Instant::now();
                let dt = now.duration_since(last_t).as_secs_f64().max(1e-3);
                last_t = now;
                let cur = (
                    m.logins.load(Ordering::Relaxed),
                    m.sent.load(Ordering::Relaxed),
                    m.delivered.load(Ordering::Relaxed),
                );
                let h = m.take_interval();
                let s = Sample {
                    t: now.duration_since(start).as_secs_f64(),
                    sessions: m.sessions.load(Ordering::Relaxed),
                    logins_per_s: (cur.0 - last.0) as f64 / dt,
                    sent_per_s: (cur.1 - last.1) as f64 / dt,
                    delivered_per_s: (cur.2 - last.2) as f64 / dt,
                    errors: m.errors.load(Ordering::Relaxed),
                    p50_us: h.as_ref().map(|h| h.value_at_quantile(0.5)),
                    p99_us: h.as_ref().map(|h| h.value_at_quantile(0.99)),
                    max_us: h.as_ref().map(|h| h.max()),
                    server_rss_kib: server_pid.and_then(rss_kib),
                };
                last = cur;
                let line = progress_line(&s);
                if tty {
                    eprint!("\r{line}\x1b[K");
                } else if samples.len() % 5 == 4 || stopping {
                    eprintln!("{line}");
                }
                let _ = std::io::stderr().flush();
                samples.push(s);
                if stopping {
                    if tty {
                        eprintln!();
                    }
                    return samples;
                }
            }
        });
        Sampler { stop, task }
    }

    pub async fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

fn progress_line(s: &Sample) -> String {
    let lat = match (s.p50_us, s.p99_us) {
        (Some(a), Some(b)) => format!("  p50 {}  p99 {}", fmt_us(a), fmt_us(b)),
        _ => String::new(),
    };
    format!(
        "[{:>5.0}s] sessions {:>6}  logins {:>7.0}/s  sent {:>8.0}/s  delivered {:>8.0}/s{lat}  errors {}",
        s.t, s.sessions, s.logins_per_s, s.sent_per_s, s.delivered_per_s, s.errors
    )
}

pub fn fmt_us(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else if us >= 1000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

/// A latency histogram as JSON, in microseconds.
pub fn latency_json(h: &Histogram<u64>) -> serde_json::Value {
    if h.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::json!({
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// User plus system CPU seconds of a process (`self` for this one).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may
    // itself contain spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
