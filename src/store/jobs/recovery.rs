//! Jobs that come back without a message from the crawler: lost jobs (one path for
//! every kind of loss) and discoveries old enough to run again.

use super::audit::event;
use super::status::{state, Status};
use super::transitions::{fail, Failure};
use crate::policy::Policy;
use crate::time::Timestamp;
use rusqlite::{params, Connection};
use serde_json::json;
use std::time::Duration;

/// A job dispatched to a connection that closed, and never started, is lost after this.
pub const UNSTARTED_LOST_AFTER: Duration = Duration::from_secs(60);

/// Not on a live connection other than the asker's: on the asker's, or on none alive.
/// `:conn` is the asking connection. (Macros so the statements that use them stay
/// string literals, prepared once and cached.) Statements using
/// `in_flight_not_elsewhere` name `jobs_in_flight`: `jobs_status` looks as good to the
/// planner.
macro_rules! not_elsewhere {
    () => {
        "(connection_id IS NULL OR connection_id = :conn
              OR NOT EXISTS (SELECT 1 FROM connections c
                             WHERE c.id = jobs.connection_id AND c.closed_at IS NULL))"
    };
}

/// Jobs in flight (`assigned`/`running`) not elsewhere; each has its partial index.
macro_rules! in_flight_not_elsewhere {
    () => {
        concat!("status IN ('assigned', 'running') AND ", not_elsewhere!())
    };
}

/// Jobs cancelled while the crawler had them (`cancel_pending`), not elsewhere: they
/// count as in flight too. Kept apart from [`in_flight_not_elsewhere`] (never `OR`ed
/// with it), so each query uses its own partial index instead of scanning `jobs`.
macro_rules! cancel_pending_not_elsewhere {
    () => {
        concat!("cancel_pending = 1 AND ", not_elsewhere!())
    };
}
pub(super) use {cancel_pending_not_elsewhere, in_flight_not_elsewhere, not_elsewhere};

/// The ways a job is lost: each says which jobs it takes and why.
#[derive(Debug, Clone, Copy)]
pub enum Loss {
    /// Connection `by` asked for new work (proving the crawler idle): jobs in flight
    /// and not on another live connection, dispatched before the cutoff, ended unheard.
    CrawlerMovedOn {
        by: i64,
        dispatched_before: Timestamp,
    },
    /// Connection `by`'s heartbeat says the crawler process started at `started`: jobs
    /// in flight dispatched before then died with the old process.
    CrawlerRestarted { by: i64, started: Timestamp },
    /// Jobs still `assigned` whose connection closed, dispatched before the cutoff.
    ConnectionClosed { dispatched_before: Timestamp },
}

impl Loss {
    fn why(self) -> &'static str {
        match self {
            Loss::CrawlerMovedOn { .. } => {
                "lost: the crawler asked for new work without reporting this job's end"
            }
            Loss::CrawlerRestarted { .. } => {
                "lost: the crawler process restarted while the job was in flight"
            }
            Loss::ConnectionClosed { .. } => "lost: the connection closed before the job started",
        }
    }

    /// The connection the loss is recorded against.
    fn connection_id(self) -> Option<i64> {
        match self {
            Loss::CrawlerMovedOn { by, .. } | Loss::CrawlerRestarted { by, .. } => Some(by),
            Loss::ConnectionClosed { .. } => None,
        }
    }

    /// The jobs the loss takes by the stored wall-clock cutoff, or, with `aged`, by
    /// monotonic age for the dispatches this run saw (wall clock for the others).
    fn select(self, conn: &Connection, aged: Option<Aged>) -> rusqlite::Result<Vec<String>> {
        let rows = self.candidates(conn, aged.is_some())?;
        let cutoff = self.cutoff();
        Ok(rows
            .into_iter()
            .filter(|(id, dispatched_at)| {
                let by_wall = || {
                    dispatched_at
                        .as_deref()
                        .and_then(Timestamp::parse)
                        .is_some_and(|t| t < cutoff)
                };
                match aged.map(|a| (a.ages.since_dispatch(id), a.older_than)) {
                    Some((Some(age), older_than)) => age > older_than,
                    _ => by_wall(),
                }
            })
            .map(|(id, _)| id)
            .collect())
    }

    /// The wall-clock cutoff: jobs dispatched before it are taken.
    fn cutoff(self) -> Timestamp {
        match self {
            Loss::CrawlerMovedOn {
                dispatched_before, ..
            }
            | Loss::ConnectionClosed { dispatched_before } => dispatched_before,
            Loss::CrawlerRestarted { started, .. } => started,
        }
    }

    /// Jobs the loss may take with their dispatch time: those dispatched before the
    /// cutoff, or with `every_age` all of them (filtered by age in [`Loss::select`]).
    fn candidates(
        self,
        conn: &Connection,
        every_age: bool,
    ) -> rusqlite::Result<Vec<(String, Option<String>)>> {
        let row = |r: &rusqlite::Row| Ok((r.get(0)?, r.get(1)?));
        let cutoff = if every_age {
            Timestamp::latest()
        } else {
            self.cutoff()
        };
        let by = match self {
            Loss::CrawlerMovedOn { by, .. } | Loss::CrawlerRestarted { by, .. } => by,
            Loss::ConnectionClosed { .. } => {
                return conn
                    .prepare_cached(
                        // (The IN term lets the planner read jobs_in_flight.)
                        "SELECT j.id, j.dispatched_at FROM jobs j INDEXED BY jobs_in_flight
                         JOIN connections c ON c.id = j.connection_id
                         WHERE j.status IN ('assigned', 'running') AND j.status = 'assigned'
                           AND c.closed_at IS NOT NULL AND j.dispatched_at < ?1",
                    )?
                    .query_map([cutoff], row)?
                    .collect();
            }
        };
        conn.prepare_cached(concat!(
            "SELECT id, dispatched_at FROM jobs INDEXED BY jobs_in_flight WHERE ",
            in_flight_not_elsewhere!(),
            " AND dispatched_at < :cutoff UNION ALL SELECT id, dispatched_at FROM jobs INDEXED BY jobs_cancel_pending WHERE ",
            cancel_pending_not_elsewhere!(),
            " AND dispatched_at < :cutoff"
        ))?
        .query_map(
            rusqlite::named_params! {":conn": by, ":cutoff": cutoff},
            row,
        )?
        .collect()
    }
}

