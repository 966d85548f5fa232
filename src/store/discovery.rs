//! Discovered groups and projects (`areas`) and the follow-up jobs they create.
//!
//! A `jobs_discovered` is applied in one transaction: each valid element upserts an
//! area keyed by (GitLab instance, kind, GitLab id), links it to the credential of the
//! job that found it, and queues a follow-up job for the kinds configured in
//! `discovery.follow_up_types`. Jobs are unique per (credential, type, GitLab id), so
//! the same discovery sent again creates nothing new; a renamed group keeps its row
//! and gets its new path.

use crate::policy::Policy;
use crate::protocol::message::{DiscoveredJob, DiscoveryEntity, Element};
use crate::protocol::EntityType;
use crate::store::jobs::{self, Added, NewJob};
use crate::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

/// What one discovery message changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub entries: usize,
    pub rejected: usize,
    pub new_areas: usize,
    pub new_jobs: usize,
}

/// One area to upsert.
struct Area<'a> {
    kind: EntityType,
    gitlab_id: &'a str,
    full_path: &'a str,
    name: &'a str,
    parent_gitlab_id: Option<&'a str>,
}

/// The area kind of a `discovered_jobs[].job_type` (spec §7).
fn kind_of(job_type: &str) -> Option<EntityType> {
    match job_type {
        "crawl_group" | "discover_namespaces" => Some(EntityType::Group),
        "crawl_project" => Some(EntityType::Project),
        "crawl_user" => Some(EntityType::User),
        _ => None,
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The credential and GitLab instance of the job that made the discovery.
fn origin(conn: &Connection, job_id: &str) -> rusqlite::Result<Option<(i64, String)>> {
    conn.query_row(
        "SELECT c.id, c.gitlab_url FROM jobs j JOIN credentials c ON c.id = j.credential_id
         WHERE j.id = ?1",
        [job_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Applies a `jobs_discovered` from job `job_id`. `None` when the job is unknown.
pub fn apply_jobs_discovered(
    conn: &Connection,
    job_id: &str,
    found: &[Element<DiscoveredJob>],
    summary: Option<&Value>,
    connection_id: i64,
    policy: &Policy,
    now: Timestamp,
) -> rusqlite::Result<Option<Applied>> {
    let Some((credential_id, gitlab_url)) = origin(conn, job_id)? else {
        return Ok(None);
    };
    let mut applied = Applied {
        entries: found.len(),
        ..Applied::default()
    };
    for entry in found {
        let Some(entry) = entry.valid() else {
            applied.rejected += 1;
            continue;
        };
        let fields = (
            non_empty(&entry.job_type).and_then(kind_of),
            non_empty(&entry.entity_id),
            non_empty(&entry.namespace_path),
            non_empty(&entry.entity_name),
        );
        let (Some(kind), Some(gitlab_id), Some(full_path), Some(name)) = fields else {
            applied.rejected += 1;
            continue;
        };
        let area = Area {
            kind,
            gitlab_id,
            full_path,
            name,
            parent_gitlab_id: None,
        };
        if upsert_area(conn, &gitlab_url, credential_id, &area, Some(job_id), now)? {
            applied.new_areas += 1;
        }
        if policy.follow_up_types.contains(&kind) {
            let job = NewJob {
                credential_id,
                entity_type: kind,
                entity_id: gitlab_id.to_string(),
                namespace_path: Some(full_path.to_string()),
                priority: 0,
                max_attempts: policy.max_attempts,
                parent_job_id: Some(job_id.to_string()),
            };
            match jobs::add(conn, &job, now)? {
                Added::Created(_) => applied.new_jobs += 1,
                Added::Duplicate(existing) => {
                    // Keep the path current after a rename.
                    conn.prepare_cached("UPDATE jobs SET namespace_path = ?2 WHERE id = ?1 AND namespace_path IS NOT ?2")?
                        .execute(params![existing, full_path])?;
                }
            }
        }
    }
    record(conn, Some(job_id), summary, applied, connection_id, now)?;
    let detail = serde_json::json!({
        "entries": applied.entries, "rejected": applied.rejected,
        "new_areas": applied.new_areas, "new_jobs": applied.new_jobs,
    });
    jobs::event(
        conn,
        job_id,
        "discovered",
        None,
        None,
        Some(connection_id),
        Some(&detail),
        now,
    )?;
    Ok(Some(applied))
}

/// Applies a `discovery` message (areas only, no jobs; never sent by the current
/// crawler). It names no job, so there is no credential or instance to link: the areas
/// are recorded with an empty `gitlab_url` and no `area_credentials` row.
pub fn apply_discovery(
    conn: &Connection,
    entity_type: EntityType,
    entities: &[Element<DiscoveryEntity>],
    connection_id: i64,
    now: Timestamp,
) -> rusqlite::Result<Applied> {
    let mut applied = Applied {
        entries: entities.len(),
        ..Applied::default()
    };
    let kind = match entity_type {
        EntityType::Group | EntityType::Project | EntityType::User => entity_type,
        _ => {
            applied.rejected = entities.len();
            record(conn, None, None, applied, connection_id, now)?;
            return Ok(applied);
        }
    };
    for e in entities {
        let Some(e) = e.valid() else {
            applied.rejected += 1;
            continue;
        };
        let (Some(id), Some(name), Some(path)) =
            (non_empty(&e.id), non_empty(&e.name), non_empty(&e.path))
        else {
            applied.rejected += 1;
            continue;
        };
        let area = Area {
            kind,
            gitlab_id: id,
            full_path: path,
            name,
            parent_gitlab_id: non_empty(&e.parent_id),
        };
        if upsert_area(conn, "", 0, &area, None, now)? {
            applied.new_areas += 1;
        }
    }
    record(conn, None, None, applied, connection_id, now)?;
    Ok(applied)
}

/// Inserts or refreshes an area; returns true when it is new.
fn upsert_area(
    conn: &Connection,
    gitlab_url: &str,
    credential_id: i64,
    a: &Area<'_>,
    job_id: Option<&str>,
    now: Timestamp,
) -> rusqlite::Result<bool> {
    let existing: Option<i64> = conn
        .prepare_cached(
            "SELECT id FROM areas WHERE gitlab_url = ?1 AND kind = ?2 AND gitlab_id = ?3",
        )?
        .query_row(params![gitlab_url, a.kind.as_str(), a.gitlab_id], |r| {
            r.get(0)
        })
        .optional()?;
    let (area_id, new) = match existing {
        Some(id) => {
            conn.prepare_cached(
                "UPDATE areas SET full_path = ?2, name = ?3, last_seen_at = ?4,
                                  parent_gitlab_id = coalesce(?5, parent_gitlab_id)
                 WHERE id = ?1",
            )?
            .execute(params![id, a.full_path, a.name, now, a.parent_gitlab_id])?;
            (id, false)
        }
        None => {
            conn.prepare_cached(
                "INSERT INTO areas (gitlab_url, kind, gitlab_id, full_path, name, parent_gitlab_id,
                                    first_seen_at, last_seen_at, discovered_by_job)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
            )?
            .execute(params![
                gitlab_url,
                a.kind.as_str(),
                a.gitlab_id,
                a.full_path,
                a.name,
                a.parent_gitlab_id,
                now,
                job_id
            ])?;
            (conn.last_insert_rowid(), true)
        }
    };
    if credential_id > 0 {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO area_credentials (area_id, credential_id) VALUES (?1, ?2)",
        )?
        .execute(params![area_id, credential_id])?;
    }
    Ok(new)
}

fn record(
    conn: &Connection,
    job_id: Option<&str>,
    summary: Option<&Value>,
    a: Applied,
    connection_id: i64,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO discoveries (job_id, received_at, connection_id, entries, rejected, new_areas,
                                  new_jobs, summary)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        job_id,
        now,
        connection_id,
        a.entries as i64,
        a.rejected as i64,
        a.new_areas as i64,
        a.new_jobs as i64,
        summary.map(Value::to_string)
    ])?;
    Ok(())
}
