//! `chat`: P pairs, each a sender and a receiver, exchanging one-to-one
//! messages for `--duration`, flat out with `--window` messages in flight
//! per sender or paced to `--rate` messages/s in all. The receiver reads
//! each message's number and send time from its body; messages that never
//! arrive are lost, messages that arrive twice are duplicates. Messages
//! stamped before the pair started are an earlier run's (out of offline
//! storage: with stream management, what a closing session had not
//! acknowledged goes there); they are counted apart and not matched.
//!
//! With `--peer-domain`, the senders are users `first..first+P` of the
//! server under test and the receivers users of the same numbers on the
//! peer server, so every message goes over server-to-server federation.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use std::fmt::Write as _;

use super::{
    Ctx, Pace, Report, age, now_micros, ramp, read_stamp, require_all, sleep_until, stamp,
};
use crate::client::Session;
use crate::metrics::{histogram, latency_json};

/// How long after the end receivers wait for messages still in flight.
const DRAIN: Duration = Duration::from_secs(5);

struct Tally {
    sent: u64,
    received: u64,
    duplicates: u64,
    /// Stamped before the pair started: an earlier run's.
    earlier: u64,
    hist: Histogram<u64>,
}

pub async fn run(ctx: &Ctx, first: usize, pairs: usize, rate: f64) -> anyhow::Result<Report> {
    let (sessions, failed) = match &ctx.peer {
        None => ramp(ctx, first, pairs * 2, "<presence/>").await,
        Some(peer) => {
            let there = Ctx {
                target: peer.clone(),
                ..ctx.clone()
            };
            let ((senders, f1), (receivers, f2)) = tokio::join!(
                ramp(ctx, first, pairs, "<presence/>"),
                ramp(&there, first, pairs, "<presence/>"),
            );
            // Paired by user number, sender first, as the loop below takes them.
            let mut both: Vec<_> = senders
                .into_iter()
                .map(|(n, s)| (2 * n, s))
                .chain(receivers.into_iter().map(|(n, s)| (2 * n + 1, s)))
                .collect();
            both.sort_by_key(|(n, _)| *n);
            (both, f1 + f2)
        }
    };
    require_all("chat", failed, pairs * 2)?;
    let start = Instant::now();
    let end = start + ctx.duration();
    let per_pair = if rate > 0.0 { rate / pairs as f64 } else { 0.0 };
    let mut tasks = tokio::task::JoinSet::new();
    let mut it = sessions.into_iter().map(|(_, s)| s);
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        tasks.spawn(pair(ctx.clone(), a, b, per_pair, end));
    }
    let mut all = Tally {
        sent: 0,
        received: 0,
        duplicates: 0,
        earlier: 0,
        hist: histogram(),
    };
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(t) => {
                all.sent += t.sent;
                all.received += t.received;
                all.duplicates += t.duplicates;
                all.earlier += t.earlier;
                all.hist.add(&t.hist)?;
            }
            Err(e) => ctx.metrics.error(format!("chat task: {e}")),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mut r = Report::new();
    r.insert("pairs".into(), pairs.into());
    r.insert("window".into(), ctx.args.window.into());
    r.insert("warmup_seconds".into(), ctx.args.warmup.into());
    r.insert("target_rate".into(), rate.into());
    r.insert("seconds".into(), secs.into());
    r.insert("sent".into(), all.sent.into());
    r.insert("delivered".into(), all.received.into());
    r.insert("lost".into(), all.sent.saturating_sub(all.received).into());
    r.insert("duplicates".into(), all.duplicates.into());
    r.insert("from_earlier_runs".into(), all.earlier.into());
    r.insert(
        "delivered_per_second".into(),
        (all.received as f64 / secs.min(ctx.args.duration).max(1e-3)).into(),
    );
    r.insert("latency_us".into(), latency_json(&all.hist));
    Ok(r)
}

/// One sender and one receiver. Stops sending at `end`, then waits up to
/// `DRAIN` for what is still in flight. A broken connection ends the pair
/// and counts as an error; its missing messages count as lost.
async fn pair(ctx: Ctx, a: Session, mut b: Session, rate: f64, end: Instant) -> Tally {
    let to = b.bare().to_string();
    let mut writer = a;
    let window = ctx.args.window.max(1) as u64;
    let mut pace = Pace::new(rate);
    let mut t = Tally {
        sent: 0,
        received: 0,
        duplicates: 0,
        earlier: 0,
        hist: histogram(),
    };
    let mut seen = Vec::<u64>::new(); // a bit per message number
    let mut out = String::new();
    // Stamps before this (µs since the epoch) are warm-up: not in the result's latencies.
    let started = now_micros();
    let warm_until = started + (ctx.args.warmup.max(0.0) * 1e6) as u64;
    let m = &ctx.metrics;
    let drain_end = end + DRAIN;
    loop {
        let now = Instant::now();
        // Everything due goes out in one write, as a client with several
        // messages queued would send them.
        out.clear();
        let mut due = 0;
        while t.sent + due - t.received.min(t.sent) < window && now < end && pace.wait().is_none() {
            let n = t.sent + due;
            let _ = write!(
                out,
                "<message to='{to}' type='chat' id='c{n}'><body>{}</body></message>",
                stamp(n)
            );
            due += 1;
            pace.sent();
        }
        if due > 0 {
            if let Err(e) = writer.send(&out).await {
                m.error(format!("chat: send failed: {e}"));
                return t;
            }
            t.sent += due;
            m.sent(due);
        }
        if now >= end && t.received >= t.sent {
            break;
        }
        if now >= drain_end {
            break;
        }
        let wake = pace.wake(t.sent - t.received.min(t.sent) < window && Instant::now() < end);
        let raw = tokio::select! {
            r = b.reader.next_raw() => r,
            _ = sleep_until(wake) => continue,
            _ = tokio::time::sleep_until(drain_end.into()) => break,
        };
        let raw = match raw {
            Ok(raw) => raw,
            Err(e) => {
                m.error(format!("chat: receiver lost: {e}"));
                break;
            }
        };
        if let Some(pong) = b.reader.answer(&raw) {
            let _ = b.send(&pong).await;
            continue;
        }
        if !raw.starts_with(b"<message") {
            continue;
        }
        let Some((n, ts)) = read_stamp(&raw) else {
            continue;
        };
        if ts < started {
            t.earlier += 1;
            continue;
        }
        let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        if seen.len() <= word {
            seen.resize(word + 1, 0);
        }
        if seen[word] & bit != 0 {
            t.duplicates += 1;
            continue;
        }
        seen[word] |= bit;
        let lat = age(ts);
        if ts >= warm_until {
            let _ = t.hist.record(lat);
        }
        m.latency(lat);
        m.delivered(1);
        t.received += 1;
    }
    // The sender's own incoming side is never read: during a run it gets
    // no more than a few presences.
    ctx.metrics
        .sessions
        .fetch_sub(2, std::sync::atomic::Ordering::Relaxed);
    writer.close().await;
    b.close().await;
    t
}
