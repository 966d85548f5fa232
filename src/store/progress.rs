//! `progress_snapshots`: the full history of `job_progress`, every field kept.

use crate::protocol::message::Progress;
use crate::time::Timestamp;
use rusqlite::{params, Connection};
use serde_json::value::RawValue;

/// Appends one snapshot. The job row takes the latest resume state only when the job
/// leaves the crawler (see `jobs::fail`), not on every message.
pub fn append(
    conn: &Connection,
    job_id: &str,
    p: &Progress,
    sent_at: Option<&str>,
    connection_id: i64,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let whole = |n: Option<f64>| n.filter(|x| x.is_finite()).map(|x| x as i64);
    conn.prepare_cached(
        "INSERT INTO progress_snapshots (job_id, received_at, sent_at, connection_id, stage,
             entity_type, processed, total, message, item_counts, current_page, processing_rate,
             estimated_time_remaining, resume_state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
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
