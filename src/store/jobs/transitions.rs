//! The transitions a crawler message causes: started, completed, failed (with the
//! retry policy), and the capability guard that pauses an entity type.

use super::audit::{event, ignored};
use super::status::{JobState, Status};
use crate::policy::{Policy, UNKNOWN_TASK_TYPE};
use crate::protocol::EntityType;
use crate::time::Timestamp;
use rusqlite::{params, Connection};
use serde_json::{json, Value};

/// `job_started`: assigned (or queued after a reset) → running.
pub fn started(
    conn: &Connection,
    job: &JobState,
    connection_id: i64,
    echo: Value,
    now: Timestamp,
) -> rusqlite::Result<()> {
    match job.status {
        Status::Assigned | Status::Queued => {
            conn.prepare_cached(
                "UPDATE jobs SET status = 'running', started_at = ?2, connection_id = ?3,
                                 updated_at = ?2, not_before = NULL WHERE id = ?1",
            )?
            .execute(params![job.id, now, connection_id])?;
            event(
                conn,
                &job.id,
                "started",
                Some(job.status),
                Some(Status::Running),
                Some(connection_id),
                Some(&echo),
                now,
            )
        }
        _ => ignored(conn, job, "job_started", connection_id, &echo, now),
    }
}

/// `job_completed`: any non-terminal state → finished.
pub fn completed(
    conn: &Connection,
    job: &JobState,
    connection_id: i64,
    final_counts: Option<&str>,
    detail: Value,
    now: Timestamp,
) -> rusqlite::Result<()> {
    if job.status.is_terminal() {
        return ignored(conn, job, "job_completed", connection_id, &detail, now);
    }
    conn.prepare_cached(
        "UPDATE jobs SET status = 'finished', finished_at = ?2, updated_at = ?2,
                         final_counts = ?3, resume_state = NULL, last_error = NULL
         WHERE id = ?1",
    )?
    .execute(params![job.id, now, final_counts])?;
    event(
        conn,
        &job.id,
        "completed",
        Some(job.status),
        Some(Status::Finished),
        Some(connection_id),
        Some(&detail),
        now,
    )?;
    crate::store::events::queue_drained_if_empty(conn, now)
}

/// Why a job stopped without finishing.
#[derive(Debug)]
pub struct Failure<'a> {
    pub error: &'a str,
    pub recoverable: bool,
    /// JSON text.
    pub resume_state: Option<&'a str>,
    /// `true` when no failure message arrived: the job was lost (orphaned).
    pub lost: bool,
}

/// The resume state of a job's latest progress snapshot that had one (`?1` is the job).
/// Progress does not write it to the job row on every message (that would rewrite the
/// row thousands of times); the row takes it when the job leaves the crawler.
const LATEST_RESUME: &str = "SELECT resume_state FROM progress_snapshots
     WHERE job_id = ?1 AND resume_state IS NOT NULL ORDER BY id DESC LIMIT 1";

/// Applies the retry policy: back to `queued` after a backoff, or `failed` for good.
/// Returns the new status.
pub fn fail(
    conn: &Connection,
    job: &JobState,
    failure: &Failure<'_>,
    policy: &Policy,
    connection_id: Option<i64>,
    now: Timestamp,
) -> rusqlite::Result<Status> {
    let permanent_error = policy.is_permanent(failure.error);
    let exhausted = job.attempts >= job.max_attempts;
    let retry = failure.recoverable && !permanent_error && !exhausted;
    let mut detail = json!({
        "error": failure.error,
        "attempt": job.attempts,
        "max_attempts": job.max_attempts,
    });
    let to = if retry {
        let not_before = now.plus(policy.backoff(job.attempts));
        detail["retry_at"] = json!(not_before.to_string());
        conn.prepare_cached(&format!(
            "UPDATE jobs SET status = 'queued', not_before = ?2, updated_at = ?3, last_error = ?4,
                             connection_id = NULL, resume_state = coalesce(?5, ({LATEST_RESUME}), resume_state)
             WHERE id = ?1"
        ))?
        .execute(params![
            job.id,
            not_before,
            now,
            failure.error,
            failure.resume_state
        ])?;
        Status::Queued
    } else {
        detail["reason"] = json!(if !failure.recoverable {
            "not recoverable"
        } else if permanent_error {
            "permanent error"
        } else {
            "attempts exhausted"
        });
        conn.prepare_cached(&format!(
            "UPDATE jobs SET status = 'failed', finished_at = ?2, updated_at = ?2, last_error = ?3,
                             resume_state = coalesce(?4, ({LATEST_RESUME}), resume_state)
             WHERE id = ?1"
        ))?
        .execute(params![job.id, now, failure.error, failure.resume_state])?;
        Status::Failed
    };
    let name = match (failure.lost, to) {
        (true, _) => "lost",
        (false, Status::Queued) => "requeued",
        _ => "failed",
    };
    event(
        conn,
        &job.id,
        name,
        Some(job.status),
        Some(to),
        connection_id,
        Some(&detail),
        now,
    )?;
    if to == Status::Failed {
        crate::store::events::job_failed(conn, &job.id, &job.entity_type, &detail, now)?;
    }
    Ok(to)
}

/// The capability guard: after `Unknown task type:` the crawler cannot run this
/// entity type, so stop dispatching it. Returns true when the pause is new.
pub fn pause_type_if_unsupported(
    conn: &Connection,
    job: &JobState,
    error: &str,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<bool> {
    let Ok(entity_type) = job.entity_type.parse::<EntityType>() else {
        return Ok(false);
    };
    if !error.contains(UNKNOWN_TASK_TYPE) || !policy.may_pause(entity_type) {
        return Ok(false);
    }
    let added = conn
        .prepare_cached(
            "INSERT INTO paused_entity_types (entity_type, paused_at, job_id, reason)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (entity_type) DO NOTHING",
        )?
        .execute(params![entity_type.as_str(), now, job.id, error])?;
    if added > 0 {
        crate::store::events::type_paused(conn, entity_type.as_str(), &job.id, error, now)?;
    }
    Ok(added > 0)
}
