//! XEP-0049 Private XML Storage, and XEP-0048 bookmarks kept in step with
//! XEP-0402 PEP Native Bookmarks (XEP-0402 §5, compatibility).
//!
//! The account's bookmarks live in one place, its PEP node
//! `urn:xmpp:bookmarks:1` (one item per room, its id the room's JID, kept
//! private: whitelist access). A client of the older kind (mcabber,
//! poezio, profanity) that stores `<storage xmlns='storage:bookmarks'/>`
//! in private XML has each conference of it published there, and the ones
//! it left out retracted; reading it builds the element from that node. So
//! a bookmark added with either kind of client shows in both, and stays
//! after reconnecting. URL bookmarks, which XEP-0402 has no place for,
//! stay in private storage. Every other element is stored as given, each
//! of several in one set (XEP-0049 §2.3) under its name and namespace.

use proto::error::{StanzaCondition, StanzaError};
use proto::stanza::Stanza;
use proto::{Element, Jid, ns};

use super::Ctx;
use super::handler::{IqHandler, Target, TargetKind};
use super::pubsub::Req;
use super::pubsub::pep::{
    bookmarks_config, owner_items, owner_keep_max, owner_publish, owner_retract,
};

pub(crate) struct Private {
    /// Largest stored element, in bytes of XML.
    pub max_bytes: usize,
}

/// The feature that says XEP-0048 bookmarks in private storage and
/// XEP-0402 bookmarks are one list (XEP-0402 §5.3).
const BOOKMARKS_COMPAT: &str = "urn:xmpp:bookmarks:1#compat";

/// The most conferences one bookmarks element may carry.
const MAX_BOOKMARKS: usize = 1000;

impl IqHandler for Private {
    fn namespace(&self) -> &'static str {
        ns::PRIVATE
    }
    fn targets(&self) -> &'static [TargetKind] {
        &[TargetKind::OwnAccount, TargetKind::Account]
    }
    fn features(&self, t: TargetKind) -> &'static [&'static str] {
        match t {
            // XEP-0402 §5.3: XEP-0048 bookmarks in private storage are
            // kept in step with the PEP bookmarks.
            TargetKind::OwnAccount => &[ns::PRIVATE, BOOKMARKS_COMPAT],
            _ => &[],
        }
    }
    fn handle(&self, ctx: &mut Ctx<'_>, iq: &Stanza, p: &Element, t: &Target) {
        // §3: nobody reads or writes another account's private data.
        if !matches!(t, Target::OwnAccount) {
            return ctx.bounce(iq, StanzaCondition::Forbidden, None);
        }
        let r = self.handle_own(ctx, iq, p);
        match r {
            Ok(payload) => ctx.iq_result(iq, payload.as_ref()),
            Err(e) => ctx.bounce_with(iq, &e),
        }
    }
}

impl Private {
    fn handle_own(
        &self,
        ctx: &mut Ctx<'_>,
        iq: &Stanza,
        p: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        use StanzaCondition as C;
        let Some(req) = Req::pep_owner(iq) else {
            return Err(StanzaError::new(C::BadRequest));
        };
        // XEP-0049 §2.3: a set may hold several elements, of one
        // namespace or more; each is stored under its name and namespace
        // (a second of the same name and namespace replaces the first).
        // A get names one or more, each answered.
        let children: Vec<&Element> = p.elements().collect();
        if children.is_empty() {
            return Err(StanzaError::with_text(
                C::BadRequest,
                "an element to get or store",
            ));
        }
        // §3: the jabber: namespaces are not for private data.
        if children
            .iter()
            .any(|el| el.ns.starts_with("jabber:") || el.ns.is_empty())
        {
            return Err(StanzaError::with_text(
                C::NotAcceptable,
                "this namespace cannot hold private data",
            ));
        }
        let user = req.from_bare.clone();
        let store = ctx.store().private();
        let is_bookmarks = |el: &Element| el.name == "storage" && el.ns == ns::BOOKMARKS;
        if iq.stype() == "get" {
            let mut q = Element::new("query", ns::PRIVATE);
            for el in children {
                let stored = store
                    .get_in(&ctx.writes, &user, &el.name, &el.ns)
                    .map_err(super::pubsub::internal)?;
                let mut out = match stored.and_then(|x| Element::parse(&x, "", &[]).ok()) {
                    Some(e) => e,
                    None => Element::new(&el.name, &el.ns),
                };
                if is_bookmarks(el) {
                    out = bookmarks_from_pep(ctx, &req, out)?;
                }
                q.push(out);
            }
            return Ok(Some(q));
        }
        for el in children {
            let xml = el.to_xml("");
            if xml.len() > self.max_bytes {
                return Err(StanzaError::with_text(
                    C::NotAcceptable,
                    format!("private data is at most {} bytes", self.max_bytes),
                ));
            }
            let xml = if is_bookmarks(el) {
                bookmarks_to_pep(ctx, &req, el)?.to_xml("")
            } else {
                xml
            };
            store
                .put_in(&mut ctx.writes, &user, &el.name, &el.ns, xml.as_bytes())
                .map_err(super::pubsub::internal)?;
        }
        Ok(None)
    }
}

