//! One user's data never shows up under another's: JIDs that are prefixes
//! of each other ("al@x" and "al@xy"), and account deletion that removes
//! everything of one user and nothing of the others.

use super::*;

/// JIDs where one is a byte prefix of another, plus neighbours.
const PREFIXED: [&str; 5] = ["al@x", "al@xy", "al@x.y", "al@x0", "x"];

#[test]
fn prefix_jids_do_not_bleed_into_each_other() {
    let (_d, s) = fresh();
    for (i, u) in PREFIXED.iter().enumerate() {
        let u = jid(u);
        for n in 0..=i {
            s.rosters()
                .put(&u, &item(&format!("c{n}@z"), None, &[], Subscription::To))
                .expect("put");
            s.offline()
                .push(&u, format!("{u}/{n}").as_bytes())
                .expect("push")
                .expect("room");
        }
        s.vcards()
            .set(&u, Some(u.as_str().as_bytes()))
            .expect("vcard");
    }
    for (i, name) in PREFIXED.iter().enumerate() {
        let u = jid(name);
        let (v, items) = s.rosters().get_all(&u).expect("roster");
        assert_eq!(v, i as u64 + 1, "{name} version");
        assert_eq!(items.len(), i + 1, "{name} items");
        assert_eq!(s.offline().count(&u).expect("count"), i + 1, "{name} count");
        let msgs = s.offline().list(&u).expect("list");
        assert_eq!(msgs.len(), i + 1, "{name} messages");
        assert!(
            msgs.iter()
                .all(|(_, b)| b.starts_with(format!("{name}/").as_bytes()))
        );
        assert_eq!(
            s.vcards().get(&u).expect("vcard"),
            Some(name.as_bytes().to_vec())
        );
    }
    // Removing all of al@x's messages leaves al@xy's alone.
    s.offline()
        .remove_through(&jid("al@x"), u64::MAX)
        .expect("remove");
    assert_eq!(s.offline().count(&jid("al@xy")).expect("count"), 2);
    assert_eq!(s.offline().list(&jid("al@xy")).expect("list").len(), 2);
}

#[test]
fn delete_removes_everything_of_the_user_and_nothing_else() {
    let (_d, s) = fresh();
    for u in PREFIXED {
        populate(&s, u);
    }
    assert_eq!(s.accounts().count().expect("count"), PREFIXED.len() as u64);
    assert!(s.accounts().delete(&jid("al@x")).expect("delete"));
    assert_empty(&s, "al@x");
    for u in &PREFIXED[1..] {
        assert_populated(&s, u);
    }
    assert_eq!(
        s.accounts().count().expect("count"),
        PREFIXED.len() as u64 - 1
    );
    let left: Vec<String> = s
        .accounts()
        .list(None)
        .expect("list")
        .iter()
        .map(|j| j.to_string())
        .collect();
    assert!(!left.contains(&"al@x".to_string()));
    assert_eq!(left.len(), PREFIXED.len() - 1);

    // A contact entry naming the deleted user in someone else's roster is
    // the other user's data and stays.
    let other = jid("al@xy");
    s.rosters()
        .put(&other, &item("al@x", None, &[], Subscription::Both))
        .expect("put");
    s.accounts()
        .delete(&jid("x"))
        .expect("delete domain account");
    assert!(
        s.rosters()
            .get(&other, &jid("al@x"))
            .expect("get")
            .is_some()
    );
}

#[test]
fn deleting_a_missing_account_touches_no_data() {
    let (_d, s) = fresh();
    // Data without an account (e.g. written before registration finished).
    let u = jid("ghost@x");
    s.offline().push(&u, b"m").expect("push").expect("room");
    assert!(!s.accounts().delete(&u).expect("delete"));
    assert_eq!(s.offline().count(&u).expect("count"), 1);
}

#[test]
fn recreated_account_starts_empty() {
    let (_d, s) = fresh();
    populate(&s, "al@x");
    s.accounts().delete(&jid("al@x")).expect("delete");
    s.accounts()
        .create(&jid("al@x"), &creds(9))
        .expect("create");
    let u = jid("al@x");
    assert_eq!(s.rosters().get_all(&u).expect("roster"), (0, vec![]));
    assert_eq!(s.offline().push(&u, b"m").expect("push"), Ok(1));
    assert_eq!(s.vcards().get(&u).expect("vcard"), None);
}
