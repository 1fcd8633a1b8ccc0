//! XEP-0115 Entity Capabilities on the server side: a session's presence
//! announces a hash of its features; the first time the cluster sees a
//! hash, the server asks that session for the features (disco#info to its
//! full JID), verifies them against the hash, and keeps them for every
//! session that announces the same hash. PEP (XEP-0163 §4.2) uses them: a
//! contact gets notifications of node N only at resources whose features
//! list `N+notify`.
//!
//! What a hash means is learnt once for the whole cluster: the verified
//! disco#info is committed at the hash's home shard (`storage::caps`), and
//! a core node that meets a hash it does not know asks that shard before
//! it asks the client. The messages between shards are IQ results from
//! the server to itself (a client cannot send from the server's JID, and
//! results are never answered), and each carries the disco#info itself,
//! so every receiver verifies it against the hash again. Each core node
//! keeps a bounded cache in front. A hash that would not verify is never
//! kept. A notification for a resource whose hash is still being asked
//! about waits (bounded) for the answer instead of being dropped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto::caps::Caps;
use proto::stanza::Stanza;
use proto::{Element, FullJid, Jid, ns};

use super::Ctx;
use crate::session::{Outbound, SessionSink};

/// Hashes kept, at most (each a few hundred bytes of feature names).
const MAX_KNOWN: usize = 10_000;
/// Questions in flight, at most.
const MAX_ASKED: usize = 1_000;
/// How long a question may go unanswered before another session that
/// announced the same hash is asked (XEP-0115 §5.4 lets the server ask
/// any of them).
const ASK_TIMEOUT: Duration = Duration::from_secs(15);
/// Sessions remembered for having answered a hash wrongly, at most.
const MAX_FAILED: usize = 1_000;
/// Notifications waiting on one question, at most.
const MAX_WAITING: usize = 256;
/// "Sent once" marks a session keeps (last items on presence), at most.
const MAX_SENT_ONCE: usize = 4_096;

struct Asked {
    caps: Caps,
    /// The session asked (only its answer counts).
    who: FullJid,
    at: Instant,
    /// Whether the hash's home was asked first and said it does not know.
    of_client: bool,
}

/// The namespace of the messages between shards about hashes.
const NS_SHARE: &str = "urn:xmppd:caps:share:0";

/// A notification held until its recipient's features are known.
struct Waiting {
    /// The session it is for (it announced the hash: it may be asked).
    who: FullJid,
    sink: SessionSink,
    out: Outbound,
    feature: String,
}

/// The features of the capability hashes this node knows.
#[derive(Default)]
pub(crate) struct CapsCache {
    known: Mutex<HashMap<String, Arc<HashSet<String>>>>,
    /// The id of each disco#info question sent, and what it asks about.
    asked: Mutex<HashMap<String, Asked>>,
    /// By hash key: notifications waiting for its answer.
    waiting: Mutex<HashMap<String, Vec<Waiting>>>,
    /// Sessions that did not answer a hash or answered it wrongly: not
    /// asked about it again (a liar would be asked at every notification).
    failed: Mutex<std::collections::VecDeque<(String, FullJid)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a resource wants a feature, as far as this node knows.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wants {
    Yes,
    No,
    /// Its hash is being asked about.
    Unknown,
}

impl CapsCache {
    /// The features of hash `key`, if known.
    fn features(&self, key: &str) -> Option<Arc<HashSet<String>>> {
        lock(&self.known).get(key).cloned()
    }

    /// Whether an entity announcing `caps` has feature `f`.
    pub fn wants(&self, caps: Option<&Caps>, f: &str) -> Wants {
        let Some(caps) = caps else { return Wants::No };
        match self.features(&caps.key()) {
            Some(fs) if fs.contains(f) => Wants::Yes,
            Some(_) => Wants::No,
            None => Wants::Unknown,
        }
    }

