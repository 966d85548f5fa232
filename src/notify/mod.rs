//! Notifications, as configured in `[notify]`: [`config`] reads and validates the
//! sinks, [`payload`] builds what is sent (the contract in docs/operations.md),
//! [`sink`] sends it (webhook over HTTPS, or a command with the event on stdin). The
//! delivery task that takes events from the outbox is the server's
//! `server::notifier`; the CLI's `notify test` uses these directly.

pub mod config;
pub mod payload;
pub mod sink;
