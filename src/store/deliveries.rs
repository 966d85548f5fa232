//! Delivery state of the notification outbox (`notify_deliveries`, `notify_windows`,
//! `notify_cursor`): which events go to which sink, the cooldown with its digest, and
//! the retry schedule. The delivery task ([`crate::notify`]) calls these through the
//! writer; nothing here sends anything.
//!
//! Fan-out: events after the cursor are matched against the sinks. Within
//! `notify.cooldown` of the last message for a (sink, kind, topic) an event is only
//! counted in its window; when the window ends with events held back, one digest
//! delivery sums them up. So a crash loop or a thousand failing jobs of one type are
//! one message per cooldown per sink.

use crate::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use std::time::Duration;

/// Events read per fan-out round (the rest wait for the next round).
const FAN_OUT_BATCH: i64 = 1000;

/// A sink as the fan-out sees it: its label and the kinds it wants.
pub struct Filter<'a> {
    pub name: &'a str,
    pub wants: &'a dyn Fn(&str) -> bool,
}

/// Hands the events after the cursor to the sinks, and turns ended cooldown windows
/// that held events back into digest deliveries. Returns the deliveries created.
pub fn fan_out(
    conn: &Connection,
    sinks: &[Filter<'_>],
    cooldown: Duration,
    now: Timestamp,
) -> rusqlite::Result<usize> {
    let cursor: Option<i64> = conn
        .query_row(
            "SELECT last_event_id FROM notify_cursor WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let Some(cursor) = cursor else {
        // First run: earlier history is not replayed to sinks configured now.
        conn.execute(
            "INSERT INTO notify_cursor (id, last_event_id) SELECT 1, coalesce(max(id), 0) FROM events",
            [],
        )?;
        return Ok(0);
    };
    let events: Vec<(i64, String, String)> = conn
        .prepare_cached("SELECT id, kind, topic FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")?
        .query_map(params![cursor, FAN_OUT_BATCH], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let window_start = now.minus(cooldown);
    // Ended windows first, so an event arriving after a window ended never resets a
    // count that was not yet sent as a digest.
    let mut created = flush_windows(conn, window_start, now)?;
    for (id, kind, topic) in &events {
        for sink in sinks.iter().filter(|s| (s.wants)(kind)) {
            let open: Option<String> = conn
                .prepare_cached(
                    "SELECT opened_at FROM notify_windows WHERE sink = ?1 AND kind = ?2 AND topic = ?3",
                )?
                .query_row(params![sink.name, kind, topic], |r| r.get(0))
                .optional()?;
            let in_cooldown = kind != "test"
                && open.is_some_and(|at| at.as_str() > window_start.to_string().as_str());
            if in_cooldown {
                conn.prepare_cached(
                    "UPDATE notify_windows SET suppressed = suppressed + 1, last_event_id = ?4
                     WHERE sink = ?1 AND kind = ?2 AND topic = ?3",
                )?
                .execute(params![sink.name, kind, topic, id])?;
                continue;
            }
            insert(conn, *id, sink.name, 0, None, now)?;
            created += 1;
            conn.prepare_cached(
                "INSERT INTO notify_windows (sink, kind, topic, opened_at, suppressed, last_event_id)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5)
                 ON CONFLICT (sink, kind, topic) DO UPDATE SET opened_at = excluded.opened_at,
                     suppressed = 0, last_event_id = excluded.last_event_id",
            )?
            .execute(params![sink.name, kind, topic, now, id])?;
        }
    }
    if let Some((last, _, _)) = events.last() {
        conn.execute(
            "UPDATE notify_cursor SET last_event_id = ?1 WHERE id = 1",
            [last],
        )?;
    }
    Ok(created)
}

/// Windows past their cooldown: a digest for those that held events back (which
/// opens a new window), and the idle ones are dropped.
fn flush_windows(
    conn: &Connection,
    window_start: Timestamp,
    now: Timestamp,
) -> rusqlite::Result<usize> {
    let ended: Vec<(String, String, String, String, i64, i64)> = conn
        .prepare_cached(
            "SELECT sink, kind, topic, opened_at, suppressed, last_event_id FROM notify_windows
             WHERE opened_at <= ?1 AND suppressed > 0",
        )?
        .query_map([window_start], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    for (sink, kind, topic, opened_at, suppressed, last) in &ended {
        insert(conn, *last, sink, *suppressed, Some(opened_at), now)?;
        conn.prepare_cached(
            "UPDATE notify_windows SET opened_at = ?4, suppressed = 0 WHERE sink = ?1 AND kind = ?2 AND topic = ?3",
        )?
        .execute(params![sink, kind, topic, now])?;
    }
    conn.prepare_cached("DELETE FROM notify_windows WHERE opened_at <= ?1 AND suppressed = 0")?
        .execute([window_start])?;
    Ok(ended.len())
}

fn insert(
    conn: &Connection,
    event_id: i64,
    sink: &str,
    digest: i64,
    digest_since: Option<&str>,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO notify_deliveries (event_id, sink, digest, digest_since, status, next_at, created_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
    )?
    .execute(params![event_id, sink, digest, digest_since, now])?;
    Ok(())
}

/// A delivery that is due, with its event.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: i64,
    pub sink: String,
    pub attempts: u32,
    pub digest: i64,
    pub digest_since: Option<String>,
    pub event: Event,
}

/// An outbox row.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub subject: String,
    pub severity: String,
    pub message: String,
    /// JSON text.
    pub details: String,
}

/// Pending deliveries whose time has come, for the named sinks, oldest first.
pub fn due(
    conn: &Connection,
    sinks: &[&str],
    now: Timestamp,
    limit: usize,
) -> rusqlite::Result<Vec<Due>> {
    let rows = conn
        .prepare_cached(
            "SELECT d.id, d.sink, d.attempts, d.digest, d.digest_since,
                    e.id, e.at, e.kind, e.subject, e.severity, e.message, e.details
             FROM notify_deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.status = 'pending' AND d.next_at <= ?1 ORDER BY d.next_at, d.id LIMIT 256",
        )?
        .query_map([now], |r| {
            Ok(Due {
                id: r.get(0)?,
                sink: r.get(1)?,
                attempts: r.get(2)?,
                digest: r.get(3)?,
                digest_since: r.get(4)?,
                event: Event {
                    id: r.get(5)?,
                    at: r.get(6)?,
                    kind: r.get(7)?,
                    subject: r.get(8)?,
                    severity: r.get(9)?,
                    message: r.get(10)?,
                    details: r.get(11)?,
                },
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows
        .into_iter()
        .filter(|d| sinks.contains(&d.sink.as_str()))
        .take(limit)
        .collect())
}

/// The outcome of one try: sent, or retried at `retry_at` (`None`: given up).
pub fn finish(
    conn: &Connection,
    id: i64,
    outcome: Result<(), &str>,
    retry_at: Option<Timestamp>,
    now: Timestamp,
) -> rusqlite::Result<()> {
    match (outcome, retry_at) {
        (Ok(()), _) => conn
            .prepare_cached(
                "UPDATE notify_deliveries SET status = 'sent', attempts = attempts + 1, sent_at = ?2,
                                              last_error = NULL WHERE id = ?1",
            )?
            .execute(params![id, now])?,
        (Err(e), Some(at)) => conn
            .prepare_cached(
                "UPDATE notify_deliveries SET attempts = attempts + 1, next_at = ?2, last_error = ?3
                 WHERE id = ?1",
            )?
            .execute(params![id, at, e])?,
        (Err(e), None) => conn
            .prepare_cached(
                "UPDATE notify_deliveries SET status = 'failed', attempts = attempts + 1,
                                              last_error = ?2 WHERE id = ?1",
            )?
            .execute(params![id, e])?,
    };
    Ok(())
}
