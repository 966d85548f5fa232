//! The writer thread: the only connection that writes while the agent runs.
//!
//! Operations arrive on two bounded channels: the bulk queue (fire-and-forget writes; a
//! full queue makes senders wait, which is the backpressure that keeps memory flat
//! under a flood) and the fast lane (calls someone is waiting for, such as a job
//! claim). The thread blocks for the first operation, then keeps applying whatever is
//! queued — fast lane first — up to the batch cap, all in ONE transaction (each
//! operation in its own savepoint, so one bad operation fails alone), commits, and
//! only then answers the waiters. Once a fast-lane operation is in the batch, no more
//! bulk work is added: the batch commits at once, so a claim waits for one operation
//! and a commit, not for a queue of thousands. Idle latency is one transaction; under
//! load the batch grows.
//!
//! A batch that fails for a transient reason (the file locked by an operator past the
//! busy timeout, a full disk, an I/O error) is rolled back and run again after a pause,
//! so nothing accepted is dropped. Checkpoints run on the checkpointer's thread; the
//! writer only holds bulk work back while the WAL is too long, until the checkpointer
//! has caught up (see `checkpoint`). On shutdown the queues are closed, everything
//! already queued is committed, and the WAL is truncated.

use super::checkpoint::{self, WalState};
use super::operation::{Call, Fire, Lane, Mode, Operation};
use super::{Error, FileIdentity};
use rusqlite::{Connection, ErrorCode};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// Capacity of the fast lane; its callers wait for their answers, so it stays short.
const FAST_LANE: usize = 256;

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
}

/// Cheap to clone; every clone feeds the same thread.
#[derive(Clone)]
pub struct Writer {
    bulk: async_channel::Sender<Box<dyn Operation>>,
    fast: async_channel::Sender<Box<dyn Operation>>,
    pub stats: Arc<Stats>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Writer {
    pub fn start(
        conn: Connection,
        path: PathBuf,
        limits: Limits,
        ping: Option<Ping>,
        wal: Arc<WalState>,
    ) -> Writer {
        let (bulk, bulk_rx) = async_channel::bounded(limits.queue.max(1));
        let (fast, fast_rx) = async_channel::bounded(FAST_LANE);
        let stats = Arc::new(Stats::default());
        let loop_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || {
                WriterLoop::new(conn, path, limits, ping, loop_stats, wal).run(Queues {
                    fast: fast_rx,
                    bulk: bulk_rx,
                })
            })
            .ok();
        if thread.is_none() {
            log::error!("cannot start the database writer thread");
        }
        Writer {
            bulk,
            fast,
            stats,
            thread: Arc::new(Mutex::new(thread)),
        }
    }

    /// A connection's ordered way in (see [`Lane`]).
    pub fn lane(&self) -> Lane {
        Lane::new(self.clone())
    }

    /// Queues `op`, waiting while its queue is full.
    pub(super) async fn send(&self, op: Box<dyn Operation>, fast: bool) -> Result<(), Error> {
        let queue = if fast { &self.fast } else { &self.bulk };
        queue.send(op).await.map_err(|_| Error::WriterGone)
    }

    /// Runs `f` in the writer (fast lane) and returns its result once it is committed.
    pub async fn call<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (op, rx) = Call::boxed(f, None);
        self.send(op, true).await?;
        rx.recv().await.map_err(|_| Error::WriterGone)?
    }

    /// Like [`Writer::call`], but gives up after `timeout`. An operation still queued
    /// at its deadline is skipped by the writer, so a caller that gave up never has
    /// its work applied behind its back (one already running may still commit).
    pub async fn call_within<T, F>(&self, timeout: Duration, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.call_on(true, timeout, f).await
    }

    pub(super) async fn call_on<T, F>(
        &self,
        fast: bool,
        timeout: Duration,
        f: F,
    ) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let deadline = Instant::now() + timeout;
        let (op, rx) = Call::boxed(f, Some(deadline));
        let work = async {
            self.send(op, fast).await?;
            rx.recv().await.map_err(|_| Error::WriterGone)?
        };
        let timer = async {
            smol::Timer::at(deadline).await;
            Err(Error::Timeout(timeout))
        };
        futures_lite::future::or(work, timer).await
    }

    /// [`Writer::call`] for plain threads.
    pub fn call_blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (op, rx) = Call::boxed(f, None);
        self.fast.send_blocking(op).map_err(|_| Error::WriterGone)?;
        rx.recv_blocking().map_err(|_| Error::WriterGone)?
    }

    /// Queues `f` (bulk) without waiting for the commit; a failure is logged.
    pub async fn submit<F>(&self, what: &'static str, f: F) -> Result<(), Error>
    where
        F: FnMut(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        let op = Fire {
            what,
            f,
            mode: Mode::Savepoint,
            rows: 1,
            pending: None,
        };
        self.send(Box::new(op), false).await
    }

    /// Operations waiting in the queues.
    pub fn queued(&self) -> usize {
        self.bulk.len() + self.fast.len()
    }

    /// Stops accepting operations, commits everything already queued, checkpoints,
    /// and waits for the thread to finish.
    pub fn close(&self) {
        self.bulk.close();
        self.fast.close();
        let handle = self.thread.lock().map(|mut t| t.take()).unwrap_or(None);
        if let Some(handle) = handle {
            if handle.join().is_err() {
                log::error!("the database writer thread panicked");
            }
        }
    }
}

