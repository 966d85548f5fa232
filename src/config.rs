//! Configuration: defaults < config file < environment < command-line flags.
//!
//! Every key has an embedded default (see `config.example.toml`), so the agent runs
//! with no file at all. A file may set any subset of keys; unknown keys and values of
//! the wrong type are errors that name the key and the file. The environment overrides
//! the file with `CRAWLER_AGENT_<SECTION>_<KEY>` (and the crawler's own `SOCKET_PATH`
//! sets `socket.path`, so one environment can serve both processes); `--db` and
//! `--socket` override everything. The loader remembers where each value came from,
//! for `config show`. The config holds no secrets: tokens live in the database.

use crate::paths::DefaultPaths;
use crate::protocol::EntityType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Loopback address (e.g. `127.0.0.1:9477`) serving `GET /metrics`; empty: off.
    pub listen: String,
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
                stale_after: Span::secs(20),
            },
            retention: RetentionConfig {
                progress_max_age: Span::secs(30 * 86400),
                progress_max_per_job: 10_000,
                events_max_age: Span::secs(90 * 86400),
                errors_max_age: Span::secs(90 * 86400),
                prune_every: Span::secs(3600),
            },
            tokens: TokensConfig {
                command_timeout: Span::secs(5),
                http_timeout: Span::secs(5),
                refresh_margin: Span::secs(300),
            },
            metrics: MetricsConfig {
                listen: String::new(),
            },
            log: LogConfig {
                level: "info".into(),
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
    RetentionConfig => retention, TokensConfig => tokens, MetricsConfig => metrics, LogConfig => log);

/// A duration written the way people write them: `90s`, `15m`, `48h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl Span {
    pub const fn secs(s: u64) -> Self {
        Span(Duration::from_secs(s))
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        crate::time::parse_duration(&text)
            .map(Span)
            .map_err(serde::de::Error::custom)
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{key} (from {origin}): {message}")]
    Invalid {
        key: String,
        origin: Source,
        message: String,
    },
    #[error("{0}")]
    Paths(String),
}

/// The command-line flags that take part in configuration.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub db: Option<PathBuf>,
    pub socket: Option<PathBuf>,
}

/// The effective configuration, with the resolved paths and where each key came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub file: Option<PathBuf>,
    pub sources: BTreeMap<String, Source>,
    pub database: PathBuf,
    pub socket: PathBuf,
}

impl Loaded {
    /// Loads from the real process environment.
    pub fn from_process(flags: &Flags) -> Result<Loaded, ConfigError> {
        load(flags, &|var| std::env::var(var).ok())
    }

    pub fn source(&self, key: &str) -> &Source {
        self.sources.get(key).unwrap_or(&Source::Default)
    }

    /// Every key with its effective value, as `section.key` → TOML text.
    pub fn entries(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Ok(toml::Value::Table(table)) = toml::Value::try_from(&self.config) {
            for (section, keys) in &table {
                let toml::Value::Table(keys) = keys else {
                    continue;
                };
                for (key, value) in keys {
                    let dotted = format!("{section}.{key}");
                    let value = match dotted.as_str() {
                        "storage.path" => toml::Value::String(self.database.display().to_string()),
                        "socket.path" => toml::Value::String(self.socket.display().to_string()),
                        _ => value.clone(),
                    };
                    out.push((dotted, value.to_string()));
                }
            }
        }
        out
    }
}

const ENV_PREFIX: &str = "CRAWLER_AGENT_";

