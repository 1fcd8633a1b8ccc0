//! XMPP addresses (RFC 7622): `BareJid` (localpart@domainpart or a bare
//! domain) and `FullJid` (with a resourcepart), normalised once at
//! construction. Two JIDs are equal exactly when their canonical strings are.
//!
//! Splitting follows RFC 7622 §3.1/§3.2: the first '/' starts the
//! resourcepart (which may itself contain '@' and '/'), and the first '@'
//! before it ends the localpart. The separators are matched before any
//! mapping, so a fullwidth '＠' never splits a JID. Each part is then
//! enforced on its own:
//!
//! - localpart: PRECIS `UsernameCaseMapped` (RFC 8265 §3.3, which obsoletes
//!   the RFC 7613 cited by RFC 7622 §3.3) plus the characters excluded by
//!   RFC 7622 §3.3.1;
//! - domainpart: RFC 7622 §3.2, an IDNA2008 domain name in U-label form
//!   (via UTS #46 processing from the `idna` crate), an IPv4 address or a
//!   bracketed IPv6 literal;
//! - resourcepart: PRECIS `OpaqueString` (RFC 8265 §4.2, RFC 7622 §3.4).
//!
//! Every part is 1 to 1023 bytes once normalised. Nothing here panics on
//! any input.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::str::FromStr;

use idna::uts46::{AsciiDenyList, Hyphens, Uts46};
use precis_core::profile::PrecisFastInvocation;
use precis_profiles::{Nickname, OpaqueString, UsernameCaseMapped};

/// The largest localpart, domainpart or resourcepart, in bytes of UTF-8
/// after normalisation (RFC 7622 §3.1).
pub const MAX_PART_LEN: usize = 1023;

/// Characters that RFC 7622 §3.3.1 excludes from localparts although the
/// PRECIS IdentifierClass allows them.
const LOCAL_EXCLUDED: [char; 8] = ['"', '&', '\'', '/', ':', '<', '>', '@'];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    #[error("empty address")]
    Empty,
    #[error("invalid localpart")]
    BadLocal,
    #[error("invalid domainpart")]
    BadDomain,
    #[error("invalid resourcepart")]
    BadResource,
    #[error("part longer than 1023 bytes")]
    TooLong,
    #[error("a full JID was expected")]
    NoResource,
    #[error("a bare JID was expected")]
    HasResource,
}

/// `localpart@domainpart` or `domainpart`, canonical. Hashes, compares
/// and borrows as its string (the separators' places follow from it), so
/// a map keyed by JIDs is searched with a `&str` without building one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BareJid {
    s: String,
    /// Byte index of '@', if there is a localpart.
    at: Option<usize>,
}

/// `[localpart@]domainpart/resourcepart`, canonical; hashes, compares and
/// borrows as its string, as `BareJid` does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FullJid {
    s: String,
    at: Option<usize>,
    slash: usize,
}

/// Either form, as found in a `to` or `from` attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Jid {
    Bare(BareJid),
    Full(FullJid),
}

/// Split a raw address into (localpart, domainpart, resourcepart) per
/// RFC 7622 §3.2: first everything from the first '/' on is the
/// resourcepart, then everything up to the first '@' is the localpart.
fn split(s: &str) -> (Option<&str>, &str, Option<&str>) {
    let (rest, res) = match s.split_once('/') {
        Some((rest, res)) => (rest, Some(res)),
        None => (s, None),
    };
    match rest.split_once('@') {
        Some((local, domain)) => (Some(local), domain, res),
        None => (None, rest, res),
    }
}

fn check_len(s: &str) -> Result<(), JidError> {
    if s.len() > MAX_PART_LEN {
        Err(JidError::TooLong)
    } else {
        Ok(())
    }
}

/// Normalise a localpart (RFC 7622 §3.3): enforce the PRECIS
/// UsernameCaseMapped profile (width mapping, case mapping to lower case,
/// NFC, the Bidi rule), then reject the characters of §3.3.1. Also the
/// canonical form of a SASL username.
pub fn normalize_local(s: &str) -> Result<String, JidError> {
    local_part(s).map(Cow::into_owned)
}

