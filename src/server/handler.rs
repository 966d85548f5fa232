//! Applies one frame from the crawler: parse, act, and say what to reply.
//!
//! One function per message type, each named for it. Every change goes through the
//! writer; replies that depend on a write (a claimed job) are produced only after the
//! COMMIT. Nothing is ever answered with an error message: problems become `errors`
//! rows and log lines, and the connection carries on.

use crate::protocol::encode;
use crate::protocol::frame::Frame;
use crate::protocol::message::{
    self, Discovered, DiscoveryEntities, Failed, Heartbeat, Inbound, ParseError, Progress,
};
use crate::protocol::EntityType;
use crate::store::connections::{self, Traffic};
use crate::store::errors::{self, Category, ErrorRecord, Severity};
use crate::store::jobs::{self, Failure, Requester};
use crate::store::{discovery, progress, Mode, Writer};
use crate::time::Timestamp;
use crate::tokens::Tokens;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Largest part of a bad message kept in its `errors` row.
const RAW_SAMPLE_BYTES: usize = 64 * 1024;

/// What every connection shares.
pub struct Context {
    pub writer: Writer,
    pub tokens: Tokens,
    /// Connection ids are allocated here, not by the database (see `connection`).
    pub next_connection_id: std::sync::atomic::AtomicI64,
    /// The running configuration (reloaded on SIGHUP).
    pub live: Arc<super::live::Live>,
    /// Connections being served now.
    pub open_connections: std::sync::atomic::AtomicUsize,
    pub metrics: super::metrics::Metrics,
    pub started_at: Timestamp,
}

/// One connection's state.
pub struct Session {
    pub id: i64,
    /// This connection's ordered way into the writer.
    pub lane: crate::store::Lane,
    /// A `job_request` was already seen on this connection.
    pub asked_before: bool,
    pub traffic: Traffic,
    /// Shutting down: record what arrives, hand out nothing.
    pub draining: bool,
    /// Progress reports not yet handed to the writer (see [`flush_progress`]).
    pub progress: Vec<ProgressReport>,
}

/// One `job_progress`, held until the next other message or the end of the read.
pub struct ProgressReport {
    job_id: String,
    progress: Progress,
    sent_at: Option<String>,
}

/// Most progress reports applied by one writer operation.
const PROGRESS_BATCH: usize = 64;

impl Context {
    /// Stores an error row without waiting, and logs it.
    pub async fn record(&self, e: ErrorRecord) {
        let conn = e
            .connection_id
            .map_or(String::new(), |c| format!("connection {c}: "));
        match e.severity {
            Some(Severity::Low) => log::info!("{conn}{}", e.message),
            _ => log::warn!("{conn}{}", e.message),
        }
        let now = Timestamp::now();
        let _ = self
            .writer
            .submit("an error", move |c| errors::insert(c, &e, now).map(drop))
            .await;
    }
}

/// Handles one frame; returns the bytes to send back, if any.
pub async fn handle_frame(ctx: &Context, s: &mut Session, frame: Frame<'_>) -> Option<Vec<u8>> {
    if !matches!(frame, Frame::Object(_)) {
        flush_progress(s).await;
    }
    match frame {
        Frame::Object(bytes) => {
            s.traffic.messages_in += 1;
            match message::parse(bytes) {
                Ok(m) => {
                    ctx.metrics.message(m.body.type_name());
                    handle_message(ctx, s, m).await
                }
                Err(e) => {
                    ctx.metrics.message("other");
                    bad_message(ctx, s, bytes, e).await;
                    None
                }
            }
        }
        Frame::Oversized { bytes } => {
            ctx.record(
                ErrorRecord::new(
                    Category::Protocol,
                    Severity::High,
                    format!("message of {bytes} bytes exceeds socket.max_message_bytes; skipped"),
                )
                .connection(s.id)
                .context(json!({"bytes": bytes})),
            )
            .await;
            None
        }
        Frame::Malformed { head, reason } => {
            let e = ParseError::Malformed(format!("bytes were not a JSON object ({reason})"));
            bad_message(ctx, s, head, e).await;
            None
        }
        Frame::Stray { bytes, first } => {
            ctx.record(
                ErrorRecord::new(
                    Category::Protocol,
                    Severity::Low,
                    format!(
                        "{bytes} stray bytes between messages skipped (first byte 0x{first:02x})"
                    ),
                )
                .connection(s.id)
                .context(json!({"bytes": bytes, "first_byte": first})),
            )
            .await;
            None
        }
    }
}

