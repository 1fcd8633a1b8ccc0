//! Retrieve items (XEP-0060 §6.5): all, by id, the newest `max_items`, and
//! pages of a large node with Result Set Management (XEP-0059), newest
//! first. Expired items (`pubsub#item_expire`) are neither shown nor
//! counted (`expiry.rs`).

use proto::error::{StanzaCondition, StanzaError};
use proto::{Element, ns};

use super::expiry::sweep;
use super::{Handled, Req, at_node_home, check_access, internal, now_ms, pubsub_el, storable_id};
use crate::modules::Ctx;

/// The most items one answer carries.
const PAGE_MAX: usize = 1000;

/// A request's RSM window (XEP-0059 §2): how many, and after or before
/// which item id, or from which index (§2.6).
pub(crate) struct Rsm {
    pub max: Option<usize>,
    pub after: Option<String>,
    pub before: Option<String>,
    pub index: Option<usize>,
}

impl Rsm {
    pub fn parse(p: &Element) -> Result<Option<Rsm>, StanzaError> {
        let Some(set) = p.child("set", ns::RSM) else {
            return Ok(None);
        };
        let max = match set.child("max", ns::RSM) {
            Some(m) => Some(m.text().trim().parse::<usize>().map_err(|_| {
                StanzaError::with_text(StanzaCondition::BadRequest, "rsm max is not a number")
            })?),
            None => None,
        };
        let index = match set.child("index", ns::RSM) {
            Some(i) => Some(i.text().trim().parse::<usize>().map_err(|_| {
                StanzaError::with_text(StanzaCondition::BadRequest, "rsm index is not a number")
            })?),
            None => None,
        };
        Ok(Some(Rsm {
            max,
            after: set.child("after", ns::RSM).map(Element::text),
            before: set.child("before", ns::RSM).map(Element::text),
            index,
        }))
    }

    /// The page of `all` (the full result set, in order) this window asks
    /// for, at most `cap` long, and the index of its first entry: after an
    /// id, before one (the page that ends right before it, §2.5; an empty
    /// <before/> is the last page), or from an index (§2.6). An id that is
    /// not in the set is item-not-found (§2.7).
    pub fn page<'a, T>(
        &self,
        all: &'a [T],
        id: impl Fn(&T) -> &str,
        cap: usize,
    ) -> Result<(&'a [T], usize), StanzaError> {
        let max = self.max.unwrap_or(cap).min(cap);
        let len = all.len();
        let find = |want: &str| {
            all.iter()
                .position(|x| id(x) == want)
                .ok_or_else(|| StanzaError::new(StanzaCondition::ItemNotFound))
        };
        let (start, end) = match (&self.before, &self.after, self.index) {
            (Some(b), _, _) => {
                let end = if b.is_empty() { len } else { find(b)? };
                (end.saturating_sub(max), end)
            }
            (None, Some(a), _) => {
                let start = find(a)?.saturating_add(1);
                (start, start.saturating_add(max).min(len))
            }
            (None, None, Some(i)) => {
                let start = i.min(len);
                (start, start.saturating_add(max).min(len))
            }
            (None, None, None) => (0, max.min(len)),
        };
        Ok((all.get(start..end).unwrap_or_default(), start))
    }
}

/// The `<set/>` of an answer: first and last of the page and the count.
pub(crate) fn rsm_answer(
    first: Option<&str>,
    index: Option<usize>,
    last: Option<&str>,
    count: usize,
) -> Element {
    let mut set = Element::new("set", ns::RSM);
    if let Some(f) = first {
        let mut e = Element::new("first", ns::RSM).with_text(f);
        if let Some(i) = index {
            e.set_attr("index", i.to_string());
        }
        set.push(e);
    }
    if let Some(l) = last {
        set.push(Element::new("last", ns::RSM).with_text(l));
    }
    set.push(Element::new("count", ns::RSM).with_text(count.to_string()));
    set
}

