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

/// How old the running agent's row may get before its writer counts as stuck: three
/// of the monitor's 5 s reports. The row is written through the writer, so while a
/// batch keeps failing (disk full, an operator's write lock) nothing rewrites it.
pub const STALLED_AFTER: std::time::Duration = std::time::Duration::from_secs(15);

/// The age of `r` when it says the writer of the agent that holds `database` is stuck:
/// older than [`STALLED_AFTER`] and written by that agent. A row left by an earlier
/// agent (another pid than the one in `<database>.lock`) is not its to write yet: a
/// freshly started agent writes its first row within a second or two, and until
/// then nothing is claimed. Only meaningful while the agent answers on its socket.
pub fn writer_stalled(r: &Runtime, database: &std::path::Path) -> Option<f64> {
    let age = age_seconds(r);
    let stale = age > STALLED_AFTER.as_secs_f64();
    (stale && holder_pid(database).is_none_or(|pid| pid == r.pid)).then_some(age)
}

/// The pid the running agent wrote into its lock file ("agent pid N (socket S)"), if
/// the file can be read and says one.
fn holder_pid(database: &std::path::Path) -> Option<u32> {
    lock_holder(database).map(|(pid, _)| pid)
}

/// The pid and socket the last agent on `database` wrote into its lock file ("agent
/// pid N (socket S)"), if the file can be read and says so. At most 4 KiB of it is
/// read. The file outlives its agent: whether that pid still runs is the caller's
/// question.
pub fn lock_holder(database: &std::path::Path) -> Option<(u32, String)> {
    use std::io::Read;
    let file = std::fs::File::open(crate::store::lock::lock_path(database)).ok()?;
    let mut text = String::new();
    file.take(4096).read_to_string(&mut text).ok()?;
    let line = text.lines().next()?;
    let rest = &line[line.find("pid ")? + 4..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let socket = rest
        .split_once("(socket ")
        .and_then(|(_, s)| s.strip_suffix(')'))
        .unwrap_or("")
        .to_string();
    Some((digits.parse().ok()?, socket))
}

/// When an agent last wrote to this database, as far as the agent alone writes: its
/// runtime row (rewritten every 5 s while it runs), and the connections it recorded
/// (opened, heartbeat, closed). Commands of the CLI write none of these. Each is one
/// index seek; `None` when no agent ever wrote.
pub fn last_agent_write(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT max(t) FROM (
            SELECT updated_at AS t FROM agent_runtime WHERE id = 1
            UNION ALL SELECT max(last_heartbeat_at) FROM connections
                      WHERE last_heartbeat_at IS NOT NULL
            UNION ALL SELECT max(closed_at) FROM connections WHERE closed_at IS NOT NULL
            UNION ALL SELECT opened_at FROM connections
                      WHERE id = (SELECT max(id) FROM connections))",
        [],
        |r| r.get(0),
    )
}
