//! A per-connection cap on `errors` rows for bad messages: at most N rows per minute;
//! the bad messages beyond it are counted and reported in one summary row ("412 more
//! bad messages") when the minute is over or the connection closes. A peer spewing
//! garbage writes a bounded number of rows instead of thousands per second.

use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct RowLimit {
    window_start: Instant,
    rows: u32,
    suppressed: u64,
}

/// What to do with one bad message.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Write its own row.
    pub record: bool,
    /// Write a summary row for this many earlier bad messages not recorded.
    pub summary: Option<u64>,
}

impl RowLimit {
    pub fn new(now: Instant) -> Self {
        RowLimit {
            window_start: now,
            rows: 0,
            suppressed: 0,
        }
    }

    /// A bad message arrived at `now`; at most `per_minute` rows a minute.
    pub fn bad_message(&mut self, per_minute: u32, now: Instant) -> Verdict {
        let mut summary = None;
        if now.saturating_duration_since(self.window_start) >= WINDOW {
            summary = self.take_suppressed();
            self.window_start = now;
            self.rows = 0;
        }
        let record = self.rows < per_minute;
        if record {
            self.rows += 1;
        } else {
            self.suppressed += 1;
        }
        Verdict { record, summary }
    }

    /// Bad messages counted but not recorded (for the summary at close).
    pub fn take_suppressed(&mut self) -> Option<u64> {
        (self.suppressed > 0).then(|| std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_beyond_the_cap_become_one_summary() {
        let t0 = Instant::now();
        let mut l = RowLimit::new(t0);
        for _ in 0..3 {
            assert!(l.bad_message(3, t0).record);
        }
        for _ in 0..412 {
            assert!(!l.bad_message(3, t0).record);
        }
        let next = l.bad_message(3, t0 + WINDOW);
        assert_eq!(
            next,
            Verdict {
                record: true,
                summary: Some(412)
            }
        );
        assert_eq!(l.take_suppressed(), None);
    }
}
