//! `xmpp-loadtest`: drive any XMPP server with many clients over real
//! sockets and report rates, latencies and the server's memory.
//!
//! Scenarios so far: `connect` (ramp to N sessions at a login rate, hold,
//! report RSS per session given the server's PID) and `chat` (P pairs
//! exchanging one-to-one messages flat out for a duration; delivered/s and
//! latency percentiles from timestamps carried in the messages). Every run
//! is bounded by counts and `--duration` and stops by itself.

mod client;
mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use client::{Session, Target, TlsMode};
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scenario {
    Connect,
    Chat,
}

#[derive(Debug, Parser)]
#[command(name = "xmpp-loadtest", about = "Load test an XMPP server")]
struct Args {
    #[arg(value_enum)]
    scenario: Scenario,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 5222)]
    port: u16,
    #[arg(long, default_value = "localhost")]
    domain: String,
    #[arg(long, value_enum, default_value = "starttls")]
    tls: TlsMode,
    #[arg(long, default_value = "SCRAM-SHA-256")]
    mechanism: String,
    /// Account names: `{n}` is replaced by the user number.
    #[arg(long, default_value = "load{n}")]
    user_pattern: String,
    #[arg(long, default_value = "loadtest-password")]
    password: String,
    /// Create accounts by in-band registration (XEP-0077) first.
    #[arg(long)]
    register: bool,
    /// Sessions for `connect`.
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Logins started per second.
    #[arg(long, default_value_t = 200.0)]
    login_rate: f64,
    /// Pairs for `chat`.
    #[arg(long, default_value_t = 10)]
    pairs: usize,
    /// Messages in flight per sender in `chat`.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Length of the measured phase, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// The server's PID, to read its memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Local source addresses to spread connections over (e.g. 127.0.0.2,127.0.0.3).
    #[arg(long, value_delimiter = ',')]
    sources: Vec<IpAddr>,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn user(args: &Args, n: usize) -> String {
    args.user_pattern.replace("{n}", &n.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .context("host and port")?;
    let target = Target {
        addr,
        domain: args.domain.clone(),
        tls: args.tls,
        mechanism: args.mechanism.clone(),
        register: args.register,
        tls_config: tls::insecure_client_config()?,
    };
    let report = match args.scenario {
        Scenario::Connect => connect(&args, &target).await?,
        Scenario::Chat => chat(&args, &target).await?,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

/// Log in `count` users at `rate` per second; failures are counted by cause.
async fn ramp(
    args: &Args,
    target: &Target,
    first: usize,
    count: usize,
) -> (Vec<Session>, Vec<String>, Duration) {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / args.login_rate.max(0.001));
        let t = target.clone();
        let name = user(args, first + i);
        let pw = args.password.clone();
        let source = (!args.sources.is_empty()).then(|| args.sources[i % args.sources.len()]);
        set.spawn(async move {
            tokio::time::sleep_until(due.into()).await;
            tokio::time::timeout(
                Duration::from_secs(60),
                client::login(&t, &name, &pw, "load", source),
            )
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("login timed out")))
        });
        if i % 1000 == 999 {
            eprint!("\rstarted {} logins", i + 1);
        }
    }
    let mut sessions = Vec::with_capacity(count);
    let mut failures = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(s)) => sessions.push(s),
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(e) => failures.push(e.to_string()),
        }
    }
    eprintln!();
    (sessions, failures, start.elapsed())
}

fn failure_counts(failures: &[String]) -> serde_json::Value {
    let mut m = std::collections::BTreeMap::<String, u64>::new();
    for f in failures {
        *m.entry(f.clone()).or_default() += 1;
    }
    serde_json::to_value(m).unwrap_or_default()
}

