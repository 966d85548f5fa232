//! The writer thread: the only connection that writes while the agent runs.
//!
//! Operations arrive on two bounded channels: the bulk queue (fire-and-forget writes; a
//! full queue makes senders wait, which is the backpressure that keeps memory flat
//! under a flood) and the fast lane (calls someone is waiting for, such as a job
//! claim). The thread blocks for the first operation, then keeps applying whatever is
//! queued — fast lane first — up to the batch cap, all in ONE transaction (each
//! operation in its own savepoint, so one bad operation fails alone), commits, and
//! only then answers the waiters. Once a fast-lane operation is in the batch, no more
//! bulk work is added: the batch commits at once, so a claim waits for one operation
//! and a commit, not for a queue of thousands. Idle latency is one transaction; under
//! load the batch grows.
//!
//! A batch that fails for a transient reason (the file locked by an operator past the
//! busy timeout, a full disk, an I/O error) is rolled back and run again after a pause,
//! so nothing accepted is dropped. Checkpoints run on the checkpointer's thread; the
//! writer only holds bulk work back while the WAL is too long, until the checkpointer
//! has caught up (see `checkpoint`). On shutdown the queues are closed, everything
//! already queued is committed, and the WAL is truncated.
//!
//! The rooms: `operation` (units of work and their [`Mode`]; depends on nothing else
//! here), `handle` ([`Writer`] and [`Lane`], the senders), `queues` (the thread's end of
//! the two queues), `thread` (the loop: batch, commit, retry), `failing` (an episode of failing writes: loud logs, then a `database_error` event), `transaction` (savepoints
//! and which failures are transient), `hold` (holding bulk work back for the WAL) and
//! `stats`.

mod failing;
mod handle;
mod hold;
mod operation;
mod queues;
mod stats;
mod thread;
mod transaction;

pub use handle::{Lane, Writer};
pub use operation::Mode;
pub use stats::Stats;
pub use thread::{Limits, Ping};
