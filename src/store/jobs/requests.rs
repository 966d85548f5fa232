//! What the crawler asks for, one function per request holding its whole rule:
//! `job_request` (orphan recovery and the busy check first, then the tokens of the
//! jobs that would go out: refresh first, or mark the credential unusable, then the
//! claim) and `token_refresh_request` (what to answer from the store, or whether a
//! refresh is needed).

use super::dispatch::{busy_aged, claim_these, next_jobs, Requester};
use super::recovery::{DispatchAges, WallClockOnly};
use crate::policy::Policy;
use crate::protocol::encode::OutboundJob;
use crate::secret::Secret;
use crate::store::credentials;
use crate::time::Timestamp;
use rusqlite::Connection;
use std::time::Duration;

/// What a `job_request` gets on its first try.
#[derive(Debug)]
pub enum Claim {
    /// Claimed (possibly nothing): each job with its credential id.
    Done(Vec<(i64, OutboundJob)>),
    /// Nothing claimed: these jobs' tokens (job id, credential id) expire within the
    /// margin and can be refreshed, so they are refreshed first and the claim runs
    /// again ([`on_request`] without a margin); the job's dispatch time is then later
    /// than its token's.
    RefreshFirst(Vec<(String, i64)>),
}

/// `job_request`: the busy check first (a busy or idle crawler gets `[]` without any
/// token work), then the tokens of the jobs that would go out. With
/// `refresh_margin` set, a token expiring within it whose source can refresh makes
/// this claim nothing and ask for a refresh first ([`Claim::RefreshFirst`]); without
/// it (the claim after that refresh), no refresh is asked for. Either way a token that
/// is empty or known expired never goes out: its credential is marked unusable
/// ([`credentials::mark_unusable`]) and its jobs stay queued. The common case, every
/// token fresh, is this one call.
pub fn on_request(
    c: &Connection,
    who: Requester,
    policy: &Policy,
    refresh_margin: Option<Duration>,
    now: Timestamp,
) -> rusqlite::Result<Claim> {
    on_request_aged(c, who, &WallClockOnly, policy, refresh_margin, now)
}

/// [`on_request`], judging the age of this run's dispatches by the monotonic clock.
pub fn on_request_aged(
    c: &Connection,
    who: Requester,
    ages: &dyn DispatchAges,
    policy: &Policy,
    refresh_margin: Option<Duration>,
    now: Timestamp,
) -> rusqlite::Result<Claim> {
    if busy_aged(c, who, ages, policy, now)? {
        return Ok(Claim::Done(Vec::new()));
    }
    // Each round marks at least one more credential unusable or ends, so this runs
    // at most once per credential plus one.
    loop {
        let mut due = Vec::new();
        let mut marked = false;
        let next = next_jobs(c, policy, now)?;
        for candidate in &next {
            let credential_id = candidate.credential_id;
            let Some(k) = credentials::load(c, credential_id)? else {
                continue;
            };
            if refresh_margin.is_some_and(|m| k.due(m, now)) {
                due.push((candidate.job.id.clone(), credential_id));
            } else if let Some(why) = k.unusable(now) {
                credentials::mark_unusable(c, credential_id, &why, now)?;
                marked = true;
            }
        }
        if !due.is_empty() {
            return Ok(Claim::RefreshFirst(due));
        }
        if !marked {
            return claim_these(c, who, next, now).map(Claim::Done);
        }
    }
}

/// What to do about a `token_refresh_request`.
#[derive(Debug)]
pub enum RefreshPlan {
    UnknownJob,
    /// The job's credential is gone.
    CredentialRemoved {
        credential_id: i64,
    },
    /// The token changed since the job was dispatched (an operator, or a refresh for
    /// another job) and is fresh: worth a try.
    Serve {
        credential_id: i64,
        token: Secret,
        expires_at: Timestamp,
    },
    /// The stored token is the one that got the 401 and nothing can make another.
    Refuse {
        credential_id: i64,
        why: String,
    },
    /// Ask the credential's source for a new token, unless a refresh after the
    /// dispatch already happened.
    Refresh {
        credential_id: i64,
        dispatched_at: Option<Timestamp>,
    },
}

/// `token_refresh_request`: the crawler got a 401 with the token it was given at
/// dispatch.
pub fn on_refresh_requested(
    c: &Connection,
    job_id: &str,
    now: Timestamp,
) -> rusqlite::Result<RefreshPlan> {
    let Some((credential_id, dispatched_at)) = credentials::of_job(c, job_id)? else {
        return Ok(RefreshPlan::UnknownJob);
    };
    let Some(cred) = credentials::load(c, credential_id)? else {
        return Ok(RefreshPlan::CredentialRemoved { credential_id });
    };
    let changed_since_dispatch = match (cred.updated_at, dispatched_at) {
        (Some(updated), Some(dispatched)) => updated > dispatched,
        _ => false,
    };
    Ok(
        if changed_since_dispatch && cred.is_fresh(Duration::ZERO, now) {
            RefreshPlan::Serve {
                credential_id,
                expires_at: cred
                    .expires_at
                    .unwrap_or(now.plus(credentials::UNKNOWN_EXPIRY)),
                token: cred.token,
            }
        } else if !cred.source.can_refresh() {
            RefreshPlan::Refuse {
                credential_id,
                why: format!(
                "the stored token has not changed since the job was dispatched; replace it with \
                 `crawler-agent credentials add {} --replace`",
                cred.name
            ),
            }
        } else {
            RefreshPlan::Refresh {
                credential_id,
                dispatched_at,
            }
        },
    )
}
