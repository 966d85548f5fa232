//! `crawler-agent db check`: SQLite's own integrity and foreign key checks, and a
//! recount of the trigger-kept `job_counts` against the jobs themselves.

use crate::store::job_counts::{HISTORY_COUNTS, RECOUNT};
use rusqlite::Connection;

/// Every problem `integrity_check` and `foreign_key_check` report, one line each;
/// empty when the database is sound.
pub fn problems(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let integrity: Vec<String> = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let foreign: Vec<String> = conn
        .prepare("PRAGMA foreign_key_check")?
        .query_map([], |r| {
            Ok(format!(
                "{} row {} -> {}",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut problems: Vec<String> = integrity.into_iter().filter(|l| l != "ok").collect();
    problems.extend(foreign.into_iter().map(|f| format!("foreign key: {f}")));
    problems.extend(miscounted(conn)?);
    problems.extend(history_miscounted(conn)?);
    problems.extend(missing_objects(conn)?.into_iter().map(|(kind, name, _)| {
        format!("{MISSING}{kind} {name} (`crawler-agent db check --repair` recreates it)")
    }));
    Ok(problems)
}

/// Where `job_counts` disagrees with a recount of the jobs (`store::job_counts`).
fn miscounted(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    conn.prepare(&format!(
        "WITH actual AS ({RECOUNT}),
              kept AS (SELECT credential_id, entity_type, status, jobs, items FROM job_counts
                       WHERE jobs != 0 OR items != 0)
         SELECT a.credential_id, a.entity_type, a.status, a.jobs, a.items,
                coalesce(k.jobs, 0), coalesce(k.items, 0)
         FROM actual a LEFT JOIN kept k USING (credential_id, entity_type, status)
         WHERE a.jobs IS NOT coalesce(k.jobs, 0) OR a.items IS NOT coalesce(k.items, 0)
         UNION ALL
         SELECT k.credential_id, k.entity_type, k.status, 0, 0, k.jobs, k.items
         FROM kept k LEFT JOIN actual a USING (credential_id, entity_type, status)
         WHERE a.jobs IS NULL"
    ))?
    .query_map([], |r| {
        Ok(format!(
            "job_counts: credential {} {} {}: {} jobs with {} items, counted as {} with {} \
             (`crawler-agent db check --repair` rebuilds the counts)",
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, i64>(6)?
        ))
    })?
    .collect()
}

/// Where `job_event_counts` or `error_counts` disagree with a recount.
fn history_miscounted(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut out = Vec::new();
    for (table, labels, recount) in HISTORY_COUNTS {
        let differs: i64 = conn.query_row(
            &format!(
                "SELECT (SELECT count(*) FROM (
                           SELECT {labels}, rows FROM ({recount})
                           EXCEPT SELECT {labels}, rows FROM {table} WHERE rows != 0))
                      + (SELECT count(*) FROM (
                           SELECT {labels}, rows FROM {table} WHERE rows != 0
                           EXCEPT SELECT {labels}, rows FROM ({recount})))"
            ),
            [],
            |r| r.get(0),
        )?;
        if differs > 0 {
            out.push(format!(
                "job_counts: {table}: {differs} label(s) counted wrong \
                 (`crawler-agent db check --repair` rebuilds the counts)"
            ));
        }
    }
    Ok(out)
}

/// Whether `problem` (a line of [`problems`]) is one `db check --repair` fixes.
pub fn is_miscount(problem: &str) -> bool {
    problem.starts_with("job_counts: ")
}

const MISSING: &str = "missing from the schema: ";

/// Whether `problem` is an index, trigger or view dropped from the schema.
pub fn is_missing_object(problem: &str) -> bool {
    problem.starts_with(MISSING)
}

/// The indexes, triggers and views of `schema.sql` this file lacks (an operator
/// dropped one: the claim and the sweeps name their indexes, and the counts need
/// their triggers), with the SQL that creates each.
pub fn missing_objects(conn: &Connection) -> rusqlite::Result<Vec<(String, String, String)>> {
    let reference = Connection::open_in_memory()?;
    reference.execute_batch(crate::store::migrate::SCHEMA)?;
    let wanted: Vec<(String, String, String)> = reference
        .prepare(
            "SELECT type, name, sql FROM sqlite_master
             WHERE type IN ('index', 'trigger', 'view') AND sql IS NOT NULL ORDER BY rowid",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut exists = conn.prepare("SELECT 1 FROM sqlite_master WHERE type = ?1 AND name = ?2")?;
    let mut missing = Vec::new();
    for (kind, name, sql) in wanted {
        if !exists.exists([&kind, &name])? {
            missing.push((kind, name, sql));
        }
    }
    Ok(missing)
}
