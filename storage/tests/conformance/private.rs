//! `Private` (XEP-0049): one element per (user, name, namespace), read
//! through a pending batch, removed with the account.

use storage::{Batch, StorageError};

use super::*;

const BOOKMARKS: &[u8] =
    b"<storage xmlns='storage:bookmarks'><conference jid='r@muc.x'/></storage>";

fn put(s: &Store, user: &str, name: &str, ns: &str, xml: &[u8]) {
    let mut b = Batch::new();
    s.private()
        .put_in(&mut b, &jid(user), name, ns, xml)
        .expect("plan");
    s.apply(&b).expect("commit");
}

fn get(s: &Store, user: &str, name: &str, ns: &str) -> Option<Vec<u8>> {
    s.private()
        .get_in(&Batch::new(), &jid(user), name, ns)
        .expect("get")
}

#[test]
fn put_get_replace_delete() {
    let (_d, s) = fresh();
    assert_eq!(get(&s, "al@x", "storage", "storage:bookmarks"), None);
    put(
        &s,
        "al@x",
        "storage",
        "storage:bookmarks",
        b"<storage xmlns='storage:bookmarks'/>",
    );
    put(&s, "al@x", "storage", "storage:bookmarks", BOOKMARKS);
    assert_eq!(
        get(&s, "al@x", "storage", "storage:bookmarks").as_deref(),
        Some(BOOKMARKS)
    );
    let mut b = Batch::new();
    s.private()
        .delete_in(&mut b, &jid("al@x"), "storage", "storage:bookmarks")
        .expect("plan");
    s.apply(&b).expect("commit");
    assert_eq!(get(&s, "al@x", "storage", "storage:bookmarks"), None);
    put(&s, "al@x", "e", "", b"");
    assert_eq!(get(&s, "al@x", "e", ""), Some(Vec::new()));
}

#[test]
fn names_namespaces_and_users_are_separate_records() {
    let (_d, s) = fresh();
    put(&s, "al@x", "storage", "storage:bookmarks", b"1");
    put(&s, "al@x", "storage", "storage:rosternotes", b"2");
    put(&s, "al@x", "other", "storage:bookmarks", b"3");
    put(&s, "al@xy", "storage", "storage:bookmarks", b"4");
    assert_eq!(
        get(&s, "al@x", "storage", "storage:bookmarks"),
        Some(b"1".to_vec())
    );
    assert_eq!(
        get(&s, "al@x", "storage", "storage:rosternotes"),
        Some(b"2".to_vec())
    );
    assert_eq!(
        get(&s, "al@x", "other", "storage:bookmarks"),
        Some(b"3".to_vec())
    );
    assert_eq!(
        get(&s, "al@xy", "storage", "storage:bookmarks"),
        Some(b"4".to_vec())
    );
    assert_eq!(get(&s, "al@x", "storage", "storage:bookmark"), None);
}

#[test]
fn planned_writes_are_seen_through_the_pending_batch() {
    let (_d, s) = fresh();
    let u = jid("al@x");
    put(&s, "al@x", "q", "a:b", b"old");
    let mut b = Batch::new();
    s.private()
        .put_in(&mut b, &u, "q", "a:b", b"new")
        .expect("plan");
    s.private()
        .put_in(&mut b, &u, "r", "a:b", b"r")
        .expect("plan");
    s.private().delete_in(&mut b, &u, "r", "a:b").expect("plan");
    let p = s.private();
    assert_eq!(
        p.get_in(&b, &u, "q", "a:b").expect("get"),
        Some(b"new".to_vec())
    );
    assert_eq!(p.get_in(&b, &u, "r", "a:b").expect("get"), None);
    assert_eq!(get(&s, "al@x", "q", "a:b"), Some(b"old".to_vec()));
}

#[test]
fn bad_names_are_refused_with_a_clear_error() {
    let (_d, s) = fresh();
    let mut b = Batch::new();
    let u = jid("al@x");
    let long = "n".repeat(1024);
    for (name, ns) in [
        ("", "a:b"),
        ("q\0", "a:b"),
        ("q", "a\0b"),
        (long.as_str(), "a:b"),
        ("q", long.as_str()),
    ] {
        assert!(matches!(
            s.private().put_in(&mut b, &u, name, ns, b"x"),
            Err(StorageError::InvalidId { .. })
        ));
        assert!(s.private().get_in(&b, &u, name, ns).is_err());
    }
    assert!(b.is_empty());
}

#[test]
fn private_storage_goes_with_the_account_and_survives_reopening() {
    let (d, s) = fresh();
    for u in ["al@x", "al@xy", "x"] {
        populate(&s, u);
        put(&s, u, "storage", "storage:bookmarks", BOOKMARKS);
    }
    assert!(s.accounts().delete(&jid("al@x")).expect("delete"));
    assert_eq!(get(&s, "al@x", "storage", "storage:bookmarks"), None);
    assert!(s.accounts().delete(&jid("x")).expect("delete"));
    assert_eq!(get(&s, "x", "storage", "storage:bookmarks"), None);
    drop(s);
    let s = reopen(d.path());
    assert_eq!(
        get(&s, "al@xy", "storage", "storage:bookmarks").as_deref(),
        Some(BOOKMARKS)
    );
    // Corrupt bytes are an error, not a panic.
    drop(s);
    super::corruption::poke(
        d.path(),
        &[(
            "private",
            b"\x01al@xy\x00storage\x00storage:bookmarks",
            b"\x09",
        )],
    );
    let s = reopen(d.path());
    assert!(super::corruption::is_corrupt(s.private().get_in(
        &Batch::new(),
        &jid("al@xy"),
        "storage",
        "storage:bookmarks"
    )));
}
