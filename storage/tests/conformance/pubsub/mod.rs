//! `Pubsub` (XEP-0060 and PEP, XEP-0163): nodes, affiliations,
//! subscriptions and items with their reverse indexes, planned into
//! batches and committed with `Store::apply` (the core commits the same
//! batches through Raft).

mod deletion;
mod durability;
mod items;
mod nodes;
mod subscriptions;

use proto::Jid;
use storage::pubsub::{MAX_ID_LEN, home};
use storage::{
    Affiliation, Batch, Item, ItemWrite, NodeRecord, StorageError, Subscription, SubscriptionState,
};

use super::corruption::{is_corrupt, poke};
use super::*;

pub fn svc() -> BareJid {
    jid("pubsub.x")
}

pub fn full(s: &str) -> Jid {
    Jid::parse(s).expect("test jid")
}

pub fn create(s: &Store, service: &BareJid, node: &str, creator: &str) {
    let mut b = Batch::new();
    let rec = NodeRecord::new(jid(creator), 1_000, br#"{"max_items":10}"#.to_vec());
    s.pubsub()
        .put_node_in(&mut b, service, node, &rec)
        .expect("plan node");
    s.apply(&b).expect("commit");
}

pub fn record(s: &Store, service: &BareJid, node: &str) -> NodeRecord {
    s.pubsub()
        .node_in(&Batch::new(), service, node)
        .expect("read node")
        .expect("node exists")
}

/// Publishes one item in a batch of its own, as the router would.
pub fn publish(s: &Store, service: &BareJid, node: &str, id: &str, payload: &str) -> ItemWrite {
    let p = s.pubsub();
    let mut b = Batch::new();
    let mut rec = p.node_in(&b, service, node).expect("read").expect("node");
    let w = p
        .put_item_in(
            &mut b,
            service,
            node,
            &mut rec,
            id,
            Some(&full("pub@x/desk")),
            payload.as_bytes(),
            2_000,
        )
        .expect("plan item");
    p.put_node_in(&mut b, service, node, &rec)
        .expect("plan node");
    s.apply(&b).expect("commit");
    w
}

pub fn ids(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.id.as_str()).collect()
}

pub fn all_items(s: &Store, service: &BareJid, node: &str) -> Vec<Item> {
    s.pubsub()
        .items(service, node, false, None, usize::MAX)
        .expect("items")
}

pub fn sub(j: &str, subid: &str) -> Subscription {
    Subscription {
        jid: full(j),
        subid: subid.into(),
        state: SubscriptionState::Subscribed,
        options: br#"{"deliver":true}"#.to_vec(),
    }
}

pub fn subscribe(s: &Store, service: &BareJid, node: &str, sub: &Subscription) {
    let mut b = Batch::new();
    s.pubsub()
        .put_subscription_in(&mut b, service, node, sub)
        .expect("plan subscription");
    s.apply(&b).expect("commit");
}

pub fn unsubscribe(s: &Store, service: &BareJid, node: &str, j: &str, subid: &str) -> bool {
    let mut b = Batch::new();
    let removed = s
        .pubsub()
        .remove_subscription_in(&mut b, service, node, &full(j), subid)
        .expect("plan unsubscribe");
    s.apply(&b).expect("commit");
    removed
}

pub fn affiliate(s: &Store, service: &BareJid, node: &str, j: &str, a: Option<Affiliation>) {
    let mut b = Batch::new();
    s.pubsub()
        .set_affiliation_in(&mut b, service, node, &jid(j), a)
        .expect("plan affiliation");
    s.apply(&b).expect("commit");
}

pub fn delete_node(s: &Store, service: &BareJid, node: &str) -> bool {
    let mut b = Batch::new();
    let existed = s
        .pubsub()
        .delete_node_in(&mut b, service, node)
        .expect("plan delete");
    s.apply(&b).expect("commit");
    existed
}

/// A node with a bit of everything: items, affiliations, subscriptions of
/// bare and full JIDs, several subids.
pub fn populate_node(s: &Store, service: &BareJid, node: &str) {
    create(s, service, node, "owner@x");
    affiliate(s, service, node, "owner@x", Some(Affiliation::Owner));
    affiliate(s, service, node, "pub@x", Some(Affiliation::Publisher));
    subscribe(s, service, node, &sub("bo@y", ""));
    subscribe(s, service, node, &sub("bo@y/phone", "1"));
    subscribe(s, service, node, &sub("bo@y/phone", "2"));
    subscribe(s, service, node, &sub("cy@z/desk", ""));
    for i in 0..3 {
        publish(
            s,
            service,
            node,
            &format!("item{i}"),
            &format!("<p>{i}</p>"),
        );
    }
}

pub fn is_invalid_id<T: std::fmt::Debug>(r: Result<T, StorageError>) -> bool {
    matches!(r, Err(StorageError::InvalidId { .. }))
}
