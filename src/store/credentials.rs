//! Credentials: a GitLab base URL and the token the crawler uses there.
//!
//! Tokens are [`Secret`]s: read from the database only where they leave the process
//! (a job reply, a token refresh reply) and never listed.

use crate::secret::Secret;
use crate::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use std::time::Duration;

/// Where an operator's token came from when it was stored.
/// Where a credential's token comes from, with what that source needs.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// Stored by the operator from an environment variable.
    Env,
    /// Stored by the operator from a file.
    File,
    /// This command (run without a shell) prints a fresh token.
    Command(String),
    /// GitLab OAuth refresh with a rotating refresh token.
    OAuth {
        refresh_token: Secret,
        client_id: String,
        client_secret: Secret,
    },
}

impl TokenSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenSource::Env => "env",
            TokenSource::File => "file",
            TokenSource::Command(_) => "command",
            TokenSource::OAuth { .. } => "oauth",
        }
    }

    /// Whether the agent can fetch a new token by itself.
    pub fn can_refresh(&self) -> bool {
        matches!(self, TokenSource::Command(_) | TokenSource::OAuth { .. })
    }
}

#[derive(Debug)]
pub struct NewCredential {
    pub name: String,
    pub gitlab_url: String,
    /// May be empty for OAuth: the first dispatch then refreshes.
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
    let id = match existing {
        Some(id) if !replace => return Ok(Added::Exists(id)),
        Some(id) => {
            conn.execute(
                "UPDATE credentials SET gitlab_url = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, c.gitlab_url, now],
            )?;
            id
        }
        None => {
            conn.execute(
                "INSERT INTO credentials (name, gitlab_url, access_token, token_source, created_at, updated_at)
                 VALUES (?1, ?2, '', 'env', ?3, ?3)",
                params![c.name, c.gitlab_url, now],
            )?;
            conn.last_insert_rowid()
        }
    };
    // The secrets leave memory here, into the one table that must hold them.
    let (command, refresh, client_id, client_secret) = match &c.source {
        TokenSource::Command(line) => (Some(line.as_str()), None, None, None),
        TokenSource::OAuth {
            refresh_token,
            client_id,
            client_secret,
        } => (
            None,
            Some(refresh_token.expose()),
            Some(client_id.as_str()),
            Some(client_secret.expose()),
        ),
        TokenSource::Env | TokenSource::File => (None, None, None, None),
    };
    conn.execute(
        "UPDATE credentials SET access_token = ?2, token_source = ?3, expires_at = ?4,
                                token_command = ?5, refresh_token = ?6, oauth_client_id = ?7,
                                oauth_client_secret = ?8, unusable_since = NULL,
                                unusable_reason = NULL
         WHERE id = ?1",
        params![
            id,
            c.token.expose(),
            c.source.as_str(),
            c.expires_at,
            command,
            refresh,
            client_id,
            client_secret
        ],
    )?;
    Ok(if existing.is_some() {
        Added::Replaced(id)
    } else {
        Added::Created(id)
    })
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

/// Expiry assumed for a token whose real expiry is unknown (spec §4.3).
pub const UNKNOWN_EXPIRY: Duration = Duration::from_secs(3600);

/// A credential as the token service needs it.
#[derive(Debug, Clone)]
pub struct Credential {
    pub id: i64,
    pub name: String,
    pub gitlab_url: String,
    pub token: Secret,
    pub source: TokenSource,
    pub expires_at: Option<Timestamp>,
    /// When the token last changed (added, replaced or refreshed).
    pub updated_at: Option<Timestamp>,
    /// Set while the token cannot be handed out (see [`mark_unusable`]).
    pub unusable_since: Option<Timestamp>,
}

impl Credential {
    /// The token is usable for at least `margin` (an unknown expiry counts as usable).
    pub fn is_fresh(&self, margin: Duration, now: Timestamp) -> bool {
        !self.token.is_empty() && self.expires_at.is_none_or(|e| e > now.plus(margin))
    }

