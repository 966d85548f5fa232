//! The running agent's persisted figures (`agent_runtime`), as `status` and `metrics`
//! read them; [`crate::store::runtime`] writes the row.

use crate::store::runtime::Runtime;
use crate::time::Timestamp;
use rusqlite::{Connection, OptionalExtension};

/// The row the running agent rewrites every few seconds, if any agent ever ran.
pub fn load(conn: &Connection) -> rusqlite::Result<Option<Runtime>> {
    conn.query_row(
        "SELECT pid, version, started_at, updated_at, open_connections, writer_queue, counters
         FROM agent_runtime WHERE id = 1",
        [],
        |r| {
            let counters: String = r.get(6)?;
            Ok(Runtime {
                pid: r.get(0)?,
                version: r.get(1)?,
                started_at: r.get(2)?,
                updated_at: r.get(3)?,
                open_connections: r.get::<_, i64>(4)? as u64,
                writer_queue: r.get::<_, i64>(5)? as u64,
                counters: serde_json::from_str(&counters).unwrap_or_default(),
            })
        },
    )
    .optional()
}

/// Seconds since the row was written (a running agent rewrites it every 5 s).
pub fn age_seconds(r: &Runtime) -> f64 {
    Timestamp::parse(&r.updated_at).map_or(f64::INFINITY, |t| t.age().as_secs_f64())
}
