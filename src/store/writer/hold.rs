//! The WAL hold: while the WAL is longer than `wal_checkpoint_bytes` and the
//! checkpointer has not yet copied everything, the writer holds bulk work back (claims
//! and other fast-lane calls still go through), so its next transaction starts the WAL
//! over. A hold ends in one of three ways: the checkpointer caught up, the WAL turned
//! out not to be long any more, or [`checkpoint::MAX_HOLD`] passed (a reader pins the
//! WAL), after which holding pauses for longer and longer. See `checkpoint`.

use super::stats::Stats;
use crate::store::checkpoint::{self, WalState};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a writer holding bulk work back looks again.
pub(super) const HOLD_RECHECK: Duration = Duration::from_millis(1);

/// The writer holding bulk work back for the WAL to start over.
#[derive(Debug)]
pub(super) struct WalHold {
    wal: Arc<WalState>,
    page_size: u64,
    /// Past this WAL size bulk work is held back (`Limits::checkpoint_bytes`).
    limit_bytes: u64,
    since: Option<Instant>,
    /// Given up (the WAL is pinned by a reader): no holding before this instant.
    not_before: Option<Instant>,
    /// Holds given up in a row; each doubles the time before the next (a reader
    /// that stays costs ingest at most one hold per minute).
    given_up: u32,
    /// The commit count at the last WAL restart; earlier reports of its length are old.
    restarted_after: u64,
}

impl WalHold {
    pub(super) fn new(wal: Arc<WalState>, page_size: u64, limit_bytes: u64) -> Self {
        WalHold {
            wal,
            page_size,
            limit_bytes,
            since: None,
            not_before: None,
            given_up: 0,
            restarted_after: 0,
        }
    }

    /// The writer committed a transaction that changed something.
    pub(super) fn committed(&self) {
        self.wal.committed();
    }

    /// Whether bulk work may go on: not while the WAL is longer than the limit and the
    /// checkpointer has not yet copied everything (see `checkpoint`). Claims and other
    /// fast-lane calls are never held back.
    pub(super) fn bulk_allowed(&mut self, stats: &Stats) -> bool {
        let pass = self.wal.last_pass();
        let commits = self.wal.commits();
        if pass.caught_up && pass.after_commits == commits {
            self.caught_up(stats, commits);
            return true;
        }
        let long = self.is_news(&pass) && pass.frames * self.page_size >= self.limit_bytes;
        if !long {
            self.not_needed(stats);
            return true;
        }
        !self.keep(stats, commits)
    }

    /// Whether to keep holding bulk work back; starts a hold, or gives one up after
    /// `checkpoint::MAX_HOLD`.
    fn keep(&mut self, stats: &Stats, commits: u64) -> bool {
        let now = Instant::now();
        if self.not_before.is_some_and(|t| now < t) {
            return false;
        }
        match self.since {
            None => {
                self.since = Some(now);
                self.wal.hurry();
                true
            }
            Some(since) if now.duration_since(since) < checkpoint::MAX_HOLD => true,
            Some(_) => {
                log::debug!("the WAL did not start over: a reader may be holding it");
                self.finish(stats, commits);
                let wait = (2 * checkpoint::MAX_HOLD) * 2u32.pow(self.given_up.min(6));
                self.not_before = Some(now + wait.min(Duration::from_secs(60)));
                self.given_up += 1;
                false
            }
        }
    }

    /// Every committed frame is in the database: the next write transaction starts the
    /// WAL over, and the lengths reported so far are history.
    fn caught_up(&mut self, stats: &Stats, commits: u64) {
        self.finish(stats, commits);
        self.given_up = 0;
    }

    fn not_needed(&mut self, stats: &Stats) {
        self.finish(stats, self.restarted_after);
    }

    /// Whether `pass` looked at the WAL since it last started over.
    fn is_news(&self, pass: &checkpoint::Pass) -> bool {
        pass.after_commits > self.restarted_after
    }

    fn finish(&mut self, stats: &Stats, restarted_after: u64) {
        if let Some(since) = self.since.take() {
            stats
                .wal_hold_micros
                .fetch_add(since.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        self.restarted_after = restarted_after;
    }
}
