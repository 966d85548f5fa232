//! The job queue and its state machine.
//!
//! States: `queued` → `assigned` (dispatched) → `running` (job_started) → `finished` |
//! `failed`, plus `cancelled` by an operator. A failure or a lost job goes back to
//! `queued` with a backoff while the retry policy allows, else to `failed`. Every
//! transition, and every message refused because the job was already terminal, is a
//! row in `job_events`. All functions run inside the caller's transaction.

use crate::policy::{Policy, UNKNOWN_TASK_TYPE};
use crate::protocol::encode::OutboundJob;
use crate::protocol::EntityType;
use crate::secret::Secret;
use crate::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Assigned,
    Running,
    Finished,
    Failed,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Queued,
        Status::Assigned,
        Status::Running,
        Status::Finished,
        Status::Failed,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Assigned => "assigned",
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Finished | Status::Failed | Status::Cancelled)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Status::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("'{s}' is not a job status (queued, assigned, running, finished, failed, cancelled)"))
    }
}

impl rusqlite::types::FromSql for Status {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = v.as_str()?;
        text.parse()
            .map_err(|e: String| rusqlite::types::FromSqlError::Other(e.into()))
    }
}

impl rusqlite::ToSql for Status {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// Work to add to the queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub credential_id: i64,
    pub entity_type: EntityType,
    pub entity_id: String,
    pub namespace_path: Option<String>,
    pub priority: i64,
    pub max_attempts: u32,
    pub parent_job_id: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    Created(String),
    /// The same credential, entity type and entity id is already queued or known.
    Duplicate(String),
}

pub fn new_id() -> String {
    ulid::Ulid::new().to_string()
}

/// Adds a job unless the same work exists; returns which.
pub fn add(conn: &Connection, job: &NewJob, now: Timestamp) -> rusqlite::Result<Added> {
    let id = new_id();
    let inserted = conn
        .prepare_cached(
            "INSERT INTO jobs (id, credential_id, entity_type, entity_id, namespace_path, priority,
                               max_attempts, parent_job_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
             ON CONFLICT (credential_id, entity_type, entity_id) DO NOTHING",
        )?
        .execute(params![
            id,
            job.credential_id,
            job.entity_type.as_str(),
            job.entity_id,
            job.namespace_path,
            job.priority,
            job.max_attempts,
            job.parent_job_id,
            now
        ])?;
    if inserted == 0 {
        let existing = conn.query_row(
            "SELECT id FROM jobs WHERE credential_id = ?1 AND entity_type = ?2 AND entity_id = ?3",
            params![job.credential_id, job.entity_type.as_str(), job.entity_id],
            |r| r.get(0),
        )?;
        return Ok(Added::Duplicate(existing));
    }
    event(
        conn,
        &id,
        "created",
        None,
        Some(Status::Queued),
        None,
        None,
        now,
    )?;
    Ok(Added::Created(id))
}

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

/// What the state machine needs to know about one job.
#[derive(Debug, Clone)]
pub struct JobState {
    pub id: String,
    pub status: Status,
    pub attempts: u32,
    pub max_attempts: u32,
    pub entity_type: String,
    pub credential_id: i64,
}

pub fn state(conn: &Connection, id: &str) -> rusqlite::Result<Option<JobState>> {
    conn.prepare_cached(
        "SELECT id, status, attempts, max_attempts, entity_type, credential_id FROM jobs WHERE id = ?1",
    )?
    .query_row([id], |r| {
        Ok(JobState {
            id: r.get(0)?,
            status: r.get(1)?,
            attempts: r.get(2)?,
            max_attempts: r.get(3)?,
            entity_type: r.get(4)?,
            credential_id: r.get(5)?,
        })
    })
    .optional()
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
        _ => ignored(conn, job, "job_started", connection_id, now),
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
        return ignored(conn, job, "job_completed", connection_id, now);
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
    )
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
    Ok(added > 0)
}

/// Lifts a pause; returns whether one existed.
pub fn resume_type(conn: &Connection, entity_type: EntityType) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "DELETE FROM paused_entity_types WHERE entity_type = ?1",
        [entity_type.as_str()],
    )? > 0)
}

/// Who is asking for work.
#[derive(Debug, Clone, Copy)]
pub struct Requester {
    pub connection_id: i64,
    /// The first `job_request` of a connection is sent unconditionally on connect;
    /// any later one proves the crawler has no active job.
    pub first_request: bool,
}