    /// Hold `out` for `sink` until `caps` is known; sent then if it lists
    /// `feature`. Dropped when the cache is full or the answer never comes.
    fn wait(&self, caps: &Caps, who: &FullJid, sink: &SessionSink, out: Outbound, feature: &str) {
        let mut waiting = lock(&self.waiting);
        let list = waiting.entry(caps.key()).or_default();
        if list.len() < MAX_WAITING {
            list.push(Waiting {
                who: who.clone(),
                sink: sink.clone(),
                out,
                feature: feature.to_string(),
            });
        }
    }

    /// Take out the questions unanswered for too long.
    fn expire(&self, asked: &mut HashMap<String, Asked>) -> Vec<Asked> {
        let now = Instant::now();
        let ids: Vec<String> = asked
            .iter()
            .filter(|(_, a)| now.duration_since(a.at) >= ASK_TIMEOUT)
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter().filter_map(|id| asked.remove(id)).collect()
    }

    fn has_failed(&self, key: &str, who: &FullJid) -> bool {
        lock(&self.failed).iter().any(|(k, w)| k == key && w == who)
    }
}

/// `who` did not tell what `caps` means (no answer, an error, or features
/// that do not hash to it): ask another session waiting on the same hash,
/// or, with none left, drop what waits.
fn retry(ctx: &Ctx<'_>, caps: &Caps, who: &FullJid) {
    let cache = &ctx.env.caps;
    let key = caps.key();
    {
        let mut failed = lock(&cache.failed);
        if failed.len() >= MAX_FAILED {
            failed.pop_front();
        }
        failed.push_back((key.clone(), who.clone()));
    }
    let next = lock(&cache.waiting).get(&key).and_then(|list| {
        list.iter()
            .find(|w| &w.who != who && !cache.has_failed(&key, &w.who))
            .map(|w| (w.who.clone(), w.sink.clone()))
    });
    let Some((next, sink)) = next else {
        lock(&cache.waiting).remove(&key);
        return;
    };
    let id = format!("caps-{}", ctx.env.next_id());
    lock(&cache.asked).insert(
        id.clone(),
        Asked {
            caps: caps.clone(),
            who: next.clone(),
            at: Instant::now(),
            of_client: true,
        },
    );
    ctx.send(&sink, question(&id, &next, caps));
}

/// A session's available presence: its capabilities (returned), and if
/// nobody has told this node what they mean yet, a question to it.
pub(crate) fn on_presence(ctx: &Ctx<'_>, from: &FullJid, presence: &Stanza) -> Option<Arc<Caps>> {
    let el = presence.element(ns::CLIENT).ok()?;
    let caps = Caps::of_presence(&el)?;
    ask(ctx, from, &caps);
    Some(Arc::new(caps))
}

/// Find out what `caps` (announced by session `from`) means, unless this
/// node knows or is finding out: ask the hash's home shard, which answers
/// with what the cluster learnt, or that the session must be asked.
pub(crate) fn ask(ctx: &Ctx<'_>, from: &FullJid, caps: &Caps) {
    let cache = &ctx.env.caps;
    let key = caps.key();
    // Most presences carry a hash already known: one map lookup, before
    // any scan of the questions in flight.
    if cache.features(&key).is_some() {
        return;
    }
    let expired = cache.expire(&mut lock(&cache.asked));
    for a in expired {
        retry(ctx, &a.caps, &a.who);
    }
    if ctx.st.session(from).is_none() || cache.has_failed(&key, from) {
        return;
    }
    let id = {
        let mut asked = lock(&cache.asked);
        // One question per hash, and per session (a client that announces
        // a new hash with every presence must not crowd out the others).
        if asked.len() >= MAX_ASKED
            || asked
                .values()
                .any(|a| a.caps.key() == key || &a.who == from)
        {
            return;
        }
        let id = format!("caps-{}", ctx.env.next_id());
        asked.insert(
            id.clone(),
            Asked {
                caps: caps.clone(),
                who: from.clone(),
                at: Instant::now(),
                of_client: false,
            },
        );
        id
    };
    let msg = share(ctx, from.domain(), "lookup", &key, Some((&id, from)), None);
    ctx.route_home(storage::caps::home(&key), msg);
}

/// Ask session `who` itself (the cluster does not know its hash).
fn ask_client(ctx: &Ctx<'_>, id: &str, who: &FullJid, caps: &Caps) {
    let Some(sess) = ctx.st.session(who) else {
        return;
    };
    ctx.send(&sess.sink, question(id, who, caps));
}

/// The disco#info question `id` to session `who` about `caps`.
fn question(id: &str, who: &FullJid, caps: &Caps) -> Outbound {
    let q = Element::new("query", ns::DISCO_INFO).with_attr("node", caps.query_node());
    let mut raw = format!(
        "<iq type='get' id='{}' from='{}' to='{}'>",
        proto::element::escape(id),
        proto::element::escape(who.domain()),
        proto::element::escape(who.as_str())
    );
    q.write(&mut raw, ns::CLIENT);
    raw.push_str("</iq>");
    Outbound::Stanza(Bytes::from(raw))
}

/// A message between shards about hash `key`: `op` is `lookup` (to the
/// hash's home, from the asking question `ask` of session `who`),
/// `known` / `unknown` (the home's answer, to the shard of `who`), or
/// `learnt` (a verified answer, to the home); `query` is the disco#info.
fn share(
    ctx: &Ctx<'_>,
    domain: &str,
    op: &str,
    key: &str,
    ask: Option<(&str, &FullJid)>,
    query: Option<&Element>,
) -> Stanza {
    use proto::element::escape;
    let mut raw = format!(
        "<iq type='result' id='share-{op}' from='{d}' to='{d}'><caps xmlns='{NS_SHARE}' op='{op}' key='{}'",
        escape(key),
        d = escape(domain),
    );
    if let Some((id, who)) = ask {
        raw.push_str(&format!(
            " ask='{}' for='{}'",
            escape(id),
            escape(who.as_str())
        ));
    }
    raw.push('>');
    if let Some(q) = query {
        q.write(&mut raw, NS_SHARE);
    }
    raw.push_str("</caps></iq>");
    let server = ctx.server_jid(domain);
    super::context::synth(
        proto::stanza::Kind::Iq,
        server.clone(),
        server,
        Some(format!("share-{op}")),
        Some("result"),
        Bytes::from(raw),
    )
}

/// An answer to one of our questions, or a message between shards about
/// hashes (an IQ result or error addressed to the server): `true` if it
/// was one.
pub(crate) fn on_answer(ctx: &mut Ctx<'_>, s: &Stanza) -> bool {
    if s.id.as_deref().is_some_and(|i| i.starts_with("share-")) {
        on_share(ctx, s);
        return true;
    }
    let Some(id) = s.id.as_deref().filter(|i| i.starts_with("caps-")) else {
        return false;
    };
    let cache = &ctx.env.caps;
    let asked = {
        let mut asked = lock(&cache.asked);
        let ours = asked.get(id).is_some_and(|a| {
            a.of_client
                && s.from
                    .as_ref()
                    .is_some_and(|f| f.as_str() == a.who.as_str())
        });
        if !ours {
            return true;
        }
        match asked.remove(id) {
            Some(a) => a,
            None => return true,
        }
    };
    let query = (s.stype() == "result")
        .then(|| s.element(ns::CLIENT).ok())
        .flatten()
        .and_then(|el| el.child("query", ns::DISCO_INFO).cloned());
    let learnt = learn(ctx, &asked.caps, query.as_ref());
    if !learnt {
        retry(ctx, &asked.caps, &asked.who);
    }
    if let (true, Some(q)) = (learnt, &query) {
        // Tell the cluster, once, through the hash's home.
        let key = asked.caps.key();
        let msg = share(ctx, asked.who.domain(), "learnt", &key, None, Some(q));
        ctx.route_home(storage::caps::home(&key), msg);
    }
    true
}

/// A message between shards about a hash (see [`share`]). Only the server
/// sends them; anything else is ignored.
fn on_share(ctx: &mut Ctx<'_>, s: &Stanza) {
    let from_server = matches!(&s.from, Some(Jid::Bare(b)) if b.local().is_none() && ctx.cfg().serves(b.domain()));
    if !from_server || s.stype() != "result" {
        return;
    }
    let Ok(el) = s.element(ns::CLIENT) else {
        return;
    };
    let Some(c) = el.child("caps", NS_SHARE) else {
        return;
    };
    let (Some(op), Some(key)) = (c.attr("op"), c.attr("key")) else {
        return;
    };
    let Some(caps) = caps_of_key(key) else { return };
    let query = c.child("query", ns::DISCO_INFO);
    let asker = c
        .attr("ask")
        .zip(c.attr("for").and_then(|f| FullJid::parse(f).ok()));
    match op {
        "lookup" => {
            let Some((ask, who)) = asker else { return };
            let stored = match ctx.store().caps().get(key) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "capabilities lookup failed");
                    None
                }
            };
            let stored = stored.and_then(|b| Element::parse(&b, NS_SHARE, &[]).ok());
            let op = if stored.is_some() { "known" } else { "unknown" };
            let msg = share(
                ctx,
                who.domain(),
                op,
                key,
                Some((ask, &who)),
                stored.as_ref(),
            );
            ctx.route_home(who.bare_str().to_string(), msg);
        }
        "known" | "unknown" => {
            let Some((ask, who)) = asker else { return };
            let cache = &ctx.env.caps;
            let pending = {
                let mut asked = lock(&cache.asked);
                match asked.get_mut(ask) {
                    Some(a) if !a.of_client && a.who == who && a.caps.key() == key => {
                        if op == "known" && query.is_some_and(|q| proto::caps::verify(&caps, q)) {
                            asked.remove(ask);
                            None
                        } else {
                            // Nobody in the cluster knows: ask the client.
                            a.of_client = true;
                            a.at = Instant::now();
                            Some(a.caps.clone())
                        }
                    }
                    _ => return,
                }
            };
            match pending {
                None => {
                    learn(ctx, &caps, query);
                }
                Some(full) => ask_client(ctx, ask, &who, &full),
            }
        }
        "learnt" => {
            let Some(q) = query else { return };
            if !ctx.is_home(&storage::caps::home(key)) || !learn(ctx, &caps, Some(q)) {
                return;
            }
            let store = ctx.store().caps();
            if matches!(store.get(key), Ok(None)) {
                let mut raw = String::new();
                q.write(&mut raw, NS_SHARE);
                if let Err(e) = store.put_in(&mut ctx.writes, key, raw.as_bytes()) {
                    tracing::warn!(error = %e, "capabilities not stored");
                }
            }
        }
        _ => {}
    }
}

