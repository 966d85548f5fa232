//! The agent's state in the Prometheus text format: `crawler-agent metrics` and the
//! running agent's `/metrics` endpoint render the same text here.
//!
//! Gauges come from the database (jobs by status, connections, queue age, sizes),
//! counters from the figures the running agent persists every 5 s in
//! `agent_runtime` (they restart from zero with the agent, as Prometheus expects; their
//! names are in [`super::counters`]). Rows that retention prunes (job events, errors)
//! are exported as gauges of what is retained.

use super::counters;
use super::{jobs, runtime};
use rusqlite::OptionalExtension;
use std::fmt::Write as _;

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(
            self.0,
            "# HELP crawler_agent_{name} {help}\n# TYPE crawler_agent_{name} {kind}"
        );
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels = if labels.is_empty() {
            String::new()
        } else {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}=\"{}\"",
                        v.replace('\\', "\\\\")
                            .replace('"', "\\\"")
                            .replace('\n', "\\n")
                    )
                })
                .collect();
            format!("{{{}}}", inner.join(","))
        };
        let _ = writeln!(self.0, "crawler_agent_{name}{labels} {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

fn grouped(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<Vec<(Vec<String>, f64)>> {
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

/// The whole exposition; `up` says whether the agent answers on its socket.
pub fn render(
    conn: &rusqlite::Connection,
    database: &std::path::Path,
    up: bool,
) -> rusqlite::Result<String> {
    let mut out = Out(String::new());
    out.one(
        "up",
        "gauge",
        "1 when the agent accepts connections on its socket.",
        f64::from(u8::from(up)),
    );

    out.family("jobs", "gauge", "Jobs by status.");
    for (status, n) in jobs::counts(conn)? {
        out.sample("jobs", &[("status", status.as_str())], n as f64);
    }
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
    out.one(
        "oldest_queued_job_age_seconds",
        "gauge",
        "Age of the oldest queued job (0 when none).",
        oldest.unwrap_or(0.0),
    );
    let paused: f64 =
        conn.query_row("SELECT count(*) FROM paused_entity_types", [], |r| r.get(0))?;
    out.one(
        "paused_entity_types",
        "gauge",
        "Entity types not dispatched after 'Unknown task type'.",
        paused,
    );

    out.family(
        "connections",
        "gauge",
        "Open crawler connections, live or stale (no heartbeat lately).",
    );
    let (stale, open): (f64, f64) = conn.query_row(
        "SELECT coalesce(sum(stale), 0), count(*) FROM live_connections",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    for (state, n) in [("live", open - stale), ("stale", stale)] {
        if n > 0.0 {
            out.sample("connections", &[("state", state)], n);
        }
    }

    out.family(
        "job_events_retained",
        "gauge",
        "Job transitions still retained, by event.",
    );
    for (labels, n) in grouped(
        conn,
        "SELECT event, count(*) FROM job_events GROUP BY event",
    )? {
        out.sample("job_events_retained", &[("event", &labels[0])], n);
    }
    out.family(
        "errors_retained",
        "gauge",
        "Error rows still retained, by category and severity.",
    );
    for (labels, n) in grouped(
        conn,
        "SELECT category, severity, count(*) FROM errors GROUP BY 1, 2",
    )? {
        out.sample(
            "errors_retained",
            &[("category", &labels[0]), ("severity", &labels[1])],
            n,
        );
    }
    out.family(
        "token_refreshes_total",
        "counter",
        "Token refreshes by trigger and outcome.",
    );
    for (labels, n) in grouped(
        conn,
        "SELECT trigger, outcome, count(*) FROM token_refreshes GROUP BY 1, 2",
    )? {
        out.sample(
            "token_refreshes_total",
            &[("trigger", &labels[0]), ("outcome", &labels[1])],
            n,
        );
    }

    let size = |suffix: &str| {
        let mut p = database.to_path_buf().into_os_string();
        p.push(suffix);
        std::fs::metadata(p).map_or(0.0, |m| m.len() as f64)
    };
    out.one(
        "database_bytes",
        "gauge",
        "Size of the database file.",
        size(""),
    );
    out.one(
        "wal_bytes",
        "gauge",
        "Size of the write-ahead log.",
        size("-wal"),
    );

    if let Some(r) = runtime::load(conn)? {
        out.one(
            "runtime_age_seconds",
            "gauge",
            "Seconds since the running agent last wrote its figures (every 5 s).",
            runtime::age_seconds(&r),
        );
        out.one(
            "open_connections",
            "gauge",
            "Connections the agent is serving.",
            r.open_connections as f64,
        );
        out.one(
            "writer_queue",
            "gauge",
            "Operations waiting for the database writer.",
            r.writer_queue as f64,
        );
        let counter = |name: &str| r.counters.get(name).copied().unwrap_or(0) as f64;
        out.family(
            "messages_received_total",
            "counter",
            "Messages received from the crawler, by type.",
        );
        for (key, value) in r
            .counters
            .iter()
            .filter(|(k, _)| k.starts_with(counters::MESSAGES_RECEIVED))
        {
            out.sample(
                "messages_received_total",
                &[("type", &key[counters::MESSAGES_RECEIVED.len()..])],
                *value as f64,
            );
        }
        for (name, help) in [
            (counters::BYTES_RECEIVED, "Bytes received from crawlers."),
            (
                counters::JOBS_DISPATCHED,
                "Jobs handed out in job_response.",
            ),
            (counters::CONNECTIONS_ACCEPTED, "Connections accepted."),
            (
                counters::CONNECTIONS_REFUSED,
                "Connections refused (allow-lists, max_connections).",
            ),
            (counters::BAD_MESSAGES, "Messages that could not be parsed."),
            (
                counters::WRITER_BATCHES,
                "Transactions committed by the writer.",
            ),
            (
                counters::WRITER_OPERATIONS,
                "Operations applied by the writer.",
            ),
        ] {
            out.one(&format!("{name}_total"), "counter", help, counter(name));
        }
        out.one(
            "writer_commit_seconds_total",
            "counter",
            "Time spent in writer transactions.",
            counter(counters::WRITER_COMMIT_MICROS) / 1e6,
        );
        out.one(
            "writer_wal_hold_seconds_total",
            "counter",
            "Time bulk writes waited for the checkpointer so the WAL could start over.",
            counter(counters::WRITER_WAL_HOLD_MICROS) / 1e6,
        );
        out.one(
            "writer_last_batch_size",
            "gauge",
            "Operations in the writer's latest transaction.",
            counter(counters::WRITER_LAST_BATCH_SIZE),
        );
    }
    Ok(out.0)
}
