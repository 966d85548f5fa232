//! Adding work to the queue: one job, unique per (credential, entity type, entity id).

use super::audit::event;
use super::status::Status;
use crate::protocol::EntityType;
use crate::time::Timestamp;
use rusqlite::{params, Connection};

/// Work to add to the queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub credential_id: i64,
    pub entity_type: EntityType,
    pub entity_id: String,
    pub namespace_path: Option<String>,
    pub priority: i64,
    pub max_attempts: u32,
    pub parent_job_id: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    Created(String),
    /// The same credential, entity type and entity id is already queued or known.
    Duplicate(String),
}

/// A new job id: a ULID, strictly increasing within this process, so jobs created in
/// the same millisecond (one discovery batch) keep their creation order when dispatch
/// breaks a `created_at` tie by id (FIFO). Plain random ULIDs made that order random.
pub fn new_id() -> String {
    static IDS: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());
    let mut ids = IDS.lock().unwrap_or_else(|p| p.into_inner());
    ids.generate()
        // Only after 2^80 ids in one millisecond.
        .unwrap_or_else(|_| ulid::Ulid::new())
        .to_string()
}

/// Adds a job unless the same work exists; returns which.
pub fn add(conn: &Connection, job: &NewJob, now: Timestamp) -> rusqlite::Result<Added> {
    let id = new_id();
    let inserted = conn
        .prepare_cached(
            "INSERT INTO jobs (id, credential_id, entity_type, entity_id, namespace_path, priority,
                               max_attempts, parent_job_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
             ON CONFLICT (credential_id, entity_type, entity_id) DO NOTHING",
        )?
        .execute(params![
            id,
            job.credential_id,
            job.entity_type.as_str(),
            job.entity_id,
            job.namespace_path,
            job.priority,
            job.max_attempts,
            job.parent_job_id,
            now
        ])?;
    if inserted == 0 {
        let existing = conn.query_row(
            "SELECT id FROM jobs WHERE credential_id = ?1 AND entity_type = ?2 AND entity_id = ?3",
            params![job.credential_id, job.entity_type.as_str(), job.entity_id],
            |r| r.get(0),
        )?;
        return Ok(Added::Duplicate(existing));
    }
    event(
        conn,
        &id,
        "created",
        None,
        Some(Status::Queued),
        None,
        None,
        now,
    )?;
    Ok(Added::Created(id))
}
