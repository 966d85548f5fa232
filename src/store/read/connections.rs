//! Open crawler connections with their latest heartbeat, for `status`.

use rusqlite::Connection;
use serde::Serialize;

/// A connection still open, live or stale.
#[derive(Debug, Serialize)]
pub struct LiveConnection {
    pub id: i64,
    pub opened_at: String,
    pub peer_pid: Option<i64>,
    pub peer_uid: Option<i64>,
    pub stale: bool,
    pub heartbeats: i64,
    pub last_heartbeat_at: Option<String>,
    pub seconds_since_heartbeat: Option<f64>,
    pub crawler_uptime_s: Option<f64>,
    pub crawler_status: Option<String>,
    pub messages_in: i64,
}

pub fn live(conn: &Connection) -> rusqlite::Result<Vec<LiveConnection>> {
    let mut stmt = conn.prepare(
        "SELECT id, opened_at, peer_pid, peer_uid, stale, heartbeats, last_heartbeat_at,
                seconds_since_heartbeat, crawler_uptime_s, crawler_status, messages_in
         FROM live_connections ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(LiveConnection {
            id: r.get(0)?,
            opened_at: r.get(1)?,
            peer_pid: r.get(2)?,
            peer_uid: r.get(3)?,
            stale: r.get(4)?,
            heartbeats: r.get(5)?,
            last_heartbeat_at: r.get(6)?,
            seconds_since_heartbeat: r.get(7)?,
            crawler_uptime_s: r.get(8)?,
            crawler_status: r.get(9)?,
            messages_in: r.get(10)?,
        })
    })?;
    rows.collect()
}
