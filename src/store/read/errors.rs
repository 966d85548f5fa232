//! Recorded errors as `crawler-agent errors` and `status` list them.

use crate::time::Timestamp;
use rusqlite::{params, Connection};
use serde::Serialize;

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

pub fn since(conn: &Connection, since: Timestamp, limit: u32) -> rusqlite::Result<Vec<ErrorRow>> {
    let mut stmt = conn.prepare(
        "SELECT id, at, category, severity, message, job_id, connection_id, error_type
         FROM errors WHERE at >= ?1 ORDER BY at DESC, id DESC LIMIT ?2",
    )?;
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
