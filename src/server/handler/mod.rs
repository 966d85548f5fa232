//! Applies one frame from the crawler: parse, hand the rule to the job core, and say
//! what to reply.
//!
//! One file per message type, named for it; each only parses, submits the core's
//! `store::jobs::on_<message>` to the writer through the connection's lane, and
//! encodes the reply. Replies that depend on a write (a claimed job) are produced only
//! after the COMMIT. Nothing is ever answered with an error message: problems become
//! `errors` rows and log lines, and the connection carries on.

mod discovery;
mod heartbeat;
mod job_completed;
mod job_failed;
pub mod job_progress;
mod job_request;
mod job_started;
mod jobs_discovered;
mod token_refresh_request;

use super::connection::Session;
use super::Context;
use crate::protocol::frame::Frame;
use crate::protocol::message::{self, Inbound, ParseError};
use crate::store::errors::{Category, ErrorRecord, Severity};
use serde_json::json;

/// Largest part of a bad message kept in its `errors` row.
const RAW_SAMPLE_BYTES: usize = 64 * 1024;

/// Handles one frame; returns the bytes to send back, if any.
pub async fn handle_frame(ctx: &Context, s: &mut Session, frame: Frame<'_>) -> Option<Vec<u8>> {
    if !matches!(frame, Frame::Object(_)) {
        job_progress::flush(s).await;
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
            let message =
                format!("message of {bytes} bytes exceeds socket.max_message_bytes; skipped");
            let record = ErrorRecord::new(Category::Protocol, Severity::High, message)
                .connection(s.id)
                .context(json!({"bytes": bytes}));
            record_limited(ctx, s, record).await;
            None
        }
        Frame::Malformed { head, reason } => {
            let e = ParseError::Malformed(format!("bytes were not a JSON object ({reason})"));
            bad_message(ctx, s, head, e).await;
            None
        }
        Frame::Stray { bytes, first } => {
            let message =
                format!("{bytes} stray bytes between messages skipped (first byte 0x{first:02x})");
            let record = ErrorRecord::new(Category::Protocol, Severity::Low, message)
                .connection(s.id)
                .context(json!({"bytes": bytes, "first_byte": first}));
            record_limited(ctx, s, record).await;
            None
        }
    }
}

async fn bad_message(ctx: &Context, s: &mut Session, bytes: &[u8], e: ParseError) {
    ctx.metrics
        .bad_messages
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (category, severity) = match &e {
        ParseError::Malformed(_) => (Category::Protocol, Severity::Medium),
        ParseError::UnknownType(_) => (Category::Protocol, Severity::Low),
        ParseError::Invalid { .. } => (Category::Validation, Severity::Medium),
    };
    let sample = &bytes[..bytes.len().min(RAW_SAMPLE_BYTES)];
    let record = ErrorRecord::new(category, severity, format!("message ignored: {e}"))
        .connection(s.id)
        .context(json!({
            "bytes": bytes.len(),
            "raw": String::from_utf8_lossy(sample),
            "truncated": sample.len() < bytes.len(),
        }));
    record_limited(ctx, s, record).await;
}

/// Records a bad-input row unless this connection has had its
/// `socket.bad_message_rows_per_minute`; those beyond are counted into a summary row.
async fn record_limited(ctx: &Context, s: &mut Session, record: ErrorRecord) {
    let per_minute = ctx.live.get().config.socket.bad_message_rows_per_minute;
    let verdict = s
        .bad_rows
        .bad_message(per_minute, std::time::Instant::now());
    if let Some(more) = verdict.summary {
        bad_message_summary(ctx, s.id, more).await;
    }
    if verdict.record {
        ctx.record(record).await;
    }
}

/// The row standing for `more` bad messages of connection `id` that got none of their own.
pub async fn bad_message_summary(ctx: &Context, id: i64, more: u64) {
    let message = format!(
        "{more} more bad messages (over socket.bad_message_rows_per_minute; see the rows before)"
    );
    ctx.record(
        ErrorRecord::new(Category::Protocol, Severity::Medium, message)
            .connection(id)
            .context(json!({"suppressed": more})),
    )
    .await;
}

async fn handle_message(ctx: &Context, s: &mut Session, m: message::Message) -> Option<Vec<u8>> {
    log::debug!("connection {}: {}", s.id, m.body.type_name());
    if !matches!(m.body, Inbound::JobProgress(..)) {
        // Everything before this message is applied before it.
        job_progress::flush(s).await;
    }
    match m.body {
        Inbound::JobRequest => return job_request::handle(ctx, s).await,
        Inbound::TokenRefreshRequest(id) => return token_refresh_request::handle(ctx, s, id).await,
        Inbound::Heartbeat(hb) => heartbeat::handle(ctx, s, hb).await,
        Inbound::JobStarted(id, data) => job_started::handle(s, id, data).await,
        Inbound::JobProgress(id, p) => job_progress::hold(s, id, p, m.sent_at).await,
        Inbound::JobCompleted(id, data) => job_completed::handle(s, id, data).await,
        Inbound::JobFailed(id, f) => job_failed::handle(ctx, s, id, f).await,
        Inbound::JobsDiscovered(id, d) => jobs_discovered::handle(ctx, s, id, d).await,
        Inbound::Discovery(d) => discovery::handle(s, d).await,
    }
    None
}
