//! `Pubsub` (XEP-0060 and PEP, XEP-0163): nodes, affiliations,
//! subscriptions and items with their reverse indexes, planned into
//! batches and committed with `Store::apply` (the core commits the same
//! batches through Raft).

use proto::Jid;
use storage::pubsub::{MAX_ID_LEN, home};
use storage::{
    Affiliation, Batch, Item, ItemWrite, NodeRecord, StorageError, Subscription, SubscriptionState,
};

use super::corruption::{is_corrupt, poke};
use super::*;

fn svc() -> BareJid {
    jid("pubsub.x")
}

fn full(s: &str) -> Jid {
    Jid::parse(s).expect("test jid")
}

fn create(s: &Store, service: &BareJid, node: &str, creator: &str) {
    let mut b = Batch::new();
    let rec = NodeRecord::new(jid(creator), 1_000, br#"{"max_items":10}"#.to_vec());
    s.pubsub()
        .put_node_in(&mut b, service, node, &rec)
        .expect("plan node");
    s.apply(&b).expect("commit");
}

fn record(s: &Store, service: &BareJid, node: &str) -> NodeRecord {
    s.pubsub()
        .node_in(&Batch::new(), service, node)
        .expect("read node")
        .expect("node exists")
}

/// Publishes one item in a batch of its own, as the router would.
fn publish(s: &Store, service: &BareJid, node: &str, id: &str, payload: &str) -> ItemWrite {
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

fn ids(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.id.as_str()).collect()
}

fn all_items(s: &Store, service: &BareJid, node: &str) -> Vec<Item> {
    s.pubsub()
        .items(service, node, false, None, usize::MAX)
        .expect("items")
}

fn sub(j: &str, subid: &str) -> Subscription {
    Subscription {
        jid: full(j),
        subid: subid.into(),
        state: SubscriptionState::Subscribed,
        options: br#"{"deliver":true}"#.to_vec(),
    }
}

fn subscribe(s: &Store, service: &BareJid, node: &str, sub: &Subscription) {
    let mut b = Batch::new();
    s.pubsub()
        .put_subscription_in(&mut b, service, node, sub)
        .expect("plan subscription");
    s.apply(&b).expect("commit");
}

fn unsubscribe(s: &Store, service: &BareJid, node: &str, j: &str, subid: &str) -> bool {
    let mut b = Batch::new();
    let removed = s
        .pubsub()
        .remove_subscription_in(&mut b, service, node, &full(j), subid)
        .expect("plan unsubscribe");
    s.apply(&b).expect("commit");
    removed
}

fn affiliate(s: &Store, service: &BareJid, node: &str, j: &str, a: Option<Affiliation>) {
    let mut b = Batch::new();
    s.pubsub()
        .set_affiliation_in(&mut b, service, node, &jid(j), a)
        .expect("plan affiliation");
    s.apply(&b).expect("commit");
}

fn delete_node(s: &Store, service: &BareJid, node: &str) -> bool {
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
fn populate_node(s: &Store, service: &BareJid, node: &str) {
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

fn is_invalid_id<T: std::fmt::Debug>(r: Result<T, StorageError>) -> bool {
    matches!(r, Err(StorageError::InvalidId { .. }))
}

#[test]
fn nodes_are_listed_in_byte_order_with_paging_and_counted_per_creator() {
    let (_d, s) = fresh();
    let p = s.pubsub();
    let service = svc();
    assert!(p.nodes(&service, None, 10).expect("nodes").is_empty());
    for (n, creator) in [("c", "al@x"), ("a", "al@x"), ("b", "bo@y"), ("ab", "al@x")] {
        create(&s, &service, n, creator);
    }
    // Another service's nodes are not listed.
    create(&s, &jid("pubsub.xy"), "a", "al@x");
    assert_eq!(
        p.nodes(&service, None, 10).expect("nodes"),
        ["a", "ab", "b", "c"]
    );
    assert_eq!(p.nodes(&service, None, 2).expect("nodes"), ["a", "ab"]);
    assert_eq!(p.nodes(&service, Some("a"), 2).expect("nodes"), ["ab", "b"]);
    assert_eq!(p.nodes(&service, Some("b"), 10).expect("nodes"), ["c"]);
    assert_eq!(p.nodes(&service, Some("bb"), 10).expect("nodes"), ["c"]);
    assert!(p.nodes(&service, Some("c"), 10).expect("nodes").is_empty());
    assert!(p.nodes(&service, None, 0).expect("nodes").is_empty());
    assert_eq!(p.nodes_created_by(&service, &jid("al@x")).expect("n"), 3);
    assert_eq!(p.nodes_created_by(&service, &jid("bo@y")).expect("n"), 1);
    assert_eq!(p.nodes_created_by(&service, &jid("cy@z")).expect("n"), 0);
    assert_eq!(
        p.nodes_created_by(&jid("pubsub.xy"), &jid("al@x"))
            .expect("n"),
        1
    );
    // Rewriting a node's record does not count it twice.
    publish(&s, &service, "a", "i", "<p/>");
    assert_eq!(p.nodes_created_by(&service, &jid("al@x")).expect("n"), 3);
    assert!(delete_node(&s, &service, "a"));
    assert!(!delete_node(&s, &service, "a"));
    assert_eq!(p.nodes_created_by(&service, &jid("al@x")).expect("n"), 2);
    assert_eq!(
        p.nodes(&service, None, 10).expect("nodes"),
        ["ab", "b", "c"]
    );
}

#[test]
fn node_records_round_trip() {
    let (_d, s) = fresh();
    let service = svc();
    create(&s, &service, "n", "al@x");
    let rec = record(&s, &service, "n");
    assert_eq!(
        rec,
        NodeRecord {
            creator: jid("al@x"),
            created_ms: 1_000,
            config: br#"{"max_items":10}"#.to_vec(),
            next_seq: 1,
            item_count: 0,
        }
    );
    let changed = NodeRecord {
        config: b"{}".to_vec(),
        ..rec
    };
    let mut b = Batch::new();
    s.pubsub()
        .put_node_in(&mut b, &service, "n", &changed)
        .expect("plan");
    s.apply(&b).expect("commit");
    assert_eq!(record(&s, &service, "n"), changed);
    assert_eq!(
        s.pubsub()
            .node_in(&Batch::new(), &service, "other")
            .expect("read"),
        None
    );
}

#[test]
fn node_ids_with_slashes_spaces_unicode_and_maximum_length_work() {
    let (_d, s) = fresh();
    let p = s.pubsub();
    let service = svc();
    let longest = "é".repeat(MAX_ID_LEN / 2) + "x"; // 1023 bytes
    assert_eq!(longest.len(), MAX_ID_LEN);
    let names = [
        "a/b/c",
        "with space",
        "ünïcødé ☃",
        "urn:xmpp:microblog:0",
        "a",
        longest.as_str(),
    ];
    for n in names {
        populate_node(&s, &service, n);
    }
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.sort();
    assert_eq!(p.nodes(&service, None, 100).expect("nodes"), sorted);
    for n in names {
        assert_eq!(
            ids(&all_items(&s, &service, n)),
            ["item0", "item1", "item2"]
        );
        assert_eq!(p.subscription_count(&service, n).expect("count"), 4);
        assert_eq!(p.affiliations(&service, n).expect("affs").len(), 2);
    }
    // "a" is a prefix of "a/b/c": deleting it leaves the other whole.
    assert!(delete_node(&s, &service, "a"));
    assert!(all_items(&s, &service, "a").is_empty());
    assert_eq!(all_items(&s, &service, "a/b/c").len(), 3);
    assert_eq!(p.subscription_count(&service, "a/b/c").expect("count"), 4);
    let of_bo = p.subscriptions_by(&service, &full("bo@y")).expect("by");
    assert_eq!(of_bo.len(), 3 * (names.len() - 1));
    assert!(of_bo.iter().all(|(n, _)| n != "a"));
    // Item ids follow the same rules and may be long too.
    publish(&s, &service, "with space", &longest, "<p/>");
    assert!(
        p.item_in(&Batch::new(), &service, "with space", &longest)
            .expect("item")
            .is_some()
    );
}

#[test]
fn empty_nul_and_overlong_ids_are_refused_with_a_clear_error() {
    let (_d, s) = fresh();
    let p = s.pubsub();
    let service = svc();
    create(&s, &service, "ok", "al@x");
    let too_long = "n".repeat(MAX_ID_LEN + 1);
    let mut rec = record(&s, &service, "ok");
    for bad in ["", "a\0b", too_long.as_str()] {
        let mut b = Batch::new();
        let e = Batch::new();
        assert!(is_invalid_id(p.node_in(&e, &service, bad)), "{bad:?}");
        assert!(is_invalid_id(p.put_node_in(&mut b, &service, bad, &rec)));
        assert!(is_invalid_id(p.delete_node_in(&mut b, &service, bad)));
        assert!(is_invalid_id(p.items(&service, bad, true, None, 1)));
        assert!(is_invalid_id(p.subscriptions(&service, bad)));
        assert!(is_invalid_id(p.put_subscription_in(
            &mut b,
            &service,
            bad,
            &sub("bo@y", "")
        )));
        assert!(is_invalid_id(p.set_affiliation_in(
            &mut b,
            &service,
            bad,
            &jid("bo@y"),
            Some(Affiliation::Member)
        )));
        // As item ids, too.
        assert!(is_invalid_id(p.put_item_in(
            &mut b, &service, "ok", &mut rec, bad, None, b"", 0
        )));
        assert!(is_invalid_id(p.item_in(&e, &service, "ok", bad)));
        assert!(b.is_empty(), "nothing planned for {bad:?}");
    }
    // Subscription ids may be empty but not hold NUL or be too long.
    let mut b = Batch::new();
    for bad in ["a\0", too_long.as_str()] {
        assert!(is_invalid_id(p.put_subscription_in(
            &mut b,
            &service,
            "ok",
            &sub("bo@y", bad)
        )));
    }
    assert!(b.is_empty());
    let e = p.node_in(&Batch::new(), &service, "").expect_err("refused");
    assert_eq!(
        e.to_string(),
        "pubsub node id cannot be stored: it is empty"
    );
    assert_eq!(rec, record(&s, &service, "ok"), "the record is untouched");
}

#[test]
fn planned_writes_are_seen_through_the_pending_batch_only() {
    let (_d, s) = fresh();
    let p = s.pubsub();
    let service = svc();
    let e = Batch::new();
    let mut b = Batch::new();
    let mut rec = NodeRecord::new(jid("al@x"), 5, Vec::new());
    p.put_node_in(&mut b, &service, "n", &rec).expect("plan");
    p.set_affiliation_in(
        &mut b,
        &service,
        "n",
        &jid("al@x"),
        Some(Affiliation::Owner),
    )
    .expect("plan");
    p.put_subscription_in(&mut b, &service, "n", &sub("bo@y/r", "1"))
        .expect("plan");
    p.put_subscription_in(&mut b, &service, "n", &sub("bo@y/r", "2"))
        .expect("plan");
    p.put_item_in(&mut b, &service, "n", &mut rec, "i", None, b"<x/>", 9)
        .expect("plan");
    p.put_node_in(&mut b, &service, "n", &rec).expect("plan");

    assert_eq!(
        p.node_in(&b, &service, "n").expect("read"),
        Some(rec.clone())
    );
    assert_eq!(p.node_in(&e, &service, "n").expect("read"), None);
    assert_eq!(
        p.affiliation_in(&b, &service, "n", &jid("al@x"))
            .expect("read"),
        Some(Affiliation::Owner)
    );
    assert_eq!(
        p.affiliation_in(&e, &service, "n", &jid("al@x"))
            .expect("read"),
        None
    );
    let mine = p
        .subscriptions_of_in(&b, &service, "n", &full("bo@y/r"))
        .expect("read");
    assert_eq!(mine, [sub("bo@y/r", "1"), sub("bo@y/r", "2")]);
    // Exactly that JID: not its bare JID nor another resource.
    assert!(
        p.subscriptions_of_in(&b, &service, "n", &full("bo@y"))
            .expect("read")
            .is_empty()
    );
    let item = p
        .item_in(&b, &service, "n", "i")
        .expect("read")
        .expect("item");
    assert_eq!((item.seq, item.payload.as_slice()), (1, &b"<x/>"[..]));
    assert_eq!(p.item_in(&e, &service, "n", "i").expect("read"), None);
    // Scans read the committed state.
    assert!(p.subscriptions(&service, "n").expect("subs").is_empty());
    assert!(p.nodes(&service, None, 10).expect("nodes").is_empty());

    s.apply(&b).expect("commit");
    assert_eq!(p.node_in(&e, &service, "n").expect("read"), Some(rec));
    assert_eq!(p.subscriptions(&service, "n").expect("subs").len(), 2);

    // Committed subscriptions with planned changes over them.
    let mut b = Batch::new();
    assert!(
        p.remove_subscription_in(&mut b, &service, "n", &full("bo@y/r"), "1")
            .expect("plan")
    );
    assert!(
        !p.remove_subscription_in(&mut b, &service, "n", &full("bo@y/r"), "1")
            .expect("plan again"),
        "already removed in the batch"
    );
    let mut pending = sub("bo@y/r", "2");
    pending.state = SubscriptionState::Pending;
    p.put_subscription_in(&mut b, &service, "n", &pending)
        .expect("plan");
    p.put_subscription_in(&mut b, &service, "n", &sub("bo@y/r", "3"))
        .expect("plan");
    assert_eq!(
        p.subscriptions_of_in(&b, &service, "n", &full("bo@y/r"))
            .expect("read"),
        [pending, sub("bo@y/r", "3")]
    );
}

#[test]
fn publishing_hands_out_increasing_sequence_numbers_and_counts_items() {
    let (_d, s) = fresh();
    let service = svc();
    create(&s, &service, "n", "al@x");
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        let w = publish(&s, &service, "n", id, "<p/>");
        assert_eq!(
            w,
            ItemWrite {
                replaced: false,
                seq: i as u64 + 1
            }
        );
    }
    let rec = record(&s, &service, "n");
    assert_eq!((rec.next_seq, rec.item_count), (4, 3));
    let b = s
        .pubsub()
        .item_in(&Batch::new(), &service, "n", "b")
        .expect("read")
        .expect("item");
    assert_eq!(
        b,
        Item {
            id: "b".into(),
            seq: 2,
            publisher: Some(full("pub@x/desk")),
            published_ms: 2_000,
            payload: b"<p/>".to_vec(),
        }
    );
    // Two publishes in one batch get two sequence numbers.
    let p = s.pubsub();
    let mut batch = Batch::new();
    let mut rec = p.node_in(&batch, &service, "n").expect("r").expect("n");
    let x = p
        .put_item_in(&mut batch, &service, "n", &mut rec, "x", None, b"", 1)
        .expect("x");
    let y = p
        .put_item_in(&mut batch, &service, "n", &mut rec, "y", None, b"", 1)
        .expect("y");
    p.put_node_in(&mut batch, &service, "n", &rec)
        .expect("node");
    s.apply(&batch).expect("commit");
    assert_eq!((x.seq, y.seq), (4, 5));
    assert_eq!(record(&s, &service, "n").item_count, 5);
    assert_eq!(
        ids(&all_items(&s, &service, "n")),
        ["a", "b", "c", "x", "y"]
    );
    let y = p.last_item(&service, "n").expect("last").expect("some");
    assert_eq!((y.id.as_str(), y.publisher), ("y", None));
}

#[test]
fn replacing_an_item_keeps_one_copy_and_moves_it_to_newest() {
    let (d, s) = fresh();
    let service = svc();
    create(&s, &service, "n", "al@x");
    for id in ["a", "b", "c"] {
        publish(&s, &service, "n", id, "<v1/>");
    }
    let w = publish(&s, &service, "n", "a", "<v2/>");
    assert_eq!(
        w,
        ItemWrite {
            replaced: true,
            seq: 4
        }
    );
    let items = all_items(&s, &service, "n");
    assert_eq!(ids(&items), ["b", "c", "a"]);
    assert_eq!(items[2].payload, b"<v2/>");
    assert_eq!(items[2].seq, 4);
    let rec = record(&s, &service, "n");
    assert_eq!((rec.item_count, rec.next_seq), (3, 5));
    let last = s.pubsub().last_item(&service, "n").expect("last");
    assert_eq!(last.map(|i| i.id), Some("a".to_string()));
    // Replacing twice in one batch still leaves one copy.
    let p = s.pubsub();
    let mut b = Batch::new();
    let mut rec = p.node_in(&b, &service, "n").expect("r").expect("n");
    for v in ["<v3/>", "<v4/>"] {
        let w = p
            .put_item_in(&mut b, &service, "n", &mut rec, "b", None, v.as_bytes(), 3)
            .expect("plan");
        assert!(w.replaced);
    }
    p.put_node_in(&mut b, &service, "n", &rec).expect("plan");
    s.apply(&b).expect("commit");
    let items = all_items(&s, &service, "n");
    assert_eq!(ids(&items), ["c", "a", "b"]);
    assert_eq!(items[2].payload, b"<v4/>");
    assert_eq!(record(&s, &service, "n").item_count, 3);
    // One id record and one body per item, nothing more.
    drop(s);
    let items_kinds: Vec<u8> = raw_records(d.path(), "pubsub")
        .iter()
        .map(|(k, _)| k[0])
        .filter(|&k| k == 0x04 || k == 0x05)
        .collect();
    assert_eq!(items_kinds, [4, 4, 4, 5, 5, 5]);
}

#[test]
fn trim_keeps_the_newest_n() {
    let (_d, s) = fresh();
    let p = s.pubsub();
    let service = svc();
    create(&s, &service, "n", "al@x");
    for i in 0..6 {
        publish(&s, &service, "n", &format!("i{i}"), "<p/>");
    }
    let trim = |keep: u64| {
        let mut b = Batch::new();
        let mut rec = p.node_in(&b, &service, "n").expect("r").expect("n");
        let gone = p
            .trim_in(&mut b, &service, "n", &mut rec, keep)
            .expect("trim");
        p.put_node_in(&mut b, &service, "n", &rec).expect("node");
        s.apply(&b).expect("commit");
        gone
    };
    assert!(trim(10).is_empty());
    assert!(trim(6).is_empty());
    assert_eq!(trim(4), ["i0", "i1"]);
    assert_eq!(ids(&all_items(&s, &service, "n")), ["i2", "i3", "i4", "i5"]);
    assert_eq!(record(&s, &service, "n").item_count, 4);
    assert_eq!(
        p.item_in(&Batch::new(), &service, "n", "i0").expect("read"),
        None
    );

    // Publish and trim in one batch (max_items reached): the new item
    // counts, the replaced one is not trimmed twice.
    let mut b = Batch::new();
    let mut rec = p.node_in(&b, &service, "n").expect("r").expect("n");
    p.put_item_in(&mut b, &service, "n", &mut rec, "new", None, b"", 1)
        .expect("publish");
    p.put_item_in(&mut b, &service, "n", &mut rec, "i2", None, b"", 1)
        .expect("replace the oldest");
    assert_eq!(
        p.trim_in(&mut b, &service, "n", &mut rec, 3).expect("trim"),
        ["i3", "i4"]
    );
    p.put_node_in(&mut b, &service, "n", &rec).expect("node");
    s.apply(&b).expect("commit");
    assert_eq!(ids(&all_items(&s, &service, "n")), ["i5", "new", "i2"]);
    assert_eq!(record(&s, &service, "n").item_count, 3);

    // Keeping none empties the node, planned items included.
    let mut b = Batch::new();
    let mut rec = p.node_in(&b, &service, "n").expect("r").expect("n");
    p.put_item_in(&mut b, &service, "n", &mut rec, "last", None, b"", 1)
        .expect("publish");
    assert_eq!(
        p.trim_in(&mut b, &service, "n", &mut rec, 0).expect("trim"),
        ["i5", "new", "i2", "last"]
    );
    p.put_node_in(&mut b, &service, "n", &rec).expect("node");
    s.apply(&b).expect("commit");
    assert!(all_items(&s, &service, "n").is_empty());
    assert_eq!(record(&s, &service, "n").item_count, 0);
}

#[test]
fn retract_removes_one_item() {
    let (_d, s) = fresh();
    let p = s.pubsub();
    let service = svc();
    create(&s, &service, "n", "al@x");
    for id in ["a", "b", "c"] {
        publish(&s, &service, "n", id, "<p/>");
    }
    let mut b = Batch::new();
    let mut rec = p.node_in(&b, &service, "n").expect("r").expect("n");
    assert!(
        p.retract_item_in(&mut b, &service, "n", &mut rec, "b")
            .expect("retract")
    );
    assert!(
        !p.retract_item_in(&mut b, &service, "n", &mut rec, "b")
            .expect("again")
    );
    assert!(
        !p.retract_item_in(&mut b, &service, "n", &mut rec, "zz")
            .expect("missing")
    );
    assert_eq!(p.item_in(&b, &service, "n", "b").expect("read"), None);
    p.put_node_in(&mut b, &service, "n", &rec).expect("node");
    s.apply(&b).expect("commit");
    assert_eq!(ids(&all_items(&s, &service, "n")), ["a", "c"]);
    assert_eq!(record(&s, &service, "n").item_count, 2);
    // The id can be published again, as the newest.
    publish(&s, &service, "n", "b", "<again/>");
    assert_eq!(ids(&all_items(&s, &service, "n")), ["a", "c", "b"]);
}

#[test]
fn purge_removes_every_item_and_sequence_numbers_carry_on() {
    let (_d, s) = fresh();
    let p = s.pubsub();
    let service = svc();
    create(&s, &service, "n", "al@x");
    create(&s, &service, "n2", "al@x");
    for id in ["a", "b", "c"] {
        publish(&s, &service, "n", id, "<p/>");
        publish(&s, &service, "n2", id, "<p/>");
    }
    subscribe(&s, &service, "n", &sub("bo@y", ""));
    let mut b = Batch::new();
    let mut rec = p.node_in(&b, &service, "n").expect("r").expect("n");
    p.purge_in(&mut b, &service, "n", &mut rec).expect("purge");
    assert_eq!(p.item_in(&b, &service, "n", "a").expect("read"), None);
    p.put_node_in(&mut b, &service, "n", &rec).expect("node");
    s.apply(&b).expect("commit");
    assert!(all_items(&s, &service, "n").is_empty());
    assert_eq!(p.last_item(&service, "n").expect("last"), None);
    assert_eq!(record(&s, &service, "n").item_count, 0);
    // The node, its subscribers and the other node stay.
    assert_eq!(p.subscription_count(&service, "n").expect("count"), 1);
    assert_eq!(all_items(&s, &service, "n2").len(), 3);
    assert_eq!(
        publish(&s, &service, "n", "a", "<p/>"),
        ItemWrite {
            replaced: false,
            seq: 4
        }
    );
    assert_eq!(record(&s, &service, "n").item_count, 1);
}

#[test]
fn items_page_newest_first_and_oldest_first() {
    let (_d, s) = fresh();
    let p = s.pubsub();
    let service = svc();
    create(&s, &service, "n", "al@x");
    assert!(
        p.items(&service, "n", true, None, 10)
            .expect("items")
            .is_empty()
    );
    for i in 1..=7 {
        publish(&s, &service, "n", &format!("i{i}"), "<p/>");
    }
    let page = |newest: bool, after: Option<u64>, limit: usize| {
        let items = p.items(&service, "n", newest, after, limit).expect("items");
        items.iter().map(|i| i.seq).collect::<Vec<_>>()
    };
    assert_eq!(page(true, None, 3), [7, 6, 5]);
    assert_eq!(page(true, Some(5), 3), [4, 3, 2]);
    assert_eq!(page(true, Some(2), 3), [1]);
    assert_eq!(page(true, Some(1), 3), Vec::<u64>::new());
    assert_eq!(page(false, None, 3), [1, 2, 3]);
    assert_eq!(page(false, Some(3), 3), [4, 5, 6]);
    assert_eq!(page(false, Some(6), 3), [7]);
    assert_eq!(page(false, Some(u64::MAX), 3), Vec::<u64>::new());
    assert_eq!(page(true, None, 0), Vec::<u64>::new());
    assert_eq!(page(true, Some(u64::MAX), 100).len(), 7);
    // A node with no items at all, and one that does not exist.
    assert_eq!(p.last_item(&service, "nope").expect("last"), None);
}

#[test]
fn affiliations_and_their_index_stay_in_step() {
    let (_d, s) = fresh();
    let p = s.pubsub();
    let service = svc();
    for n in ["n1", "n2", "n3"] {
        create(&s, &service, n, "al@x");
    }
    affiliate(&s, &service, "n1", "al@x", Some(Affiliation::Owner));
    affiliate(&s, &service, "n1", "bo@y", Some(Affiliation::Publisher));
    affiliate(&s, &service, "n2", "bo@y", Some(Affiliation::Member));
    affiliate(&s, &service, "n3", "bo@y", Some(Affiliation::Outcast));
    affiliate(&s, &service, "n3", "bo@yz", Some(Affiliation::PublishOnly));
    assert_eq!(
        p.affiliations(&service, "n1").expect("affs"),
        [
            (jid("al@x"), Affiliation::Owner),
            (jid("bo@y"), Affiliation::Publisher)
        ]
    );
    assert_eq!(
        p.affiliations_of(&service, &jid("bo@y")).expect("of"),
        [
            ("n1".to_string(), Affiliation::Publisher),
            ("n2".to_string(), Affiliation::Member),
            ("n3".to_string(), Affiliation::Outcast)
        ]
    );
    // Change, remove, and delete a node: the index follows.
    affiliate(&s, &service, "n1", "bo@y", Some(Affiliation::Owner));
    affiliate(&s, &service, "n2", "bo@y", None);
    assert!(delete_node(&s, &service, "n3"));
    assert_eq!(
        p.affiliations_of(&service, &jid("bo@y")).expect("of"),
        [("n1".to_string(), Affiliation::Owner)]
    );
    assert!(
        p.affiliations_of(&service, &jid("bo@yz"))
            .expect("of")
            .is_empty()
    );
    assert_eq!(
        p.affiliation_in(&Batch::new(), &service, "n2", &jid("bo@y"))
            .expect("read"),
        None
    );
    assert!(p.affiliations(&service, "n3").expect("affs").is_empty());
    // Affiliations on another service are another service's.
    assert!(
        p.affiliations_of(&jid("other.x"), &jid("bo@y"))
            .expect("of")
            .is_empty()
    );
}

#[test]
fn subscriptions_and_their_index_stay_in_step_through_subscribe_unsubscribe_and_delete() {
    let (_d, s) = fresh();
    let p = s.pubsub();
    let service = svc();
    for n in ["n1", "n2", "n3"] {
        create(&s, &service, n, "al@x");
    }
    subscribe(&s, &service, "n1", &sub("bo@y", ""));
    subscribe(&s, &service, "n1", &sub("bo@y/phone", "a"));
    subscribe(&s, &service, "n2", &sub("bo@y/phone", "b"));
    subscribe(&s, &service, "n2", &sub("bo@y/desk", ""));
    subscribe(&s, &service, "n3", &sub("bo@y", "x"));
    subscribe(&s, &service, "n3", &sub("bo@yz", ""));
    subscribe(&s, &service, "n3", &sub("cy@z/phone", ""));

    let by = |j: &str| {
        p.subscriptions_by(&service, &full(j))
            .expect("by")
            .into_iter()
            .map(|(n, s)| (n, s.jid.to_string(), s.subid))
            .collect::<Vec<_>>()
    };
    let t = |n: &str, j: &str, subid: &str| (n.to_string(), j.to_string(), subid.to_string());
    // A bare JID's own first, then each resource's, by node.
    assert_eq!(
        by("bo@y"),
        [
            t("n1", "bo@y", ""),
            t("n3", "bo@y", "x"),
            t("n2", "bo@y/desk", ""),
            t("n1", "bo@y/phone", "a"),
            t("n2", "bo@y/phone", "b"),
        ]
    );
    assert_eq!(
        by("bo@y/phone"),
        [t("n1", "bo@y/phone", "a"), t("n2", "bo@y/phone", "b")]
    );
    assert!(by("bo@y/tablet").is_empty());
    assert_eq!(by("bo@yz"), [t("n3", "bo@yz", "")]);
    let found = p
        .subscriptions_by(&service, &full("bo@y/phone"))
        .expect("by");
    assert_eq!(
        found[0].1,
        sub("bo@y/phone", "a"),
        "options and state come along"
    );

    // Updating a subscription keeps one index entry.
    let mut changed = sub("bo@y/phone", "a");
    changed.state = SubscriptionState::Unconfigured;
    subscribe(&s, &service, "n1", &changed);
    assert_eq!(by("bo@y/phone").len(), 2);
    assert_eq!(
        p.subscriptions_by(&service, &full("bo@y/phone"))
            .expect("by")[0]
            .1,
        changed
    );

    assert!(unsubscribe(&s, &service, "n1", "bo@y/phone", "a"));
    assert!(!unsubscribe(&s, &service, "n1", "bo@y/phone", "a"));
    assert!(!unsubscribe(&s, &service, "n1", "bo@y", "other-subid"));
    assert_eq!(by("bo@y/phone"), [t("n2", "bo@y/phone", "b")]);
    assert_eq!(p.subscription_count(&service, "n1").expect("count"), 1);

    assert!(delete_node(&s, &service, "n2"));
    assert_eq!(by("bo@y"), [t("n1", "bo@y", ""), t("n3", "bo@y", "x")]);
    assert!(by("bo@y/phone").is_empty());
    assert_eq!(p.subscription_count(&service, "n2").expect("count"), 0);
    assert_eq!(by("cy@z"), [t("n3", "cy@z/phone", "")]);

    // The fan-out list of a node.
    let subs = p.subscriptions(&service, "n3").expect("subs");
    let jids: Vec<String> = subs.iter().map(|s| s.jid.to_string()).collect();
    assert_eq!(jids, ["bo@y", "bo@yz", "cy@z/phone"]);
    assert_eq!(p.subscription_count(&service, "n3").expect("count"), 3);
}

#[test]
fn delete_node_leaves_nothing_behind() {
    // The same node written in two stores; one of them also holds a node
    // with every kind of record, then deletes it. The two column families
    // must then be identical, byte for byte.
    let (da, a) = fresh();
    let (db, b) = fresh();
    for s in [&a, &b] {
        populate_node(s, &svc(), "keep");
        populate_node(s, &jid("al@x"), "pep-keep");
    }
    populate_node(&a, &svc(), "doomed");
    populate_node(&a, &svc(), "doomed/child");
    affiliate(&a, &svc(), "doomed", "bo@y", Some(Affiliation::Member));
    assert!(delete_node(&a, &svc(), "doomed"));
    assert!(delete_node(&a, &svc(), "doomed/child"));
    populate_node(&a, &jid("al@x"), "pep-doomed");
    assert!(delete_node(&a, &jid("al@x"), "pep-doomed"));
    drop((a, b));
    let left = raw_records(da.path(), "pubsub");
    assert!(!left.is_empty());
    assert_eq!(left, raw_records(db.path(), "pubsub"));
}

#[test]
fn deleting_a_node_in_the_batch_that_built_it_leaves_nothing_behind() {
    let (d, s) = fresh();
    let p = s.pubsub();
    let service = svc();
    let mut b = Batch::new();
    let mut rec = NodeRecord::new(jid("al@x"), 0, Vec::new());
    p.put_item_in(&mut b, &service, "n", &mut rec, "i", None, b"", 0)
        .expect("item");
    p.put_node_in(&mut b, &service, "n", &rec).expect("node");
    p.put_subscription_in(&mut b, &service, "n", &sub("bo@y/r", "s"))
        .expect("sub");
    p.set_affiliation_in(
        &mut b,
        &service,
        "n",
        &jid("al@x"),
        Some(Affiliation::Owner),
    )
    .expect("aff");
    assert!(p.delete_node_in(&mut b, &service, "n").expect("delete"));
    s.apply(&b).expect("commit");
    drop(s);
    assert_eq!(raw_records(d.path(), "pubsub"), Vec::new());
}

#[test]
fn items_and_subscriptions_survive_reopening() {
    let (d, s) = fresh();
    let service = svc();
    populate_node(&s, &service, "n");
    populate_node(&s, &jid("al@x"), "urn:xmpp:avatar:data");
    let before = (
        all_items(&s, &service, "n"),
        s.pubsub().subscriptions(&service, "n").expect("subs"),
        s.pubsub().affiliations(&service, "n").expect("affs"),
        record(&s, &service, "n"),
        s.pubsub()
            .subscriptions_by(&service, &full("bo@y"))
            .expect("by"),
    );
    s.flush().expect("flush");
    drop(s);
    let s = reopen(d.path());
    let after = (
        all_items(&s, &service, "n"),
        s.pubsub().subscriptions(&service, "n").expect("subs"),
        s.pubsub().affiliations(&service, "n").expect("affs"),
        record(&s, &service, "n"),
        s.pubsub()
            .subscriptions_by(&service, &full("bo@y"))
            .expect("by"),
    );
    assert_eq!(before, after);
    assert_eq!(after.0.len(), 3);
    assert_eq!(after.1.len(), 4);
    assert_eq!(all_items(&s, &jid("al@x"), "urn:xmpp:avatar:data").len(), 3);
    // Counters carry on.
    assert_eq!(publish(&s, &service, "n", "next", "<p/>").seq, 4);
}

#[test]
fn corrupt_pubsub_values_are_errors_not_panics() {
    let (d, s) = fresh();
    populate_node(&s, &svc(), "n");
    drop(s);
    poke(
        d.path(),
        &[
            ("pubsub", b"\x01pubsub.x\x00n", b"\x01\x00\x00"),
            ("pubsub", b"\x02pubsub.x\x00n\x00owner@x", b"\x01\x09"),
            ("pubsub", b"\x07pubsub.x\x00owner@x\x00n", b"\x01\x00"),
            ("pubsub", b"\x03pubsub.x\x00n\x00bo@y\x00", b"\x02\x03"),
            ("pubsub", b"\x04pubsub.x\x00n\x00item1", b"\x01\x00"),
            (
                "pubsub",
                b"\x05pubsub.x\x00n\x00\0\0\0\0\0\0\0\x03",
                b"\x01\xff\xff\xff\xff",
            ),
            // A subscriber index entry whose subscription is gone.
            ("pubsub", b"\x06pubsub.x\x00dx@y\x00\x00n\x00", b"\x01"),
        ],
    );
    let s = reopen(d.path());
    let p = s.pubsub();
    let (service, e) = (svc(), Batch::new());
    assert!(is_corrupt(p.node_in(&e, &service, "n")));
    let mut b = Batch::new();
    let rec = NodeRecord::new(jid("al@x"), 0, Vec::new());
    assert!(is_corrupt(p.put_node_in(&mut b, &service, "n", &rec)));
    assert!(is_corrupt(p.affiliation_in(
        &e,
        &service,
        "n",
        &jid("owner@x")
    )));
    assert!(is_corrupt(p.affiliations(&service, "n")));
    assert!(is_corrupt(p.affiliations_of(&service, &jid("owner@x"))));
    assert!(is_corrupt(p.subscriptions(&service, "n")));
    assert!(is_corrupt(p.subscriptions_of_in(
        &e,
        &service,
        "n",
        &full("bo@y")
    )));
    assert!(is_corrupt(p.subscriptions_by(&service, &full("bo@y"))));
    assert!(is_corrupt(p.subscriptions_by(&service, &full("dx@y"))));
    assert!(is_corrupt(p.item_in(&e, &service, "n", "item1")));
    assert!(is_corrupt(p.item_in(&e, &service, "n", "item2")));
    assert!(is_corrupt(p.items(&service, "n", true, None, 10)));
    assert!(is_corrupt(p.last_item(&service, "n")));
    let mut rec = NodeRecord::new(jid("al@x"), 0, Vec::new());
    assert!(is_corrupt(p.put_item_in(
        &mut b, &service, "n", &mut rec, "item1", None, b"", 0
    )));
    rec.item_count = 3;
    assert!(is_corrupt(p.trim_in(&mut b, &service, "n", &mut rec, 0)));
    // What was not damaged still reads.
    assert_eq!(
        p.item_in(&e, &service, "n", "item0")
            .expect("read")
            .map(|i| i.seq),
        Some(1)
    );
    assert_eq!(
        p.subscriptions_by(&service, &full("bo@y/phone"))
            .expect("by")
            .len(),
        2
    );
    assert_eq!(p.subscription_count(&service, "n").expect("count"), 4);
}

#[test]
fn a_node_with_corrupt_records_can_still_be_deleted() {
    let (d, s) = fresh();
    populate_node(&s, &svc(), "n");
    populate_node(&s, &svc(), "n2");
    drop(s);
    poke(
        d.path(),
        &[
            ("pubsub", b"\x01pubsub.x\x00n", b"\x07junk"),
            ("pubsub", b"\x03pubsub.x\x00n\x00bo@y\x00", b""),
            (
                "pubsub",
                b"\x05pubsub.x\x00n\x00\0\0\0\0\0\0\0\x01",
                b"\x01",
            ),
        ],
    );
    let s = reopen(d.path());
    let service = svc();
    assert!(delete_node(&s, &service, "n"));
    let p = s.pubsub();
    assert_eq!(p.node_in(&Batch::new(), &service, "n").expect("read"), None);
    assert_eq!(p.nodes(&service, None, 10).expect("nodes"), ["n2"]);
    assert_eq!(p.nodes_created_by(&service, &jid("owner@x")).expect("n"), 1);
    assert_eq!(
        p.subscriptions_by(&service, &full("bo@y"))
            .expect("by")
            .len(),
        3
    );
    assert_eq!(
        p.affiliations_of(&service, &jid("pub@x"))
            .expect("of")
            .len(),
        1
    );
    assert_eq!(all_items(&s, &service, "n2").len(), 3);
}

#[test]
fn delete_service_removes_that_service_only() {
    let (d, s) = fresh();
    let (al, alxy) = (jid("al@x"), jid("al@xy"));
    populate_node(&s, &al, "a");
    populate_node(&s, &al, "b");
    populate_node(&s, &alxy, "a");
    populate_node(&s, &svc(), "a");
    let mut b = Batch::new();
    s.pubsub().delete_service_in(&mut b, &al).expect("plan");
    s.apply(&b).expect("commit");
    let p = s.pubsub();
    assert!(p.nodes(&al, None, 10).expect("nodes").is_empty());
    assert!(all_items(&s, &al, "a").is_empty());
    assert!(
        p.subscriptions_by(&al, &full("bo@y"))
            .expect("by")
            .is_empty()
    );
    assert_eq!(p.nodes(&alxy, None, 10).expect("nodes"), ["a"]);
    assert_eq!(all_items(&s, &alxy, "a").len(), 3);
    assert_eq!(
        p.subscriptions_by(&alxy, &full("bo@y")).expect("by").len(),
        3
    );
    assert_eq!(p.nodes(&svc(), None, 10).expect("nodes"), ["a"]);
    drop(s);
    // Not one record of al@x's service is left.
    let left = raw_records(d.path(), "pubsub");
    assert!(!left.is_empty());
    assert!(left.iter().all(|(k, _)| !k[1..].starts_with(b"al@x\x00")));
}

#[test]
fn deleting_an_account_removes_its_pep_service_and_nothing_of_others() {
    let (_d, s) = fresh();
    let (al, bo) = (jid("al@x"), jid("bo@y"));
    for u in ["al@x", "al@xy", "x"] {
        populate(&s, u);
        populate_node(&s, &jid(u), "urn:xmpp:microblog:0");
    }
    populate_node(&s, &bo, "urn:xmpp:microblog:0");
    // al holds things on other services: those services' records.
    subscribe(&s, &bo, "urn:xmpp:microblog:0", &sub("al@x/phone", ""));
    affiliate(&s, &svc(), "shared", "al@x", Some(Affiliation::Publisher));
    create(&s, &svc(), "made-by-al", "al@x");

    assert!(s.accounts().delete(&al).expect("delete"));
    assert_empty(&s, "al@x");
    let p = s.pubsub();
    assert!(p.nodes(&al, None, 10).expect("nodes").is_empty());
    assert!(all_items(&s, &al, "urn:xmpp:microblog:0").is_empty());
    assert!(
        p.subscriptions_by(&al, &full("bo@y"))
            .expect("by")
            .is_empty()
    );
    assert_eq!(p.nodes_created_by(&al, &jid("owner@x")).expect("n"), 0);
    for other in ["al@xy", "x", "bo@y"] {
        let o = jid(other);
        assert_eq!(p.nodes(&o, None, 10).expect("nodes").len(), 1, "{other}");
        assert_eq!(
            all_items(&s, &o, "urn:xmpp:microblog:0").len(),
            3,
            "{other}"
        );
    }
    assert_eq!(
        p.subscriptions_by(&bo, &full("al@x")).expect("by").len(),
        1,
        "kept: al's subscription to bo's node is bo's record"
    );
    assert_eq!(p.affiliations_of(&svc(), &al).expect("of").len(), 1);
    assert_eq!(p.nodes_created_by(&svc(), &al).expect("n"), 1);

    // A domain account's bare JID names a PubSub service, not a PEP one:
    // deleting the account leaves the service's nodes alone.
    assert!(s.accounts().delete(&jid("x")).expect("delete"));
    assert_eq!(all_items(&s, &jid("x"), "urn:xmpp:microblog:0").len(), 3);
}

#[test]
fn a_nodes_home_is_the_pep_user_or_the_service_and_node() {
    assert_eq!(home(&jid("al@x"), "urn:xmpp:avatar:data"), "al@x");
    assert_eq!(home(&jid("pubsub.x"), "news/sport"), "pubsub.x/news/sport");
    assert_eq!(home(&jid("x"), "n"), "x/n");
}
