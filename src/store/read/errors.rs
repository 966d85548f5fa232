//! Recorded errors as `crawler-agent errors` and `status` list them, and whole rows
//! as `errors show` and `jobs show` print them.

use crate::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;

/// A row as listed by `crawler-agent errors`.
#[derive(Debug, Serialize)]
pub struct ErrorRow {
    pub id: i64,
    pub at: String,
    pub category: String,
    pub severity: String,
    pub message: String,
    pub job_id: Option<String>,
    pub connection_id: Option<i64>,
    pub error_type: Option<String>,
}

/// The errors at or after `since`, newest first, at most `limit` (0: all).
pub fn since(conn: &Connection, since: Timestamp, limit: u32) -> rusqlite::Result<Vec<ErrorRow>> {
    let mut stmt = conn.prepare(
        "SELECT id, at, category, severity, message, job_id, connection_id, error_type
         FROM errors WHERE at >= ?1 ORDER BY at DESC, id DESC LIMIT ?2",
    )?;
    let limit = if limit == 0 { -1 } else { i64::from(limit) };
    let rows = stmt.query_map(params![since, limit], |r| {
        Ok(ErrorRow {
            id: r.get(0)?,
            at: r.get(1)?,
            category: r.get(2)?,
            severity: r.get(3)?,
            message: r.get(4)?,
            job_id: r.get(5)?,
            connection_id: r.get(6)?,
            error_type: r.get(7)?,
        })
    })?;
    rows.collect()
}

/// How many errors were recorded at or after `since` (one range of `errors_at`).
pub fn count_since(conn: &Connection, since: Timestamp) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM errors WHERE at >= ?1",
        params![since],
        |r| r.get(0),
    )
}

/// Every column of one error row, as `errors show` and `jobs show` print it.
#[derive(Debug, Serialize)]
pub struct ErrorDetail {
    pub id: i64,
    pub at: String,
    pub category: String,
    pub severity: String,
    pub message: String,
    pub job_id: Option<String>,
    pub connection_id: Option<i64>,
    pub error_type: Option<String>,
    pub is_recoverable: Option<bool>,
    pub stack_trace: Option<String>,
    /// JSON as stored (the text itself when it is not JSON).
    pub context: Option<Value>,
    pub partial_counts: Option<Value>,
    pub resume_state: Option<Value>,
}

const DETAIL_COLUMNS: &str = "id, at, category, severity, message, job_id, connection_id,
    error_type, is_recoverable, stack_trace, context, partial_counts, resume_state";

fn detail(r: &rusqlite::Row<'_>) -> rusqlite::Result<ErrorDetail> {
    let json = |i: usize| -> rusqlite::Result<Option<Value>> {
        Ok(r.get::<_, Option<String>>(i)?
            .map(|s| serde_json::from_str(&s).unwrap_or(Value::String(s))))
    };
    Ok(ErrorDetail {
        id: r.get(0)?,
        at: r.get(1)?,
        category: r.get(2)?,
        severity: r.get(3)?,
        message: r.get(4)?,
        job_id: r.get(5)?,
        connection_id: r.get(6)?,
        error_type: r.get(7)?,
        is_recoverable: r.get(8)?,
        stack_trace: r.get(9)?,
        context: json(10)?,
        partial_counts: json(11)?,
        resume_state: json(12)?,
    })
}

/// One error row by id.
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<ErrorDetail>> {
    conn.query_row(
        &format!("SELECT {DETAIL_COLUMNS} FROM errors WHERE id = ?1"),
        [id],
        detail,
    )
    .optional()
}

/// The error rows of one job, oldest first, at most `limit` (on `errors_job`).
pub fn for_job(conn: &Connection, job_id: &str, limit: u32) -> rusqlite::Result<Vec<ErrorDetail>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {DETAIL_COLUMNS} FROM errors WHERE job_id = ?1 ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![job_id, limit], detail)?;
    rows.collect()
}

/// How many error rows one job has (on `errors_job`).
pub fn count_for_job(conn: &Connection, job_id: &str) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM errors WHERE job_id = ?1",
        [job_id],
        |r| r.get(0),
    )
}
