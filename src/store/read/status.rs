//! The jobs in the crawler's hands, with their latest progress, for `status`.

use rusqlite::Connection;
use serde::Serialize;

/// A job assigned or running, with its latest progress snapshot.
#[derive(Debug, Serialize)]
pub struct RunningJob {
    pub id: String,
    pub entity_type: String,
    pub entity: String,
    pub status: String,
    pub attempts: i64,
    pub dispatched_at: Option<String>,
    pub progress_at: Option<String>,
    pub stage: Option<String>,
    pub processed: Option<i64>,
    pub total: Option<i64>,
    pub message: Option<String>,
}

/// Jobs in flight, the earliest dispatched first. (The `running_jobs` view, read
/// through `jobs_in_flight` in its own order, so neither a scan nor a sort.)
pub fn running(conn: &Connection) -> rusqlite::Result<Vec<RunningJob>> {
    let mut stmt = conn.prepare(
        "SELECT j.id, j.entity_type, coalesce(j.namespace_path, j.entity_id), j.status,
                j.attempts, j.dispatched_at, p.received_at, p.stage, p.processed, p.total,
                p.message
         FROM jobs j INDEXED BY jobs_in_flight
         LEFT JOIN progress_snapshots p
                ON p.id = (SELECT max(id) FROM progress_snapshots WHERE job_id = j.id)
         WHERE j.status IN ('assigned', 'running')
         ORDER BY j.dispatched_at",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(RunningJob {
            id: r.get(0)?,
            entity_type: r.get(1)?,
            entity: r.get(2)?,
            status: r.get(3)?,
            attempts: r.get(4)?,
            dispatched_at: r.get(5)?,
            progress_at: r.get(6)?,
            stage: r.get(7)?,
            processed: r.get(8)?,
            total: r.get(9)?,
            message: r.get(10)?,
        })
    })?;
    rows.collect()
}
