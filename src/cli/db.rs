//! `crawler-agent db check | prune | path`.
//!
//! The checks are the read side's ([`crate::store::read::check`]); pruning applies the
//! retention rules in one transaction.

use super::output;
use super::{fail, ok, Env};
use crate::store::read::check;
use crate::store::retention;
use crate::time::Timestamp;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run integrity_check and foreign_key_check; exit 1 on any problem
    Check,
    /// Apply the retention rules now
    Prune,
    /// Print the database path
    Path,
}

pub fn run(cmd: Command, env: &Env) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Path => {
            output::line(env.loaded.database.display())?;
            ok()
        }
        Command::Check => check(env),
        Command::Prune => {
            let retention = &env.loaded.config.retention;
            let pruned = env.write(|tx| Ok(retention::prune(tx, retention, Timestamp::now())?))?;
            output::line(format!(
                "pruned {} progress snapshots, {} job events, {} errors, {} ignored messages, \
                 {} connections, {} discoveries, {} token refreshes, {} ended jobs",
                pruned.progress_snapshots,
                pruned.job_events,
                pruned.errors,
                pruned.ignored_messages,
                pruned.connections,
                pruned.discoveries,
                pruned.token_refreshes,
                pruned.jobs
            ))?;
            ok()
        }
    }
}

fn check(env: &Env) -> anyhow::Result<ExitCode> {
    let conn = env.reader()?.conn()?;
    let problems = check::problems(&conn)?;
    if problems.is_empty() {
        output::line(format!("ok: {}", env.loaded.database.display()))?;
        ok()
    } else {
        for p in &problems {
            output::line(p)?;
        }
        fail(format!(
            "{} problem(s) in {}",
            problems.len(),
            env.loaded.database.display()
        ))
    }
}
