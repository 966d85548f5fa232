//! Discovered groups and projects (`areas`) and the follow-up jobs they create.
//!
//! A `jobs_discovered` is applied in one transaction: each valid element upserts an
//! area keyed by (GitLab instance, kind, GitLab id), links it to the credential of the
//! job that found it, and queues a follow-up job for the kinds configured in
//! `discovery.follow_up_types`. Jobs are unique per (credential, type, GitLab id), so
//! the same discovery sent again creates nothing new; a renamed group keeps its row
//! and gets its new path. A discovery can hold a hundred thousand elements, so the
//! whole batch is staged in a temporary table and written by three statements (areas,
//! credential links, jobs), not three per element.

use crate::policy::Policy;
use crate::protocol::message::{DiscoveredJob, DiscoveryEntity, Element};
use crate::protocol::EntityType;
use crate::store::jobs;
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

/// A valid `discovered_jobs` element, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub kind: &'static str,
    pub gitlab_id: &'a str,
    pub full_path: &'a str,
    pub name: &'a str,
    /// The follow-up job's id, when its kind gets one.
    pub job: Option<String>,
}

/// Creates where a batch waits for the three statements below: a temporary table of
/// this connection (invisible to any other), so the entries are bound once as plain
/// values and each statement reads columns. (Over `json_each` of the batch, each
/// statement parsed the whole JSON again: a third of the time.) Past SQLite's 2 MiB
/// cache the table goes to an unlinked file in SQLite's temporary directory, not to
/// memory a process never gets back: `temp_store = FILE` is this build's default
/// already, and is set so that a build with another default behaves the same.
/// `store::open_read_write` calls this.
pub fn create_stage(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "PRAGMA temp_store = FILE;
         CREATE TEMP TABLE IF NOT EXISTS discovered (kind TEXT NOT NULL, gitlab_id TEXT NOT NULL,
             full_path TEXT NOT NULL, name TEXT NOT NULL, job TEXT);",
    )
}

/// Every area of the batch, inserted or refreshed (a rename updates its path).
pub const UPSERT_AREAS: &str = "INSERT INTO areas (gitlab_url, kind, gitlab_id, full_path, name,
                    first_seen_at, last_seen_at, discovered_by_job)
 SELECT ?1, kind, gitlab_id, full_path, name, ?2, ?2, ?3
 FROM temp.discovered WHERE true
 ON CONFLICT (gitlab_url, kind, gitlab_id) DO UPDATE SET
     full_path = excluded.full_path, name = excluded.name, last_seen_at = excluded.last_seen_at";

/// The credential that found them can see them. (CROSS JOIN keeps the entries as the
/// outer loop: the planner, knowing nothing of the batch's size, would otherwise walk
/// every area of the instance once per entry.)
pub const LINK_CREDENTIAL: &str = "INSERT OR IGNORE INTO area_credentials (area_id, credential_id)
 SELECT a.id, ?2 FROM temp.discovered
 CROSS JOIN areas a ON a.gitlab_url = ?1 AND a.kind = discovered.kind
                    AND a.gitlab_id = discovered.gitlab_id";

/// The follow-up jobs: new ones queued, known ones keep their state and get the new
/// path after a rename. Discovered jobs get no `created` event: `parent_job_id` and
/// the parent's `discovered` event say where they came from.
pub const QUEUE_FOLLOW_UPS: &str =
    "INSERT INTO jobs (id, credential_id, entity_type, entity_id, namespace_path, priority,
                   max_attempts, parent_job_id, created_at, updated_at)
 SELECT job, ?1, kind, gitlab_id, full_path, 0, ?2, ?3, ?4, ?4
 FROM temp.discovered WHERE job IS NOT NULL
 ON CONFLICT (credential_id, entity_type, entity_id)
 DO UPDATE SET namespace_path = excluded.namespace_path
 WHERE namespace_path IS NOT excluded.namespace_path";

/// Who found a batch, and where it goes.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The discovery job.
    pub job_id: &'a str,
    pub credential_id: i64,
    pub gitlab_url: &'a str,
    pub max_attempts: u32,
}

