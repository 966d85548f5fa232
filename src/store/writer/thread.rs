//! The writer thread's loop: takes operations from the queues (fast lane first, bulk
//! work only while the WAL hold allows it), applies them in one transaction per batch,
//! retries a batch that failed for a transient reason, then answers them. It also
//! pings the watchdog and truncates the WAL on the way out.

use super::failing::Failing;
use super::hold::{WalHold, HOLD_RECHECK};
use super::operation::{Mode, Operation};
use super::queues::{Queues, Taken, Waited};
use super::stats::Stats;
use super::transaction::{self, is_transient, LargeCache};
use crate::store::checkpoint::WalState;
use crate::store::file_identity::FileIdentity;
use crate::store::Error;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub queue: usize,
    /// Rows (see `Operation::rows`) in one transaction, about.
    pub batch: usize,
    /// Past this WAL size the writer holds bulk work back until the WAL starts over.
    pub checkpoint_bytes: u64,
}

/// Called by the writer thread at least every interval while it is healthy.
pub type Ping = (Duration, Box<dyn Fn() + Send>);

/// Starts the thread named `db-writer`, which owns `conn` until both queues close.
pub(super) fn spawn(
    conn: Connection,
    path: PathBuf,
    limits: Limits,
    ping: Option<Ping>,
    stats: Arc<Stats>,
    wal: Arc<WalState>,
    queues: Queues,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("db-writer".into())
        .spawn(move || {
            // A panic outside an operation (those are contained in `transaction`) leaves
            // nobody to write: the process ends and is restarted.
            crate::supervise::essential("the database writer thread", || {
                WriterLoop::new(conn, path, limits, ping, stats, wal).run(queues)
            })
        })
}

struct WriterLoop {
    conn: Connection,
    /// An operation taken from a queue that must wait for the next transaction.
    held: Option<Taken>,
    hold: WalHold,
    ping: Option<Ping>,
    last_ping: Instant,
    stats: Arc<Stats>,
    /// The database file as opened: retrying is pointless once the file at the path
    /// is gone or another one.
    database: FileIdentity,
    limits: Limits,
}

impl WriterLoop {
    fn new(
        conn: Connection,
        path: PathBuf,
        limits: Limits,
        ping: Option<Ping>,
        stats: Arc<Stats>,
        wal: Arc<WalState>,
    ) -> Self {
        // The checkpointer thread does this, so a commit never waits for a checkpoint.
        if let Err(e) = conn.execute_batch("PRAGMA wal_autocheckpoint = 0") {
            log::warn!("cannot disable automatic checkpoints: {e}");
        }
        // Every statement of the hot paths stays prepared (rusqlite keeps 16).
        conn.set_prepared_statement_cache_capacity(128);
        let page_size = conn
            .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
            .map_or(4096, |p| p.max(512) as u64);
        WriterLoop {
            conn,
            held: None,
            hold: WalHold::new(wal, page_size, limits.checkpoint_bytes),
            ping,
            last_ping: Instant::now(),
            stats,
            database: FileIdentity::of(&path),
            limits,
        }
    }