/// Where a job in flight belongs: with a live connection other than the asker's, with
/// the asker, or with nobody alive.
const IN_FLIGHT_NOT_ELSEWHERE: &str = "
    status IN ('assigned', 'running')
    AND (connection_id IS NULL OR connection_id = :conn
         OR NOT EXISTS (SELECT 1 FROM connections c
                        WHERE c.id = jobs.connection_id AND c.closed_at IS NULL))";

/// Answers a `job_request`: recovers orphans, then claims up to
/// `jobs_per_response` jobs (status `assigned`, attempt + 1) in this transaction.
/// Returns each claimed job with its credential id.
pub fn dispatch(
    conn: &Connection,
    who: Requester,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<Vec<(i64, OutboundJob)>> {
    if !who.first_request {
        let cutoff = now.minus(policy.orphan_after);
        let orphans: Vec<String> = conn
            .prepare_cached(&format!(
                "SELECT id FROM jobs WHERE {IN_FLIGHT_NOT_ELSEWHERE} AND dispatched_at < :cutoff"
            ))?
            .query_map(
                rusqlite::named_params! {":conn": who.connection_id, ":cutoff": cutoff},
                |r| r.get(0),
            )?
            .collect::<Result<_, _>>()?;
        let why = "lost: the crawler asked for new work without reporting this job's end";
        lose(conn, &orphans, why, policy, Some(who.connection_id), now)?;
    }
    // Never hand out work while a job may still be running in this crawler.
    let busy: i64 = conn
        .prepare_cached(&format!(
            "SELECT count(*) FROM jobs WHERE {IN_FLIGHT_NOT_ELSEWHERE}"
        ))?
        .query_row(rusqlite::named_params! {":conn": who.connection_id}, |r| {
            r.get(0)
        })?;
    if busy > 0 {
        return Ok(Vec::new());
    }
    let claimed = next_jobs(conn, policy, now)?;
    for (_, job) in &claimed {
        conn.prepare_cached(
            "UPDATE jobs SET status = 'assigned', attempts = attempts + 1, connection_id = ?2,
                             dispatched_at = ?3, updated_at = ?3, not_before = NULL,
                             started_at = NULL
             WHERE id = ?1",
        )?
        .execute(params![job.id, who.connection_id, now])?;
        let attempt: i64 =
            conn.query_row("SELECT attempts FROM jobs WHERE id = ?1", [&job.id], |r| {
                r.get(0)
            })?;
        let detail = json!({"attempt": attempt, "resume": job.resume_state.is_some()});
        event(
            conn,
            &job.id,
            "dispatched",
            Some(Status::Queued),
            Some(Status::Assigned),
            Some(who.connection_id),
            Some(&detail),
            now,
        )?;
    }
    Ok(claimed)
}

/// The jobs a `job_request` would get now, with their credential ids (no claim).
/// Lets the caller refresh an expiring token before the claim.
pub fn peek(
    conn: &Connection,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<Vec<(String, i64)>> {
    Ok(next_jobs(conn, policy, now)?
        .into_iter()
        .map(|(credential_id, job)| (job.id, credential_id))
        .collect())
}

/// The next dispatchable jobs: queued, past their backoff, of an enabled and not
/// paused type; highest priority first, then oldest.
fn next_jobs(
    conn: &Connection,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<Vec<(i64, OutboundJob)>> {
    let types: Vec<&str> = policy.entity_types.iter().map(|t| t.as_str()).collect();
    let trusted: Vec<&str> = policy
        .trusted_entity_types
        .iter()
        .map(|t| t.as_str())
        .collect();
    // The limit is written into the SQL: SQLite plans with a bound LIMIT's value, so
    // rebinding one re-prepares the statement on every run (measured: 60 % of the
    // writer's time with an idle agent).
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT j.id, j.entity_type, j.entity_id, j.resume_state, c.gitlab_url, c.access_token,
                c.id
         FROM jobs j JOIN credentials c ON c.id = j.credential_id
         WHERE j.status = 'queued'
           AND (j.not_before IS NULL OR j.not_before <= :now)
           AND j.entity_type IN (SELECT value FROM json_each(:types))
           AND (j.entity_type IN (SELECT value FROM json_each(:trusted))
                OR j.entity_type NOT IN (SELECT entity_type FROM paused_entity_types))
         ORDER BY j.priority DESC, j.created_at, j.id
         LIMIT {}",
        policy.jobs_per_response
    ))?;
    let rows = stmt.query_map(
        rusqlite::named_params! {
            ":now": now,
            ":types": serde_json::to_string(&types).unwrap_or_default(),
            ":trusted": serde_json::to_string(&trusted).unwrap_or_default(),
        },
        |r| {
            let resume: Option<String> = r.get(3)?;
            let job = OutboundJob {
                id: r.get(0)?,
                entity_type: r.get(1)?,
                entity_id: r.get(2)?,
                resume_state: resume.and_then(|s| serde_json::from_str(&s).ok()),
                gitlab_url: r.get(4)?,
                access_token: r.get::<_, Secret>(5)?,
            };
            Ok((r.get::<_, i64>(6)?, job))
        },
    )?;
    rows.collect()
}

/// Jobs that ended without telling us (the crawler moved on, restarted, or the
/// connection closed first) go through the retry policy as `lost`.
pub fn lose(
    conn: &Connection,
    ids: &[String],
    why: &str,
    policy: &Policy,
    connection_id: Option<i64>,
    now: Timestamp,
) -> rusqlite::Result<()> {
    for id in ids {
        if let Some(job) = state(conn, id)? {
            log::warn!("job {id} {why} (was {})", job.status);
            let failure = Failure {
                error: why,
                recoverable: true,
                resume_state: None,
                lost: true,
            };
            fail(conn, &job, &failure, policy, connection_id, now)?;
        }
    }
    Ok(())
}

/// Jobs still in flight that were dispatched before `started`: when a crawler process
/// reports an uptime shorter than a job's age, that job died with the old process.
pub fn lose_jobs_dispatched_before(
    conn: &Connection,
    started: Timestamp,
    connection_id: i64,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<usize> {
    let ids: Vec<String> = conn
        .prepare_cached(&format!(
            "SELECT id FROM jobs WHERE {IN_FLIGHT_NOT_ELSEWHERE} AND dispatched_at < :started"
        ))?
        .query_map(
            rusqlite::named_params! {":conn": connection_id, ":started": started},
            |r| r.get(0),
        )?
        .collect::<Result<_, _>>()?;
    let why = "lost: the crawler process restarted while the job was in flight";
    lose(conn, &ids, why, policy, Some(connection_id), now)?;
    Ok(ids.len())
}

/// Puts finished discovery (`areas`) jobs older than `rediscover_after` back in the
/// queue so the list of groups and projects stays fresh. Returns how many.
pub fn requeue_stale_discoveries(
    conn: &Connection,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<usize> {
    let cutoff = now.minus(policy.rediscover_after);
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM jobs WHERE entity_type = 'areas' AND status = 'finished' AND finished_at < ?1",
        )?
        .query_map([cutoff], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        conn.prepare_cached(
            "UPDATE jobs SET status = 'queued', attempts = 0, not_before = NULL, updated_at = ?2,
                             connection_id = NULL, started_at = NULL, finished_at = NULL
             WHERE id = ?1",
        )?
        .execute(params![id, now])?;
        let detail = json!({"reason": "discovery older than discovery.rediscover_after"});
        event(
            conn,
            id,
            "rediscover",
            Some(Status::Finished),
            Some(Status::Queued),
            None,
            Some(&detail),
            now,
        )?;
    }
    Ok(ids.len())
}

/// Operator: cancel a job that has not ended.
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
        "UPDATE jobs SET status = 'cancelled', finished_at = ?2, updated_at = ?2 WHERE id = ?1",
        ("cancelled", Status::Cancelled),
    )
}

/// Operator: put a failed, cancelled or finished job back in the queue now, with a
/// fresh attempt budget.
pub fn retry(
    conn: &Connection,
    id: &str,
    now: Timestamp,
) -> rusqlite::Result<Result<Status, String>> {
    operator_transition(
        conn,
        id,
        now,
        |s| (!s.is_terminal()).then(|| format!("job {id} is {s}; only ended jobs can be retried")),
        "UPDATE jobs SET status = 'queued', attempts = 0, not_before = NULL, updated_at = ?2,
                         finished_at = NULL, connection_id = NULL
         WHERE id = ?1",
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
