//! `Vcards`: get, set, replace, remove.

use super::*;

#[test]
fn set_get_replace_remove() {
    let (_d, s) = fresh();
    let v = s.vcards();
    let u = jid("alice@x");
    assert_eq!(v.get(&u).expect("get"), None);
    v.set(&u, Some(b"<vCard xmlns='vcard-temp'><FN>A</FN></vCard>"))
        .expect("set");
    assert_eq!(
        v.get(&u).expect("get").as_deref(),
        Some(&b"<vCard xmlns='vcard-temp'><FN>A</FN></vCard>"[..])
    );
    v.set(&u, Some(b"<vCard xmlns='vcard-temp'/>"))
        .expect("replace");
    assert_eq!(
        v.get(&u).expect("get").as_deref(),
        Some(&b"<vCard xmlns='vcard-temp'/>"[..])
    );
    v.set(&u, None).expect("remove");
    assert_eq!(v.get(&u).expect("get"), None);
    v.set(&u, None).expect("remove again");
    v.set(&u, Some(b"")).expect("empty");
    assert_eq!(v.get(&u).expect("get"), Some(vec![]));
}
