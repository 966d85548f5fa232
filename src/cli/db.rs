//! `crawler-agent db check | prune | path`.

use super::output;
use super::{fail, ok, Env};
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
                "pruned {} progress snapshots, {} job events, {} errors",
                pruned.progress_snapshots, pruned.job_events, pruned.errors
            ))?;
            ok()
        }
    }
}

fn check(env: &Env) -> anyhow::Result<ExitCode> {
    let conn = env.read()?;
    let integrity: Vec<String> = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let foreign: Vec<String> = conn
        .prepare("PRAGMA foreign_key_check")?
        .query_map([], |r| {
            Ok(format!(
                "{} row {} -> {}",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut problems: Vec<String> = integrity.into_iter().filter(|l| l != "ok").collect();
    problems.extend(foreign.into_iter().map(|f| format!("foreign key: {f}")));
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
