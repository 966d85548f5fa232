//! The checks that run on the merged configuration, before anything uses it: each
//! failure names the key and where its value came from (`socket.mode (from env
//! CRAWLER_AGENT_SOCKET_MODE): ...`). What a file or variable gets wrong on its own
//! (unknown key, wrong type) is caught earlier, in `load`. The ranges of the
//! duration, size and count keys are a table of their own, in `ranges`.

use super::ranges;
use super::schema::Config;
use super::source::{ConfigError, Source};
use std::time::Duration;

pub(super) fn validate(
    config: &Config,
    source_of: &dyn Fn(&str) -> Source,
    written_of: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        key: key.into(),
        origin: source_of(key),
        message,
    };
    // First, so no later message quotes a huge value back.
    for (key, text) in [
        ("storage.path", &config.storage.path),
        ("socket.group", &config.socket.group),
        ("metrics.listen", &config.metrics.listen),
        ("log.level", &config.log.level),
        ("socket.mode", &config.socket.mode),
    ] {
        if text.len() > ranges::MAX_TEXT_BYTES {
            return Err(invalid(
                key,
                format!("{} bytes; at most {}", text.len(), ranges::MAX_TEXT_BYTES),
            ));
        }
    }
    config
        .socket_mode()
        .map_err(|m| invalid("socket.mode", m))?;
    crate::paths::check_socket_path(std::path::Path::new(&config.socket.path))
        .map_err(|e| invalid("socket.path", e.to_string()))?;
    for (key, bound, value) in ranges::table(config) {
        if let Some(why) = ranges::check_as(bound, value, written_of(key).as_deref()) {
            return Err(invalid(key, why));
        }
    }
    if config.log.level.parse::<log::LevelFilter>().is_err() {
        return Err(invalid(
            "log.level",
            format!(
                "'{}' is not one of off, error, warn, info, debug, trace",
                clip(&config.log.level)
            ),
        ));
    }
    for (key, len) in [
        ("socket.allowed_uids", config.socket.allowed_uids.len()),
        ("socket.allowed_gids", config.socket.allowed_gids.len()),
        (
            "retry.permanent_errors",
            config.retry.permanent_errors.len(),
        ),
    ] {
        if len > ranges::MAX_LIST {
            return Err(invalid(
                key,
                format!("{len} entries; at most {}", ranges::MAX_LIST),
            ));
        }
    }
    if let Some(long) = config
        .retry
        .permanent_errors
        .iter()
        .find(|p| p.len() > ranges::MAX_PATTERN_BYTES)
    {
        return Err(invalid(
            "retry.permanent_errors",
            format!(
                "an entry of {} bytes; at most {}",
                long.len(),
                ranges::MAX_PATTERN_BYTES
            ),
        ));
    }
    config
        .metrics_listen()
        .map_err(|m| invalid("metrics.listen", m))?;
    super::notify::validate(&config.notify).map_err(|(key, m)| invalid(key.as_str(), m))?;
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
                "retry.backoff_base is {}, below the spec's 60s: failed jobs are retried sooner than the crawler protocol expects",
                ranges::compact(self.retry.backoff_base.0)
            ));
        }
        if self.heartbeat.stale_after.0 < MIN_STALE_AFTER {
            warnings.push(format!(
                "heartbeat.stale_after is {}, below the spec's 30s: healthy connections may be shown as stale",
                ranges::compact(self.heartbeat.stale_after.0)
            ));
        }
        warnings
    }
}

/// Operator text quoted back in a message, cut to a readable length.
fn clip(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}
