//! `crawler-agent credentials remove NAME [--yes] [--dry-run]`: says what goes (the
//! credential, its jobs by status, their events and progress, its area links), then
//! asks on a terminal. `--dry-run` only says; `--yes` skips the question; off a
//! terminal without `--yes` it refuses (exit 2) rather than delete unasked.

use super::super::output;
use super::super::{fail, ok, usage, Env};
use crate::store::credentials::{self, Removed};
use crate::store::read::credentials::{removal_preview, RemovalPreview};
use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The credential's name (as `credentials list` shows it)
    pub name: String,
    /// Remove without asking (needed when stdin is not a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print what would be removed and change nothing
    #[arg(long, conflicts_with = "yes")]
    pub dry_run: bool,
}

/// The longest answer read from the terminal; the rest of the line is ignored.
const MAX_ANSWER_BYTES: u64 = 256;

pub fn run(args: &Args, env: &Env) -> anyhow::Result<ExitCode> {
    let name = args.name.as_str();
    // Quoted back escaped: a name given here may hold terminal control sequences.
    let shown = output::clip(&name.escape_debug().to_string(), 80);
    let preview = {
        let conn = env.reader()?.conn()?;
        removal_preview(&conn, name)?
    };
    let Some(preview) = preview else {
        return fail(format!("no credential named '{shown}'"));
    };
    let verb = if args.dry_run {
        "would remove"
    } else {
        "will remove"
    };
    output::line(format!("{verb}: {}", describe(&shown, &preview)))?;
    if preview.in_flight > 0 {
        return fail(format!(
            "credential '{shown}' has {} job(s) in the crawler's hands; cancel them or wait",
            preview.in_flight
        ));
    }
    if args.dry_run {
        output::line("dry run: nothing changed")?;
        return ok();
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return usage(format!(
                "not removing '{shown}' without confirmation: stdin is not a terminal; \
                 pass --yes to remove, or --dry-run to only look"
            ));
        }
        if !confirm(&format!("remove credential '{shown}'? [y/N] "))? {
            output::line("nothing removed")?;
            return ok();
        }
    }
    match env.write(|tx| Ok(credentials::remove(tx, name)?))? {
        Removed::NotFound => fail(format!("no credential named '{shown}' (removed meanwhile)")),
        Removed::InFlight(n) => fail(format!(
            "credential '{shown}' has {n} job(s) in the crawler's hands; cancel them or wait"
        )),
        Removed::Removed { jobs } => {
            output::line(format!("credential {shown} removed with its {jobs} job(s)"))?;
            ok()
        }
    }
}

/// One line: "credential gl, 3 jobs (2 queued, 1 finished), 7 job events, ...".
fn describe(name: &str, p: &RemovalPreview) -> String {
    let total: i64 = p.jobs.iter().map(|(_, n)| n).sum();
    let mut parts = vec![format!("credential {name}")];
    if total == 0 {
        parts.push("no jobs".into());
    } else {
        let by_status: Vec<String> = p.jobs.iter().map(|(s, n)| format!("{n} {s}")).collect();
        parts.push(format!("{total} job(s) ({})", by_status.join(", ")));
    }
    parts.push(format!("{} job event(s)", p.job_events));
    parts.push(format!("{} progress snapshot(s)", p.progress_snapshots));
    if p.area_links > 0 {
        parts.push(format!(
            "{} link(s) to discovered areas (the areas stay)",
            p.area_links
        ));
    }
    parts.join(", ")
}

/// Asks on stderr and reads one bounded line from stdin; only y or yes agrees.
fn confirm(question: &str) -> std::io::Result<bool> {
    let mut err = std::io::stderr().lock();
    err.write_all(question.as_bytes())?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_ANSWER_BYTES)
        .read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
