//! Stream management (XEP-0198) at the connection: the counts both ways,
//! `<r/>` and `<a/>`, and the edge's side of enabling and resuming. What
//! the client has not acknowledged is kept at the user's shard (it sees
//! every stanza sent to the session), so a connection, or its whole edge,
//! may die and the client resumes anywhere.

use bytes::Bytes;
use router::SessionSink;

use super::Conn;
use crate::stream::{Event, Resumed};

const NS: &str = "urn:xmpp:sm:3";
/// The server's request for an acknowledgement.
pub(super) const REQUEST: &[u8] = b"<r xmlns='urn:xmpp:sm:3'/>";

/// The connection's counts.
#[derive(Debug, Default)]
pub(super) struct Sm {
    /// The core counts from here on: the marker (`Outbound::SmStart`)
    /// came and `start` was written.
    pub counting: bool,
    /// What to write when the marker comes: `<enabled/>` or `<resumed/>`.
    pub start: Option<Bytes>,
    /// Stanzas written to the client since counting began (mod 2^32,
    /// from the client's count when resumed).
    pub sent: u32,
    /// The client's last acknowledgement.
    pub acked: u32,
    /// `sent` when the last `<r/>` went out.
    pub requested: u32,
    /// The client's stanzas handled.
    pub handled: u32,
    /// The session waits for a resumption when the connection goes.
    pub resume: bool,
}

impl Conn {
    /// XEP-0198 §3: enable at the core; `<enabled/>` is written when the
    /// core's marker comes, so that both count from the same stanza.
    pub(super) async fn sm_enable(&mut self, resume: bool, max: Option<u32>) -> Option<Event> {
        let Some(jid) = self.machine.jid().cloned() else {
            return Some(Event::SmRefused);
        };
        let limit = self.limits.sm_resume_timeout.as_secs();
        let resume = resume && limit > 0;
        let secs = max.map_or(limit, |m| u64::from(m).min(limit)).max(1);
        let id = format!("{:032x}", rand::random::<u128>());
        let mut enabled = format!("<enabled xmlns='{NS}'");
        if resume {
            enabled.push_str(&format!(" id='{id}' resume='true' max='{secs}'"));
            if let Some(l) = &self.machine.settings().sm_location {
                enabled.push_str(" location='");
                enabled.push_str(&proto::element::escape(l));
                enabled.push('\'');
            }
        }
        enabled.push_str("/>");
        self.sm = Some(Box::new(Sm {
            start: Some(Bytes::from(enabled)),
            resume,
            ..Sm::default()
        }));
        let e = router::modules::sm::SmEnable {
            id,
            resume,
            max_unacked: self.limits.sm_max_unacked,
            timeout: std::time::Duration::from_secs(secs),
        };
        if self.edge.core.sm_enable(jid, self.conn_id, e).await {
            self.edge.metrics.sm_enabled.inc();
            None
        } else {
            self.sm = None;
            Some(Event::SmRefused)
        }
    }

    /// XEP-0198 §5: take over the session `previd` of the authenticated
    /// user; the core replays what its client did not acknowledge, after
    /// the marker at which `<resumed/>` is written.
    pub(super) async fn sm_resume(&mut self, previd: String, h: u32) -> Option<Event> {
        let Some(user) = self.machine.user().cloned() else {
            return Some(Event::SmResumed(Resumed::NotFound));
        };
        let (sink, inbox) = SessionSink::channel(self.conn_id, self.limits.outbound_queue);
        let r = self
            .edge
            .core
            .sm_resume(user, previd.clone(), h, sink)
            .await;
        if let Resumed::Yes(_, handled, carbons) = &r {
            self.carbons = *carbons;
            let resumed = format!(
                "<resumed xmlns='{NS}' previd='{}' h='{handled}'/>",
                proto::element::escape(&previd)
            );
            self.sm = Some(Box::new(Sm {
                start: Some(Bytes::from(resumed)),
                sent: h,
                acked: h,
                requested: h,
                handled: *handled,
                resume: true,
                counting: false,
            }));
            self.inbox = Some(inbox);
            self.edge.metrics.sm_resumed.inc();
        } else {
            self.edge.metrics.sm_resume_failed.inc();
        }
        Some(Event::SmResumed(r))
    }

    /// The core's marker: held stanzas (from before it) go out first, then
    /// `<enabled/>` or `<resumed/>`; the counting starts.
    pub(super) async fn sm_start(&mut self) {
        Box::pin(self.flush_held()).await;
        let Some(start) = self.sm.as_mut().and_then(|s| s.start.take()) else {
            return;
        };
        self.write(&start).await;
        if let Some(sm) = self.sm.as_mut() {
            sm.counting = true;
        }
    }

    /// `n` stanzas were written to the client. True when an `<r/>` is due
    /// after them (`sm.request_every` since the last).
    pub(super) fn sm_sent(&mut self, n: usize) -> bool {
        let every = self.limits.sm_request_every.max(1);
        let Some(sm) = self.sm.as_mut().filter(|s| s.counting) else {
            return false;
        };
        sm.sent = sm.sent.wrapping_add(n as u32);
        if sm.sent.wrapping_sub(sm.requested) >= every {
            sm.requested = sm.sent;
            return true;
        }
        false
    }

    /// One of the client's stanzas was taken.
    pub(super) fn sm_received(&mut self) {
        if let Some(sm) = self.sm.as_mut() {
            sm.handled = sm.handled.wrapping_add(1);
        }
    }

    /// `<r/>` from the client: how many of its stanzas were handled.
    pub(super) async fn sm_answer(&mut self) {
        let h = self.sm.as_ref().map_or(0, |s| s.handled);
        let a = format!("<a xmlns='{NS}' h='{h}'/>");
        self.write(a.as_bytes()).await;
    }

    /// `<a h/>` from the client: it has `h` of the stanzas written to it.
    /// More than were written is a stream error (XEP-0198 §4).
    pub(super) async fn sm_acked(&mut self, h: u32) {
        let Some(sm) = self.sm.as_mut() else { return };
        let outstanding = sm.sent.wrapping_sub(sm.acked);
        let n = h.wrapping_sub(sm.acked);
        // An h behind the last one (a late or repeated <a/>) tells
        // nothing new: §4 defines an error only for one too high.
        if sm.acked.wrapping_sub(h) < 1 << 31 && n != 0 {
            return;
        }
        if n > outstanding {
            let sent = sm.sent;
            let e = format!(
                "<stream:error><undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><handled-count-too-high xmlns='{NS}' h='{h}' send-count='{sent}'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>the client acknowledged more stanzas than were sent</text></stream:error></stream:stream>"
            );
            self.write(e.as_bytes()).await;
            self.done = true;
            return;
        }
        if n == 0 {
            return;
        }
        sm.acked = h;
        let handled = sm.handled;
        if let Some(jid) = self.machine.jid().cloned() {
            self.edge.core.sm_ack(jid, self.conn_id, h, handled);
        }
    }

    /// A stanza the edge answers with itself: with stream management
    /// counting, it goes through the session at the core (so that it is
    /// counted and kept like the rest), else straight out.
    pub(super) async fn reply(&mut self, b: Bytes) {
        let counting = self.sm.as_ref().is_some_and(|s| s.counting);
        match (counting, self.machine.jid().cloned()) {
            (true, Some(jid)) => self.edge.core.sm_echo(jid, self.conn_id, b).await,
            _ => self.write(&b).await,
        }
    }
}