async fn bad_message(ctx: &Context, s: &Session, bytes: &[u8], e: ParseError) {
    ctx.metrics
        .bad_messages
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (category, severity) = match &e {
        ParseError::Malformed(_) => (Category::Protocol, Severity::Medium),
        ParseError::UnknownType(_) => (Category::Protocol, Severity::Low),
        ParseError::Invalid { .. } => (Category::Validation, Severity::Medium),
    };
    let sample = &bytes[..bytes.len().min(RAW_SAMPLE_BYTES)];
    ctx.record(
        ErrorRecord::new(category, severity, format!("message ignored: {e}"))
            .connection(s.id)
            .context(json!({
                "bytes": bytes.len(),
                "raw": String::from_utf8_lossy(sample),
                "truncated": sample.len() < bytes.len(),
            })),
    )
    .await;
}

async fn handle_message(ctx: &Context, s: &mut Session, m: message::Message) -> Option<Vec<u8>> {
    log::debug!("connection {}: {}", s.id, m.body.type_name());
    let sent_at = m.sent_at;
    if !matches!(m.body, Inbound::JobProgress(..)) {
        // Everything before this message is applied before it.
        flush_progress(s).await;
    }
    match m.body {
        Inbound::JobRequest => job_request(ctx, s).await,
        Inbound::Heartbeat(hb) => {
            heartbeat(ctx, s, hb).await;
            None
        }
        Inbound::JobStarted(id, data) => {
            let echo = json!({"entityType": data.entity_type, "entityId": data.entity_id});
            job_started(s, id, echo).await;
            None
        }
        Inbound::JobProgress(job_id, progress) => {
            s.progress.push(ProgressReport {
                job_id,
                progress,
                sent_at,
            });
            if s.progress.len() >= PROGRESS_BATCH {
                flush_progress(s).await;
            }
            None
        }
        Inbound::JobCompleted(id, data) => {
            let counts = data.final_counts.as_ref().map(|j| j.get().to_string());
            let detail = json!({"finalCounts": data.final_counts, "message": data.message,
                                "outputFiles": data.output_files, "success": data.success});
            job_completed(s, id, counts, detail).await;
            None
        }
        Inbound::JobFailed(id, f) => {
            job_failed(ctx, s, id, f).await;
            None
        }
        Inbound::JobsDiscovered(id, d) => {
            jobs_discovered(ctx, s, id, d).await;
            None
        }
        Inbound::TokenRefreshRequest(id) => token_refresh_request(ctx, s, id).await,
        Inbound::Discovery(d) => {
            discovery_message(ctx, s, d).await;
            None
        }
    }
}

/// The first try of a `job_request`'s claim.
enum Claim {
    Done(Vec<(i64, encode::OutboundJob)>),
    /// Nothing claimed: these jobs' tokens (job id, credential id) are refreshed first.
    RefreshFirst(Vec<(String, i64)>),
}

async fn job_request(ctx: &Context, s: &mut Session) -> Option<Vec<u8>> {
    s.traffic.job_requests += 1;
    let who = Requester {
        connection_id: s.id,
        first_request: !s.asked_before,
    };
    s.asked_before = true;
    if s.draining {
        return None;
    }
    // Claim at once, unless a job about to go out carries a token that should be
    // refreshed first: then refresh and claim again, so the job's dispatch time is later
    // than its token's (a later refresh request then knows the crawler has the old one).
    let claim_timeout = ctx.live.get().config.dispatch.claim_timeout.0;
    let deadline = std::time::Instant::now() + claim_timeout;
    let margin = ctx.tokens.refresh_margin();
    let policy = ctx.live.policy();
    let first = s
        .lane
        .call_within(claim_timeout, move |c| {
            let now = Timestamp::now();
            let due = Tokens::due_before_dispatch(c, jobs::peek(c, &policy, now)?, margin, now)?;
            if due.is_empty() {
                jobs::dispatch(c, who, &policy, now).map(Claim::Done)
            } else {
                Ok(Claim::RefreshFirst(due))
            }
        })
        .await;
    let claimed = match first {
        Ok(Claim::Done(jobs)) => Ok(jobs),
        Err(e) => Err(e),
        Ok(Claim::RefreshFirst(due)) => {
            for (job_id, credential_id) in &due {
                ctx.tokens
                    .prepare_for_dispatch(*credential_id, job_id)
                    .await;
            }
            // One claim timeout for both (a refresh may use it up; the claim still
            // gets a moment).
            let left = deadline
                .saturating_duration_since(std::time::Instant::now())
                .max(Duration::from_millis(200));
            let policy = ctx.live.policy();
            s.lane
                .call_within(left, move |c| {
                    jobs::dispatch(c, who, &policy, Timestamp::now())
                })
                .await
        }
    };
    let jobs = match claimed {
        Ok(jobs) => jobs,
        Err(e) => {
            ctx.record(
                ErrorRecord::new(
                    Category::Storage,
                    Severity::High,
                    format!("job_request answered with no jobs: could not claim one ({e})"),
                )
                .connection(s.id),
            )
            .await;
            Vec::new()
        }
    };
    ctx.metrics
        .jobs_dispatched
        .fetch_add(jobs.len() as u64, std::sync::atomic::Ordering::Relaxed);
    for (_, job) in &jobs {
        log::info!(
            "connection {}: dispatched job {} ({} {})",
            s.id,
            job.id,
            job.entity_type,
            job.entity_id
        );
    }
    let jobs: Vec<_> = jobs.into_iter().map(|(_, job)| job).collect();
    Some(encode::job_response(&jobs))
}

