//! Deleting a node, a service and an account leaves nothing of them
//! behind and nothing else missing.

use super::*;

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
