//! The allowed range of every duration, size and count key, in one table.
//!
//! `validate` rejects a value outside its range with a message naming the key, the
//! range and where the value came from; `config.example.toml` and
//! `docs/operations.md` document the same ranges (a unit test holds the example file
//! to this table). A range keeps every value the agent does arithmetic with well away
//! from overflow (`Instant + timeout`, `base × 2^n`, timestamps before 1970 or after
//! 9999) and every count from exhausting memory or descriptors. Where "forever" is a
//! sensible wish (rediscovery, retention ages) the key takes `"never"` instead of a
//! huge duration. Lists and free-text values are bounded here as well.

use super::schema::{Config, Span};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86400);

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// The allowed values of one key.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    /// A duration in `min..=max`, or `"never"` when `never` is set.
    Span {
        min: Duration,
        max: Duration,
        never: bool,
    },
    /// An integer in `min..=max`.
    Count { min: u64, max: u64 },
}

impl Bound {
    const fn span(min: Duration, max: Duration) -> Bound {
        Bound::Span {
            min,
            max,
            never: false,
        }
    }

    const fn span_or_never(min: Duration, max: Duration) -> Bound {
        Bound::Span {
            min,
            max,
            never: true,
        }
    }

    const fn count(min: u64, max: u64) -> Bound {
        Bound::Count { min, max }
    }

    /// The range as written in the docs: `1s..=30days`, `1..=1024`, `... or "never"`.
    pub fn describe(&self) -> String {
        match *self {
            Bound::Span { min, max, never } => format!(
                "{}..={}{}",
                compact(min),
                compact(max),
                if never { " or \"never\"" } else { "" }
            ),
            Bound::Count { min, max } => format!("{min}..={max}"),
        }
    }
}

/// A key's current value, as the range check sees it.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    Span(Span),
    Count(u64),
}

/// Every bounded key with its range and its value in `c`, in file order.
pub fn table(c: &Config) -> Vec<(&'static str, Bound, Value)> {
    let span = |s: Span| Value::Span(s);
    let n = |v: u64| Value::Count(v);
    vec![
        (
            "socket.max_connections",
            Bound::count(1, 1024),
            n(c.socket.max_connections.into()),
        ),
        (
            "socket.max_message_bytes",
            Bound::count(KIB, 256 * MIB),
            n(c.socket.max_message_bytes),
        ),
        (
            "socket.write_timeout",
            Bound::span(100 * MS, 10 * MIN),
            span(c.socket.write_timeout),
        ),
        (
            "socket.input_budget_bytes",
            Bound::count(MIB, 64 * GIB),
            n(c.socket.input_budget_bytes),
        ),
        (
            "socket.bad_message_rows_per_minute",
            Bound::count(1, 100_000),
            n(c.socket.bad_message_rows_per_minute.into()),
        ),
        (
            "socket.refusal_record_every",
            Bound::span(SEC, DAY),
            span(c.socket.refusal_record_every),
        ),
        (
            "storage.busy_timeout",
            Bound::span(MS, 10 * MIN),
            span(c.storage.busy_timeout),
        ),
        (
            "storage.journal_size_limit_bytes",
            Bound::count(0, TIB),
            n(c.storage.journal_size_limit_bytes),
        ),
        (
            "storage.wal_checkpoint_bytes",
            Bound::count(64 * KIB, 64 * GIB),
            n(c.storage.wal_checkpoint_bytes),
        ),
        (
            "storage.writer_queue",
            Bound::count(1, 65_536),
            n(c.storage.writer_queue as u64),
        ),
        (
            "storage.batch_max",
            Bound::count(1, 100_000),
            n(c.storage.batch_max as u64),
        ),
        (
            "storage.read_pool_size",
            Bound::count(1, 16),
            n(c.storage.read_pool_size.into()),
        ),
        (
            "dispatch.jobs_per_response",
            Bound::count(1, 1000),
            n(c.dispatch.jobs_per_response.into()),
        ),
        (
            "dispatch.orphan_after",
            Bound::span(SEC, 30 * DAY),
            span(c.dispatch.orphan_after),
        ),
        (
            "dispatch.claim_timeout",
            Bound::span(10 * MS, 10 * SEC),
            span(c.dispatch.claim_timeout),
        ),
        (
            "retry.max_attempts",
            Bound::count(1, 1_000_000),
            n(c.retry.max_attempts.into()),
        ),
        (
            "retry.backoff_base",
            Bound::span(Duration::ZERO, 30 * DAY),
            span(c.retry.backoff_base),
        ),
        (
            "retry.backoff_max",
            Bound::span(Duration::ZERO, 365 * DAY),
            span(c.retry.backoff_max),
        ),
        (
            "discovery.rediscover_after",
            Bound::span_or_never(SEC, 3650 * DAY),
            span(c.discovery.rediscover_after),
        ),
        (
            "heartbeat.stale_after",
            Bound::span(SEC, 7 * DAY),
            span(c.heartbeat.stale_after),
        ),
        (
            "retention.progress_max_age",
            Bound::span_or_never(HOUR, 3650 * DAY),
            span(c.retention.progress_max_age),
        ),
        (
            "retention.progress_max_per_job",
            Bound::count(1, 10_000_000),
            n(c.retention.progress_max_per_job.into()),
        ),
        (
            "retention.events_max_age",
            Bound::span_or_never(HOUR, 3650 * DAY),
            span(c.retention.events_max_age),
        ),
        (
            "retention.errors_max_age",
            Bound::span_or_never(HOUR, 3650 * DAY),
            span(c.retention.errors_max_age),
        ),
        (
            "retention.connections_max_age",
            Bound::span_or_never(HOUR, 3650 * DAY),
            span(c.retention.connections_max_age),
        ),
        (
            "retention.discoveries_max_age",
            Bound::span_or_never(HOUR, 3650 * DAY),
            span(c.retention.discoveries_max_age),
        ),
        (
            "retention.token_refreshes_max_age",
            Bound::span_or_never(HOUR, 3650 * DAY),
            span(c.retention.token_refreshes_max_age),
        ),
        (
            "retention.ended_jobs_max_age",
            Bound::span_or_never(HOUR, 3650 * DAY),
            span(c.retention.ended_jobs_max_age),
        ),
        (
            "retention.prune_every",
            Bound::span(MIN, 30 * DAY),
            span(c.retention.prune_every),
        ),
        (
            "tokens.command_timeout",
            Bound::span(MS, 10 * SEC),
            span(c.tokens.command_timeout),
        ),
        (
            "tokens.http_timeout",
            Bound::span(MS, 10 * SEC),
            span(c.tokens.http_timeout),
        ),
        (
            "tokens.refresh_margin",
            Bound::span(Duration::ZERO, DAY),
            span(c.tokens.refresh_margin),
        ),
        (
            "tokens.answer_within",
            Bound::span(100 * MS, 14 * SEC),
            span(c.tokens.answer_within),
        ),
        (
            "metrics.max_connections",
            Bound::count(1, 64),
            n(c.metrics.max_connections.into()),
        ),
        (
            "metrics.header_timeout",
            Bound::span(100 * MS, 60 * SEC),
            span(c.metrics.header_timeout),
        ),
        (
            "notify.crawler_lost_after",
            Bound::span(SEC, 7 * DAY),
            span(c.notify.crawler_lost_after),
        ),
        (
            "notify.crawler_absent_after",
            Bound::span(SEC, 7 * DAY),
            span(c.notify.crawler_absent_after),
        ),
    ]
}