/// As [`normalize_local`], borrowing `s` when it is canonical already.
fn local_part(s: &str) -> Result<Cow<'_, str>, JidError> {
    if s.is_empty() {
        return Err(JidError::BadLocal);
    }
    // Printable ASCII other than space is PVALID in the IdentifierClass,
    // needs no width mapping and is already in NFC: case mapping is all
    // that UsernameCaseMapped does to it. This is the common case, and the
    // full PRECIS path costs several per cent of a server's CPU.
    if s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        if s.contains(LOCAL_EXCLUDED) {
            return Err(JidError::BadLocal);
        }
        check_len(s)?;
        return Ok(if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        });
    }
    let out =
        <UsernameCaseMapped as PrecisFastInvocation>::enforce(s).map_err(|_| JidError::BadLocal)?;
    // Checked on the enforced string: width mapping turns a fullwidth '＠'
    // into '@'.
    if out.contains(LOCAL_EXCLUDED) {
        return Err(JidError::BadLocal);
    }
    check_len(&out)?;
    Ok(Cow::Owned(out.into_owned()))
}

/// Normalise a domainpart (RFC 7622 §3.2).
///
/// One trailing dot is stripped before anything else. A bracketed IPv6
/// literal (RFC 3986 `IP-literal`, without zone identifier) is written in
/// its canonical RFC 5952 form and a dotted-quad IPv4 address is kept as it
/// is. Anything else is a domain name: UTS #46 processing maps width and
/// case, applies NFC and turns A-labels into U-labels; the STD3 deny list
/// rejects every ASCII character other than letters, digits, '-' and '.',
/// and empty labels or labels that begin or end with '-' are refused.
///
/// The DNS limits of 63 bytes a label and 253 a name are not enforced
/// here: a domainpart may be an unqualified host name that never goes to
/// DNS, and RFC 7622 only sets the 1023-byte limit.
pub fn normalize_domain(s: &str) -> Result<String, JidError> {
    domain_part(s).map(Cow::into_owned)
}

/// As [`normalize_domain`], borrowing `s` when it is canonical already.
fn domain_part(s: &str) -> Result<Cow<'_, str>, JidError> {
    // §3.2: the final label separator MUST be stripped before any other
    // canonicalisation step.
    let stripped = s.strip_suffix('.');
    let s = stripped.unwrap_or(s);
    if s.is_empty() {
        return Err(JidError::BadDomain);
    }
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(JidError::BadDomain)?;
        let addr = Ipv6Addr::from_str(inner).map_err(|_| JidError::BadDomain)?;
        return Ok(Cow::Owned(format!("[{addr}]")));
    }
    if let Ok(addr) = Ipv4Addr::from_str(s) {
        return Ok(Cow::Owned(addr.to_string()));
    }
    // Letters, digits, '-' and '.' without A-labels: UTS #46 only lowers
    // the case of these.
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !s
            .split('.')
            .any(|l| l.len() >= 4 && l[..4].eq_ignore_ascii_case("xn--"))
    {
        let name = if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        };
        if !name.split('.').all(valid_label) {
            return Err(JidError::BadDomain);
        }
        check_len(&name)?;
        return Ok(name);
    }
    let (mapped, result) =
        Uts46::new().to_unicode(s.as_bytes(), AsciiDenyList::STD3, Hyphens::CheckFirstLast);
    result.map_err(|_| JidError::BadDomain)?;
    // UTS #46 maps other full stops (U+3002 and friends) to '.'; accept one
    // such trailing separator too, unless an ASCII one was already removed.
    let name = match (stripped, mapped.strip_suffix('.')) {
        (None, Some(name)) => name,
        _ => &mapped,
    };
    if !name.split('.').all(valid_label) {
        return Err(JidError::BadDomain);
    }
    check_len(name)?;
    Ok(Cow::Owned(name.to_string()))
}

/// A label of a processed domain name: not empty, no leading or trailing
/// hyphen, and ASCII only as lower-case letters, digits and '-'.
fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.chars().all(|c| {
            if c.is_ascii() {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
            } else {
                c != char::REPLACEMENT_CHARACTER
            }
        })
}

/// A nickname as the PRECIS Nickname profile enforces it (RFC 8266 §2):
/// spaces mapped, trimmed and collapsed, NFKC; case kept. XEP-0045 names
/// room occupants by such nicknames.
pub fn nickname(s: &str) -> Result<String, JidError> {
    let out = <Nickname as PrecisFastInvocation>::enforce(s).map_err(|_| JidError::BadResource)?;
    check_len(&out)?;
    Ok(out.into_owned())
}

