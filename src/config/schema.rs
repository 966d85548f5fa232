//! The configuration's shape: one struct per `[section]`, each key with its embedded
//! default (the same values `config.example.toml` documents), the `Span` duration type,
//! and the typed readings of keys written as text (socket mode, metrics address, log
//! level). Loading and layering are in `load`; the checks that run once everything is
//! merged are in `validate`.

use crate::protocol::EntityType;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub socket: SocketConfig,
    pub storage: StorageConfig,
    pub dispatch: DispatchConfig,
    pub retry: RetryConfig,
    pub discovery: DiscoveryConfig,
    pub heartbeat: HeartbeatConfig,
    pub retention: RetentionConfig,
    pub tokens: TokensConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub notify: NotifyConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SocketConfig {
    /// Empty: the default location (see `paths`).
    pub path: String,
    /// Octal file mode of the socket.
    pub mode: String,
    /// Group (name or number) that owns the socket; empty keeps the agent's group.
    pub group: String,
    pub max_connections: u32,
    pub max_message_bytes: u64,
    /// A peer that does not take a reply within this time is disconnected.
    pub write_timeout: Span,
    /// If not empty, only peers with one of these uids may connect (SO_PEERCRED).
    pub allowed_uids: Vec<u32>,
    /// If not empty, only peers with one of these gids may connect (SO_PEERCRED).
    pub allowed_gids: Vec<u32>,
    /// Unfinished input (partial messages) held for all connections together; past it
    /// the connection holding the most is closed and recorded.
    pub input_budget_bytes: u64,
    /// `errors` rows for bad messages, per connection and minute; the rest are counted
    /// into one summary row.
    pub bad_message_rows_per_minute: u32,
    /// A refused peer's uid is recorded at most once per this interval (all are counted).
    pub refusal_record_every: Span,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `synchronous=NORMAL`: a power loss may drop the last commits, never corrupts.
    Normal,
    /// `synchronous=FULL`: every acknowledged commit survives a power loss.
    Full,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Empty: the default location (see `paths`).
    pub path: String,
    pub durability: Durability,
    pub busy_timeout: Span,
    pub journal_size_limit_bytes: u64,
    /// Past this WAL size the writer holds bulk work back until the checkpointer has
    /// copied everything, so the WAL starts over.
    pub wal_checkpoint_bytes: u64,
    /// Operations waiting for the writer; a full queue slows the sockets down.
    pub writer_queue: usize,
    /// Rows committed in one transaction, about (a batch of progress reports counts
    /// each report).
    pub batch_max: usize,
    pub read_pool_size: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    pub jobs_per_response: u32,
    /// Entity types that may be dispatched at all.
    pub entity_types: Vec<EntityType>,
    /// Types the crawler is known to run: the capability guard never pauses them.
    pub trusted_entity_types: Vec<EntityType>,
    /// A job still in flight this long after dispatch, when its crawler asks for work
    /// again, is an orphan.
    pub orphan_after: Span,
    /// How long a job_request waits for its claim to commit before answering `[]`.
    pub claim_timeout: Span,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub backoff_base: Span,
    pub backoff_max: Span,
    /// A failure whose error text contains one of these is never retried.
    pub permanent_errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// Entity types of the follow-up jobs a discovery creates.
    pub follow_up_types: Vec<EntityType>,
    pub rediscover_after: Span,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    pub stale_after: Span,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub progress_max_age: Span,
    pub progress_max_per_job: u32,
    pub events_max_age: Span,
    pub errors_max_age: Span,
    /// Closed connections (probes are never recorded).
    pub connections_max_age: Span,
    /// `discoveries` rows (one per jobs_discovered message; areas stay).
    pub discoveries_max_age: Span,
    /// `token_refreshes` rows.
    pub token_refreshes_max_age: Span,
    /// Ended (finished, failed, cancelled) jobs other than discoveries, with their
    /// events and progress; `0s` keeps them for ever. A pruned follow-up job can be
    /// created again by the next discovery.
    pub ended_jobs_max_age: Span,
    /// How often the running agent applies the retention rules.
    pub prune_every: Span,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// Longest run of a credential's token command.
    pub command_timeout: Span,
    /// Longest OAuth refresh request to GitLab.
    pub http_timeout: Span,
    /// A token expiring within this is refreshed before a job carrying it is sent.
    pub refresh_margin: Span,
    /// The crawler waits 15 s for a token_refresh_response: answer within this (at most
    /// 14 s). A refresh still running then is finished and stored anyway.
    pub answer_within: Span,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Loopback address (e.g. `127.0.0.1:9477`) serving `GET /metrics`; empty: off.
    pub listen: String,
    /// Connections the endpoint serves at once; more wait in the kernel's backlog.
    pub max_connections: u32,
    /// A client must send its request head within this time.
    pub header_timeout: Span,
}

