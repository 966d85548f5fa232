//! `token_refresh_request` → `token_refresh_response`. The rule is
//! `store::jobs::on_refresh_requested`; the token work is `tokens::Tokens::answer`.

use crate::protocol::encode;
use crate::server::connection::Session;
use crate::server::Context;

pub async fn handle(ctx: &Context, s: &mut Session, job_id: String) -> Option<Vec<u8>> {
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
