//! The read side: every query behind `status`, `jobs list | show`, `errors`,
//! `credentials list`, `metrics` and `db check`, for the CLI and for the running
//! agent's `/metrics` endpoint alike.
//!
//! Reads go through one [`Reader`]: an r2d2 pool of read-only (`query_only`)
//! connections sized by `storage.read_pool_size`. The CLI builds one per command; the
//! agent builds one when its metrics endpoint starts and reuses it for every scrape.
//! Each submodule holds the queries of one concern as plain functions over a
//! `rusqlite::Connection`. Nothing here writes; writes go through the writer (the
//! agent) or [`super::transact`] (the CLI).

pub mod check;
pub mod connections;
pub mod counters;
pub mod credentials;
pub mod errors;
pub mod events;
pub mod job_ids;
pub mod jobs;
pub mod metrics;
pub mod runtime;
pub mod status;

use super::{Error, ReadPool, Settings};
use r2d2_sqlite::SqliteConnectionManager;
use std::path::Path;

/// A read-only connection borrowed from the [`Reader`]; derefs to `rusqlite::Connection`.
pub type Conn = r2d2::PooledConnection<SqliteConnectionManager>;

/// The pool every read goes through. Cloning shares the pool.
#[derive(Clone)]
pub struct Reader {
    pool: ReadPool,
}

impl Reader {
    /// A pool of up to `size` read-only connections to an existing, current database.
    /// Fails at once, with a clear message, when the file is missing or not ours.
    pub fn open(path: &Path, settings: &Settings, size: u32) -> Result<Reader, Error> {
        Ok(Reader {
            pool: super::read_pool(path, settings, size)?,
        })
    }

    /// A connection from the pool (waits up to the busy timeout for a free one).
    pub fn conn(&self) -> Result<Conn, r2d2::Error> {
        self.pool.get()
    }
}
