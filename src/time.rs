//! Timestamps: the one place that formats and parses them.
//!
//! Everything the agent stores or sends is UTC with millisecond precision and a `Z`
//! (`2025-07-12T10:20:05.123Z`), the format the crawler itself writes. Strings in this
//! format sort in time order, which the SQL relies on.
//!
//! A `Timestamp` always lies in the range that format can express, 1970-01-01 to
//! 9999-12-31 ([`Timestamp::earliest`], [`Timestamp::latest`]): every constructor and every
//! piece of arithmetic clamps into it, so `now.minus(100 years)` is 1970, `now.plus(a
//! huge span)` is year 9999, and formatting never panics whatever the clock or the
//! configuration says.

use std::time::{Duration, SystemTime};

/// Seconds from 1970 to 9999-12-31T23:59:59 (the last second RFC 3339 can write).
const LAST_SECOND: u64 = 253_402_300_799;

/// A point in time, stored and sent as an ISO-8601 UTC string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(SystemTime);

impl Timestamp {
    /// 1970-01-01T00:00:00.000Z, the earliest timestamp.
    pub fn earliest() -> Self {
        Timestamp(SystemTime::UNIX_EPOCH)
    }

    /// 9999-12-31T23:59:59.999Z, the latest timestamp.
    pub fn latest() -> Self {
        Timestamp(SystemTime::UNIX_EPOCH + Duration::new(LAST_SECOND, 999_000_000))
    }

    pub fn now() -> Self {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// `t`, clamped into [`Timestamp::earliest`]..=[`Timestamp::latest`].
    pub fn from_system_time(t: SystemTime) -> Self {
        Timestamp(t.clamp(Self::earliest().0, Self::latest().0))
    }

    pub fn parse(text: &str) -> Option<Self> {
        humantime::parse_rfc3339_weak(text)
            .ok()
            .map(Timestamp::from_system_time)
    }

    /// The same instant moved forward, saturating at [`Timestamp::latest`].
    pub fn plus(self, by: Duration) -> Self {
        self.0
            .checked_add(by)
            .map_or(Self::latest(), Timestamp::from_system_time)
    }

    /// The same instant moved back, saturating at [`Timestamp::earliest`] (1970).
    pub fn minus(self, by: Duration) -> Self {
        self.0
            .checked_sub(by)
            .map_or(Self::earliest(), Timestamp::from_system_time)
    }

    /// How long ago this was (zero if it is in the future).
    pub fn age(self) -> Duration {
        SystemTime::now().duration_since(self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Clamped again although every constructor clamps: humantime panics outside
        // 1970..=9999, and a log line or a stored row must never do that.
        let t = self.0.clamp(Self::earliest().0, Self::latest().0);
        write!(f, "{}", humantime::format_rfc3339_millis(t))
    }
}

impl rusqlite::ToSql for Timestamp {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.to_string()))
    }
}

/// Parses an operator's duration such as `90s`, `15m`, `48h` or `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_duration_arg(text).map_err(|e| format!("'{text}' {e}"))
}

/// [`parse_duration`] for a command-line value: clap quotes the value already, so the
/// message does not repeat it.
pub fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("is not a duration ({e}; e.g. 90s, 15m, 24h, 7days)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_crawler() {
        let t = Timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(1_752_315_605_123));
        assert_eq!(t.to_string(), "2025-07-12T10:20:05.123Z");
        assert_eq!(Timestamp::parse("2025-07-12T10:20:05.123Z"), Some(t));
    }

    #[test]
    fn whole_seconds_keep_three_decimals_so_text_order_is_time_order() {
        let t = Timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(1_752_315_605));
        assert_eq!(t.to_string(), "2025-07-12T10:20:05.000Z");
    }

    #[test]
    fn arithmetic_saturates_inside_the_formattable_range() {
        let now = Timestamp::now();
        let century = Duration::from_secs(100 * 366 * 86400);
        assert_eq!(now.minus(century), Timestamp::earliest());
        assert_eq!(now.minus(Duration::MAX), Timestamp::earliest());
        assert_eq!(now.plus(Duration::MAX), Timestamp::latest());
        assert_eq!(now.plus(century * 100), Timestamp::latest());
        assert_eq!(
            Timestamp::earliest().to_string(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(Timestamp::latest().to_string(), "9999-12-31T23:59:59.999Z");
        // A small step still moves.
        assert!(now.minus(Duration::from_secs(1)) < now);
        assert!(now.plus(Duration::from_secs(1)) > now);
    }

    #[test]
    fn any_clock_reading_formats_without_panicking() {
        let epoch = SystemTime::UNIX_EPOCH;
        for t in [
            epoch - Duration::from_secs(1),
            epoch + Duration::from_secs(LAST_SECOND + 86400 * 400),
            epoch + Duration::from_secs(u64::from(u32::MAX) * 1000),
        ] {
            let ts = Timestamp::from_system_time(t);
            let text = ts.to_string();
            assert_eq!(Timestamp::parse(&text), Some(ts), "{text}");
        }
        // Even a value built around the constructors (by this module only) formats.
        assert_eq!(
            Timestamp(epoch + Duration::from_secs(LAST_SECOND * 2)).to_string(),
            "9999-12-31T23:59:59.999Z"
        );
    }
}
