//! `Rosters`: items, versions, sorting.

use super::*;

#[test]
fn empty_roster() {
    let (_d, s) = fresh();
    let u = jid("alice@x");
    assert_eq!(s.rosters().get_all(&u).expect("get_all"), (0, vec![]));
    assert_eq!(s.rosters().version(&u).expect("version"), 0);
    assert_eq!(s.rosters().get(&u, &jid("bob@y")).expect("get"), None);
}

#[test]
fn put_get_replace_bump_the_version() {
    let (_d, s) = fresh();
    let r = s.rosters();
    let u = jid("alice@x");
    let mut bob = item(
        "bob@y",
        Some("Bob"),
        &["Friends", "Work"],
        Subscription::None,
    );
    bob.state.pending_out = true;
    assert_eq!(r.put(&u, &bob).expect("put"), 1);
    assert_eq!(r.get(&u, &bob.jid).expect("get"), Some(bob.clone()));

    bob.state = SubState {
        sub: Subscription::Both,
        pending_out: false,
        pending_in: true,
        approved: true,
    };
    bob.name = None;
    bob.groups.clear();
    assert_eq!(r.put(&u, &bob).expect("replace"), 2);
    assert_eq!(r.get(&u, &bob.jid).expect("get"), Some(bob.clone()));
    assert_eq!(r.version(&u).expect("version"), 2);
    assert_eq!(r.get_all(&u).expect("get_all"), (2, vec![bob]));
}

#[test]
fn get_all_is_sorted_by_jid() {
    let (_d, s) = fresh();
    let u = jid("alice@x");
    for c in ["zz@a", "b@a", "a.b@a", "a@a", "a", "é@a"] {
        s.rosters()
            .put(&u, &item(c, None, &[], Subscription::From))
            .expect("put");
    }
    let (v, items) = s.rosters().get_all(&u).expect("get_all");
    assert_eq!(v, 6);
    let got: Vec<BareJid> = items.into_iter().map(|i| i.jid).collect();
    let mut want = got.clone();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(got.len(), 6);
}

#[test]
fn remove_bumps_only_when_something_was_removed() {
    let (_d, s) = fresh();
    let r = s.rosters();
    let u = jid("alice@x");
    assert_eq!(r.remove(&u, &jid("ghost@y")).expect("remove absent"), 0);
    r.put(&u, &item("bob@y", None, &[], Subscription::To))
        .expect("put");
    r.put(&u, &item("carol@y", None, &[], Subscription::To))
        .expect("put");
    assert_eq!(r.remove(&u, &jid("bob@y")).expect("remove"), 3);
    assert_eq!(r.get(&u, &jid("bob@y")).expect("get"), None);
    assert_eq!(r.remove(&u, &jid("bob@y")).expect("remove again"), 3);
    let (v, items) = r.get_all(&u).expect("get_all");
    assert_eq!(v, 3);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].jid, jid("carol@y"));
}

#[test]
fn unicode_names_and_groups_round_trip() {
    let (_d, s) = fresh();
    let u = jid("alice@x");
    let it = item(
        "bob@y",
        Some("Бob 🎉"),
        &["家族", "", "a\u{0}b"],
        Subscription::Both,
    );
    s.rosters().put(&u, &it).expect("put");
    assert_eq!(s.rosters().get(&u, &it.jid).expect("get"), Some(it));
}
