//! `progress_snapshots`: the full history of `job_progress`, every field kept.

use crate::protocol::message::Progress;
use crate::time::Timestamp;
use rusqlite::{params, CachedStatement, Connection};
use serde_json::value::RawValue;

/// Appends snapshots with one prepared statement (a connection's reports arrive in
/// batches; looking the statement up per row cost 8 % of the writer's time). The job
/// row takes the latest resume state only when the job leaves the crawler (see
/// `jobs::fail`), not on every message.
pub struct Appender<'c> {
    insert: CachedStatement<'c>,
}

impl<'c> Appender<'c> {
    pub fn new(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(Appender {
            insert: conn.prepare_cached(
                "INSERT INTO progress_snapshots (job_id, received_at, sent_at, connection_id,
                     stage, entity_type, processed, total, message, item_counts, current_page,
                     processing_rate, estimated_time_remaining, resume_state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?,
        })
    }

    /// Appends one snapshot.
    pub fn append(
        &mut self,
        job_id: &str,
        p: &Progress,
        sent_at: Option<&str>,
        connection_id: i64,
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        let whole = |n: Option<f64>| n.filter(|x| x.is_finite()).map(|x| x as i64);
        self.insert.execute(params![
            job_id,
            now,
            sent_at,
            connection_id,
            p.stage,
            p.entity_type,
            whole(p.processed),
            whole(p.total),
            p.message,
            p.item_counts.as_deref().map(RawValue::get),
            whole(p.current_page),
            p.processing_rate,
            p.estimated_time_remaining,
            p.resume_state.as_deref().map(RawValue::get),
        ])?;
        Ok(())
    }
}
