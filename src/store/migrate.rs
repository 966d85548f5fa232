//! Schema versions: `schema.sql` is embedded and applied with `PRAGMA user_version`.
//!
//! A file is ours when its `application_id` is [`APPLICATION_ID`], or when it is
//! empty (a new file). Migrations run forward only, each in one transaction; a file
//! from a newer version, or someone else's file, is refused before anything is written.
//!
//! To change the schema: keep `schema.sql` as the full current schema for readers, and
//! append the delta from the previous version as a new entry of [`MIGRATIONS`].

use super::Error;
use rusqlite::Connection;
use std::path::Path;

/// "CRAW" in ASCII: marks the file as a crawler-agent database.
pub const APPLICATION_ID: i32 = 0x4352_4157;

/// `MIGRATIONS[i]` turns a version-`i` database into version `i + 1`.
pub const MIGRATIONS: &[&str] = &[include_str!("../../schema.sql")];

pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

struct Header {
    application_id: i32,
    version: i64,
    objects: i64,
}

fn header(conn: &Connection, path: &Path) -> Result<Header, Error> {
    // One statement, so the three values come from one snapshot even while another
    // process is migrating the file.
    let read = || -> rusqlite::Result<Header> {
        conn.query_row(
            "SELECT (SELECT application_id FROM pragma_application_id),
                    (SELECT user_version FROM pragma_user_version),
                    (SELECT count(*) FROM sqlite_master)",
            [],
            |r| {
                Ok(Header {
                    application_id: r.get(0)?,
                    version: r.get(1)?,
                    objects: r.get(2)?,
                })
            },
        )
    };
    read().map_err(|e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => Error::NotOurs {
            path: path.to_path_buf(),
            why: "not an SQLite database".into(),
        },
        _ => Error::Sqlite(e),
    })
}

fn check(h: &Header, path: &Path) -> Result<(), Error> {
    let blank = h.application_id == 0 && h.version == 0 && h.objects == 0;
    if h.application_id != APPLICATION_ID && !blank {
        return Err(Error::NotOurs {
            path: path.to_path_buf(),
            why: format!("application_id is {:#x}", h.application_id),
        });
    }
    if h.version > CURRENT_VERSION {
        return Err(Error::TooNew {
            path: path.to_path_buf(),
            found: h.version,
            known: CURRENT_VERSION,
        });
    }
    Ok(())
}

/// Brings the database to [`CURRENT_VERSION`], or refuses without writing.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), Error> {
    let h = header(conn, path)?;
    check(&h, path)?;
    if h.version == CURRENT_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Re-read under the write lock: another process may have migrated meanwhile.
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for step in MIGRATIONS.iter().skip(version as usize) {
        tx.execute_batch(step)?;
    }
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {CURRENT_VERSION};"
    ))?;
    tx.commit()?;
    if version < CURRENT_VERSION {
        log::info!(
            "database {} migrated from schema version {version} to {CURRENT_VERSION}",
            path.display()
        );
    }
    Ok(())
}

/// For read-only opens: the file must be ours and exactly current.
pub fn check_readable(conn: &Connection, path: &Path) -> Result<(), Error> {
    let h = header(conn, path)?;
    check(&h, path)?;
    if h.version < CURRENT_VERSION {
        return Err(Error::NotOurs {
            path: path.to_path_buf(),
            why: format!(
                "schema version {} is older than {CURRENT_VERSION}; start the agent once to migrate it",
                h.version
            ),
        });
    }
    Ok(())
}
