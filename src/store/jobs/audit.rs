//! The audit trail: every transition, and every message that changed nothing, is a
//! row in `job_events`.

use super::status::{JobState, Status};
use crate::time::Timestamp;
use rusqlite::{params, Connection};
use serde_json::{json, Value};

/// Appends one row to the audit trail.
#[allow(clippy::too_many_arguments)]
pub fn event(
    conn: &Connection,
    job_id: &str,
    event: &str,
    from: Option<Status>,
    to: Option<Status>,
    connection_id: Option<i64>,
    detail: Option<&Value>,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO job_events (job_id, at, event, from_status, to_status, connection_id, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        job_id,
        now,
        event,
        from,
        to,
        connection_id,
        detail.map(Value::to_string)
    ])?;
    Ok(())
}

/// Records that a message arrived for a job that can no longer change.
pub fn ignored(
    conn: &Connection,
    job: &JobState,
    message_type: &str,
    connection_id: i64,
    now: Timestamp,
) -> rusqlite::Result<()> {
    log::info!(
        "job {}: {message_type} ignored, the job is already {}",
        job.id,
        job.status
    );
    let detail =
        json!({"message": message_type, "reason": format!("job is already {}", job.status)});
    event(
        conn,
        &job.id,
        "ignored",
        Some(job.status),
        Some(job.status),
        Some(connection_id),
        Some(&detail),
        now,
    )
}