/// Whether two nicknames are the same under RFC 8266 §2.4 (case-
/// insensitive): two occupants of a room may not have such nicknames.
pub fn same_nickname(a: &str, b: &str) -> bool {
    nickname_key(a) == nickname_key(b)
}

/// The form in which two nicknames compare (RFC 8266 §2.4: the
/// enforcement rules with the case mapped to lower case), to keep with a
/// nickname so that a room compares a newcomer's against its occupants'
/// without running PRECIS once per occupant. A string the profile refuses
/// is its own lower case.
pub fn nickname_key(s: &str) -> String {
    // Printable ASCII without spaces: the rules change nothing but case.
    if s.bytes().all(|b| b.is_ascii_graphic()) {
        return s.to_ascii_lowercase();
    }
    let lower = s.to_lowercase();
    match <Nickname as PrecisFastInvocation>::enforce(lower.as_str()) {
        Ok(k) => k.into_owned(),
        Err(_) => lower,
    }
}

/// Normalise a resourcepart (RFC 7622 §3.4): enforce the PRECIS
/// OpaqueString profile (non-ASCII spaces mapped to U+0020, NFC). Case and
/// width are preserved.
pub fn normalize_resource(s: &str) -> Result<String, JidError> {
    resource_part(s).map(Cow::into_owned)
}

/// As [`normalize_resource`], borrowing `s` when it is canonical already.
fn resource_part(s: &str) -> Result<Cow<'_, str>, JidError> {
    if s.is_empty() {
        return Err(JidError::BadResource);
    }
    // OpaqueString leaves printable ASCII, space included, as it is.
    if s.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        check_len(s)?;
        return Ok(Cow::Borrowed(s));
    }
    let out =
        <OpaqueString as PrecisFastInvocation>::enforce(s).map_err(|_| JidError::BadResource)?;
    check_len(&out)?;
    Ok(Cow::Owned(out.into_owned()))
}

/// A slice of a canonical JID string. The ranges come from the separators
/// found at construction, so the lookup cannot miss; the fallback only
/// keeps accessors panic-free should that invariant ever break.
fn slice(s: &str, r: Range<usize>) -> &str {
    s.get(r).unwrap_or_default()
}

/// The canonical `local@domain` of the parts, in one string with room for
/// `extra` more bytes, and the index of its '@'. Only a part that
/// normalisation changes is copied on its own first.
fn assemble(
    local: Option<&str>,
    domain: &str,
    extra: usize,
) -> Result<(String, Option<usize>), JidError> {
    let domain = domain_part(domain)?;
    let local = local.map(local_part).transpose()?;
    let len = local.as_ref().map_or(0, |l| l.len() + 1) + domain.len();
    let mut s = String::with_capacity(len + extra);
    let at = local.map(|l| {
        s.push_str(&l);
        s.push('@');
        l.len()
    });
    s.push_str(&domain);
    Ok((s, at))
}

impl BareJid {
    pub fn new(local: Option<&str>, domain: &str) -> Result<BareJid, JidError> {
        let (s, at) = assemble(local, domain, 0)?;
        Ok(BareJid { s, at })
    }

    /// A domain-only JID.
    pub fn domain_jid(domain: &str) -> Result<BareJid, JidError> {
        BareJid::new(None, domain)
    }