pub fn load(flags: &Flags, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let defaults = DefaultPaths::detect(env).map_err(ConfigError::Paths)?;
    let mut merged = as_table(&Config::default());
    let mut sources = BTreeMap::new();

    let file = flags.config.clone().or(defaults.config_file.clone());
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let file_error = |message: String| ConfigError::File {
            path: path.clone(),
            message,
        };
        // Deserialising the text itself gives errors with line, column and key.
        toml::from_str::<Config>(&text).map_err(|e| file_error(e.to_string().trim().into()))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
        for (section, keys) in table {
            let toml::Value::Table(keys) = keys else {
                continue;
            };
            for (key, value) in keys {
                sources.insert(format!("{section}.{key}"), Source::File(path.clone()));
                set(&mut merged, &section, &key, value);
            }
        }
    }

    for (section, key, default) in keys_of(&as_table(&Config::default())) {
        let var = format!("{ENV_PREFIX}{section}_{key}").to_uppercase();
        let from_env = env(&var).map(|raw| (var.clone(), raw)).or_else(|| {
            (section == "socket" && key == "path")
                .then(|| env("SOCKET_PATH").map(|raw| ("SOCKET_PATH".to_string(), raw)))
                .flatten()
        });
        let Some((var, raw)) = from_env else { continue };
        let value = env_value(&default, &raw).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
        // Check the one value on its own so the error names the variable.
        let mut single = toml::Table::new();
        set(&mut single, &section, &key, value.clone());
        toml::Value::Table(single)
            .try_into::<Config>()
            .map_err(|e| ConfigError::Env {
                var: var.clone(),
                message: e.to_string(),
            })?;
        set(&mut merged, &section, &key, value);
        sources.insert(format!("{section}.{key}"), Source::Env(var));
    }

    for (flag, section, value) in [
        ("--db", "storage", &flags.db),
        ("--socket", "socket", &flags.socket),
    ] {
        if let Some(path) = value {
            set(
                &mut merged,
                section,
                "path",
                toml::Value::String(path.display().to_string()),
            );
            sources.insert(format!("{section}.path"), Source::Flag(flag));
        }
    }

    let config: Config = toml::Value::Table(merged)
        .try_into()
        .map_err(|e| ConfigError::Paths(format!("configuration: {e}")))?;
    let source_of = |key: &str| sources.get(key).cloned().unwrap_or(Source::Default);
    validate(&config, &source_of)?;

    let pick = |configured: &str, default: &Path| {
        if configured.is_empty() {
            default.to_path_buf()
        } else {
            PathBuf::from(configured)
        }
    };
    Ok(Loaded {
        database: pick(&config.storage.path, &defaults.database),
        socket: pick(&config.socket.path, &defaults.socket),
        config,
        file,
        sources,
    })
}

fn validate(config: &Config, source_of: &dyn Fn(&str) -> Source) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        key: key.into(),
        origin: source_of(key),
        message,
    };
    config
        .socket_mode()
        .map_err(|m| invalid("socket.mode", m))?;
    if config.socket.path.len() > 107 {
        return Err(invalid(
            "socket.path",
            "longer than the 107 bytes Linux allows for a socket path".into(),
        ));
    }
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
    if config.retry.backoff_base.0 > config.retry.backoff_max.0 {
        return Err(invalid(
            "retry.backoff_base",
            "must not exceed retry.backoff_max".into(),
        ));
    }
    Ok(())
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

fn as_table(config: &Config) -> toml::Table {
    match toml::Value::try_from(config) {
        Ok(toml::Value::Table(t)) => t,
        // Config is a struct of plain fields; it always serialises to a table.
        _ => unreachable!("Config serialises to a TOML table"),
    }
}

fn keys_of(table: &toml::Table) -> Vec<(String, String, toml::Value)> {
    let mut out = Vec::new();
    for (section, keys) in table {
        if let toml::Value::Table(keys) = keys {
            for (key, value) in keys {
                out.push((section.clone(), key.clone(), value.clone()));
            }
        }
    }
    out
}

fn set(table: &mut toml::Table, section: &str, key: &str, value: toml::Value) {
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(keys) = entry {
        keys.insert(key.to_string(), value);
    }
}

