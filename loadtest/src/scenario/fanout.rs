//! `muc` and `pubsub`: one sender, many recipients. In `muc`, R rooms of M
//! occupants each (XEP-0045), where the room's first occupant sends
//! groupchat messages and every occupant, the sender included, receives
//! them. In `pubsub`, one publisher and S subscribers of one node
//! (XEP-0060), with the publisher keeping `--window` publishes in flight.
//!
//! For each stanza the harness records the latency of its first and of its
//! last recipient. Rooms and nodes get names unique to the run, so nothing
//! left over from an earlier run interferes.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use memchr::memmem;

use super::{Ctx, Pace, Report, age, ramp, read_stamp, require_all, sleep_until, stamp};
use crate::client::{Needle, Session, condition, contains};
use crate::metrics::{Metrics, histogram, latency_json};

const DRAIN: Duration = Duration::from_secs(5);
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(120);
const MUC: &str = "http://jabber.org/protocol/muc";
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";

/// For a process that only receives (the sender is another process):
/// until `end`, or sooner once `<ready-file>.stop` exists.
async fn wait_until_told(ctx: &Ctx, end: Instant) {
    let stop_file = ctx.args.ready_file.as_ref().map(|f| {
        let mut f = f.clone().into_os_string();
        f.push(".stop");
        std::path::PathBuf::from(f)
    });
    while Instant::now() < end && !stop_file.as_ref().is_some_and(|f| f.exists()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Who got what: per stanza, how many recipients have it so far.
struct Tracker {
    recipients: u32,
    tally: Mutex<Tally>,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    metrics: Arc<Metrics>,
}

/// What a delivery updates besides the counters, behind one lock taken
/// once for all the deliveries of a read: a lock of its own for each of
/// these, taken for every delivery, was a share of the harness's CPU worth
/// cutting at a few hundred thousand deliveries a second.
struct Tally {
    pending: HashMap<u64, u32>,
    first: Histogram<u64>,
    last: Histogram<u64>,
    all: Histogram<u64>,
    /// Per stanza: the latency of its last recipient here.
    last_by_item: BTreeMap<u64, u64>,
}

/// One recipient's side: what it has had, to catch duplicates, and the
/// deliveries it has read but not yet recorded in the [`Tracker`] (those
/// of one read are recorded together, under one lock).
#[derive(Default)]
struct Inbox {
    seen: Vec<u64>,
    /// Stanza numbers and latencies.
    unrecorded: Vec<(u64, u64)>,
}

impl Inbox {
    /// Stanza `n`, sent at `ts`, is here (its latency is taken now).
    fn got(&mut self, tracker: &Tracker, n: u64, ts: u64) {
        if super::first_sight(&mut self.seen, n) {
            self.unrecorded.push((n, age(ts)));
        } else {
            tracker.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Tracker {
    fn new(recipients: usize, metrics: Arc<Metrics>) -> Tracker {
        Tracker {
            recipients: recipients as u32,
            tally: Mutex::new(Tally {
                pending: HashMap::new(),
                first: histogram(),
                last: histogram(),
                all: histogram(),
                last_by_item: BTreeMap::new(),
            }),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            metrics,
        }
    }

    /// Record the deliveries in `inbox`, to a recipient of `group`.
    fn record(&self, group: usize, inbox: &mut Inbox) {
        let got = &inbox.unrecorded;
        if got.is_empty() {
            return;
        }
        self.delivered
            .fetch_add(got.len() as u64, Ordering::Relaxed);
        self.metrics.delivered(got.len() as u64);
        self.metrics.latencies(got.iter().map(|&(_, lat)| lat));
        let mut t = lock(&self.tally);
        for &(n, lat) in got {
            let _ = t.all.record(lat);
            let key = ((group as u64) << 40) | n;
            let c = t.pending.entry(key).or_insert(0);
            *c += 1;
            let count = *c;
            if count >= self.recipients {
                t.pending.remove(&key);
            }
            if count == 1 {
                let _ = t.first.record(lat);
            }
            if count == self.recipients {
                let _ = t.last.record(lat);
                if group == 0 {
                    t.last_by_item.insert(n, lat);
                }
            }
        }
        drop(t);
        inbox.unrecorded.clear();
    }

    /// The report of a subscribers-only process: what it received, and
    /// for each stanza that reached every subscriber here the latency of
    /// the last; those that did not are listed with how many got them.
    fn report_items(&self, r: &mut Report) {
        r.insert(
            "delivered".into(),
            self.delivered.load(Ordering::Relaxed).into(),
        );
        r.insert(
            "duplicates".into(),
            self.duplicates.load(Ordering::Relaxed).into(),
        );
        let t = lock(&self.tally);
        r.insert("latency_us".into(), latency_json(&t.all));
        r.insert("last_recipient_us".into(), latency_json(&t.last));
        let complete: serde_json::Map<String, serde_json::Value> = t
            .last_by_item
            .iter()
            .map(|(n, us)| (n.to_string(), (*us).into()))
            .collect();
        r.insert("last_recipient_by_item_us".into(), complete.into());
        let partial: serde_json::Map<String, serde_json::Value> = t
            .pending
            .iter()
            .map(|(k, c)| ((k & ((1 << 40) - 1)).to_string(), (*c).into()))
            .collect();
        r.insert("incomplete_items".into(), partial.into());
    }

    fn report(&self, r: &mut Report, sent: u64) {
        let delivered = self.delivered.load(Ordering::Relaxed);
        let expected = sent * self.recipients as u64;
        r.insert("sent".into(), sent.into());
        r.insert("expected_deliveries".into(), expected.into());
        r.insert("delivered".into(), delivered.into());
        r.insert("lost".into(), expected.saturating_sub(delivered).into());
        r.insert(
            "duplicates".into(),
            self.duplicates.load(Ordering::Relaxed).into(),
        );
        let t = lock(&self.tally);
        r.insert("latency_us".into(), latency_json(&t.all));
        r.insert("first_recipient_us".into(), latency_json(&t.first));
        r.insert("last_recipient_us".into(), latency_json(&t.last));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A recipient: reads until told to stop, feeding stamped stanzas of the
/// kind `is_load` accepts to the tracker.
async fn receive(
    ctx: Ctx,
    mut s: Session,
    group: usize,
    tracker: Arc<Tracker>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    is_load: fn(&[u8]) -> bool,
) -> Session {
    let mut inbox = Inbox::default();
    // One wait for the stop for the whole run, not a new one per stanza.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        let raw = tokio::select! {
            _ = &mut stopped => break,
            r = s.reader.next_raw() => r,
        };
        let mut next = match raw {
            Ok(raw) => Some(raw),
            Err(e) => {
                ctx.metrics
                    .error(format!("{}: recipient lost: {e}", ctx.args.scenario_name()));
                break;
            }
        };
        // The rest of the same read too, then all of it is recorded.
        while let Some(raw) = next {
            if let Some(pong) = s.reader.answer(&raw) {
                let _ = s.send(&pong).await;
            } else if is_load(&raw)
                && let Some((n, ts)) = read_stamp(&raw)
            {
                inbox.got(&tracker, n, ts);
            }
            next = s.reader.buffered();
        }
        tracker.record(group, &mut inbox);
    }
    s
}

static GROUPCHAT: Needle = Needle::new(|| memmem::Finder::new("groupchat"));
static PUBSUB_EVENT: Needle = Needle::new(|| memmem::Finder::new("pubsub#event"));
static ERROR: Needle = Needle::new(|| memmem::Finder::new("error"));

fn is_groupchat(raw: &[u8]) -> bool {
    raw.starts_with(b"<message") && contains(raw, &GROUPCHAT)
}

fn is_pubsub_event(raw: &[u8]) -> bool {
    raw.starts_with(b"<message") && contains(raw, &PUBSUB_EVENT)
}

/// Wait until every recipient has had every one of the `sent` stanzas (or
/// `DRAIN` has passed), then stop them and collect their sessions. A
/// stanza that no recipient has seen yet is still to come: waiting only for
/// the ones partly delivered would stop too early.
async fn finish_recipients(
    tracker: &Tracker,
    sent: u64,
    stop: tokio::sync::watch::Sender<bool>,
    mut set: tokio::task::JoinSet<Session>,
) -> Vec<Session> {
    let until = Instant::now() + DRAIN;
    let expected = sent * tracker.recipients as u64;
    while tracker.delivered.load(Ordering::Relaxed) < expected && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(s) = r {
            out.push(s);
        }
    }
    out
}

// ---- MUC -----------------------------------------------------------------

pub async fn muc(
    ctx: &Ctx,
    first: usize,
    rooms: usize,
    occupants: usize,
    rate: f64,
) -> anyhow::Result<Report> {
    let occupants = occupants.max(1);
    let (sessions, failed) = ramp(ctx, first, rooms * occupants, "<presence/>").await;
    require_all("muc", failed, rooms * occupants)?;
    let service = ctx
        .args
        .muc_service
        .clone()
        .unwrap_or_else(|| format!("conference.{}", ctx.args.domain));
    let t0 = Instant::now();
    let mut setups = tokio::task::JoinSet::new();
    let mut it = sessions.into_iter();
    for r in 0..rooms {
        let members: Vec<Session> = it.by_ref().take(occupants).map(|(_, s)| s).collect();
        let room = format!("loadtest-{}-{r}@{service}", std::process::id());
        setups.spawn(async move {
            setup_room(room.clone(), members)
                .await
                .map(|m| (r, room, m))
        });
    }
    let mut prepared = Vec::new();
    while let Some(r) = setups.join_next().await {
        prepared.push(r??);
    }
    let setup_secs = t0.elapsed().as_secs_f64();

    let tracker = Arc::new(Tracker::new(occupants, ctx.metrics.clone()));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let end = start + ctx.duration();
    let mut senders = tokio::task::JoinSet::new();
    let mut recipients = tokio::task::JoinSet::new();
    for (r, room, mut members) in prepared {
        let owner = members.remove(0);
        for m in members {
            recipients.spawn(receive(
                ctx.clone(),
                m,
                r,
                tracker.clone(),
                stop_rx.clone(),
                is_groupchat,
            ));
        }
        senders.spawn(muc_sender(
            ctx.clone(),
            owner,
            r,
            room,
            rate / rooms as f64,
            end,
            tracker.clone(),
        ));
    }
    let mut sent = 0;
    let mut done = Vec::new();
    while let Some(r) = senders.join_next().await {
        if let Ok((n, s)) = r {
            sent += n;
            done.push(s);
        }
    }
    done.extend(finish_recipients(&tracker, sent, stop, recipients).await);
    for s in done {
        ctx.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
        s.close().await;
    }
    let mut r = Report::new();
    r.insert("service".into(), service.into());
    r.insert("rooms".into(), rooms.into());
    r.insert("occupants_per_room".into(), occupants.into());
    r.insert("setup_seconds".into(), setup_secs.into());
    tracker.report(&mut r, sent);
    r.insert(
        "delivered_per_second".into(),
        (tracker.delivered.load(Ordering::Relaxed) as f64 / ctx.args.duration.max(1e-3)).into(),
    );
    Ok(r)
}

/// Everyone joins `room`, the first creating it (and accepting the default
/// configuration if the service locks new rooms, XEP-0045 §10.1.2).
async fn setup_room(room: String, mut members: Vec<Session>) -> anyhow::Result<Vec<Session>> {
    let Some(owner) = members.first_mut() else {
        return Ok(members);
    };
    if join(owner, &room).await? {
        let iq = format!(
            "<iq type='set' to='{room}' id='instant'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
        );
        let reply = tokio::time::timeout(SETUP_TIMEOUT, owner.request(&iq, "instant", |_| {}))
            .await
            .map_err(|_| anyhow::anyhow!("no answer to the room configuration of {room}"))??;
        if reply.attr("type") != Some("result") {
            anyhow::bail!("configuring {room}: {}", condition(&reply));
        }
    }
    let mut set = tokio::task::JoinSet::new();
    let room = Arc::new(room);
    for (i, mut m) in members.drain(1..).enumerate() {
        let room = room.clone();
        set.spawn(async move { join(&mut m, &room).await.map(|_| (i, m)) });
    }
    let mut rest = Vec::new();
    while let Some(r) = set.join_next().await {
        rest.push(r??);
    }
    rest.sort_by_key(|(i, _)| *i);
    members.extend(rest.into_iter().map(|(_, m)| m));
    Ok(members)
}

/// Join a room under the user's name as nickname; true if this created it.
async fn join(s: &mut Session, room: &str) -> anyhow::Result<bool> {
    join_within(s, room, SETUP_TIMEOUT).await
}

/// [`join`], waiting up to `timeout` for the room's answer.
async fn join_within(s: &mut Session, room: &str, timeout: Duration) -> anyhow::Result<bool> {
    let nick = s.bare().split('@').next().unwrap_or("user").to_string();
    let me = format!("{room}/{nick}");
    s.send(&format!(
        "<presence to='{me}'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"
    ))
    .await?;
    let deadline = Instant::now() + timeout;
    loop {
        let raw = tokio::time::timeout_at(deadline.into(), s.reader.next_raw())
            .await
            .map_err(|_| anyhow::anyhow!("no answer from the MUC service when joining {room}"))??;
        if let Some(pong) = s.reader.answer(&raw) {
            s.send(&pong).await?;
            continue;
        }
        let e = s.reader.parse(&raw)?;
        if e.name != "presence" || !e.attr("from").is_some_and(|f| f.eq_ignore_ascii_case(&me)) {
            continue;
        }
        if e.attr("type") == Some("error") {
            anyhow::bail!("joining {room}: {}", condition(&e));
        }
        let codes: Vec<&str> = e
            .child("x", MUC_USER)
            .map(|x| {
                x.elements()
                    .filter(|c| c.name == "status")
                    .filter_map(|c| c.attr("code"))
                    .collect()
            })
            .unwrap_or_default();
        if codes.contains(&"110") || e.attr("type").is_none() {
            return Ok(codes.contains(&"201"));
        }
    }
}

async fn muc_sender(
    ctx: Ctx,
    mut s: Session,
    group: usize,
    room: String,
    rate: f64,
    end: Instant,
    tracker: Arc<Tracker>,
) -> (u64, Session) {
    let m = ctx.metrics.clone();
    let window = ctx.args.window.max(1) as u64;
    let mut pace = Pace::new(rate);
    let mut inbox = Inbox::default();
    let (mut sent, mut back) = (0u64, 0u64);
    let drain_end = end + DRAIN;
    let mut out = String::new();
    loop {
        let now = Instant::now();
        // The messages due now go out in one write (one TLS record, one
        // system call), each stamped as it is put in.
        let before = sent;
        out.clear();
        while sent - back.min(sent) < window && now < end && pace.wait().is_none() {
            let _ = write!(
                out,
                "<message to='{room}' type='groupchat'><body>{}</body></message>",
                stamp(sent)
            );
            sent += 1;
            pace.sent();
        }
        if sent > before {
            if let Err(e) = s.send(&out).await {
                m.error(format!("muc: send failed: {e}"));
                return (before, s);
            }
            m.sent(sent - before);
        }
        if (now >= end && back >= sent) || now >= drain_end {
            break;
        }
        let wake = pace.wake(sent - back.min(sent) < window && Instant::now() < end);
        let raw = tokio::select! {
            r = s.reader.next_raw() => r,
            _ = sleep_until(wake) => continue,
            _ = tokio::time::sleep_until(drain_end.into()) => break,
        };
        match raw {
            Ok(raw) => {
                if let Some(pong) = s.reader.answer(&raw) {
                    let _ = s.send(&pong).await;
                } else if is_groupchat(&raw)
                    && let Some((n, ts)) = read_stamp(&raw)
                {
                    inbox.got(&tracker, n, ts);
                    tracker.record(group, &mut inbox);
                    back += 1;
                } else if raw.starts_with(b"<message") && contains(&raw, &ERROR) {
                    m.error(format!(
                        "muc: message error: {}",
                        s.reader
                            .parse(&raw)
                            .map(|e| condition(&e))
                            .unwrap_or_default()
                    ));
                    back += 1;
                }
            }
            Err(e) => {
                m.error(format!("muc: sender lost: {e}"));
                break;
            }
        }
    }
    let nick = s.bare().split('@').next().unwrap_or("user").to_string();
    let _ = s
        .send(&format!(
            "<presence to='{room}/{nick}' type='unavailable'/>"
        ))
        .await;
    (sent, s)
}

// ---- MUC: one named room over several processes --------------------------

/// Which part of `muc` this process plays in a room named with
/// `--muc-room`, shared by several processes (one room beyond one
/// process's sockets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MucRole {
    /// Senders and occupants in this process, in `--rooms` rooms of its
    /// own.
    Both,
    /// Only the sender: creates the room (persistent, so that it outlives
    /// this process) if it is not there, and sends for `--duration`.
    Sender,
    /// Only occupants: they enter the room at `--join-rate`, each reading
    /// all along; `--ready-file` is written once all are in, and they
    /// receive for `--duration` (or until `<ready-file>.stop`).
    Occupants,
    /// `--rooms` persistent rooms `<muc-room>0`, `<muc-room>1`, ... made
    /// by `--sessions` sessions (each enters, configures and leaves its
    /// share in turn), left empty: idle rooms that only the store holds.
    Creator,
    /// `--probes` first entries into random rooms of those a creator
    /// made, one at a time, each timed from the presence sent to the own
    /// presence back, and left again.
    Prober,
}

/// How long one occupant may wait to be let into a large room.
const JOIN_TIMEOUT: Duration = Duration::from_secs(600);

fn named_room(ctx: &Ctx, name: &str) -> String {
    if name.contains('@') {
        name.to_string()
    } else {
        let service = ctx
            .args
            .muc_service
            .clone()
            .unwrap_or_else(|| format!("conference.{}", ctx.args.domain));
        format!("{name}@{service}")
    }
}

/// The sender of a named room: enters it (creating it persistent, with
/// `--muc-broadcast` roles' presence broadcast when given) and sends.
pub async fn muc_sender_role(
    ctx: &Ctx,
    first: usize,
    name: &str,
    rate: f64,
) -> anyhow::Result<Report> {
    let room = named_room(ctx, name);
    let (mut sessions, failed) = ramp(ctx, first, 1, "<presence/>").await;
    require_all("muc", failed, 1)?;
    let (_, mut s) = sessions.remove(0);
    let created = join_within(&mut s, &room, JOIN_TIMEOUT).await?;
    if created {
        let mut fields = format!(
            "<field var='FORM_TYPE'><value>{MUC}#roomconfig</value></field><field var='muc#roomconfig_persistentroom'><value>1</value></field>"
        );
        if let Some(roles) = &ctx.args.muc_broadcast {
            fields.push_str("<field var='muc#roomconfig_presencebroadcast'>");
            for r in roles.split(',').filter(|r| !r.is_empty()) {
                fields.push_str(&format!("<value>{r}</value>"));
            }
            fields.push_str("</field>");
        }
        let iq = format!(
            "<iq type='set' to='{room}' id='cfg'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'>{fields}</x></query></iq>"
        );
        let reply = tokio::time::timeout(SETUP_TIMEOUT, s.request(&iq, "cfg", |_| {}))
            .await
            .map_err(|_| anyhow::anyhow!("no answer to the configuration of {room}"))??;
        if reply.attr("type") != Some("result") {
            anyhow::bail!("configuring {room}: {}", condition(&reply));
        }
    }
    let tracker = Arc::new(Tracker::new(1, ctx.metrics.clone()));
    let end = Instant::now() + ctx.duration();
    let (sent, s) = muc_sender(ctx.clone(), s, 0, room.clone(), rate, end, tracker.clone()).await;
    ctx.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
    s.close().await;
    let mut r = Report::new();
    r.insert("room".into(), room.into());
    r.insert("created".into(), created.into());
    tracker.report(&mut r, sent);
    Ok(r)
}

/// The occupants of a named room in this process: each enters (paced at
/// `--join-rate` a second, 0 for all at once) and then reads on, so that
/// nobody's queue fills while the others enter.
pub async fn muc_occupants_role(
    ctx: &Ctx,
    first: usize,
    occupants: usize,
    name: &str,
) -> anyhow::Result<Report> {
    use std::sync::atomic::AtomicUsize;
    let room = Arc::new(named_room(ctx, name));
    let (sessions, failed) = ramp(ctx, first, occupants, "<presence/>").await;
    require_all("muc", failed, occupants)?;
    let tracker = Arc::new(Tracker::new(occupants, ctx.metrics.clone()));
    let joins = Arc::new(Mutex::new(histogram()));
    let (entered, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // When the last one got in, after the first asked.
    let last_in_us = Arc::new(AtomicU64::new(0));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let rate = ctx.args.join_rate;
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (i, (_, mut s)) in sessions.into_iter().enumerate() {
        let (ctx2, room, tracker, stop_rx) =
            (ctx.clone(), room.clone(), tracker.clone(), stop_rx.clone());
        let (joins, entered, refused, last_in_us) = (
            joins.clone(),
            entered.clone(),
            refused.clone(),
            last_in_us.clone(),
        );
        set.spawn(async move {
            if rate > 0.0 {
                tokio::time::sleep_until((t0 + Duration::from_secs_f64(i as f64 / rate)).into())
                    .await;
            }
            let asked = Instant::now();
            match join_within(&mut s, &room, JOIN_TIMEOUT).await {
                Ok(_) => {
                    let _ = lock(&joins).record(asked.elapsed().as_micros() as u64);
                    last_in_us.fetch_max(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                    entered.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    ctx2.metrics.error(format!("muc: {e}"));
                    refused.fetch_add(1, Ordering::Relaxed);
                    return s;
                }
            }
            receive(ctx2, s, 0, tracker, stop_rx, is_groupchat).await
        });
    }
    while entered.load(Ordering::Relaxed) + refused.load(Ordering::Relaxed) < occupants {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let setup_secs = t0.elapsed().as_secs_f64();
    if let Some(f) = &ctx.args.ready_file {
        std::fs::write(f, format!("{} entered\n", entered.load(Ordering::Relaxed)))?;
    }
    wait_until_told(ctx, Instant::now() + ctx.duration()).await;
    let _ = stop.send(true);
    while let Some(r) = set.join_next().await {
        if let Ok(s) = r {
            ctx.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
            s.close().await;
        }
    }
    let mut r = Report::new();
    r.insert("room".into(), room.as_str().into());
    r.insert("occupants".into(), occupants.into());
    r.insert("entered".into(), entered.load(Ordering::Relaxed).into());
    r.insert("refused".into(), refused.load(Ordering::Relaxed).into());
    r.insert("setup_seconds".into(), setup_secs.into());
    r.insert("join_us".into(), latency_json(&lock(&joins)));
    r.insert(
        "last_in_after_us".into(),
        last_in_us.load(Ordering::Relaxed).into(),
    );
    tracker.report_items(&mut r);
    Ok(r)
}

/// Make `rooms` persistent rooms named `<prefix><i>` with `sessions`
/// sessions, and leave them empty.
pub async fn muc_creator_role(
    ctx: &Ctx,
    first: usize,
    sessions: usize,
    rooms: usize,
    prefix: &str,
) -> anyhow::Result<Report> {
    let sessions = sessions.clamp(1, rooms.max(1));
    let (list, failed) = ramp(ctx, first, sessions, "<presence/>").await;
    require_all("muc", failed, sessions)?;
    let t0 = Instant::now();
    let made = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for (k, (_, mut s)) in list.into_iter().enumerate() {
        let (ctx2, made) = (ctx.clone(), made.clone());
        let prefix = prefix.to_string();
        set.spawn(async move {
            for i in (k..rooms).step_by(sessions) {
                let room = named_room(&ctx2, &format!("{prefix}{i}"));
                let r = async {
                    if join(&mut s, &room).await? {
                        let iq = format!(
                            "<iq type='set' to='{room}' id='cfg'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>{MUC}#roomconfig</value></field><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>"
                        );
                        let reply = tokio::time::timeout(SETUP_TIMEOUT, s.request(&iq, "cfg", |_| {}))
                            .await
                            .map_err(|_| anyhow::anyhow!("no answer to the configuration of {room}"))??;
                        if reply.attr("type") != Some("result") {
                            anyhow::bail!("configuring {room}: {}", condition(&reply));
                        }
                    }
                    leave_room(&mut s, &room).await
                }
                .await;
                match r {
                    Ok(()) => {
                        made.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => ctx2.metrics.error(format!("muc: {e}")),
                }
            }
            s
        });
    }
    while let Some(r) = set.join_next().await {
        if let Ok(s) = r {
            ctx.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
            s.close().await;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut r = Report::new();
    let made = made.load(Ordering::Relaxed);
    r.insert("rooms".into(), rooms.into());
    r.insert("made".into(), made.into());
    r.insert("seconds".into(), secs.into());
    r.insert(
        "rooms_per_second".into(),
        (made as f64 / secs.max(1e-3)).into(),
    );
    Ok(r)
}

/// Leave `room`, waiting for the own unavailable presence.
async fn leave_room(s: &mut Session, room: &str) -> anyhow::Result<()> {
    let nick = s.bare().split('@').next().unwrap_or("user").to_string();
    let me = format!("{room}/{nick}");
    s.send(&format!("<presence to='{me}' type='unavailable'/>"))
        .await?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let raw = tokio::time::timeout_at(deadline.into(), s.reader.next_raw())
            .await
            .map_err(|_| anyhow::anyhow!("no answer when leaving {room}"))??;
        if let Some(pong) = s.reader.answer(&raw) {
            s.send(&pong).await?;
            continue;
        }
        if raw.starts_with(b"<presence") {
            let e = s.reader.parse(&raw)?;
            if e.attr("type") == Some("unavailable")
                && e.attr("from").is_some_and(|f| f.eq_ignore_ascii_case(&me))
            {
                return Ok(());
            }
        }
    }
}

/// Enter `probes` random rooms of `<prefix>0..rooms`, one at a time,
/// timing each first entry, and leave each again.
pub async fn muc_prober_role(
    ctx: &Ctx,
    first: usize,
    rooms: usize,
    probes: usize,
    prefix: &str,
) -> anyhow::Result<Report> {
    let (mut list, failed) = ramp(ctx, first, 1, "<presence/>").await;
    require_all("muc", failed, 1)?;
    let (_, mut s) = list.remove(0);
    let mut h = histogram();
    let mut created = 0u64;
    // A simple generator: no two probes of one run enter the same room
    // unless there are fewer rooms than probes.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..probes {
        let mut i;
        loop {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            i = (x % rooms.max(1) as u64) as usize;
            if seen.insert(i) || seen.len() >= rooms {
                break;
            }
        }
        let room = named_room(ctx, &format!("{prefix}{i}"));
        let t = Instant::now();
        if join(&mut s, &room).await? {
            created += 1;
        }
        let _ = h.record(t.elapsed().as_micros() as u64);
        leave_room(&mut s, &room).await?;
    }
    ctx.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
    s.close().await;
    let mut r = Report::new();
    r.insert("probes".into(), probes.into());
    r.insert("first_join_us".into(), latency_json(&h));
    r.insert("rooms_that_did_not_exist".into(), created.into());
    Ok(r)
}

// ---- PubSub --------------------------------------------------------------

/// Which part of `pubsub` this process plays. One process can hold only
/// so many sockets: a fan-out to more subscribers runs several processes
/// of subscribers and one publisher against one named node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PubsubRole {
    /// Publisher and subscribers in this process.
    Both,
    /// Only the publisher: creates `--pubsub-node` if it is not there and
    /// publishes for `--duration`.
    Publisher,
    /// Only subscribers: they subscribe to `--pubsub-node`, signal
    /// `--ready-file`, and receive for `--duration`; the report lists the
    /// latency of each item's last recipient here, to merge with the other
    /// processes' (the last of all is the largest).
    Subscribers,
}

/// Create `node` (a named node left by an earlier run is fine).
async fn create_node(
    s: &mut Session,
    service: &str,
    node: &str,
    named: bool,
) -> anyhow::Result<()> {
    let create = format!(
        "<iq type='set' to='{service}' id='create'><pubsub xmlns='{PUBSUB}'><create node='{node}'/></pubsub></iq>"
    );
    let reply = tokio::time::timeout(SETUP_TIMEOUT, s.request(&create, "create", |_| {}))
        .await
        .map_err(|_| anyhow::anyhow!("no answer from the PubSub service {service}"))??;
    let exists = named && condition(&reply) == "conflict";
    if reply.attr("type") != Some("result") && !exists {
        anyhow::bail!("creating node {node} on {service}: {}", condition(&reply));
    }
    Ok(())
}

pub async fn pubsub(
    ctx: &Ctx,
    first: usize,
    subscribers: usize,
    rate: f64,
) -> anyhow::Result<Report> {
    let role = ctx.args.pubsub_role;
    let service = ctx
        .args
        .pubsub_service
        .clone()
        .unwrap_or_else(|| format!("pubsub.{}", ctx.args.domain));
    let named = ctx.args.pubsub_node.is_some();
    let node = ctx
        .args
        .pubsub_node
        .clone()
        .unwrap_or_else(|| format!("loadtest-{}-{first}", std::process::id()));
    let (publishers, subscribers) = match role {
        PubsubRole::Both => (1, subscribers),
        PubsubRole::Publisher => (1, 0),
        PubsubRole::Subscribers => (0, subscribers),
    };
    let (mut sessions, failed) = ramp(ctx, first, subscribers + publishers, "<presence/>").await;
    require_all("pubsub", failed, subscribers + publishers)?;
    let mut publisher = if publishers == 1 {
        Some(sessions.remove(0).1)
    } else {
        None
    };
    let t0 = Instant::now();
    if let Some(p) = publisher.as_mut() {
        create_node(p, &service, &node, named).await?;
    }
    let mut set = tokio::task::JoinSet::new();
    for (_, mut s) in sessions {
        let (service, node) = (service.clone(), node.clone());
        set.spawn(async move {
            let iq = format!(
                "<iq type='set' to='{service}' id='sub'><pubsub xmlns='{PUBSUB}'><subscribe node='{node}' jid='{}'/></pubsub></iq>",
                s.jid
            );
            // Many thousands subscribe at once in a large fan-out.
            let reply = tokio::time::timeout(SUBSCRIBE_TIMEOUT, s.request(&iq, "sub", |_| {}))
                .await
                .map_err(|_| anyhow::anyhow!("no answer to a subscription"))??;
            if reply.attr("type") != Some("result") {
                anyhow::bail!("subscribing to {node}: {}", condition(&reply));
            }
            Ok(s)
        });
    }
    let mut subs = Vec::new();
    while let Some(r) = set.join_next().await {
        subs.push(r??);
    }
    let setup_secs = t0.elapsed().as_secs_f64();
    if let Some(f) = &ctx.args.ready_file {
        std::fs::write(f, format!("{} subscribed\n", subs.len()))?;
    }

    let tracker = Arc::new(Tracker::new(subscribers, ctx.metrics.clone()));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let end = start + ctx.duration();
    let mut recipients = tokio::task::JoinSet::new();
    for s in subs {
        recipients.spawn(receive(
            ctx.clone(),
            s,
            0,
            tracker.clone(),
            stop_rx.clone(),
            is_pubsub_event,
        ));
    }
    let mut done = Vec::new();
    let (mut published, mut refused) = (0, 0);
    if let Some(p) = publisher.take() {
        let (ok, re, mut p) = publish(ctx, p, &service, &node, rate, end).await;
        (published, refused) = (ok, re);
        done = finish_recipients(&tracker, published, stop, recipients).await;
        if !named {
            let delete = format!(
                "<iq type='set' to='{service}' id='delete'><pubsub xmlns='{PUBSUB}#owner'><delete node='{node}'/></pubsub></iq>"
            );
            let _ =
                tokio::time::timeout(Duration::from_secs(5), p.request(&delete, "delete", |_| {}))
                    .await;
        }
        done.push(p);
    } else {
        // Subscribers only: the publisher is another process.
        wait_until_told(ctx, end).await;
        let _ = stop.send(true);
        while let Some(r) = recipients.join_next().await {
            if let Ok(s) = r {
                done.push(s);
            }
        }
    }
    for s in done {
        ctx.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
        s.close().await;
    }
    let mut r = Report::new();
    r.insert("service".into(), service.into());
    r.insert("node".into(), node.into());
    r.insert("subscribers".into(), subscribers.into());
    r.insert("setup_seconds".into(), setup_secs.into());
    r.insert("publishes_refused".into(), refused.into());
    if role == PubsubRole::Subscribers {
        tracker.report_items(&mut r);
    } else {
        tracker.report(&mut r, published);
    }
    r.insert(
        "publishes_per_second".into(),
        (published as f64 / ctx.args.duration.max(1e-3)).into(),
    );
    r.insert(
        "delivered_per_second".into(),
        (tracker.delivered.load(Ordering::Relaxed) as f64 / ctx.args.duration.max(1e-3)).into(),
    );
    Ok(r)
}

/// Publish until `end` with `--window` publishes awaiting their result.
/// Returns the publishes the service accepted and those it refused.
pub(super) async fn publish(
    ctx: &Ctx,
    mut s: Session,
    service: &str,
    node: &str,
    rate: f64,
    end: Instant,
) -> (u64, u64, Session) {
    let m = &ctx.metrics;
    let window = ctx.args.window.max(1) as u64;
    let mut pace = Pace::new(rate);
    let (mut sent, mut ok, mut refused) = (0u64, 0u64, 0u64);
    let drain_end = end + DRAIN;
    loop {
        let now = Instant::now();
        while sent - (ok + refused) < window && now < end && pace.wait().is_none() {
            let iq = format!(
                "<iq type='set' to='{service}' id='p{sent}'><pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='{sent}'><entry xmlns='urn:xmpp-loadtest'>{}</entry></item></publish></pubsub></iq>",
                stamp(sent)
            );
            if let Err(e) = s.send(&iq).await {
                m.error(format!("pubsub: send failed: {e}"));
                return (ok, refused, s);
            }
            sent += 1;
            m.sent(1);
            pace.sent();
        }
        if (now >= end && ok + refused >= sent) || now >= drain_end {
            break;
        }
        let wake = pace.wake(sent - (ok + refused) < window && Instant::now() < end);
        let raw = tokio::select! {
            r = s.reader.next_raw() => r,
            _ = sleep_until(wake) => continue,
            _ = tokio::time::sleep_until(drain_end.into()) => break,
        };
        match raw {
            Ok(raw) => {
                if let Some(pong) = s.reader.answer(&raw) {
                    let _ = s.send(&pong).await;
                    continue;
                }
                if !raw.starts_with(b"<iq") {
                    continue;
                }
                let Ok(e) = s.reader.parse(&raw) else {
                    continue;
                };
                if !e.attr("id").is_some_and(|id| id.starts_with('p')) {
                    continue;
                }
                if e.attr("type") == Some("result") {
                    ok += 1;
                } else {
                    refused += 1;
                    m.error(format!("pubsub: publish refused: {}", condition(&e)));
                }
            }
            Err(e) => {
                m.error(format!("pubsub: publisher lost: {e}"));
                break;
            }
        }
    }
    (ok, refused, s)
}