/// Writes a batch of valid entries: areas, their credential links and the follow-up
/// jobs, three statements for the whole batch. `entries` must be sorted by kind and
/// GitLab id, with the new jobs' ids increasing in that order, so every B-tree they
/// touch is written in key order, page after page. Runs inside the caller's
/// transaction, on a connection from `store::open_read_write` (which made the stage);
/// the stage is empty again afterwards.
pub fn write_batch(
    conn: &Connection,
    entries: &[Entry<'_>],
    origin: Origin<'_>,
    now: Timestamp,
) -> rusqlite::Result<()> {
    debug_assert!(
        entries
            .windows(2)
            .all(|w| (w[0].kind, w[0].gitlab_id) <= (w[1].kind, w[1].gitlab_id)),
        "a discovery batch is written in key order"
    );
    // Empty unless a caller committed after an earlier batch failed half-way (the
    // writer rolls a failed operation back, and the stage with it).
    conn.prepare_cached("DELETE FROM temp.discovered")?
        .execute([])?;
    {
        let mut stage = conn.prepare_cached(
            "INSERT INTO temp.discovered (kind, gitlab_id, full_path, name, job)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for e in entries {
            stage.execute(params![e.kind, e.gitlab_id, e.full_path, e.name, e.job])?;
        }
    }
    let Origin {
        job_id,
        credential_id,
        gitlab_url,
        max_attempts,
    } = origin;
    conn.prepare_cached(UPSERT_AREAS)?
        .execute(params![gitlab_url, now, job_id])?;
    conn.prepare_cached(LINK_CREDENTIAL)?
        .execute(params![gitlab_url, credential_id])?;
    conn.prepare_cached(QUEUE_FOLLOW_UPS)?.execute(params![
        credential_id,
        max_attempts,
        job_id,
        now
    ])?;
    conn.prepare_cached("DELETE FROM temp.discovered")?
        .execute([])?;
    Ok(())
}

/// The largest rowid of `table` (0 when empty): rows added later have larger ones.
fn last_rowid(conn: &Connection, table: &str) -> rusqlite::Result<i64> {
    conn.query_row(
        &format!("SELECT coalesce(max(rowid), 0) FROM {table}"),
        [],
        |r| r.get(0),
    )
}

fn added_since(conn: &Connection, table: &str, rowid: i64) -> rusqlite::Result<usize> {
    conn.query_row(
        &format!("SELECT count(*) FROM {table} WHERE rowid > ?1"),
        [rowid],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as usize)
}

/// Applies a `jobs_discovered` from job `job_id`. `None` when the job is unknown.
///
/// The valid entries are sorted and given increasing job ids, then written by
/// [`write_batch`]: one statement per kind of row for the whole batch, so the
/// per-entry cost is SQLite's B-tree work alone. Uniqueness is the unique keys' job: a
/// repeated entry, in this batch or an earlier one, changes nothing but names and
/// paths.
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
    let mut entries = Vec::with_capacity(found.len());
    let mut rejected = 0;
    for entry in found {
        let fields = entry.valid().map(|e| {
            (
                non_empty(&e.job_type).and_then(kind_of),
                non_empty(&e.entity_id),
                non_empty(&e.namespace_path),
                non_empty(&e.entity_name),
            )
        });
        let Some((Some(kind), Some(gitlab_id), Some(full_path), Some(name))) = fields else {
            rejected += 1;
            continue;
        };
        entries.push(Entry {
            kind: kind.as_str(),
            gitlab_id,
            full_path,
            name,
            job: None,
        });
    }
    entries.sort_unstable_by(|a, b| (a.kind, a.gitlab_id).cmp(&(b.kind, b.gitlab_id)));
    let mut ids = ulid::Generator::new();
    for e in &mut entries {
        if policy.follow_up_types.iter().any(|k| k.as_str() == e.kind) {
            // Monotonic within the millisecond; a plain ULID if that ever overflows.
            let id = ids.generate().unwrap_or_else(|_| ulid::Ulid::new());
            e.job = Some(id.to_string());
        }
    }
    let (areas_before, jobs_before) = (last_rowid(conn, "areas")?, last_rowid(conn, "jobs")?);
    let origin = Origin {
        job_id,
        credential_id,
        gitlab_url: &gitlab_url,
        max_attempts: policy.max_attempts,
    };
    write_batch(conn, &entries, origin, now)?;
    let applied = Applied {
        entries: found.len(),
        rejected,
        new_areas: added_since(conn, "areas", areas_before)?,
        new_jobs: added_since(conn, "jobs", jobs_before)?,
    };
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
    let areas_before = last_rowid(conn, "areas")?;
    let mut rejected = 0;
    let kind_ok = matches!(
        entity_type,
        EntityType::Group | EntityType::Project | EntityType::User
    );
    for e in entities {
        let fields = e.valid().filter(|_| kind_ok).map(|e| {
            (
                non_empty(&e.id),
                non_empty(&e.name),
                non_empty(&e.path),
                non_empty(&e.parent_id),
            )
        });
        let Some((Some(id), Some(name), Some(path), parent)) = fields else {
            rejected += 1;
            continue;
        };
        let area = Area {
            kind: entity_type,
            gitlab_id: id,
            full_path: path,
            name,
            parent_gitlab_id: parent,
        };
        upsert_area(conn, "", None, &area, None, now)?;
    }
    let applied = Applied {
        entries: entities.len(),
        rejected,
        new_areas: added_since(conn, "areas", areas_before)?,
        new_jobs: 0,
    };
    record(conn, None, None, applied, connection_id, now)?;
    Ok(applied)
}

/// Inserts or refreshes an area (a rename updates its path) and links the credential.
fn upsert_area(
    conn: &Connection,
    gitlab_url: &str,
    credential_id: Option<i64>,
    a: &Area<'_>,
    job_id: Option<&str>,
    now: Timestamp,
) -> rusqlite::Result<()> {
    // (No RETURNING: it builds a temporary table per row; a lookup is cheaper.)
    conn.prepare_cached(
        "INSERT INTO areas (gitlab_url, kind, gitlab_id, full_path, name, parent_gitlab_id,
                            first_seen_at, last_seen_at, discovered_by_job)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)
         ON CONFLICT (gitlab_url, kind, gitlab_id) DO UPDATE SET
             full_path = excluded.full_path, name = excluded.name,
             last_seen_at = excluded.last_seen_at,
             parent_gitlab_id = coalesce(excluded.parent_gitlab_id, parent_gitlab_id)",
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
    if let Some(credential_id) = credential_id {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO area_credentials (area_id, credential_id)
             SELECT id, ?4 FROM areas WHERE gitlab_url = ?1 AND kind = ?2 AND gitlab_id = ?3",
        )?
        .execute(params![
            gitlab_url,
            a.kind.as_str(),
            a.gitlab_id,
            credential_id
        ])?;
    }
    Ok(())
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
