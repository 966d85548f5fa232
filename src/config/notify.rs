//! Validation of the `[notify]` section (every value bounded, named by its key), and
//! the parts of a sink's address that validation needs. `crate::notify` reads the
//! section as sinks; this module depends on nothing of it.

use super::NotifyConfig;
use std::time::Duration;

/// The event kinds a sink may list in `events`.
pub const KINDS: [&str; 8] = [
    "job_failed",
    "credential_failed",
    "type_paused",
    "crawler_lost",
    "crawler_absent",
    "queue_drained",
    "database_error",
    "test",
];

/// At most this many sinks of each kind.
pub const MAX_SINKS: usize = 16;

/// The host of an `http(s)://` URL, without user info or port.
pub fn host_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        host.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

/// Checks the section; an error names the key.
pub fn validate(config: &NotifyConfig) -> Result<(), (String, String)> {
    let err = |key: &str, m: &str| Err((format!("notify.{key}"), m.to_string()));
    if config.cooldown.0 > Duration::from_secs(86_400) {
        return err("cooldown", "must be between 0s and 1d");
    }
    if config.timeout.0 < Duration::from_millis(100) || config.timeout.0 > Duration::from_secs(60) {
        return err("timeout", "must be between 100ms and 60s");
    }
    if !(1..=1000).contains(&config.max_attempts) {
        return err("max_attempts", "must be between 1 and 1000");
    }
    if config.webhook.len() > MAX_SINKS || config.command.len() > MAX_SINKS {
        return err("webhook", "at most 16 webhooks and 16 commands");
    }
    for w in &config.webhook {
        if host_of(&w.url).is_none() || w.url.len() > 2048 {
            return err(
                "webhook.url",
                "must be an http:// or https:// URL with a host (at most 2048 bytes)",
            );
        }
        if w.format != "json" && w.format != "slack" {
            return err("webhook.format", "must be \"json\" or \"slack\"");
        }
    }
    for c in &config.command {
        if c.argv.is_empty() || c.argv[0].is_empty() || c.argv.len() > 64 {
            return err("command.argv", "must name a program (at most 64 arguments)");
        }
    }
    let names = config.webhook.iter().map(|w| (&w.name, &w.events));
    for (name, events) in names.chain(config.command.iter().map(|c| (&c.name, &c.events))) {
        if name.len() > 64 {
            return err("webhook.name", "at most 64 bytes");
        }
        if let Some(bad) = events.iter().find(|e| !KINDS.contains(&e.as_str())) {
            return Err((
                "notify.events".into(),
                format!("'{bad}' is not one of {}", KINDS.join(", ")),
            ));
        }
    }
    Ok(())
}
