//! The event stream for `crawler-agent events`: job transitions (`job_events`) and
//! notification events (`events`) merged in time order, read after a cursor so that
//! `--follow` prints each row once.

use rusqlite::{params, Connection};
use serde::Serialize;

/// One line of the stream.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// `job` (a transition) or `event` (a notification event).
    pub source: &'static str,
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub subject: String,
    pub severity: Option<String>,
    pub message: String,
}

/// Where a reader of the stream is: the last row of each table it has seen.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor {
    pub job_event: i64,
    pub event: i64,
}

/// Rows at or after `since` and after `cursor`, oldest first, at most `limit` of each
/// table; the cursor moves past what is returned.
pub fn after(
    conn: &Connection,
    since: &str,
    cursor: &mut Cursor,
    limit: u32,
) -> rusqlite::Result<Vec<Item>> {
    let mut items: Vec<Item> = conn
        .prepare_cached(
            "SELECT id, at, event, job_id, coalesce(from_status, '') || ' -> ' || coalesce(to_status, '')
                    || coalesce(' ' || detail, '')
             FROM job_events WHERE id > ?1 AND at >= ?2 ORDER BY id LIMIT ?3",
        )?
        .query_map(params![cursor.job_event, since, limit], |r| {
            Ok(Item {
                source: "job",
                id: r.get(0)?,
                at: r.get(1)?,
                kind: r.get(2)?,
                subject: r.get(3)?,
                severity: None,
                message: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let events: Vec<Item> = conn
        .prepare_cached(
            "SELECT id, at, kind, subject, severity, message FROM events
             WHERE id > ?1 AND at >= ?2 ORDER BY id LIMIT ?3",
        )?
        .query_map(params![cursor.event, since, limit], |r| {
            Ok(Item {
                source: "event",
                id: r.get(0)?,
                at: r.get(1)?,
                kind: r.get(2)?,
                subject: r.get(3)?,
                severity: r.get(4)?,
                message: r.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    if let Some(last) = items.last() {
        cursor.job_event = last.id;
    }
    if let Some(last) = events.last() {
        cursor.event = last.id;
    }
    items.extend(events);
    items.sort_by(|a, b| a.at.cmp(&b.at).then(a.id.cmp(&b.id)));
    Ok(items)
}