    fn run(mut self, queues: Queues) {
        let ping_every = self.ping.as_ref().map(|(every, _)| *every);
        loop {
            crate::failpoint::panic_if_triggered("writer-thread");
            self.ping_if_due();
            let bulk = self.hold.bulk_allowed(&self.stats);
            let patience = if bulk { ping_every } else { Some(HOLD_RECHECK) };
            let next = match self.held.take() {
                Some(op) if bulk => Some(op),
                held => {
                    self.held = held;
                    match queues.wait(patience, bulk) {
                        Waited::Op(op) => Some(op),
                        Waited::Idle => continue,
                        Waited::Closed => self.held.take(),
                    }
                }
            };
            let Some((first, fast)) = next else { break };
            let started = Instant::now();
            let changes_before = self.conn.total_changes();
            let mut batch = vec![first];
            let outcomes = match self.first_try(&mut batch, fast, &queues, bulk) {
                Ok(outcomes) => outcomes,
                // Transient failure on the first try: retry the same operations.
                Err(e) => self.commit_with_retry(&mut batch, e),
            };
            let n = batch.len() as u64;
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
            self.stats.operations.fetch_add(n, Ordering::Relaxed);
            self.stats.last_batch_size.store(n, Ordering::Relaxed);
            self.stats
                .commit_micros
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            if self.conn.total_changes() != changes_before {
                self.hold.committed();
            }
            for (op, outcome) in batch.drain(..).zip(outcomes) {
                op.finish(outcome);
            }
        }
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            log::warn!("final checkpoint failed: {e}");
        }
        log::debug!("database writer stopped");
    }

    /// The first try at a batch that starts with `batch`: applies operations as they are
    /// taken from the queues, fast lane first (only the fast lane unless `bulk`), and
    /// commits when the queues are empty, the batch is full, or a fast-lane operation
    /// is waiting for its answer (`answer_soon`). On an error, `batch` holds everything
    /// taken, ready to be retried.
    fn first_try(
        &mut self,
        batch: &mut Vec<Box<dyn Operation>>,
        mut answer_soon: bool,
        queues: &Queues,
        bulk: bool,
    ) -> rusqlite::Result<Vec<Result<(), Error>>> {
        let alone = batch[0].mode() == Mode::Alone;
        let mut rows = batch[0].rows();
        let limit = self.limits.batch;
        // SQLite's 2 MiB page cache would make a very large transaction spill to the
        // WAL mid-way; it gets a big cache for its duration, given back afterwards.
        let _cache = alone.then(|| LargeCache::new(&self.conn));
        let held = &mut self.held;
        let more = || {
            if alone || rows >= limit {
                return None;
            }
            match queues.try_next(answer_soon || !bulk) {
                Some((op, fast)) if op.mode() == Mode::Alone => {
                    // It gets a transaction of its own, next.
                    *held = Some((op, fast));
                    None
                }
                Some((op, fast)) => {
                    answer_soon |= fast;
                    rows += op.rows();
                    Some(op)
                }
                None => None,
            }
        };
        transaction::commit(&self.conn, batch, more)
    }

    /// Tells the watchdog the writer is alive: after every batch and while idle. A
    /// writer stuck in a batch stops pinging, and systemd restarts the agent: the
    /// retry loop of [`Self::commit_with_retry`] never pings, so the grace a failing
    /// batch gets is what is left of `WatchdogSec` since the last ping (half of it at
    /// least, all of it at most; docs/reliability.md).
    fn ping_if_due(&mut self) {
        if let Some((every, ping)) = &self.ping {
            if self.last_ping.elapsed() >= *every {
                ping();
                self.last_ping = Instant::now();
            }
        }
    }

    /// Commits `batch` after a failure, retrying the whole of it while the failure is
    /// transient; a permanent failure fails every operation of the batch.
    fn commit_with_retry(
        &mut self,
        batch: &mut Vec<Box<dyn Operation>>,
        first_error: rusqlite::Error,
    ) -> Vec<Result<(), Error>> {
        let mut pause = Duration::from_millis(50);
        let mut reported = false;
        let mut error = first_error;
        let failing = Failing::new();
        loop {
            if !is_transient(&error) {
                log::error!("database write failed: {error}");
                return batch
                    .iter()
                    .map(|_| Err(Error::Batch(error.to_string())))
                    .collect();
            }
            if !self.database.unchanged() {
                log::error!(
                    "database write failed ({error}) and {} is no longer the file the agent opened; {} operations dropped",
                    self.database.path().display(),
                    batch.len()
                );
                return batch
                    .iter()
                    .map(|_| {
                        Err(Error::Batch(format!(
                            "database file replaced or removed: {error}"
                        )))
                    })
                    .collect();
            }
            if !reported {
                log::error!(
                    "database write failed ({error}); holding {} operations and retrying",
                    batch.len()
                );
                reported = true;
            }
            failing.remind(&error);
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            match transaction::commit(&self.conn, batch, || None) {
                Ok(outcomes) => {
                    log::warn!(
                        "database writable again; {} operations committed",
                        batch.len()
                    );
                    failing.recovered(&self.conn, &error);
                    return outcomes;
                }
                Err(e) => error = e,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Span};
    use crate::store::Store;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn wait_until(mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    #[test]
    fn the_watchdog_is_not_fed_while_a_batch_keeps_failing_and_is_again_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let mut storage = Config::default().storage;
        storage.busy_timeout = Span(Duration::from_millis(20));
        let pings = Arc::new(AtomicU64::new(0));
        let counted = pings.clone();
        let ping: super::Ping = (
            Duration::from_millis(5),
            Box::new(move || {
                counted.fetch_add(1, Relaxed);
            }),
        );
        let store = Store::open_with(&path, &storage, Some(ping)).unwrap();
        let stats = store.writer.stats.clone();
        assert!(wait_until(|| pings.load(Relaxed) >= 3), "idle: pinged");

        let lock = rusqlite::Connection::open(&path).unwrap();
        lock.execute_batch("BEGIN IMMEDIATE").unwrap();
        std::thread::scope(|s| {
            let writer = &store.writer;
            let write =
                s.spawn(move || writer.call_blocking(|c| c.execute_batch("CREATE TABLE t(x)")));
            assert!(wait_until(|| stats.retries.load(Relaxed) >= 1));
            let before = pings.load(Relaxed);
            // Three more tries (50 + 100 + 200 ms of pauses): a 5 ms ping would have
            // come dozens of times.
            assert!(wait_until(|| stats.retries.load(Relaxed) >= 4));
            assert_eq!(pings.load(Relaxed), before, "no ping while failing");
            lock.execute_batch("ROLLBACK").unwrap();
            write.join().unwrap().unwrap();
            assert!(wait_until(|| pings.load(Relaxed) > before), "pinged again");
        });
        store.close();
    }
}
