//! Credentials: a GitLab base URL and the token the crawler uses there.
//!
//! Tokens are [`Secret`]s: read from the database only where they leave the process
//! (a job reply, a token refresh reply) and never listed.

use crate::secret::Secret;
use crate::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::time::Duration;

/// Where an operator's token came from when it was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Env,
    File,
    Command,
}

impl TokenSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Env => "env",
            TokenSource::File => "file",
            TokenSource::Command => "command",
        }
    }
}

#[derive(Debug)]
pub struct NewCredential {
    pub name: String,
    pub gitlab_url: String,
    pub token: Secret,
    pub source: TokenSource,
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    Created(i64),
    Replaced(i64),
    Exists(i64),
}

/// Normalises a GitLab URL to its base: absolute http(s), no trailing `/`, no
/// `/api/...` suffix, no query or fragment.
pub fn normalize_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("'{url}' is not an absolute http:// or https:// URL"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("'{url}' has no host or contains spaces"));
    }
    if url.contains('?') || url.contains('#') {
        return Err(format!(
            "'{url}' has a query or fragment; give the instance's base URL"
        ));
    }
    let scheme_len = url.len() - rest.len();
    let mut base = url[..scheme_len + host.len()].to_string();
    // Keep a sub-path install (https://example.com/gitlab) but cut at /api.
    for segment in rest[host.len()..].split('/').filter(|s| !s.is_empty()) {
        if segment == "api" {
            break;
        }
        base.push('/');
        base.push_str(segment);
    }
    Ok(base)
}

pub fn add(
    conn: &Connection,
    c: &NewCredential,
    replace: bool,
    now: Timestamp,
) -> rusqlite::Result<Added> {
    let existing: Option<i64> = conn
        .query_row(
            "SELECT id FROM credentials WHERE name = ?1",
            [&c.name],
            |r| r.get(0),
        )
        .optional()?;
    match existing {
        Some(id) if !replace => Ok(Added::Exists(id)),
        Some(id) => {
            conn.execute(
                "UPDATE credentials SET gitlab_url = ?2, access_token = ?3, token_source = ?4,
                                        expires_at = ?5, updated_at = ?6 WHERE id = ?1",
                params![
                    id,
                    c.gitlab_url,
                    c.token.expose(),
                    c.source.as_str(),
                    c.expires_at,
                    now
                ],
            )?;
            Ok(Added::Replaced(id))
        }
        None => {
            conn.execute(
                "INSERT INTO credentials (name, gitlab_url, access_token, token_source, expires_at,
                                          created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![
                    c.name,
                    c.gitlab_url,
                    c.token.expose(),
                    c.source.as_str(),
                    c.expires_at,
                    now
                ],
            )?;
            Ok(Added::Created(conn.last_insert_rowid()))
        }
    }
}

pub fn id_by_name(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT id FROM credentials WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()
}

#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    NotFound,
    /// Jobs of this credential are in the crawler's hands right now.
    InFlight(i64),
    Removed {
        jobs: i64,
    },
}

