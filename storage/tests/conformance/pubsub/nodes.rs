//! Nodes: records, listing with paging, the per-creator count, which
//! node ids are stored and which are refused, and where a node lives.

use super::*;

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
            low_seq: 1,
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
fn a_nodes_home_is_the_pep_user_or_the_service_and_node() {
    assert_eq!(home(&jid("al@x"), "urn:xmpp:avatar:data"), "al@x");
    assert_eq!(home(&jid("pubsub.x"), "news/sport"), "pubsub.x/news/sport");
    assert_eq!(home(&jid("x"), "n"), "x/n");
}