/// `storage` (with the URL bookmarks kept in private storage) completed
/// with a `<conference/>` for each item of the PEP bookmarks node.
fn bookmarks_from_pep(ctx: &Ctx<'_>, req: &Req<'_>, urls: Element) -> Result<Element, StanzaError> {
    let mut out = Element::new("storage", ns::BOOKMARKS);
    for item in owner_items(ctx, req, ns::BOOKMARKS2)?.into_iter().rev() {
        let Ok(c) = Element::parse(&item.payload, "", &[]) else {
            continue;
        };
        if c.name != "conference" || c.ns != ns::BOOKMARKS2 {
            continue;
        }
        let mut conf = Element::new("conference", ns::BOOKMARKS).with_attr("jid", &item.id);
        if let Some(n) = c.attr("name") {
            conf.set_attr("name", n);
        }
        let autojoin = matches!(c.attr("autojoin"), Some("true" | "1"));
        conf.set_attr("autojoin", if autojoin { "true" } else { "false" });
        for (child, name) in [("nick", "nick"), ("password", "password")] {
            if let Some(v) = c.child(child, ns::BOOKMARKS2) {
                conf.push(Element::new(name, ns::BOOKMARKS).with_text(v.text()));
            }
        }
        out.push(conf);
    }
    for u in urls.elements().filter(|e| e.name == "url") {
        out.push(u.clone());
    }
    Ok(out)
}

/// Publish each conference of a XEP-0048 `storage` to the PEP bookmarks
/// node and retract those not in it; returns what stays in private
/// storage (the URL bookmarks).
///
/// A conference is matched to the item of its room: by the item's id as
/// given (what reading handed out), else by the normalised JID (RFC
/// 7622), as a XEP-0402 client may have written the id in another case.
/// A matched item keeps its id and its `<extensions/>`, and an unchanged
/// one is not published again. Every bookmark acknowledged is kept: the
/// node is made to keep the most items (XEP-0402 §3, max_items=max) in
/// the same commit, and a list longer than the service keeps is refused.
fn bookmarks_to_pep(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    storage: &Element,
) -> Result<Element, StanzaError> {
    let mut keep = Element::new("storage", ns::BOOKMARKS);
    // (the jid as written, the room's bare JID normalised, the item)
    let mut wanted: Vec<(String, String, Element)> = Vec::new();
    for e in storage.elements() {
        match e.name.as_str() {
            "conference" => {
                let raw = e.attr("jid").unwrap_or_default();
                let Ok(jid) = Jid::parse(raw) else {
                    return Err(StanzaError::with_text(
                        StanzaCondition::BadRequest,
                        "a conference bookmark needs a valid jid",
                    ));
                };
                let room = jid.bare().to_string();
                // The room's JID is the item's id (XEP-0402 §3), which
                // the PEP service keys on: at most 1023 bytes.
                if room.len() > storage::pubsub::MAX_ID_LEN {
                    return Err(StanzaError::with_text(
                        StanzaCondition::NotAcceptable,
                        format!(
                            "a bookmarked room jid is at most {} bytes",
                            storage::pubsub::MAX_ID_LEN
                        ),
                    ));
                }
                let mut c = Element::new("conference", ns::BOOKMARKS2);
                if let Some(n) = e.attr("name") {
                    c.set_attr("name", n);
                }
                let autojoin = matches!(e.attr("autojoin"), Some("true" | "1"));
                c.set_attr("autojoin", if autojoin { "true" } else { "false" });
                for name in ["nick", "password"] {
                    if let Some(v) = e.child(name, ns::BOOKMARKS) {
                        c.push(Element::new(name, ns::BOOKMARKS2).with_text(v.text()));
                    }
                }
                wanted.push((raw.to_string(), room, c));
            }
            "url" => keep.push(e.clone()),
            _ => {}
        }
    }
    let kept = owner_keep_max(ctx, req, ns::BOOKMARKS2)?;
    let limit = MAX_BOOKMARKS.min(usize::try_from(kept).unwrap_or(usize::MAX));
    if wanted.len() > limit {
        return Err(StanzaError::with_text(
            StanzaCondition::NotAcceptable,
            format!("at most {limit} bookmarks"),
        ));
    }
    let existing = owner_items(ctx, req, ns::BOOKMARKS2)?;
    let normalised = |id: &str| {
        Jid::parse(id)
            .map(|j| j.bare().to_string())
            .unwrap_or_else(|_| id.to_string())
    };
    let mut claimed = vec![false; existing.len()];
    let mut plan = Vec::with_capacity(wanted.len());
    for (raw, room, c) in wanted {
        let at = (0..existing.len())
            .find(|&k| !claimed[k] && existing[k].id == raw)
            .or_else(|| {
                (0..existing.len()).find(|&k| !claimed[k] && normalised(&existing[k].id) == room)
            });
        if let Some(k) = at {
            claimed[k] = true;
        }
        plan.push((at, room, c));
    }
    for (item, _) in existing.iter().zip(&claimed).filter(|(_, c)| !**c) {
        owner_retract(ctx, req, ns::BOOKMARKS2, &item.id)?;
    }
    for (at, room, mut c) in plan {
        let old = at.map(|k| &existing[k]);
        let id = old.map_or(room, |i| i.id.clone());
        let old = old.and_then(|i| Element::parse(&i.payload, "", &[]).ok());
        // XEP-0048 has no place for what XEP-0402 clients keep in
        // <extensions/>: an older client's write keeps it.
        if let Some(ext) = old
            .as_ref()
            .and_then(|o| o.child("extensions", ns::BOOKMARKS2))
        {
            c.push(ext.clone());
        }
        if old.as_ref() != Some(&c) {
            owner_publish(ctx, req, ns::BOOKMARKS2, &id, &c, bookmarks_config)?;
        }
    }
    Ok(keep)
}
