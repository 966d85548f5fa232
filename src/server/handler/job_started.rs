//! `job_started`: the rule is `store::jobs::on_started`.

use crate::protocol::message::JobStarted;
use crate::server::connection::Session;
use crate::store::jobs;
use crate::time::Timestamp;

pub async fn handle(s: &Session, job_id: String, data: JobStarted) {
    let conn_id = s.id;
    let _ = s
        .lane
        .submit("job_started", move |c| {
            jobs::on_started(c, conn_id, &job_id, &data, Timestamp::now())
        })
        .await;
}
