//! `crawler-agent events [--since 1h] [--follow] [--json]`: the event stream (job
//! transitions and notification events) as lines or JSON lines; `--follow` keeps
//! printing new rows, like `journalctl -f`. The extension point for integrations that
//! need no code in the agent: read JSON lines from this command. Nothing is cut: every
//! row since `--since` is printed, read [`BATCH`] rows of each table at a time.

use super::output;
use super::{ok, Env};
use crate::store::read::events::{self, Cursor};
use crate::time::{parse_duration_arg, Timestamp};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How far back to start, e.g. 30m, 1h, 7d
    #[arg(long, default_value = "1h", value_parser = parse_duration_arg)]
    pub since: Duration,
    /// Keep printing new events until interrupted
    #[arg(long, short)]
    pub follow: bool,
    /// One JSON object per line
    #[arg(long)]
    pub json: bool,
}

/// Rows of each table read at a time.
const BATCH: u32 = 1000;

/// How often `--follow` looks for new rows.
const POLL: Duration = Duration::from_millis(500);

pub fn run(args: Args, env: &Env) -> anyhow::Result<ExitCode> {
    let reader = env.reader()?;
    let since = Timestamp::now().minus(args.since).to_string();
    let mut cursor = Cursor::default();
    loop {
        let items = {
            let conn = reader.conn()?;
            events::after(&conn, &since, &mut cursor, BATCH)?
        };
        for item in &items {
            let line = if args.json {
                serde_json::to_string(item)?
            } else {
                format!(
                    "{} {:<5} {:<17} {} {}",
                    item.at,
                    item.source,
                    item.kind,
                    item.subject,
                    output::clip(&item.message, 200)
                )
            };
            output::line(line)?;
        }
        // A short read means both tables are exhausted (each returned under BATCH).
        let exhausted = items.len() < BATCH as usize;
        if exhausted && !args.follow {
            return ok();
        }
        if exhausted {
            std::thread::sleep(POLL);
        }
    }
}