struct Queues {
    fast: async_channel::Receiver<Box<dyn Operation>>,
    bulk: async_channel::Receiver<Box<dyn Operation>>,
}

enum Waited {
    Op((Box<dyn Operation>, bool)),
    /// Nothing arrived within the ping interval.
    Idle,
    /// Both queues are closed and empty.
    Closed,
}

impl Queues {
    /// The next operation, fast lane first (only from the fast lane unless `bulk`),
    /// waiting if there is none (at most `patience`, when given).
    fn wait(&self, patience: Option<Duration>, bulk: bool) -> Waited {
        if let Some(next) = self.try_next(!bulk) {
            return Waited::Op(next);
        }
        futures_lite::future::block_on(async {
            let fast = async { self.fast.recv().await.ok().map(|op| Waited::Op((op, true))) };
            let bulk = async {
                if !bulk {
                    return std::future::pending().await;
                }
                self.bulk
                    .recv()
                    .await
                    .ok()
                    .map(|op| Waited::Op((op, false)))
            };
            let idle = async {
                match patience {
                    Some(d) => {
                        smol::Timer::after(d).await;
                        Some(Waited::Idle)
                    }
                    None => std::future::pending().await,
                }
            };
            match futures_lite::future::or(futures_lite::future::or(fast, bulk), idle).await {
                Some(next) => next,
                // One queue is closed and empty (shutdown): finish the other.
                None => match self.bulk.recv().await {
                    Ok(op) => Waited::Op((op, false)),
                    Err(_) => self
                        .fast
                        .recv()
                        .await
                        .map_or(Waited::Closed, |op| Waited::Op((op, true))),
                },
            }
        })
    }

    /// The next queued operation without waiting; bulk work only if `fast_only` is false.
    fn try_next(&self, fast_only: bool) -> Option<(Box<dyn Operation>, bool)> {
        if let Ok(op) = self.fast.try_recv() {
            return Some((op, true));
        }
        if fast_only {
            return None;
        }
        self.bulk.try_recv().ok().map(|op| (op, false))
    }
}

struct WriterLoop {
    conn: Connection,
    /// An operation taken from a queue that must wait for the next transaction.
    held: Option<(Box<dyn Operation>, bool)>,
    wal: Arc<WalState>,
    hold: Hold,
    page_size: u64,
    ping: Option<Ping>,
    last_ping: Instant,
    stats: Arc<Stats>,
    /// The database file as opened: retrying is pointless once the file at the path
    /// is gone or another one.
    database: FileIdentity,
    limits: Limits,
}

