//! One episode of failing writes (a batch that failed for a transient reason and is
//! being retried): logged loudly while it lasts, and a `database_error` event once the
//! database takes writes again. The event cannot go to the database while it fails,
//! so it is written after the recovery: "writes failed for N s until T". The first
//! failure already means the busy timeout passed (a lock held too long) or the disk or
//! file failed, so every episode is reported; a file replaced under the agent is
//! reported by the monitor (its writes go to a file nobody reads).

use crate::store::events::{self, Kind};
use crate::time::Timestamp;
use rusqlite::Connection;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// How often the log repeats that writes are still failing.
const REMIND_EVERY: Duration = Duration::from_secs(30);

pub(super) struct Failing {
    since: Timestamp,
    started: Instant,
    last_reminder: Cell<Instant>,
}

impl Failing {
    pub(super) fn new() -> Failing {
        Failing {
            since: Timestamp::now(),
            started: Instant::now(),
            last_reminder: Cell::new(Instant::now()),
        }
    }

    /// Logs again, at most every [`REMIND_EVERY`], that writes still fail.
    pub(super) fn remind(&self, error: &rusqlite::Error) {
        if self.last_reminder.get().elapsed() >= REMIND_EVERY {
            self.last_reminder.set(Instant::now());
            log::error!(
                "database writes have been failing for {} s ({error}); nothing is stored until they succeed",
                self.started.elapsed().as_secs()
            );
        }
    }

    /// The writes succeed again: records the episode (outside any transaction).
    pub(super) fn recovered(&self, conn: &Connection, last_error: &rusqlite::Error) {
        let now = Timestamp::now();
        let seconds = self.started.elapsed().as_secs();
        let message = format!(
            "database writes failed for {seconds} s until {now} ({last_error}); the held writes were committed"
        );
        let details = serde_json::json!({
            "since": self.since.to_string(),
            "until": now.to_string(),
            "seconds": seconds,
            "error": last_error.to_string(),
        });
        if let Err(e) = events::record(
            conn,
            Kind::DatabaseError,
            "database",
            &message,
            &details,
            now,
        ) {
            log::error!("cannot record the database_error event ({message}): {e}");
        }
    }
}
