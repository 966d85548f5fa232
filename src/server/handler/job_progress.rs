//! `job_progress`: the flood. A connection holds its consecutive reports and hands
//! them to the writer as one operation (`store::jobs::on_progress`) at the end of each
//! read, or as soon as any other message arrives, so the order of a connection's
//! messages is kept while the queue sees one hand-off per read.

use crate::protocol::message::Progress;
use crate::server::connection::Session;
use crate::store::jobs::{self, ProgressReport};
use crate::store::Mode;
use crate::time::Timestamp;

/// Most progress reports applied by one writer operation.
const BATCH: usize = 64;

/// Holds one report until the next other message or the end of the read.
pub async fn hold(s: &mut Session, job_id: String, progress: Progress, sent_at: Option<String>) {
    s.progress.push(ProgressReport {
        job_id,
        progress,
        sent_at,
    });
    if s.progress.len() >= BATCH {
        flush(s).await;
    }
}

/// Hands the held reports to the writer as one piecewise operation.
pub async fn flush(s: &mut Session) {
    if s.progress.is_empty() {
        return;
    }
    let reports = std::mem::take(&mut s.progress);
    let conn_id = s.id;
    let _ = s
        .lane
        .submit_as(Mode::Piecewise, reports.len(), "job_progress", move |c| {
            jobs::on_progress(c, conn_id, &reports, Timestamp::now())
        })
        .await;
}
