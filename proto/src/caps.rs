//! XEP-0115 Entity Capabilities: the `<c/>` element of a presence and the
//! verification string (§5.1) of a disco#info answer, so that a server
//! that learns an entity's features from one client caches them by hash
//! for every client that announces the same hash, and a forged answer
//! (features that do not hash to the announced value) is refused.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha1::Digest;

use crate::element::Element;
use crate::ns;

/// What a presence's `<c/>` announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    /// The hash function's name (`sha-1`, `sha-256`).
    pub hash: String,
    /// The client's software URI.
    pub node: String,
    /// The verification string, base64.
    pub ver: String,
}

impl Caps {
    /// The `<c xmlns='http://jabber.org/protocol/caps'/>` of a presence
    /// element, if it has a usable one (legacy caps without `hash` are
    /// not cacheable and are ignored, §8.4).
    pub fn of_presence(presence: &Element) -> Option<Caps> {
        let c = presence.child("c", ns::CAPS)?;
        let hash = c.attr("hash")?.to_ascii_lowercase();
        if !matches!(hash.as_str(), "sha-1" | "sha-256") {
            return None;
        }
        let node = c.attr("node")?.to_string();
        let ver = c.attr("ver")?.to_string();
        if ver.is_empty() || ver.len() > 128 || node.len() > 1024 {
            return None;
        }
        Some(Caps { hash, node, ver })
    }

    /// The cache key: the hash function and the verification string.
    pub fn key(&self) -> String {
        format!("{} {}", self.hash, self.ver)
    }

    /// The node of the disco#info query that asks for these features.
    pub fn query_node(&self) -> String {
        format!("{}#{}", self.node, self.ver)
    }
}

/// A form field of extended information: its var and values.
type Field = (String, Vec<String>);

/// XEP-0115 §5.1: the string hashed for `ver`, from a disco#info `query`.
/// `None` when the answer is one that §5.4 says to refuse (duplicate
/// identities or features, a form without FORM_TYPE).
pub fn verification_string(query: &Element) -> Option<String> {
    let mut identities: Vec<String> = query
        .elements()
        .filter(|e| e.name == "identity" && e.ns == ns::DISCO_INFO)
        .map(|i| {
            format!(
                "{}/{}/{}/{}",
                i.attr("category").unwrap_or(""),
                i.attr("type").unwrap_or(""),
                i.attr("xml:lang").unwrap_or(""),
                i.attr("name").unwrap_or("")
            )
        })
        .collect();
    let mut features: Vec<String> = query
        .elements()
        .filter(|e| e.name == "feature" && e.ns == ns::DISCO_INFO)
        .filter_map(|f| f.attr("var").map(str::to_string))
        .collect();
    for list in [&mut identities, &mut features] {
        let n = list.len();
        list.sort();
        list.dedup();
        if list.len() != n {
            return None;
        }
    }
    let mut s = String::new();
    for i in &identities {
        s.push_str(i);
        s.push('<');
    }
    for f in &features {
        s.push_str(f);
        s.push('<');
    }
    // Extended information (§5.1 step 3): forms sorted by FORM_TYPE,
    // fields by var, values sorted.
    let mut forms: Vec<(String, Vec<Field>)> = Vec::new();
    for x in query
        .elements()
        .filter(|e| e.name == "x" && e.ns == ns::DATA_FORMS)
    {
        let mut form_type = None;
        let mut fields = Vec::new();
        for f in x.elements().filter(|e| e.name == "field") {
            let var = f.attr("var").unwrap_or("").to_string();
            let mut values: Vec<String> = f
                .elements()
                .filter(|v| v.name == "value")
                .map(Element::text)
                .collect();
            if var == "FORM_TYPE" {
                if values.len() != 1 || form_type.is_some() {
                    return None;
                }
                form_type = values.pop();
                continue;
            }
            values.sort();
            fields.push((var, values));
        }
        // §5.4: a form without a FORM_TYPE is ignored, the rest still
        // counts.
        let Some(form_type) = form_type else {
            continue;
        };
        fields.sort();
        forms.push((form_type, fields));
    }
    forms.sort();
    // Two forms of one FORM_TYPE make the answer unusable (§5.4).
    if forms.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    for (form_type, fields) in forms {
        s.push_str(&form_type);
        s.push('<');
        for (var, values) in fields {
            s.push_str(&var);
            s.push('<');
            for v in values {
                s.push_str(&v);
                s.push('<');
            }
        }
    }
    Some(s)
}

