//! `job_completed`: the rule is `store::jobs::on_completed`.

use crate::protocol::message::Completed;
use crate::server::connection::Session;
use crate::store::jobs;
use crate::time::Timestamp;

pub async fn handle(s: &Session, job_id: String, data: Completed) {
    let conn_id = s.id;
    let _ = s
        .lane
        .submit("job_completed", move |c| {
            jobs::on_completed(c, conn_id, &job_id, &data, Timestamp::now())
        })
        .await;
}
