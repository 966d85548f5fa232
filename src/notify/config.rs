//! The `[notify]` section read as sinks: validation (every value bounded, named by
//! its key) and the list of [`SinkSpec`]s the delivery task and `notify test` use.

use crate::config::NotifyConfig;
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

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Webhook { url: String, slack: bool },
    Command { argv: Vec<String> },
}

/// One configured sink: its label, where it sends, which kinds it wants.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    pub name: String,
    pub target: Target,
    /// Empty: every kind.
    pub events: Vec<String>,
}

impl SinkSpec {
    pub fn wants(&self, kind: &str) -> bool {
        kind == "test" || self.events.is_empty() || self.events.iter().any(|e| e == kind)
    }
}

pub fn sinks(config: &NotifyConfig) -> Vec<SinkSpec> {
    let webhooks = config.webhook.iter().enumerate().map(|(i, w)| SinkSpec {
        name: label(&w.name, "webhook", i),
        target: Target::Webhook {
            url: w.url.clone(),
            slack: w.format == "slack",
        },
        events: w.events.clone(),
    });
    let commands = config.command.iter().enumerate().map(|(i, c)| SinkSpec {
        name: label(&c.name, "command", i),
        target: Target::Command {
            argv: c.argv.clone(),
        },
        events: c.events.clone(),
    });
    webhooks.chain(commands).collect()
}

fn label(name: &str, kind: &str, i: usize) -> String {
    if name.is_empty() {
        format!("{kind}-{}", i + 1)
    } else {
        name.to_string()
    }
}

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

/// Plain `http://` to a host that is not loopback: worth a warning (never refused).
pub fn insecure(url: &str) -> bool {
    url.starts_with("http://")
        && !host_of(url).is_some_and(|h| {
            h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
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