/// Whether a disco#info answer hashes to what `caps` announced.
pub fn verify(caps: &Caps, query: &Element) -> bool {
    ver(&caps.hash, query).is_some_and(|v| v == caps.ver)
}

/// The `ver` of a disco#info answer under hash function `hash` (`sha-1`
/// or `sha-256`), as an entity announcing it computes it.
pub fn ver(hash: &str, query: &Element) -> Option<String> {
    let s = verification_string(query)?;
    let digest = match hash {
        "sha-1" => sha1::Sha1::digest(s.as_bytes()).to_vec(),
        "sha-256" => sha2::Sha256::digest(s.as_bytes()).to_vec(),
        _ => return None,
    };
    Some(B64.encode(digest))
}

/// The features of a disco#info answer.
pub fn features(query: &Element) -> Vec<String> {
    query
        .elements()
        .filter(|e| e.name == "feature" && e.ns == ns::DISCO_INFO)
        .filter_map(|f| f.attr("var").map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(xml: &str) -> Element {
        Element::parse(xml.as_bytes(), ns::CLIENT, &[]).expect("xml")
    }

    #[test]
    fn the_simple_example_of_the_xep_verifies() {
        // XEP-0115 §5.2: identity client/pc//Exodus 0.9.1 and four features
        // hash (SHA-1) to QgayPKawpkPSDYmwT/WM94uAlu0=.
        let q = query(
            "<query xmlns='http://jabber.org/protocol/disco#info' node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='>\
             <identity category='client' name='Exodus 0.9.1' type='pc'/>\
             <feature var='http://jabber.org/protocol/caps'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='http://jabber.org/protocol/disco#items'/>\
             <feature var='http://jabber.org/protocol/muc'/></query>",
        );
        let caps = Caps {
            hash: "sha-1".into(),
            node: "http://code.google.com/p/exodus".into(),
            ver: "QgayPKawpkPSDYmwT/WM94uAlu0=".into(),
        };
        assert!(verify(&caps, &q));
        let forged = Caps {
            ver: "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            ..caps.clone()
        };
        assert!(!verify(&forged, &q));
        assert_eq!(features(&q).len(), 4);
    }

    /// XEP-0115 §5.4: a form without FORM_TYPE is left out of the hash, not
    /// a reason to refuse the whole answer; two forms of one FORM_TYPE are.
    #[test]
    fn a_form_without_form_type_is_ignored() {
        let plain = query(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='client' type='pc'/><feature var='a'/></query>",
        );
        let with_form = query(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='client' type='pc'/><feature var='a'/>\
             <x xmlns='jabber:x:data' type='result'><field var='os'><value>x</value></field></x></query>",
        );
        assert_eq!(verification_string(&with_form), verification_string(&plain));
        let twice = query(
            "<query xmlns='http://jabber.org/protocol/disco#info'><feature var='a'/>\
             <x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>urn:t</value></field></x>\
             <x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>urn:t</value></field></x></query>",
        );
        assert_eq!(verification_string(&twice), None);
    }

    #[test]
    fn duplicate_features_are_refused() {
        let q = query(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <feature var='a'/><feature var='a'/></query>",
        );
        assert_eq!(verification_string(&q), None);
    }

    #[test]
    fn a_presence_without_hash_has_no_usable_caps() {
        let p = query(
            "<presence><c xmlns='http://jabber.org/protocol/caps' node='n' ver='v'/></presence>",
        );
        assert_eq!(Caps::of_presence(&p), None);
        let p = query(
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>",
        );
        assert_eq!(
            Caps::of_presence(&p).map(|c| c.key()),
            Some("sha-1 v".to_string())
        );
    }
}
