//! XMPP addresses (RFC 7622): `BareJid` (localpart@domainpart or a bare
//! domain) and `FullJid` (with a resourcepart), normalised once at
//! construction. Two JIDs are equal exactly when their canonical strings are.
//!
//! SKELETON: the parsing below only splits; PRECIS enforcement is to come.

use std::fmt;
use std::str::FromStr;

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

/// `localpart@domainpart` or `domainpart`, canonical.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BareJid {
    s: String,
    /// Byte index of '@', if there is a localpart.
    at: Option<usize>,
}

/// `[localpart@]domainpart/resourcepart`, canonical.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

fn split(s: &str) -> (Option<&str>, &str, Option<&str>) {
    let (rest, res) = match s.find('/') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    match rest.find('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..], res),
        None => (None, rest, res),
    }
}

/// Normalise a localpart (RFC 7622 §3.3: UsernameCaseMapped).
pub fn normalize_local(s: &str) -> Result<String, JidError> {
    if s.is_empty() {
        return Err(JidError::BadLocal);
    }
    Ok(s.to_lowercase())
}

/// Normalise a domainpart (RFC 7622 §3.2).
pub fn normalize_domain(s: &str) -> Result<String, JidError> {
    if s.is_empty() {
        return Err(JidError::BadDomain);
    }
    Ok(s.to_lowercase())
}

/// Normalise a resourcepart (RFC 7622 §3.4: OpaqueString).
pub fn normalize_resource(s: &str) -> Result<String, JidError> {
    if s.is_empty() {
        return Err(JidError::BadResource);
    }
    Ok(s.to_string())
}

impl BareJid {
    pub fn new(local: Option<&str>, domain: &str) -> Result<BareJid, JidError> {
        let domain = normalize_domain(domain)?;
        Ok(match local {
            Some(l) => {
                let l = normalize_local(l)?;
                let at = l.len();
                BareJid { s: format!("{l}@{domain}"), at: Some(at) }
            }
            None => BareJid { s: domain, at: None },
        })
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
        self.at.map(|i| &self.s[..i])
    }

    pub fn domain(&self) -> &str {
        match self.at {
            Some(i) => &self.s[i + 1..],
            None => &self.s,
        }
    }

    pub fn with_resource(&self, resource: &str) -> Result<FullJid, JidError> {
        let r = normalize_resource(resource)?;
        Ok(FullJid { s: format!("{}/{}", self.s, r), at: self.at, slash: self.s.len() })
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
        BareJid { s: self.s[..self.slash].to_string(), at: self.at }
    }

    /// The bare part as a string slice, without allocating.
    pub fn bare_str(&self) -> &str {
        &self.s[..self.slash]
    }

    pub fn local(&self) -> Option<&str> {
        self.at.map(|i| &self.s[..i])
    }

    pub fn domain(&self) -> &str {
        match self.at {
            Some(i) => &self.s[i + 1..self.slash],
            None => &self.s[..self.slash],
        }
    }

    pub fn resource(&self) -> &str {
        &self.s[self.slash + 1..]
    }
}

impl Jid {
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        if s.is_empty() {
            return Err(JidError::Empty);
        }
        let (local, domain, res) = split(s);
        let bare = BareJid::new(local, domain)?;
        Ok(match res {
            Some(r) => Jid::Full(bare.with_resource(r)?),
            None => Jid::Bare(bare),
        })
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
