//! The checkpointer thread: keeps the WAL short without ever stopping the writer.
//!
//! It runs PASSIVE checkpoints on its own connection: they copy committed frames into
//! the database file (and fsync it) while the writer keeps appending, and wait for
//! nobody. While the writer is writing, passes follow each other; when it is idle, one
//! runs every 100 ms, and a fully copied WAL file is truncated.
//!
//! SQLite starts the WAL over from its beginning when a write transaction begins with
//! every frame copied. Under continuous writes that moment never comes by itself, so
//! the two threads make it together through [`WalState`]: the writer counts its
//! commits, each pass reports how long the WAL is and whether it copied everything the
//! writer had committed when the pass began. Once the WAL is longer than
//! `wal_checkpoint_bytes`, the writer holds bulk work back (claims still go through)
//! until a pass reports it caught up; its next transaction then starts the WAL over.
//! The copy and its fsync never run on the writer's thread. An operator's long read
//! transaction pins the WAL until it ends; the writer then stops waiting after
//! [`MAX_HOLD`], tries again later and later (up to a minute apart), and the WAL grows
//! until the reader is gone.

use super::{Error, Settings};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Between two passes while the writer is idle.
const EVERY: Duration = Duration::from_millis(100);
/// Between two passes while the writer is writing.
const BUSY_EVERY: Duration = Duration::from_millis(1);
/// The longest the writer holds bulk work back for one WAL restart.
pub const MAX_HOLD: Duration = Duration::from_millis(500);

/// What the writer and the checkpointer know about the WAL.
#[derive(Debug)]
pub struct WalState {
    /// Commits by the writer that changed something.
    commits: AtomicU64,
    last: Mutex<Pass>,
    /// Wakes the checkpointer (an early pass, or stop).
    wake: mpsc::Sender<Wake>,
}

/// What the latest checkpoint pass found.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pass {
    /// The writer's commit count when the pass began: the pass covers those commits.
    pub after_commits: u64,
    /// Frames in the WAL when the pass began.
    pub frames: u64,
    /// Whether the pass copied every frame into the database.
    pub caught_up: bool,
}

impl WalState {
    /// The writer committed a transaction that changed something.
    pub fn committed(&self) {
        self.commits.fetch_add(1, Ordering::AcqRel);
    }

    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Acquire)
    }

    pub fn last_pass(&self) -> Pass {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the checkpointer for a pass now.
    pub fn hurry(&self) {
        let _ = self.wake.send(Wake::Hurry);
    }

    fn record(&self, pass: Pass) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = pass;
    }
}

#[derive(Debug)]
enum Wake {
    Hurry,
    Stop,
}

pub struct Checkpointer {
    state: Arc<WalState>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(path: &Path, settings: &Settings) -> Result<Checkpointer, Error> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Never wait: a busy checkpoint is simply tried again next round.
        conn.busy_timeout(Duration::ZERO)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_size_limit = {};",
            settings.journal_size_limit
        ))?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let (wake, woken) = mpsc::channel();
        let state = Arc::new(WalState {
            commits: AtomicU64::new(0),
            last: Mutex::default(),
            wake,
        });
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("db-checkpoint".into())
            .spawn(move || {
                crate::supervise::essential("the checkpointer thread", || {
                    run(&conn, &wal, &shared, &woken)
                })
            })
            .map_err(|e| Error::Create {
                path: path.to_path_buf(),
                source: e,
            })?;
        Ok(Checkpointer {
            state,
            thread: Some(thread),
        })
    }

    /// What the writer shares with this thread.
    pub fn state(&self) -> Arc<WalState> {
        self.state.clone()
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        let _ = self.state.wake.send(Wake::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(conn: &Connection, wal: &Path, state: &WalState, woken: &mpsc::Receiver<Wake>) {
    let mut previous = Pass::default();
    loop {
        let writing = state.commits() != previous.after_commits;
        match woken.recv_timeout(if writing { BUSY_EVERY } else { EVERY }) {
            Ok(Wake::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Ok(Wake::Hurry) | Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        crate::failpoint::panic_if_triggered("checkpointer");
        let after_commits = state.commits();
        if after_commits == previous.after_commits && previous.caught_up {
            // Idle, and everything was copied: give the file's space back.
            if file_len(wal) > 0 {
                checkpoint(conn, "TRUNCATE");
            }
            continue;
        }
        if let Some((frames, copied)) = checkpoint(conn, "PASSIVE") {
            previous = Pass {
                after_commits,
                frames,
                caught_up: copied >= frames,
            };
            state.record(previous);
        }
    }
}

/// Runs a checkpoint; returns the frames in the WAL and the frames copied, or `None`
/// if it could not run.
fn checkpoint(conn: &Connection, mode: &str) -> Option<(u64, u64)> {
    let sql = format!("PRAGMA wal_checkpoint({mode})");
    match conn.query_row(&sql, [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    }) {
        Ok((0, log, copied)) if log >= 0 => Some((log as u64, copied.max(0) as u64)),
        Ok(_) => None,
        Err(e) => {
            log::debug!("{mode} checkpoint: {e}");
            None
        }
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
