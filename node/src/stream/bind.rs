//! Resource binding (RFC 6120 §7): client-chosen or server-generated
//! resources; a conflict replaces the old session (§7.7.2.2).

use bytes::Bytes;
use proto::Element;
use proto::error::{StanzaCondition, StanzaError, StreamCondition};
use proto::ns;
use proto::xml::TopElement;
use router::BindError;

use super::{Action, Machine, Phase};

fn iq_error(id: &str, cond: StanzaCondition, text: &str) -> Bytes {
    Bytes::from(format!(
        "<iq type='error' id='{}'>{}</iq>",
        proto::element::escape(id),
        StanzaError::with_text(cond, text).to_xml()
    ))
}

/// A resource the server picks: random, unguessable.
fn generated_resource() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let n: u64 = rng.random();
    format!("xmppd-{n:016x}")
}

impl Machine {
    pub(super) fn bind_iq(&mut self, e: TopElement, out: &mut Vec<Action>) {
        let Ok(el) = Element::parse(&e.raw, ns::CLIENT, &[]) else {
            return self.fail(StreamCondition::NotWellFormed, None, out);
        };
        let id = el.attr("id").unwrap_or("").to_string();
        let Some(bind) = el.child("bind", ns::BIND) else {
            out.push(Action::Send(iq_error(
                &id,
                StanzaCondition::NotAuthorized,
                "bind a resource first",
            )));
            return;
        };
        if el.attr("type") != Some("set") {
            out.push(Action::Send(iq_error(
                &id,
                StanzaCondition::BadRequest,
                "bind is a set",
            )));
            return;
        }
        let Some(user) = self.user.clone() else {
            return;
        };
        // Whitespace around the text is the client's XML formatting
        // (`<resource>\n  laptop\n</resource>`), not part of the name.
        let wanted = bind
            .child("resource", ns::BIND)
            .map(|r| r.text().trim_matches([' ', '\t', '\n', '\r']).to_string())
            .filter(|r| !r.is_empty());
        let jid = match wanted {
            // RFC 6120 §7.7.2.1: a resource that cannot be prepared is bad-request.
            Some(r) => match user.with_resource(&r) {
                Ok(j) => j,
                Err(_) => {
                    out.push(Action::Send(iq_error(
                        &id,
                        StanzaCondition::BadRequest,
                        "invalid resource",
                    )));
                    return;
                }
            },
            None => match user.with_resource(&generated_resource()) {
                Ok(j) => j,
                Err(_) => return self.fail(StreamCondition::InternalServerError, None, out),
            },
        };
        self.pending_bind_id = Some(id);
        self.jid = Some(jid.clone());
        self.phase = Phase::Binding;
        out.push(Action::Bind(jid));
    }

    pub(super) fn on_bound(&mut self, r: Result<(), BindError>, out: &mut Vec<Action>) {
        let id = self.pending_bind_id.take().unwrap_or_default();
        match r {
            Ok(()) => {
                let jid = self.jid.as_ref().map(|j| j.to_string()).unwrap_or_default();
                out.push(Action::Send(Bytes::from(format!(
                    "<iq type='result' id='{}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{}</jid></bind></iq>",
                    proto::element::escape(&id),
                    proto::element::escape(&jid)
                ))));
                self.phase = Phase::Bound;
            }
            Err(BindError::NoSuchUser) => {
                self.jid = None;
                self.fail(
                    StreamCondition::NotAuthorized,
                    Some("the account no longer exists".into()),
                    out,
                )
            }
            Err(BindError::ShuttingDown) => {
                self.jid = None;
                self.fail(StreamCondition::SystemShutdown, None, out)
            }
            Err(BindError::NotLeader { .. }) => {
                self.jid = None;
                self.fail(
                    StreamCondition::InternalServerError,
                    Some("the account's shard has no reachable leader; try again".into()),
                    out,
                )
            }
        }
    }
}
