//! Pieces of the SCRAM message grammar (RFC 5802 §7) shared by the server
//! and the client: saslname escaping, attribute-value pairs, nonces and
//! base64.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Decodes a saslname (RFC 5802 §5.1): "=2C" is ',', "=3D" is '=', and any
/// other '=' is an error, as are an empty name and NUL.
pub(crate) fn decode_saslname(s: &str) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['=', ',', '\0']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("=2C") {
            out.push(',');
        } else if tail.starts_with("=3D") {
            out.push('=');
        } else {
            return None;
        }
        rest = &tail[3..];
    }
    out.push_str(rest);
    Some(out)
}

/// Encodes a saslname: ',' as "=2C" and '=' as "=3D".
pub(crate) fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// The value of `attr=value` when the pair has the expected attribute.
pub(crate) fn attr(pair: &str, name: char) -> Option<&str> {
    let mut chars = pair.chars();
    if chars.next() == Some(name) && chars.next() == Some('=') {
        Some(&pair[2..])
    } else {
        None
    }
}

/// Whether a pair looks like an attribute (one ASCII letter and '='); used
/// to accept and skip optional extensions (RFC 5802 §7 `attr-val`).
pub(crate) fn is_attr_val(pair: &str) -> bool {
    let b = pair.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b'='
}

/// A nonce: one or more printable ASCII characters other than ','
/// (RFC 5802 §7 `printable`).
pub(crate) fn is_nonce(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// A channel-binding type name (RFC 5056 §2.1, RFC 5802 §7 `cb-name`).
pub(crate) fn is_cb_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

pub(crate) fn b64_encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Strict base64 with padding (RFC 4648 §4), as SCRAM uses.
pub(crate) fn b64_decode(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s).ok()
}

/// A fresh nonce: `n` random bytes in base64, which is printable and has no
/// ','.
pub(crate) fn random_nonce(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    b64_encode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saslname_roundtrip_and_errors() {
        assert_eq!(decode_saslname("user").as_deref(), Some("user"));
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(decode_saslname("=3D=2C").as_deref(), Some("=,"));
        assert_eq!(encode_saslname("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(
            decode_saslname(&encode_saslname("x=2C,=")).as_deref(),
            Some("x=2C,=")
        );
        for bad in ["", "=", "a=", "a=2", "a=2c", "a=41", "a,b", "a\0b", "=3"] {
            assert_eq!(decode_saslname(bad), None, "{bad:?}");
        }
        assert_eq!(decode_saslname("é=2C").as_deref(), Some("é,"));
    }

    #[test]
    fn attributes() {
        assert_eq!(attr("r=abc", 'r'), Some("abc"));
        assert_eq!(attr("r=", 'r'), Some(""));
        assert_eq!(attr("r", 'r'), None);
        assert_eq!(attr("s=abc", 'r'), None);
        assert_eq!(attr("é=x", 'r'), None);
        assert!(is_attr_val("x=1"));
        assert!(!is_attr_val("1=x"));
        assert!(!is_attr_val("x"));
    }

    #[test]
    fn nonces_and_cb_names() {
        assert!(is_nonce("fyko+d2lbbFgONRv9qkxdawL"));
        assert!(is_nonce("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"));
        assert!(!is_nonce(""));
        assert!(!is_nonce("a b"));
        assert!(!is_nonce("a,b"));
        assert!(!is_nonce("é"));
        assert!(is_nonce(&random_nonce(24)));
        assert!(is_cb_name("tls-exporter"));
        assert!(!is_cb_name("tls exporter"));
        assert!(!is_cb_name(""));
    }
}