/// `d` in its largest whole unit (`3650d`, `10s`, `100ms`), as an operator writes it;
/// what is not a whole number of milliseconds in humantime's long form.
pub fn compact(d: Duration) -> String {
    let ms = d.as_millis();
    if d.is_zero() {
        return "0s".into();
    }
    if d.subsec_nanos() % 1_000_000 != 0 {
        return humantime::format_duration(d).to_string();
    }
    for (unit, name) in [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ] {
        if ms % unit == 0 {
            return format!("{}{name}", ms / unit);
        }
    }
    format!("{ms}ms")
}

/// Why `value` is outside `bound`, if it is.
pub fn check(bound: Bound, value: Value) -> Option<String> {
    check_as(bound, value, None)
}

/// [`check`], quoting the value as the operator wrote it (`100years`), when known,
/// rather than in its canonical form (`36525d`).
pub fn check_as(bound: Bound, value: Value, written: Option<&str>) -> Option<String> {
    let inside = match (bound, value) {
        (Bound::Span { never, .. }, Value::Span(s)) if s.is_never() => {
            if never {
                return None;
            }
            return Some(format!(
                "\"never\" is not allowed here; the range is {}",
                bound.describe()
            ));
        }
        (Bound::Span { min, max, .. }, Value::Span(s)) => (min..=max).contains(&s.0),
        (Bound::Count { min, max }, Value::Count(v)) => (min..=max).contains(&v),
        // The table pairs each key with a bound of its own kind.
        _ => false,
    };
    (!inside).then(|| {
        let shown = match (written, value) {
            (Some(text), _) if text.len() <= 64 => text.to_string(),
            (_, Value::Span(s)) => compact(s.0),
            (_, Value::Count(v)) => v.to_string(),
        };
        format!("{shown} is out of range {}", bound.describe())
    })
}

/// Longest list in an allow-list or `retry.permanent_errors`.
pub const MAX_LIST: usize = 256;
/// Longest entry of `retry.permanent_errors`, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;
/// Longest `storage.path`, `socket.group` and `metrics.listen`, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;

#[cfg(test)]
#[path = "ranges_tests.rs"]
mod tests;
