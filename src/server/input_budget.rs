//! One budget for unfinished input across all connections.
//!
//! Each connection's frame decoder holds the part of a message not yet complete (up to
//! `socket.max_message_bytes` each). Without a shared cap, `max_connections` peers each
//! sending an almost-full message would hold `max_connections × max_message_bytes`
//! (4 GiB by default). Every connection reports what its decoder holds after each read;
//! when the total passes `socket.input_budget_bytes`, the connection holding the most
//! is told to close ([`Holding::evicted`]), and records why. Holdings are kept in a map
//! of open connections only (at most `max_connections` entries).

use std::collections::HashMap;
use std::sync::Mutex;

pub struct InputBudget {
    limit: usize,
    holders: Mutex<Holders>,
}

#[derive(Default)]
struct Holders {
    total: usize,
    by_connection: HashMap<i64, (usize, async_channel::Sender<usize>)>,
}

/// One connection's part of the budget; released when dropped.
pub struct Holding<'a> {
    budget: &'a InputBudget,
    id: i64,
    /// Receives the budget's total when this connection must close to bring it down.
    pub evicted: async_channel::Receiver<usize>,
}

impl InputBudget {
    pub fn new(limit: u64) -> Self {
        InputBudget {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            holders: Mutex::default(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Unfinished input held now, all connections together.
    pub fn total(&self) -> usize {
        self.lock().total
    }

    pub fn join(&self, id: i64) -> Holding<'_> {
        let (tx, rx) = async_channel::bounded(1);
        self.lock().by_connection.insert(id, (0, tx));
        Holding {
            budget: self,
            id,
            evicted: rx,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Holders> {
        self.holders.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Holding<'_> {
    /// This connection now holds `bytes`. Over the budget, the largest holder (perhaps
    /// this one) is told to close; returns whether that is this connection.
    pub fn hold(&self, bytes: usize) -> bool {
        let mut h = self.budget.lock();
        let Some(entry) = h.by_connection.get_mut(&self.id) else {
            return false;
        };
        let before = std::mem::replace(&mut entry.0, bytes);
        h.total = h.total - before + bytes;
        if h.total <= self.budget.limit {
            return false;
        }
        let total = h.total;
        let largest = h
            .by_connection
            .iter()
            .max_by_key(|(_, (held, _))| *held)
            .map(|(id, (_, tx))| (*id, tx.clone()));
        match largest {
            Some((id, _)) if id == self.id => true,
            Some((_, tx)) => {
                let _ = tx.try_send(total);
                false
            }
            None => false,
        }
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        let mut h = self.budget.lock();
        if let Some((held, _)) = h.by_connection.remove(&self.id) {
            h.total -= held;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_budget_the_largest_holder_is_told_to_close() {
        let budget = InputBudget::new(100);
        let (a, b) = (budget.join(1), budget.join(2));
        assert!(!a.hold(60));
        assert!(!b.hold(30));
        // b grows past the budget, but a holds more: a is told, b carries on.
        assert!(!b.hold(50));
        assert_eq!(a.evicted.try_recv(), Ok(110));
        // The largest asking for more closes itself.
        assert!(a.hold(70));
        drop(a);
        assert_eq!(budget.total(), 50);
    }
}
