//! `job_failed`: the rule is `store::jobs::on_failed`.

use crate::protocol::message::Failed;
use crate::server::connection::Session;
use crate::server::Context;
use crate::store::jobs;
use crate::time::Timestamp;

pub async fn handle(ctx: &Context, s: &Session, job_id: String, f: Failed) {
    let (conn_id, policy) = (s.id, ctx.live.policy());
    let _ = s
        .lane
        .submit("job_failed", move |c| {
            jobs::on_failed(c, conn_id, &job_id, &f, &policy, Timestamp::now())
        })
        .await;
}
