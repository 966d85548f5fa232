//! Where a fresh token comes from: the operator's stored token, a credential helper
//! command ([`command`]), or a GitLab OAuth refresh ([`oauth`]).
//!
//! [`Tokens`] answers the crawler's `token_refresh_request` (always, well within the
//! crawler's 15 s) and refreshes a token that is expired or about to expire before a
//! job carrying it is handed out. Refreshes of one credential are serialised and
//! coalesced: whoever waited on a refresh reuses its result instead of refreshing
//! again. A new token, its expiry and a rotated refresh token are committed in one
//! transaction before anyone is given the token. Nothing here logs a token.

pub mod command;
pub mod oauth;

use crate::config::TokensConfig;
use crate::secret::Secret;
use crate::store::credentials::{self, Credential, TokenSource};
use crate::store::jobs::{self, RefreshPlan};
use crate::store::token_refreshes::{self, Fetched, RefreshRecord, Trigger};
use crate::store::Writer;
use crate::time::Timestamp;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The crawler waits 15 s for a token_refresh_response; we answer well before (the
/// default of `tokens.answer_within`).
pub const ANSWER_WITHIN: Duration = Duration::from_secs(12);
/// The latest `tokens.answer_within` honoured: later, the crawler has given up.
pub const ANSWER_WITHIN_MAX: Duration = Duration::from_secs(14);

pub struct Tokens {
    writer: Writer,
    config: TokensConfig,
    http: ureq::Agent,
    /// One lock per credential: refreshes of a credential never run concurrently.
    locks: Mutex<HashMap<i64, Arc<async_lock::Mutex<()>>>>,
}

/// Who is asking, for the record.
#[derive(Debug, Clone)]
struct Asker {
    trigger: Trigger,
    job_id: Option<String>,
    connection_id: Option<i64>,
}

impl Tokens {
    pub fn new(writer: Writer, config: TokensConfig) -> Self {
        Tokens {
            http: oauth::client(config.http_timeout.0),
            writer,
            config,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Answers a `token_refresh_request`: the token to send, or `None` for a refusal.
    pub async fn answer(&self, job_id: &str, connection_id: i64) -> Option<(Secret, Timestamp)> {
        let asker = Asker {
            trigger: Trigger::Crawler,
            job_id: Some(job_id.to_string()),
            connection_id: Some(connection_id),
        };
        let work = self.answer_within_deadline(job_id, &asker);
        // Only the wait is bounded: a refresh already started runs to its end in its own
        // task and is stored (see `refresh`), so a rotated refresh token is never lost.
        let deadline = self.config.answer_within.0.min(ANSWER_WITHIN_MAX);
        let answer = crate::race::within(deadline, work)
            .await
            .unwrap_or_else(|| Err((None, format!("no token within {deadline:?}; a refresh still running is stored when it ends"))));
        match answer {
            Ok(answer) => Some(answer),
            Err((credential_id, detail)) => {
                self.record(&asker, credential_id, "failed", detail).await;
                None
            }
        }
    }

    async fn answer_within_deadline(
        &self,
        job_id: &str,
        asker: &Asker,
    ) -> Result<(Secret, Timestamp), (Option<i64>, String)> {
        let id = job_id.to_string();
        let plan = self
            .writer
            .call(move |c| jobs::on_refresh_requested(c, &id, Timestamp::now()))
            .await
            .map_err(|e| (None, format!("database: {e}")))?;
        let (credential_id, dispatched_at) = match plan {
            RefreshPlan::UnknownJob => return Err((None, "unknown job".to_string())),
            RefreshPlan::CredentialRemoved { credential_id } => {
                return Err((Some(credential_id), "the credential was removed".into()))
            }
            RefreshPlan::Refuse { credential_id, why } => return Err((Some(credential_id), why)),
            RefreshPlan::Serve {
                credential_id,
                token,
                expires_at,
            } => {
                let detail = "token changed since dispatch".into();
                self.record(asker, Some(credential_id), "served", detail)
                    .await;
                return Ok((token, expires_at));
            }
            RefreshPlan::Refresh {
                credential_id,
                dispatched_at,
            } => (credential_id, dispatched_at),
        };
        let fresh = self
            .refresh(credential_id, dispatched_at, asker)
            .await
            .map_err(|detail| (Some(credential_id), detail))?;
        let now = Timestamp::now();
        let expires = fresh.1.unwrap_or(now.plus(credentials::UNKNOWN_EXPIRY));
        Ok((fresh.0, expires))
    }

    /// The longest one `job_request` waits for token work before dispatch: one refresh
    /// (the longer of `tokens.command_timeout` and `tokens.http_timeout`) plus a second,
    /// for all its jobs' credentials together.
    pub fn dispatch_budget(&self) -> Duration {
        self.config
            .command_timeout
            .0
            .max(self.config.http_timeout.0)
            .saturating_add(Duration::from_secs(1))
    }

    pub fn refresh_margin(&self) -> Duration {
        self.config.refresh_margin.0
    }

    /// Before dispatch: a token expiring within `tokens.refresh_margin` is refreshed
    /// first when its source allows. A failure is recorded; the job then goes out
    /// with the token there is if it is still valid, else the claim marks the
    /// credential unusable and the job stays queued (`store::jobs::on_request`).
    pub async fn prepare_for_dispatch(&self, credential_id: i64, job_id: &str) {
        let Ok(cred) = self.load(credential_id).await else {
            return;
        };
        if !cred.due(self.config.refresh_margin.0, Timestamp::now()) {
            return;
        }
        let asker = Asker {
            trigger: Trigger::Dispatch,
            job_id: Some(job_id.to_string()),
            connection_id: None,
        };
        if let Err(detail) = self.refresh(credential_id, None, &asker).await {
            self.record(&asker, Some(credential_id), "failed", detail)
                .await;
        }
    }

    /// Refreshes a credential's token, unless a refresh already happened after
    /// `unless_changed_after` (or, without it, unless the token is fresh by now).
    async fn refresh(
        &self,
        credential_id: i64,
        unless_changed_after: Option<Timestamp>,
        asker: &Asker,
    ) -> Result<(Secret, Option<Timestamp>), String> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(credential_id).or_default().clone()
        };
        let _serialised = lock.lock_arc().await;
        // Whoever held the lock before us may have done the work already.
        let cred = self.load(credential_id).await?;
        let now = Timestamp::now();
        let already = match unless_changed_after {
            Some(since) => {
                cred.updated_at.is_some_and(|u| u > since) && cred.is_fresh(Duration::ZERO, now)
            }
            None => cred.is_fresh(self.config.refresh_margin.0, now),
        };
        if already {
            return Ok((cred.token, cred.expires_at));
        }
        // From here on the work is detached from whoever asked: the source may rotate
        // its refresh token as soon as it answers, so its answer must be stored even if
        // the asker stops waiting (the crawler's deadline). The task holds the
        // credential's lock until the new token is committed.
        let (tx, rx) = async_channel::bounded(1);
        let work = Refresh {
            writer: self.writer.clone(),
            http: self.http.clone(),
            command_timeout: self.config.command_timeout.0,
            cred,
            credential_id,
            asker: asker.clone(),
        };
        smol::spawn(async move {
            let _serialised = _serialised;
            let _ = tx.send(work.run().await).await;
        })
        .detach();
        rx.recv()
            .await
            .unwrap_or_else(|_| Err("the refresh task ended without an answer".into()))
    }

    async fn load(&self, credential_id: i64) -> Result<Credential, String> {
        self.writer
            .call(move |c| credentials::load(c, credential_id))
            .await
            .map_err(|e| format!("database: {e}"))?
            .ok_or_else(|| "the credential was removed".to_string())
    }

    async fn record(
        &self,
        asker: &Asker,
        credential_id: Option<i64>,
        outcome: &'static str,
        detail: String,
    ) {
        let record = RefreshRecord {
            trigger: asker.trigger,
            job_id: asker.job_id.clone(),
            credential_id,
            connection_id: asker.connection_id,
            outcome,
            detail,
        };
        // A failure is logged where it is recorded, with the credential's name.
        let failed = (outcome == "failed").then(|| record.detail.clone());
        let stored = self
            .writer
            .submit("a token refresh record", move |c| {
                token_refreshes::record_refresh(c, &record, Timestamp::now())
            })
            .await;
        if let (Some(detail), Err(e)) = (failed, stored) {
            log::warn!(
                "token: {detail} (job {:?}, credential id {credential_id:?}; not recorded: {e})",
                asker.job_id
            );
        }
    }
}

/// One refresh that has started: fetch a new token, store it, hand it back. Owns
/// everything it needs, so it runs to its end whoever waits for it.
struct Refresh {
    writer: Writer,
    http: ureq::Agent,
    command_timeout: Duration,
    cred: Credential,
    credential_id: i64,
    asker: Asker,
}

impl Refresh {
    async fn run(self) -> Result<(Secret, Option<Timestamp>), String> {
        let Refresh {
            writer,
            cred,
            credential_id,
            asker,
            ..
        } = &self;
        let credential_id = *credential_id;
        let fetched = self.fetch(cred).await?;
        let token = fetched.access_token.clone();
        let expires_at = fetched.expires_at;
        let record = RefreshRecord {
            trigger: asker.trigger,
            job_id: asker.job_id.clone(),
            credential_id: Some(credential_id),
            connection_id: asker.connection_id,
            outcome: "refreshed",
            detail: format!(
                "new token from {}, expires {}",
                cred.source.as_str(),
                expires_at.map_or("unknown".into(), |t| t.to_string())
            ),
        };
        // New token, expiry and rotated refresh token in one transaction, committed
        // before the token is handed to anyone.
        writer
            .call(move |c| {
                let now = Timestamp::now();
                token_refreshes::store_fetched(c, credential_id, &fetched, now)?;
                token_refreshes::record_refresh(c, &record, now)
            })
            .await
            .map_err(|e| format!("storing the new token failed: {e}"))?;
        log::info!(
            "credential {}: token refreshed from {}",
            cred.name,
            cred.source.as_str()
        );
        Ok((token, expires_at))
    }

    /// Asks the credential's source for a new token (blocking work off the executor).
    async fn fetch(&self, cred: &Credential) -> Result<Fetched, String> {
        match &cred.source {
            TokenSource::Command(line) => {
                let (line, timeout) = (line.clone(), self.command_timeout);
                smol::unblock(move || command::run(&line, timeout)).await
            }
            TokenSource::OAuth {
                refresh_token,
                client_id,
                client_secret,
            } => {
                let (http, url, id, secret, refresh) = (
                    self.http.clone(),
                    cred.gitlab_url.clone(),
                    client_id.clone(),
                    client_secret.clone(),
                    refresh_token.clone(),
                );
                smol::unblock(move || {
                    let app = oauth::Application {
                        gitlab_url: &url,
                        client_id: &id,
                        client_secret: &secret,
                    };
                    oauth::refresh(&http, &app, &refresh)
                })
                .await
            }
            TokenSource::Env | TokenSource::File => {
                Err("a stored token cannot be refreshed".into())
            }
        }
    }
}
