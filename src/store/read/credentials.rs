//! Credentials as `crawler-agent credentials list` shows them: never their tokens.

use rusqlite::Connection;
use serde::Serialize;

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
    pub last_refresh_detail: Option<String>,
}

pub fn list(conn: &Connection) -> rusqlite::Result<Vec<CredentialInfo>> {
    let mut stmt = conn.prepare(
        "SELECT c.name, c.gitlab_url, c.token_source, c.expires_at, c.created_at, c.updated_at,
                (SELECT count(*) FROM jobs j WHERE j.credential_id = c.id),
                t.at, t.outcome, t.detail
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
            last_refresh_detail: r.get(9)?,
        })
    })?;
    rows.collect()
}
