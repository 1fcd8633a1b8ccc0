//! MUC rooms and PubSub nodes as operators name them, for the admin HTTP
//! API and the admin socket alike: the service a call means (named, or
//! the one of a one-domain server), checked against this server's
//! configuration, and the room JIDs, node ids and reasons it takes.

use proto::BareJid;
use router::Core;

/// Longest destroy reason taken.
pub const MAX_REASON_BYTES: usize = 1024;

/// Which kind of service a call is about.
#[derive(Debug, Clone, Copy)]
pub enum Service {
    Muc,
    Pubsub,
}

/// The service `named`, or, when none is named, the one service of the
/// kind on a server of one domain.
pub fn named_or_default(core: &Core, named: Option<&str>, kind: Service) -> Result<String, String> {
    if let Some(s) = named {
        return Ok(s.to_string());
    }
    let cfg = core.config();
    let (what, default) = match (kind, cfg.domains.as_slice()) {
        (Service::Muc, [one]) => ("MUC", cfg.muc_service(one)),
        (Service::Pubsub, [_]) => ("PubSub", cfg.pubsub_services().into_iter().next()),
        _ => {
            return Err(
                "this server serves several domains: name the service (service=...)".into(),
            );
        }
    };
    default.ok_or_else(|| format!("{what} is off on this server"))
}

/// `raw` as a MUC service of this server, in normal form.
pub fn muc_service(core: &Core, raw: &str) -> Result<String, String> {
    let svc = BareJid::parse(raw)
        .ok()
        .filter(|j| j.local().is_none())
        .ok_or_else(|| format!("{raw:?} is not a domain"))?;
    if !core.config().is_muc_service(svc.domain()) {
        return Err(format!("{svc} is not a MUC service of this server"));
    }
    Ok(svc.to_string())
}

/// `raw` as the JID of a room (`room@service`) of one of this server's
/// MUC services.
pub fn room_jid(core: &Core, raw: &str) -> Result<BareJid, String> {
    let room = BareJid::parse(raw)
        .ok()
        .filter(|j| j.local().is_some())
        .ok_or_else(|| format!("{raw:?} is not a room JID (room@service)"))?;
    muc_service(core, room.domain())?;
    Ok(room)
}

/// `raw` as a PubSub service of this server: a service domain, or an
/// account of a served domain (its PEP service).
pub fn pubsub_service(core: &Core, raw: &str) -> Result<BareJid, String> {
    let svc = BareJid::parse(raw).map_err(|e| format!("{raw:?} is not a JID: {e}"))?;
    let cfg = core.config();
    let ok = match svc.local() {
        None => cfg.is_pubsub_service(svc.domain()),
        Some(_) => cfg.serves(svc.domain()),
    };
    if !ok {
        return Err(format!(
            "{svc} is neither a PubSub service of this server nor an account's (PEP)"
        ));
    }
    Ok(svc)
}

/// `raw` as a node id the store takes.
pub fn node_id(raw: &str) -> Result<&str, String> {
    let max = storage::pubsub::MAX_ID_LEN;
    if raw.is_empty() || raw.len() > max || raw.contains('\0') {
        return Err(format!("a node id is 1 to {max} bytes without NUL"));
    }
    Ok(raw)
}

/// A destroy reason of at most [`MAX_REASON_BYTES`], of characters XML
/// can carry (it goes to the occupants in their presence).
pub fn reason(raw: Option<&str>) -> Result<Option<String>, String> {
    match raw {
        Some(r) if r.len() > MAX_REASON_BYTES => {
            Err(format!("a reason is at most {MAX_REASON_BYTES} bytes"))
        }
        Some(r) if !r.chars().all(xml_char) => Err(
            "a reason may not hold control characters (other than tab and line breaks) or U+FFFE/U+FFFF"
                .into(),
        ),
        other => Ok(other.map(str::to_string)),
    }
}

/// Whether XML 1.0 allows `c` in text (§2.2).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// An alternate venue for a destroyed room: a room's bare JID.
pub fn alternate(raw: Option<&str>) -> Result<Option<proto::Jid>, String> {
    let Some(a) = raw else { return Ok(None) };
    match BareJid::parse(a) {
        Ok(j) if j.local().is_some() => Ok(Some(proto::Jid::Bare(j))),
        _ => Err(format!(
            "alternate: {a:?} is not a room's JID (room@service)"
        )),
    }
}
