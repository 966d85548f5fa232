//! Racing a future against a timer or against the shutdown signal.
//!
//! smol has no `timeout` combinator; these two are the only places the agent spells
//! out "whichever comes first". Everything else calls them.

use std::future::Future;
use std::time::{Duration, Instant};

/// `f`'s output, or `None` if `limit` passes first.
pub async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> Option<T> {
    until(Instant::now() + limit, f).await
}

/// `f`'s output, or `None` if `deadline` passes first.
pub async fn until<T>(deadline: Instant, f: impl Future<Output = T>) -> Option<T> {
    let work = async { Some(f.await) };
    let timer = async {
        smol::Timer::at(deadline).await;
        None
    };
    futures_lite::future::or(work, timer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earlier_of_the_two_wins() {
        smol::block_on(async {
            assert_eq!(within(Duration::from_secs(5), async { 7 }).await, Some(7));
            let never = std::future::pending::<()>();
            assert_eq!(within(Duration::from_millis(10), never).await, None);
        });
    }
}
