//! crawler-agent: the server end of a GitLab crawler's Unix socket.
//!
//! Module map:
//!
//! - [`protocol`]: the wire. [`protocol::frame`] splits bytes into JSON objects,
//!   [`protocol::message`] types them, [`protocol::encode`] writes replies the
//!   crawler's brace-counting parser can read.
//! - [`server`]: `crawler-agent serve`. Listener, one task per connection, the
//!   handler that applies each message, the monitor (stale connections, rediscovery,
//!   retention) and the shutdown signal.
//! - [`store`]: the SQLite file. One writer thread with group commit, a read pool,
//!   migrations, and one module of SQL per table or concept.
//! - [`policy`]: dispatch and retry rules built from the config.
//! - [`config`], [`paths`]: configuration layers and default locations.
//! - [`exposition`]: the Prometheus text (prometheus-client), with `process_*`.
//! - [`logging`]: stderr logging that never panics.
//! - [`cli`]: the operator's subcommands.
//! - [`notify`]: delivering the events outbox to webhooks and commands.
//! - [`tokens`]: where a fresh token comes from (stored, helper command, OAuth).
//! - [`secret`], [`time`]: a token type that cannot be printed; timestamps.
//! - [`race`]: a future against a timer (`within`, `until`).
//! - [`supervise`]: what a panic ends (one operation, one connection, or the process);
//!   [`failpoint`]: the tests' fault injection, in debug builds only.

pub mod cli;
pub mod config;
pub mod exposition;
pub mod failpoint;
pub mod logging;
pub mod notify;
pub mod paths;
pub mod policy;
pub mod protocol;
pub mod race;
pub mod secret;
pub mod server;
pub mod store;
pub mod supervise;
pub mod time;
pub mod tokens;
