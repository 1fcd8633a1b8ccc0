//! `Accounts`: create, get, exists, set_credentials, delete, list, count.

use super::*;

#[test]
fn create_get_exists() {
    let (_d, s) = fresh();
    let a = s.accounts();
    let u = jid("alice@example.com");
    assert!(!a.exists(&u).expect("exists"));
    assert_eq!(a.get(&u).expect("get"), None);
    assert!(a.create(&u, &creds(1)).expect("create"));
    assert!(a.exists(&u).expect("exists"));
    assert_eq!(a.get(&u).expect("get"), Some(creds(1)));
}

#[test]
fn create_twice_keeps_the_first_credentials() {
    let (_d, s) = fresh();
    let u = jid("alice@example.com");
    assert!(s.accounts().create(&u, &creds(1)).expect("create"));
    assert!(!s.accounts().create(&u, &creds(2)).expect("create again"));
    assert_eq!(s.accounts().get(&u).expect("get"), Some(creds(1)));
    assert_eq!(s.accounts().count().expect("count"), 1);
}

#[test]
fn set_credentials_only_for_existing_accounts() {
    let (_d, s) = fresh();
    let u = jid("alice@example.com");
    assert!(!s.accounts().set_credentials(&u, &creds(2)).expect("set"));
    assert!(!s.accounts().exists(&u).expect("exists"));
    s.accounts().create(&u, &creds(1)).expect("create");
    assert!(s.accounts().set_credentials(&u, &creds(2)).expect("set"));
    assert_eq!(s.accounts().get(&u).expect("get"), Some(creds(2)));
    assert_eq!(s.accounts().count().expect("count"), 1);
}

#[test]
fn delete_and_count() {
    let (_d, s) = fresh();
    let a = s.accounts();
    assert_eq!(a.count().expect("count"), 0);
    for u in ["a@x", "b@x", "c@y"] {
        a.create(&jid(u), &creds(1)).expect("create");
    }
    assert_eq!(a.count().expect("count"), 3);
    assert!(a.delete(&jid("b@x")).expect("delete"));
    assert!(!a.delete(&jid("b@x")).expect("delete again"));
    assert!(!a.delete(&jid("nobody@x")).expect("delete missing"));
    assert_eq!(a.count().expect("count"), 2);
    assert_eq!(a.get(&jid("b@x")).expect("get"), None);
    // A deleted account can be registered again.
    assert!(a.create(&jid("b@x"), &creds(3)).expect("recreate"));
    assert_eq!(a.get(&jid("b@x")).expect("get"), Some(creds(3)));
    assert_eq!(a.count().expect("count"), 3);
}

#[test]
fn list_is_sorted_and_filters_by_domain() {
    let (_d, s) = fresh();
    let a = s.accounts();
    assert!(a.list(None).expect("list").is_empty());
    for u in [
        "zed@b.org",
        "a@x.org",
        "a.b@x.org",
        "m@x.org",
        "x.org",
        "q@x.orgs",
        "q@w.org",
    ] {
        a.create(&jid(u), &creds(1)).expect("create");
    }
    let all = a.list(None).expect("list");
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);
    assert_eq!(all.len(), 7);

    let x: Vec<String> = a
        .list(Some("x.org"))
        .expect("list")
        .iter()
        .map(|j| j.to_string())
        .collect();
    assert_eq!(x, ["a.b@x.org", "a@x.org", "m@x.org", "x.org"]);
    // The domain is normalised like a JID's.
    assert_eq!(a.list(Some("X.ORG")).expect("list").len(), 4);
    assert!(a.list(Some("nothing.example")).expect("list").is_empty());
    assert!(a.list(Some("")).expect("list").is_empty());
    // "x.org" must not match "x.orgs".
    assert_eq!(a.list(Some("x.orgs")).expect("list"), vec![jid("q@x.orgs")]);
}