async fn heartbeat(ctx: &Context, s: &Session, hb: Heartbeat) {
    let (id, traffic, policy) = (s.id, s.traffic, ctx.live.policy());
    let _ = s
        .lane
        .submit("a heartbeat", move |c| {
            let now = Timestamp::now();
            let news = connections::heartbeat(c, id, &hb, traffic, now)?;
            if let (Some(before), Some(uptime)) = (news.restarted_from, hb.uptime) {
                let message = format!("crawler restarted: uptime {uptime:.0}s after {before:.0}s");
                log::warn!("connection {id}: {message}");
                errors::insert(
                    c,
                    &ErrorRecord::new(Category::Connection, Severity::Low, message).connection(id),
                    now,
                )?;
            }
            // Jobs dispatched before this crawler process started died with the old one.
            if let Some(uptime) = hb.uptime.filter(|u| u.is_finite() && *u >= 0.0) {
                let started =
                    now.minus(Duration::from_secs_f64(uptime.min(1e9)) + Duration::from_secs(2));
                jobs::lose_jobs_dispatched_before(c, started, id, &policy, now)?;
            }
            Ok(())
        })
        .await;
}

/// Records a message about a job id we do not know.
fn unknown_job(
    c: &rusqlite::Connection,
    kind: &str,
    job_id: &str,
    conn_id: i64,
    context: Value,
) -> rusqlite::Result<()> {
    log::warn!("connection {conn_id}: {kind} for unknown job {job_id}");
    errors::insert(
        c,
        &ErrorRecord::new(
            Category::Job,
            Severity::Low,
            format!("{kind} for unknown job {job_id}"),
        )
        .job(job_id)
        .connection(conn_id)
        .context(context),
        Timestamp::now(),
    )
    .map(drop)
}

async fn job_started(s: &Session, job_id: String, echo: Value) {
    let conn_id = s.id;
    let _ = s
        .lane
        .submit("job_started", move |c| {
            let now = Timestamp::now();
            match jobs::state(c, &job_id)? {
                None => unknown_job(c, "job_started", &job_id, conn_id, echo.clone()),
                Some(job) => {
                    log::info!("connection {conn_id}: job {job_id} started");
                    jobs::started(c, &job, conn_id, echo.clone(), now)
                }
            }
        })
        .await;
}

/// Hands the held progress reports to the writer as one operation. A flood of progress
/// costs one queue hand-off per read instead of one per message; the order within
/// the connection is kept because every other message flushes first.
pub async fn flush_progress(s: &mut Session) {
    if s.progress.is_empty() {
        return;
    }
    let reports = std::mem::take(&mut s.progress);
    let conn_id = s.id;
    let _ = s
        .lane
        .submit_as(Mode::Piecewise, reports.len(), "job_progress", move |c| {
            let now = Timestamp::now();
            let mut appender = progress::Appender::new(c)?;
            let mut known: Option<jobs::JobState> = None;
            for r in &reports {
                let job = match known.take() {
                    Some(job) if job.id == r.job_id => job,
                    _ => match jobs::state(c, &r.job_id)? {
                        Some(job) => job,
                        None => {
                            let p = &r.progress;
                            let context = json!({"stage": p.stage, "processed": p.processed, "message": p.message});
                            unknown_job(c, "job_progress", &r.job_id, conn_id, context)?;
                            continue;
                        }
                    },
                };
                appender.append(&r.job_id, &r.progress, r.sent_at.as_deref(), conn_id, now)?;
                let job = if job.status == jobs::Status::Assigned {
                    jobs::started(c, &job, conn_id, json!({"by": "job_progress"}), now)?;
                    jobs::JobState {
                        status: jobs::Status::Running,
                        ..job
                    }
                } else {
                    job
                };
                known = Some(job);
            }
            Ok(())
        })
        .await;
}

async fn job_completed(s: &Session, job_id: String, counts: Option<String>, detail: Value) {
    let conn_id = s.id;
    let _ = s
        .lane
        .submit("job_completed", move |c| {
            let now = Timestamp::now();
            match jobs::state(c, &job_id)? {
                None => unknown_job(c, "job_completed", &job_id, conn_id, detail.clone()),
                Some(job) => {
                    if !job.status.is_terminal() {
                        log::info!("connection {conn_id}: job {job_id} finished");
                    }
                    jobs::completed(c, &job, conn_id, counts.as_deref(), detail.clone(), now)
                }
            }
        })
        .await;
}

