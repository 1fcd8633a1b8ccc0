//! `presence`: users in groups of K+1 who are all each other's contacts
//! (mutual subscriptions, RFC 6121 §3, set up by the harness itself through
//! the protocol). In each group, half the users stay online and watch; the
//! others churn: log out with an unavailable presence, log in again with an
//! available one, every `--churn-interval` seconds. Each churner presence
//! carries a stamp, and every watcher of its group must receive it: the
//! watchers' count is checked against what the churners sent. Presence
//! stanzas delivered per second counts everything any session received.
//!
//! With `--csi-inactive` the watchers say they are inactive (XEP-0352)
//! once the rosters are set up, and active again when the churners stop:
//! a server that holds presence back for inactive clients delivers each
//! contact's latest only, so the report counts what the watchers got and
//! what was superseded (never delivered, by design) rather than lost.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use proto::Element;

use super::{Ctx, Report, age, login, ramp, read_stamp, require_all, stamp};
use crate::client::Session;
use crate::metrics::{histogram, latency_json};

const DRAIN: Duration = Duration::from_secs(3);
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn run(
    ctx: &Ctx,
    first: usize,
    users: usize,
    contacts: usize,
    churn_interval: f64,
    csi: bool,
) -> anyhow::Result<Report> {
    let size = contacts.max(1) + 1;
    let groups = users / size;
    if groups == 0 {
        anyhow::bail!("presence needs at least {size} users for {contacts} contacts each");
    }
    let n = groups * size;
    let watchers = size.div_ceil(2);
    let (sessions, failed) = ramp(ctx, first, n, "<presence/>").await;
    require_all("presence", failed, n)?;
    let t0 = Instant::now();
    let sessions = befriend(ctx, first, size, sessions).await?;
    let setup_secs = t0.elapsed().as_secs_f64();

    let events: Arc<Vec<AtomicU64>> = Arc::new((0..groups).map(|_| AtomicU64::new(0)).collect());
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    // The churners have stopped: inactive watchers become active.
    let (wake, wake_rx) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let end = start + ctx.duration();
    let interval = Duration::from_secs_f64(churn_interval.max(0.05));
    let mut watching = tokio::task::JoinSet::new();
    let mut churning = tokio::task::JoinSet::new();
    for (user, s) in sessions {
        let idx = user - first;
        let (group, pos) = (idx / size, idx % size);
        if pos < watchers {
            let churners: HashSet<String> = (watchers..size)
                .map(|p| ctx.bare(first + group * size + p).to_lowercase())
                .collect();
            watching.spawn(watch(
                ctx.clone(),
                s,
                churners,
                delivered.clone(),
                csi.then(|| wake_rx.clone()),
                stop_rx.clone(),
            ));
        } else {
            let ev = events.clone();
            let d = delivered.clone();
            churning.spawn(churn(ctx.clone(), user, s, group, ev, d, interval, end));
        }
    }
    let mut leftover = Vec::new();
    while let Some(r) = churning.join_next().await {
        if let Ok(Some(s)) = r {
            leftover.push(s);
        }
    }
    let _ = wake.send(true);
    tokio::time::sleep(DRAIN).await;
    let _ = stop.send(true);
    let mut hist = histogram();
    let mut received = 0u64;
    while let Some(r) = watching.join_next().await {
        if let Ok((got, h)) = r {
            received += got;
            hist.add(&h)?;
        }
    }
    for s in leftover {
        ctx.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
        s.close().await;
    }
    let sent: u64 = events.iter().map(|e| e.load(Ordering::Relaxed)).sum();
    let expected = sent * watchers as u64;
    let all = delivered.load(Ordering::Relaxed);
    let mut r = Report::new();
    r.insert("users".into(), n.into());
    r.insert("contacts".into(), (size - 1).into());
    r.insert("watchers_per_group".into(), watchers.into());
    r.insert("churners_per_group".into(), (size - watchers).into());
    r.insert("roster_setup_seconds".into(), setup_secs.into());
    r.insert("churn_presences_sent".into(), sent.into());
    r.insert("expected_at_watchers".into(), expected.into());
    r.insert("received_at_watchers".into(), received.into());
    r.insert("csi_inactive".into(), csi.into());
    if csi {
        // Held back and replaced by a newer presence of the same
        // resource: not delivered, and not a loss.
        r.insert(
            "superseded_at_watchers".into(),
            expected.saturating_sub(received).into(),
        );
    } else {
        r.insert("lost".into(), expected.saturating_sub(received).into());
    }
    r.insert(
        "duplicates".into(),
        received.saturating_sub(expected).into(),
    );
    r.insert("presence_delivered".into(), all.into());
    r.insert(
        "presence_delivered_per_second".into(),
        (all as f64 / ctx.args.duration.max(1e-3)).into(),
    );
    r.insert(
        "logins_per_second".into(),
        ((sent / 2) as f64 / ctx.args.duration.max(1e-3)).into(),
    );
    r.insert("latency_us".into(), latency_json(&hist));
    Ok(r)
}

