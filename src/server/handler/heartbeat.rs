//! `heartbeat`: the rule is `store::jobs::on_heartbeat_aged` (this run's dispatches
//! aged by the monotonic clock, `server::clocks`). No reply.

use crate::protocol::message::Heartbeat;
use crate::server::connection::Session;
use crate::server::Context;
use crate::store::jobs;
use crate::time::Timestamp;

pub async fn handle(ctx: &Context, s: &Session, hb: Heartbeat) {
    let (conn_id, traffic, policy) = (s.id, s.traffic, ctx.live.policy());
    ctx.clocks.heard(conn_id);
    let clocks = ctx.clocks.clone();
    let _ = s
        .lane
        .submit("a heartbeat", move |c| {
            let now = Timestamp::now();
            jobs::on_heartbeat_aged(c, conn_id, &hb, traffic, &*clocks, &policy, now)
        })
        .await;
}