/// Removes a credential and its jobs, unless one of them is in flight.
pub fn remove(conn: &Connection, name: &str) -> rusqlite::Result<Removed> {
    let Some(id) = id_by_name(conn, name)? else {
        return Ok(Removed::NotFound);
    };
    let (in_flight, jobs): (i64, i64) = conn.query_row(
        "SELECT count(*) FILTER (WHERE status IN ('assigned', 'running')), count(*)
         FROM jobs WHERE credential_id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if in_flight > 0 {
        return Ok(Removed::InFlight(in_flight));
    }
    conn.execute("DELETE FROM credentials WHERE id = ?1", [id])?;
    Ok(Removed::Removed { jobs })
}

/// A credential as listed: everything but the token.
#[derive(Debug, Serialize)]
pub struct CredentialInfo {
    pub name: String,
    pub gitlab_url: String,
    pub token_source: String,
    pub expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub jobs: i64,
    pub last_refresh: Option<String>,
    pub last_refresh_outcome: Option<String>,
}

pub fn list(conn: &Connection) -> rusqlite::Result<Vec<CredentialInfo>> {
    let mut stmt = conn.prepare(
        "SELECT c.name, c.gitlab_url, c.token_source, c.expires_at, c.created_at, c.updated_at,
                (SELECT count(*) FROM jobs j WHERE j.credential_id = c.id),
                t.at, t.outcome
         FROM credentials c
         LEFT JOIN token_refreshes t
                ON t.id = (SELECT max(id) FROM token_refreshes WHERE credential_id = c.id)
         ORDER BY c.name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(CredentialInfo {
            name: r.get(0)?,
            gitlab_url: r.get(1)?,
            token_source: r.get(2)?,
            expires_at: r.get(3)?,
            created_at: r.get(4)?,
            updated_at: r.get(5)?,
            jobs: r.get(6)?,
            last_refresh: r.get(7)?,
            last_refresh_outcome: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// Expiry assumed for a token whose real expiry is unknown (spec §4.3).
pub const UNKNOWN_EXPIRY: Duration = Duration::from_secs(3600);

/// Answers a `token_refresh_request` from the stored credential of the job and records
/// the outcome (never the token). `None` means the crawler gets a refusal.
pub fn serve_refresh(
    conn: &Connection,
    job_id: &str,
    connection_id: i64,
    now: Timestamp,
) -> rusqlite::Result<Option<(Secret, Timestamp)>> {
    let found: Option<(i64, Secret, Option<String>)> = conn
        .prepare_cached(
            "SELECT c.id, c.access_token, c.expires_at FROM jobs j
             JOIN credentials c ON c.id = j.credential_id WHERE j.id = ?1",
        )?
        .query_row([job_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let (credential_id, outcome, detail) = match found {
        None => (None, None, "unknown job".to_string()),
        Some((id, token, _)) if token.is_empty() => {
            (Some(id), None, "credential has no token".into())
        }
        Some((id, token, expires)) => match expires.as_deref().map(Timestamp::parse) {
            Some(Some(at)) if at <= now => {
                (Some(id), None, format!("stored token expired at {at}"))
            }
            Some(Some(at)) => (
                Some(id),
                Some((token, at)),
                format!("stored token, expires {at}"),
            ),
            _ => (
                Some(id),
                Some((token, now.plus(UNKNOWN_EXPIRY))),
                "stored token, expiry unknown".into(),
            ),
        },
    };
    conn.prepare_cached(
        "INSERT INTO token_refreshes (at, job_id, credential_id, connection_id, outcome, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        now,
        job_id,
        credential_id,
        connection_id,
        if outcome.is_some() {
            "served"
        } else {
            "failed"
        },
        detail
    ])?;
    if outcome.is_none() {
        crate::store::errors::insert(
            conn,
            &crate::store::errors::ErrorRecord::new(
                crate::store::errors::Category::Token,
                crate::store::errors::Severity::High,
                format!("token refresh for job {job_id} refused: {detail}"),
            )
            .job(job_id)
            .connection(connection_id),
            now,
        )?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::normalize_url;

    #[test]
    fn urls_are_reduced_to_the_instance_base() {
        let ok = |u: &str| normalize_url(u).unwrap();
        assert_eq!(
            ok("https://gitlab.example.com/"),
            "https://gitlab.example.com"
        );
        assert_eq!(
            ok("https://gitlab.example.com/api/graphql"),
            "https://gitlab.example.com"
        );
        assert_eq!(ok("http://h:8080/gitlab/api/v4/"), "http://h:8080/gitlab");
        assert!(normalize_url("gitlab.example.com").is_err());
        assert!(normalize_url("ftp://x").is_err());
        assert!(normalize_url("https://").is_err());
        assert!(normalize_url("https://x/?a=1").is_err());
    }
}
