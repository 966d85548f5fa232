//! Credentials as `crawler-agent credentials list` shows them (never their tokens),
//! and the per-credential rollup of their jobs (`credential_rollup` view) that
//! `status` and `metrics` show.

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
    /// Set while the token cannot be handed out; its jobs stay queued.
    pub unusable_since: Option<String>,
    pub unusable_reason: Option<String>,
}

pub fn list(conn: &Connection) -> rusqlite::Result<Vec<CredentialInfo>> {
    let mut stmt = conn.prepare(
        "SELECT c.name, c.gitlab_url, c.token_source, c.expires_at, c.created_at, c.updated_at,
                (SELECT coalesce(sum(jobs), 0) FROM job_counts k WHERE k.credential_id = c.id),
                t.at, t.outcome, t.detail, c.unusable_since, c.unusable_reason
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
            unusable_since: r.get(10)?,
            unusable_reason: r.get(11)?,
        })
    })?;
    rows.collect()
}

/// One row of the `credential_rollup` view.
#[derive(Debug, Serialize)]
pub struct Rollup {
    pub name: String,
    pub usable: bool,
    pub queued: i64,
    /// Assigned or running.
    pub running: i64,
    pub finished: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub items_processed: i64,
}

pub fn rollup(conn: &Connection) -> rusqlite::Result<Vec<Rollup>> {
    let mut stmt = conn.prepare(
        "SELECT name, token_state = 'usable', queued, running, finished, failed, cancelled,
                items_processed
         FROM credential_rollup ORDER BY name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Rollup {
            name: r.get(0)?,
            usable: r.get(1)?,
            queued: r.get(2)?,
            running: r.get(3)?,
            finished: r.get(4)?,
            failed: r.get(5)?,
            cancelled: r.get(6)?,
            items_processed: r.get(7)?,
        })
    })?;
    rows.collect()
}

/// What `credentials remove NAME` would delete, counted before asking the operator.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RemovalPreview {
    /// Jobs per status, e.g. `[("queued", 3), ("finished", 10)]`, most first.
    pub jobs: Vec<(String, i64)>,
    /// Jobs the crawler holds (assigned or running): while any, removal is refused.
    pub in_flight: i64,
    pub job_events: i64,
    pub progress_snapshots: i64,
    /// Links to discovered areas (the areas themselves stay).
    pub area_links: i64,
}

/// Counts what removing credential `name` would delete (`ON DELETE CASCADE` from
/// `credentials`); `None` if there is no such credential.
pub fn removal_preview(conn: &Connection, name: &str) -> rusqlite::Result<Option<RemovalPreview>> {
    use rusqlite::OptionalExtension as _;
    let Some(id) = conn
        .query_row("SELECT id FROM credentials WHERE name = ?1", [name], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
    else {
        return Ok(None);
    };
    let mut stmt = conn.prepare(
        "SELECT status, count(*) FROM jobs WHERE credential_id = ?1
         GROUP BY status ORDER BY count(*) DESC, status",
    )?;
    let jobs = stmt
        .query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let in_flight = jobs
        .iter()
        .filter(|(s, _)| s == "assigned" || s == "running")
        .map(|(_, n)| n)
        .sum();
    let count = |sql: &str| conn.query_row(sql, [id], |r| r.get::<_, i64>(0));
    Ok(Some(RemovalPreview {
        jobs,
        in_flight,
        job_events: count(
            "SELECT count(*) FROM job_events WHERE job_id IN
             (SELECT id FROM jobs WHERE credential_id = ?1)",
        )?,
        progress_snapshots: count(
            "SELECT count(*) FROM progress_snapshots WHERE job_id IN
             (SELECT id FROM jobs WHERE credential_id = ?1)",
        )?,
        area_links: count("SELECT count(*) FROM area_credentials WHERE credential_id = ?1")?,
    }))
}