/// Notifications (issue 15): sinks that get the outbox's events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// One message per (sink, event, topic) within this; the rest become a digest.
    pub cooldown: Span,
    /// Longest one delivery may take (HTTP request or command run).
    pub timeout: Span,
    /// Tries per delivery before it is given up (backoff doubles from 1 s to 1 h).
    pub max_attempts: u32,
    /// `crawler_lost` once jobs are in flight and no live crawler this long.
    pub crawler_lost_after: Span,
    /// `crawler_absent` once jobs are queued and no crawler connected this long.
    pub crawler_absent_after: Span,
    pub webhook: Vec<WebhookSink>,
    pub command: Vec<CommandSink>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSink {
    /// Label in logs and metrics; empty: `webhook-N`. (The URL may hold a secret.)
    pub name: String,
    pub url: String,
    /// `json` (the payload contract) or `slack` (`{"text": ...}`).
    pub format: String,
    /// Event kinds sent; empty: all.
    pub events: Vec<String>,
}

impl Default for WebhookSink {
    fn default() -> Self {
        WebhookSink {
            name: String::new(),
            url: String::new(),
            format: "json".into(),
            events: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CommandSink {
    /// Label in logs and metrics; empty: `command-N`.
    pub name: String,
    /// Program and arguments, run without a shell; the event JSON on stdin.
    pub argv: Vec<String>,
    pub events: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// error, warn, info, debug or trace.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: SocketConfig {
                path: String::new(),
                mode: "0660".into(),
                group: String::new(),
                max_connections: 64,
                max_message_bytes: 64 << 20,
                write_timeout: Span::secs(10),
                allowed_uids: Vec::new(),
                allowed_gids: Vec::new(),
                input_budget_bytes: 256 << 20,
                bad_message_rows_per_minute: 60,
                refusal_record_every: Span::secs(60),
            },
            storage: StorageConfig {
                path: String::new(),
                durability: Durability::Normal,
                busy_timeout: Span::secs(5),
                journal_size_limit_bytes: 64 << 20,
                wal_checkpoint_bytes: 16 << 20,
                writer_queue: 256,
                batch_max: 1024,
                read_pool_size: 4,
            },
            dispatch: DispatchConfig {
                jobs_per_response: 1,
                entity_types: EntityType::ALL.to_vec(),
                trusted_entity_types: vec![EntityType::Areas],
                orphan_after: Span::secs(7),
                claim_timeout: Span::secs(2),
            },
            retry: RetryConfig {
                max_attempts: 3,
                backoff_base: Span::secs(60),
                backoff_max: Span::secs(3600),
                permanent_errors: vec![
                    "Unknown task type:".into(),
                    "progress.estimatedTime".into(),
                    "token_refresh_response payload was incomplete".into(),
                ],
            },
            discovery: DiscoveryConfig {
                follow_up_types: vec![EntityType::Group, EntityType::Project],
                rediscover_after: Span::secs(48 * 3600),
            },
            heartbeat: HeartbeatConfig {
                stale_after: Span::secs(30),
            },
            retention: RetentionConfig {
                progress_max_age: Span::secs(30 * 86400),
                progress_max_per_job: 10_000,
                events_max_age: Span::secs(90 * 86400),
                errors_max_age: Span::secs(90 * 86400),
                connections_max_age: Span::secs(30 * 86400),
                discoveries_max_age: Span::secs(90 * 86400),
                token_refreshes_max_age: Span::secs(90 * 86400),
                ended_jobs_max_age: Span::NEVER,
                prune_every: Span::secs(3600),
            },
            tokens: TokensConfig {
                command_timeout: Span::secs(5),
                http_timeout: Span::secs(5),
                refresh_margin: Span::secs(300),
                answer_within: Span::secs(12),
            },
            metrics: MetricsConfig {
                listen: String::new(),
                max_connections: 4,
                header_timeout: Span::secs(3),
            },
            log: LogConfig {
                level: "info".into(),
            },
            notify: NotifyConfig {
                cooldown: Span::secs(600),
                timeout: Span::secs(10),
                max_attempts: 20,
                crawler_lost_after: Span::secs(600),
                crawler_absent_after: Span::secs(900),
                webhook: Vec::new(),
                command: Vec::new(),
            },
        }
    }
}

