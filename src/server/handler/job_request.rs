//! `job_request` → `job_response`. The rule is `store::jobs::on_request`: the busy
//! check first (a busy or idle crawler gets `[]` with no token work), then claim at
//! once, unless a job about to go out carries a token that should be refreshed first;
//! then refresh (waiting at most `Tokens::dispatch_budget`; the refresh itself is never
//! abandoned half-way) and claim
//! again within what is left of `dispatch.claim_timeout`; a token that is still empty
//! or expired marks its credential unusable instead of going out. The reply is encoded
//! only after the claim has committed.

use crate::protocol::encode;
use crate::server::connection::Session;
use crate::server::Context;
use crate::store::errors::{Category, ErrorRecord, Severity};
use crate::store::jobs::{self, Claim, Requester};
use crate::time::Timestamp;
use std::time::{Duration, Instant};

/// The least time left for the second claim after a refresh used the budget up.
const SECOND_CLAIM_AT_LEAST: Duration = Duration::from_millis(200);

pub async fn handle(ctx: &Context, s: &mut Session) -> Option<Vec<u8>> {
    s.traffic.job_requests += 1;
    let who = Requester {
        connection_id: s.id,
        first_request: !s.asked_before,
    };
    s.asked_before = true;
    if s.draining {
        return None;
    }
    let claim_timeout = ctx.live.get().config.dispatch.claim_timeout.0;
    let deadline = Instant::now() + claim_timeout;
    let margin = ctx.tokens.refresh_margin();
    let policy = ctx.live.policy();
    let clocks = ctx.clocks.clone();
    let first = s
        .lane
        .call_within(claim_timeout, move |c| {
            let now = Timestamp::now();
            let claim = jobs::on_request_aged(c, who, &*clocks, &policy, Some(margin), now)?;
            record_dispatches(&clocks, &claim);
            Ok(claim)
        })
        .await;
    let claimed = match first {
        Ok(Claim::Done(jobs)) => Ok(jobs),
        Err(e) => Err(e),
        Ok(Claim::RefreshFirst(due)) => {
            // The token work one job_request waits for is bounded (see
            // `Tokens::dispatch_budget`). A refresh is never abandoned half-way: it runs
            // detached and stores GitLab's rotated refresh token even after we stop
            // waiting. The claim below never hands out an empty or expired token.
            let budget = ctx.tokens.dispatch_budget();
            let prepared = crate::race::within(budget, async {
                for (job_id, credential_id) in &due {
                    ctx.tokens
                        .prepare_for_dispatch(*credential_id, job_id)
                        .await;
                }
            })
            .await;
            if prepared.is_none() {
                log::warn!("connection {}: token refresh before dispatch took over {budget:?}; claiming with the tokens there are", s.id);
            }
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(SECOND_CLAIM_AT_LEAST);
            let policy = ctx.live.policy();
            let clocks = ctx.clocks.clone();
            s.lane
                .call_within(left, move |c| {
                    let now = Timestamp::now();
                    let claim = jobs::on_request_aged(c, who, &*clocks, &policy, None, now)?;
                    record_dispatches(&clocks, &claim);
                    Ok(claim)
                })
                .await
                .map(|claim| match claim {
                    Claim::Done(jobs) => jobs,
                    // Without a margin nothing asks for a refresh.
                    Claim::RefreshFirst(_) => Vec::new(),
                })
        }
    };
    let jobs = match claimed {
        Ok(jobs) => jobs,
        Err(e) => {
            let message = format!("job_request answered with no jobs: could not claim one ({e})");
            let record =
                ErrorRecord::new(Category::Storage, Severity::High, message).connection(s.id);
            ctx.record(record).await;
            Vec::new()
        }
    };
    ctx.metrics
        .jobs_dispatched
        .fetch_add(jobs.len() as u64, std::sync::atomic::Ordering::Relaxed);
    for (_, job) in &jobs {
        log::info!(
            "connection {}: dispatched job {} ({} {})",
            s.id,
            job.id,
            job.entity_type,
            job.entity_id
        );
    }
    let jobs: Vec<_> = jobs.into_iter().map(|(_, job)| job).collect();
    Some(encode::job_response(&jobs))
}

/// Notes the monotonic dispatch time of each claimed job (on the writer thread, in
/// the claim's transaction, so no other rule sees the job without it).
fn record_dispatches(clocks: &crate::server::clocks::Clocks, claim: &Claim) {
    if let Claim::Done(jobs) = claim {
        for (_, job) in jobs {
            clocks.dispatched(&job.id);
        }
    }
}
