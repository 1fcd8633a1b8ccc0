//! UTC timestamps in the XEP-0082 profile, without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now as `YYYY-MM-DDThh:mm:ss.sssZ`.
pub fn now_stamp() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    stamp(d.as_secs(), d.subsec_millis())
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
pub fn stamp(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_dates() {
        assert_eq!(super::stamp(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::stamp(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(super::stamp(1_795_392_000, 0), "2026-11-23T00:00:00.000Z");
    }
}
