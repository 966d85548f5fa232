//! The agent's state as Prometheus metric families: `crawler-agent metrics` and the
//! running agent's `/metrics` endpoint read the same families here and hand them to
//! [`crate::exposition`], which writes the text.
//!
//! Gauges come from the database (jobs by status and by type, connections, the
//! crawler's last activity, credentials, queue age, sizes), counters from the figures
//! the running agent persists every 5 s in `agent_runtime` (they restart from zero
//! with the agent, as Prometheus expects; their names are in [`super::counters`]).
//! Rows that retention prunes (job events, errors) are exported as gauges of what is
//! retained, plus the time of the newest error per category (for alert rules).
//!
//! A labelled series whose label values are known in advance is present at 0 rather
//! than missing (an alert on `rate(...)` or `> 0` needs the series to exist): jobs per
//! status, per entity type (every type the protocol knows) and status, errors per
//! category and severity, token refreshes per trigger and outcome, messages per
//! inbound type; timestamps of what never happened are 0. Label values only the data
//! knows (credential names, job event kinds, sink names) appear once they exist.

use super::{jobs, runtime};
use crate::exposition::{Family, Kind, Value};
use crate::protocol::EntityType;
use crate::store::errors::{Category, Severity};
use crate::store::jobs::Status;
use rusqlite::{Connection, OptionalExtension};

#[path = "metrics_agent.rs"]
mod agent;

/// Seconds since the Unix epoch of an ISO-8601 column, in SQL.
macro_rules! epoch {
    ($col:expr) => {
        concat!("((julianday(", $col, ") - 2440587.5) * 86400.0)")
    };
}

