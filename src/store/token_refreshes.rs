//! What a token refresh leaves behind: the fetched token stored on its credential
//! (with the rotated refresh token, in the same statement), and one `token_refreshes`
//! row per refresh, a failure also an `errors` row and a `credential_failed` event,
//! naming the credential as the operator knows it (never the token).

use crate::secret::Secret;
use crate::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};

/// A token fetched from a command or an OAuth refresh.
#[derive(Debug)]
pub struct Fetched {
    pub access_token: Secret,
    pub expires_at: Option<Timestamp>,
    /// The rotated refresh token, when the source rotates it.
    pub refresh_token: Option<Secret>,
}

/// Stores a fetched token, its expiry and the rotated refresh token together.
pub fn store_fetched(
    conn: &Connection,
    id: i64,
    f: &Fetched,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE credentials SET access_token = ?2, expires_at = ?3,
                                refresh_token = coalesce(?4, refresh_token), updated_at = ?5,
                                unusable_since = NULL, unusable_reason = NULL
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        f.access_token.expose(),
        f.expires_at,
        f.refresh_token.as_ref().map(Secret::expose),
        now
    ])?;
    Ok(())
}

/// Why a token was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Crawler,
    Dispatch,
}

/// One row of `token_refreshes` (never a token); a failure also becomes an error row.
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    pub trigger: Trigger,
    pub job_id: Option<String>,
    pub credential_id: Option<i64>,
    pub connection_id: Option<i64>,
    pub outcome: &'static str,
    pub detail: String,
}

pub fn record_refresh(
    conn: &Connection,
    r: &RefreshRecord,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let trigger = match r.trigger {
        Trigger::Crawler => "crawler",
        Trigger::Dispatch => "dispatch",
    };
    conn.prepare_cached(
        "INSERT INTO token_refreshes (at, trigger, job_id, credential_id, connection_id, outcome, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![now, trigger, r.job_id, r.credential_id, r.connection_id, r.outcome, r.detail])?;
    if r.outcome == "failed" {
        crate::store::events::credential_failed(conn, r.credential_id, trigger, &r.detail, now)?;
        use crate::store::errors::{self, Category, ErrorRecord, Severity};
        // Named as the operator knows it; the id only once the credential is gone.
        let credential = match r.credential_id {
            Some(id) => conn
                .prepare_cached("SELECT name FROM credentials WHERE id = ?1")?
                .query_row([id], |row| row.get::<_, String>(0))
                .optional()?
                .map_or_else(
                    || format!("removed credential #{id}"),
                    |n| format!("credential {n}"),
                ),
            None => "unknown credential".to_string(),
        };
        let what = match (&r.trigger, &r.job_id) {
            (Trigger::Crawler, Some(job)) => {
                format!("token refresh for job {job} ({credential}) refused")
            }
            (Trigger::Crawler, None) if r.credential_id.is_none() => {
                "token refresh refused".to_string()
            }
            (Trigger::Crawler, None) => format!("token refresh refused for {credential}"),
            (Trigger::Dispatch, _) => format!("refreshing {credential} before dispatch failed"),
        };
        // The detail never holds a token (see `RefreshRecord`).
        log::warn!("token: {what}: {}", r.detail);
        let mut e = ErrorRecord::new(
            Category::Token,
            Severity::High,
            format!("{what}: {}", r.detail),
        );
        e.job_id = r.job_id.clone();
        e.connection_id = r.connection_id;
        errors::insert(conn, &e, now)?;
    }
    Ok(())
}
