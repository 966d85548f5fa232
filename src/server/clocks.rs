//! Monotonic records of the running agent: when each job went out and when each
//! connection was last heard from, by a monotonic clock, so that orphan and restart
//! detection and stale marking do not move with a wall-clock step. Rows from before
//! this run have no record here and are judged by their stored wall-clock times.
//! Bounded: past [`MAX_RECORDS`] entries the oldest are forgotten (those fall back to
//! the wall clock).

use crate::store::jobs::DispatchAges;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most records kept per kind (jobs in flight and open connections are far fewer).
pub const MAX_RECORDS: usize = 10_000;

/// Where monotonic time comes from; a fake one in tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

pub struct Clocks {
    clock: Arc<dyn Clock>,
    dispatched: Mutex<HashMap<String, Instant>>,
    heard: Mutex<HashMap<i64, Instant>>,
}

impl Default for Clocks {
    fn default() -> Self {
        Clocks::new(Arc::new(SystemClock))
    }
}

impl Clocks {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Clocks {
            clock,
            dispatched: Mutex::default(),
            heard: Mutex::default(),
        }
    }

    /// A job went out now.
    pub fn dispatched(&self, job_id: &str) {
        let now = self.clock.now();
        insert_bounded(&mut lock(&self.dispatched), job_id.to_string(), now);
    }

    /// A connection opened or sent a heartbeat now.
    pub fn heard(&self, connection_id: i64) {
        let now = self.clock.now();
        insert_bounded(&mut lock(&self.heard), connection_id, now);
    }

    /// A connection closed: nothing more to time.
    pub fn closed(&self, connection_id: i64) {
        lock(&self.heard).remove(&connection_id);
    }

    /// Monotonic time since the connection was last heard from in this run.
    pub fn silent_for(&self, connection_id: i64) -> Option<Duration> {
        let at = *lock(&self.heard).get(&connection_id)?;
        Some(self.clock.now().saturating_duration_since(at))
    }
}

impl DispatchAges for Clocks {
    fn since_dispatch(&self, job_id: &str) -> Option<Duration> {
        let at = *lock(&self.dispatched).get(job_id)?;
        Some(self.clock.now().saturating_duration_since(at))
    }
}

/// A poisoned lock still holds usable instants.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Inserts, first forgetting the older half when the map is full (all of it if
/// the instants do not split), so the map never exceeds [`MAX_RECORDS`].
fn insert_bounded<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, Instant>,
    key: K,
    at: Instant,
) {
    if map.len() >= MAX_RECORDS && !map.contains_key(&key) {
        let mut times: Vec<Instant> = map.values().copied().collect();
        times.sort_unstable();
        let keep_from = times[times.len() / 2];
        map.retain(|_, t| *t > keep_from);
    }
    if map.len() >= MAX_RECORDS && !map.contains_key(&key) {
        // Half the records at one instant: forget them all (wall clock for those).
        map.clear();
    }
    map.insert(key, at);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_stay_bounded_even_at_one_instant() {
        let t = Instant::now();
        let mut map = HashMap::new();
        for i in 0..(3 * MAX_RECORDS) {
            insert_bounded(&mut map, i, t);
            assert!(map.len() <= MAX_RECORDS);
        }
        let mut map = HashMap::new();
        for i in 0..(3 * MAX_RECORDS) {
            insert_bounded(&mut map, i, t + Duration::from_millis(i as u64));
            assert!(map.len() <= MAX_RECORDS);
        }
        assert!(
            map.contains_key(&(3 * MAX_RECORDS - 1)),
            "the newest is kept"
        );
    }
}