/// How long ago jobs were dispatched, by the monotonic clock, for the dispatches the
/// running agent saw (`server::clocks`); `None` for the others, which are judged by
/// their stored wall-clock `dispatched_at`. A wall-clock step then neither loses nor
/// revives a job dispatched in this run.
pub trait DispatchAges {
    fn since_dispatch(&self, job_id: &str) -> Option<Duration>;
}

/// No monotonic record: every job is judged by its stored dispatch time.
pub struct WallClockOnly;

impl DispatchAges for WallClockOnly {
    fn since_dispatch(&self, _job_id: &str) -> Option<Duration> {
        None
    }
}

/// A loss judged by monotonic age where known: jobs dispatched more than
/// `older_than` ago are taken (for the others, the loss's wall-clock cutoff).
#[derive(Clone, Copy)]
pub struct Aged<'a> {
    pub ages: &'a dyn DispatchAges,
    pub older_than: Duration,
}

/// Jobs that ended without telling us go through the retry policy as `lost`, judged
/// by the stored wall-clock dispatch times. Returns how many.
pub fn lose(
    conn: &Connection,
    loss: Loss,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<usize> {
    lose_aged(conn, loss, None, policy, now)
}

/// [`lose`], with the ages of this run's dispatches taken from the monotonic clock.
pub fn lose_aged(
    conn: &Connection,
    loss: Loss,
    aged: Option<Aged>,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<usize> {
    let ids = loss.select(conn, aged)?;
    let why = loss.why();
    for id in &ids {
        if let Some(job) = state(conn, id)?.filter(|j| j.status == Status::Cancelled) {
            // Cancelled while the crawler had it: it no longer counts as in flight.
            conn.prepare_cached("UPDATE jobs SET cancel_pending = 0 WHERE id = ?1")?
                .execute([&job.id])?;
            let detail = json!({"reason": why, "cancel_pending": false});
            let (from, to) = (Some(job.status), Some(job.status));
            event(
                conn,
                id,
                "lost",
                from,
                to,
                loss.connection_id(),
                Some(&detail),
                now,
            )?;
        } else if let Some(job) = state(conn, id)? {
            log::warn!("job {id} {why} (was {})", job.status);
            let failure = Failure {
                error: why,
                recoverable: true,
                resume_state: None,
                lost: true,
            };
            fail(conn, &job, &failure, policy, loss.connection_id(), now)?;
        }
    }
    Ok(ids.len())
}

/// Puts finished discovery (`areas`) jobs older than `rediscover_after` back in the
/// queue so the list of groups and projects stays fresh. Returns how many.
pub fn requeue_stale_discoveries(
    conn: &Connection,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<usize> {
    let cutoff = now.minus(policy.rediscover_after);
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM jobs INDEXED BY jobs_rediscover
             WHERE entity_type = 'areas' AND status = 'finished' AND finished_at < ?1",
        )?
        .query_map([cutoff], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        conn.prepare_cached(
            "UPDATE jobs SET status = 'queued', attempts = 0, not_before = NULL, updated_at = ?2,
                             connection_id = NULL, started_at = NULL, finished_at = NULL
             WHERE id = ?1",
        )?
        .execute(params![id, now])?;
        let detail = json!({"reason": "discovery older than discovery.rediscover_after"});
        event(
            conn,
            id,
            "rediscover",
            Some(Status::Finished),
            Some(Status::Queued),
            None,
            Some(&detail),
            now,
        )?;
    }
    Ok(ids.len())
}
