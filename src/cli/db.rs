//! `crawler-agent db check | prune | path | backup`.
//!
//! The checks are the read side's ([`crate::store::read::check`]), `--repair` the
//! store's ([`crate::store::job_counts`]); pruning applies the
//! retention rules in one transaction; a backup is the store's ([`crate::store::backup`]).

use super::output;
use super::{fail, ok, Env};
use crate::store::read::check;
use crate::store::retention;
use crate::store::{job_counts, migrate};
use crate::time::Timestamp;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run integrity_check and foreign_key_check and recount the jobs against
    /// job_counts; exit 1 on any problem
    Check {
        /// Recreate indexes, triggers and views dropped from the schema, and rebuild
        /// job_counts from the jobs when they disagree (the problems this fixes; one
        /// write transaction each, safe while the agent runs)
        #[arg(long)]
        repair: bool,
    },
    /// Apply the retention rules now
    Prune,
    /// Print the database path
    Path,
    /// Copy the database (safe while the agent runs) to FILE, mode 0600
    Backup {
        /// Where to write the copy (replaced if it exists)
        file: std::path::PathBuf,
        /// Blank every token, refresh token, client secret and token command in the
        /// copy, for a copy that leaves this machine
        #[arg(long)]
        without_secrets: bool,
    },
}

pub fn run(cmd: Command, env: &Env) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Path => {
            output::line(env.loaded.database.display())?;
            ok()
        }
        Command::Check { repair } => check(env, repair),
        Command::Backup {
            file,
            without_secrets,
        } => {
            let written = crate::store::backup::backup(
                &env.loaded.database,
                &env.settings(),
                &file,
                without_secrets,
            )?;
            let secrets = if without_secrets {
                format!(
                    ", secrets of {} credential(s) blanked",
                    written.credentials_blanked
                )
            } else {
                ", with secrets: keep it as private as the database".into()
            };
            output::line(format!(
                "wrote {} ({} bytes, mode 0600{secrets})",
                written.path.display(),
                written.bytes
            ))?;
            ok()
        }
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

fn check(env: &Env, repair: bool) -> anyhow::Result<ExitCode> {
    let conn = env.reader()?.conn()?;
    let mut problems = check::problems(&conn)?;
    if repair && problems.iter().any(|p| check::is_missing_object(p)) {
        for done in env.write(|tx| Ok(migrate::restore_dropped(tx)?))? {
            output::line(done)?;
        }
        problems = check::problems(&conn)?;
    }
    if repair && problems.iter().any(|p| check::is_miscount(p)) {
        let rows = env.write(|tx| Ok(job_counts::rebuild(tx)?))?;
        output::line(format!("rebuilt job_counts from the jobs ({rows} rows)"))?;
        problems = check::problems(&conn)?;
    }
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
