//! The writer thread's end of its two queues: the fast lane (calls someone waits for)
//! and the bulk queue (fire-and-forget writes), taken fast lane first.

use super::operation::Operation;
use crate::race::within;
use std::time::Duration;

/// An operation taken from a queue, and whether it came from the fast lane.
pub(super) type Taken = (Box<dyn Operation>, bool);

pub(super) struct Queues {
    fast: async_channel::Receiver<Box<dyn Operation>>,
    bulk: async_channel::Receiver<Box<dyn Operation>>,
}

pub(super) enum Waited {
    Op(Taken),
    /// Nothing arrived within the ping interval.
    Idle,
    /// Both queues are closed and empty.
    Closed,
}

impl Queues {
    pub(super) fn new(
        fast: async_channel::Receiver<Box<dyn Operation>>,
        bulk: async_channel::Receiver<Box<dyn Operation>>,
    ) -> Self {
        Queues { fast, bulk }
    }

    /// The next operation, fast lane first (only from the fast lane unless `bulk`),
    /// waiting if there is none (at most `patience`, when given).
    pub(super) fn wait(&self, patience: Option<Duration>, bulk: bool) -> Waited {
        if let Some(next) = self.try_next(!bulk) {
            return Waited::Op(next);
        }
        futures_lite::future::block_on(async {
            let fast = async { self.fast.recv().await.ok().map(|op| Waited::Op((op, true))) };
            let bulk = async {
                if !bulk {
                    return std::future::pending().await;
                }
                self.bulk
                    .recv()
                    .await
                    .ok()
                    .map(|op| Waited::Op((op, false)))
            };
            let next = futures_lite::future::or(fast, bulk);
            let next = match patience {
                Some(d) => within(d, next).await.unwrap_or(Some(Waited::Idle)),
                None => next.await,
            };
            match next {
                Some(next) => next,
                // One queue is closed and empty (shutdown): finish the other.
                None => match self.bulk.recv().await {
                    Ok(op) => Waited::Op((op, false)),
                    Err(_) => self
                        .fast
                        .recv()
                        .await
                        .map_or(Waited::Closed, |op| Waited::Op((op, true))),
                },
            }
        })
    }

    /// The next queued operation without waiting; bulk work only if `fast_only` is false.
    pub(super) fn try_next(&self, fast_only: bool) -> Option<Taken> {
        if let Ok(op) = self.fast.try_recv() {
            return Some((op, true));
        }
        if fast_only {
            return None;
        }
        self.bulk.try_recv().ok().map(|op| (op, false))
    }
}
