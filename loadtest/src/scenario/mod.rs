//! The scenarios and what they share: the run context, account
//! provisioning, the login ramp, and the stamps that load stanzas carry so
//! that a receiver can tell which stanza it got and how late.
//!
//! Every scenario reports a JSON object of its figures; `lost`,
//! `duplicates` and `failed_logins` in it make the run fail.

pub mod chat;
pub mod connect;
pub mod fanout;
pub mod iot;
pub mod nodes;
pub mod presence;
pub mod resume;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Args;
use crate::client::{self, Needle, Session, Target};
use crate::metrics::Metrics;

pub type Report = serde_json::Map<String, serde_json::Value>;

/// What every scenario gets.
#[derive(Clone)]
pub struct Ctx {
    pub args: Arc<Args>,
    pub target: Target,
    /// The receivers' server and domain in a federated `chat`
    /// (`--peer-domain`).
    pub peer: Option<Target>,
    pub metrics: Arc<Metrics>,
}

impl Ctx {
    pub fn user(&self, n: usize) -> String {
        self.args.user_pattern.replace("{n}", &n.to_string())
    }

    pub fn bare(&self, n: usize) -> String {
        format!("{}@{}", self.user(n), self.args.domain)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.args.duration.max(0.0))
    }
}

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The text a load stanza carries: its number and the time it was sent.
pub fn stamp(n: u64) -> String {
    format!("LT!{n}!{}", now_micros())
}

/// Where a stamp starts, searched for in every load stanza received.
static STAMP: Needle = Needle::new(|| memchr::memmem::Finder::new(b"LT!"));

/// The number and send time from a stanza's stamp, if it has one. The
/// send time is read up to its last digit: looking for the end of its
/// field (a `!` that never comes) went byte by byte through the rest of
/// the stanza.
pub fn read_stamp(raw: &[u8]) -> Option<(u64, u64)> {
    let rest = &raw[STAMP.find(raw)? + 3..];
    let bang = memchr::memchr(b'!', rest)?;
    let n = digits(&rest[..bang])?;
    let ts = digits(&rest[bang + 1..])?;
    Some((n, ts))
}

/// The number the ASCII digits at the start of `b` make; `None` without
/// a digit or when it does not fit a `u64`. By hand: going through `str`
/// and `parse` cost twice as much, twice for every stanza received.
fn digits(b: &[u8]) -> Option<u64> {
    let end = b
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(b.len());
    if end == 0 {
        return None;
    }
    b[..end].iter().try_fold(0u64, |n, &c| {
        n.checked_mul(10)?.checked_add(u64::from(c - b'0'))
    })
}

/// Marks stanza `n` in one recipient's record of what it got; `false` if
/// it was already there (a duplicate).
pub fn first_sight(seen: &mut Vec<u64>, n: u64) -> bool {
    let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
    if seen.len() <= word {
        seen.resize(word + 1, 0);
    }
    let new = seen[word] & bit == 0;
    seen[word] |= bit;
    new
}

/// Microseconds since a stamp's send time.
pub fn age(ts: u64) -> u64 {
    now_micros().saturating_sub(ts).max(1)
}

/// `s` as one shell word: in single quotes, each `'` written `'\''`, so
/// a password with spaces, quotes or `;` stays a value and runs nothing.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Create accounts `first..first+count` with the `--create-command`
/// template, a few at a time. Failures are reported, not fatal: the logins
/// that follow show whether the accounts exist.
pub async fn provision(ctx: &Ctx, first: usize, count: usize) {
    let Some(template) = ctx.args.create_command.clone() else {
        return;
    };
    let sem = Arc::new(tokio::sync::Semaphore::new(8));
    let mut set = tokio::task::JoinSet::new();
    for n in first..first + count {
        let cmd = template
            .replace("{user}", &shell_quote(&ctx.user(n)))
            .replace("{password}", &shell_quote(&ctx.args.password))
            .replace("{domain}", &shell_quote(&ctx.target.domain));
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            match tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .output()
                .await
            {
                Ok(o) if o.status.success() => None,
                Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().to_string()),
                Err(e) => Some(e.to_string()),
            }
        });
    }
    let mut failed = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(Some(e)) = r {
            failed.push(e);
        }
    }
    if !failed.is_empty() {
        eprintln!(
            "create-command failed for {} of {count} accounts (they may exist already); first: {}",
            failed.len(),
            failed[0]
        );
    }
}

