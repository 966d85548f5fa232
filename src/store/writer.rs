//! The writer thread: the only connection that writes while the agent runs.
//!
//! Operations arrive on a bounded channel (a full channel makes senders wait, which is
//! the backpressure that keeps memory flat under a flood). The thread blocks for the
//! first operation, drains whatever else is already queued up to the batch cap, runs
//! the batch in ONE transaction (each operation in its own savepoint, so one bad
//! operation fails alone), commits, and only then answers the operations' waiters.
//! Idle latency is one transaction; under load the batch grows.
//!
//! A batch that fails for a transient reason (the file locked by an operator past the
//! busy timeout, a full disk, an I/O error) is rolled back and run again after a pause,
//! so nothing accepted is dropped. The writer also keeps the WAL bounded: a passive
//! checkpoint whenever the queue is idle, a TRUNCATE checkpoint (without waiting on
//! readers) once the WAL passes the configured size. On shutdown the channel is closed,
//! everything already queued is committed, and the WAL is truncated.

use super::Error;
use rusqlite::{Connection, ErrorCode};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One unit of work for the writer.
pub trait Operation: Send {
    /// Runs inside the batch transaction, in its own savepoint. Runs again if the batch
    /// is retried after a transient failure, so it must not consume its inputs.
    fn apply(&mut self, conn: &Connection) -> rusqlite::Result<()>;
    /// Called exactly once: after COMMIT with `Ok`, or with the reason it failed.
    fn finish(self: Box<Self>, outcome: Result<(), Error>);
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub queue: usize,
    pub batch: usize,
    pub checkpoint_bytes: u64,
    pub busy_timeout: Duration,
}

/// Cheap to clone; every clone feeds the same thread.
#[derive(Clone)]
pub struct Writer {
    tx: async_channel::Sender<Box<dyn Operation>>,
    thread: std::sync::Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl Writer {
    pub fn start(conn: Connection, path: PathBuf, limits: Limits) -> Writer {
        let (tx, rx) = async_channel::bounded(limits.queue.max(1));
        let thread = std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || WriterLoop::new(conn, path, limits).run(rx))
            .ok();
        if thread.is_none() {
            log::error!("cannot start the database writer thread");
        }
        Writer {
            tx,
            thread: std::sync::Arc::new(std::sync::Mutex::new(thread)),
        }
    }

    /// Queues `op`, waiting while the queue is full.
    pub async fn send(&self, op: Box<dyn Operation>) -> Result<(), Error> {
        self.tx.send(op).await.map_err(|_| Error::WriterGone)
    }

    /// Queues `op` from a plain thread, blocking while the queue is full.
    pub fn send_blocking(&self, op: Box<dyn Operation>) -> Result<(), Error> {
        self.tx.send_blocking(op).map_err(|_| Error::WriterGone)
    }

    /// Runs `f` in the writer and returns its result once it is committed.
    pub async fn call<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (op, rx) = Call::boxed(f, None);
        self.send(op).await?;
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
        let deadline = Instant::now() + timeout;
        let (op, rx) = Call::boxed(f, Some(deadline));
        let work = async {
            self.send(op).await?;
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
        self.send_blocking(op)?;
        rx.recv_blocking().map_err(|_| Error::WriterGone)?
    }

    /// Queues `f` without waiting for the commit; a failure is logged by the writer.
    pub async fn submit<F>(&self, what: &'static str, f: F) -> Result<(), Error>
    where
        F: FnMut(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        self.send(Box::new(Fire { what, f })).await
    }

    /// Operations waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Stops accepting operations, commits everything already queued, checkpoints,
    /// and waits for the thread to finish.
    pub fn close(&self) {
        self.tx.close();
        let handle = self.thread.lock().map(|mut t| t.take()).unwrap_or(None);
        if let Some(handle) = handle {
            if handle.join().is_err() {
                log::error!("the database writer thread panicked");
            }
        }
    }
}

/// An operation whose caller waits for the committed result.
struct Call<T, F> {
    f: F,
    result: Option<T>,
    deadline: Option<Instant>,
    reply: async_channel::Sender<Result<T, Error>>,
}

impl<T, F> Call<T, F>
where
    T: Send + 'static,
    F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
{
    #[allow(clippy::type_complexity)]
    fn boxed(
        f: F,
        deadline: Option<Instant>,
    ) -> (
        Box<dyn Operation>,
        async_channel::Receiver<Result<T, Error>>,
    ) {
        let (reply, rx) = async_channel::bounded(1);
        let op = Call {
            f,
            result: None,
            deadline,
            reply,
        };
        (Box::new(op), rx)
    }
}

impl<T, F> Operation for Call<T, F>
where
    T: Send + 'static,
    F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
{
    fn apply(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        if self.deadline.is_some_and(|d| Instant::now() > d) {
            self.result = None;
            return Ok(());
        }
        self.result = Some((self.f)(conn)?);
        Ok(())
    }

    fn finish(self: Box<Self>, outcome: Result<(), Error>) {
        let answer = match (outcome, self.result) {
            (Ok(()), Some(value)) => Ok(value),
            (Ok(()), None) => Err(Error::Timeout(Duration::ZERO)),
            (Err(e), _) => Err(e),
        };
        // The caller may have given up (timeout); then nobody is listening.
        let _ = self.reply.try_send(answer);
    }
}

/// An operation nobody waits for.
struct Fire<F> {
    what: &'static str,
    f: F,
}

impl<F> Operation for Fire<F>
where
    F: FnMut(&Connection) -> rusqlite::Result<()> + Send + 'static,
{
    fn apply(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        (self.f)(conn)
    }

    fn finish(self: Box<Self>, outcome: Result<(), Error>) {
        if let Err(e) = outcome {
            log::error!("storing {} failed: {e}", self.what);
        }
    }
}

struct WriterLoop {
    conn: Connection,
    path: PathBuf,
    /// (device, inode) of the database when opened: retrying is pointless once the
    /// file at the path is gone or another one.
    identity: Option<(u64, u64)>,
    wal: PathBuf,
    limits: Limits,
    last_forced_checkpoint: Option<Instant>,
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
    fn new(conn: Connection, path: PathBuf, limits: Limits) -> Self {
        // We checkpoint ourselves (see `maintain_wal`), never inside a commit.
        if let Err(e) = conn.execute_batch("PRAGMA wal_autocheckpoint = 0") {
            log::warn!("cannot disable automatic checkpoints: {e}");
        }
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        WriterLoop {
            conn,
            identity: file_identity(&path),
            path,
            wal: PathBuf::from(wal),
            limits,
            last_forced_checkpoint: None,
        }
    }

