//! The audit trail: every transition is a row in `job_events`; every message that
//! changed nothing (about a job already ended, or a job id we do not know) is a row
//! in `ignored_messages` with a bounded summary, and for a known job also an
//! `ignored` event.

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

/// Longest summary kept in an `ignored_messages` row; a longer one is cut.
pub const MAX_SUMMARY_BYTES: usize = 2048;
/// Longest job id kept in an `ignored_messages` row (ours are 26 bytes).
const MAX_JOB_ID_KEPT: usize = 128;

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One row of `ignored_messages`: `job_status` is `None` for an unknown job.
pub fn ignored_message(
    conn: &Connection,
    message_type: &str,
    job_id: &str,
    job_status: Option<Status>,
    connection_id: i64,
    summary: &Value,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let text = summary.to_string();
    // An excerpt's escaping can grow it, so it is halved until the whole fits.
    let mut summary = text.clone();
    let mut keep = MAX_SUMMARY_BYTES - 64;
    while summary.len() > MAX_SUMMARY_BYTES {
        summary = json!({"truncated": true, "bytes": text.len(), "excerpt": cut(&text, keep)})
            .to_string();
        keep /= 2;
    }
    conn.prepare_cached(
        "INSERT INTO ignored_messages (at, kind, job_id, job_status, connection_id, summary)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        now,
        message_type,
        cut(job_id, MAX_JOB_ID_KEPT),
        job_status,
        connection_id,
        summary
    ])?;
    Ok(())
}

/// Records that a message arrived for a job that can no longer change: an
/// `ignored_messages` row and an `ignored` event. A job cancelled while the crawler
/// had it stops counting as in flight when the crawler reports its end.
pub fn ignored(
    conn: &Connection,
    job: &JobState,
    message_type: &str,
    connection_id: i64,
    summary: &Value,
    now: Timestamp,
) -> rusqlite::Result<()> {
    log::info!(
        "job {}: {message_type} ignored, the job is already {}",
        job.id,
        job.status
    );
    ignored_message(
        conn,
        message_type,
        &job.id,
        Some(job.status),
        connection_id,
        summary,
        now,
    )?;
    if matches!(message_type, "job_completed" | "job_failed") {
        conn.prepare_cached(
            "UPDATE jobs SET cancel_pending = 0 WHERE id = ?1 AND cancel_pending = 1",
        )?
        .execute([&job.id])?;
    }
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