/// Log in users `first..first+count` at `--login-rate`, each sending
/// `presence` as its initial presence. Returns the sessions with their user
/// numbers, in order; each failed login is counted in the metrics by cause.
pub async fn ramp(
    ctx: &Ctx,
    first: usize,
    count: usize,
    presence: &str,
) -> (Vec<(usize, Session)>, usize) {
    ramp_to(ctx, first, count, presence, None).await
}

/// [`ramp`], every user to `addr` when given (else user `n` to the `n`th
/// of the target's addresses, round the list).
pub async fn ramp_to(
    ctx: &Ctx,
    first: usize,
    count: usize,
    presence: &str,
    addr: Option<SocketAddr>,
) -> (Vec<(usize, Session)>, usize) {
    provision(ctx, first, count).await;
    let start = Instant::now();
    let rate = ctx.args.login_rate.max(0.001);
    // A session that is in keeps reading (answering pings) until the
    // whole ramp is: a ramp may last longer than the server's idle timeout.
    let (logged_tx, mut logged_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        let ctx2 = ctx.clone();
        let n = first + i;
        let presence = presence.to_string();
        let (logged, done) = (logged_tx.clone(), done_rx.clone());
        set.spawn(async move {
            tokio::time::sleep_until(due.into()).await;
            let r = login_to(&ctx2, n, i, &presence, addr).await;
            let _ = logged.send(());
            drop(logged);
            let r = match r {
                Ok(mut s) => {
                    s.keep_alive(done).await;
                    Ok(s)
                }
                Err(e) => Err(e),
            };
            (n, r)
        });
    }
    drop(logged_tx);
    // Every login reports once, or its task ended; then all stop waiting.
    while logged_rx.recv().await.is_some() {}
    let _ = done_tx.send(true);
    let mut sessions = Vec::with_capacity(count);
    let mut failed = 0;
    while let Some(r) = set.join_next().await {
        match r {
            Ok((n, Ok(s))) => sessions.push((n, s)),
            Ok((_, Err(e))) => {
                failed += 1;
                ctx.metrics.error(format!("login: {e}"));
            }
            Err(e) => {
                failed += 1;
                ctx.metrics.error(format!("login task: {e}"));
            }
        }
    }
    sessions.sort_by_key(|(n, _)| *n);
    (sessions, failed)
}

/// One login of user `n` (the `i`th of its ramp, which picks the source
/// address), counted in the metrics.
pub async fn login(ctx: &Ctx, n: usize, i: usize, presence: &str) -> anyhow::Result<Session> {
    login_to(ctx, n, i, presence, None).await
}

/// The source address of the `i`th login of a ramp (`--sources`).
pub fn source(ctx: &Ctx, i: usize) -> Option<std::net::IpAddr> {
    let s = &ctx.args.sources;
    (!s.is_empty()).then(|| s[i % s.len()])
}

/// [`login`] to `addr` when given.
pub async fn login_to(
    ctx: &Ctx,
    n: usize,
    i: usize,
    presence: &str,
    addr: Option<SocketAddr>,
) -> anyhow::Result<Session> {
    let args = &ctx.args;
    let source = source(ctx, i);
    let s = tokio::time::timeout(
        Duration::from_secs(60),
        client::login(
            &ctx.target,
            addr.unwrap_or(ctx.target.addrs[n % ctx.target.addrs.len()]),
            &ctx.user(n),
            &args.password,
            &args.resource,
            source,
            presence,
        ),
    )
    .await
    .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")))?;
    ctx.metrics.logins.fetch_add(1, Ordering::Relaxed);
    ctx.metrics.sessions.fetch_add(1, Ordering::Relaxed);
    if ctx.target.sm {
        ctx.metrics.sm_enabled.fetch_add(1, Ordering::Relaxed);
    }
    Ok(s)
}

