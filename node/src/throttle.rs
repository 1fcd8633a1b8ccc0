//! Abuse controls an edge keeps across connections, keyed by the client's
//! address: in-band registrations per address (an interval between two,
//! as ejabberd's `registration_timeout` and Prosody's
//! `min_seconds_between_registrations` do, and lists of networks that are
//! exempt or alone allowed), and failed logins per address and per
//! account with a delay that grows with each failure.
//!
//! IPv6 clients are keyed by their /64: one subscriber usually has a whole
//! /64 and could otherwise take a fresh address for every attempt. Every
//! table is bounded ([`MAX_ENTRIES`]): expired entries go first, then the
//! oldest. The state lives on the `Edge` value, none is global.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most addresses or accounts one table remembers.
pub const MAX_ENTRIES: usize = 65_536;

/// What a throttle counts for one client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpKey(IpAddr);

impl IpKey {
    pub fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(_) => IpKey(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey(IpAddr::V4(v4)),
                None => {
                    let mut o = v6.octets();
                    o[8..].fill(0);
                    IpKey(IpAddr::V6(Ipv6Addr::from(o)))
                }
            },
        }
    }
}

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`) or a single
/// address. Written here rather than taken from a crate: parsing and
/// matching a prefix is a few lines, and nothing else is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(s: &str) -> Result<Network, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or network such as \"10.0.0.0/8\""))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        Ok(Network { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(
                u128::from(n.to_bits()),
                u128::from(a.to_bits()),
                32,
                self.prefix,
            ),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(n.to_bits(), a.to_bits(), 128, self.prefix),
            _ => false,
        }
    }
}

/// Whether the first `prefix` of `width` bits of `a` and `b` agree.
fn prefix_eq(a: u128, b: u128, width: u32, prefix: u8) -> bool {
    let drop = width - u32::from(prefix);
    a.checked_shr(drop).unwrap_or(0) == b.checked_shr(drop).unwrap_or(0)
}

fn any_contains(nets: &[Network], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

/// A map with at most [`MAX_ENTRIES`] keys: when full, the entries
/// `expired` says are done go, then the one `age` says is oldest.
fn make_room<K: Eq + Hash + Clone, V>(
    m: &mut HashMap<K, V>,
    expired: impl Fn(&V) -> bool,
    age: impl Fn(&V) -> Instant,
) {
    if m.len() < MAX_ENTRIES {
        return;
    }
    m.retain(|_, v| !expired(v));
    while m.len() >= MAX_ENTRIES {
        let Some(oldest) = m.iter().min_by_key(|(_, v)| age(v)).map(|(k, _)| k.clone()) else {
            break;
        };
        m.remove(&oldest);
    }
}

/// Why an in-band registration was refused before it was tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationRefused {
    /// `allowed_networks` is set and the client is not in it.
    NotFromHere,
    /// Another account was registered from this address too recently.
    TooSoon(Duration),
}

/// In-band registrations per client address.
pub struct RegistrationGate {
    pub min_interval: Duration,
    /// Exempt from the interval.
    pub trusted: Vec<Network>,
    /// When not empty, only these may register.
    pub allowed: Vec<Network>,
    last: Mutex<HashMap<IpKey, Instant>>,
}

/// A registration admitted by [`RegistrationGate::admit`]; give it back
/// with [`RegistrationGate::failed`] if no account was made.
#[derive(Debug)]
pub struct Admitted {
    key: Option<(IpKey, Option<Instant>)>,
}

impl RegistrationGate {
    pub fn new(min_interval: Duration, trusted: Vec<Network>, allowed: Vec<Network>) -> Self {
        RegistrationGate {
            min_interval,
            trusted,
            allowed,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// May `ip` register an account now? An admitted registration counts
    /// at once, so two at the same time from one address are one too many.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<Admitted, RegistrationRefused> {
        if !self.allowed.is_empty() && !any_contains(&self.allowed, ip) {
            return Err(RegistrationRefused::NotFromHere);
        }
        if self.min_interval.is_zero() || any_contains(&self.trusted, ip) {
            return Ok(Admitted { key: None });
        }
        let key = IpKey::of(ip);
        let Ok(mut last) = self.last.lock() else {
            return Ok(Admitted { key: None });
        };
        let previous = last.get(&key).copied();
        if let Some(t) = previous {
            let since = now.saturating_duration_since(t);
            if since < self.min_interval {
                return Err(RegistrationRefused::TooSoon(self.min_interval - since));
            }
        }
        let interval = self.min_interval;
        make_room(
            &mut last,
            |t| now.saturating_duration_since(*t) >= interval,
            |t| *t,
        );
        last.insert(key, now);
        Ok(Admitted {
            key: Some((key, previous)),
        })
    }

    /// The admitted registration made no account: it does not count.
    pub fn failed(&self, a: Admitted) {
        let Some((key, previous)) = a.key else { return };
        if let Ok(mut last) = self.last.lock() {
            match previous {
                Some(t) => last.insert(key, t),
                None => last.remove(&key),
            };
        }
    }
}

/// Failed logins of one address or account.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    /// No attempt is taken before this.
    until: Instant,
}

/// Failed logins per client address and per account. Past `free`
/// failures, each one is answered only after a delay, `base` doubled for
/// every further failure and at most `max`, and the next attempt must wait
/// as long again after that answer; a quiet `forget` clears the count.
///
/// The two keys act differently on purpose. An address whose wait is not
/// over is refused at once (`temporary-auth-failure`): it is the
/// attacker's own resource. An account's wait delays every attempt on it,
/// right or wrong, before the password is checked: someone guessing from
/// many addresses is slowed down as much, yet cannot lock the owner out,
/// and the time an answer takes tells nothing about the password.
pub struct AuthThrottle {
    pub free: u32,
    pub base: Duration,
    pub max: Duration,
    pub forget: Duration,
    per_ip: Mutex<HashMap<IpKey, Failures>>,
    per_account: Mutex<HashMap<String, Failures>>,
}

impl AuthThrottle {
    pub fn new(free: u32, base: Duration, max: Duration, forget: Duration) -> AuthThrottle {
        AuthThrottle {
            free,
            base,
            max,
            forget,
            per_ip: Mutex::new(HashMap::new()),
            per_account: Mutex::new(HashMap::new()),
        }
    }

    fn delay_after(&self, count: u32) -> Duration {
        if count <= self.free || self.base.is_zero() {
            return Duration::ZERO;
        }
        let doublings = (count - self.free - 1).min(30);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }

    /// How long `ip` must still wait before its next attempt, if at all.
    pub fn ip_wait(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let m = self.per_ip.lock().ok()?;
        let f = m.get(&IpKey::of(ip))?;
        (f.until > now).then(|| f.until - now)
    }

    /// How long an attempt on `account` waits before it is checked.
    pub fn account_wait(&self, account: &str, now: Instant) -> Duration {
        self.per_account
            .lock()
            .ok()
            .and_then(|m| {
                m.get(account)
                    .map(|f| f.until.saturating_duration_since(now))
            })
            .unwrap_or_default()
    }

    /// Count a failed login from `ip` on `account` (if the name was one);
    /// the delay to hold back the `<failure/>` with.
    pub fn failed(&self, ip: IpAddr, account: Option<&str>, now: Instant) -> Duration {
        let mut held = Duration::ZERO;
        if let Ok(mut m) = self.per_ip.lock() {
            held = self.count(&mut m, IpKey::of(ip), now);
        }
        if let (Some(a), Ok(mut m)) = (account, self.per_account.lock()) {
            held = held.max(self.count(&mut m, a.to_string(), now));
        }
        held
    }

    fn count<K: Eq + Hash + Clone>(
        &self,
        m: &mut HashMap<K, Failures>,
        key: K,
        now: Instant,
    ) -> Duration {
        let forget = self.forget;
        if !m.contains_key(&key) {
            make_room(
                m,
                |f| now.saturating_duration_since(f.last) >= forget,
                |f| f.last,
            );
        }
        let f = m.entry(key).or_insert(Failures {
            count: 0,
            last: now,
            until: now,
        });
        if now.saturating_duration_since(f.last) >= forget {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        let delay = self.delay_after(f.count);
        // The failure itself is held back `delay`; the wait for the next
        // attempt starts once the client has it.
        f.until = now + delay.saturating_mul(2);
        delay
    }

    /// `account` logged in: its failures are forgiven. The address's are
    /// not, or one working account would let its owner guess others'.
    pub fn succeeded(&self, account: &str) {
        if let Ok(mut m) = self.per_account.lock() {
            m.remove(account);
        }
    }
}

/// What a session's stanza budget says about one more stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Within the rate.
    Take,
    /// Over the rate: refuse this stanza, keep the session.
    Refuse,
    /// A burst's worth over the rate and still going: end the session.
    Close,
}

/// The stanzas one session may send: `rate` a second on average and
/// `burst` at once. Every stanza over the rate is owed, so a client that
/// keeps sending too fast owes a second burst's worth and is closed, while
/// one that overshot once is back within the rate after a moment.
#[derive(Debug, Clone)]
pub struct StanzaBudget {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl StanzaBudget {
    /// `rate` 0 is no limit.
    pub fn new(rate: u32, burst: u32, now: Instant) -> StanzaBudget {
        StanzaBudget {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    pub fn take(&mut self, now: Instant) -> Budget {
        if self.rate <= 0.0 {
            return Budget::Take;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - 1.0;
        if self.tokens >= 0.0 {
            Budget::Take
        } else if self.tokens < -self.burst {
            Budget::Close
        } else {
            Budget::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn networks_match_their_prefix() {
        let n = Network::parse("10.1.0.0/16").expect("net");
        assert!(n.contains(ip("10.1.200.3")));
        assert!(!n.contains(ip("10.2.0.1")));
        assert!(n.contains(ip("::ffff:10.1.0.9")));
        let one = Network::parse("::1").expect("one");
        assert!(one.contains(ip("::1")) && !one.contains(ip("::2")));
        assert!(
            Network::parse("0.0.0.0/0")
                .expect("all")
                .contains(ip("8.8.8.8"))
        );
        assert!(
            Network::parse("2001:db8::/32")
                .expect("v6")
                .contains(ip("2001:db8:1::5"))
        );
        for bad in ["10.0.0.0/33", "nonsense", "::/129", "1.2.3.4/x", ""] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(
            IpKey::of(ip("2001:db8:1:2::5")),
            IpKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            IpKey::of(ip("2001:db8:1:2::5")),
            IpKey::of(ip("2001:db8:1:3::5"))
        );
        assert_eq!(IpKey::of(ip("::ffff:1.2.3.4")), IpKey::of(ip("1.2.3.4")));
    }

    #[test]
    fn registrations_from_one_address_wait_the_interval() {
        let g = RegistrationGate::new(
            Duration::from_secs(60),
            vec![Network::parse("10.0.0.0/8").expect("net")],
            Vec::new(),
        );
        let t0 = Instant::now();
        let a = g.admit(ip("192.0.2.1"), t0).expect("first");
        assert!(matches!(
            g.admit(ip("192.0.2.1"), t0 + Duration::from_secs(10)),
            Err(RegistrationRefused::TooSoon(d)) if d == Duration::from_secs(50)
        ));
        // A failed registration does not count.
        g.failed(a);
        g.admit(ip("192.0.2.1"), t0 + Duration::from_secs(10))
            .expect("again");
        g.admit(ip("192.0.2.2"), t0).expect("another address");
        g.admit(ip("192.0.2.1"), t0 + Duration::from_secs(71))
            .expect("later");
        // Trusted networks are not limited.
        for _ in 0..5 {
            g.admit(ip("10.9.9.9"), t0).expect("trusted");
        }
        let only = RegistrationGate::new(
            Duration::ZERO,
            Vec::new(),
            vec![Network::parse("10.0.0.0/8").expect("net")],
        );
        assert_eq!(
            only.admit(ip("192.0.2.1"), t0).map(|_| ()),
            Err(RegistrationRefused::NotFromHere)
        );
        only.admit(ip("10.0.0.1"), t0).expect("allowed");
    }

    #[test]
    fn failed_logins_wait_longer_each_time_and_forget() {
        let t = AuthThrottle::new(
            2,
            Duration::from_secs(1),
            Duration::from_secs(8),
            Duration::from_secs(600),
        );
        let t0 = Instant::now();
        let a = ip("192.0.2.7");
        let delays: Vec<u64> = (0..7)
            .map(|_| t.failed(a, Some("bob@localhost"), t0).as_secs())
            .collect();
        assert_eq!(delays, [0, 0, 1, 2, 4, 8, 8]);
        // Held back 8 s, then 8 s more before the next attempt.
        assert_eq!(t.ip_wait(a, t0), Some(Duration::from_secs(16)));
        assert_eq!(t.ip_wait(ip("192.0.2.8"), t0), None);
        assert_eq!(t.account_wait("bob@localhost", t0), Duration::from_secs(16));
        t.succeeded("bob@localhost");
        assert_eq!(t.account_wait("bob@localhost", t0), Duration::ZERO);
        // After a quiet period the count starts again.
        let later = t0 + Duration::from_secs(601);
        assert_eq!(t.failed(a, None, later), Duration::ZERO);
    }

    #[test]
    fn stanza_budget_refuses_over_the_rate_then_closes() {
        let t0 = Instant::now();
        let mut b = StanzaBudget::new(10, 5, t0);
        let first: Vec<Budget> = (0..6).map(|_| b.take(t0)).collect();
        assert_eq!(first[..5], [Budget::Take; 5]);
        assert_eq!(first[5], Budget::Refuse);
        // A second later, ten more are allowed (five fit the burst, and the
        // one refused is owed).
        let later = t0 + Duration::from_secs(1);
        assert_eq!(b.take(later), Budget::Take);
        // Keeping on at once: refused, then closed once a burst is owed.
        let rest: Vec<Budget> = (0..12).map(|_| b.take(later)).collect();
        assert!(rest.contains(&Budget::Refuse), "{rest:?}");
        assert_eq!(rest.last(), Some(&Budget::Close));
        let mut free = StanzaBudget::new(0, 0, t0);
        assert!((0..10_000).all(|_| free.take(t0) == Budget::Take));
    }

    #[test]
    fn tables_stay_bounded() {
        let t = AuthThrottle::new(
            0,
            Duration::from_millis(1),
            Duration::from_secs(1),
            Duration::from_secs(60),
        );
        let t0 = Instant::now();
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(i));
            t.failed(a, None, t0 + Duration::from_micros(u64::from(i)));
        }
        assert!(t.per_ip.lock().map(|m| m.len()).unwrap_or(0) <= MAX_ENTRIES);
    }
}
