//! `connect`: ramp to N authenticated sessions at a login rate, hold them
//! for `--duration`, and report the login rate achieved, failures by cause
//! and, given the server's PID, its resident memory per session.
//!
//! While held, every session keeps reading: it answers the server's pings
//! and a session that the server closes is counted as an error, so a
//! server that dies during the hold fails the run.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Ctx, Report, ramp};
use crate::client::Session;
use crate::metrics::rss_kib;

pub async fn run(ctx: &Ctx, first: usize, count: usize) -> anyhow::Result<Report> {
    let pid = ctx.args.server_pid;
    let before = pid.and_then(rss_kib);
    let start = Instant::now();
    let (sessions, failed) = ramp(ctx, first, count, "<presence/>").await;
    let took = start.elapsed();
    let online = sessions.len();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut holders = tokio::task::JoinSet::new();
    for (_, s) in sessions {
        holders.spawn(hold(ctx.clone(), s, rx.clone()));
    }
    // Let the server settle before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = pid.and_then(rss_kib);
    tokio::time::sleep(ctx.duration()).await;
    let _ = stop.send(true);
    let mut lost = 0u64;
    while let Some(r) = holders.join_next().await {
        if !matches!(r, Ok(true)) {
            lost += 1;
        }
    }
    let per_session = match (before, after) {
        (Some(b), Some(a)) if online > 0 => {
            Some(a.saturating_sub(b) as f64 * 1024.0 / online as f64)
        }
        _ => None,
    };
    let mut r = Report::new();
    r.insert("sessions".into(), online.into());
    r.insert("failed_logins".into(), failed.into());
    r.insert("sessions_lost_during_hold".into(), lost.into());
    r.insert("login_seconds".into(), took.as_secs_f64().into());
    r.insert(
        "logins_per_second".into(),
        (online as f64 / took.as_secs_f64().max(1e-3)).into(),
    );
    r.insert("server_rss_kib_before".into(), before.into());
    r.insert("server_rss_kib_after".into(), after.into());
    r.insert("server_bytes_per_session".into(), per_session.into());
    Ok(r)
}

/// Keep a session alive until told to stop; false if the server closed it
/// first.
async fn hold(ctx: Ctx, mut s: Session, mut stop: tokio::sync::watch::Receiver<bool>) -> bool {
    loop {
        tokio::select! {
            _ = stop.changed() => {
                ctx.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
                s.close().await;
                return true;
            }
            r = s.reader.next_raw() => match r {
                Ok(raw) => {
                    if let Some(pong) = s.reader.answer(&raw) && s.send(&pong).await.is_err() {
                        ctx.metrics.error("connect: write failed during hold");
                        ctx.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
                        return false;
                    }
                }
                Err(e) => {
                    ctx.metrics.error(format!("connect: session lost during hold: {e}"));
                    ctx.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
                    return false;
                }
            }
        }
    }
}