/// §6.5: retrieve items.
pub(super) fn retrieve(ctx: &mut Ctx<'_>, req: &Req<'_>, p: &Element, a: &Element) -> Handled {
    at_node_home(ctx, req, a, |ctx, id| {
        let mut node = super::load(ctx, req, &id)?;
        let aff = super::affiliation(ctx, req, &id)?;
        check_access(ctx, req, &node, aff, false)?;
        if !node.config.persist_items {
            return Err(super::unsupported("persistent-items"));
        }
        // Expired items go first: not shown, not counted, and an id of
        // one is not found.
        sweep(ctx, req, &mut node)?;
        let store = ctx.store().pubsub();
        let now = now_ms();
        let alive = |i: &storage::pubsub::Item| super::expiry::alive(&node.config, i, now);
        let mut out = Element::new("items", ns::PUBSUB).with_attr("node", &id);
        // By id (§6.5.8).
        let wanted: Vec<&str> = a
            .elements()
            .filter(|e| e.name == "item")
            .filter_map(|e| e.attr("id"))
            .collect();
        if !wanted.is_empty() {
            // An id that cannot be stored is not there, like any other
            // missing one.
            for w in wanted.into_iter().filter(|w| storable_id(w)) {
                if let Some(item) = store
                    .item_in(&ctx.writes, &req.service, &id, w)
                    .map_err(internal)?
                    && alive(&item)
                {
                    out.push(retrieved(&item));
                }
            }
            return Ok(Some(pubsub_el(ns::PUBSUB, out)));
        }
        let max_items = match a.attr("max_items") {
            Some(m) => Some(m.parse::<usize>().map_err(|_| {
                StanzaError::with_text(StanzaCondition::BadRequest, "max_items is not a number")
            })?),
            None => None,
        };
        let rsm = Rsm::parse(p)?;
        let total = node.record.item_count as usize;
        // Newest first; a page after an item continues with older ones.
        // An id that cannot be stored (an empty <after/>, one over 1023
        // bytes) is no item of the node: item-not-found (XEP-0059 §2.7).
        let after_seq = match rsm.as_ref().and_then(|r| r.after.as_deref()) {
            Some(after) if !storable_id(after) => {
                return Err(StanzaError::new(StanzaCondition::ItemNotFound));
            }
            Some(after) => match store
                .item_in(&ctx.writes, &req.service, &id, after)
                .map_err(internal)?
            {
                Some(i) => Some(i.seq),
                None => return Err(StanzaError::new(StanzaCondition::ItemNotFound)),
            },
            None => None,
        };
        let limit = rsm
            .as_ref()
            .and_then(|r| r.max)
            .or(max_items)
            .unwrap_or(PAGE_MAX)
            .min(PAGE_MAX);
        // A page before an item (XEP-0059 §2.5): the newer ones next to
        // it, shown newest first like every page.
        let before_seq = match rsm.as_ref().and_then(|r| r.before.as_deref()) {
            Some("") => Some(0),
            Some(before) if !storable_id(before) => {
                return Err(StanzaError::new(StanzaCondition::ItemNotFound));
            }
            Some(before) => match store
                .item_in(&ctx.writes, &req.service, &id, before)
                .map_err(internal)?
            {
                Some(i) => Some(i.seq),
                None => return Err(StanzaError::new(StanzaCondition::ItemNotFound)),
            },
            None => None,
        };
        let items = match before_seq {
            // An empty <before/> asks for the last page: the oldest items.
            Some(0) => {
                let low = node.record.low_seq.checked_sub(1);
                let mut v = store
                    .items(&req.service, &id, false, low, limit)
                    .map_err(internal)?;
                v.reverse();
                v
            }
            Some(seq) => {
                let mut v = store
                    .items(&req.service, &id, false, Some(seq), limit)
                    .map_err(internal)?;
                v.reverse();
                v
            }
            None => store
                .items(&req.service, &id, true, after_seq, limit)
                .map_err(internal)?,
        };
        let shown: Vec<_> = items.into_iter().filter(|i| alive(i)).collect();
        for item in &shown {
            out.push(retrieved(item));
        }
        let mut answer = pubsub_el(ns::PUBSUB, out);
        if rsm.is_some() {
            // The index is known cheaply for the first page only (it is
            // optional, XEP-0059 §2.6).
            let index = (after_seq.is_none() && before_seq.is_none()).then_some(0);
            answer.push(rsm_answer(
                shown.first().map(|i| i.id.as_str()),
                index,
                shown.last().map(|i| i.id.as_str()),
                total,
            ));
        }
        Ok(Some(answer))
    })
}

/// An item as retrieval returns it (§6.5): with its payload whatever
/// `pubsub#deliver_payloads` says, which governs notifications only (§4.3:
/// a notification-only node's subscribers fetch the payload here).
fn retrieved(item: &storage::pubsub::Item) -> Element {
    let mut it = Element::new("item", ns::PUBSUB).with_attr("id", &item.id);
    if let Some(p) = &item.publisher {
        it.set_attr("publisher", p.as_str());
    }
    if let Ok(payload) = Element::parse(&item.payload, "", &[]) {
        it.push(payload);
    }
    it
}