async fn job_failed(ctx: &Context, s: &Session, job_id: String, f: Failed) {
    let (conn_id, policy) = (s.id, ctx.live.policy());
    let _ = s
        .lane
        .submit("job_failed", move |c| {
            let now = Timestamp::now();
            let error = f.error.clone().unwrap_or_else(|| "Unknown error".into());
            let job = jobs::state(c, &job_id)?;
            // The whole payload is kept, whatever state the job is in.
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
                .job(&job_id)
                .connection(conn_id)
            };
            errors::insert(c, &record, now)?;
            let Some(job) = job else {
                log::warn!("connection {conn_id}: job_failed for unknown job {job_id}");
                return Ok(());
            };
            if job.status.is_terminal() {
                return jobs::ignored(c, &job, "job_failed", conn_id, now);
            }
            let failure = Failure {
                error: &error,
                recoverable: f.is_recoverable.unwrap_or(true),
                resume_state: f.resume_state.as_ref().map(|j| j.get()),
                lost: false,
            };
            let to = jobs::fail(c, &job, &failure, &policy, Some(conn_id), now)?;
            log::info!("connection {conn_id}: job {job_id} failed ({error}); now {to}");
            if jobs::pause_type_if_unsupported(c, &job, &error, &policy, now)? {
                let message = format!(
                    "the crawler cannot run '{}' jobs ({error}); dispatch of that type is paused \
                     until `crawler-agent jobs resume-type {}`",
                    job.entity_type, job.entity_type
                );
                log::warn!("{message}");
                errors::insert(
                    c,
                    &ErrorRecord::new(Category::Job, Severity::High, message).job(&job_id),
                    now,
                )?;
            }
            Ok(())
        })
        .await;
}

async fn jobs_discovered(ctx: &Context, s: &Session, job_id: String, d: Discovered) {
    let (conn_id, policy) = (s.id, ctx.live.policy());
    let _ = s
        .lane
        .submit_as(Mode::Alone, 1, "jobs_discovered", move |c| {
            let now = Timestamp::now();
            let started = std::time::Instant::now();
            let applied = discovery::apply_jobs_discovered(
                c,
                &job_id,
                &d.discovered_jobs,
                d.discovery_summary.as_ref(),
                conn_id,
                &policy,
                now,
            )?;
            let Some(a) = applied else {
                let context = json!({"entries": d.discovered_jobs.len(), "summary": d.discovery_summary});
                return unknown_job(c, "jobs_discovered", &job_id, conn_id, context);
            };
            log::info!(
                "connection {conn_id}: job {job_id} discovered {} entries: {} new areas, {} new jobs, {} rejected ({} ms)",
                a.entries, a.new_areas, a.new_jobs, a.rejected, started.elapsed().as_millis()
            );
            if a.rejected > 0 {
                let message = format!("jobs_discovered from job {job_id}: {} of {} entries invalid and dropped", a.rejected, a.entries);
                errors::insert(c, &ErrorRecord::new(Category::Validation, Severity::Medium, message).job(&job_id).connection(conn_id), now)?;
            }
            Ok(())
        })
        .await;
}

async fn token_refresh_request(ctx: &Context, s: &mut Session, job_id: String) -> Option<Vec<u8>> {
    if s.draining {
        return None;
    }
    let token = ctx.tokens.answer(&job_id, s.id).await;
    log::info!(
        "connection {}: token refresh for job {job_id}: {}",
        s.id,
        if token.is_some() { "served" } else { "refused" }
    );
    Some(encode::token_refresh_response(
        &job_id,
        token.as_ref().map(|(t, at)| (t, *at)),
    ))
}

async fn discovery_message(ctx: &Context, s: &Session, d: DiscoveryEntities) {
    let conn_id = s.id;
    let kind = d.entity_type.as_deref().unwrap_or("").parse::<EntityType>();
    let Ok(kind) = kind else {
        ctx.record(
            ErrorRecord::new(
                Category::Validation,
                Severity::Medium,
                format!(
                    "discovery message with bad entityType {:?}; {} entities dropped",
                    d.entity_type,
                    d.entities.len()
                ),
            )
            .connection(conn_id),
        )
        .await;
        return;
    };
    let _ = s
        .lane
        .submit("discovery", move |c| {
            let now = Timestamp::now();
            let a = discovery::apply_discovery(c, kind, &d.entities, conn_id, now)?;
            if a.rejected > 0 {
                let message = format!(
                    "discovery: {} of {} {kind} entities invalid and dropped",
                    a.rejected, a.entries
                );
                errors::insert(
                    c,
                    &ErrorRecord::new(Category::Validation, Severity::Medium, message)
                        .connection(conn_id),
                    now,
                )?;
            }
            Ok(())
        })
        .await;
}
