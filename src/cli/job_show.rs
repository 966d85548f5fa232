//! `crawler-agent jobs show ID [--json]`: the whole job. Every column, a hint when its
//! last error has a known cause, its progress history in brief, every failure it
//! reported (stack trace, context and partial counts included) and its transitions.

use super::errors::{print_detail, Hinted};
use super::hints;
use super::output::{self, clip, or_dash, Table};
use super::{ok, Env};
use crate::store::read;
use std::process::ExitCode;

/// Failures printed per job; the count of the rest is printed after them.
const MAX_FAILURES: u32 = 50;

/// Transitions printed per job (messages refused for an ended job are transitions
/// too, so a misbehaving crawler could add many); the count of the rest follows.
const MAX_EVENTS: u32 = 1000;

/// Shows job `id` (a full id: the caller resolved any prefix).
pub fn run(id: &str, json: bool, env: &Env) -> anyhow::Result<ExitCode> {
    let conn = env.reader()?.conn()?;
    let Some(job) = read::jobs::get(&conn, id)? else {
        return super::fail(format!("no job {}", output::printable(id)));
    };
    let events = read::jobs::events(&conn, id, MAX_EVENTS)?;
    let all_events = read::jobs::count_events(&conn, id)?;
    let progress = read::jobs::progress(&conn, id)?;
    let failures = read::errors::for_job(&conn, id, MAX_FAILURES)?;
    let all_failures = read::errors::count_for_job(&conn, id)?;
    let hint = job.last_error.as_deref().and_then(hints::for_error);
    if json {
        let errors: Vec<Hinted<'_, _>> = failures.iter().map(Hinted::of).collect();
        output::json(&serde_json::json!({
            "job": job,
            "hint": hint,
            "progress": progress,
            "errors": errors,
            "errors_total": all_failures,
            "events": events,
            "events_total": all_events,
        }))?;
        return ok();
    }
    let fields: [(&str, String); 22] = [
        ("id", job.id.clone()),
        ("status", job.status.to_string()),
        ("credential", job.credential.clone()),
        ("entity type", job.entity_type.clone()),
        ("entity id", job.entity_id.clone()),
        ("path", or_dash(job.namespace_path.as_ref())),
        ("priority", job.priority.to_string()),
        (
            "attempts",
            format!("{} of {}", job.attempts, job.max_attempts),
        ),
        ("not before", or_dash(job.not_before.as_ref())),
        ("connection", or_dash(job.connection_id)),
        ("parent job", or_dash(job.parent_job_id.as_ref())),
        ("created", job.created_at.clone()),
        ("updated", job.updated_at.clone()),
        ("dispatched", or_dash(job.dispatched_at.as_ref())),
        ("started", or_dash(job.started_at.as_ref())),
        ("finished", or_dash(job.finished_at.as_ref())),
        ("resume next", yes_no(job.resume_next)),
        ("cancel pending", yes_no(job.cancel_pending)),
        ("last error", or_dash(job.last_error.as_ref())),
        ("hint", or_dash(hint)),
        ("resume state", or_dash(job.resume_state.as_ref())),
        ("final counts", or_dash(job.final_counts.as_ref())),
    ];
    for (name, value) in fields {
        output::line(format!("{name:<14} {}", output::printable(&value)))?;
    }
    output::line("")?;
    if progress.reports == 0 {
        output::line("progress       no progress reported")?;
    } else {
        let amount = match (progress.processed, progress.total) {
            (Some(p), Some(t)) => format!("{p} of {t}"),
            (Some(p), None) => format!("{p} processed"),
            _ => "-".into(),
        };
        output::line(output::printable(&format!(
            "progress       {} reports from {} to {}; latest: {} {amount}, page {}, {} ({})",
            progress.reports,
            or_dash(progress.first_at.as_ref()),
            or_dash(progress.latest_at.as_ref()),
            or_dash(progress.stage.as_ref()),
            or_dash(progress.current_page),
            or_dash(progress.item_counts.as_ref()),
            or_dash(progress.message.as_ref()),
        )))?;
    }
    output::line("")?;
    if failures.is_empty() {
        output::line("failures       none recorded")?;
    } else {
        output::line(format!("failures       {all_failures}"))?;
        for e in &failures {
            output::line("")?;
            print_detail(e)?;
        }
        let rest = all_failures - failures.len() as i64;
        if rest > 0 {
            output::line(format!(
                "\n… {rest} more failures; `crawler-agent jobs show {id} --json` lists the first \
                 {MAX_FAILURES}, `crawler-agent errors` all of them"
            ))?;
        }
    }
    output::line("")?;
    let mut table = Table::new(&["AT", "EVENT", "FROM", "TO", "CONN", "DETAIL"]);
    for e in &events {
        table.row(vec![
            e.at.clone(),
            e.event.clone(),
            or_dash(e.from_status.as_ref()),
            or_dash(e.to_status.as_ref()),
            or_dash(e.connection_id),
            clip(
                &e.detail.as_ref().map(|d| d.to_string()).unwrap_or_default(),
                100,
            ),
        ]);
    }
    table.print()?;
    let rest = all_events - events.len() as i64;
    if rest > 0 {
        output::line(format!(
            "… {rest} later transitions; `crawler-agent events --json` or the job_events table has them"
        ))?;
    }
    ok()
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}
