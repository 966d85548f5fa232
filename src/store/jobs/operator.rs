//! What an operator does to jobs: cancel, retry (optionally resuming), lift a type's
//! pause.
//!
//! A job cancelled while the crawler has it (`assigned`/`running`) is `cancelled` at
//! once but keeps `cancel_pending`: the crawler cannot be told to stop, so the job
//! still counts as in flight for the one-job rule until the crawler reports its end
//! (recorded as ignored, not applied) or proves idle (`recovery::lose`).

use super::audit::event;
use super::status::{state, Status};
use crate::protocol::EntityType;
use crate::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

/// Lifts a pause; returns whether one existed.
pub fn resume_type(conn: &Connection, entity_type: EntityType) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "DELETE FROM paused_entity_types WHERE entity_type = ?1",
        [entity_type.as_str()],
    )? > 0)
}

/// Operator: cancel a job that has not ended. One the crawler has keeps counting as
/// in flight (`cancel_pending`) until the crawler reports its end or proves idle.
pub fn cancel(
    conn: &Connection,
    id: &str,
    now: Timestamp,
) -> rusqlite::Result<Result<Status, String>> {
    operator_transition(
        conn,
        id,
        now,
        |s| s.is_terminal().then(|| format!("job {id} is already {s}")),
        "UPDATE jobs SET status = 'cancelled', finished_at = ?2, updated_at = ?2,
                         cancel_pending = (status IN ('assigned', 'running'))
         WHERE id = ?1",
        ("cancelled", Status::Cancelled),
    )
}

/// Operator: put a failed, cancelled or finished job back in the queue now, with a
/// fresh attempt budget. With `resume`, its next dispatch carries the stored
/// `resumeState` (spec §4.3: the crawler restarts every listing at `currentPage`, so
/// this is only ever an operator's decision); without, it starts from the beginning.
pub fn retry(
    conn: &Connection,
    id: &str,
    resume: bool,
    now: Timestamp,
) -> rusqlite::Result<Result<Status, String>> {
    let pending: bool = conn
        .query_row("SELECT cancel_pending FROM jobs WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(false);
    if pending {
        return Ok(Err(format!(
            "job {id} was cancelled while the crawler had it and the crawler has not \
             reported its end yet; retry it once it has"
        )));
    }
    let update = format!(
        "UPDATE jobs SET status = 'queued', attempts = 0, not_before = NULL, updated_at = ?2,
                         finished_at = NULL, connection_id = NULL, resume_next = {}
         WHERE id = ?1",
        u8::from(resume)
    );
    operator_transition(
        conn,
        id,
        now,
        |s| (!s.is_terminal()).then(|| format!("job {id} is {s}; only ended jobs can be retried")),
        &update,
        ("retried", Status::Queued),
    )
}

/// An operator's change of a job's status: refused with the reason `refuse` gives,
/// else `update` (`?1` id, `?2` now) and an event. Returns the status it had.
fn operator_transition(
    conn: &Connection,
    id: &str,
    now: Timestamp,
    refuse: impl Fn(Status) -> Option<String>,
    update: &str,
    (name, to): (&str, Status),
) -> rusqlite::Result<Result<Status, String>> {
    let Some(job) = state(conn, id)? else {
        return Ok(Err(format!("no job {id}")));
    };
    if let Some(why) = refuse(job.status) {
        return Ok(Err(why));
    }
    conn.execute(update, params![id, now])?;
    let detail = json!({"by": "operator"});
    event(
        conn,
        id,
        name,
        Some(job.status),
        Some(to),
        None,
        Some(&detail),
        now,
    )?;
    Ok(Ok(job.status))
}
