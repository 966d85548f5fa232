//! Counters the running agent keeps in memory and persists every few seconds into
//! `agent_runtime`, for `crawler-agent metrics` and `status`. Their names are
//! [`crate::store::read::counters`], which the metrics rendering reads back.

use crate::store::read::counters;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::protocol::message::TYPE_NAMES;

/// Counted by name: the crawler's message types, then `other` for anything else.
const COUNTED: usize = TYPE_NAMES.len() + 1;

fn counted_name(i: usize) -> &'static str {
    TYPE_NAMES.get(i).copied().unwrap_or("other")
}

#[derive(Default)]
pub struct Metrics {
    messages: [AtomicU64; COUNTED],
    pub bytes_in: AtomicU64,
    pub jobs_dispatched: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub connections_refused: AtomicU64,
    pub bad_messages: AtomicU64,
    extra: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub fn message(&self, type_name: &str) {
        let i = TYPE_NAMES
            .iter()
            .position(|t| *t == type_name)
            .unwrap_or(TYPE_NAMES.len());
        self.messages[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Sets a figure measured elsewhere (the writer's batch statistics).
    pub fn set(&self, name: &'static str, value: u64) {
        if let Ok(mut extra) = self.extra.lock() {
            extra.insert(name, value);
        }
    }

    /// Every counter as `name -> value`, for the `agent_runtime` row.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (i, n) in self.messages.iter().enumerate() {
            out.insert(
                counters::messages_received(counted_name(i)),
                n.load(Ordering::Relaxed),
            );
        }
        for (name, value) in [
            (counters::BYTES_RECEIVED, &self.bytes_in),
            (counters::JOBS_DISPATCHED, &self.jobs_dispatched),
            (counters::CONNECTIONS_ACCEPTED, &self.connections_accepted),
            (counters::CONNECTIONS_REFUSED, &self.connections_refused),
            (counters::BAD_MESSAGES, &self.bad_messages),
        ] {
            out.insert(name.to_string(), value.load(Ordering::Relaxed));
        }
        if let Ok(extra) = self.extra.lock() {
            for (k, v) in extra.iter() {
                out.insert(k.to_string(), *v);
            }
        }
        out
    }
}
