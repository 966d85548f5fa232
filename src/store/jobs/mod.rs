//! The job core: every rule about jobs, in one place, shared by the server (through
//! the writer) and the CLI.
//!
//! States: `queued` → `assigned` (dispatched) → `running` (job_started) → `finished` |
//! `failed`, plus `cancelled` by an operator. A failure or a lost job goes back to
//! `queued` with a backoff while the retry policy allows, else to `failed`. Every
//! transition, and every message refused because the job was already terminal, is a
//! row in `job_events`. Every function runs inside the caller's transaction and is
//! tested on a temporary database (`tests/job_rules.rs`), without a socket.
//!
//! - [`requests`]: `on_request` (job_request), `on_refresh_requested`.
//! - [`reports`]: `on_started`, `on_progress`, `on_completed`, `on_failed`,
//!   `on_discovered`, `on_discovery`.
//! - [`heartbeat`]: `on_heartbeat` (liveness, restart detection).
//! - [`dispatch`]: what may go out and the claim; [`recovery`]: the one `lose` path
//!   and rediscovery; [`transitions`]: the guarded state changes and the retry
//!   policy; [`operator`]: cancel, retry, resume a type; [`queue`]: adding jobs;
//!   [`status`], [`audit`]: the state and its trail.

pub mod audit;
pub mod dispatch;
pub mod heartbeat;
pub mod operator;
pub mod queue;
pub mod recovery;
pub mod reports;
pub mod requests;
pub mod status;
pub mod transitions;

pub use audit::{event, ignored};
pub use dispatch::{busy, busy_aged, claim, dispatch, Requester};
pub use heartbeat::{on_heartbeat, on_heartbeat_aged};
pub use operator::{cancel, resume_type, retry};
pub use queue::{add, new_id, Added, NewJob};
pub use recovery::{
    lose, lose_aged, requeue_stale_discoveries, Aged, DispatchAges, Loss, WallClockOnly,
    UNSTARTED_LOST_AFTER,
};
pub use reports::{
    on_completed, on_discovered, on_discovery, on_failed, on_progress, on_started, ProgressReport,
};
pub use requests::{on_refresh_requested, on_request, on_request_aged, Claim, RefreshPlan};
pub use status::{state, JobState, Status};
pub use transitions::{completed, fail, pause_type_if_unsupported, started, Failure};