    pub fn parse(s: &str) -> Result<BareJid, JidError> {
        match Jid::parse(s)? {
            Jid::Bare(b) => Ok(b),
            Jid::Full(_) => Err(JidError::HasResource),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.s
    }

    pub fn local(&self) -> Option<&str> {
        self.at.map(|i| slice(&self.s, 0..i))
    }

    pub fn domain(&self) -> &str {
        match self.at {
            Some(i) => slice(&self.s, i + 1..self.s.len()),
            None => &self.s,
        }
    }

    pub fn with_resource(&self, resource: &str) -> Result<FullJid, JidError> {
        let r = normalize_resource(resource)?;
        Ok(FullJid {
            s: format!("{}/{}", self.s, r),
            at: self.at,
            slash: self.s.len(),
        })
    }
}

impl FullJid {
    pub fn parse(s: &str) -> Result<FullJid, JidError> {
        match Jid::parse(s)? {
            Jid::Full(f) => Ok(f),
            Jid::Bare(_) => Err(JidError::NoResource),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.s
    }

    pub fn bare(&self) -> BareJid {
        BareJid {
            s: self.bare_str().to_string(),
            at: self.at,
        }
    }

    /// The bare part as a string slice, without allocating.
    pub fn bare_str(&self) -> &str {
        slice(&self.s, 0..self.slash)
    }

    pub fn local(&self) -> Option<&str> {
        self.at.map(|i| slice(&self.s, 0..i))
    }

    pub fn domain(&self) -> &str {
        match self.at {
            Some(i) => slice(&self.s, i + 1..self.slash),
            None => slice(&self.s, 0..self.slash),
        }
    }

    pub fn resource(&self) -> &str {
        slice(&self.s, self.slash + 1..self.s.len())
    }
}

impl Jid {
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        if s.is_empty() {
            return Err(JidError::Empty);
        }
        let (local, domain, res) = split(s);
        let Some(r) = res else {
            return BareJid::new(local, domain).map(Jid::Bare);
        };
        let (mut s, at) = assemble(local, domain, 1 + r.len())?;
        let resource = resource_part(r)?;
        let slash = s.len();
        s.push('/');
        s.push_str(&resource);
        Ok(Jid::Full(FullJid { s, at, slash }))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Jid::Bare(b) => b.as_str(),
            Jid::Full(f) => f.as_str(),
        }
    }

    pub fn bare(&self) -> BareJid {
        match self {
            Jid::Bare(b) => b.clone(),
            Jid::Full(f) => f.bare(),
        }
    }

    pub fn bare_str(&self) -> &str {
        match self {
            Jid::Bare(b) => b.as_str(),
            Jid::Full(f) => f.bare_str(),
        }
    }

    pub fn local(&self) -> Option<&str> {
        match self {
            Jid::Bare(b) => b.local(),
            Jid::Full(f) => f.local(),
        }
    }

    pub fn domain(&self) -> &str {
        match self {
            Jid::Bare(b) => b.domain(),
            Jid::Full(f) => f.domain(),
        }
    }

    pub fn resource(&self) -> Option<&str> {
        match self {
            Jid::Bare(_) => None,
            Jid::Full(f) => Some(f.resource()),
        }
    }
}

macro_rules! display_fromstr {
    ($t:ty, $parse:path) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $t {
            type Err = JidError;
            fn from_str(s: &str) -> Result<Self, JidError> {
                $parse(s)
            }
        }
    };
}
display_fromstr!(BareJid, BareJid::parse);
display_fromstr!(FullJid, FullJid::parse);
display_fromstr!(Jid, Jid::parse);

impl Hash for BareJid {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.s.as_str().hash(h)
    }
}

impl Hash for FullJid {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.s.as_str().hash(h)
    }
}

impl Borrow<str> for BareJid {
    fn borrow(&self) -> &str {
        &self.s
    }
}

impl Borrow<str> for FullJid {
    fn borrow(&self) -> &str {
        &self.s
    }
}

impl From<FullJid> for Jid {
    fn from(f: FullJid) -> Jid {
        Jid::Full(f)
    }
}

impl From<BareJid> for Jid {
    fn from(b: BareJid) -> Jid {
        Jid::Bare(b)
    }
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;

    fn slow_local(s: &str) -> Result<String, JidError> {
        let out = <UsernameCaseMapped as PrecisFastInvocation>::enforce(s)
            .map_err(|_| JidError::BadLocal)?;
        if out.contains(LOCAL_EXCLUDED) {
            return Err(JidError::BadLocal);
        }
        Ok(out.into_owned())
    }

    fn slow_resource(s: &str) -> Result<String, JidError> {
        <OpaqueString as PrecisFastInvocation>::enforce(s)
            .map(|o| o.into_owned())
            .map_err(|_| JidError::BadResource)
    }

    fn slow_domain(s: &str) -> Result<String, JidError> {
        let (mapped, result) =
            Uts46::new().to_unicode(s.as_bytes(), AsciiDenyList::STD3, Hyphens::CheckFirstLast);
        result.map_err(|_| JidError::BadDomain)?;
        if !mapped.split('.').all(valid_label) {
            return Err(JidError::BadDomain);
        }
        Ok(mapped.into_owned())
    }

