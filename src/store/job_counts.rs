//! `job_counts`: jobs per credential, entity type and status, with the items their
//! finished jobs reported; and `job_event_counts`, `error_counts`: the histories'
//! rows by label. Triggers keep them (schema.sql); this file holds the recounts that
//! `db check` compares them with and `db check --repair` rebuilds them from, for a table an operator's `INSERT OR REPLACE` (which deletes without firing
//! delete triggers) or a `DELETE` with foreign keys off has put out of step.

use rusqlite::Connection;

/// What `job_counts` should hold, counted from the jobs themselves (reads every job:
/// for the operator's check and repair, never a periodic path). Its items follow the
/// triggers' rule: each finished job's numbers summed and clamped to 0..10^15, the
/// row to 10^18.
pub const RECOUNT: &str = "SELECT credential_id, entity_type, status, count(*) AS jobs,
        CAST(min(total(CASE WHEN status = 'finished' AND json_valid(final_counts)
                                 AND json_type(final_counts) = 'object'
                            THEN coalesce((SELECT CAST(min(max(total(value), 0), 1e15) AS INTEGER)
                                           FROM json_each(final_counts)
                                           WHERE type IN ('integer', 'real')), 0)
                            ELSE 0 END), 1e18) AS INTEGER) AS items
 FROM jobs GROUP BY 1, 2, 3";

/// The other trigger-kept counts, `job_event_counts` and `error_counts` (what
/// `metrics` shows of the histories): (table, its label columns, the recount).
pub const HISTORY_COUNTS: [(&str, &str, &str); 2] = [
    (
        "job_event_counts",
        "event",
        "SELECT event, count(*) AS rows FROM job_events GROUP BY 1",
    ),
    (
        "error_counts",
        "category, severity",
        "SELECT category, severity, count(*) AS rows FROM errors GROUP BY 1, 2",
    ),
];

/// Replaces `job_counts` and the history counts with their recounts; returns the
/// rows written.
pub fn rebuild(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM job_counts", [])?;
    let mut rows = conn.execute(
        &format!(
            "INSERT INTO job_counts (credential_id, entity_type, status, jobs, items) {RECOUNT}"
        ),
        [],
    )?;
    for (table, labels, recount) in HISTORY_COUNTS {
        conn.execute(&format!("DELETE FROM {table}"), [])?;
        rows += conn.execute(
            &format!("INSERT INTO {table} ({labels}, rows) {recount}"),
            [],
        )?;
    }
    Ok(rows)
}
