//! The one way the harness waits for something: poll a condition until it holds or a
//! time limit passes. Callers keep their own assertion and message.

use std::time::{Duration, Instant};

/// Calls `done` every `every` until it returns true (then true) or `limit` has passed
/// (then false). `done` is always called at least once.
pub fn wait_until(limit: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}
