//! `Offline`: FIFO order, sequence numbers, O(1) count, limit, removal.

use super::*;

#[test]
fn push_list_count_in_order() {
    let (_d, s) = fresh();
    let o = s.offline();
    let u = jid("alice@x");
    assert_eq!(o.count(&u).expect("count"), 0);
    assert!(o.list(&u).expect("list").is_empty());
    for i in 1..=300u64 {
        let seq = o
            .push(&u, format!("<m>{i}</m>").as_bytes())
            .expect("push")
            .expect("room");
        assert_eq!(seq, i);
    }
    assert_eq!(o.count(&u).expect("count"), 300);
    let l = o.list(&u).expect("list");
    assert_eq!(l.len(), 300);
    for (i, (seq, body)) in l.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(body, format!("<m>{}</m>", i + 1).as_bytes());
    }
}

#[test]
fn remove_through_deletes_a_prefix_of_the_queue() {
    let (_d, s) = fresh();
    let o = s.offline();
    let u = jid("alice@x");
    for _ in 0..5 {
        o.push(&u, b"<m/>").expect("push").expect("room");
    }
    o.remove_through(&u, 0).expect("remove none");
    assert_eq!(o.count(&u).expect("count"), 5);
    o.remove_through(&u, 3).expect("remove");
    assert_eq!(o.count(&u).expect("count"), 2);
    let seqs: Vec<u64> = o
        .list(&u)
        .expect("list")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(seqs, [4, 5]);
    o.remove_through(&u, 3).expect("idempotent");
    assert_eq!(o.count(&u).expect("count"), 2);
    o.remove_through(&u, u64::MAX).expect("remove all");
    assert_eq!(o.count(&u).expect("count"), 0);
    assert!(o.list(&u).expect("list").is_empty());
    o.remove_through(&jid("nobody@x"), 10)
        .expect("remove on empty");
}

#[test]
fn sequence_numbers_are_not_reused_after_the_queue_empties() {
    let (_d, s) = fresh();
    let o = s.offline();
    let u = jid("alice@x");
    o.push(&u, b"a").expect("push").expect("room");
    o.push(&u, b"b").expect("push").expect("room");
    o.remove_through(&u, 2).expect("remove");
    assert_eq!(o.push(&u, b"c").expect("push").expect("room"), 3);
    assert_eq!(o.list(&u).expect("list"), vec![(3, b"c".to_vec())]);
}

#[test]
fn limit_refuses_then_frees_after_removal() {
    let (_d, s) = fresh_with(StoreOptions {
        offline_limit: 3,
        ..StoreOptions::default()
    });
    let o = s.offline();
    let u = jid("alice@x");
    for i in 1..=3 {
        assert_eq!(o.push(&u, b"m").expect("push"), Ok(i));
    }
    let full = o.push(&u, b"overflow").expect("push");
    assert_eq!(full, Err(storage::OfflineFull { limit: 3 }));
    assert_eq!(o.count(&u).expect("count"), 3);
    assert!(o.list(&u).expect("list").iter().all(|(_, b)| b == b"m"));
    // Another user has a queue of their own.
    assert_eq!(o.push(&jid("bob@x"), b"m").expect("push"), Ok(1));
    o.remove_through(&u, 1).expect("remove");
    assert_eq!(o.push(&u, b"m").expect("push"), Ok(4));
    assert_eq!(
        o.push(&u, b"m").expect("push"),
        Err(storage::OfflineFull { limit: 3 })
    );
}

#[test]
fn default_limit_is_1000() {
    assert_eq!(StoreOptions::default().offline_limit, 1000);
    assert!(!StoreOptions::default().sync_writes);
    let (_d, s) = fresh();
    let u = jid("alice@x");
    for _ in 0..1000 {
        s.offline().push(&u, b"").expect("push").expect("room");
    }
    assert!(s.offline().push(&u, b"").expect("push").is_err());
}

#[test]
fn empty_and_binary_stanzas_round_trip() {
    let (_d, s) = fresh();
    let u = jid("alice@x");
    let bin: Vec<u8> = (0..=255).collect();
    s.offline().push(&u, b"").expect("push").expect("room");
    s.offline().push(&u, &bin).expect("push").expect("room");
    assert_eq!(
        s.offline().list(&u).expect("list"),
        vec![(1, vec![]), (2, bin)]
    );
}
