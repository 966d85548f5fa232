//! Jobs as operators see them: `jobs list`, `jobs show` (the job and its history),
//! the count per status (`status`, `metrics`) and the paused entity types.

use crate::store::jobs::Status;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;

/// A job as shown to operators.
#[derive(Debug, Serialize)]
pub struct JobRow {
    pub id: String,
    pub credential: String,
    pub entity_type: String,
    pub entity_id: String,
    pub namespace_path: Option<String>,
    pub priority: i64,
    pub status: Status,
    pub attempts: u32,
    pub max_attempts: u32,
    pub not_before: Option<String>,
    pub connection_id: Option<i64>,
    pub parent_job_id: Option<String>,
    pub last_error: Option<String>,
    pub resume_state: Option<Value>,
    pub final_counts: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
    pub dispatched_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The operator asked for the next dispatch to carry the resume state.
    pub resume_next: bool,
    /// Cancelled while the crawler had it; still counts as in flight.
    pub cancel_pending: bool,
}

const JOB_COLUMNS: &str = "j.id, c.name, j.entity_type, j.entity_id, j.namespace_path, j.priority,
    j.status, j.attempts, j.max_attempts, j.not_before, j.connection_id, j.parent_job_id,
    j.last_error,
    CASE WHEN j.status IN ('assigned', 'running')
         THEN coalesce((SELECT p.resume_state FROM progress_snapshots p WHERE p.job_id = j.id
                        AND p.resume_state IS NOT NULL ORDER BY p.id DESC LIMIT 1), j.resume_state)
         ELSE j.resume_state END,
    j.final_counts, j.created_at, j.updated_at, j.dispatched_at,
    j.started_at, j.finished_at, j.resume_next, j.cancel_pending";

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    let json = |i: usize| -> rusqlite::Result<Option<Value>> {
        Ok(r.get::<_, Option<String>>(i)?
            .and_then(|s| serde_json::from_str(&s).ok()))
    };
    Ok(JobRow {
        id: r.get(0)?,
        credential: r.get(1)?,
        entity_type: r.get(2)?,
        entity_id: r.get(3)?,
        namespace_path: r.get(4)?,
        priority: r.get(5)?,
        status: r.get(6)?,
        attempts: r.get(7)?,
        max_attempts: r.get(8)?,
        not_before: r.get(9)?,
        connection_id: r.get(10)?,
        parent_job_id: r.get(11)?,
        last_error: r.get(12)?,
        resume_state: json(13)?,
        final_counts: json(14)?,
        created_at: r.get(15)?,
        updated_at: r.get(16)?,
        dispatched_at: r.get(17)?,
        started_at: r.get(18)?,
        finished_at: r.get(19)?,
        resume_next: r.get(20)?,
        cancel_pending: r.get(21)?,
    })
}

/// One page of jobs, newest first (the order they were added): at most `limit` (0: all), of
/// `status` if given, added before job `before` if given (the last id of the previous
/// page; an unknown id gives an empty page). Each page is one index range, on the
/// table itself or on `jobs_status`, however deep the page.
pub fn list(
    conn: &Connection,
    status: Option<Status>,
    limit: u32,
    before: Option<&str>,
) -> rusqlite::Result<Vec<JobRow>> {
    let cursor: Option<i64> = match before {
        None => Some(i64::MAX),
        Some(id) => conn
            .query_row("SELECT rowid FROM jobs WHERE id = ?1", [id], |r| r.get(0))
            .optional()?,
    };
    let Some(cursor) = cursor else {
        return Ok(Vec::new());
    };
    let filter = if status.is_some() {
        "j.status = ?1 AND"
    } else {
        "?1 IS NULL AND"
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs j JOIN credentials c ON c.id = j.credential_id
         WHERE {filter} j.rowid < ?3
         ORDER BY j.rowid DESC LIMIT ?2"
    ))?;
    let limit = if limit == 0 { -1 } else { i64::from(limit) };
    let rows = stmt.query_map(params![status, limit, cursor], job_row)?;
    rows.collect()
}

/// Where [`remaining`] stops counting: past it, a list says "over 100000 more".
pub const REMAINING_CAP: i64 = 100_000;

/// How many jobs (of `status`, if given) were added before job `id`: what the pages
/// after the one that ended with `id` hold, counted up to [`REMAINING_CAP`] + 1 (one
/// range of the table or of `jobs_status`, so a page costs the same at a million
/// jobs).
pub fn remaining(conn: &Connection, status: Option<Status>, id: &str) -> rusqlite::Result<i64> {
    match status {
        Some(status) => conn.query_row(
            "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE status = ?1
               AND rowid < (SELECT rowid FROM jobs WHERE id = ?2) LIMIT 100001)",
            params![status, id],
            |r| r.get(0),
        ),
        None => conn.query_row(
            "SELECT count(*) FROM (SELECT 1 FROM jobs
               WHERE rowid < (SELECT rowid FROM jobs WHERE id = ?1) LIMIT 100001)",
            [id],
            |r| r.get(0),
        ),
    }
}