/// Fail the scenario when some of the sessions it needs could not log in.
pub fn require_all(what: &str, failed: usize, count: usize) -> anyhow::Result<()> {
    if failed > 0 {
        anyhow::bail!("{failed} of {count} {what} logins failed");
    }
    Ok(())
}

/// Paces a sender: at most `rate` per second when `rate` > 0, else as fast
/// as the window allows.
pub struct Pace {
    interval: Option<Duration>,
    next: Instant,
}

impl Pace {
    pub fn new(rate: f64) -> Pace {
        Pace {
            interval: (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate)),
            next: Instant::now(),
        }
    }

    /// When the next send is due, or `None` if it is due now.
    pub fn wait(&self) -> Option<Instant> {
        self.interval?;
        (self.next > Instant::now()).then_some(self.next)
    }

    /// When a sender that `can_send` (its window has room and the run has
    /// not ended) should wake up to send, or `None` to wait for a reply.
    /// Due already means now: waiting for a reply instead would make the
    /// rate depend on the latency.
    pub fn wake(&self, can_send: bool) -> Option<Instant> {
        if !can_send {
            return None;
        }
        Some(self.wait().unwrap_or_else(Instant::now))
    }

    pub fn sent(&mut self) {
        if let Some(i) = self.interval {
            // Bank at most 10 ms of credit (or one interval if longer): the
            // timer wakes a sender about once a millisecond, so at higher
            // rates several sends are due at each wake-up, but a stall must
            // not turn into a burst.
            let floor = Instant::now()
                .checked_sub(i.max(Duration::from_millis(10)))
                .unwrap_or(self.next);
            self.next = (self.next + i).max(floor);
        }
    }
}

/// Sleep until `at`, or forever when `None` (for `select!` arms).
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::{digits, read_stamp, shell_quote};

    #[test]
    fn stamps_read_as_str_parse_reads_them() {
        for s in [
            "",
            "0",
            "7",
            "42x",
            "x42",
            "007!",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "+1",
            "-1",
            "1_000",
            "١٢",
        ] {
            let b = s.as_bytes();
            let end = b
                .iter()
                .position(|c| !c.is_ascii_digit())
                .unwrap_or(b.len());
            let parsed = std::str::from_utf8(&b[..end])
                .ok()
                .and_then(|d| d.parse().ok());
            assert_eq!(digits(b), parsed, "{s:?}");
        }
        let m = b"<message type='groupchat'><body>LT!12!1700000000123456</body></message>";
        assert_eq!(read_stamp(m), Some((12, 1_700_000_000_123_456)));
        assert_eq!(read_stamp(b"<body>LT!12</body>"), None);
        assert_eq!(read_stamp(b"<body>LT!!5</body>"), None);
        assert_eq!(read_stamp(b"<body>LT!3x!5</body>"), Some((3, 5)));
        assert_eq!(read_stamp(b"<body>LT!3!5!7</body>"), Some((3, 5)));
        assert_eq!(read_stamp(b"<body>LT!3!</body>"), None);
        assert_eq!(read_stamp(b"<body>no stamp</body>"), None);
    }

    /// A password with shell syntax ran as a command in --create-command.
    #[test]
    fn create_command_values_were_not_quoted() {
        for s in [
            "plain",
            "a b",
            "it's",
            "x'; touch /tmp/pwned; '",
            "$(id)`id`\\\"",
            "",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(s)))
                .output()
                .expect("sh");
            assert_eq!(String::from_utf8_lossy(&out.stdout), s, "{s:?}");
        }
        // Quoted parts join into one word, as in `{user}@{domain}`.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "printf %s {}@{}",
                shell_quote("u"),
                shell_quote("d")
            ))
            .output()
            .expect("sh");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "u@d");
    }
}
