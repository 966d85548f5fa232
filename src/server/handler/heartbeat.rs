//! `heartbeat`: the rule is `store::jobs::on_heartbeat`. No reply.

use crate::protocol::message::Heartbeat;
use crate::server::connection::Session;
use crate::server::Context;
use crate::store::jobs;
use crate::time::Timestamp;

pub async fn handle(ctx: &Context, s: &Session, hb: Heartbeat) {
    let (conn_id, traffic, policy) = (s.id, s.traffic, ctx.live.policy());
    let _ = s
        .lane
        .submit("a heartbeat", move |c| {
            jobs::on_heartbeat(c, conn_id, &hb, traffic, &policy, Timestamp::now())
        })
        .await;
}
