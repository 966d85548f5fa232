//! Retention: keeps the append-only tables from growing without bound.
//!
//! Progress snapshots are pruned by age and by count per job (the newest are kept);
//! job events, ignored messages, errors, closed connections, discoveries and token
//! refreshes by age. Ended jobs (not discoveries, not one cancelled while the crawler
//! still has it) are pruned after `ended_jobs_max_age` unless it is "never", their events
//! and progress with them (foreign keys cascade).

use crate::config::RetentionConfig;
use crate::time::Timestamp;
use rusqlite::{params, Connection};
use serde::Serialize;

/// The most ended jobs one pass removes; the next pass takes the rest.
pub const JOBS_PER_PASS: usize = 200;

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Pruned {
    pub progress_snapshots: usize,
    pub job_events: usize,
    pub errors: usize,
    pub ignored_messages: usize,
    pub connections: usize,
    pub discoveries: usize,
    pub token_refreshes: usize,
    pub jobs: usize,
}

impl Pruned {
    pub fn total(&self) -> usize {
        self.progress_snapshots
            + self.job_events
            + self.errors
            + self.ignored_messages
            + self.connections
            + self.discoveries
            + self.token_refreshes
            + self.jobs
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
        ignored_messages: conn.execute(
            "DELETE FROM ignored_messages WHERE at < ?1",
            [now.minus(r.events_max_age.0)],
        )?,
        connections: conn.execute(
            "DELETE FROM connections WHERE closed_at IS NOT NULL AND closed_at < ?1",
            [now.minus(r.connections_max_age.0)],
        )?,
        discoveries: conn.execute(
            "DELETE FROM discoveries WHERE received_at < ?1",
            [now.minus(r.discoveries_max_age.0)],
        )?,
        token_refreshes: conn.execute(
            "DELETE FROM token_refreshes WHERE at < ?1",
            [now.minus(r.token_refreshes_max_age.0)],
        )?,
        jobs: 0,
    };
    if !r.ended_jobs_max_age.is_never() {
        // At most JOBS_PER_PASS a pass, so one pass never holds the writer long
        // (each deleted job also clears its children's parent_job_id).
        pruned.jobs = conn.execute(
            &format!(
                "DELETE FROM jobs WHERE id IN (
                     SELECT id FROM jobs WHERE status IN ('finished', 'failed', 'cancelled')
                        AND cancel_pending = 0 AND entity_type != 'areas' AND finished_at < ?1
                     LIMIT {JOBS_PER_PASS})"
            ),
            [now.minus(r.ended_jobs_max_age.0)],
        )?;
    }
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