/// The hash function and ver of a cache key.
fn caps_of_key(key: &str) -> Option<Caps> {
    let (hash, ver) = key.split_once(' ')?;
    if !matches!(hash, "sha-1" | "sha-256") || ver.is_empty() || ver.len() > 128 {
        return None;
    }
    Some(Caps {
        hash: hash.to_string(),
        node: String::new(),
        ver: ver.to_string(),
    })
}

/// Keep what `caps` means if `query` verifies against it, and let out
/// the notifications that waited for it: `true` if it verified.
fn learn(ctx: &Ctx<'_>, caps: &Caps, query: Option<&Element>) -> bool {
    let cache = &ctx.env.caps;
    let key = caps.key();
    let features = query
        .filter(|q| proto::caps::verify(caps, q))
        .map(|q| proto::caps::features(q).into_iter().collect::<HashSet<_>>());
    // What waits stays for another session's answer (see `retry`).
    let waiting = if features.is_some() {
        lock(&cache.waiting).remove(&key).unwrap_or_default()
    } else {
        Vec::new()
    };
    let Some(features) = features else {
        tracing::debug!(ver = %caps.ver, "a capabilities answer was refused or did not match its hash");
        return false;
    };
    let features = Arc::new(features);
    {
        let mut known = lock(&cache.known);
        if known.len() >= MAX_KNOWN
            && let Some(k) = known.keys().next().cloned()
        {
            known.remove(&k);
        }
        known.insert(key, features.clone());
    }
    for w in waiting {
        if features.contains(&w.feature) {
            ctx.send(&w.sink, w.out);
        }
    }
    true
}

