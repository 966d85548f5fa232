//! Configuration: defaults < config file < environment < command-line flags.
//!
//! Every key has an embedded default (see `config.example.toml`), so the agent runs
//! with no file at all. A file may set any subset of keys; unknown keys and values of
//! the wrong type are errors that name the key and the file. The environment overrides
//! the file with `CRAWLER_AGENT_<SECTION>_<KEY>` (and the crawler's own `SOCKET_PATH`
//! sets `socket.path`, so one environment can serve both processes); `--db` and
//! `--socket` override everything. The loader remembers where each value came from,
//! for `config show`. The config holds no secrets: tokens live in the database.
//!
//! - `schema`: the types, their embedded defaults, and `Span`;
//! - `load`: the layers, `Flags` and `Loaded`;
//! - `validate`: the checks on the merged result;
//! - `ranges`: the allowed range of every duration, size and count key;
//! - `source`: `Source` (where a value came from) and `ConfigError`.
//!
//! Everything public is re-exported here, so callers write `crate::config::X`.

mod load;
pub mod notify;
pub mod ranges;
mod schema;
mod source;
mod validate;

#[cfg(test)]
mod tests;

pub use load::{known_env_vars, load, unknown_env_vars, Flags, Loaded};
pub use schema::{
    CommandSink, Config, DiscoveryConfig, DispatchConfig, Durability, HeartbeatConfig, LogConfig,
    MetricsConfig, NotifyConfig, RetentionConfig, RetryConfig, SocketConfig, Span, StorageConfig,
    TokensConfig, WebhookSink,
};
pub use source::{ConfigError, Source};
