//! The `connections` table: one row per crawler connection, with its latest heartbeat.

use crate::protocol::message::Heartbeat;
use crate::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use std::time::Duration;

/// The peer's identity from SO_PEERCRED.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer {
    pub pid: Option<i32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Counters kept in memory by the connection task and written at heartbeats and close.
#[derive(Debug, Clone, Copy, Default)]
pub struct Traffic {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub job_requests: u64,
}

/// Records a new connection under the id the server allocated for it.
pub fn open(conn: &Connection, id: i64, peer: Peer, now: Timestamp) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO connections (id, opened_at, peer_pid, peer_uid, peer_gid) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, now, peer.pid, peer.uid, peer.gid])?;
    Ok(())
}

/// The first connection id this run may use.
pub fn next_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT coalesce(max(id), 0) + 1 FROM connections",
        [],
        |r| r.get(0),
    )
}

/// Records a connection's end. A probe (the agent's own uid, closed without sending
/// a byte: the CLI's `status`/`metrics` asking whether an agent answers) is not a
/// crawler connection: its row is removed instead, so crawler views never show it.
pub fn close(
    conn: &Connection,
    id: i64,
    reason: &str,
    t: Traffic,
    now: Timestamp,
) -> rusqlite::Result<()> {
    if t.bytes_in == 0 {
        let own_uid = nix::unistd::geteuid().as_raw();
        let removed = conn
            .prepare_cached("DELETE FROM connections WHERE id = ?1 AND peer_uid = ?2")?
            .execute(params![id, own_uid])?;
        if removed > 0 {
            log::debug!("connection {id}: a probe by the agent's own uid; not recorded");
            return Ok(());
        }
    }
    record_close(conn, id, reason, t, now)
}

/// Writes the close on the connection's row.
fn record_close(
    conn: &Connection,
    id: i64,
    reason: &str,
    t: Traffic,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE connections SET closed_at = ?2, close_reason = ?3, bytes_in = ?4, bytes_out = ?5,
                                messages_in = ?6, messages_out = ?7, job_requests = ?8, stale = 0
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        now,
        reason,
        t.bytes_in as i64,
        t.bytes_out as i64,
        t.messages_in as i64,
        t.messages_out as i64,
        t.job_requests as i64
    ])?;
    Ok(())
}

/// Records the close unless the connection is already closed (after a connection task
/// panicked, whatever it managed to record stays). Never taken for a probe: its
/// traffic is unknown, and a panicked connection is on record whatever it sent.
pub fn close_if_open(
    conn: &Connection,
    id: i64,
    reason: &str,
    t: Traffic,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let open: bool = conn
        .prepare_cached("SELECT count(*) FROM connections WHERE id = ?1 AND closed_at IS NULL")?
        .query_row([id], |r| r.get(0))?;
    if open {
        record_close(conn, id, reason, t, now)?;
    }
    Ok(())
}

/// Connections a previous run left open (it crashed or was killed) are closed now.
pub fn close_leftovers(conn: &Connection, now: Timestamp) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE connections SET closed_at = ?1, close_reason = 'agent restarted', stale = 0
         WHERE closed_at IS NULL",
        [now],
    )
}

/// What a heartbeat tells us beyond liveness.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeartbeatNews {
    /// The crawler's uptime went down: a new crawler process.
    pub restarted_from: Option<f64>,
}

/// Stores the heartbeat on the connection. A crawler uptime lower than the last one
/// seen from this machine's crawler (on any connection) means it restarted.
pub fn heartbeat(
    conn: &Connection,
    id: i64,
    hb: &Heartbeat,
    traffic: Traffic,
    now: Timestamp,
) -> rusqlite::Result<HeartbeatNews> {
    let previous: Option<(i64, Option<f64>, Option<String>)> = conn
        .prepare_cached(
            "SELECT id, crawler_uptime_s, last_heartbeat_at FROM connections
             WHERE last_heartbeat_at IS NOT NULL ORDER BY last_heartbeat_at DESC LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let restarted_from = match (previous, hb.uptime) {
        (Some((_, Some(before), Some(at))), Some(now_up)) => {
            // Expected uptime now = uptime then + time since; a lower value is a restart.
            let elapsed = Timestamp::parse(&at).map_or(0.0, |t| t.age().as_secs_f64());
            (now_up + 1.0 < before + elapsed && now_up < before).then_some(before)
        }
        _ => None,
    };
    conn.prepare_cached(
        "UPDATE connections SET heartbeats = heartbeats + 1, last_heartbeat_at = ?2, stale = 0,
                                crawler_uptime_s = ?3, crawler_status = ?4, crawler_memory = ?5,
                                bytes_in = ?6, bytes_out = ?7, messages_in = ?8, messages_out = ?9,
                                job_requests = ?10
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        now,
        hb.uptime,
        hb.system_status,
        hb.memory_usage.as_ref().map(|raw| raw.get()),
        traffic.bytes_in as i64,
        traffic.bytes_out as i64,
        traffic.messages_in as i64,
        traffic.messages_out as i64,
        traffic.job_requests as i64
    ])?;
    Ok(HeartbeatNews { restarted_from })
}

/// Marks live connections without a heartbeat for `stale_after` as stale (never
/// closes them: spec §1.2). Returns the ids that just became stale.
pub fn mark_stale(conn: &Connection, cutoff: Timestamp) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE connections SET stale = 1
         WHERE closed_at IS NULL AND stale = 0 AND coalesce(last_heartbeat_at, opened_at) < ?1
         RETURNING id",
    )?;
    let ids = stmt.query_map([cutoff], |r| r.get(0))?;
    ids.collect()
}

/// [`mark_stale`] by monotonic time: a live connection is stale when `silent_for`
/// (the monotonic time since it was last heard from in this run) exceeds
/// `stale_after`; a connection without a monotonic record falls back to its stored
/// times against `cutoff`. A wall-clock step then marks nothing stale by itself.
pub fn mark_stale_aged(
    conn: &Connection,
    cutoff: Timestamp,
    silent_for: &dyn Fn(i64) -> Option<Duration>,
    stale_after: Duration,
) -> rusqlite::Result<Vec<i64>> {
    let live: Vec<(i64, Option<String>)> = conn
        .prepare_cached(
            "SELECT id, coalesce(last_heartbeat_at, opened_at) FROM connections
             WHERE closed_at IS NULL AND stale = 0",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut marked = Vec::new();
    for (id, heard_at) in live {
        let stale = match silent_for(id) {
            Some(silent) => silent > stale_after,
            None => heard_at
                .as_deref()
                .and_then(Timestamp::parse)
                .is_some_and(|t| t < cutoff),
        };
        if stale {
            conn.prepare_cached("UPDATE connections SET stale = 1 WHERE id = ?1")?
                .execute([id])?;
            marked.push(id);
        }
    }
    Ok(marked)
}
