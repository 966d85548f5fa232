//! `crawler-agent errors [--since DURATION] [--json]`.

use super::output::{self, clip, or_dash, Table};
use super::{ok, Env};
use crate::store::read::errors;
use crate::time::{parse_duration, Timestamp};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How far back to look, e.g. 30m, 24h, 7d
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub since: Duration,
    /// Errors shown at most
    #[arg(long, default_value_t = 200)]
    pub limit: u32,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, env: &Env) -> anyhow::Result<ExitCode> {
    let conn = env.reader()?.conn()?;
    let rows = errors::since(&conn, Timestamp::now().minus(args.since), args.limit)?;
    if args.json {
        output::json(&rows)?;
        return ok();
    }
    let mut table = Table::new(&["ID", "AT", "CATEGORY", "SEVERITY", "JOB", "CONN", "MESSAGE"]);
    for e in &rows {
        table.row(vec![
            e.id.to_string(),
            e.at.clone(),
            e.category.clone(),
            e.severity.clone(),
            or_dash(e.job_id.as_ref()),
            or_dash(e.connection_id),
            clip(&e.message, 100),
        ]);
    }
    if table.is_empty() {
        output::line("no errors")?;
    } else {
        table.print()?;
    }
    ok()
}
