//! `crawler-agent errors [--since DURATION] [--limit N] [--json]` (newest first; stderr
//! says how many more there are) and `crawler-agent errors show ID [--json]` (every
//! column, stack trace included). A failure with a known cause carries its hint.

use super::hints;
use super::output::{self, clip, or_dash, Table};
use super::{fail, ok, Env};
use crate::store::read::errors::{self, ErrorDetail};
use crate::time::{parse_duration_arg, Timestamp};
use serde::Serialize;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub show: Option<Sub>,
    /// How far back to look, e.g. 30m, 24h, 7d
    #[arg(long, default_value = "24h", value_parser = parse_duration_arg)]
    pub since: Duration,
    /// Errors to list, newest first; 0 lists them all
    #[arg(long, default_value_t = 200)]
    pub limit: u32,
    /// Print JSON (every listed field, and the hint) instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Show one error with every field: stack trace, context, partial counts, hint
    Show {
        /// The error's id (the ID column of `crawler-agent errors`)
        id: i64,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

/// A row with the hint for its message, for `--json`.
#[derive(Debug, Serialize)]
pub struct Hinted<'a, T: Serialize> {
    #[serde(flatten)]
    pub row: &'a T,
    pub hint: Option<&'static str>,
}

impl<'a> Hinted<'a, ErrorDetail> {
    pub fn of(row: &'a ErrorDetail) -> Self {
        Hinted {
            row,
            hint: hints::for_error(&row.message),
        }
    }
}

pub fn run(args: Args, env: &Env) -> anyhow::Result<ExitCode> {
    if let Some(Sub::Show { id, json }) = args.show {
        return show(id, json, env);
    }
    let conn = env.reader()?.conn()?;
    let since = Timestamp::now().minus(args.since);
    let rows = errors::since(&conn, since, args.limit)?;
    let more = if args.limit != 0 && rows.len() == args.limit as usize {
        errors::count_since(&conn, since)? - rows.len() as i64
    } else {
        0
    };
    if args.json {
        let rows: Vec<Hinted<'_, _>> = rows
            .iter()
            .map(|e| Hinted {
                row: e,
                hint: hints::for_error(&e.message),
            })
            .collect();
        output::json(&rows)?;
    } else {
        table(&rows)?;
    }
    if more > 0 {
        output::note(format!(
            "… {more} more; use --limit N (0: all) or --since (a shorter window)"
        ))?;
    }
    ok()
}

fn table(rows: &[errors::ErrorRow]) -> anyhow::Result<()> {
    let mut table = Table::new(&["ID", "AT", "CATEGORY", "SEVERITY", "JOB", "CONN", "MESSAGE"]);
    // Each hint once, after the table, with the ids of the errors it explains.
    let mut hinted: Vec<(&'static str, Vec<i64>)> = Vec::new();
    for e in rows {
        table.row(vec![
            e.id.to_string(),
            e.at.clone(),
            e.category.clone(),
            e.severity.clone(),
            or_dash(e.job_id.as_ref()),
            or_dash(e.connection_id),
            clip(&e.message, 100),
        ]);
        if let Some(hint) = hints::for_error(&e.message) {
            match hinted.iter_mut().find(|(h, _)| *h == hint) {
                Some((_, ids)) => ids.push(e.id),
                None => hinted.push((hint, vec![e.id])),
            }
        }
    }
    if table.is_empty() {
        output::line("no errors")?;
        return Ok(());
    }
    table.print()?;
    for (hint, ids) in hinted {
        let shown: Vec<String> = ids.iter().take(10).map(i64::to_string).collect();
        let rest = if ids.len() > 10 {
            format!(" and {} more", ids.len() - 10)
        } else {
            String::new()
        };
        output::line(format!("\nhint for {}{rest}: {hint}", shown.join(", ")))?;
    }
    Ok(())
}

fn show(id: i64, json: bool, env: &Env) -> anyhow::Result<ExitCode> {
    let conn = env.reader()?.conn()?;
    let Some(e) = errors::get(&conn, id)? else {
        return fail(format!("no error {id}"));
    };
    if json {
        output::json(&Hinted::of(&e))?;
    } else {
        print_detail(&e)?;
    }
    ok()
}

/// Every field of one error, one per line; the stack trace last, whole.
pub fn print_detail(e: &ErrorDetail) -> std::io::Result<()> {
    let json = |v: &Option<serde_json::Value>| or_dash(v.as_ref());
    let fields: [(&str, String); 12] = [
        ("error", e.id.to_string()),
        ("at", e.at.clone()),
        ("category", e.category.clone()),
        ("severity", e.severity.clone()),
        ("job", or_dash(e.job_id.as_ref())),
        ("connection", or_dash(e.connection_id)),
        ("message", e.message.clone()),
        ("hint", or_dash(hints::for_error(&e.message))),
        ("error type", or_dash(e.error_type.as_ref())),
        ("recoverable", or_dash(e.is_recoverable)),
        ("context", json(&e.context)),
        ("partial counts", json(&e.partial_counts)),
    ];
    for (name, value) in fields {
        output::line(format!("{name:<14} {}", output::printable(&value)))?;
    }
    output::line(format!(
        "{:<14} {}",
        "resume state",
        output::printable(&json(&e.resume_state))
    ))?;
    match &e.stack_trace {
        None => output::line(format!("{:<14} -", "stack trace")),
        Some(trace) => {
            output::line("stack trace")?;
            for line in trace.lines() {
                output::line(format!("  {}", output::printable(line)))?;
            }
            Ok(())
        }
    }
}
