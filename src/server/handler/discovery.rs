//! `discovery` (never sent by the current crawler): the rule is
//! `store::jobs::on_discovery`.

use crate::protocol::message::DiscoveryEntities;
use crate::server::connection::Session;
use crate::store::jobs;
use crate::time::Timestamp;

pub async fn handle(s: &Session, d: DiscoveryEntities) {
    let conn_id = s.id;
    let _ = s
        .lane
        .submit("discovery", move |c| {
            jobs::on_discovery(c, conn_id, &d, Timestamp::now())
        })
        .await;
}
