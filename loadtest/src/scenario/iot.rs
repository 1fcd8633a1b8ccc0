//! `iot`: PubSub as a fleet's message bus (XEP-0060). D devices each
//! publish telemetry to a node of their own at `--publish-rate` per device;
//! W watchers each subscribe to `--nodes-per-watcher` of those nodes
//! (spread evenly, so every device has about W·K/D watchers). Reports
//! publishes/s, deliveries/s, the latency of every delivery and of each
//! item's last watcher, and the items lost (accepted but not delivered to
//! every watcher of its node) and duplicated (delivered twice to one).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::fanout::publish;
use super::{Ctx, Report, age, ramp, read_stamp, require_all};
use crate::client::{Session, condition};
use crate::metrics::{histogram, latency_json};

const DRAIN: Duration = Duration::from_secs(5);
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";

/// The watchers of device `d`'s node: watcher `w` takes nodes
/// `w·K .. w·K+K` (mod D).
fn nodes_of(w: usize, k: usize, devices: usize) -> impl Iterator<Item = usize> {
    (0..k.min(devices)).map(move |i| (w * k + i) % devices)
}

struct Tracker {
    /// Per device: how many watchers its node has.
    watchers: Vec<u32>,
    /// Per (device, item): watchers that have it so far.
    pending: Mutex<HashMap<(u32, u64), u32>>,
    all: Mutex<Histogram<u64>>,
    last: Mutex<Histogram<u64>>,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    metrics: Arc<crate::metrics::Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Tracker {
    fn receive(&self, device: u32, n: u64, ts: u64, seen: &mut HashMap<u32, Vec<u64>>) {
        if !super::first_sight(seen.entry(device).or_default(), n) {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let lat = age(ts);
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.metrics.delivered(1);
        self.metrics.latency(lat);
        let _ = lock(&self.all).record(lat);
        let want = self.watchers.get(device as usize).copied().unwrap_or(0);
        let done = {
            let mut p = lock(&self.pending);
            let c = p.entry((device, n)).or_insert(0);
            *c += 1;
            let done = *c >= want;
            if done {
                p.remove(&(device, n));
            }
            done
        };
        if done {
            let _ = lock(&self.last).record(lat);
        }
    }
}

/// The device index of an event's node (`iot-<run>-<d>`), from the raw
/// notification, whichever quotes the server writes.
fn device_of(raw: &[u8], prefix: &[u8]) -> Option<u32> {
    let at = memchr::memmem::find(raw, prefix)? + prefix.len();
    let end = raw[at..]
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(raw.len() - at);
    std::str::from_utf8(&raw[at..at + end]).ok()?.parse().ok()
}

async fn watch(
    ctx: Ctx,
    mut s: Session,
    prefix: Arc<Vec<u8>>,
    tracker: Arc<Tracker>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Session {
    let mut seen = HashMap::new();
    loop {
        let raw = tokio::select! {
            _ = stop.changed() => break,
            r = s.reader.next_raw() => r,
        };
        match raw {
            Ok(raw) => {
                if let Some(pong) = s.reader.answer(&raw) {
                    let _ = s.send(&pong).await;
                } else if raw.starts_with(b"<message")
                    && let (Some(d), Some((n, ts))) = (device_of(&raw, &prefix), read_stamp(&raw))
                {
                    tracker.receive(d, n, ts, &mut seen);
                }
            }
            Err(e) => {
                ctx.metrics.error(format!("iot: watcher lost: {e}"));
                break;
            }
        }
    }
    s
}

async fn iq(s: &mut Session, iq: String, id: &str) -> anyhow::Result<()> {
    let reply = tokio::time::timeout(SETUP_TIMEOUT, s.request(&iq, id, |_| {}))
        .await
        .map_err(|_| anyhow::anyhow!("no answer to {id}"))??;
    if reply.attr("type") != Some("result") {
        anyhow::bail!("{id}: {}", condition(&reply));
    }
    Ok(())
}

pub async fn run(
    ctx: &Ctx,
    first: usize,
    devices: usize,
    watchers: usize,
    per_watcher: usize,
    rate: f64,
) -> anyhow::Result<Report> {
    let devices = devices.max(1);
    let (mut sessions, failed) = ramp(ctx, first, devices + watchers, "<presence/>").await;
    require_all("iot", failed, devices + watchers)?;
    let service = ctx
        .args
        .pubsub_service
        .clone()
        .unwrap_or_else(|| format!("pubsub.{}", ctx.args.domain));
    let run = format!("iot-{}-", std::process::id());
    let watcher_sessions = sessions.split_off(devices);
    let t0 = Instant::now();

    // Each device creates its node.
    let mut set = tokio::task::JoinSet::new();
    for (d, (_, mut s)) in sessions.into_iter().enumerate() {
        let (service, node) = (service.clone(), format!("{run}{d}"));
        set.spawn(async move {
            let create = format!(
                "<iq type='set' to='{service}' id='create'><pubsub xmlns='{PUBSUB}'><create node='{node}'/></pubsub></iq>"
            );
            iq(&mut s, create, "create").await?;
            anyhow::Ok((d, s))
        });
    }
    let mut device_sessions = Vec::with_capacity(devices);
    while let Some(r) = set.join_next().await {
        device_sessions.push(r??);
    }
    device_sessions.sort_by_key(|(d, _)| *d);

    // Each watcher subscribes to its nodes, a window of requests at a time.
    let mut counts = vec![0u32; devices];
    for w in 0..watchers {
        for d in nodes_of(w, per_watcher, devices) {
            counts[d] += 1;
        }
    }
    let window = ctx.args.window.max(1);
    let mut set = tokio::task::JoinSet::new();
    for (w, (_, mut s)) in watcher_sessions.into_iter().enumerate() {
        let (service, run) = (service.clone(), run.clone());
        set.spawn(async move {
            let nodes: Vec<usize> = nodes_of(w, per_watcher, devices).collect();
            for chunk in nodes.chunks(window) {
                for (i, d) in chunk.iter().enumerate() {
                    let sub = format!(
                        "<iq type='set' to='{service}' id='s{i}'><pubsub xmlns='{PUBSUB}'><subscribe node='{run}{d}' jid='{}'/></pubsub></iq>",
                        s.jid
                    );
                    s.send(&sub).await?;
                }
                // The answers come in any order (the nodes live on
                // different shards).
                let mut answered = 0;
                while answered < chunk.len() {
                    let raw = tokio::time::timeout(SETUP_TIMEOUT, s.reader.next_raw())
                        .await
                        .map_err(|_| anyhow::anyhow!("no answer to a subscription"))??;
                    if let Some(pong) = s.reader.answer(&raw) {
                        s.send(&pong).await?;
                        continue;
                    }
                    if !raw.starts_with(b"<iq") {
                        continue;
                    }
                    let e = s.reader.parse(&raw)?;
                    if !e.attr("id").is_some_and(|id| id.starts_with('s')) {
                        continue;
                    }
                    if e.attr("type") != Some("result") {
                        anyhow::bail!("subscribing: {}", condition(&e));
                    }
                    answered += 1;
                }
            }
            anyhow::Ok(s)
        });
    }
    let mut watching = Vec::with_capacity(watchers);
    while let Some(r) = set.join_next().await {
        watching.push(r??);
    }
    let setup_secs = t0.elapsed().as_secs_f64();

    let tracker = Arc::new(Tracker {
        watchers: counts.clone(),
        pending: Mutex::default(),
        all: Mutex::new(histogram()),
        last: Mutex::new(histogram()),
        delivered: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        metrics: ctx.metrics.clone(),
    });
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let prefix = Arc::new(run.clone().into_bytes());
    let mut readers = tokio::task::JoinSet::new();
    for s in watching {
        readers.spawn(watch(
            ctx.clone(),
            s,
            prefix.clone(),
            tracker.clone(),
            stop_rx.clone(),
        ));
    }
    let start = Instant::now();
    let end = start + ctx.duration();
    let mut publishers = tokio::task::JoinSet::new();
    for (d, s) in device_sessions {
        let (ctx, service, node) = (ctx.clone(), service.clone(), format!("{run}{d}"));
        // Devices tick out of step, as real ones do: device d starts d/D
        // of a period late, rather than all publishing at the same instant.
        let phase = if rate > 0.0 {
            Duration::from_secs_f64(d as f64 / devices as f64 / rate)
        } else {
            Duration::ZERO
        };
        publishers.spawn(async move {
            tokio::time::sleep(phase).await;
            let (ok, refused, s) = publish(&ctx, s, &service, &node, rate, end).await;
            (d, ok, refused, s)
        });
    }
    let mut published = vec![0u64; devices];
    let mut refused = 0u64;
    let mut done = Vec::new();
    let mut owners = Vec::new();
    while let Some(r) = publishers.join_next().await {
        if let Ok((d, ok, re, s)) = r {
            published[d] = ok;
            refused += re;
            owners.push((d, s));
        }
    }
    let publish_secs = start.elapsed().as_secs_f64();
    let expected: u64 = published
        .iter()
        .zip(&counts)
        .map(|(p, c)| p * *c as u64)
        .sum();
    let until = Instant::now() + DRAIN;
    while tracker.delivered.load(Ordering::Relaxed) < expected && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    while let Some(r) = readers.join_next().await {
        if let Ok(s) = r {
            done.push(s);
        }
    }
    // Leave nothing behind: each device deletes its node.
    let mut set = tokio::task::JoinSet::new();
    for (d, mut s) in owners {
        let (service, node) = (service.clone(), format!("{run}{d}"));
        set.spawn(async move {
            let delete = format!(
                "<iq type='set' to='{service}' id='delete'><pubsub xmlns='{PUBSUB}#owner'><delete node='{node}'/></pubsub></iq>"
            );
            let _ =
                tokio::time::timeout(Duration::from_secs(5), s.request(&delete, "delete", |_| {}))
                    .await;
            s
        });
    }
    while let Some(r) = set.join_next().await {
        if let Ok(s) = r {
            done.push(s);
        }
    }
    for s in done {
        ctx.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
        s.close().await;
    }
    let total: u64 = published.iter().sum();
    let delivered = tracker.delivered.load(Ordering::Relaxed);
    let duration = ctx.args.duration.max(1e-3);
    let mut r = Report::new();
    r.insert("service".into(), service.into());
    r.insert("devices".into(), devices.into());
    r.insert("watchers".into(), watchers.into());
    r.insert("nodes_per_watcher".into(), per_watcher.min(devices).into());
    r.insert("setup_seconds".into(), setup_secs.into());
    r.insert("publish_seconds".into(), publish_secs.into());
    r.insert("published".into(), total.into());
    r.insert("publishes_refused".into(), refused.into());
    r.insert("expected_deliveries".into(), expected.into());
    r.insert("delivered".into(), delivered.into());
    r.insert("lost".into(), expected.saturating_sub(delivered).into());
    r.insert(
        "duplicates".into(),
        tracker.duplicates.load(Ordering::Relaxed).into(),
    );
    r.insert(
        "publishes_per_second".into(),
        (total as f64 / duration).into(),
    );
    r.insert(
        "delivered_per_second".into(),
        (delivered as f64 / duration).into(),
    );
    r.insert("latency_us".into(), latency_json(&lock(&tracker.all)));
    r.insert("last_watcher_us".into(), latency_json(&lock(&tracker.last)));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_spread_over_devices() {
        let (devices, watchers, k) = (10, 5, 4);
        let mut counts = vec![0; devices];
        for w in 0..watchers {
            for d in nodes_of(w, k, devices) {
                counts[d] += 1;
            }
        }
        assert_eq!(counts.iter().sum::<usize>(), watchers * k);
        assert!(counts.iter().all(|c| *c == 2));
    }

    #[test]
    fn the_device_is_read_from_either_quote() {
        let p = b"iot-7-";
        assert_eq!(device_of(b"<items node='iot-7-42'>", p), Some(42));
        assert_eq!(device_of(b"<items node=\"iot-7-3\">", p), Some(3));
        assert_eq!(device_of(b"<items node='other'>", p), None);
    }
}
