//! Units of work for the writer thread.
//!
//! An [`Operation`] is applied inside the writer's batch transaction and finished once
//! the batch has committed (or failed); its [`Mode`] says how it is kept atomic there.
//! [`Call`] hands its result back to an awaiting caller; [`Fire`] is fire-and-forget.
//! This module depends on nothing else in the writer: the handles build these, the
//! thread applies them.

use crate::store::Error;
use rusqlite::Connection;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One unit of work for the writer.
pub trait Operation: Send {
    /// Runs inside the batch transaction, in its own savepoint. Runs again if the batch
    /// is retried after a transient failure, so it must not consume its inputs.
    fn apply(&mut self, conn: &Connection) -> rusqlite::Result<()>;
    /// Called exactly once: after COMMIT with `Ok`, or with the reason it failed.
    fn finish(self: Box<Self>, outcome: Result<(), Error>);
    /// How the operation is kept atomic; see [`Mode`].
    fn mode(&self) -> Mode {
        Mode::Savepoint
    }
    /// Rows it writes, about: the writer's batch cap counts these, so a transaction of
    /// many-row operations stays as short as one of single-row ones.
    fn rows(&self) -> usize {
        1
    }
    /// What it is, for the record when it fails.
    fn name(&self) -> &'static str {
        "a call"
    }
    /// Whether whoever sent it learns of a failure (a caller waiting for the result).
    /// When not, the writer records the failure in `errors` itself.
    fn failure_heard(&self) -> bool {
        true
    }
}

/// How an operation is kept atomic inside the writer's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In its own savepoint: a failure undoes the operation alone, the batch goes on.
    Savepoint,
    /// No savepoint: each statement fails alone, without harm to the others. For the
    /// hottest path, where a savepoint costs two statements and a sub-journal.
    Piecewise,
    /// In a transaction of its own: for one very large operation (a 100k-entry
    /// discovery), where a savepoint would copy every page it touches.
    Alone,
}

/// An operation whose caller waits for the committed result.
pub(super) struct Call<T, F> {
    f: F,
    result: Option<T>,
    deadline: Option<Instant>,
    reply: async_channel::Sender<Result<T, Error>>,
    state: Arc<CallState>,
}

pub(super) type Reply<T> = async_channel::Receiver<Result<T, Error>>;

/// Whether a call with a deadline was taken up by the writer or given up by its
/// caller: exactly one of the two happens, so a caller that gave up never has its
/// work applied behind its back, and one whose work was taken up waits for it (a
/// claim that committed always reaches the crawler).
#[derive(Debug, Default)]
pub(super) struct CallState(std::sync::atomic::AtomicU8);

const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const ABANDONED: u8 = 2;

impl CallState {
    /// The writer takes the call up; false when its caller gave up first.
    fn start(&self) -> bool {
        match self
            .0
            .compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            // Applied again when its batch is retried.
            Err(state) => state == STARTED,
        }
    }

    /// The caller gives up; false when the writer has already taken the call up.
    pub(super) fn abandon(&self) -> bool {
        self.0
            .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .map_or_else(|state| state == ABANDONED, |_| true)
    }
}

impl<T, F> Call<T, F>
where
    T: Send + 'static,
    F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
{
    pub(super) fn boxed(
        f: F,
        deadline: Option<Instant>,
    ) -> (Box<dyn Operation>, Reply<T>, Arc<CallState>) {
        let (reply, rx) = async_channel::bounded(1);
        let state = Arc::new(CallState::default());
        let op = Call {
            f,
            result: None,
            deadline,
            reply,
            state: state.clone(),
        };
        (Box::new(op), rx, state)
    }
}

impl<T, F> Operation for Call<T, F>
where
    T: Send + 'static,
    F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
{
    fn apply(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        // A caller that gave up never has its work applied behind its back; past
        // the deadline a call not yet taken up is given up here, so exactly one side
        // decides.
        let late = self.deadline.is_some_and(|d| Instant::now() > d);
        if (late && self.state.abandon()) || !self.state.start() {
            self.result = None;
            return Ok(());
        }
        self.result = Some((self.f)(conn)?);
        Ok(())
    }

    fn finish(self: Box<Self>, outcome: Result<(), Error>) {
        let answer = match (outcome, self.result) {
            (Ok(()), Some(value)) => Ok(value),
            (Ok(()), None) => Err(Error::Timeout(Duration::ZERO)),
            (Err(e), _) => Err(e),
        };
        // The caller may have given up (timeout); then nobody is listening.
        let _ = self.reply.try_send(answer);
    }
}

/// An operation nobody waits for; a failure is logged.
pub(super) struct Fire<F> {
    pub(super) what: &'static str,
    pub(super) f: F,
    pub(super) mode: Mode,
    pub(super) rows: usize,
    /// The lane's count of uncommitted operations, if sent through a lane.
    pub(super) pending: Option<Arc<AtomicUsize>>,
}

impl<F> Operation for Fire<F>
where
    F: FnMut(&Connection) -> rusqlite::Result<()> + Send + 'static,
{
    fn apply(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        crate::failpoint::panic_if_named("writer-apply", self.what);
        (self.f)(conn)
    }

    fn name(&self) -> &'static str {
        self.what
    }

    fn mode(&self) -> Mode {
        self.mode
    }

    fn rows(&self) -> usize {
        self.rows
    }

    fn failure_heard(&self) -> bool {
        false
    }

    fn finish(self: Box<Self>, outcome: Result<(), Error>) {
        if let Some(pending) = &self.pending {
            pending.fetch_sub(1, Ordering::Release);
        }
        if let Err(e) = outcome {
            log::error!("storing {} failed: {e}", self.what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CallState;

    #[test]
    fn a_call_is_either_taken_up_or_given_up_never_both() {
        let given_up = CallState::default();
        assert!(given_up.abandon());
        assert!(!given_up.start(), "never applied behind its caller's back");
        assert!(given_up.abandon(), "giving up twice is still given up");

        let taken = CallState::default();
        assert!(taken.start());
        assert!(!taken.abandon(), "the caller must wait for it");
        assert!(taken.start(), "a retried batch applies it again");
    }
}
