//! The checks that run on the merged configuration, before anything uses it: each
//! failure names the key and where its value came from (`socket.mode (from env
//! CRAWLER_AGENT_SOCKET_MODE): ...`). What a file or variable gets wrong on its own
//! (unknown key, wrong type) is caught earlier, in `load`.

use super::schema::Config;
use super::source::{ConfigError, Source};
use std::time::Duration;

pub(super) fn validate(
    config: &Config,
    source_of: &dyn Fn(&str) -> Source,
) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        key: key.into(),
        origin: source_of(key),
        message,
    };
    config
        .socket_mode()
        .map_err(|m| invalid("socket.mode", m))?;
    crate::paths::check_socket_path(std::path::Path::new(&config.socket.path))
        .map_err(|e| invalid("socket.path", e.to_string()))?;
    let positive = [
        (
            "socket.max_connections",
            config.socket.max_connections as u64,
        ),
        ("socket.max_message_bytes", config.socket.max_message_bytes),
        ("storage.writer_queue", config.storage.writer_queue as u64),
        ("storage.batch_max", config.storage.batch_max as u64),
        (
            "storage.read_pool_size",
            config.storage.read_pool_size as u64,
        ),
        (
            "dispatch.jobs_per_response",
            config.dispatch.jobs_per_response as u64,
        ),
        ("retry.max_attempts", config.retry.max_attempts as u64),
    ];
    for (key, value) in positive {
        if value == 0 {
            return Err(invalid(key, "must be at least 1".into()));
        }
    }
    if config.storage.read_pool_size > 16 {
        return Err(invalid("storage.read_pool_size", "at most 16".into()));
    }
    if config.log.level.parse::<log::LevelFilter>().is_err() {
        return Err(invalid(
            "log.level",
            format!(
                "'{}' is not one of off, error, warn, info, debug, trace",
                config.log.level
            ),
        ));
    }
    for (key, span) in [
        ("tokens.command_timeout", config.tokens.command_timeout),
        ("tokens.http_timeout", config.tokens.http_timeout),
    ] {
        if span.0 > Duration::from_secs(10) || span.0.is_zero() {
            return Err(invalid(
                key,
                "must be between 1ms and 10s: the crawler waits only 15s for a token".into(),
            ));
        }
    }
    config
        .metrics_listen()
        .map_err(|m| invalid("metrics.listen", m))?;
    // The metrics endpoint's bounds (issue 12 item 5).
    if !(1..=64).contains(&config.metrics.max_connections) {
        return Err(invalid(
            "metrics.max_connections",
            "must be between 1 and 64".into(),
        ));
    }
    let header_timeout = config.metrics.header_timeout.0;
    if header_timeout < Duration::from_millis(100) || header_timeout > Duration::from_secs(60) {
        return Err(invalid(
            "metrics.header_timeout",
            "must be between 100ms and 60s".into(),
        ));
    }
    crate::notify::config::validate(&config.notify).map_err(|(key, m)| invalid(key.as_str(), m))?;
    if config.retry.backoff_base.0 > config.retry.backoff_max.0 {
        return Err(invalid(
            "retry.backoff_base",
            "must not exceed retry.backoff_max".into(),
        ));
    }
    Ok(())
}

/// The spec's lower bounds for timings (§6.2: no retry sooner than 60 s; §5.4: stale
/// after at least 30 s). The defaults meet them; a configuration below them is
/// accepted (tests shorten them) but the agent warns about each at start.
pub const MIN_BACKOFF_BASE: Duration = Duration::from_secs(60);
pub const MIN_STALE_AFTER: Duration = Duration::from_secs(30);

impl Config {
    /// One sentence per setting below the spec's bounds, for a warning at start.
    pub fn below_spec(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.retry.backoff_base.0 < MIN_BACKOFF_BASE {
            warnings.push(format!(
                "retry.backoff_base is {:?}, below the spec's 60s: failed jobs are retried sooner than the crawler protocol expects",
                self.retry.backoff_base.0
            ));
        }
        if self.heartbeat.stale_after.0 < MIN_STALE_AFTER {
            warnings.push(format!(
                "heartbeat.stale_after is {:?}, below the spec's 30s: healthy connections may be shown as stale",
                self.heartbeat.stale_after.0
            ));
        }
        warnings
    }
}
