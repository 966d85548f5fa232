//! Handing out work: which jobs a `job_request` may get, and the claim.

use super::audit::event;
use super::recovery::{
    cancel_pending_not_elsewhere, in_flight_not_elsewhere, lose, not_elsewhere, Loss,
};
use super::status::Status;
use crate::policy::Policy;
use crate::protocol::encode::OutboundJob;
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
    if !who.first_request {
        let loss = Loss::CrawlerMovedOn {
            by: who.connection_id,
            dispatched_before: now.minus(policy.orphan_after),
        };
        lose(conn, loss, policy, now)?;
    }
    let busy: i64 = conn
        .prepare_cached(concat!(
            "SELECT (SELECT count(*) FROM jobs WHERE ",
            in_flight_not_elsewhere!(),
            ") + (SELECT count(*) FROM jobs WHERE ",
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
    let claimed = next_jobs(conn, policy, now)?;
    for (_, job) in &claimed {
        conn.prepare_cached(
            "UPDATE jobs SET status = 'assigned', attempts = attempts + 1, connection_id = ?2,
                             dispatched_at = ?3, updated_at = ?3, not_before = NULL,
                             started_at = NULL, resume_next = 0
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
/// paused type, of a credential not marked unusable; highest priority first, then
/// oldest. The resume state goes out only when an operator asked for it.
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
        "SELECT j.id, j.entity_type, j.entity_id,
                CASE WHEN j.resume_next = 1 THEN j.resume_state END, c.gitlab_url,
                c.access_token, c.id
         FROM jobs j JOIN credentials c ON c.id = j.credential_id
         WHERE j.status = 'queued' AND c.unusable_since IS NULL
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