/// Errors after which the same batch can succeed later.
fn is_transient(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
        )
    )
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
            wal,
            hold: Hold::default(),
            page_size,
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
            self.ping_if_due();
            let bulk = self.bulk_allowed();
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
            let Some(first) = next else { break };
            let started = Instant::now();
            let changes_before = self.conn.total_changes();
            let (mut batch, outcomes) = match self.commit_streaming(first, &queues, bulk) {
                Ok(done) => done,
                Err((batch, e)) => {
                    // Transient failure on the first try: retry the same operations.
                    let mut batch = batch;
                    let outcomes = self.commit_with_retry(&mut batch, e);
                    (batch, outcomes)
                }
            };
            let n = batch.len() as u64;
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
            self.stats.operations.fetch_add(n, Ordering::Relaxed);
            self.stats.last_batch_size.store(n, Ordering::Relaxed);
            self.stats
                .commit_micros
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            if self.conn.total_changes() != changes_before {
                self.wal.committed();
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

    /// Opens a transaction and applies operations as they are taken from the queues,
    /// fast lane first (only the fast lane unless `bulk`); commits when the queues are
    /// empty, the batch is full, or a fast-lane operation is waiting for its answer.
    #[allow(clippy::type_complexity)]
    fn commit_streaming(
        &mut self,
        first: (Box<dyn Operation>, bool),
        queues: &Queues,
        bulk: bool,
    ) -> Result<
        (Vec<Box<dyn Operation>>, Vec<Result<(), Error>>),
        (Vec<Box<dyn Operation>>, rusqlite::Error),
    > {
        let (op, mut answer_soon) = first;
        let alone = op.mode() == Mode::Alone;
        let mut rows = op.rows();
        let mut batch = vec![op];
        // SQLite's 2 MiB page cache would make a very large transaction spill to the
        // WAL mid-way; it gets a big cache for its duration, given back afterwards.
        let _cache = alone.then(|| LargeCache::new(&self.conn));
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            return Err((batch, e));
        }
        let mut outcomes = Vec::with_capacity(self.limits.batch);
        let mut i = 0;
        loop {
            match apply_one(&self.conn, batch[i].as_mut()) {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => {
                    self.rollback();
                    // Take whatever else was pulled so it is retried too.
                    return Err((batch, e));
                }
            }
            i += 1;
            if alone || rows >= self.limits.batch {
                break;
            }
            match queues.try_next(answer_soon || !bulk) {
                Some((op, fast)) if op.mode() == Mode::Alone => {
                    // It gets a transaction of its own, next.
                    self.held = Some((op, fast));
                    break;
                }
                Some((op, fast)) => {
                    answer_soon |= fast;
                    rows += op.rows();
                    batch.push(op);
                }
                None => break,
            }
        }
        self.finish_transaction(batch, outcomes)
    }

    /// COMMITs, or ROLLs BACK an operation that ran alone and failed.
    #[allow(clippy::type_complexity)]
    fn finish_transaction(
        &self,
        batch: Vec<Box<dyn Operation>>,
        outcomes: Vec<Result<(), Error>>,
    ) -> Result<
        (Vec<Box<dyn Operation>>, Vec<Result<(), Error>>),
        (Vec<Box<dyn Operation>>, rusqlite::Error),
    > {
        let failed_alone =
            batch.len() == 1 && batch[0].mode() == Mode::Alone && outcomes[0].is_err();
        if failed_alone {
            self.rollback();
            return Ok((batch, outcomes));
        }
        match self.conn.execute_batch("COMMIT") {
            Ok(()) => Ok((batch, outcomes)),
            Err(e) => {
                self.rollback();
                Err((batch, e))
            }
        }
    }

    /// Tells the watchdog the writer is alive: after every batch and while idle. A
    /// writer stuck in a batch stops pinging, and systemd restarts the agent.
    fn ping_if_due(&mut self) {
        if let Some((every, ping)) = &self.ping {
            if self.last_ping.elapsed() >= *every {
                ping();
                self.last_ping = Instant::now();
            }
        }
    }

    /// Whether bulk work may go on: not while the WAL is longer than the limit and the
    /// checkpointer has not yet copied everything (see `checkpoint`). Claims and other
    /// fast-lane calls are never held back.
    fn bulk_allowed(&mut self) -> bool {
        let pass = self.wal.last_pass();
        let commits = self.wal.commits();
        if pass.caught_up && pass.after_commits == commits {
            self.hold.caught_up(&self.stats, commits);
            return true;
        }
        let long = self.hold.is_news(&pass)
            && pass.frames * self.page_size >= self.limits.checkpoint_bytes;
        if !long {
            self.hold.not_needed(&self.stats);
            return true;
        }
        !self.hold.keep(&self.wal, &self.stats, commits)
    }

    fn rollback(&self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    /// Commits `batch` after a failure, retrying the whole of it while the failure is
    /// transient; a permanent failure fails every operation of the batch.
    fn commit_with_retry(
        &mut self,
        batch: &mut [Box<dyn Operation>],
        first_error: rusqlite::Error,
    ) -> Vec<Result<(), Error>> {
        let mut pause = Duration::from_millis(50);
        let mut reported = false;
        let mut error = first_error;
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
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
            match self.commit(batch) {
                Ok(outcomes) => {
                    log::warn!(
                        "database writable again; {} operations committed",
                        batch.len()
                    );
                    return outcomes;
                }
                Err(e) => error = e,
            }
        }
    }

    fn commit(
        &mut self,
        batch: &mut [Box<dyn Operation>],
    ) -> rusqlite::Result<Vec<Result<(), Error>>> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for op in batch.iter_mut() {
            match apply_one(&self.conn, op.as_mut()) {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => {
                    self.rollback();
                    return Err(e);
                }
            }
        }
        let failed_alone =
            batch.len() == 1 && batch[0].mode() == Mode::Alone && outcomes[0].is_err();
        if failed_alone {
            self.rollback();
            return Ok(outcomes);
        }
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            self.rollback();
            return Err(e);
        }
        Ok(outcomes)
    }
}

