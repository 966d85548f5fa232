//! The notification outbox (`events`): one small function the job rules call inside
//! their own transaction, so an event exists exactly when the change that caused it
//! committed. Delivery to sinks and the `events` command read the table; nothing here
//! sends anything. Callers pass no secret: details are built from job ids, types,
//! attempts and the crawler's error text.

use crate::time::Timestamp;
use rusqlite::{params, Connection};
use serde_json::Value;

/// What happened (the `kind` column and the payload's `event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    JobFailed,
    CredentialFailed,
    TypePaused,
    CrawlerLost,
    CrawlerAbsent,
    QueueDrained,
    DatabaseError,
    Test,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::JobFailed => "job_failed",
            Kind::CredentialFailed => "credential_failed",
            Kind::TypePaused => "type_paused",
            Kind::CrawlerLost => "crawler_lost",
            Kind::CrawlerAbsent => "crawler_absent",
            Kind::QueueDrained => "queue_drained",
            Kind::DatabaseError => "database_error",
            Kind::Test => "test",
        }
    }

    fn severity(self) -> &'static str {
        match self {
            Kind::QueueDrained | Kind::Test => "info",
            Kind::JobFailed | Kind::TypePaused | Kind::CrawlerAbsent => "warning",
            Kind::CredentialFailed | Kind::CrawlerLost | Kind::DatabaseError => "critical",
        }
    }
}

/// Longest message or subject stored (crawler error texts can be long).
const MAX_TEXT: usize = 1000;

fn bounded(text: &str) -> &str {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// What the notification cooldown groups by: a thousand failing jobs of one type are
/// one topic, every other kind is grouped by its subject.
fn topic<'a>(kind: Kind, subject: &'a str, details: &'a Value) -> &'a str {
    match kind {
        Kind::JobFailed => details["entity_type"].as_str().unwrap_or(subject),
        _ => subject,
    }
}

/// Adds one event to the outbox, in the caller's transaction.
pub fn record(
    conn: &Connection,
    kind: Kind,
    subject: &str,
    message: &str,
    details: &Value,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO events (at, kind, subject, topic, severity, message, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        now,
        kind.as_str(),
        bounded(subject),
        bounded(topic(kind, subject, details)),
        kind.severity(),
        bounded(message),
        details.to_string()
    ])?;
    Ok(())
}

/// `queue_drained` when no job is queued or in flight any more: call after a job
/// reached a terminal state.
pub fn queue_drained_if_empty(conn: &Connection, now: Timestamp) -> rusqlite::Result<()> {
    // Runs after every terminal transition: one index entry, not a count of the
    // queue (which would cost the whole table at a million jobs).
    let left: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE status IN ('queued', 'assigned', 'running'))",
        )?
        .query_row([], |r| r.get(0))?;
    if left {
        return Ok(());
    }
    let ended: i64 = conn
        .prepare_cached(
            "SELECT coalesce(sum(jobs), 0) FROM job_counts
             WHERE status IN ('finished', 'failed', 'cancelled')",
        )?
        .query_row([], |r| r.get(0))?;
    let details = serde_json::json!({"jobs_ended": ended});
    record(
        conn,
        Kind::QueueDrained,
        "queue",
        &format!("the queue is empty: the crawl is done ({ended} jobs ended)"),
        &details,
        now,
    )
}

/// `job_failed`: a job ended `failed` with no retry left (`detail` is the transition's
/// detail: error, attempts, reason). Then `queue_drained` if it was the last one.
pub fn job_failed(
    conn: &Connection,
    job_id: &str,
    entity_type: &str,
    detail: &Value,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let (entity_id, path): (String, Option<String>) = conn
        .prepare_cached("SELECT entity_id, namespace_path FROM jobs WHERE id = ?1")?
        .query_row([job_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let error = detail["error"].as_str().unwrap_or("");
    let reason = detail["reason"].as_str().unwrap_or("failed");
    let mut details = detail.clone();
    // The crawler's error text can be as long as a message (64 MiB): bound it.
    details["error"] = bounded(error).into();
    details["job_id"] = job_id.into();
    details["entity_type"] = entity_type.into();
    details["entity_id"] = entity_id.clone().into();
    details["namespace_path"] = path.clone().into();
    let what = path.unwrap_or(entity_id);
    record(
        conn,
        Kind::JobFailed,
        job_id,
        &format!("{entity_type} job for {what} failed for good ({reason}): {error}"),
        &details,
        now,
    )?;
    queue_drained_if_empty(conn, now)
}

/// `type_paused`: the capability guard stopped dispatching `entity_type`.
pub fn type_paused(
    conn: &Connection,
    entity_type: &str,
    job_id: &str,
    error: &str,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let details =
        serde_json::json!({"entity_type": entity_type, "job_id": job_id, "error": bounded(error)});
    record(
        conn,
        Kind::TypePaused,
        entity_type,
        &format!("the crawler cannot run {entity_type} jobs; the type is paused until `crawler-agent jobs resume-type {entity_type}`"),
        &details,
        now,
    )
}

/// `credential_failed`: a token refresh failed (refused, expired with no way to
/// refresh, helper or OAuth failing). `detail` is the refresh's own detail text,
/// which never holds a token.
pub fn credential_failed(
    conn: &Connection,
    credential_id: Option<i64>,
    trigger: &str,
    detail: &str,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let name: Option<String> = match credential_id {
        Some(id) => conn
            .prepare_cached("SELECT name FROM credentials WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .ok(),
        None => None,
    };
    let subject = name.unwrap_or_else(|| "unknown credential".into());
    let details =
        serde_json::json!({"credential": subject, "trigger": trigger, "detail": bounded(detail)});
    record(
        conn,
        Kind::CredentialFailed,
        &subject,
        &format!(
            "credential {subject}: token refresh failed: {}",
            bounded(detail)
        ),
        &details,
        now,
    )
}
