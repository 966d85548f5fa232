//! The handles that feed the writer thread: [`Writer`] (cheap to clone, every clone
//! feeds the same thread) and [`Lane`], one connection's ordered way in.
//!
//! A lane's fire-and-forget operations are counted until committed, and its calls take
//! the writer's fast lane only when nothing of its own is still queued, so a
//! connection's messages are always applied in the order they arrived.

use super::operation::{Call, Fire, Mode, Operation};
use super::queues::Queues;
use super::stats::Stats;
use super::thread::{self, Limits, Ping};
use crate::race::{until, within};
use crate::store::checkpoint::WalState;
use crate::store::Error;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Capacity of the fast lane; its callers wait for their answers, so it stays short.
const FAST_LANE: usize = 256;
/// How much longer a caller waits past its deadline for a call the writer had
/// already taken up (see `CallState`).
const STARTED_GRACE: Duration = Duration::from_secs(2);

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
        let queues = Queues::new(fast_rx, bulk_rx);
        let thread = thread::spawn(conn, path, limits, ping, stats.clone(), wal, queues).ok();
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
        Lane {
            writer: self.clone(),
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Queues `op`, waiting while its queue is full.
    async fn send(&self, op: Box<dyn Operation>, fast: bool) -> Result<(), Error> {
        let queue = if fast { &self.fast } else { &self.bulk };
        queue.send(op).await.map_err(|_| Error::WriterGone)
    }

    /// Runs `f` in the writer (fast lane) and returns its result once it is committed.
    pub async fn call<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (op, rx, _) = Call::boxed(f, None);
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

    async fn call_on<T, F>(&self, fast: bool, timeout: Duration, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let deadline = Instant::now() + timeout;
        let (op, rx, state) = Call::boxed(f, Some(deadline));
        let work = async {
            self.send(op, fast).await?;
            rx.recv().await.map_err(|_| Error::WriterGone)?
        };
        if let Some(answer) = until(deadline, work).await {
            return answer;
        }
        if state.abandon() {
            return Err(Error::Timeout(timeout));
        }
        // The writer took it up just in time: its result is committed or about to be,
        // and a claim that committed must reach the crawler. Waited for a little
        // longer; a writer stuck past that leaves the job to the orphan rules.
        let answer = within(STARTED_GRACE, rx.recv()).await;
        match answer {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::WriterGone),
            None => Err(Error::Timeout(timeout + STARTED_GRACE)),
        }
    }

    /// [`Writer::call`] for plain threads.
    pub fn call_blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (op, rx, _) = Call::boxed(f, None);
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

    /// Queues `f` (bulk) if there is room now, never waiting: for callers that must not
    /// be slowed down by the writer (the accept loop). Returns whether it was queued.
    pub fn try_submit<F>(&self, what: &'static str, f: F) -> bool
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
        self.bulk.try_send(Box::new(op)).is_ok()
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

/// One connection's way into the writer, in order; see the module docs.
pub struct Lane {
    writer: Writer,
    pending: Arc<AtomicUsize>,
}

impl Lane {
    /// Queues `f` behind this lane's earlier operations, without waiting for it.
    pub async fn submit<F>(&self, what: &'static str, f: F) -> Result<(), Error>
    where
        F: FnMut(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        self.submit_as(Mode::Savepoint, 1, what, f).await
    }

    /// [`Lane::submit`] with another way of keeping the operation atomic ([`Mode`]), for
    /// an operation that writes about `rows` rows.
    pub async fn submit_as<F>(
        &self,
        mode: Mode,
        rows: usize,
        what: &'static str,
        f: F,
    ) -> Result<(), Error>
    where
        F: FnMut(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        self.pending.fetch_add(1, Ordering::AcqRel);
        let op = Box::new(Fire {
            what,
            f,
            mode,
            rows,
            pending: Some(self.pending.clone()),
        });
        let sent = self.writer.send(op, false).await;
        if sent.is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
        sent
    }

    /// Runs `f` after this lane's earlier operations and returns its committed result;
    /// gives up after `timeout` (see [`Writer::call_within`]).
    pub async fn call_within<T, F>(&self, timeout: Duration, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let in_order_is_fast = self.pending.load(Ordering::Acquire) == 0;
        self.writer.call_on(in_order_is_fast, timeout, f).await
    }
}