    /// Whether a new token should be fetched before this one is handed out: it is
    /// not fresh for `margin` more, and its source can make another.
    pub fn due(&self, margin: Duration, now: Timestamp) -> bool {
        self.source.can_refresh() && !self.is_fresh(margin, now)
    }

    /// Why this token must not go out in a job now: empty, or known expired.
    pub fn unusable(&self, now: Timestamp) -> Option<String> {
        if self.token.is_empty() {
            Some("the token is empty".into())
        } else {
            match self.expires_at {
                Some(at) if at <= now => Some(format!("the token expired at {at}")),
                _ => None,
            }
        }
    }
}

/// Marks a credential unusable: its jobs stay queued (dispatch skips them) until an
/// operator replaces the token (`credentials add NAME --replace`) or a refresh
/// succeeds. The first marking writes an `errors` row and a log line; later ones
/// change nothing. Returns whether the mark is new.
pub fn mark_unusable(
    conn: &Connection,
    id: i64,
    reason: &str,
    now: Timestamp,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE credentials SET unusable_since = ?2, unusable_reason = ?3
             WHERE id = ?1 AND unusable_since IS NULL",
        )?
        .execute(params![id, now, reason])?;
    if changed == 0 {
        return Ok(false);
    }
    let name: String = conn.query_row("SELECT name FROM credentials WHERE id = ?1", [id], |r| {
        r.get(0)
    })?;
    let message = format!(
        "credential {name} is unusable: {reason}; its jobs stay queued until the token is \
         replaced (`crawler-agent credentials add {name} --replace`) or a refresh succeeds"
    );
    log::warn!("{message}");
    use crate::store::errors::{self, Category, ErrorRecord, Severity};
    let record = ErrorRecord::new(Category::Token, Severity::High, message)
        .context(serde_json::json!({"credential_id": id, "reason": reason}));
    errors::insert(conn, &record, now)?;
    Ok(true)
}

pub fn load(conn: &Connection, id: i64) -> rusqlite::Result<Option<Credential>> {
    conn.prepare_cached(
        "SELECT id, gitlab_url, access_token, token_source, expires_at, updated_at, token_command,
                refresh_token, oauth_client_id, oauth_client_secret, name, unusable_since
         FROM credentials WHERE id = ?1",
    )?
    .query_row([id], |r| {
        let kind: String = r.get(3)?;
        let source = match kind.as_str() {
            "command" => TokenSource::Command(r.get::<_, Option<String>>(6)?.unwrap_or_default()),
            "oauth" => TokenSource::OAuth {
                refresh_token: r
                    .get::<_, Option<Secret>>(7)?
                    .unwrap_or_else(|| Secret::new("")),
                client_id: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
                client_secret: r
                    .get::<_, Option<Secret>>(9)?
                    .unwrap_or_else(|| Secret::new("")),
            },
            "file" => TokenSource::File,
            _ => TokenSource::Env,
        };
        let time = |i: usize| -> rusqlite::Result<Option<Timestamp>> {
            Ok(r.get::<_, Option<String>>(i)?
                .as_deref()
                .and_then(Timestamp::parse))
        };
        Ok(Credential {
            id: r.get(0)?,
            name: r.get(10)?,
            gitlab_url: r.get(1)?,
            token: r.get(2)?,
            source,
            expires_at: time(4)?,
            updated_at: time(5)?,
            unusable_since: time(11)?,
        })
    })
    .optional()
}

/// The credential of a job and when the job was last dispatched.
pub fn of_job(
    conn: &Connection,
    job_id: &str,
) -> rusqlite::Result<Option<(i64, Option<Timestamp>)>> {
    conn.prepare_cached("SELECT credential_id, dispatched_at FROM jobs WHERE id = ?1")?
        .query_row([job_id], |r| {
            let at: Option<String> = r.get(1)?;
            Ok((r.get(0)?, at.as_deref().and_then(Timestamp::parse)))
        })
        .optional()
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;
