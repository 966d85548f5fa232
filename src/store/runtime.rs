//! `agent_runtime`: the running agent's own figures, one row rewritten every few
//! seconds, so that the CLI (`metrics`, `status`) can see them without talking to it.

use rusqlite::{params, Connection};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Runtime {
    pub pid: u32,
    pub version: String,
    pub started_at: String,
    pub updated_at: String,
    pub open_connections: u64,
    pub writer_queue: u64,
    pub counters: BTreeMap<String, u64>,
}

pub fn save(conn: &Connection, r: &Runtime) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO agent_runtime (id, pid, version, started_at, updated_at, open_connections,
                                    writer_queue, counters)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, version = excluded.version,
             started_at = excluded.started_at, updated_at = excluded.updated_at,
             open_connections = excluded.open_connections, writer_queue = excluded.writer_queue,
             counters = excluded.counters",
    )?
    .execute(params![
        r.pid,
        r.version,
        r.started_at,
        r.updated_at,
        r.open_connections as i64,
        r.writer_queue as i64,
        serde_json::to_string(&r.counters).unwrap_or_else(|_| "{}".into())
    ])?;
    Ok(())
}