async fn connect(args: &Args, target: &Target) -> anyhow::Result<serde_json::Value> {
    let before = args.server_pid.and_then(rss_kib);
    let (sessions, failures, took) = ramp(args, target, 0, args.sessions).await;
    // Let the server settle before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = args.server_pid.and_then(rss_kib);
    let hold = Duration::from_secs_f64(args.duration);
    tokio::time::sleep(hold).await;
    let per_session = match (before, after) {
        (Some(b), Some(a)) if !sessions.is_empty() => {
            Some((a.saturating_sub(b)) as f64 * 1024.0 / sessions.len() as f64)
        }
        _ => None,
    };
    Ok(serde_json::json!({
        "scenario": "connect",
        "sessions": sessions.len(),
        "failed": failures.len(),
        "failures": failure_counts(&failures),
        "login_seconds": took.as_secs_f64(),
        "logins_per_second": sessions.len() as f64 / took.as_secs_f64(),
        "server_rss_kib_before": before,
        "server_rss_kib_after": after,
        "server_bytes_per_session": per_session,
    }))
}

async fn chat(args: &Args, target: &Target) -> anyhow::Result<serde_json::Value> {
    let (mut sessions, failures, _) = ramp(args, target, 0, args.pairs * 2).await;
    if !failures.is_empty() {
        anyhow::bail!(
            "{} logins failed: {:?}",
            failures.len(),
            failure_counts(&failures)
        );
    }
    sessions.sort_by(|a, b| a.jid.cmp(&b.jid));
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let duration = Duration::from_secs_f64(args.duration);
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    let mut it = sessions.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        let to = b.jid.clone();
        let window = args.window.max(1);
        let (sent, received) = (sent.clone(), received.clone());
        tasks.spawn(pair(a, b, to, window, end, sent, received));
    }
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut lost = 0u64;
    while let Some(r) = tasks.join_next().await {
        let (h, l) = r??;
        hist.add(h)?;
        lost += l;
    }
    let secs = start.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    Ok(serde_json::json!({
        "scenario": "chat",
        "pairs": args.pairs,
        "window": args.window,
        "seconds": secs,
        "sent": sent.load(Ordering::Relaxed),
        "delivered": got,
        "lost": lost,
        "delivered_per_second": got as f64 / secs,
        "latency_us": {
            "p50": hist.value_at_quantile(0.5),
            "p90": hist.value_at_quantile(0.9),
            "p99": hist.value_at_quantile(0.99),
            "p999": hist.value_at_quantile(0.999),
            "max": hist.max(),
        },
    }))
}

/// One sender and one receiver: keep `window` messages in flight until
/// `end`, then wait for the rest. Returns the latency histogram and the
/// count of messages that never arrived.
async fn pair(
    a: Session,
    b: Session,
    to: String,
    window: usize,
    end: Instant,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
) -> anyhow::Result<(hdrhistogram::Histogram<u64>, u64)> {
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut writer = a.writer;
    let _keep = a.reader;
    let mut reader = b.reader;
    let mut next = 0u64;
    let mut seen = 0u64;
    let mut in_flight = 0usize;
    loop {
        while in_flight < window && Instant::now() < end {
            let m = format!(
                "<message to='{to}' type='chat' id='{next}'><body>{}</body></message>",
                now_micros()
            );
            writer.write_all(m.as_bytes()).await?;
            next += 1;
            in_flight += 1;
            sent.fetch_add(1, Ordering::Relaxed);
        }
        if in_flight == 0 {
            break;
        }
        let raw = match tokio::time::timeout(Duration::from_secs(5), reader.next_raw()).await {
            Ok(r) => r?,
            Err(_) => break,
        };
        if !raw.starts_with(b"<message") {
            continue;
        }
        let text = String::from_utf8_lossy(&raw);
        if let Some(ts) = text
            .split("<body>")
            .nth(1)
            .and_then(|b| b.split('<').next())
            .and_then(|t| t.parse::<u64>().ok())
        {
            let _ = hist.record(now_micros().saturating_sub(ts).max(1));
            seen += 1;
            in_flight -= 1;
            received.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok((hist, next - seen))
}
