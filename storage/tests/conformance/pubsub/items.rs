//! Items: sequence numbers, replacing, trimming, retracting, purging and
//! paging through them.

use super::*;

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
    // Later trims start past what this one removed (seqs 1 and 2).
    assert_eq!(record(&s, &service, "n").low_seq, 3);
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
    let rec = record(&s, &service, "n");
    assert_eq!(rec.item_count, 0);
    assert_eq!(rec.low_seq, rec.next_seq);
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
    assert_eq!(record(&s, &service, "n").low_seq, 4);
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
