//! `resume`: stream management's resumption (XEP-0198 §5) when an edge
//! of a cluster dies. R receivers log in to the first server (`--host`,
//! `--port`: the edge that will be killed) and enable stream management
//! with resumption; S senders log in to the second (the first of
//! `--also`) and send them chat messages at a steady `--rate` in all,
//! each receiver getting its own numbers 0, 1, 2, ... in order from one
//! sender. When a receiver's connection drops, it connects to the second
//! server, authenticates and resumes with the count of the stanzas it
//! took; the server sends again what came after those, and what came
//! while the session waited. At the end every receiver must have every
//! number sent to it: a number missing is lost (there must be none), one
//! seen twice is redelivered (XEP-0198 allows that; counted).
//!
//! Reported: each resumption's time from its own connection's drop, and
//! from the kill (whose time the script writes to `<ready-file>.killed`;
//! without it, the first drop here); the time until every dropped receiver
//! was resumed; resumptions refused (with the server's `<failed/>`) and
//! given up. `--ready-file` is written once everyone is logged in and the
//! senders start. A receiver reconnects at once (after up to
//! `--reconnect-jitter` seconds), at most `--reconnect-concurrency`
//! handshakes at a time in this process, trying again (every 0.1 s,
//! doubling to 2 s) until `--resume-timeout` has passed since its drop.
//!
//! Several processes may share one storm (one process holds only so many
//! sockets): each has senders and receivers of its own (`--first-user`),
//! so each checks its own receivers.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::{
    Ctx, Pace, Report, age, first_sight, now_micros, ramp_to, read_stamp, require_all, sleep_until,
    source, stamp,
};
use crate::client::{self, Needle, ResumeError, Session, contains};
use crate::metrics::{histogram, latency_json};

/// How long after the senders stop the receivers may take to get the
/// rest, unless some are still resuming.
const DRAIN: Duration = Duration::from_secs(10);
/// One attempt to reconnect and resume, at most.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// The pauses between a receiver's attempts.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(2);

/// A message from offline storage carries a delay stamp (XEP-0203); one
/// sent again by stream management does not.
static DELAY: Needle = Needle::new(|| memchr::memmem::Finder::new("urn:xmpp:delay"));
static ERROR: Needle = Needle::new(|| memchr::memmem::Finder::new("error"));

/// What the senders and receivers of this process share.
struct Shared {
    /// Per receiver: the messages sent to it so far (its next number).
    sent_to: Vec<AtomicU64>,
    /// Per receiver: the distinct numbers it has.
    got: Vec<AtomicU64>,
    /// Receivers between a drop and their resumption (or giving up).
    resuming: AtomicUsize,
    /// Handshakes of reconnecting receivers at once, at most.
    gate: tokio::sync::Semaphore,
    /// Per receiver: its bare JID.
    bare: Vec<String>,
}

/// How one receiver fared.
struct Outcome {
    /// A bit per message number received.
    seen: Vec<u64>,
    redelivered: u64,
    /// Stamped messages with a delay stamp: out of offline storage.
    offline: u64,
    /// The first of those, as received.
    offline_example: Option<String>,
    drops: u32,
    attempts: u32,
    /// Each resumption's end (`<resumed/>`), µs since the epoch, and its
    /// time from the drop before it, µs.
    resumed: Vec<(u64, u64)>,
    /// The first drop, µs since the epoch.
    first_drop: Option<u64>,
    /// The server's `<failed/>`, if it refused the resumption.
    refused: Option<String>,
    /// Why it stopped trying, if it did.
    gave_up: Option<String>,
    /// Whether it ends with a live session.
    online: bool,
    latency: Histogram<u64>,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            seen: Vec::new(),
            redelivered: 0,
            offline: 0,
            offline_example: None,
            drops: 0,
            attempts: 0,
            resumed: Vec::new(),
            first_drop: None,
            refused: None,
            gave_up: None,
            online: true,
            latency: histogram(),
        }
    }
}

