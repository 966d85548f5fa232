//! The SQLite store: one file, one writer thread, a small pool of readers.
//!
//! [`Store::open`] creates the file (mode 0600) and its directory, checks that the file
//! is ours and migrates it, then starts the [`writer::Writer`] thread that owns the
//! only write connection of the running agent. Reads go through an r2d2 pool of
//! read-only connections. The submodules hold the SQL for one table or concept each
//! as plain functions over a `rusqlite::Connection`, so the server (through the
//! writer) and the CLI (directly) share them. [`lock`] keeps a second agent off the
//! same file; [`backup`] copies it while it is in use.

pub mod alerts;
pub mod backup;
pub mod checkpoint;
pub mod connections;
pub mod credentials;
pub mod deliveries;
pub mod discovery;
pub mod errors;
pub mod events;
pub mod file_identity;
pub mod job_counts;
pub mod jobs;
pub mod lock;
pub mod migrate;
pub mod progress;
pub mod read;
pub mod retention;
pub mod runtime;
pub mod token_refreshes;
pub mod writer;

use crate::config::{Durability, StorageConfig};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use file_identity::FileIdentity;
pub use writer::{Lane, Mode, Writer};

pub type ReadPool = r2d2::Pool<SqliteConnectionManager>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{path} is not a crawler-agent database ({why}); nothing was changed")]
    NotOurs { path: PathBuf, why: String },
    #[error("{path} was written by a newer crawler-agent (schema version {found}, this binary knows up to {known}); nothing was changed")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database read pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("the transaction holding this operation failed: {0}")]
    Batch(String),
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the operation panicked: {0}")]
    Panicked(String),
}

/// How connections are set up; the same for the writer, the readers and the CLI.
#[derive(Debug, Clone)]
pub struct Settings {
    pub durability: Durability,
    pub busy_timeout: Duration,
    pub journal_size_limit: u64,
}

impl From<&StorageConfig> for Settings {
    fn from(c: &StorageConfig) -> Self {
        Settings {
            durability: c.durability,
            busy_timeout: c.busy_timeout.0,
            journal_size_limit: c.journal_size_limit_bytes,
        }
    }
}

/// The running agent's handle on its database.
pub struct Store {
    pub path: PathBuf,
    pub writer: Writer,
    checkpointer: std::sync::Mutex<checkpoint::Checkpointer>,
}

impl Store {
    pub fn open(path: &Path, config: &StorageConfig) -> Result<Store, Error> {
        Store::open_with(path, config, None)
    }

    /// [`Store::open`] with a heartbeat: the writer thread calls `ping` at least every
    /// given interval while it is healthy (the systemd watchdog).
    pub fn open_with(
        path: &Path,
        config: &StorageConfig,
        ping: Option<writer::Ping>,
    ) -> Result<Store, Error> {
        let settings = Settings::from(config);
        let conn = open_read_write(path, &settings)?;
        let tx = conn.unchecked_transaction()?;
        migrate::restore_dropped(&tx)?;
        tx.commit()?;
        // First, so a failure leaves no writer thread behind.
        let checkpointer = checkpoint::Checkpointer::start(path, &settings)?;
        let writer = Writer::start(
            conn,
            path.to_path_buf(),
            writer::Limits {
                queue: config.writer_queue,
                batch: config.batch_max,
                checkpoint_bytes: config.wal_checkpoint_bytes,
            },
            ping,
            checkpointer.state(),
        );
        Ok(Store {
            path: path.to_path_buf(),
            writer,
            checkpointer: std::sync::Mutex::new(checkpointer),
        })
    }

    /// Commits everything queued, truncates the WAL and stops both threads.
    pub fn close(&self) {
        if let Ok(mut c) = self.checkpointer.lock() {
            c.stop();
        }
        self.writer.close();
    }
}

/// Opens (creating if needed) and migrates the database for writing.
pub fn open_read_write(path: &Path, settings: &Settings) -> Result<Connection, Error> {
    create_private_file(path)?;
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(settings.busy_timeout)?;
    // Check ownership and version before any pragma that would write to the file.
    migrate::migrate(&mut conn, path)?;
    apply_pragmas(&conn, settings)?;
    // Before any statement is prepared: creating it later would make SQLite
    // re-prepare every statement prepared before.
    discovery::create_stage(&conn)?;
    Ok(conn)
}

/// Runs `f` in one IMMEDIATE transaction on a migrated read-write connection
/// (creating the database if missing) and commits unless `f` fails: how the CLI's
/// commands that change something write. IMMEDIATE takes the write lock up front, so a
/// busy agent makes the caller wait (busy_timeout) instead of failing on a stale
/// snapshot.
pub fn transact<T, E>(
    path: &Path,
    settings: &Settings,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<Error> + From<rusqlite::Error>,
{
    let mut conn = open_read_write(path, settings)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let value = f(&tx)?;
    tx.commit()?;
    Ok(value)
}

/// Opens an existing database read-only (for `status`, `jobs list`, ...).
pub fn open_read_only(path: &Path, settings: &Settings) -> Result<Connection, Error> {
    if !path.exists() {
        return Err(Error::NotOurs {
            path: path.to_path_buf(),
            why: "the file does not exist; run `crawler-agent serve` or any write command first"
                .into(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(settings.busy_timeout)?;
    migrate::check_readable(&conn, path)?;
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA query_only = ON;")?;
    Ok(conn)
}

/// A pool of read-only connections to an existing, current database.
pub fn read_pool(path: &Path, settings: &Settings, size: u32) -> Result<ReadPool, Error> {
    // Fail fast with a clear message instead of r2d2's connection timeout.
    drop(open_read_only(path, settings)?);
    let busy = settings.busy_timeout;
    let manager = SqliteConnectionManager::file(path)
        .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_init(move |c| {
            c.busy_timeout(busy)?;
            c.execute_batch("PRAGMA foreign_keys = ON; PRAGMA query_only = ON;")
        });
    Ok(r2d2::Pool::builder()
        .max_size(size.clamp(1, 4))
        .min_idle(Some(0))
        .connection_timeout(busy.max(Duration::from_secs(1)))
        .build(manager)?)
}

fn apply_pragmas(conn: &Connection, settings: &Settings) -> Result<(), Error> {
    let synchronous = match settings.durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous};
         PRAGMA foreign_keys = ON;
         PRAGMA journal_size_limit = {};",
        settings.journal_size_limit
    ))?;
    Ok(())
}

fn create_private_file(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    let create_error = |source| Error::Create {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        crate::paths::ensure_dir(dir).map_err(create_error)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(create_error(e)),
        })
}
