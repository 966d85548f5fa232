//! `jobs_discovered`: the rule is `store::jobs::on_discovered`. A discovery can hold
//! a hundred thousand entries, so it runs alone in its own transaction.

use crate::protocol::message::Discovered;
use crate::server::connection::Session;
use crate::server::Context;
use crate::store::{jobs, Mode};
use crate::time::Timestamp;

pub async fn handle(ctx: &Context, s: &Session, job_id: String, d: Discovered) {
    let (conn_id, policy) = (s.id, ctx.live.policy());
    let _ = s
        .lane
        .submit_as(Mode::Alone, 1, "jobs_discovered", move |c| {
            jobs::on_discovered(c, conn_id, &job_id, &d, &policy, Timestamp::now())
        })
        .await;
}
