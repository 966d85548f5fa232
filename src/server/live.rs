//! The configuration the running agent uses, and SIGHUP reload.
//!
//! Tasks read a snapshot ([`Live::get`]) when they need a setting, so a reload takes
//! effect for the next message, the next accepted connection and the next monitor
//! round, without dropping any connection. What cannot change while running (paths,
//! socket mode and group, storage tuning, token timeouts) is reported as needing a
//! restart. A file that does not load (including a value out of its range) is
//! rejected as a whole and the running configuration kept. `log.level` is applied to
//! the logger itself ([`crate::logging::set_level`]), up or down.

use crate::config::{Config, Flags, Loaded};
use crate::policy::Policy;
use std::sync::{Arc, RwLock};

/// One consistent set of settings.
pub struct Snapshot {
    pub config: Config,
    pub policy: Arc<Policy>,
}

pub struct Live {
    current: RwLock<Arc<Snapshot>>,
    loaded: RwLock<Loaded>,
    flags: Flags,
}

/// Keys a reload applies at once; everything else needs a restart.
const LIVE_SECTIONS: &[&str] = &[
    "dispatch.",
    "retry.",
    "discovery.",
    "heartbeat.",
    "retention.",
    "log.",
];
const LIVE_KEYS: &[&str] = &[
    "socket.max_connections",
    "socket.max_message_bytes",
    "socket.write_timeout",
    "socket.allowed_uids",
    "socket.allowed_gids",
    "socket.bad_message_rows_per_minute",
    "socket.refusal_record_every",
];

fn applies_live(key: &str) -> bool {
    LIVE_KEYS.contains(&key) || LIVE_SECTIONS.iter().any(|s| key.starts_with(s))
}

/// What a reload did.
#[derive(Debug, Default)]
pub struct Reloaded {
    pub applied: Vec<String>,
    pub need_restart: Vec<String>,
}

impl Live {
    pub fn new(loaded: Loaded, flags: Flags) -> Live {
        Live {
            current: RwLock::new(Arc::new(Snapshot {
                policy: Arc::new(Policy::from(&loaded.config)),
                config: loaded.config.clone(),
            })),
            loaded: RwLock::new(loaded),
            flags,
        }
    }

    pub fn get(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.get().policy.clone()
    }

    /// Reads the configuration again (same file, environment and flags as at start)
    /// and applies what can change while running.
    pub fn reload(&self) -> Result<Reloaded, String> {
        let fresh = Loaded::from_process(&self.flags).map_err(|e| e.to_string())?;
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        let before: std::collections::BTreeMap<_, _> = loaded.entries().into_iter().collect();
        let mut report = Reloaded::default();
        let mut config = self.get().config.clone();
        let mut sections = std::collections::BTreeSet::new();
        for (key, value) in fresh.entries() {
            let was = before.get(&key).cloned().unwrap_or_default();
            if was == value {
                continue;
            }
            if applies_live(&key) {
                report.applied.push(format!("{key}: {was} -> {value}"));
                sections.insert(
                    key.split_once('.')
                        .map_or(String::new(), |(s, _)| s.to_string()),
                );
            } else {
                report.need_restart.push(format!("{key}: {was} -> {value}"));
            }
        }
        // Take the live keys from the fresh configuration, keep the rest as running.
        for section in &sections {
            merge_section(&mut config, &fresh.config, section);
        }
        let wanted = config.log_level();
        let level = crate::logging::set_level(wanted);
        if level != wanted {
            log::warn!("log.level {wanted} is not applied: RUST_LOG sets the level to {level}");
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Snapshot {
            policy: Arc::new(Policy::from(&config)),
            config,
        });
        *loaded = fresh;
        Ok(report)
    }
}

/// Copies one section's live keys from `from` into `to`.
fn merge_section(to: &mut Config, from: &Config, section: &str) {
    match section {
        "dispatch" => to.dispatch = from.dispatch.clone(),
        "retry" => to.retry = from.retry.clone(),
        "discovery" => to.discovery = from.discovery.clone(),
        "heartbeat" => to.heartbeat = from.heartbeat.clone(),
        "retention" => to.retention = from.retention.clone(),
        "log" => to.log = from.log.clone(),
        "socket" => {
            to.socket.max_connections = from.socket.max_connections;
            to.socket.max_message_bytes = from.socket.max_message_bytes;
            to.socket.write_timeout = from.socket.write_timeout;
            to.socket.allowed_uids = from.socket.allowed_uids.clone();
            to.socket.allowed_gids = from.socket.allowed_gids.clone();
            to.socket.bad_message_rows_per_minute = from.socket.bad_message_rows_per_minute;
            to.socket.refusal_record_every = from.socket.refusal_record_every;
        }
        _ => {}
    }
}
