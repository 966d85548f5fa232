//! The names of the running agent's counters, the keys of `agent_runtime.counters`.
//!
//! `server::metrics` and `server::monitor` write them; [`super::metrics`] reads them
//! back to render the Prometheus text. One list, so the two sides cannot drift.

/// Prefix of the per-message-type counters: `messages_received.<type>`.
pub const MESSAGES_RECEIVED: &str = "messages_received.";
pub const BYTES_RECEIVED: &str = "bytes_received";
pub const JOBS_DISPATCHED: &str = "jobs_dispatched";
pub const CONNECTIONS_ACCEPTED: &str = "connections_accepted";
pub const CONNECTIONS_REFUSED: &str = "connections_refused";
pub const BAD_MESSAGES: &str = "bad_messages";
pub const WRITER_BATCHES: &str = "writer_batches";
pub const WRITER_OPERATIONS: &str = "writer_operations";
pub const WRITER_COMMIT_MICROS: &str = "writer_commit_micros";
pub const WRITER_WAL_HOLD_MICROS: &str = "writer_wal_hold_micros";
pub const WRITER_LAST_BATCH_SIZE: &str = "writer_last_batch_size";

/// The counter of one message type.
pub fn messages_received(type_name: &str) -> String {
    format!("{MESSAGES_RECEIVED}{type_name}")
}