/// Reads an environment value as the same TOML type as the key's default: strings as
/// they are, lists comma-separated (numbers in a list become integers), numbers and
/// booleans parsed.
fn env_value(default: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    Ok(match default {
        toml::Value::String(_) => toml::Value::String(raw.to_string()),
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| match s.parse::<i64>() {
                    Ok(n) => toml::Value::Integer(n),
                    Err(_) => toml::Value::String(s.to_string()),
                })
                .collect(),
        ),
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("'{raw}' is not an integer"))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(
            raw.trim()
                .parse()
                .map_err(|_| format!("'{raw}' is not true or false"))?,
        ),
        _ => return Err("this key cannot be set from the environment".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("HOME".to_string(), "/home/test".to_string())])
            .collect();
        move |k| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        }
    }

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults_need_no_file() {
        let loaded = load(&Flags::default(), &env_of(&[])).unwrap();
        assert_eq!(loaded.config, Config::default());
        assert!(loaded.database.ends_with("agent.db"));
        assert_eq!(
            loaded.source("dispatch.jobs_per_response"),
            &Source::Default
        );
    }

    #[test]
    fn precedence_is_default_file_env_flag() {
        let f = file_with("[dispatch]\njobs_per_response = 2\n[socket]\npath = \"/tmp/f.sock\"\n[retry]\nmax_attempts = 5\n");
        let flags = Flags {
            config: Some(f.path().into()),
            socket: Some("/tmp/flag.sock".into()),
            ..Flags::default()
        };
        let env = env_of(&[
            ("CRAWLER_AGENT_DISPATCH_JOBS_PER_RESPONSE", "4"),
            ("SOCKET_PATH", "/tmp/env.sock"),
        ]);
        let loaded = load(&flags, &env).unwrap();
        assert_eq!(loaded.config.dispatch.jobs_per_response, 4);
        assert_eq!(loaded.config.retry.max_attempts, 5);
        assert_eq!(loaded.socket, PathBuf::from("/tmp/flag.sock"));
        assert_eq!(
            loaded.source("retry.max_attempts"),
            &Source::File(f.path().into())
        );
        assert_eq!(
            loaded.source("dispatch.jobs_per_response"),
            &Source::Env("CRAWLER_AGENT_DISPATCH_JOBS_PER_RESPONSE".into())
        );
    }

    #[test]
    fn crawler_socket_path_is_honoured_below_our_own_variable() {
        let loaded = load(
            &Flags::default(),
            &env_of(&[("SOCKET_PATH", "/tmp/c.sock")]),
        )
        .unwrap();
        assert_eq!(loaded.socket, PathBuf::from("/tmp/c.sock"));
        let both = env_of(&[
            ("SOCKET_PATH", "/tmp/c.sock"),
            ("CRAWLER_AGENT_SOCKET_PATH", "/tmp/a.sock"),
        ]);
        assert_eq!(
            load(&Flags::default(), &both).unwrap().socket,
            PathBuf::from("/tmp/a.sock")
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_key_and_file() {
        // The error of loading a file with `text`, and the file's path.
        let file_error = |text: &str| {
            let f = file_with(text);
            let flags = Flags {
                config: Some(f.path().into()),
                ..Flags::default()
            };
            let err = load(&flags, &env_of(&[])).unwrap_err().to_string();
            (err, f.path().display().to_string())
        };
        let (err, path) = file_error("[dispatch]\njobs_per_respons = 2\n");
        assert!(
            err.contains("jobs_per_respons") && err.contains(&path),
            "{err}"
        );
        let (err, _) = file_error("[storage]\ndurability = \"sometimes\"\n");
        assert!(err.contains("durability"), "{err}");

        let err = load(
            &Flags::default(),
            &env_of(&[("CRAWLER_AGENT_RETRY_BACKOFF_BASE", "soon")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("CRAWLER_AGENT_RETRY_BACKOFF_BASE"), "{err}");

        let err = load(
            &Flags::default(),
            &env_of(&[("CRAWLER_AGENT_SOCKET_MODE", "999")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("socket.mode") && err.contains("CRAWLER_AGENT_SOCKET_MODE"),
            "{err}"
        );
    }

    #[test]
    fn example_file_matches_the_embedded_defaults() {
        let text = include_str!("../config.example.toml");
        let parsed: Config = toml::from_str(text).unwrap();
        assert_eq!(parsed, Config::default());
        // and documents every key
        for (section, key, _) in keys_of(&as_table(&Config::default())) {
            assert!(
                text.contains(&format!("\n{key} =")) || text.contains(&format!("\n# {key} =")),
                "config.example.toml does not document {section}.{key}"
            );
        }
    }
}
