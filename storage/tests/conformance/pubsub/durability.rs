//! Reopening keeps everything; corrupt bytes are errors, never panics,
//! and do not stop a node from being deleted.

use super::*;

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