    /// Every string of one or two printable ASCII characters, and a few
    /// longer ones, normalise the same on the ASCII fast path as through
    /// the full PRECIS and UTS #46 code.
    #[test]
    fn the_ascii_fast_paths_agree_with_precis() {
        let chars: Vec<char> = (0x20u8..=0x7e).map(char::from).collect();
        let mut inputs: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        for a in &chars {
            for b in &chars {
                inputs.push(format!("{a}{b}"));
            }
        }
        inputs.extend(
            [
                "Load123",
                "a.b-c",
                "Example.COM",
                "-a.b",
                "a-.b",
                "a..b",
                "xn--bcher-kva",
                "x.XN--bcher-kva.ch",
                "Romeo Montague",
                "ab_c~d",
            ]
            .map(String::from),
        );
        for s in &inputs {
            assert_eq!(normalize_local(s), slow_local(s), "local {s:?}");
            assert_eq!(normalize_resource(s), slow_resource(s), "resource {s:?}");
            if !s.ends_with('.') && !s.starts_with('[') && Ipv4Addr::from_str(s).is_err() {
                assert_eq!(normalize_domain(s), slow_domain(s), "domain {s:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        match Jid::parse(s) {
            Ok(j) => j,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn canon(s: &str) -> String {
        jid(s).to_string()
    }

    fn err(s: &str) -> JidError {
        match Jid::parse(s) {
            Ok(j) => panic!("{s:?} should not parse, got {j}"),
            Err(e) => e,
        }
    }

    #[test]
    fn nicknames_compare_as_rfc_8266_says() {
        for (a, b) in [
            ("Alice", "aLICE"),
            ("\u{FF21}lice", "alice"),
            ("Guybrush   Threepwood ", "guybrush threepwood"),
            ("\u{3A3}\u{3B1}\u{3C2}", "\u{3C3}\u{3B1}\u{3C2}"),
        ] {
            assert!(same_nickname(a, b), "{a:?} {b:?}");
            assert_eq!(nickname_key(a), nickname_key(b), "{a:?} {b:?}");
        }
        for (a, b) in [
            ("alice", "alice2"),
            ("al ice", "alice"),
            ("bob", "b\u{F6}b"),
        ] {
            assert!(!same_nickname(a, b), "{a:?} {b:?}");
        }
    }

    #[test]
    fn localpart_and_domain_are_case_folded() {
        assert_eq!(canon("JuLiEt@Example.COM"), "juliet@example.com");
        assert_eq!(
            jid("JULIET@EXAMPLE.COM/Balcony"),
            jid("juliet@example.com/Balcony")
        );
        // RFC 7622 §3.5 examples 9-11: capital sigma folds to small sigma,
        // final sigma stays distinct.
        assert_eq!(canon("\u{3A3}@example.com/foo"), "\u{3C3}@example.com/foo");
        assert_ne!(jid("\u{3C3}@example.com"), jid("\u{3C2}@example.com"));
        // Examples 6 and 7: sharp s is not "ss".
        assert_ne!(jid("fussball@example.com"), jid("fu\u{DF}ball@example.com"));
        assert_eq!(canon("M\u{DC}NCHEN.de"), "m\u{FC}nchen.de");
    }

    #[test]
    fn resourcepart_keeps_its_case() {
        let j = jid("a@b.example/Balcony");
        assert_eq!(j.resource(), Some("Balcony"));
        assert_ne!(jid("a@b.example/Balcony"), jid("a@b.example/balcony"));
        // Example 12: symbols are allowed in resourceparts.
        assert_eq!(
            jid("king@example.com/\u{265A}").resource(),
            Some("\u{265A}")
        );
        // Example 3: a space inside a resourcepart.
        assert_eq!(
            jid("juliet@example.com/foo bar").resource(),
            Some("foo bar")
        );
    }

    #[test]
    fn fullwidth_and_compatibility_characters() {
        // Width mapping in localpart and domainpart.
        assert_eq!(
            canon("\u{FF2A}\u{FF35}\u{FF2C}\u{FF29}\u{FF25}\u{FF34}@\u{FF45}\u{FF58}ample.com"),
            "juliet@example.com"
        );
        // The ideographic full stop is a label separator in domainparts.
        assert_eq!(canon("example\u{3002}com"), "example.com");
        // A fullwidth '@' does not split the JID, and once width-mapped it
        // is an excluded localpart character.
        assert_eq!(err("a\u{FF20}b@example.com"), JidError::BadLocal);
        // ... and a fullwidth '/' is no resource separator in a domain.
        assert_eq!(err("example.com\u{FF0F}r"), JidError::BadDomain);
        // Example 20: ROMAN NUMERAL FOUR has a compatibility equivalent,
        // which the IdentifierClass disallows.
        assert_eq!(err("henry\u{2163}@example.com"), JidError::BadLocal);
        // Example 21: symbols are not identifiers.
        assert_eq!(err("\u{265A}@example.com"), JidError::BadLocal);
        // OpaqueString keeps fullwidth characters but maps non-ASCII
        // spaces to U+0020.
        assert_eq!(
            jid("a@example.com/\u{FF46}\u{FF4F}\u{FF4F}").resource(),
            Some("\u{FF46}\u{FF4F}\u{FF4F}")
        );
        assert_eq!(jid("a@example.com/x\u{A0}y").resource(), Some("x y"));
        // NFC: a decomposed e-acute composes in every part.
        assert_eq!(
            canon("e\u{301}@e\u{301}.example/e\u{301}"),
            "\u{E9}@\u{E9}.example/\u{E9}"
        );
    }

    #[test]
    fn idna_a_labels_become_u_labels() {
        assert_eq!(canon("XN--MNCHEN-3YA.de"), "m\u{FC}nchen.de");
        assert_eq!(jid("xn--mnchen-3ya.de"), jid("m\u{FC}nchen.de"));
        assert_eq!(err("xn--a-.example"), JidError::BadDomain);
    }

    #[test]
    fn excluded_and_invalid_characters_are_rejected() {
        for c in LOCAL_EXCLUDED {
            assert_eq!(
                normalize_local(&format!("a{c}b")),
                Err(JidError::BadLocal),
                "{c:?}"
            );
        }
        // Example 16 and 17.
        assert_eq!(err("\"juliet\"@example.com"), JidError::BadLocal);
        assert_eq!(err("foo bar@example.com"), JidError::BadLocal);
        assert_eq!(err("a\u{7}b@example.com"), JidError::BadLocal);
        for d in [
            "exa mple.com",
            "example..com",
            ".example.com",
            "-example.com",
            "example-.com",
            "exa_mple.com",
            "example.com:5222",
            "ex<ample.com",
            "b@c",
            "[::1",
            "[fe80::1%25eth0]",
            "[1.2.3.4]",
            "[]",
            "\u{265A}\u{FFFD}.example",
        ] {
            assert_eq!(
                normalize_domain(d),
                Err(JidError::BadDomain),
                "{d:?} should be a bad domain"
            );
        }
        // The domain is everything between the first '@' and the first '/'.
        assert_eq!(err("a@b@c"), JidError::BadDomain);
        assert_eq!(err("a@example.com/x\u{7}"), JidError::BadResource);
        assert_eq!(err("a@example.com/\u{FFFF}"), JidError::BadResource);
    }

    #[test]
    fn length_limits_count_normalised_bytes() {
        let ok = "a".repeat(MAX_PART_LEN);
        let long = "a".repeat(MAX_PART_LEN + 1);
        assert!(Jid::parse(&format!("{ok}@{ok}/{ok}")).is_ok());
        assert_eq!(err(&format!("{long}@example.com")), JidError::TooLong);
        assert_eq!(err(&format!("a@{long}")), JidError::TooLong);
        assert_eq!(err(&format!("a@example.com/{long}")), JidError::TooLong);
        // Bytes, not characters: 512 two-byte characters are 1024 bytes.
        assert_eq!(
            normalize_local(&"\u{E9}".repeat(512)),
            Err(JidError::TooLong)
        );
        assert!(normalize_local(&"\u{E9}".repeat(511)).is_ok());
        // After normalisation: 1023 fullwidth letters (3069 bytes of input)
        // map to 1023 ASCII bytes.
        assert_eq!(
            normalize_local(&"\u{FF41}".repeat(MAX_PART_LEN)).as_deref(),
            Ok(ok.as_str())
        );
        // The trailing dot does not count.
        assert!(normalize_domain(&format!("{ok}.")).is_ok());
    }

    #[test]
    fn splitting_follows_rfc_7622_section_3_2() {
        let j = jid("a@b/c@d/e");
        assert_eq!(j.local(), Some("a"));
        assert_eq!(j.domain(), "b");
        assert_eq!(j.resource(), Some("c@d/e"));
        assert_eq!(j.bare_str(), "a@b");
        // Example 15: a resourcepart with an '@' after a bare domain.
        let j = jid("a.example.com/b@example.net");
        assert_eq!(j.local(), None);
        assert_eq!(j.domain(), "a.example.com");
        assert_eq!(j.resource(), Some("b@example.net"));
        // Example 14.
        assert_eq!(jid("example.com/foobar").resource(), Some("foobar"));
        assert_eq!(jid("a@b//").resource(), Some("/"));
    }

    #[test]
    fn empty_parts_are_rejected() {
        assert_eq!(err(""), JidError::Empty);
        assert_eq!(err("@d"), JidError::BadLocal);
        assert_eq!(err("a@"), JidError::BadDomain);
        assert_eq!(err("d/"), JidError::BadResource);
        assert_eq!(err("a@d/"), JidError::BadResource);
        // Examples 19, 22 and 23.
        assert_eq!(err("@example.com/"), JidError::BadLocal);
        assert_eq!(err("juliet@"), JidError::BadDomain);
        assert_eq!(err("/foobar"), JidError::BadDomain);
        assert_eq!(err("a@/r"), JidError::BadDomain);
        // The domainpart is checked first.
        assert_eq!(err("@"), JidError::BadDomain);
        assert_eq!(err("/"), JidError::BadDomain);
    }

    #[test]
    fn one_trailing_dot_is_stripped() {
        assert_eq!(jid("a@example.com."), jid("a@example.com"));
        assert_eq!(canon("a@example.com./r"), "a@example.com/r");
        assert_eq!(canon("example.com\u{3002}"), "example.com");
        assert_eq!(err("example.com.."), JidError::BadDomain);
        assert_eq!(err("example.com.\u{3002}"), JidError::BadDomain);
        assert_eq!(err("."), JidError::BadDomain);
        assert_eq!(err("a@./r"), JidError::BadDomain);
    }

    #[test]
    fn ip_literals_are_domainparts() {
        assert_eq!(canon("127.0.0.1"), "127.0.0.1");
        assert_eq!(canon("a@127.0.0.1/r"), "a@127.0.0.1/r");
        assert_eq!(canon("[::1]"), "[::1]");
        assert_eq!(canon("a@[0:0:0:0:0:0:0:1]/r"), "a@[::1]/r");
        assert_eq!(canon("[2001:DB8::A]"), "[2001:db8::a]");
        assert_eq!(canon("[::FFFF:192.0.2.1]"), "[::ffff:192.0.2.1]");
        assert_eq!(jid("u@[::1]").domain(), "[::1]");
        assert_eq!(err("::1"), JidError::BadDomain);
    }

    #[test]
    fn bare_and_full_forms() {
        assert_eq!(FullJid::parse("a@b"), Err(JidError::NoResource));
        assert_eq!(BareJid::parse("a@b/c"), Err(JidError::HasResource));
        let full = FullJid::parse("Romeo@Example.NET/Orchard").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(full.as_str(), "romeo@example.net/Orchard");
        assert_eq!(full.bare_str(), "romeo@example.net");
        assert_eq!(full.domain(), "example.net");
        assert_eq!(full.local(), Some("romeo"));
        assert_eq!(full.resource(), "Orchard");
        let bare = full.bare();
        assert_eq!(
            bare,
            BareJid::new(Some("ROMEO"), "example.net.").unwrap_or_else(|e| panic!("{e}"))
        );
        assert_eq!(bare.with_resource("Orchard"), Ok(full.clone()));
        assert_eq!(Jid::from(full.clone()).bare(), bare);
        let domain = BareJid::domain_jid("Example.NET").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(domain.local(), None);
        assert_eq!(domain.domain(), "example.net");
        assert_eq!("example.net".parse::<BareJid>(), Ok(domain));
    }

    /// A map keyed by JIDs is searched by the canonical string, which is
    /// what the fan-out does for every recipient; a JID that normalises
    /// to that string finds the same entry.
    #[test]
    fn jids_hash_and_borrow_as_their_canonical_string() {
        use std::collections::HashMap;
        let ok = |s: &str| Jid::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        let mut users: HashMap<BareJid, u32> = HashMap::new();
        users.insert(ok("Juliet@Example.COM.").bare(), 1);
        users.insert(ok("example.com").bare(), 2);
        assert_eq!(users.get("juliet@example.com"), Some(&1));
        assert_eq!(
            users.get(ok("JULIET@example.com/Balcony").bare_str()),
            Some(&1)
        );
        assert_eq!(users.get("example.com"), Some(&2));
        assert_eq!(users.get("Juliet@example.com"), None);
        let mut sessions: HashMap<FullJid, u32> = HashMap::new();
        let Jid::Full(f) = ok("juliet@EXAMPLE.com/Bal cony") else {
            panic!("not full")
        };
        assert_eq!(f.as_str(), "juliet@example.com/Bal cony");
        sessions.insert(f, 3);
        assert_eq!(sessions.get("juliet@example.com/Bal cony"), Some(&3));
        // Parts normalised one by one land in one canonical string.
        let Jid::Full(f) = ok("\u{FF32}omeo@\u{FF25}xample.net/\u{FF32}") else {
            panic!("not full")
        };
        assert_eq!(f.as_str(), "romeo@example.net/\u{FF32}");
        assert_eq!(
            (f.local(), f.domain(), f.resource()),
            (Some("romeo"), "example.net", "\u{FF32}")
        );
    }

    #[test]
    fn sasl_usernames_normalise_like_localparts() {
        assert_eq!(normalize_local("User").as_deref(), Ok("user"));
        assert_eq!(normalize_local(""), Err(JidError::BadLocal));
        assert_eq!(
            normalize_resource("").as_deref(),
            Err(&JidError::BadResource)
        );
        assert_eq!(normalize_domain(""), Err(JidError::BadDomain));
    }

    /// RFC 7622 §3.5 lists "<juliet@example.com/ foo>" (a leading space) as
    /// not a JID, but the normative rule (§3.4: the OpaqueString profile)
    /// allows spaces anywhere; the normative rule wins here.
    #[test]
    fn leading_space_in_resourcepart_follows_opaque_string() {
        assert_eq!(jid("juliet@example.com/ foo").resource(), Some(" foo"));
    }

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).unwrap_or(0)
        }
    }

    /// Pieces that exercise separators, mappings and invalid UTF-8.
    const PIECES: &[&str] = &[
        "a",
        "Z",
        "0",
        "7",
        "-",
        ".",
        "@",
        "/",
        " ",
        "[",
        "]",
        ":",
        "%",
        "_",
        "xn--",
        "\u{FF21}",
        "\u{FF20}",
        "\u{FF0F}",
        "\u{3002}",
        "\u{DF}",
        "\u{3A3}",
        "\u{3C2}",
        "\u{130}",
        "\u{301}",
        "\u{E9}",
        "\u{200D}",
        "\u{A0}",
        "\u{5D0}",
        "\u{663}",
        "\u{265A}",
        "\u{2163}",
        "\u{FFFD}",
        "\u{AD}",
        "\u{1D400}",
        "127.0.0.1",
        "::1",
    ];

    fn random_input(rng: &mut Rng) -> String {
        let mut bytes = Vec::new();
        for _ in 0..rng.below(16) {
            if rng.below(8) == 0 {
                // A raw byte, frequently not valid UTF-8.
                bytes.push(u8::try_from(rng.next() & 0xFF).unwrap_or(0));
            } else {
                let piece = PIECES.get(rng.below(PIECES.len())).copied().unwrap_or("a");
                bytes.extend_from_slice(piece.as_bytes());
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn random_inputs_never_panic_and_parsing_is_idempotent() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut parsed = 0;
        for _ in 0..5000 {
            let input = random_input(&mut rng);
            let first = Jid::parse(&input);
            if let Ok(j) = &first {
                parsed += 1;
                let again = Jid::parse(&j.to_string());
                assert_eq!(again.as_ref(), Ok(j), "input {input:?}");
                assert_eq!(
                    BareJid::parse(j.bare_str()),
                    Ok(j.bare()),
                    "input {input:?}"
                );
            }
            for f in [normalize_local, normalize_domain, normalize_resource] {
                if let Ok(once) = f(&input) {
                    assert_eq!(f(&once).as_ref(), Ok(&once), "input {input:?}");
                }
            }
        }
        // The generator must reach the success paths too.
        assert!(parsed > 100, "only {parsed} inputs parsed");
    }
}
