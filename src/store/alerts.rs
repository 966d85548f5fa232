//! The periodic alerts of the outbox: `crawler_lost` (jobs in flight and no live
//! crawler: gone or stale) and `crawler_absent` (jobs queued and no crawler
//! connected), each once per episode. An episode is a row of `alert_episodes`: it
//! starts when the condition is first seen, fires its event once the condition has
//! held for the configured time, and is deleted when the condition clears, so the next
//! episode fires again. The monitor calls [`check`] once per pass; every statement
//! reads an index or the two-row episode table (tests/query_plans.rs).

use super::events::{self, Kind};
use super::Writer;
use crate::config::NotifyConfig;
use crate::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use std::time::Duration;

/// A connection younger than this without a heartbeat may be the CLI's probe (it
/// closes within milliseconds): it does not count as a crawler yet.
const PROBE_GRACE: Duration = Duration::from_secs(2);

/// Checks farther apart than this mean the agent was stopped or stalled: an episode
/// that has not fired starts again, so a restart gives the crawler time to come back.
const GAP: Duration = Duration::from_secs(120);

/// The configured times after which each condition fires.
#[derive(Debug, Clone, Copy)]
pub struct After {
    pub crawler_lost: Duration,
    pub crawler_absent: Duration,
}

impl After {
    pub fn of(notify: &NotifyConfig) -> After {
        After {
            crawler_lost: notify.crawler_lost_after.0,
            crawler_absent: notify.crawler_absent_after.0,
        }
    }
}

/// The monitor's call: [`check`] through the writer (a failure is logged there).
pub async fn submit_check(writer: &Writer, notify: &NotifyConfig) {
    let after = After::of(notify);
    let _ = writer
        .submit("alert checks", move |c| {
            check(c, after, Timestamp::now()).map(drop)
        })
        .await;
}

/// One monitor pass: starts, fires or ends the episodes. Returns the events recorded.
pub fn check(conn: &Connection, after: After, now: Timestamp) -> rusqlite::Result<usize> {
    let probe_cutoff = now.minus(PROBE_GRACE);
    // A crawler is connected: an open connection past the probe grace, or one that
    // has a job (a probe never does).
    let connected: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM connections WHERE closed_at IS NULL
                 AND (last_heartbeat_at IS NOT NULL OR opened_at < ?1 OR id IN (
                     SELECT connection_id FROM jobs INDEXED BY jobs_in_flight
                     WHERE status IN ('assigned', 'running'))))",
        )?
        .query_row([probe_cutoff], |r| r.get(0))?;
    // ... and alive: not marked stale.
    let alive: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM connections WHERE closed_at IS NULL AND stale = 0
                 AND (last_heartbeat_at IS NOT NULL OR opened_at < ?1 OR id IN (
                     SELECT connection_id FROM jobs INDEXED BY jobs_in_flight
                     WHERE status IN ('assigned', 'running'))))",
        )?
        .query_row([probe_cutoff], |r| r.get(0))?;
    let in_flight: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE status IN ('assigned', 'running'))",
        )?
        .query_row([], |r| r.get(0))?;
    let queued: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM jobs WHERE status IN ('queued'))")?
        .query_row([], |r| r.get(0))?;
    let mut fired = 0;
    fired += episode(
        conn,
        Kind::CrawlerLost,
        in_flight && !alive,
        after.crawler_lost,
        now,
    )?;
    fired += episode(
        conn,
        Kind::CrawlerAbsent,
        queued && !connected,
        after.crawler_absent,
        now,
    )?;
    Ok(fired)
}

/// Moves one kind's episode on; returns 1 when its event was recorded now.
fn episode(
    conn: &Connection,
    kind: Kind,
    holds: bool,
    after: Duration,
    now: Timestamp,
) -> rusqlite::Result<usize> {
    let name = kind.as_str();
    if !holds {
        let ended = conn
            .prepare_cached("DELETE FROM alert_episodes WHERE kind = ?1 RETURNING fired_at")?
            .query_row([name], |r| r.get::<_, Option<String>>(0))
            .optional()?;
        if let Some(Some(fired_at)) = ended {
            log::info!(
                "{name} (fired at {fired_at}) is over: the crawler is back or the work is done"
            );
        }
        return Ok(0);
    }
    let row: Option<(String, String, Option<String>)> = conn
        .prepare_cached("SELECT since, checked_at, fired_at FROM alert_episodes WHERE kind = ?1")?
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let since = match row {
        None => {
            conn.prepare_cached(
                "INSERT INTO alert_episodes (kind, since, checked_at) VALUES (?1, ?2, ?2)",
            )?
            .execute(params![name, now])?;
            return Ok(0);
        }
        Some((_, _, Some(_))) => {
            touch(conn, name, None, now)?;
            return Ok(0);
        }
        Some((since, checked_at, None)) => {
            let checked = Timestamp::parse(&checked_at).unwrap_or(now);
            let since = Timestamp::parse(&since).unwrap_or(now);
            // A gap (agent stopped) or a clock step back restarts the count.
            if checked < now.minus(GAP) || since > now {
                touch(conn, name, Some(now), now)?;
                return Ok(0);
            }
            since
        }
    };
    if since > now.minus(after) {
        touch(conn, name, None, now)?;
        return Ok(0);
    }
    let seconds = since.age().as_secs();
    let (message, details) = match kind {
        Kind::CrawlerLost => (
            format!("jobs are in flight and no live crawler has been connected for {seconds} s (notify.crawler_lost_after)"),
            serde_json::json!({"since": since.to_string(), "after_s": after.as_secs()}),
        ),
        _ => (
            format!("jobs are queued and no crawler has been connected for {seconds} s (notify.crawler_absent_after)"),
            serde_json::json!({"since": since.to_string(), "after_s": after.as_secs()}),
        ),
    };
    log::warn!("{name}: {message}");
    events::record(conn, kind, "crawler", &message, &details, now)?;
    conn.prepare_cached(
        "UPDATE alert_episodes SET fired_at = ?2, checked_at = ?2 WHERE kind = ?1",
    )?
    .execute(params![name, now])?;
    Ok(1)
}

/// Records that the episode was looked at now (and restarts it from `restart`).
fn touch(
    conn: &Connection,
    name: &str,
    restart: Option<Timestamp>,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE alert_episodes SET checked_at = ?2, since = coalesce(?3, since) WHERE kind = ?1",
    )?
    .execute(params![name, now, restart])?;
    Ok(())
}