/// Options of the storm.
#[derive(Clone, Copy)]
pub struct Storm {
    /// Since a drop, how long a receiver keeps trying.
    pub timeout: Duration,
    /// A receiver waits up to this long (at random) before reconnecting.
    pub jitter: Duration,
    /// Handshakes at once in this process.
    pub concurrency: usize,
}

pub async fn run(
    ctx: &Ctx,
    first: usize,
    senders: usize,
    receivers: usize,
    rate: f64,
    storm: Storm,
) -> anyhow::Result<Report> {
    if rate <= 0.0 {
        anyhow::bail!("resume sends at a steady rate: give --rate (messages per second in all)");
    }
    if senders == 0 || receivers == 0 {
        anyhow::bail!("resume needs --senders and --receivers");
    }
    let home = ctx.target.addrs[0];
    let away = *ctx.target.addrs.get(1).unwrap_or(&home);
    let (outgoing, failed) = ramp_to(ctx, first, senders, "<presence/>", Some(away)).await;
    require_all("sender", failed, senders)?;
    // The receivers always resume: stream management is on for them.
    let mut rctx = ctx.clone();
    rctx.target.sm = true;
    let (incoming, failed) =
        ramp_to(&rctx, first + senders, receivers, "<presence/>", Some(home)).await;
    require_all("receiver", failed, receivers)?;
    if let Some((_, s)) = incoming.iter().find(|(_, s)| s.sm_id.is_none()) {
        anyhow::bail!(
            "{} has stream management without resumption: the server offers none",
            s.jid
        );
    }
    let shared = Arc::new(Shared {
        sent_to: (0..receivers).map(|_| AtomicU64::new(0)).collect(),
        got: (0..receivers).map(|_| AtomicU64::new(0)).collect(),
        resuming: AtomicUsize::new(0),
        gate: tokio::sync::Semaphore::new(storm.concurrency.max(1)),
        bare: incoming.iter().map(|(_, s)| s.bare().to_string()).collect(),
    });
    if let Some(f) = &ctx.args.ready_file {
        std::fs::write(f, format!("{receivers} receivers, {senders} senders\n"))?;
    }

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let end = start + ctx.duration();
    // A reconnection registers nothing (the account is there).
    let mut again = rctx.clone();
    again.target.register = false;
    let mut receiving = tokio::task::JoinSet::new();
    for (i, (n, s)) in incoming.into_iter().enumerate() {
        receiving.spawn(receive(
            again.clone(),
            i,
            n,
            s,
            shared.clone(),
            stop_rx.clone(),
            away,
            storm,
        ));
    }
    let mut sending = tokio::task::JoinSet::new();
    for (j, (_, s)) in outgoing.into_iter().enumerate() {
        let mine: Vec<usize> = (j..receivers).step_by(senders).collect();
        sending.spawn(send(
            ctx.clone(),
            s,
            mine,
            shared.clone(),
            rate / senders as f64,
            end,
        ));
    }
    let mut left = Vec::new();
    while let Some(r) = sending.join_next().await {
        match r {
            Ok(Some(s)) => left.push(s),
            Ok(None) => {}
            Err(e) => ctx.metrics.error(format!("resume: sender task: {e}")),
        }
    }
    // Everyone gets the rest, or the time is up; receivers still
    // resuming may take until their own deadline.
    let soft = Instant::now() + DRAIN;
    let hard = Instant::now() + DRAIN.max(storm.timeout + ATTEMPT_TIMEOUT);
    loop {
        let resuming = shared.resuming.load(Ordering::Relaxed);
        let complete = shared
            .sent_to
            .iter()
            .zip(&shared.got)
            .all(|(s, g)| g.load(Ordering::Relaxed) >= s.load(Ordering::Relaxed));
        let now = Instant::now();
        if (complete || now >= soft) && resuming == 0 || now >= hard {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    let mut outcomes: Vec<(usize, Outcome)> = Vec::with_capacity(receivers);
    while let Some(r) = receiving.join_next().await {
        match r {
            Ok(o) => outcomes.push(o),
            Err(e) => ctx.metrics.error(format!("resume: receiver task: {e}")),
        }
    }
    outcomes.sort_by_key(|(i, _)| *i);
    for s in left {
        ctx.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
        s.close().await;
    }
    let kill = ctx
        .args
        .ready_file
        .as_ref()
        .and_then(|f| {
            let mut k = f.clone().into_os_string();
            k.push(".killed");
            std::fs::read_to_string(k).ok()
        })
        .and_then(|t| t.trim().parse::<f64>().ok())
        .map(|secs| (secs * 1e6) as u64);
    Ok(report(
        ctx,
        &shared,
        &outcomes,
        start.elapsed(),
        kill,
        senders,
        rate,
        storm,
    ))
}

#[allow(clippy::too_many_arguments)]
fn report(
    ctx: &Ctx,
    sh: &Shared,
    outcomes: &[(usize, Outcome)],
    took: Duration,
    kill: Option<u64>,
    senders: usize,
    rate: f64,
    storm: Storm,
) -> Report {
    let (mut sent, mut delivered, mut lost, mut gaps, mut unexpected) = (0, 0, 0, 0, 0);
    let (mut redelivered, mut offline, mut drops, mut dropped, mut attempts) = (0, 0, 0, 0, 0);
    let (mut refused, mut gave_up, mut not_resumed) = (0, 0, 0);
    let mut refused_example = None;
    let mut offline_examples = Vec::new();
    let mut gave_up_example = None;
    let mut latency = histogram();
    let mut first_drop: Option<u64> = None;
    let mut last_resumed: Option<u64> = None;
    let mut own = histogram();
    let mut each_own = Vec::new();
    let mut resumed = 0u64;
    for (i, o) in outcomes {
        let expected = sh.sent_to[*i].load(Ordering::Relaxed);
        let have = count_below(&o.seen, expected);
        let all: u64 = o.seen.iter().map(|w| u64::from(w.count_ones())).sum();
        sent += expected;
        delivered += have;
        lost += expected - have;
        gaps += u64::from(have < expected);
        unexpected += all - have;
        redelivered += o.redelivered;
        offline += o.offline;
        drops += u64::from(o.drops);
        dropped += u64::from(o.drops > 0);
        attempts += u64::from(o.attempts);
        refused += u64::from(o.refused.is_some());
        gave_up += u64::from(o.gave_up.is_some());
        not_resumed += u64::from(!o.online);
        if refused_example.is_none() {
            refused_example.clone_from(&o.refused);
        }
        if offline_examples.len() < 3
            && let Some(x) = &o.offline_example
        {
            offline_examples.push(serde_json::Value::from(x.as_str()));
        }
        if gave_up_example.is_none() {
            gave_up_example.clone_from(&o.gave_up);
        }
        let _ = latency.add(&o.latency);
        if let Some(t) = o.first_drop {
            first_drop = Some(first_drop.map_or(t, |f| f.min(t)));
        }
        for &(at, us) in &o.resumed {
            resumed += 1;
            last_resumed = Some(last_resumed.map_or(at, |l| l.max(at)));
            let _ = own.record(us.max(1));
            each_own.push(us);
        }
    }
    // From the kill, or from the first drop seen here.
    let origin = kill.or(first_drop);
    let mut since = histogram();
    let mut each_since = Vec::new();
    if let Some(k) = origin {
        for (_, o) in outcomes {
            if let Some(&(at, _)) = o.resumed.first() {
                let us = at.saturating_sub(k);
                let _ = since.record(us.max(1));
                each_since.push(us);
            }
        }
    }
    each_since.sort_unstable();
    each_own.sort_unstable();
    let all_resumed_after = match (origin, last_resumed) {
        (Some(k), Some(l)) if not_resumed == 0 => Some(l.saturating_sub(k) as f64 / 1e6),
        _ => None,
    };
    let mut r = Report::new();
    r.insert("receivers".into(), outcomes.len().into());
    r.insert("senders".into(), senders.into());
    r.insert("target_rate".into(), rate.into());
    r.insert("seconds".into(), took.as_secs_f64().into());
    r.insert("sent".into(), sent.into());
    r.insert("delivered".into(), delivered.into());
    r.insert("lost".into(), lost.into());
    r.insert("receivers_with_gaps".into(), gaps.into());
    r.insert("numbers_never_sent".into(), unexpected.into());
    r.insert("redelivered".into(), redelivered.into());
    r.insert("from_offline_storage".into(), offline.into());
    if !offline_examples.is_empty() {
        r.insert(
            "from_offline_storage_examples".into(),
            offline_examples.into(),
        );
    }
    r.insert("receivers_dropped".into(), dropped.into());
    r.insert("drops".into(), drops.into());
    r.insert("resumed".into(), resumed.into());
    r.insert("resume_refused".into(), refused.into());
    r.insert("resume_given_up".into(), gave_up.into());
    r.insert("not_resumed".into(), not_resumed.into());
    r.insert("resume_attempts".into(), attempts.into());
    r.insert("reconnect_concurrency".into(), storm.concurrency.into());
    r.insert(
        "reconnect_jitter_seconds".into(),
        storm.jitter.as_secs_f64().into(),
    );
    r.insert("kill_unix_us".into(), kill.into());
    r.insert("first_drop_unix_us".into(), first_drop.into());
    r.insert("last_resumed_unix_us".into(), last_resumed.into());
    r.insert("all_resumed_after_seconds".into(), all_resumed_after.into());
    r.insert(
        "measured_from".into(),
        match (kill, first_drop) {
            (Some(_), _) => "the kill",
            (None, Some(_)) => "the first drop here",
            (None, None) => "nothing dropped",
        }
        .into(),
    );
    r.insert("resumed_after_kill_us".into(), latency_json(&since));
    r.insert("drop_to_resumed_us".into(), latency_json(&own));
    if let Some(x) = refused_example {
        r.insert("resume_refused_example".into(), x.into());
    }
    if let Some(x) = gave_up_example {
        r.insert("resume_given_up_example".into(), x.into());
    }
    r.insert("latency_us".into(), latency_json(&latency));
    // Every receiver's time, for merging the processes of one storm.
    r.insert("each_resumed_after_kill_us".into(), each_since.into());
    r.insert("each_drop_to_resumed_us".into(), each_own.into());
    let _ = ctx;
    r
}

/// The bits set in `seen` below `n`.
fn count_below(seen: &[u64], n: u64) -> u64 {
    let full = (n / 64) as usize;
    let mut c: u64 = seen
        .iter()
        .take(full)
        .map(|w| u64::from(w.count_ones()))
        .sum();
    let rest = n % 64;
    if rest > 0
        && let Some(w) = seen.get(full)
    {
        c += u64::from((w & ((1u64 << rest) - 1)).count_ones());
    }
    c
}

/// A sender: `rate` messages a second, round its receivers `mine`, each
/// receiver's numbered from 0, until `end`. Returns its session unless it
/// was lost.
async fn send(
    ctx: Ctx,
    mut s: Session,
    mine: Vec<usize>,
    sh: Arc<Shared>,
    rate: f64,
    end: Instant,
) -> Option<Session> {
    let m = &ctx.metrics;
    let mut pace = Pace::new(rate);
    let mut next = 0usize;
    let mut out = String::new();
    let mut due = Vec::new();
    loop {
        let now = Instant::now();
        if now >= end || mine.is_empty() {
            return Some(s);
        }
        // Everything due goes out in one write.
        out.clear();
        due.clear();
        while pace.wait().is_none() && due.len() < 1000 {
            let r = mine[next % mine.len()];
            next += 1;
            // Counted as sent once written: a sender whose write fails
            // is lost, and the run fails anyway.
            let n = sh.sent_to[r].fetch_add(1, Ordering::Relaxed);
            let _ = write!(
                out,
                "<message to='{}' type='chat' id='r{r}-{n}'><body>{}</body></message>",
                sh.bare[r],
                stamp(n)
            );
            due.push(r);
            pace.sent();
        }
        if !due.is_empty() {
            if let Err(e) = s.send(&out).await {
                m.error(format!("resume: sender lost: {e}"));
                m.sessions.fetch_sub(1, Ordering::Relaxed);
                return None;
            }
            m.sent(due.len() as u64);
        }
        let raw = tokio::select! {
            r = s.reader.next_raw() => r,
            // Due already means now (a slow write may have taken the
            // time): waiting for a stanza instead would stop the sending.
            _ = sleep_until(pace.wake(true)) => continue,
            _ = tokio::time::sleep_until(end.into()) => continue,
        };
        match raw {
            Ok(raw) => {
                if let Some(a) = s.reader.answer(&raw) {
                    let _ = s.send(&a).await;
                } else if raw.starts_with(b"<message") && contains(&raw, &ERROR) {
                    m.error(format!(
                        "resume: a message came back: {}",
                        s.reader
                            .parse(&raw)
                            .map(|e| client::condition(&e))
                            .unwrap_or_default()
                    ));
                }
            }
            Err(e) => {
                m.error(format!("resume: sender lost: {e}"));
                m.sessions.fetch_sub(1, Ordering::Relaxed);
                return None;
            }
        }
    }
}

/// A receiver (the `i`th, user `n`): counts what it gets, and resumes
/// on `away` whenever its connection drops, until told to stop.
#[allow(clippy::too_many_arguments)]
async fn receive(
    ctx: Ctx,
    i: usize,
    n: usize,
    mut s: Session,
    sh: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    away: SocketAddr,
    storm: Storm,
) -> (usize, Outcome) {
    let m = ctx.metrics.clone();
    let mut o = Outcome::new();
    loop {
        let raw = tokio::select! {
            _ = stop.changed() => break,
            r = s.reader.next_raw() => r,
        };
        let raw = match raw {
            Ok(raw) => raw,
            Err(_) => {
                let dropped = Instant::now();
                o.drops += 1;
                o.first_drop.get_or_insert_with(now_micros);
                m.sessions.fetch_sub(1, Ordering::Relaxed);
                sh.resuming.fetch_add(1, Ordering::Relaxed);
                let r = reconnect(&ctx, i, n, s, &sh, &mut o, &mut stop, away, storm).await;
                sh.resuming.fetch_sub(1, Ordering::Relaxed);
                match r {
                    Some(new) => {
                        s = new;
                        o.resumed
                            .push((now_micros(), dropped.elapsed().as_micros() as u64));
                        m.sessions.fetch_add(1, Ordering::Relaxed);
                        m.sm_resumed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    None => {
                        o.online = false;
                        return (i, o);
                    }
                }
            }
        };
        if let Some(a) = s.reader.answer(&raw) {
            // A failed write shows in the next read.
            let _ = s.send(&a).await;
            continue;
        }
        if !raw.starts_with(b"<message") {
            continue;
        }
        let Some((num, ts)) = read_stamp(&raw) else {
            if contains(&raw, &ERROR) {
                m.error("resume: a receiver got a message error");
            }
            continue;
        };
        if contains(&raw, &DELAY) {
            o.offline += 1;
            if o.offline_example.is_none() {
                o.offline_example = Some(String::from_utf8_lossy(&raw).into_owned());
            }
            continue;
        }
        if first_sight(&mut o.seen, num) {
            let lat = age(ts);
            let _ = o.latency.record(lat);
            m.latency(lat);
            m.delivered(1);
            sh.got[i].fetch_add(1, Ordering::Relaxed);
        } else {
            o.redelivered += 1;
        }
    }
    m.sessions.fetch_sub(1, Ordering::Relaxed);
    s.close().await;
    (i, o)
}

/// Resume the session of `old` (whose connection is gone) on `away`:
/// the new session, or `None` when the server refused or the time ran
/// out (recorded in `o`).
#[allow(clippy::too_many_arguments)]
async fn reconnect(
    ctx: &Ctx,
    i: usize,
    n: usize,
    old: Session,
    sh: &Shared,
    o: &mut Outcome,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    away: SocketAddr,
    storm: Storm,
) -> Option<Session> {
    let m = &ctx.metrics;
    let h = old.reader.handled().unwrap_or(0);
    let (jid, previd) = (old.jid.clone(), old.sm_id.clone());
    // The dead connection's socket goes before a new one is opened.
    drop(old);
    let Some(previd) = previd else {
        o.gave_up = Some("no resumption id".into());
        return None;
    };
    let deadline = Instant::now() + storm.timeout;
    let mut rng = Jitter::new(n as u64 ^ now_micros());
    if !storm.jitter.is_zero() {
        tokio::time::sleep(storm.jitter.mul_f64(rng.unit())).await;
    }
    let user = ctx.user(n);
    let mut pause = FIRST_PAUSE;
    loop {
        let attempt = async {
            let _permit = sh.gate.acquire().await;
            tokio::time::timeout(
                ATTEMPT_TIMEOUT,
                client::resume(
                    &ctx.target,
                    away,
                    &user,
                    &ctx.args.password,
                    source(ctx, i),
                    &jid,
                    &previd,
                    h,
                ),
            )
            .await
        };
        o.attempts += 1;
        let last = tokio::select! {
            r = attempt => match r {
                Ok(Ok((s, _))) => return Some(s),
                Ok(Err(ResumeError::Refused(xml))) => {
                    m.sm_refused.fetch_add(1, Ordering::Relaxed);
                    m.error(format!("resume: refused: {xml}"));
                    o.refused = Some(format!("{jid} (h={h}, previd {previd}): {xml}"));
                    return None;
                }
                Ok(Err(ResumeError::Other(e))) => format!("{e:#}"),
                Err(_) => "an attempt timed out".to_string(),
            },
            _ = stop.changed() => {
                o.gave_up = Some("the run ended first".into());
                m.error("resume: the run ended before the resumption");
                return None;
            }
        };
        if Instant::now() + pause >= deadline {
            m.error("resume: gave up (--resume-timeout)");
            o.gave_up = Some(format!(
                "{} attempts in {:?}, the last: {last}",
                o.attempts, storm.timeout
            ));
            return None;
        }
        // Half the pause, plus up to as much again at random: the
        // receivers that failed together do not come back together.
        tokio::time::sleep(pause.mul_f64(0.5 + 0.5 * rng.unit())).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// A small random sequence (xorshift), enough to spread reconnections.
struct Jitter(u64);

impl Jitter {
    /// Seeds that differ in a few low bits (user numbers, a clock) give
    /// unrelated sequences: the seed is mixed first (SplitMix64's
    /// finaliser); xorshift's first outputs from a raw seed stay close.
    fn new(seed: u64) -> Jitter {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Jitter((z ^ (z >> 31)) | 1)
    }

    /// A number in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_below_a_count() {
        let mut seen = Vec::new();
        for n in [0, 1, 5, 63, 64, 65, 130] {
            first_sight(&mut seen, n);
        }
        assert_eq!(count_below(&seen, 0), 0);
        assert_eq!(count_below(&seen, 1), 1);
        assert_eq!(count_below(&seen, 6), 3);
        assert_eq!(count_below(&seen, 64), 4);
        assert_eq!(count_below(&seen, 66), 6);
        assert_eq!(count_below(&seen, 131), 7);
        assert_eq!(count_below(&seen, 10_000), 7);
    }

    #[test]
    fn jitter_stays_in_the_unit_interval() {
        let mut j = Jitter::new(42);
        for _ in 0..10_000 {
            let x = j.unit();
            assert!((0.0..1.0).contains(&x));
        }
    }

    /// Receivers seeded with their numbers and one clock reading waited
    /// nearly the same time: the first draw of each must spread evenly.
    #[test]
    fn first_draws_of_close_seeds_were_bunched() {
        let t = 1_796_139_164_176_058u64;
        let first: Vec<f64> = (0..10_000u64).map(|n| Jitter::new(n ^ t).unit()).collect();
        for q in [0.1, 0.25, 0.5, 0.75, 0.9] {
            let below = first.iter().filter(|&&x| x < q).count() as f64 / 10_000.0;
            assert!((below - q).abs() < 0.02, "{below} below {q}");
        }
    }
}
