//! One writer transaction, the same for a batch's first try and for its retries:
//! BEGIN IMMEDIATE, each operation in its own savepoint (or not, as its [`Mode`] says),
//! COMMIT. Also which failures abort the whole batch, and a larger page cache for an
//! operation that runs alone.

use super::operation::{Mode, Operation};
use crate::store::errors::{self, Category, ErrorRecord, Severity};
use crate::store::Error;
use crate::time::Timestamp;
use rusqlite::{Connection, ErrorCode};

/// One transaction: BEGIN IMMEDIATE, apply `batch` in order and then whatever `more`
/// hands out, until it says `None` (each is pushed onto `batch`), then COMMIT; an
/// operation that ran alone ([`Mode::Alone`]) and failed is rolled back instead. Gives
/// one outcome per operation of `batch`. An `Err` is a failure of the whole
/// transaction: it is rolled back and `batch` can be run again.
pub(super) fn commit(
    conn: &Connection,
    batch: &mut Vec<Box<dyn Operation>>,
    mut more: impl FnMut() -> Option<Box<dyn Operation>>,
) -> rusqlite::Result<Vec<Result<(), Error>>> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let mut outcomes = Vec::with_capacity(batch.len());
    loop {
        if outcomes.len() == batch.len() {
            match more() {
                Some(op) => batch.push(op),
                None => break,
            }
        }
        match apply_one(conn, batch[outcomes.len()].as_mut()) {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => {
                rollback(conn);
                return Err(e);
            }
        }
    }
    let failed_alone = batch.len() == 1 && batch[0].mode() == Mode::Alone && outcomes[0].is_err();
    if failed_alone {
        rollback(conn);
        // On record in a transaction of its own: the failed one is gone.
        if let Err(e) = &outcomes[0] {
            record_dropped(conn, batch[0].as_ref(), e);
        }
        return Ok(outcomes);
    }
    if let Err(e) = conn
        .prepare_cached("COMMIT")
        .and_then(|mut s| s.execute([]))
    {
        rollback(conn);
        return Err(e);
    }
    Ok(outcomes)
}

/// Errors after which the same batch can succeed later. Not among them: no writable
/// temporary directory (`SQLITE_IOERR_GETTEMPPATH`, when a large operation needs
/// SQLite's scratch file), which stays so until an operator acts; the operation fails
/// alone instead of holding every write behind it.
pub(super) fn is_transient(e: &rusqlite::Error) -> bool {
    if let rusqlite::Error::SqliteFailure(f, _) = e {
        if f.extended_code == rusqlite::ffi::SQLITE_IOERR_GETTEMPPATH {
            return false;
        }
    }
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

/// Applies one operation (in its own savepoint unless its mode says otherwise). The
/// outer error is a transient failure that aborts the whole batch; the inner one fails
/// this operation alone. A panic in the operation fails it alone too (its savepoint is
/// rolled back). Either is recorded in the same transaction ([`record_dropped`]),
/// except for an operation that runs alone, whose transaction is rolled back: that
/// record is written after the rollback (`commit`).
fn apply_one(conn: &Connection, op: &mut dyn Operation) -> rusqlite::Result<Result<(), Error>> {
    let savepoint = op.mode() == Mode::Savepoint;
    if savepoint {
        conn.prepare_cached("SAVEPOINT op")?.execute([])?;
    }
    let failed = match guarded(conn, op) {
        Guarded::Done(Ok(())) => None,
        Guarded::Done(Err(e)) if is_transient(&e) => return Err(e),
        Guarded::Done(Err(e)) => Some(Error::Sqlite(e)),
        Guarded::Panicked(why) => {
            log::error!("{}", panic_message(op, &why));
            Some(Error::Panicked(why))
        }
    };
    if savepoint {
        if failed.is_some() {
            conn.prepare_cached("ROLLBACK TO op")?.execute([])?;
        }
        conn.prepare_cached("RELEASE op")?.execute([])?;
    }
    Ok(match failed {
        None => Ok(()),
        Some(e) => {
            if op.mode() != Mode::Alone {
                record_dropped(conn, op, &e);
            }
            Err(e)
        }
    })
}

enum Guarded {
    Done(rusqlite::Result<()>),
    Panicked(String),
}

/// `op.apply`, with a panic caught instead of unwinding through the writer thread.
fn guarded(conn: &Connection, op: &mut dyn Operation) -> Guarded {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op.apply(conn))) {
        Ok(result) => Guarded::Done(result),
        Err(payload) => Guarded::Panicked(crate::supervise::panic_message(payload.as_ref())),
    }
}

/// The `errors` row for an operation that was dropped: always for a panic (critical,
/// internal), and for a failure nobody hears of otherwise (a fire-and-forget operation:
/// the crawler's reports), so that what was received and then lost is on record.
fn record_dropped(conn: &Connection, op: &dyn Operation, outcome: &Error) {
    let record = match outcome {
        Error::Panicked(why) => ErrorRecord::new(
            Category::Internal,
            Severity::Critical,
            panic_message(op, why),
        ),
        e if !op.failure_heard() => ErrorRecord::new(
            Category::Storage,
            Severity::High,
            format!("storing {} failed: {e}; {}", op.name(), dropped(op)),
        ),
        _ => return,
    };
    if let Err(e) = errors::insert(conn, &record, Timestamp::now()) {
        log::error!("recording that {} was dropped failed: {e}", op.name());
    }
}

fn panic_message(op: &dyn Operation, why: &str) -> String {
    format!(
        "internal error: storing {} panicked ({why}); {}, the agent carries on",
        op.name(),
        dropped(op)
    )
}

/// What became of a failed operation's writes.
fn dropped(op: &dyn Operation) -> &'static str {
    match op.mode() {
        // No savepoint: the statements before the failure stand.
        Mode::Piecewise => "the rest of that operation was dropped",
        Mode::Savepoint | Mode::Alone => "that operation was dropped",
    }
}

fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

/// A larger page cache while it lives (for operations that run alone). 16 MiB: a
/// 100,000-entry discovery took the same time with 16, 32 and 64 MiB (its rows are
/// written in key order, so a page that leaves the cache is done with), and its peak
/// RSS was 84, 101 and 133 MiB.
pub(super) struct LargeCache<'a> {
    conn: &'a Connection,
}

impl<'a> LargeCache<'a> {
    const KIB: u32 = 16 * 1024;

    pub(super) fn new(conn: &'a Connection) -> Self {
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

#[cfg(test)]
mod tests {
    use super::is_transient;
    use rusqlite::ffi;

    #[test]
    fn a_busy_or_failing_disk_is_retried_but_no_temporary_directory_is_not() {
        let error = |code| rusqlite::Error::SqliteFailure(ffi::Error::new(code), None);
        assert!(is_transient(&error(ffi::SQLITE_BUSY)));
        assert!(is_transient(&error(ffi::SQLITE_IOERR_WRITE)));
        assert!(is_transient(&error(ffi::SQLITE_FULL)));
        assert!(!is_transient(&error(ffi::SQLITE_IOERR_GETTEMPPATH)));
        assert!(!is_transient(&error(ffi::SQLITE_CONSTRAINT_UNIQUE)));
    }
}
