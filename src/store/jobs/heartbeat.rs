//! `heartbeat`: liveness, the crawler's figures, and restart detection. A crawler
//! process younger than a job's dispatch means that job died with the old process.

use super::recovery::{lose_aged, Aged, DispatchAges, Loss, WallClockOnly};
use crate::policy::Policy;
use crate::protocol::message::Heartbeat;
use crate::store::connections::{self, Traffic};
use crate::store::errors::{self, Category, ErrorRecord, Severity};
use crate::time::Timestamp;
use rusqlite::Connection;
use std::time::Duration;

/// Slack between a dispatch and the crawler's start, for clocks and rounding.
const RESTART_SLACK: Duration = Duration::from_secs(2);

pub fn on_heartbeat(
    c: &Connection,
    conn_id: i64,
    hb: &Heartbeat,
    traffic: Traffic,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<()> {
    on_heartbeat_aged(c, conn_id, hb, traffic, &WallClockOnly, policy, now)
}

/// [`on_heartbeat`], judging this run's dispatches by the monotonic clock (`ages`): a
/// job is lost only if it went out longer ago than the crawler process has run, by
/// monotonic time, so a wall-clock step either way never loses one. Jobs dispatched
/// before this run are judged by their stored wall-clock time.
pub fn on_heartbeat_aged(
    c: &Connection,
    conn_id: i64,
    hb: &Heartbeat,
    traffic: Traffic,
    ages: &dyn DispatchAges,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let news = connections::heartbeat(c, conn_id, hb, traffic, now)?;
    if let (Some(before), Some(uptime)) = (news.restarted_from, hb.uptime) {
        let message = format!("crawler restarted: uptime {uptime:.0}s after {before:.0}s");
        log::warn!("connection {conn_id}: {message}");
        let record =
            ErrorRecord::new(Category::Connection, Severity::Low, message).connection(conn_id);
        errors::insert(c, &record, now)?;
    }
    if let Some(uptime) = hb.uptime.filter(|u| u.is_finite() && *u >= 0.0) {
        let older_than = Duration::from_secs_f64(uptime.min(1e9)) + RESTART_SLACK;
        let loss = Loss::CrawlerRestarted {
            by: conn_id,
            started: now.minus(older_than),
        };
        lose_aged(c, loss, Some(Aged { ages, older_than }), policy, now)?;
    }
    Ok(())
}
