//! Refused peers: every refusal is counted (`connections_refused`), but a uid is
//! recorded as an `errors` row at most once per `socket.refusal_record_every`, so a
//! peer connecting in a loop cannot fill the disk. The memory of uids recorded is
//! bounded: past [`MAX_REMEMBERED`] uids, the oldest entries are forgotten.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Distinct uids remembered at once.
pub const MAX_REMEMBERED: usize = 1024;

#[derive(Default)]
pub struct Refusals {
    last_recorded: HashMap<Option<u32>, Instant>,
    /// Refusals not recorded since the last row, per uid.
    unrecorded: HashMap<Option<u32>, u64>,
}

impl Refusals {
    /// Whether a refusal of `uid` now is recorded; if so, also how many refusals of it
    /// went unrecorded since its last row.
    pub fn should_record(
        &mut self,
        uid: Option<u32>,
        every: Duration,
        now: Instant,
    ) -> Option<u64> {
        if let Some(last) = self.last_recorded.get(&uid) {
            if now.saturating_duration_since(*last) < every {
                *self.unrecorded.entry(uid).or_default() += 1;
                return None;
            }
        }
        if self.last_recorded.len() >= MAX_REMEMBERED && !self.last_recorded.contains_key(&uid) {
            self.forget_oldest(every, now);
        }
        self.last_recorded.insert(uid, now);
        Some(self.unrecorded.remove(&uid).unwrap_or(0))
    }

    fn forget_oldest(&mut self, every: Duration, now: Instant) {
        self.last_recorded
            .retain(|_, t| now.saturating_duration_since(*t) < every);
        if self.last_recorded.len() >= MAX_REMEMBERED {
            // Every entry is recent: a flood of distinct uids. Start over; the worst
            // case is one row per uid per refusal_record_every, still bounded by the
            // number of uids.
            self.last_recorded.clear();
        }
        let kept = &self.last_recorded;
        self.unrecorded.retain(|uid, _| kept.contains_key(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_is_recorded_once_per_interval_and_the_rest_counted() {
        let mut r = Refusals::default();
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        assert_eq!(r.should_record(Some(5), minute, t0), Some(0));
        for i in 1..=10 {
            assert_eq!(
                r.should_record(Some(5), minute, t0 + Duration::from_secs(i)),
                None
            );
        }
        assert_eq!(r.should_record(Some(6), minute, t0), Some(0));
        assert_eq!(r.should_record(Some(5), minute, t0 + minute), Some(10));
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_uids() {
        let mut r = Refusals::default();
        let t0 = Instant::now();
        for uid in 0..10 * MAX_REMEMBERED as u32 {
            r.should_record(Some(uid), Duration::from_secs(60), t0);
        }
        assert!(r.last_recorded.len() <= MAX_REMEMBERED);
    }
}
