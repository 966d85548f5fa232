//! The running agent's own figures as metric families: what it persists every 5 s in
//! `agent_runtime` (connections, writer queue, counters), for [`super::families`].

use super::{count_or_float, gauge};
use crate::exposition::{Family, Kind, Value};
use crate::store::read::{counters, runtime};

use crate::protocol::message::TYPE_NAMES as INBOUND_TYPES;

/// The running agent's own figures, as last persisted.
pub(super) fn figures(r: &crate::store::runtime::Runtime) -> Vec<Family> {
    let counter = |name: &str| r.counters.get(name).copied().unwrap_or(0) as f64;
    let mut out = vec![
        gauge(
            "runtime_age_seconds",
            "Seconds since the running agent last wrote its figures (every 5 s).",
            runtime::age_seconds(r),
        ),
        gauge(
            "open_connections",
            "Connections the agent is serving.",
            r.open_connections as f64,
        ),
        gauge(
            "writer_queue",
            "Operations waiting for the database writer.",
            r.writer_queue as f64,
        ),
    ];
    let mut messages = Family::new(
        "messages_received",
        Kind::Counter,
        "Messages received from the crawler, by type.",
    );
    for type_name in INBOUND_TYPES {
        let n = counter(&counters::messages_received(type_name));
        messages.sample(vec![("type", type_name.to_string())], count_or_float(n));
    }
    for (key, value) in r.counters.iter().filter(|(k, _)| {
        k.starts_with(counters::MESSAGES_RECEIVED)
            && !INBOUND_TYPES.contains(&&k[counters::MESSAGES_RECEIVED.len()..])
    }) {
        let type_name = key[counters::MESSAGES_RECEIVED.len()..].to_string();
        messages.sample(vec![("type", type_name)], Value::Int(*value as i64));
    }
    out.push(messages);
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
        out.push(Family::one(
            name,
            Kind::Counter,
            help,
            count_or_float(counter(name)),
        ));
    }
    out.push(Family::one(
        "writer_commit_seconds",
        Kind::Counter,
        "Time spent in writer transactions.",
        Value::Float(counter(counters::WRITER_COMMIT_MICROS) / 1e6),
    ));
    out.push(Family::one(
        "writer_wal_hold_seconds",
        Kind::Counter,
        "Time bulk writes waited for the checkpointer so the WAL could start over.",
        Value::Float(counter(counters::WRITER_WAL_HOLD_MICROS) / 1e6),
    ));
    out.push(gauge(
        "writer_last_batch_size",
        "Operations in the writer's latest transaction.",
        counter(counters::WRITER_LAST_BATCH_SIZE),
    ));
    out
}
