//! The `[notify]` section read as sinks: the list of [`SinkSpec`]s the delivery task
//! and `notify test` use. (Its validation is the config's: `config::notify`.)

pub use crate::config::notify::{host_of, KINDS, MAX_SINKS};
use crate::config::NotifyConfig;

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

/// Plain `http://` to a host that is not loopback: worth a warning (never refused).
pub fn insecure(url: &str) -> bool {
    url.starts_with("http://")
        && !host_of(url).is_some_and(|h| {
            h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
}
