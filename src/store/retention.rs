//! Retention: keeps the append-only tables from growing without bound.
//!
//! Progress snapshots are pruned by age and by count per job (the newest are kept),
//! job events and errors by age. Jobs themselves are never pruned here.

use crate::config::RetentionConfig;
use crate::time::Timestamp;
use rusqlite::{params, Connection};
use serde::Serialize;

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Pruned {
    pub progress_snapshots: usize,
    pub job_events: usize,
    pub errors: usize,
}

impl Pruned {
    pub fn total(&self) -> usize {
        self.progress_snapshots + self.job_events + self.errors
    }
}

pub fn prune(conn: &Connection, r: &RetentionConfig, now: Timestamp) -> rusqlite::Result<Pruned> {
    let mut pruned = Pruned {
        progress_snapshots: conn.execute(
            "DELETE FROM progress_snapshots WHERE received_at < ?1",
            [now.minus(r.progress_max_age.0)],
        )?,
        job_events: conn.execute(
            "DELETE FROM job_events WHERE at < ?1",
            [now.minus(r.events_max_age.0)],
        )?,
        errors: conn.execute(
            "DELETE FROM errors WHERE at < ?1",
            [now.minus(r.errors_max_age.0)],
        )?,
    };
    let keep = r.progress_max_per_job.max(1) as i64;
    let crowded: Vec<String> = conn
        .prepare("SELECT job_id FROM progress_snapshots GROUP BY job_id HAVING count(*) > ?1")?
        .query_map([keep], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for job_id in crowded {
        pruned.progress_snapshots += conn.execute(
            "DELETE FROM progress_snapshots WHERE job_id = ?1 AND id < (
                 SELECT id FROM progress_snapshots WHERE job_id = ?1
                 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            params![job_id, keep - 1],
        )?;
    }
    Ok(pruned)
}