macro_rules! section_defaults {
    ($($ty:ident => $field:ident),*) => {$(
        impl Default for $ty {
            fn default() -> Self { Config::default().$field }
        }
    )*};
}
section_defaults!(SocketConfig => socket, StorageConfig => storage, DispatchConfig => dispatch,
    RetryConfig => retry, DiscoveryConfig => discovery, HeartbeatConfig => heartbeat,
    RetentionConfig => retention, TokensConfig => tokens, MetricsConfig => metrics, LogConfig => log,
    NotifyConfig => notify);

/// A duration written the way people write them: `90s`, `15m`, `48h`, `7d`; or
/// `"never"` ([`Span::NEVER`], the longest duration), which only the keys whose range
/// says so accept (see `ranges`). Arithmetic with `NEVER` saturates: a timestamp
/// `now - NEVER` is 1970, so "older than never" matches nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl Span {
    pub const NEVER: Span = Span(Duration::MAX);

    pub const fn secs(s: u64) -> Self {
        Span(Duration::from_secs(s))
    }

    pub fn is_never(self) -> bool {
        self == Span::NEVER
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_never() {
            return s.serialize_str("never");
        }
        // The largest exact unit (`90d`, not humantime's `2months 29days 2h 52m 48s`),
        // so a default reads the way an operator would write it and parses back.
        s.serialize_str(&super::ranges::compact(self.0))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim().eq_ignore_ascii_case("never") {
            return Ok(Span::NEVER);
        }
        crate::time::parse_duration(&text)
            .map(Span)
            .map_err(serde::de::Error::custom)
    }
}

impl Config {
    /// The socket file mode, parsed from its octal text.
    pub fn socket_mode(&self) -> Result<u32, String> {
        match u32::from_str_radix(self.socket.mode.trim_start_matches("0o"), 8) {
            Ok(mode) if mode <= 0o777 => Ok(mode),
            _ => Err(format!(
                "'{}' is not an octal file mode such as 0660",
                self.socket.mode
            )),
        }
    }

    /// The metrics address, which must be a loopback address (the endpoint has no
    /// authentication); `None` when off.
    pub fn metrics_listen(&self) -> Result<Option<std::net::SocketAddr>, String> {
        let text = self.metrics.listen.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let addr: std::net::SocketAddr = text
            .parse()
            .map_err(|_| format!("'{text}' is not an address like 127.0.0.1:9477"))?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "'{text}' is not a loopback address; the endpoint has no authentication"
            ));
        }
        Ok(Some(addr))
    }

    pub fn log_level(&self) -> log::LevelFilter {
        self.log.level.parse().unwrap_or(log::LevelFilter::Info)
    }
}
