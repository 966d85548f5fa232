//! What the writer has done so far: counters the thread bumps and the metrics read.

use std::sync::atomic::AtomicU64;

/// What the writer has done so far (for metrics).
#[derive(Debug, Default)]
pub struct Stats {
    pub batches: AtomicU64,
    pub operations: AtomicU64,
    /// Sum of the time from BEGIN to the end of COMMIT, microseconds.
    pub commit_micros: AtomicU64,
    pub last_batch_size: AtomicU64,
    /// Time bulk work was held back for the WAL to start over, microseconds.
    pub wal_hold_micros: AtomicU64,
    /// Tries of batches after a transient failure (each one without a watchdog ping).
    pub retries: AtomicU64,
}
