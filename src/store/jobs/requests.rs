//! What the crawler asks for, one function per request holding its whole rule:
//! `job_request` (orphan recovery, the busy check, the claim, and whether a token must
//! be refreshed first) and `token_refresh_request` (what to answer from the store,
//! or whether a refresh is needed).

use super::dispatch::{dispatch, peek, Requester};
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
    /// again ([`dispatch`]); the job's dispatch time is then later than its token's.
    RefreshFirst(Vec<(String, i64)>),
}

/// `job_request`: claims at once unless a job about to go out carries a token that
/// should be refreshed first (the common case, every token fresh, is this one call).
pub fn on_request(
    c: &Connection,
    who: Requester,
    policy: &Policy,
    refresh_margin: Duration,
    now: Timestamp,
) -> rusqlite::Result<Claim> {
    let mut due = Vec::new();
    for (job_id, credential_id) in peek(c, policy, now)? {
        if credentials::load(c, credential_id)?.is_some_and(|k| k.due(refresh_margin, now)) {
            due.push((job_id, credential_id));
        }
    }
    if due.is_empty() {
        dispatch(c, who, policy, now).map(Claim::Done)
    } else {
        Ok(Claim::RefreshFirst(due))
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
