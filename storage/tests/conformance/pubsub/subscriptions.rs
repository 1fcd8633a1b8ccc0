//! Subscriptions and affiliations with their reverse indexes, and reads
//! through a pending batch.

use super::*;

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

/// The node's subscription count is one point read, kept by every put and
/// removal (a replaced subscription counts once), through a pending batch
/// too, and gone with the node.
#[test]
fn the_subscription_count_follows_puts_and_removals() {
    let (_d, s) = fresh();
    let p = s.pubsub();
    let service = svc();
    create(&s, &service, "n", "al@x");
    assert_eq!(p.subscription_count(&service, "n").expect("count"), 0);
    let mut b = Batch::new();
    for (j, id) in [
        ("bo@y/r", "1"),
        ("bo@y/r", "2"),
        ("cy@z", "1"),
        ("bo@y/r", "1"),
    ] {
        p.put_subscription_in(&mut b, &service, "n", &sub(j, id))
            .expect("plan");
    }
    assert_eq!(
        p.subscription_count_in(&b, &service, "n").expect("count"),
        3
    );
    assert_eq!(
        p.subscription_count(&service, "n").expect("count"),
        0,
        "planned only"
    );
    s.apply(&b).expect("apply");
    assert_eq!(p.subscription_count(&service, "n").expect("count"), 3);
    let mut b = Batch::new();
    assert!(
        p.remove_subscription_in(&mut b, &service, "n", &full("cy@z"), "1")
            .expect("plan")
    );
    assert!(
        !p.remove_subscription_in(&mut b, &service, "n", &full("cy@z"), "1")
            .expect("plan"),
        "gone already"
    );
    s.apply(&b).expect("apply");
    assert_eq!(p.subscription_count(&service, "n").expect("count"), 2);
    let mut b = Batch::new();
    assert!(p.delete_node_in(&mut b, &service, "n").expect("plan"));
    s.apply(&b).expect("apply");
    create(&s, &service, "n", "al@x");
    assert_eq!(p.subscription_count(&service, "n").expect("count"), 0);
}