/// How a fan-out is filtered by capabilities, as it travels between
/// shards and core nodes: the feature a resource must list, and whether
/// each resource gets it only once from the sender (the last item of a
/// PEP node on presence, XEP-0163 §4.3.4) or every time.
pub(crate) fn interest(feature: &str, once: bool) -> String {
    format!("{}{feature}", if once { '!' } else { '+' })
}

fn parse_interest(i: &str) -> (bool, &str) {
    match i.strip_prefix('!') {
        Some(f) => (true, f),
        None => (false, i.strip_prefix('+').unwrap_or(i)),
    }
}

/// Deliver `s` (without 'to') to the available resources (non-negative
/// priority) of `recipients` that want it by `interest` (XEP-0163 §4.3.2):
/// a bare JID means each such resource, a full JID that one only.
pub(crate) fn fan_in(ctx: &mut Ctx<'_>, s: &Stanza, recipients: &[Jid], interest: &str) {
    let (once, feature) = parse_interest(interest);
    let once_key = once.then(|| {
        format!(
            "{} {feature}",
            s.from.as_ref().map(|f| f.as_str()).unwrap_or("")
        )
    });
    let out = Outbound::Addressed(s.raw.clone());
    let mut targets: Vec<FullJid> = Vec::new();
    for r in recipients {
        if !ctx.env.cfg.serves(r.domain()) {
            continue;
        }
        match r {
            Jid::Full(full) => targets.push(full.clone()),
            Jid::Bare(user) => targets.extend(ctx.st.sessions(user).iter().map(|x| x.jid.clone())),
        }
    }
    for full in targets {
        let Some(sess) = ctx.st.session_unreplicated(&full) else {
            continue;
        };
        if !sess.available || sess.priority < 0 {
            continue;
        }
        let wants = ctx.env.caps.wants(sess.caps.as_deref(), feature);
        if wants == Wants::No {
            continue;
        }
        if let Some(k) = &once_key {
            let sent = sess.sent_once.get_or_insert_with(Default::default);
            if sent.contains(k) {
                continue;
            }
            if sent.len() < MAX_SENT_ONCE {
                sent.insert(k.clone());
            }
        }
        let sink = sess.sink.clone();
        let caps = sess.caps.clone();
        match (wants, caps) {
            (Wants::Yes, _) => {
                ctx.send(&sink, out.clone());
            }
            (_, Some(caps)) => {
                ctx.env.caps.wait(&caps, &full, &sink, out.clone(), feature);
                // A session restored on a new leader, or one whose question
                // expired: ask (again).
                ask(ctx, &full, &caps);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interests_round_trip() {
        assert_eq!(
            parse_interest(&interest("a+notify", true)),
            (true, "a+notify")
        );
        assert_eq!(
            parse_interest(&interest("!x+notify", false)),
            (false, "!x+notify")
        );
        assert_eq!(parse_interest("plain"), (false, "plain"));
    }

    #[test]
    fn unknown_and_absent_caps() {
        let c = CapsCache::default();
        assert_eq!(c.wants(None, "a"), Wants::No);
        let caps = Caps {
            hash: "sha-1".into(),
            node: "n".into(),
            ver: "v".into(),
        };
        assert_eq!(c.wants(Some(&caps), "a"), Wants::Unknown);
        lock(&c.known).insert(
            caps.key(),
            Arc::new(["a".to_string()].into_iter().collect()),
        );
        assert_eq!(c.wants(Some(&caps), "a"), Wants::Yes);
        assert_eq!(c.wants(Some(&caps), "b"), Wants::No);
    }
}
