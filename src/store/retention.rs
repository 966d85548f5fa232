//! Retention: keeps the append-only tables from growing without bound.
//!
//! Progress snapshots are pruned by age and by count per job (the newest are kept);
//! job events, ignored messages, errors, closed connections, discoveries and token
//! refreshes by age; the notification outbox (`events`, with its `notify_deliveries`)
//! by `events_max_age`. Ended jobs (not discoveries, not one cancelled while the crawler
//! still has it) are pruned after `ended_jobs_max_age` unless it is "never", their events
//! and progress with them (foreign keys cascade).
//!
//! No pass reads a whole table (tests/query_plans.rs). `errors` has an index on `at`.
//! `progress_snapshots` and `job_events` have none (it would cost every insert on the
//! ingest path); their rows are appended with the time of insertion, so the time
//! grows with the rowid: a binary search over the rowid finds the first row young
//! enough to keep, and the rows before it that are old enough go (`AND at < cutoff`,
//! so a row stamped after a clock step back is never pruned early; one stamped
//! before a step back may stay a pass longer). The per-job cap looks only at the
//! jobs whose progress arrived within the last two passes: older rows were looked at
//! by an earlier pass.

use crate::config::RetentionConfig;
use crate::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::collections::HashSet;

/// The most ended jobs one pass removes; the next pass takes the rest.
pub const JOBS_PER_PASS: usize = 200;
/// The most outbox events one pass removes (with their deliveries).
pub const EVENTS_PER_PASS: usize = 5000;

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
    /// Outbox events (their deliveries go with them: foreign key cascade).
    pub events: usize,
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
            + self.events
    }
}

/// An append-only table whose `at` column grows with its rowid.
#[derive(Clone, Copy)]
struct Appended {
    table: &'static str,
    at: &'static str,
}

const PROGRESS: Appended = Appended {
    table: "progress_snapshots",
    at: "received_at",
};
const EVENTS: Appended = Appended {
    table: "job_events",
    at: "at",
};

impl Appended {
    /// The first rowid whose time is at or after `cutoff` (one past the last row when
    /// none is), by binary search over the rowid: O(log n) seeks.
    fn first_at_or_after(self, conn: &Connection, cutoff: &str) -> rusqlite::Result<i64> {
        let (min, max): (Option<i64>, Option<i64>) = conn.query_row(
            // Two subqueries: SQLite answers each from one end of the table.
            &format!(
                "SELECT (SELECT min(rowid) FROM {t}), (SELECT max(rowid) FROM {t})",
                t = self.table
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (Some(mut lo), Some(max)) = (min, max) else {
            return Ok(0);
        };
        let mut hi = max.saturating_add(1);
        let mut first = conn.prepare_cached(&format!(
            "SELECT rowid, CAST({} AS TEXT) FROM {} WHERE rowid >= ?1 ORDER BY rowid LIMIT 1",
            self.at, self.table
        ))?;
        // The smallest x whose first row at or after it is young enough to keep (or
        // none): every row below it is older than the cutoff, if time grew with the
        // rowid. Each step shrinks [lo, hi), so this ends after O(log n) steps.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let row: Option<(i64, Option<String>)> = first
                .query_row([mid], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            match row {
                Some((id, Some(t))) if t.as_str() < cutoff => lo = id.saturating_add(1),
                _ => hi = mid,
            }
        }
        Ok(lo)
    }

    /// Deletes the rows older than `cutoff`; returns how many.
    fn prune_older(self, conn: &Connection, cutoff: &str) -> rusqlite::Result<usize> {
        let end = self.first_at_or_after(conn, cutoff)?;
        conn.prepare_cached(&format!(
            "DELETE FROM {} WHERE rowid < ?1 AND {} < ?2",
            self.table, self.at
        ))?
        .execute(params![end, cutoff])
    }
}

pub fn prune(conn: &Connection, r: &RetentionConfig, now: Timestamp) -> rusqlite::Result<Pruned> {
    let progress_cutoff = now.minus(r.progress_max_age.0).to_string();
    let mut pruned = Pruned {
        progress_snapshots: PROGRESS.prune_older(conn, &progress_cutoff)?,
        job_events: EVENTS.prune_older(conn, &now.minus(r.events_max_age.0).to_string())?,
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
        // The outbox (by `events_at`); deliveries cascade (`notify_deliveries_event`).
        // notify_windows is bounded by sinks x kinds x topics and kept.
        // At most EVENTS_PER_PASS a pass (a thousand failed jobs are a thousand rows).
        events: conn.execute(
            &format!(
                "DELETE FROM events WHERE id IN (
                     SELECT id FROM events WHERE at < ?1 LIMIT {EVENTS_PER_PASS})"
            ),
            [now.minus(r.events_max_age.0)],
        )?,
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
    let recent = PROGRESS.first_at_or_after(
        conn,
        &now.minus(r.prune_every.0.saturating_mul(2)).to_string(),
    )?;
    let mut crowded = HashSet::new();
    {
        let mut jobs =
            conn.prepare_cached("SELECT job_id FROM progress_snapshots WHERE rowid >= ?1")?;
        let mut rows = jobs.query([recent])?;
        while let Some(row) = rows.next()? {
            crowded.insert(row.get::<_, String>(0)?);
        }
    }
    let mut count =
        conn.prepare_cached("SELECT count(*) FROM progress_snapshots WHERE job_id = ?1")?;
    for job_id in crowded {
        let n: i64 = count.query_row([&job_id], |row| row.get(0))?;
        if n <= keep {
            continue;
        }
        pruned.progress_snapshots += conn
            .prepare_cached(
                "DELETE FROM progress_snapshots WHERE job_id = ?1 AND id < (
                     SELECT id FROM progress_snapshots WHERE job_id = ?1
                     ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            )?
            .execute(params![job_id, keep - 1])?;
    }
    Ok(pruned)
}
