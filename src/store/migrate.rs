//! Schema versions: `schema.sql` is embedded and applied with `PRAGMA user_version`.
//!
//! A file is ours when its `application_id` is [`APPLICATION_ID`], or when it is
//! empty (a new file). Migrations run forward only, each in one transaction; a file
//! from a newer version, or someone else's file, is refused before anything is written.
//!
//! Two ways to the current version: a new file gets `schema.sql` (the full current
//! schema, readable on its own); an older file gets the steps of [`MIGRATIONS`] from
//! its version on. A unit test checks that both ways give the same tables, columns,
//! indexes and views, so the two cannot drift.
//!
//! To change the schema: edit `schema.sql`, and add the delta from the previous
//! version as `src/store/migrations/NNNN_what.sql` at the end of [`MIGRATIONS`]. The
//! files there are history: never edit one that has been released.

use super::Error;
use rusqlite::Connection;
use std::path::Path;

/// "CRAW" in ASCII: marks the file as a crawler-agent database.
pub const APPLICATION_ID: i32 = 0x4352_4157;

/// The full current schema, applied to a new file.
pub const SCHEMA: &str = include_str!("../../schema.sql");

/// `MIGRATIONS[i]` turns a version-`i` database into version `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_internal_errors.sql"),
    include_str!("migrations/0003_events.sql"),
    include_str!("migrations/0004_fidelity.sql"),
    include_str!("migrations/0005_flat_indexes.sql"),
    include_str!("migrations/0006_retention_indexes.sql"),
    include_str!("migrations/0007_alerts.sql"),
    include_str!("migrations/0008_job_counts.sql"),
    include_str!("migrations/0009_errors_job.sql"),
    include_str!("migrations/0010_retained_counts.sql"),
];

pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Recreates the indexes, triggers and views of [`SCHEMA`] that an operator dropped
/// (the claim and the sweeps name their indexes; the counts need their triggers), and
/// rebuilds the counts when one of their triggers was missing. Each is logged at WARN.
/// The agent runs this at start, `db check --repair` on demand, each in a transaction
/// of its own. Returns what it did, one line each ("recreated index X", "rebuilt
/// job_counts ...").
pub fn restore_dropped(tx: &Connection) -> rusqlite::Result<Vec<String>> {
    let missing = super::read::check::missing_objects(tx)?;
    let mut restored = Vec::new();
    for (kind, name, sql) in &missing {
        log::warn!("the database lacked {kind} {name}: recreated");
        tx.execute_batch(sql)?;
        restored.push(format!("recreated {kind} {name}"));
    }
    if missing
        .iter()
        .any(|(kind, name, _)| kind == "trigger" && name.starts_with("job_counts"))
    {
        let rows = super::job_counts::rebuild(tx)?;
        log::warn!("job counts rebuilt from the jobs ({rows} rows): a count trigger was missing");
        restored.push(format!("rebuilt job_counts from the jobs ({rows} rows)"));
    }
    Ok(restored)
}

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
    let objects: i64 = tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    if version == 0 && objects == 0 {
        tx.execute_batch(SCHEMA)?;
    } else {
        for step in MIGRATIONS.iter().skip(version as usize) {
            tx.execute_batch(step)?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything that makes a schema what it is, in a comparable form: each table's
    /// columns and foreign keys, each index's columns, and the text of partial-index
    /// conditions, views and triggers with white space folded.
    fn shape(conn: &Connection) -> Vec<String> {
        let fold = |sql: Option<String>| -> String {
            sql.unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        };
        let objects: Vec<(String, String, Option<String>)> = conn
            .prepare("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut out = Vec::new();
        for (kind, name, sql) in objects {
            match kind.as_str() {
                "table" => {
                    let pragma = |q: &str| -> Vec<String> {
                        let mut stmt = conn
                            .prepare(&format!("SELECT * FROM {q}('{name}')"))
                            .unwrap();
                        let n = stmt.column_count();
                        stmt.query_map([], |r| {
                            (0..n)
                                .map(|i| {
                                    r.get::<_, rusqlite::types::Value>(i)
                                        .map(|v| format!("{v:?}"))
                                })
                                .collect::<Result<Vec<_>, _>>()
                                .map(|v| v.join("|"))
                        })
                        .unwrap()
                        .collect::<Result<_, _>>()
                        .unwrap()
                    };
                    out.push(format!(
                        "table {name}: {:?} fk {:?}",
                        pragma("pragma_table_xinfo"),
                        pragma("pragma_foreign_key_list")
                    ));
                }
                _ => out.push(format!("{kind} {name}: {}", fold(sql))),
            }
        }
        out
    }

    #[test]
    fn a_new_file_and_a_migrated_one_have_the_same_schema() {
        let fresh = Connection::open_in_memory().unwrap();
        fresh.execute_batch(SCHEMA).unwrap();
        let migrated = Connection::open_in_memory().unwrap();
        for step in MIGRATIONS {
            migrated.execute_batch(step).unwrap();
        }
        assert_eq!(shape(&fresh), shape(&migrated));
    }

    #[test]
    fn every_earlier_version_migrates_to_the_current_one() {
        for from in 1..=MIGRATIONS.len() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("old.db");
            let mut conn = Connection::open(&path).unwrap();
            for step in &MIGRATIONS[..from] {
                conn.execute_batch(step).unwrap();
            }
            conn.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {from};"
            ))
            .unwrap();
            migrate(&mut conn, &path).unwrap();
            let version: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(version, CURRENT_VERSION, "from version {from}");
        }
    }

    /// Version 8 counts the jobs an older file already holds, and its triggers keep
    /// the counts right through changes, a hostile finalCounts and a cascade.
    #[test]
    fn job_counts_start_from_the_jobs_already_there_and_follow_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v7.db");
        let mut conn = Connection::open(&path).unwrap();
        for step in &MIGRATIONS[..7] {
            conn.execute_batch(step).unwrap();
        }
        conn.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 7;
             PRAGMA foreign_keys = ON;
             INSERT INTO credentials (id, name, gitlab_url, access_token, token_source,
                                      created_at, updated_at)
             VALUES (1, 'a', 'https://g', 't', 'env', 'x', 'x'),
                    (2, 'b', 'https://g', 't', 'env', 'x', 'x');
             INSERT INTO jobs (id, credential_id, entity_type, entity_id, status,
                               max_attempts, final_counts, created_at, updated_at)
             VALUES ('j1', 1, 'project', '1', 'queued', 3, NULL, 'x', 'x'),
                    ('j2', 1, 'project', '2', 'finished', 3, '{{\"issues\": 4, \"mrs\": 3}}', 'x', 'x'),
                    ('j3', 2, 'group', '3', 'failed', 3, NULL, 'x', 'x');
             INSERT INTO job_events (job_id, at, event) VALUES ('j1', 'x', 'created'),
                                                               ('j2', 'x', 'completed');
             INSERT INTO errors (at, category, severity, message)
             VALUES ('x', 'protocol', 'low', 'm');"
        ))
        .unwrap();
        migrate(&mut conn, &path).unwrap();
        let rollup = |conn: &Connection| -> Vec<(String, i64, i64, i64, i64)> {
            conn.prepare(
                "SELECT name, queued, finished, failed, items_processed
                 FROM credential_rollup ORDER BY name",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        assert_eq!(
            rollup(&conn),
            [("a".into(), 1, 1, 0, 7), ("b".into(), 0, 0, 1, 0)]
        );
        conn.execute_batch(
            r#"UPDATE jobs SET status = 'finished', final_counts = '{"x": 1e300, "y": -5}'
               WHERE id = 'j1';
               UPDATE jobs SET status = 'queued', final_counts = NULL WHERE id = 'j2';
               DELETE FROM credentials WHERE id = 2;"#,
        )
        .unwrap();
        assert_eq!(
            rollup(&conn),
            [("a".into(), 1, 1, 0, 1_000_000_000_000_000)]
        );
        assert!(crate::store::read::check::problems(&conn)
            .unwrap()
            .is_empty());
        let left: i64 = conn
            .query_row(
                "SELECT count(*) FROM job_counts WHERE credential_id = 2",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0, "a removed credential's counts go with it");
        // Ten thousand jobs at the per-job cap: the row stops at 10^18 and the rollup
        // neither overflows nor fails.
        conn.execute_batch(
            r#"WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 10000)
               INSERT INTO jobs (id, credential_id, entity_type, entity_id, status,
                                 max_attempts, final_counts, created_at, updated_at)
               SELECT 'm' || i, 1, 'merge_request', i, 'finished', 3, '{"n": 1e15}', 'x', 'x'
               FROM k;"#,
        )
        .unwrap();
        assert_eq!(rollup(&conn)[0].4, 1_000_000_000_000_000_000);
        // An operator's REPLACE deletes without the delete trigger: check says so, and
        // the repair's recount puts it right.
        conn.execute_batch(
            "INSERT OR REPLACE INTO jobs (id, credential_id, entity_type, entity_id, status,
                                          max_attempts, created_at, updated_at)
             VALUES ('j9', 1, 'project', '1', 'cancelled', 3, 'x', 'x')",
        )
        .unwrap();
        let problems = crate::store::read::check::problems(&conn).unwrap();
        assert!(
            !problems.is_empty()
                && problems
                    .iter()
                    .all(|p| crate::store::read::check::is_miscount(p)),
            "{problems:?}"
        );
        crate::store::job_counts::rebuild(&conn).unwrap();
        assert!(crate::store::read::check::problems(&conn)
            .unwrap()
            .is_empty());
    }
}
