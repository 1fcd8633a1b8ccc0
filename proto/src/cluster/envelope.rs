//! Stanzas to envelopes and back, and stream closes to their wire form. An
//! envelope carries everything a [`Stanza`] holds (routing header, other
//! start-tag attributes, raw bytes and the start tag's length), so the core
//! rebuilds the stanza without parsing its bytes again. Envelopes come from
//! other nodes of the cluster, which are trusted to be ours but not to be
//! bug-free: every field is checked, and a bad envelope is an error, never a
//! panic.

use crate::error::StreamCondition;
use crate::jid::{Jid, JidError};
use crate::stanza::{Kind, Stanza};
use crate::trail::Trail;

use super::pb;

/// Why an envelope or delivery from the wire is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("envelope has no stanza kind")]
    NoKind,
    #[error("envelope address {field} is malformed: {error}")]
    BadJid {
        field: &'static str,
        error: JidError,
    },
    #[error("envelope start tag length {head_len} is outside its {len} bytes")]
    BadHead { head_len: u32, len: usize },
    #[error("unknown stream condition {0:?}")]
    UnknownCondition(String),
    #[error("delivery carries neither a stanza nor a close")]
    EmptyDelivery,
}

fn kind_to_pb(k: Kind) -> pb::StanzaKind {
    match k {
        Kind::Message => pb::StanzaKind::Message,
        Kind::Presence => pb::StanzaKind::Presence,
        Kind::Iq => pb::StanzaKind::Iq,
    }
}