/// A job's progress history in brief: how many reports, the first and the latest.
#[derive(Debug, Serialize)]
pub struct ProgressSummary {
    pub reports: i64,
    pub first_at: Option<String>,
    pub latest_at: Option<String>,
    pub stage: Option<String>,
    pub processed: Option<i64>,
    pub total: Option<i64>,
    pub message: Option<String>,
    pub item_counts: Option<Value>,
    pub current_page: Option<i64>,
    pub processing_rate: Option<f64>,
}

/// The summary of job `id`'s progress snapshots (on `progress_snapshots_job`).
pub fn progress(conn: &Connection, id: &str) -> rusqlite::Result<ProgressSummary> {
    conn.query_row(
        "SELECT (SELECT count(*) FROM progress_snapshots WHERE job_id = ?1),
                (SELECT received_at FROM progress_snapshots WHERE job_id = ?1 ORDER BY id LIMIT 1),
                l.received_at, l.stage, l.processed, l.total, l.message, l.item_counts,
                l.current_page, l.processing_rate
         FROM (SELECT 1) LEFT JOIN progress_snapshots l
           ON l.id = (SELECT max(id) FROM progress_snapshots WHERE job_id = ?1)",
        [id],
        |r| {
            Ok(ProgressSummary {
                reports: r.get(0)?,
                first_at: r.get(1)?,
                latest_at: r.get(2)?,
                stage: r.get(3)?,
                processed: r.get(4)?,
                total: r.get(5)?,
                message: r.get(6)?,
                item_counts: r
                    .get::<_, Option<String>>(7)?
                    .and_then(|s| serde_json::from_str(&s).ok()),
                current_page: r.get(8)?,
                processing_rate: r.get(9)?,
            })
        },
    )
}

pub fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<JobRow>> {
    conn.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs j JOIN credentials c ON c.id = j.credential_id WHERE j.id = ?1"),
        [id],
        job_row,
    )
    .optional()
}

#[derive(Debug, Serialize)]
pub struct EventRow {
    pub at: String,
    pub event: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub connection_id: Option<i64>,
    pub detail: Option<Value>,
}

/// Job `id`'s transitions, oldest first, at most `limit` (on `job_events_job`).
pub fn events(conn: &Connection, id: &str, limit: u32) -> rusqlite::Result<Vec<EventRow>> {
    let mut stmt = conn.prepare(
        "SELECT at, event, from_status, to_status, connection_id, detail
         FROM job_events WHERE job_id = ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![id, limit], |r| {
        Ok(EventRow {
            at: r.get(0)?,
            event: r.get(1)?,
            from_status: r.get(2)?,
            to_status: r.get(3)?,
            connection_id: r.get(4)?,
            detail: r
                .get::<_, Option<String>>(5)?
                .and_then(|s| serde_json::from_str(&s).ok()),
        })
    })?;
    rows.collect()
}

/// How many transitions job `id` has (on `job_events_job`).
pub fn count_events(conn: &Connection, id: &str) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM job_events WHERE job_id = ?1",
        [id],
        |r| r.get(0),
    )
}

/// Job counts per status, every status present (zero when none). One count per
/// status on `jobs_status`: it reads only that status's index entries, never the rows
/// (the cost is one index entry per job of that status; see docs/performance.md).
pub fn counts(conn: &Connection) -> rusqlite::Result<Vec<(Status, i64)>> {
    // `job_counts` is kept by triggers: a few rows at any queue size.
    let mut stmt =
        conn.prepare("SELECT coalesce(sum(jobs), 0) FROM job_counts WHERE status = ?1")?;
    Status::ALL
        .into_iter()
        .map(|s| Ok((s, stmt.query_row([s], |r| r.get(0))?)))
        .collect()
}

#[derive(Debug, Serialize)]
pub struct Pause {
    pub entity_type: String,
    pub paused_at: String,
    pub job_id: Option<String>,
    pub reason: String,
}

pub fn pauses(conn: &Connection) -> rusqlite::Result<Vec<Pause>> {
    let mut stmt = conn.prepare(
        "SELECT entity_type, paused_at, job_id, reason FROM paused_entity_types ORDER BY entity_type",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Pause {
            entity_type: r.get(0)?,
            paused_at: r.get(1)?,
            job_id: r.get(2)?,
            reason: r.get(3)?,
        })
    })?;
    rows.collect()
}