    fn run(mut self, rx: async_channel::Receiver<Box<dyn Operation>>) {
        let mut batch: Vec<Box<dyn Operation>> = Vec::with_capacity(self.limits.batch);
        while let Ok(first) = rx.recv_blocking() {
            batch.push(first);
            while batch.len() < self.limits.batch {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let outcomes = self.commit_with_retry(&mut batch);
            for (op, outcome) in batch.drain(..).zip(outcomes) {
                op.finish(outcome);
            }
            self.maintain_wal(rx.is_empty());
        }
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            log::warn!("final checkpoint failed: {e}");
        }
        log::debug!("database writer stopped");
    }

    /// Commits the batch, retrying the whole of it while the failure is transient.
    fn commit_with_retry(&mut self, batch: &mut [Box<dyn Operation>]) -> Vec<Result<(), Error>> {
        let mut pause = Duration::from_millis(50);
        let mut reported = false;
        loop {
            match self.commit(batch) {
                Ok(outcomes) => {
                    if reported {
                        log::warn!(
                            "database writable again; {} operations committed",
                            batch.len()
                        );
                    }
                    return outcomes;
                }
                Err(e) if is_transient(&e) && file_identity(&self.path) != self.identity => {
                    log::error!(
                        "database write failed ({e}) and {} is no longer the file the agent opened; {} operations dropped",
                        self.path.display(),
                        batch.len()
                    );
                    return batch
                        .iter()
                        .map(|_| {
                            Err(Error::Batch(format!(
                                "database file replaced or removed: {e}"
                            )))
                        })
                        .collect();
                }
                Err(e) if is_transient(&e) => {
                    if !reported {
                        log::error!(
                            "database write failed ({e}); holding {} operations and retrying",
                            batch.len()
                        );
                        reported = true;
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    log::error!("database write failed: {e}");
                    return batch
                        .iter()
                        .map(|_| Err(Error::Batch(e.to_string())))
                        .collect();
                }
            }
        }
    }

    fn commit(
        &mut self,
        batch: &mut [Box<dyn Operation>],
    ) -> rusqlite::Result<Vec<Result<(), Error>>> {
        let conn = &self.conn;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut run = |outcomes: &mut Vec<Result<(), Error>>| -> rusqlite::Result<()> {
            for op in batch.iter_mut() {
                conn.prepare_cached("SAVEPOINT op")?.execute([])?;
                match op.apply(conn) {
                    Ok(()) => {
                        conn.prepare_cached("RELEASE op")?.execute([])?;
                        outcomes.push(Ok(()));
                    }
                    Err(e) if is_transient(&e) => return Err(e),
                    Err(e) => {
                        conn.prepare_cached("ROLLBACK TO op")?.execute([])?;
                        conn.prepare_cached("RELEASE op")?.execute([])?;
                        outcomes.push(Err(Error::Sqlite(e)));
                    }
                }
            }
            conn.execute_batch("COMMIT")
        };
        match run(&mut outcomes) {
            Ok(()) => Ok(outcomes),
            Err(e) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                Err(e)
            }
        }
    }

    fn maintain_wal(&mut self, idle: bool) {
        let size = std::fs::metadata(&self.wal).map(|m| m.len()).unwrap_or(0);
        if size >= self.limits.checkpoint_bytes {
            // Readers may pin old pages; do not wait for them, try again shortly.
            let recently = self
                .last_forced_checkpoint
                .is_some_and(|t| t.elapsed() < Duration::from_millis(200));
            if !recently {
                self.last_forced_checkpoint = Some(Instant::now());
                let _ = self.conn.busy_timeout(Duration::ZERO);
                let result = self
                    .conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                        r.get::<_, i64>(0)
                    });
                let _ = self.conn.busy_timeout(self.limits.busy_timeout);
                if let Err(e) = result {
                    log::debug!("truncating checkpoint failed: {e}");
                }
            }
        } else if idle && size > 0 {
            if let Err(e) = self
                .conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            {
                log::debug!("passive checkpoint failed: {e}");
            }
        }
    }
}

fn file_identity(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}
