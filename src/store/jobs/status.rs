//! What the state machine knows about a job: its [`Status`] and the [`JobState`] read
//! before every transition.

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Assigned,
    Running,
    Finished,
    Failed,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Queued,
        Status::Assigned,
        Status::Running,
        Status::Finished,
        Status::Failed,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Assigned => "assigned",
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Finished | Status::Failed | Status::Cancelled)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Status::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("'{s}' is not a job status (queued, assigned, running, finished, failed, cancelled)"))
    }
}

impl rusqlite::types::FromSql for Status {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = v.as_str()?;
        text.parse()
            .map_err(|e: String| rusqlite::types::FromSqlError::Other(e.into()))
    }
}

impl rusqlite::ToSql for Status {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// What the state machine needs to know about one job.
#[derive(Debug, Clone)]
pub struct JobState {
    pub id: String,
    pub status: Status,
    pub attempts: u32,
    pub max_attempts: u32,
    pub entity_type: String,
    pub credential_id: i64,
}

pub fn state(conn: &Connection, id: &str) -> rusqlite::Result<Option<JobState>> {
    conn.prepare_cached(
        "SELECT id, status, attempts, max_attempts, entity_type, credential_id FROM jobs WHERE id = ?1",
    )?
    .query_row([id], |r| {
        Ok(JobState {
            id: r.get(0)?,
            status: r.get(1)?,
            attempts: r.get(2)?,
            max_attempts: r.get(3)?,
            entity_type: r.get(4)?,
            credential_id: r.get(5)?,
        })
    })
    .optional()
}
