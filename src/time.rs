//! Timestamps: the one place that formats and parses them.
//!
//! Everything the agent stores or sends is UTC with millisecond precision and a `Z`
//! (`2025-07-12T10:20:05.123Z`), the format the crawler itself writes. Strings in this
//! format sort in time order, which the SQL relies on.

use std::time::{Duration, SystemTime};

/// A point in time, stored and sent as an ISO-8601 UTC string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(SystemTime);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(SystemTime::now())
    }

    pub fn from_system_time(t: SystemTime) -> Self {
        Timestamp(t)
    }

    pub fn parse(text: &str) -> Option<Self> {
        humantime::parse_rfc3339_weak(text).ok().map(Timestamp)
    }

    /// The same instant moved forward, saturating at the far future.
    pub fn plus(self, by: Duration) -> Self {
        Timestamp(self.0.checked_add(by).unwrap_or(self.0))
    }

    /// The same instant moved back; before 1970 clamps to 1970.
    pub fn minus(self, by: Duration) -> Self {
        Timestamp(self.0.checked_sub(by).unwrap_or(SystemTime::UNIX_EPOCH))
    }

    /// How long ago this was (zero if it is in the future).
    pub fn age(self) -> Duration {
        SystemTime::now().duration_since(self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_millis(self.0))
    }
}

impl rusqlite::ToSql for Timestamp {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.to_string()))
    }
}

/// Parses an operator's duration such as `90s`, `15m`, `48h` or `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("'{text}' is not a duration ({e})"))
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
}
