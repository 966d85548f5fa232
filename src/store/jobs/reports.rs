//! The crawler's reports about a job, one function per message holding its whole
//! rule: the transition, the audit row, the `errors` rows and the type pause. Each
//! runs inside the writer's transaction and is unit-tested on a temporary database
//! (`tests/job_rules.rs`).

use super::audit::{ignored, ignored_message};
use super::status::{state, JobState, Status};
use super::transitions::{completed, fail, pause_type_if_unsupported, started, Failure};
use crate::policy::Policy;
use crate::protocol::message::{
    as_value, Completed, Discovered, DiscoveryEntities, Failed, JobStarted, Progress,
};
use crate::protocol::EntityType;
use crate::store::errors::{self, Category, ErrorRecord, Severity};
use crate::store::{discovery, progress};
use crate::time::Timestamp;
use rusqlite::Connection;
use serde_json::{json, Value};

/// One `job_progress` as received.
#[derive(Debug)]
pub struct ProgressReport {
    pub job_id: String,
    pub progress: Progress,
    /// The crawler's own `timestamp`.
    pub sent_at: Option<String>,
}

/// Records a message about a job id we do not know: an `ignored_messages` row and an
/// `errors` row.
fn unknown_job(
    c: &Connection,
    kind: &str,
    job_id: &str,
    conn_id: i64,
    context: Value,
    now: Timestamp,
) -> rusqlite::Result<()> {
    log::warn!("connection {conn_id}: {kind} for unknown job {job_id}");
    ignored_message(c, kind, job_id, None, conn_id, &context, now)?;
    let message = format!("{kind} for unknown job {job_id}");
    let record = ErrorRecord::new(Category::Job, Severity::Low, message)
        .job(job_id)
        .connection(conn_id)
        .context(context);
    errors::insert(c, &record, now).map(drop)
}

/// `job_started`: assigned (or queued after a reset) → running.
pub fn on_started(
    c: &Connection,
    conn_id: i64,
    job_id: &str,
    data: &JobStarted,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let echo = json!({"entityType": data.entity_type, "entityId": data.entity_id});
    match state(c, job_id)? {
        None => unknown_job(c, "job_started", job_id, conn_id, echo, now),
        Some(job) => {
            log::info!("connection {conn_id}: job {job_id} started");
            started(c, &job, conn_id, echo, now)
        }
    }
}

/// A connection's consecutive `job_progress` reports: each becomes a snapshot, and
/// the first report of an `assigned` job moves it to running; a report for an ended
/// job is ignored, never a snapshot. Statements fail alone (the writer runs this
/// piecewise), so one bad report costs only itself.
pub fn on_progress(
    c: &Connection,
    conn_id: i64,
    reports: &[ProgressReport],
    now: Timestamp,
) -> rusqlite::Result<()> {
    let mut appender = progress::Appender::new(c)?;
    let mut known: Option<JobState> = None;
    for r in reports {
        let p = &r.progress;
        let summary = || json!({"stage": p.stage, "processed": p.processed, "message": p.message});
        let job = match known.take() {
            Some(job) if job.id == r.job_id => job,
            _ => match state(c, &r.job_id)? {
                Some(job) => job,
                None => {
                    unknown_job(c, "job_progress", &r.job_id, conn_id, summary(), now)?;
                    continue;
                }
            },
        };
        if job.status.is_terminal() {
            ignored(c, &job, "job_progress", conn_id, &summary(), now)?;
            known = Some(job);
            continue;
        }
        appender.append(&r.job_id, &r.progress, r.sent_at.as_deref(), conn_id, now)?;
        let job = if job.status == Status::Assigned {
            started(c, &job, conn_id, json!({"by": "job_progress"}), now)?;
            JobState {
                status: Status::Running,
                ..job
            }
        } else {
            job
        };
        known = Some(job);
    }
    Ok(())
}

/// `job_completed`: any non-terminal state → finished.
pub fn on_completed(
    c: &Connection,
    conn_id: i64,
    job_id: &str,
    data: &Completed,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let counts = data.final_counts.as_ref().map(|j| j.get());
    let detail = json!({"finalCounts": as_value(data.final_counts.as_ref()),
                        "message": data.message,
                        "outputFiles": as_value(data.output_files.as_ref()),
                        "success": data.success});
    match state(c, job_id)? {
        None => unknown_job(c, "job_completed", job_id, conn_id, detail, now),
        Some(job) => {
            if !job.status.is_terminal() {
                log::info!("connection {conn_id}: job {job_id} finished");
            }
            completed(c, &job, conn_id, counts, detail, now)
        }
    }
}

