//! The checkpointer thread: keeps the WAL short without ever stopping the writer.
//!
//! Every 100 ms, if the WAL has frames, it runs a PASSIVE checkpoint on its own
//! connection. PASSIVE copies committed frames into the database file while the writer
//! keeps appending, and waits for nobody; once everything is copied, SQLite starts the
//! WAL over from its beginning at the writer's next transaction. Under continuous
//! writes that moment rarely comes by itself, so past `wal_checkpoint_bytes` the writer
//! forces it between two batches (a RESTART with little left to copy), and when the
//! agent is idle the checkpointer TRUNCATEs the file. An operator's long read
//! transaction pins the WAL until it ends; then the next round catches up.

use super::{Error, Settings};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

const EVERY: Duration = Duration::from_millis(100);

pub struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(
        path: &Path,
        settings: &Settings,
        truncate_above: u64,
    ) -> Result<Checkpointer, Error> {
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
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("db-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                    if size == 0 {
                        continue;
                    }
                    let mode = if size >= truncate_above {
                        "TRUNCATE"
                    } else {
                        "PASSIVE"
                    };
                    if let Err(e) =
                        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
                    {
                        log::debug!("{mode} checkpoint: {e}");
                    }
                }
            })
            .map_err(|e| Error::Create {
                path: path.to_path_buf(),
                source: e,
            })?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        let _ = self.stop.send(());
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