/// Make everyone in each group a mutual contact of everyone else in it:
/// ask for a subscription where there is none, approve every request, and
/// wait until every roster shows `both` for all the group.
async fn befriend(
    ctx: &Ctx,
    first: usize,
    size: usize,
    sessions: Vec<(usize, Session)>,
) -> anyhow::Result<Vec<(usize, Session)>> {
    let total = sessions.len();
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let mut set = tokio::task::JoinSet::new();
    for (user, s) in sessions {
        let group = (user - first) / size;
        let mates: Vec<String> = (0..size)
            .map(|p| first + group * size + p)
            .filter(|&u| u != user)
            .map(|u| ctx.bare(u).to_lowercase())
            .collect();
        let done = done.clone();
        set.spawn(async move {
            befriend_one(s, mates, done, total, deadline)
                .await
                .map(|s| (user, s))
        });
    }
    let mut out = Vec::with_capacity(total);
    while let Some(r) = set.join_next().await {
        out.push(r??);
    }
    out.sort_by_key(|(u, _)| *u);
    Ok(out)
}

async fn befriend_one(
    mut s: Session,
    mates: Vec<String>,
    done: Arc<AtomicUsize>,
    total: usize,
    deadline: Instant,
) -> anyhow::Result<Session> {
    // contact -> subscription state as the server last told us
    let mut subs: HashMap<String, String> = HashMap::new();
    let mut asked = HashSet::new();
    let mut counted = false;
    s.send("<iq type='get' id='roster-setup'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    let mut have_roster = false;
    loop {
        let mine = have_roster
            && mates
                .iter()
                .all(|m| subs.get(m).map(String::as_str) == Some("both"));
        if mine && !counted {
            counted = true;
            done.fetch_add(1, Ordering::SeqCst);
        }
        if done.load(Ordering::SeqCst) >= total {
            return Ok(s);
        }
        if Instant::now() >= deadline {
            let ok = mates
                .iter()
                .filter(|m| subs.get(*m).map(String::as_str) == Some("both"))
                .count();
            anyhow::bail!(
                "roster setup timed out: {} has {ok} of {} mutual contacts",
                s.bare(),
                mates.len()
            );
        }
        if have_roster {
            for m in &mates {
                let state = subs.get(m).map(String::as_str).unwrap_or("none");
                if (state == "none" || state == "from") && asked.insert(m.clone()) {
                    s.send(&format!("<presence to='{m}' type='subscribe'/>"))
                        .await?;
                }
            }
        }
        let raw = match tokio::time::timeout(Duration::from_millis(200), s.reader.next_raw()).await
        {
            Ok(r) => r?,
            Err(_) => continue,
        };
        if let Some(pong) = s.reader.answer(&raw) {
            s.send(&pong).await?;
            continue;
        }
        let e = s.reader.parse(&raw)?;
        match e.name.as_str() {
            "presence" if e.attr("type") == Some("subscribe") => {
                let from = e.attr("from").unwrap_or_default();
                let bare = from.split('/').next().unwrap_or(from);
                s.send(&format!("<presence to='{bare}' type='subscribed'/>"))
                    .await?;
            }
            "iq" => {
                let Some(q) = e.child("query", "jabber:iq:roster") else {
                    continue;
                };
                if e.attr("type") == Some("set") {
                    let id = e.attr("id").unwrap_or_default();
                    s.send(&format!("<iq type='result' id='{id}'/>")).await?;
                } else if e.attr("id") == Some("roster-setup") {
                    have_roster = true;
                }
                for item in q.elements().filter(|i| i.name == "item") {
                    let jid = item.attr("jid").unwrap_or_default().to_lowercase();
                    let sub = item.attr("subscription").unwrap_or("none").to_string();
                    subs.insert(jid, sub);
                }
            }
            _ => {}
        }
    }
}

/// A watcher: counts every presence it gets, and the stamped ones from
/// its group's churners, until told to stop.
/// With `wake` (`--csi-inactive`), it is inactive (XEP-0352) until that
/// says the churners have stopped.
async fn watch(
    ctx: Ctx,
    mut s: Session,
    churners: HashSet<String>,
    delivered: Arc<AtomicU64>,
    mut wake: Option<tokio::sync::watch::Receiver<bool>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (u64, Histogram<u64>) {
    let mut hist = histogram();
    let mut got = 0u64;
    if wake.is_some()
        && let Err(e) = s.send("<inactive xmlns='urn:xmpp:csi:0'/>").await
    {
        ctx.metrics.error(format!("presence: watcher lost: {e}"));
    }
    loop {
        let woken = async {
            match wake.as_mut() {
                Some(w) => {
                    let _ = w.changed().await;
                }
                None => std::future::pending().await,
            }
        };
        let raw = tokio::select! {
            _ = stop.changed() => break,
            () = woken => {
                wake = None;
                let _ = s.send("<active xmlns='urn:xmpp:csi:0'/>").await;
                continue;
            }
            r = s.reader.next_raw() => r,
        };
        let raw = match raw {
            Ok(r) => r,
            Err(e) => {
                ctx.metrics.error(format!("presence: watcher lost: {e}"));
                break;
            }
        };
        if let Some(pong) = s.reader.answer(&raw) {
            let _ = s.send(&pong).await;
            continue;
        }
        if !raw.starts_with(b"<presence") {
            continue;
        }
        delivered.fetch_add(1, Ordering::Relaxed);
        ctx.metrics.delivered(1);
        let Some((_, ts)) = read_stamp(&raw) else {
            continue;
        };
        let Ok(e) = s.reader.parse(&raw) else {
            continue;
        };
        if from_bare(&e).is_some_and(|f| churners.contains(&f)) {
            got += 1;
            let lat = age(ts);
            let _ = hist.record(lat);
            ctx.metrics.latency(lat);
        }
    }
    ctx.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
    s.close().await;
    (got, hist)
}

fn from_bare(e: &Element) -> Option<String> {
    let from = e.attr("from")?;
    Some(from.split('/').next().unwrap_or(from).to_lowercase())
}

/// A churner: online for half an interval, then out for half, until the
/// end. Returns its session if it is online at the end.
#[allow(clippy::too_many_arguments)]
async fn churn(
    ctx: Ctx,
    user: usize,
    s: Session,
    group: usize,
    events: Arc<Vec<AtomicU64>>,
    delivered: Arc<AtomicU64>,
    interval: Duration,
    end: Instant,
) -> Option<Session> {
    let m = ctx.metrics.clone();
    let mut s = s;
    // Spread the churners over the interval (a golden-ratio sequence by
    // user number) rather than have them all leave at the same instant.
    let phase = (user as f64 * 0.618_033_988_75).fract();
    let mut online_for = interval.mul_f64(0.5 * phase.max(0.02));
    loop {
        // Online: read what arrives for half an interval.
        let until = (Instant::now() + online_for).min(end);
        online_for = interval / 2;
        loop {
            let raw = tokio::select! {
                r = s.reader.next_raw() => r,
                _ = tokio::time::sleep_until(until.into()) => break,
            };
            match raw {
                Ok(raw) => {
                    if let Some(pong) = s.reader.answer(&raw) {
                        let _ = s.send(&pong).await;
                    } else if raw.starts_with(b"<presence") {
                        delivered.fetch_add(1, Ordering::Relaxed);
                        m.delivered(1);
                    }
                }
                Err(e) => {
                    m.error(format!("presence: churner lost: {e}"));
                    m.sessions.fetch_sub(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
        if Instant::now() >= end {
            return Some(s);
        }
        let bye = format!(
            "<presence type='unavailable'><status>{}</status></presence>",
            stamp(0)
        );
        if let Err(e) = s.send(&bye).await {
            m.error(format!("presence: send failed: {e}"));
            m.sessions.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        events[group].fetch_add(1, Ordering::Relaxed);
        m.sent(1);
        m.sessions.fetch_sub(1, Ordering::Relaxed);
        s.close().await;
        tokio::time::sleep_until((Instant::now() + interval / 2).min(end).into()).await;
        if Instant::now() >= end {
            return None;
        }
        s = match login(&ctx, user, user, "").await {
            Ok(s) => s,
            Err(e) => {
                m.error(format!("presence: login: {e}"));
                return None;
            }
        };
        let hello = format!("<presence><status>{}</status></presence>", stamp(0));
        if let Err(e) = s.send(&hello).await {
            m.error(format!("presence: send failed: {e}"));
            m.sessions.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        events[group].fetch_add(1, Ordering::Relaxed);
        m.sent(1);
    }
}
