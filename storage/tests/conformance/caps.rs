//! `Caps`: what a capability hash means, stored once and read back after
//! the database is opened again.

use super::*;

#[test]
fn a_learnt_hash_is_kept_across_a_reopen() {
    let (d, s) = fresh();
    let query = b"<query xmlns='http://jabber.org/protocol/disco#info'/>";
    assert_eq!(s.caps().get("sha-1 abc=").expect("get"), None);
    let mut b = storage::Batch::new();
    s.caps().put_in(&mut b, "sha-1 abc=", query).expect("plan");
    assert_eq!(
        s.caps().get("sha-1 abc=").expect("get"),
        None,
        "planned only"
    );
    s.apply(&b).expect("apply");
    drop(s);
    let s = reopen(d.path());
    assert_eq!(
        s.caps().get("sha-1 abc=").expect("get").as_deref(),
        Some(&query[..])
    );
    assert_eq!(s.caps().get("sha-256 abc=").expect("get"), None);
    assert!(s.caps().get("").is_err());
}