/// `job_failed`: the whole payload becomes an `errors` row, whatever state the job is
/// in; a job in flight is retried or failed by the policy, and `Unknown task type`
/// pauses its entity type.
pub fn on_failed(
    c: &Connection,
    conn_id: i64,
    job_id: &str,
    f: &Failed,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let error = f.error.clone().unwrap_or_else(|| "Unknown error".into());
    let job = state(c, job_id)?;
    let prefix = if job.is_none() {
        "unknown job "
    } else {
        "job "
    };
    let record = ErrorRecord {
        error_type: f.error_type.clone(),
        is_recoverable: f.is_recoverable,
        stack_trace: f.stack_trace.clone(),
        context: f.context.as_ref().map(|j| j.get().to_string()),
        partial_counts: f.partial_counts.as_ref().map(|j| j.get().to_string()),
        resume_state: f.resume_state.as_ref().map(|j| j.get().to_string()),
        ..ErrorRecord::new(
            Category::Job,
            Severity::Medium,
            format!("{prefix}{job_id} failed: {error}"),
        )
        .job(job_id)
        .connection(conn_id)
    };
    errors::insert(c, &record, now)?;
    let Some(job) = job else {
        log::warn!("connection {conn_id}: job_failed for unknown job {job_id}");
        let summary = json!({"error": error, "errorType": f.error_type});
        return ignored_message(c, "job_failed", job_id, None, conn_id, &summary, now);
    };
    if job.status.is_terminal() {
        let summary = json!({"error": error, "errorType": f.error_type,
                             "isRecoverable": f.is_recoverable});
        return ignored(c, &job, "job_failed", conn_id, &summary, now);
    }
    let failure = Failure {
        error: &error,
        recoverable: f.is_recoverable.unwrap_or(true),
        resume_state: f.resume_state.as_ref().map(|j| j.get()),
        lost: false,
    };
    let to = fail(c, &job, &failure, policy, Some(conn_id), now)?;
    log::info!("connection {conn_id}: job {job_id} failed ({error}); now {to}");
    if pause_type_if_unsupported(c, &job, &error, policy, now)? {
        let message = format!(
            "the crawler cannot run '{}' jobs ({error}); dispatch of that type is paused \
             until `crawler-agent jobs resume-type {}`",
            job.entity_type, job.entity_type
        );
        log::warn!("{message}");
        let record = ErrorRecord::new(Category::Job, Severity::High, message).job(job_id);
        errors::insert(c, &record, now)?;
    }
    Ok(())
}

/// `jobs_discovered`: areas and follow-up jobs (see `store::discovery`); invalid
/// entries are dropped alone and counted in an `errors` row. A discovery from a job
/// that already ended (cancelled, say) is ignored, like any message for it.
pub fn on_discovered(
    c: &Connection,
    conn_id: i64,
    job_id: &str,
    d: &Discovered,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<()> {
    if let Some(job) = state(c, job_id)?.filter(|j| j.status.is_terminal()) {
        let summary = json!({"entries": d.discovered_jobs.len(), "summary": d.discovery_summary});
        return ignored(c, &job, "jobs_discovered", conn_id, &summary, now);
    }
    let clock = std::time::Instant::now();
    let applied = discovery::apply_jobs_discovered(
        c,
        job_id,
        &d.discovered_jobs,
        d.discovery_summary.as_ref(),
        conn_id,
        policy,
        now,
    )?;
    let Some(a) = applied else {
        let context = json!({"entries": d.discovered_jobs.len(), "summary": d.discovery_summary});
        return unknown_job(c, "jobs_discovered", job_id, conn_id, context, now);
    };
    log::info!(
        "connection {conn_id}: job {job_id} discovered {} entries: {} new areas, {} new jobs, {} rejected ({} ms)",
        a.entries, a.new_areas, a.new_jobs, a.rejected, clock.elapsed().as_millis()
    );
    if a.rejected > 0 {
        let message = format!(
            "jobs_discovered from job {job_id}: {} of {} entries invalid and dropped",
            a.rejected, a.entries
        );
        let record = ErrorRecord::new(Category::Validation, Severity::Medium, message)
            .job(job_id)
            .connection(conn_id);
        errors::insert(c, &record, now)?;
    }
    Ok(())
}

/// `discovery` (never sent by the current crawler): areas of one type, no jobs.
pub fn on_discovery(
    c: &Connection,
    conn_id: i64,
    d: &DiscoveryEntities,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let Ok(kind) = d.entity_type.as_deref().unwrap_or("").parse::<EntityType>() else {
        let message = format!(
            "discovery message with bad entityType {:?}; {} entities dropped",
            d.entity_type,
            d.entities.len()
        );
        log::warn!("connection {conn_id}: {message}");
        let record =
            ErrorRecord::new(Category::Validation, Severity::Medium, message).connection(conn_id);
        return errors::insert(c, &record, now).map(drop);
    };
    let a = discovery::apply_discovery(c, kind, &d.entities, conn_id, now)?;
    if a.rejected > 0 {
        let message = format!(
            "discovery: {} of {} {kind} entities invalid and dropped",
            a.rejected, a.entries
        );
        let record =
            ErrorRecord::new(Category::Validation, Severity::Medium, message).connection(conn_id);
        errors::insert(c, &record, now)?;
    }
    Ok(())
}
