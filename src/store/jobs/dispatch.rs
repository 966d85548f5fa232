//! Handing out work: which jobs a `job_request` may get, and the claim.

use super::audit::event;
use super::recovery::{
    cancel_pending_not_elsewhere, in_flight_not_elsewhere, lose_aged, not_elsewhere, Aged,
    DispatchAges, Loss, WallClockOnly,
};
use super::status::Status;
use crate::policy::Policy;
use crate::protocol::encode::OutboundJob;
use crate::protocol::EntityType;
use crate::secret::Secret;
use crate::time::Timestamp;
use rusqlite::{params, Connection};
use serde_json::json;

/// Who is asking for work.
#[derive(Debug, Clone, Copy)]
pub struct Requester {
    pub connection_id: i64,
    /// The first `job_request` of a connection is sent unconditionally on connect;
    /// any later one proves the crawler has no active job.
    pub first_request: bool,
}

/// Answers a `job_request`: recovers orphans, then claims up to
/// `jobs_per_response` jobs (status `assigned`, attempt + 1) in this transaction.
/// Returns each claimed job with its credential id.
pub fn dispatch(
    conn: &Connection,
    who: Requester,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<Vec<(i64, OutboundJob)>> {
    if busy(conn, who, policy, now)? {
        return Ok(Vec::new());
    }
    claim(conn, who, policy, now)
}

/// Recovers orphans (a later `job_request` proves the crawler idle), then says whether
/// a job may still be running in this crawler, in which case nothing may go out.
pub fn busy(
    conn: &Connection,
    who: Requester,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<bool> {
    busy_aged(conn, who, &WallClockOnly, policy, now)
}

/// [`busy`], judging the age of this run's dispatches by the monotonic clock
/// (`ages`), so a wall-clock step neither orphans nor keeps a job.
pub fn busy_aged(
    conn: &Connection,
    who: Requester,
    ages: &dyn DispatchAges,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<bool> {
    if !who.first_request {
        let loss = Loss::CrawlerMovedOn {
            by: who.connection_id,
            dispatched_before: now.minus(policy.orphan_after),
        };
        let aged = Aged {
            ages,
            older_than: policy.orphan_after,
        };
        lose_aged(conn, loss, Some(aged), policy, now)?;
    }
    let busy: i64 = conn
        .prepare_cached(concat!(
            "SELECT (SELECT count(*) FROM jobs INDEXED BY jobs_in_flight WHERE ",
            in_flight_not_elsewhere!(),
            ") + (SELECT count(*) FROM jobs INDEXED BY jobs_cancel_pending WHERE ",
            cancel_pending_not_elsewhere!(),
            ")"
        ))?
        .query_row(rusqlite::named_params! {":conn": who.connection_id}, |r| {
            r.get(0)
        })?;
    Ok(busy > 0)
}

/// The claim itself, after [`busy`] said no: the next jobs become `assigned`.
pub fn claim(
    conn: &Connection,
    who: Requester,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<Vec<(i64, OutboundJob)>> {
    let next = next_jobs(conn, policy, now)?;
    claim_these(conn, who, next, now)
}

/// A job [`next_jobs`] would hand out now, as read: what goes out and what its claim
/// needs.
#[derive(Debug)]
pub struct Candidate {
    pub credential_id: i64,
    /// Dispatches so far; the claim makes it one more.
    attempts: i64,
    pub job: OutboundJob,
}

/// Claims `next`, read by [`next_jobs`] in this same transaction (nothing between
/// changed the queue): each becomes `assigned`, attempt + 1, with a `dispatched`
/// event. Returns each job with its credential id.
pub fn claim_these(
    conn: &Connection,
    who: Requester,
    next: Vec<Candidate>,
    now: Timestamp,
) -> rusqlite::Result<Vec<(i64, OutboundJob)>> {
    let mut claimed = Vec::with_capacity(next.len());
    for Candidate {
        credential_id,
        attempts,
        job,
    } in next
    {
        conn.prepare_cached(
            "UPDATE jobs SET status = 'assigned', attempts = ?2, connection_id = ?3,
                             dispatched_at = ?4, updated_at = ?4, not_before = NULL,
                             started_at = NULL, resume_next = 0
             WHERE id = ?1",
        )?
        .execute(params![job.id, attempts + 1, who.connection_id, now])?;
        let detail = json!({"attempt": attempts + 1, "resume": job.resume_state.is_some()});
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
        claimed.push((credential_id, job));
    }
    Ok(claimed)
}

/// The claim reads `jobs_ready` (schema.sql): per entity type, queued jobs past any
/// backoff in exactly the dispatch order. The head of each allowed type is one index
/// seek; the heads are merged here.
///
/// The type and the limit are written into the SQL (one cached statement per set of
/// allowed types, [`heads_of`]): SQLite plans with the value of a bound parameter where it decides whether a
/// partial index applies (`jobs_rediscover` is for `entity_type = 'areas'`) and for a
/// LIMIT, and then re-prepares the statement whenever that parameter is bound to
/// another value. Bound, the type re-parsed and re-planned the statement at every
/// seek (measured: 60 % of the writer's time in the SQL parser under 8 crawlers; for
/// the LIMIT, 60 % with an idle agent). `tests/query_plans.rs` checks that no hot
/// statement is re-prepared.
fn head_of_type(entity_type: EntityType, limit: usize) -> String {
    format!(
        "SELECT * FROM (SELECT j.id, j.entity_type, j.entity_id,
        CASE WHEN j.resume_next = 1 THEN j.resume_state END, c.gitlab_url, c.access_token, c.id,
        CAST(j.priority AS INTEGER), CAST(j.created_at AS TEXT), j.attempts
 FROM jobs j JOIN credentials c ON c.id = j.credential_id
 WHERE j.status = 'queued' AND j.not_before IS NULL AND j.entity_type = '{}'
   AND c.unusable_since IS NULL
 ORDER BY j.priority DESC, j.created_at, j.id
 LIMIT {limit})",
        entity_type.as_str()
    )
}

/// The heads of all `types` in one statement (each type's seek a subquery, their rows
/// one after the other): one statement to run per claim rather than one per type.
fn heads_of(types: &[EntityType], limit: usize) -> String {
    types
        .iter()
        .map(|t| head_of_type(*t, limit))
        .collect::<Vec<_>>()
        .join("\n UNION ALL ")
}

/// Queued jobs whose backoff has passed join `jobs_ready` (each once, on `jobs_backoff`;
/// named, since the planner would otherwise walk every queued job on `jobs_status`).
const RELEASE_DUE: &str = "UPDATE jobs INDEXED BY jobs_backoff SET not_before = NULL
 WHERE status = 'queued' AND not_before IS NOT NULL AND not_before <= ?1";

/// The entity types a claim may hand out now: enabled, and not paused unless trusted.
fn allowed_types(conn: &Connection, policy: &Policy) -> rusqlite::Result<Vec<EntityType>> {
    let paused: Vec<String> = conn
        .prepare_cached("SELECT entity_type FROM paused_entity_types")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut allowed: Vec<EntityType> = Vec::new();
    for t in &policy.entity_types {
        let open =
            policy.trusted_entity_types.contains(t) || !paused.iter().any(|p| p == t.as_str());
        // Each type once, or its head would be claimed twice.
        if open && !allowed.contains(t) {
            allowed.push(*t);
        }
    }
    Ok(allowed)
}

/// The next dispatchable jobs: queued, past their backoff, of an enabled and not
/// paused type, of a credential not marked unusable; highest priority first, then
/// oldest, then by id. Costs one seek per allowed type, whatever the queue's length
/// and however many jobs a paused type holds (the jobs of an unusable credential at a
/// type's head are stepped over). The resume state goes out only when an operator
/// asked for it. Lets the caller look at the jobs (refresh an expiring token) before
/// claiming them with [`claim_these`].
pub fn next_jobs(
    conn: &Connection,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<Vec<Candidate>> {
    conn.prepare_cached(RELEASE_DUE)?.execute([now])?;
    let limit = policy.jobs_per_response as usize;
    // (priority, created_at, candidate) per head.
    let mut heads: Vec<(i64, String, Candidate)> = Vec::new();
    let types = allowed_types(conn, policy)?;
    if !types.is_empty() {
        let mut stmt = conn.prepare_cached(&heads_of(&types, limit))?;
        let rows = stmt.query_map([], |r| {
            let resume: Option<String> = r.get(3)?;
            let job = OutboundJob {
                id: r.get(0)?,
                entity_type: r.get(1)?,
                entity_id: r.get(2)?,
                resume_state: resume.and_then(|s| serde_json::from_str(&s).ok()),
                gitlab_url: r.get(4)?,
                access_token: r.get::<_, Secret>(5)?,
            };
            let candidate = Candidate {
                credential_id: r.get(6)?,
                attempts: r.get(9)?,
                job,
            };
            Ok((r.get(7)?, r.get(8)?, candidate))
        })?;
        for row in rows {
            heads.push(row?);
        }
    }
    // The same order as the index (SQLite compares TEXT bytewise, as Rust does).
    heads.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| a.1.cmp(&b.1))
            .then_with(|| a.2.job.id.cmp(&b.2.job.id))
    });
    heads.truncate(limit);
    Ok(heads
        .into_iter()
        .map(|(_, _, candidate)| candidate)
        .collect())
}
