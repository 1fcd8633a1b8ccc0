//! The stream machine's side of a session: what it reads (the payloads
//! of the requests taken, in order; the end of the client's stream; the
//! end of a session whose client went quiet for its inactivity period,
//! XEP-0124 §8), and what it writes, cut into the payloads of the next
//! responses, its end or stream error becoming the session's end
//! (XEP-0206 §7).

use std::task::Waker;

use tokio::time::Instant;

use super::super::body::{self, Unit};
use super::{Condition, Read, State};

impl State {
    /// Bytes for the machine.
    pub(super) fn give(&mut self, b: &[u8]) {
        if b.is_empty() {
            return;
        }
        if self.taken == self.inbound.len() {
            self.inbound.clear();
            self.taken = 0;
        }
        self.inbound.extend_from_slice(b);
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// Forget the session (its end was never fetched).
    pub fn close(&mut self) {
        if !self.gone {
            self.end();
        }
    }

    /// The machine's driver went away without ending the stream.
    pub fn lost(&mut self, now: Instant) {
        if self.gone || self.terminal.is_some() {
            return;
        }
        self.in_end = true;
        self.terminal = Some(body::terminate(Some(
            Condition::RemoteConnectionFailed.name(),
        )));
        self.dispatch(now);
    }

    /// What the machine wrote. `false`: wait (too much is waiting for
    /// the client), with the writer's waker kept.
    pub fn output(&mut self, b: &[u8], waker: &Waker, now: Instant) -> bool {
        if self.gone || self.terminal.is_some() {
            return true;
        }
        if self.payloads.len() >= self.terms.max_outbound {
            self.writer = Some(waker.clone());
            return false;
        }
        self.partial.extend_from_slice(b);
        let mut units = Vec::new();
        let used = body::split(&self.partial, &mut units);
        if used == self.partial.len() {
            self.partial = Vec::new();
        } else {
            self.partial.drain(..used);
        }
        let mut end = None;
        for u in units {
            match u {
                Unit::Header => {}
                Unit::Payload(p) => {
                    if p.starts_with("<success") && p.contains(proto::ns::SASL) {
                        self.restart_expected = true;
                    }
                    self.payloads.extend_from_slice(p.as_bytes());
                }
                Unit::Error(e) => {
                    end = Some(Some(e));
                    break;
                }
                Unit::End => {
                    end = Some(None);
                    break;
                }
            }
        }
        if let Some(error) = end {
            // XEP-0206 §7: a stream error ends the session as
            // remote-stream-error, after the stanzas before it.
            let mut payload = std::mem::take(&mut self.payloads);
            let mut attrs = vec![("type", "terminate".to_string())];
            if let Some(e) = error {
                attrs.push(("condition", "remote-stream-error".to_string()));
                payload.extend_from_slice(&e);
            }
            self.terminal = Some(body::response(&attrs, &payload));
            self.partial = Vec::new();
            self.in_end = true;
            if let Some(w) = self.reader.take() {
                w.wake();
            }
        }
        self.dispatch(now);
        true
    }

    /// The machine reads.
    pub fn read(&mut self, buf: &mut tokio::io::ReadBuf<'_>, waker: &Waker, now: Instant) -> Read {
        if self.taken < self.inbound.len() {
            let n = buf.remaining().min(self.inbound.len() - self.taken);
            buf.put_slice(&self.inbound[self.taken..self.taken + n]);
            self.taken += n;
            if self.taken == self.inbound.len() {
                // Nothing kept while idle.
                self.inbound = Vec::new();
                self.taken = 0;
            }
            return Read::Data;
        }
        if self.in_end || self.gone {
            return Read::End;
        }
        if !self.held.is_empty() || !self.ahead.is_empty() {
            self.reader = Some(waker.clone());
            return Read::Wait(None);
        }
        // §8: no request for longer than the inactivity period: the
        // client is gone, and the session ends without a word.
        let deadline = self.last_answer + self.pause.unwrap_or(self.terms.inactivity);
        if now >= deadline {
            self.end();
            return Read::End;
        }
        self.reader = Some(waker.clone());
        Read::Wait(Some(deadline))
    }
}
