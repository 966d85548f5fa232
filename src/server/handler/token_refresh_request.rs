//! `token_refresh_request` → `token_refresh_response`, always (spec §5.3). The rule is
//! `store::jobs::on_refresh_requested`; the token work is `tokens::Tokens::answer`. A
//! `jobId` that cannot be one of ours (empty, over-long, not a string) gets a refusal
//! at once, echoing the id when it is a bounded string, and an `errors` row.

use crate::protocol::encode;
use crate::protocol::message::RefreshFor;
use crate::server::connection::Session;
use crate::server::Context;
use crate::store::errors::{Category, ErrorRecord, Severity};
use serde_json::json;

pub async fn handle(ctx: &Context, s: &mut Session, request: RefreshFor) -> Option<Vec<u8>> {
    if s.draining {
        return None;
    }
    let job_id = match request {
        RefreshFor::Job(id) => id,
        RefreshFor::Invalid { echo, reason } => {
            log::warn!("connection {}: token refresh refused: {reason}", s.id);
            let record = ErrorRecord::new(
                Category::Validation,
                Severity::Medium,
                format!("token refresh refused: {reason}"),
            )
            .connection(s.id)
            .context(json!({"echoed_job_id_bytes": echo.len()}));
            ctx.record(record).await;
            return Some(encode::token_refresh_response(&echo, None));
        }
    };
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