/// How often a writer holding bulk work back looks again.
const HOLD_RECHECK: Duration = Duration::from_millis(1);

/// The writer holding bulk work back for the WAL to start over.
#[derive(Debug, Default)]
struct Hold {
    since: Option<Instant>,
    /// Given up (the WAL is pinned by a reader): no holding before this instant.
    not_before: Option<Instant>,
    /// Holds given up in a row; each doubles the time before the next (a reader
    /// that stays costs ingest at most one hold per minute).
    given_up: u32,
    /// The commit count at the last WAL restart; earlier reports of its length are old.
    restarted_after: u64,
}

impl Hold {
    /// Whether to keep holding bulk work back; starts a hold, or gives one up after
    /// `checkpoint::MAX_HOLD`.
    fn keep(&mut self, wal: &WalState, stats: &Stats, commits: u64) -> bool {
        let now = Instant::now();
        if self.not_before.is_some_and(|t| now < t) {
            return false;
        }
        match self.since {
            None => {
                self.since = Some(now);
                wal.hurry();
                true
            }
            Some(since) if now.duration_since(since) < checkpoint::MAX_HOLD => true,
            Some(_) => {
                log::debug!("the WAL did not start over: a reader may be holding it");
                self.finish(stats, commits);
                let wait = (2 * checkpoint::MAX_HOLD) * 2u32.pow(self.given_up.min(6));
                self.not_before = Some(now + wait.min(Duration::from_secs(60)));
                self.given_up += 1;
                false
            }
        }
    }

    /// Every committed frame is in the database: the next write transaction starts the
    /// WAL over, and the lengths reported so far are history.
    fn caught_up(&mut self, stats: &Stats, commits: u64) {
        self.finish(stats, commits);
        self.given_up = 0;
    }

    fn not_needed(&mut self, stats: &Stats) {
        self.finish(stats, self.restarted_after);
    }

    /// Whether `pass` looked at the WAL since it last started over.
    fn is_news(&self, pass: &checkpoint::Pass) -> bool {
        pass.after_commits > self.restarted_after
    }

    fn finish(&mut self, stats: &Stats, restarted_after: u64) {
        if let Some(since) = self.since.take() {
            stats
                .wal_hold_micros
                .fetch_add(since.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        self.restarted_after = restarted_after;
    }
}

/// A larger page cache while it lives (for operations that run alone).
struct LargeCache<'a> {
    conn: &'a Connection,
}

impl<'a> LargeCache<'a> {
    const KIB: u32 = 64 * 1024;

    fn new(conn: &'a Connection) -> Self {
        let _ = conn.execute_batch(&format!("PRAGMA cache_size = -{}", Self::KIB));
        LargeCache { conn }
    }
}

impl Drop for LargeCache<'_> {
    fn drop(&mut self) {
        // SQLite's default; shrinking frees the pages beyond it.
        let _ = self.conn.execute_batch("PRAGMA cache_size = -2000");
    }
}

/// Applies one operation (in its own savepoint unless its mode says otherwise). The
/// outer error is a transient failure that aborts the whole batch; the inner one fails
/// this operation alone.
fn apply_one(conn: &Connection, op: &mut dyn Operation) -> rusqlite::Result<Result<(), Error>> {
    if op.mode() != Mode::Savepoint {
        return match op.apply(conn) {
            Ok(()) => Ok(Ok(())),
            Err(e) if is_transient(&e) => Err(e),
            Err(e) => Ok(Err(Error::Sqlite(e))),
        };
    }
    conn.prepare_cached("SAVEPOINT op")?.execute([])?;
    match op.apply(conn) {
        Ok(()) => {
            conn.prepare_cached("RELEASE op")?.execute([])?;
            Ok(Ok(()))
        }
        Err(e) if is_transient(&e) => Err(e),
        Err(e) => {
            conn.prepare_cached("ROLLBACK TO op")?.execute([])?;
            conn.prepare_cached("RELEASE op")?.execute([])?;
            Ok(Err(Error::Sqlite(e)))
        }
    }
}