/// The envelope of `stanza` for the leader of `shard`.
pub fn to_envelope(shard: u32, stanza: &Stanza) -> pb::Envelope {
    pb::Envelope {
        shard,
        kind: kind_to_pb(stanza.kind) as i32,
        to: stanza.to.as_ref().map(|j| j.as_str().to_owned()),
        from: stanza.from.as_ref().map(|j| j.as_str().to_owned()),
        attrs: stanza
            .attrs
            .iter()
            .map(|(name, value)| pb::Attribute {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        raw: stanza.raw.clone(),
        // A start tag longer than 4 GiB cannot pass the parser's limits.
        head_len: u32::try_from(stanza.head_len).unwrap_or(u32::MAX),
        empty: stanza.empty,
        inbound: false,
        hops: 0,
        seq: 0,
        route_key: None,
        recipients: Vec::new(),
        interest: None,
        received_us: stanza.trail.received_us,
        traceparent: stanza.trail.traceparent(),
        remote_done: 0,
        via_sender: stanza.trail.via_sender,
    }
}

fn jid(field: &'static str, s: Option<String>) -> Result<Option<Jid>, ConvertError> {
    s.map(|s| Jid::parse(&s).map_err(|error| ConvertError::BadJid { field, error }))
        .transpose()
}

/// The stanza in an envelope, and the shard it was sent to.
pub fn from_envelope(e: pb::Envelope) -> Result<(u32, Stanza), ConvertError> {
    let kind = match pb::StanzaKind::try_from(e.kind) {
        Ok(pb::StanzaKind::Message) => Kind::Message,
        Ok(pb::StanzaKind::Presence) => Kind::Presence,
        Ok(pb::StanzaKind::Iq) => Kind::Iq,
        _ => return Err(ConvertError::NoKind),
    };
    let head_len = e.head_len as usize;
    if head_len == 0 || head_len > e.raw.len() {
        return Err(ConvertError::BadHead {
            head_len: e.head_len,
            len: e.raw.len(),
        });
    }
    let attrs: Vec<(String, String)> = e.attrs.into_iter().map(|a| (a.name, a.value)).collect();
    let find = |name: &str| {
        attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let stanza = Stanza {
        kind,
        to: jid("to", e.to)?,
        from: jid("from", e.from)?,
        id: find("id"),
        stype: find("type"),
        attrs,
        raw: e.raw,
        head_len,
        empty: e.empty,
        trail: Trail {
            via_sender: e.via_sender,
            ..Trail::from_wire(e.received_us, e.traceparent.as_deref())
        },
    };
    Ok((e.shard, stanza))
}

/// What a delivery asks the edge to do for its sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryAction {
    Stanza(bytes::Bytes),
    /// Stanza bytes without 'to': each session writes its own JID in.
    Addressed(bytes::Bytes),
    Close(StreamCondition, Option<String>),
    /// The envelope with this sequence number was processed.
    Processed(u64),
    /// The envelope with this sequence number was not processed here:
    /// send it to its shard's leader.
    Redirect(u64),
    /// Stream management (XEP-0198) counts from here (see
    /// `router::Outbound::SmStart`).
    SmStart,
    /// A stanza for another server, for the edge's server-to-server
    /// streams, and its number to confirm it by.
    Remote(bytes::Bytes, u64),
}

/// A delivery of `action` to `sessions` of one edge, with the trail of
/// what caused it.
pub fn to_delivery(sessions: Vec<u64>, action: DeliveryAction, trail: &Trail) -> pb::Delivery {
    let what = match action {
        DeliveryAction::Stanza(b) => pb::delivery::What::Stanza(b),
        DeliveryAction::Addressed(b) => pb::delivery::What::Addressed(b),
        DeliveryAction::Close(cond, text) => pb::delivery::What::Close(pb::StreamClose {
            condition: cond.name().to_owned(),
            text,
        }),
        DeliveryAction::Processed(seq) => pb::delivery::What::Processed(seq),
        DeliveryAction::Redirect(seq) => pb::delivery::What::Redirect(seq),
        DeliveryAction::SmStart => pb::delivery::What::SmStart(true),
        DeliveryAction::Remote(stanza, seq) => {
            pb::delivery::What::Remote(pb::RemoteStanza { stanza, seq })
        }
    };
    pb::Delivery {
        sessions,
        what: Some(what),
        received_us: trail.received_us,
        traceparent: trail.traceparent(),
    }
}

/// The sessions, the action and the trail of a delivery.
pub fn from_delivery(d: pb::Delivery) -> Result<(Vec<u64>, DeliveryAction, Trail), ConvertError> {
    let trail = Trail::from_wire(d.received_us, d.traceparent.as_deref());
    let action = match d.what {
        Some(pb::delivery::What::Stanza(b)) => DeliveryAction::Stanza(b),
        Some(pb::delivery::What::Addressed(b)) => DeliveryAction::Addressed(b),
        Some(pb::delivery::What::Close(c)) => {
            let cond = StreamCondition::from_name(&c.condition)
                .ok_or(ConvertError::UnknownCondition(c.condition))?;
            DeliveryAction::Close(cond, c.text)
        }
        Some(pb::delivery::What::Processed(seq)) => DeliveryAction::Processed(seq),
        Some(pb::delivery::What::Redirect(seq)) => DeliveryAction::Redirect(seq),
        Some(pb::delivery::What::SmStart(_)) => DeliveryAction::SmStart,
        Some(pb::delivery::What::Remote(r)) => DeliveryAction::Remote(r.stanza, r.seq),
        None => return Err(ConvertError::EmptyDelivery),
    };
    Ok((d.sessions, action, trail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn stanzas() -> Vec<Stanza> {
        [
            &b"<message to='juliet@example.com/balcony' from='romeo@example.net/orchard' type='chat' id='m1' xml:lang='en'><body>Art thou not Romeo?</body></message>"[..],
            b"<presence/>",
            b"<presence from='romeo@example.net/orchard'><show>away</show><priority>5</priority></presence>",
            b"<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
            "<message to='\u{10d}a@example.com' type='normal'><body>&lt;&amp;&gt; \u{1f600}</body></message>".as_bytes(),
        ]
        .iter()
        .map(|raw| Stanza::parse(raw).expect("a valid stanza"))
        .collect()
    }

    #[test]
    fn every_stanza_survives_the_wire_unchanged() {
        for (i, mut st) in stanzas().into_iter().enumerate() {
            let shard = i as u32 * 7;
            // Every other one with a trail (a sampled trace).
            if i % 2 == 1 {
                st.trail = Trail::from_wire(
                    1_700_000_000_000_000 + i as u64,
                    Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                );
                assert!(st.trail.span.is_some());
            }
            let batch = pb::EnvelopeBatch {
                envelopes: vec![to_envelope(shard, &st)],
            };
            let bytes = batch.encode_to_vec();
            let mut back = pb::EnvelopeBatch::decode(bytes.as_slice()).expect("decodes");
            let (s, got) = from_envelope(back.envelopes.remove(0)).expect("converts");
            assert_eq!(s, shard);
            assert_eq!(got, st);
            // What the edge writes out of it is what it would have written.
            let jid = Jid::parse("x@y/z").expect("valid");
            assert_eq!(
                got.rewrite(Some(&jid), st.to.as_ref()),
                st.rewrite(Some(&jid), st.to.as_ref())
            );
        }
    }

    #[test]
    fn a_bad_envelope_is_an_error_not_a_panic() {
        let st = &stanzas()[0];
        let good = to_envelope(3, st);
        let mut e = good.clone();
        e.kind = 0;
        assert_eq!(from_envelope(e), Err(ConvertError::NoKind));
        let mut e = good.clone();
        e.kind = 99;
        assert_eq!(from_envelope(e), Err(ConvertError::NoKind));
        let mut e = good.clone();
        e.head_len = e.raw.len() as u32 + 1;
        assert!(matches!(
            from_envelope(e),
            Err(ConvertError::BadHead { .. })
        ));
        let mut e = good.clone();
        e.head_len = 0;
        assert!(matches!(
            from_envelope(e),
            Err(ConvertError::BadHead { .. })
        ));
        let mut e = good.clone();
        e.to = Some("@example.com".into());
        assert!(matches!(
            from_envelope(e),
            Err(ConvertError::BadJid { field: "to", .. })
        ));
        let mut e = good;
        e.from = Some(String::new());
        assert!(matches!(
            from_envelope(e),
            Err(ConvertError::BadJid { field: "from", .. })
        ));
        // Arbitrary bytes never decode into something that panics later.
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ n).collect();
            if let Ok(b) = pb::EnvelopeBatch::decode(junk.as_slice()) {
                for e in b.envelopes {
                    let _ = from_envelope(e);
                }
            }
        }
    }

    #[test]
    fn deliveries_carry_stanzas_and_closes() {
        let trail = Trail::from_wire(
            42,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        );
        let d = to_delivery(
            vec![1, 2, 3],
            DeliveryAction::Stanza(bytes::Bytes::from_static(b"<message/>")),
            &trail,
        );
        let d = pb::Delivery::decode(d.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(
            from_delivery(d),
            Ok((
                vec![1, 2, 3],
                DeliveryAction::Stanza(bytes::Bytes::from_static(b"<message/>")),
                trail
            ))
        );
        for cond in StreamCondition::ALL {
            let d = to_delivery(
                vec![9],
                DeliveryAction::Close(cond, Some("why".into())),
                &Trail::default(),
            );
            assert_eq!(
                from_delivery(d),
                Ok((
                    vec![9],
                    DeliveryAction::Close(cond, Some("why".into())),
                    Trail::default()
                ))
            );
        }
        let bad = pb::Delivery {
            sessions: vec![1],
            what: Some(pb::delivery::What::Close(pb::StreamClose {
                condition: "no-such-condition".into(),
                text: None,
            })),
            ..Default::default()
        };
        assert!(matches!(
            from_delivery(bad),
            Err(ConvertError::UnknownCondition(_))
        ));
        let empty = pb::Delivery {
            sessions: vec![1],
            what: None,
            ..Default::default()
        };
        assert_eq!(from_delivery(empty), Err(ConvertError::EmptyDelivery));
    }
}