/// Rows of `sql` whose last column is the value and the others label values.
fn grouped(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<(Vec<String>, f64)>> {
    let mut stmt = conn.prepare(sql)?;
    let columns = stmt.column_count();
    let rows = stmt.query_map([], |r| {
        let labels = (0..columns - 1)
            .map(|i| r.get::<_, String>(i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((labels, r.get::<_, f64>(columns - 1)?))
    })?;
    rows.collect()
}

/// `family`, plus a 0 sample for each label combination in `expected` that `sql`
/// returned no row for (expected ones first, in their order).
fn zero_filled(
    conn: &Connection,
    name: &str,
    help: &'static str,
    names: &[&'static str],
    sql: &str,
    expected: Vec<Vec<String>>,
) -> rusqlite::Result<Family> {
    let mut rows = grouped(conn, sql)?;
    let mut f = Family::new(name, Kind::Gauge, help);
    for values in expected {
        let n = match rows.iter().position(|(v, _)| *v == values) {
            Some(at) => rows.remove(at).1,
            None => 0.0,
        };
        f.sample(
            names.iter().copied().zip(values).collect(),
            count_or_float(n),
        );
    }
    for (values, n) in rows {
        f.sample(
            names.iter().copied().zip(values).collect(),
            count_or_float(n),
        );
    }
    Ok(f)
}

/// Every pair of `a` and `b`, as label values.
fn pairs(a: &[&str], b: &[&str]) -> Vec<Vec<String>> {
    a.iter()
        .flat_map(|x| b.iter().map(move |y| vec![x.to_string(), y.to_string()]))
        .collect()
}

/// A family whose samples are the rows of `sql`, labelled by `names` in order.
fn family(
    conn: &Connection,
    name: &str,
    kind: Kind,
    help: &'static str,
    names: &[&'static str],
    sql: &str,
) -> rusqlite::Result<Family> {
    let mut f = Family::new(name, kind, help);
    for (values, n) in grouped(conn, sql)? {
        let labels = names.iter().copied().zip(values).collect();
        f.sample(labels, count_or_float(n));
    }
    Ok(f)
}

/// Whole numbers print without a fraction (`3`, not `3.0`).
pub(super) fn count_or_float(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::Int(n as i64)
    } else {
        Value::Float(n)
    }
}

pub(super) fn gauge(name: &str, help: &'static str, value: f64) -> Family {
    Family::one(name, Kind::Gauge, help, count_or_float(value))
}

/// Every family; `up` says whether the agent answers on its socket.
pub fn families(
    conn: &Connection,
    database: &std::path::Path,
    up: bool,
) -> rusqlite::Result<Vec<Family>> {
    let mut out = vec![gauge(
        "up",
        "1 when the agent accepts connections on its socket.",
        f64::from(u8::from(up)),
    )];
    let mut by_status = Family::new("jobs", Kind::Gauge, "Jobs by status.");
    for (status, n) in jobs::counts(conn)? {
        by_status.sample(vec![("status", status.as_str().to_string())], Value::Int(n));
    }
    out.push(by_status);
    let types: Vec<&str> = EntityType::ALL.iter().map(|t| t.as_str()).collect();
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    out.push(zero_filled(
        conn,
        "queue_jobs",
        "Jobs by entity type and status (the queue's depth per type).",
        &["entity_type", "status"],
        "SELECT entity_type, status, sum(jobs) FROM job_counts GROUP BY 1, 2",
        pairs(&types, &statuses),
    )?);
    // The first queued job added is the oldest (rows are added in time order): one
    // entry of `jobs_status`, where min(created_at) would visit every queued row.
    let oldest: Option<f64> = conn
        .query_row(
            "SELECT (julianday('now') - julianday(created_at)) * 86400 FROM jobs
             WHERE status = 'queued' ORDER BY rowid LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    out.push(gauge(
        "oldest_queued_job_age_seconds",
        "Age of the oldest queued job (0 when none).",
        oldest.unwrap_or(0.0),
    ));
    let paused: f64 =
        conn.query_row("SELECT count(*) FROM paused_entity_types", [], |r| r.get(0))?;
    out.push(gauge(
        "paused_entity_types",
        "Entity types not dispatched after 'Unknown task type'.",
        paused,
    ));
    out.extend(crawler(conn)?);
    out.push(credentials(conn)?);
    out.extend(credential_rollup(conn)?);
    out.push(family(
        conn,
        "job_events_retained",
        Kind::Gauge,
        "Job transitions still retained, by event.",
        &["event"],
        "SELECT event, rows FROM job_event_counts WHERE rows != 0",
    )?);
    let categories: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
    let severities: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
    out.push(zero_filled(
        conn,
        "errors_retained",
        "Error rows still retained, by category and severity.",
        &["category", "severity"],
        "SELECT category, severity, rows FROM error_counts",
        pairs(&categories, &severities),
    )?);
    out.push(zero_filled(
        conn,
        "last_error_timestamp_seconds",
        "When the newest retained error of each category was recorded (Unix seconds; 0: none retained).",
        &["category"],
        // One seek of `errors_category` per category that has rows.
        concat!(
            "SELECT category, (SELECT ",
            epoch!("max(at)"),
            " FROM errors WHERE errors.category = error_counts.category) FROM error_counts",
            " WHERE rows != 0 GROUP BY category"
        ),
        categories.iter().map(|c| vec![c.to_string()]).collect(),
    )?);
    let mut refreshes = zero_filled(
        conn,
        "token_refreshes",
        "Token refreshes by trigger and outcome.",
        &["trigger", "outcome"],
        "SELECT trigger, outcome, count(*) FROM token_refreshes GROUP BY 1, 2",
        pairs(&["crawler", "dispatch"], &["refreshed", "served", "failed"]),
    )?;
    refreshes.kind = Kind::Counter;
    out.push(refreshes);

    out.push(family(
        conn,
        "notifications",
        Kind::Counter,
        "Notification deliveries by sink and outcome (sent, failed: given up).",
        &["sink", "outcome"],
        "SELECT sink, status, count(*) FROM notify_deliveries WHERE status != 'pending' GROUP BY 1, 2",
    )?);
    out.push(family(
        conn,
        "notifications_pending",
        Kind::Gauge,
        "Notification deliveries waiting for their (next) try, by sink.",
        &["sink"],
        "SELECT sink, count(*) FROM notify_deliveries WHERE status = 'pending' GROUP BY 1",
    )?);
    let size = |suffix: &str| {
        let mut p = database.to_path_buf().into_os_string();
        p.push(suffix);
        std::fs::metadata(p).map_or(0.0, |m| m.len() as f64)
    };
    out.push(gauge(
        "database_bytes",
        "Size of the database file.",
        size(""),
    ));
    out.push(gauge(
        "wal_bytes",
        "Size of the write-ahead log.",
        size("-wal"),
    ));
    let figures = runtime::load(conn)?;
    let stalled = up
        && figures
            .as_ref()
            .is_some_and(|r| runtime::writer_stalled(r, database).is_some());
    out.push(gauge(
        "writer_stalled",
        "1 when the agent answers but has written nothing for 15 s: its database writer is stuck.",
        f64::from(u8::from(stalled)),
    ));
    if let Some(r) = figures {
        out.extend(agent::figures(&r));
    }
    Ok(out)
}

/// Whether a crawler is connected, and when it was last heard from. A connection
/// counts once it has sent a heartbeat or stayed 2 s: `status` and `metrics` probe
/// the socket with a connection that lives for milliseconds.
fn crawler(conn: &Connection) -> rusqlite::Result<Vec<Family>> {
    let connections = family(
        conn,
        "connections",
        Kind::Gauge,
        "Open crawler connections, live or stale (no heartbeat lately).",
        &["state"],
        "SELECT CASE stale WHEN 1 THEN 'stale' ELSE 'live' END, count(*) FROM live_connections GROUP BY 1",
    )?;
    let (live, last): (f64, Option<f64>) = conn.query_row(
        concat!(
            "SELECT (SELECT count(*) FROM connections WHERE closed_at IS NULL AND stale = 0 ",
            "AND (heartbeats > 0 OR opened_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-2 seconds'))), (SELECT ",
            epoch!("max(max(coalesce(last_heartbeat_at, opened_at), coalesce(closed_at, opened_at)))"),
            " FROM connections)"
        ),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut out = vec![
        connections,
        gauge(
            "crawler_connected",
            "1 when a crawler is connected (heartbeat or open 2 s) and not stale.",
            f64::from(u8::from(live > 0.0)),
        ),
    ];
    let mut activity = Family::new(
        "crawler_last_activity_timestamp_seconds",
        Kind::Gauge,
        "When a crawler was last heard from: connect, heartbeat or close (Unix seconds; 0: never).",
    );
    activity.sample(Vec::new(), count_or_float(last.unwrap_or(0.0)));
    out.push(activity);
    Ok(out)
}

/// Each credential's state, one-hot: `ok`, `expired` (the token's expiry has passed),
/// `refresh_failed` (its latest refresh failed). Never a secret.
fn credentials(conn: &Connection) -> rusqlite::Result<Family> {
    family(
        conn,
        "credential_state",
        Kind::Gauge,
        "1 for each credential's current state: ok, expired or refresh_failed.",
        &["credential", "state"],
        "SELECT c.name, s.state,
                CASE WHEN s.state = (
                    CASE WHEN (SELECT outcome FROM token_refreshes
                               WHERE id = (SELECT max(id) FROM token_refreshes WHERE credential_id = c.id)) = 'failed'
                              THEN 'refresh_failed'
                         WHEN c.expires_at IS NOT NULL
                              AND c.expires_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now') THEN 'expired'
                         ELSE 'ok' END) THEN 1 ELSE 0 END
         FROM credentials c,
              (SELECT 'ok' AS state UNION ALL SELECT 'expired' UNION ALL SELECT 'refresh_failed') s
         ORDER BY c.name, s.state",
    )
}

/// Per credential: jobs by state, items processed, and whether its token can go out
/// (the `credential_rollup` view).
fn credential_rollup(conn: &Connection) -> rusqlite::Result<Vec<Family>> {
    let rollup = super::credentials::rollup(conn)?;
    let mut jobs = Family::new(
        "credential_jobs",
        Kind::Gauge,
        "Jobs per credential by state (running: assigned or running).",
    );
    let mut items = Family::new(
        "credential_items_processed",
        Kind::Gauge,
        "Items reported per credential (finished jobs' finalCounts, latest progress of jobs in flight).",
    );
    let mut unusable = Family::new(
        "credential_unusable",
        Kind::Gauge,
        "1 when a credential's token is empty or expired and could not be refreshed: its jobs wait.",
    );
    for c in &rollup {
        for (state, n) in [
            ("queued", c.queued),
            ("running", c.running),
            ("finished", c.finished),
            ("failed", c.failed),
            ("cancelled", c.cancelled),
        ] {
            let labels = vec![("credential", c.name.clone()), ("state", state.to_string())];
            jobs.sample(labels, Value::Int(n));
        }
        let credential = vec![("credential", c.name.clone())];
        items.sample(credential.clone(), Value::Int(c.items_processed));
        unusable.sample(credential, Value::Int(i64::from(!c.usable)));
    }
    Ok(vec![jobs, items, unusable])
}
