//! The operator's command line: one file per command group, named like the command.
//!
//! No SQL here. Commands that change something call the store's functions in one
//! transaction ([`store::transact`]; SQLite's busy timeout lets them wait politely for
//! the running agent's writer); commands that only look read through the store's read
//! side ([`store::read`]), one pool per command. List and show commands take `--json`.

pub mod config;
pub mod credentials;
pub mod db;
pub mod errors;
pub mod events;
pub mod generate;
pub mod hints;
pub mod job_show;
pub mod jobs;
pub mod metrics;
pub mod notify;
pub mod output;
pub mod status;
pub mod status_down;

use crate::config::{Flags, Loaded};
use crate::store::read::Reader;
use crate::store::{self, Settings};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "crawler-agent",
    version,
    about = "Job queue, token provider and SQLite recorder for a GitLab crawler",
    long_about = "Job queue, token provider and SQLite recorder for a GitLab crawler.\n\n\
        `crawler-agent serve` listens on a Unix socket for the crawler; the other commands \
        manage and inspect the agent's database."
)]
pub struct Cli {
    /// Config file (default: $CONFIGURATION_DIRECTORY/config.toml or ~/.config/crawler-agent/config.toml if present)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database file (overrides storage.path)
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Socket path (overrides socket.path)
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the crawler on the Unix socket until SIGTERM/SIGINT
    Serve,
    /// Health, queue, connections, running jobs and recent errors; exit 1 if the agent is not reachable
    Status(status::Args),
    /// Manage the GitLab credentials handed to the crawler
    #[command(subcommand)]
    Credentials(credentials::Command),
    /// Add, inspect, cancel and retry jobs
    #[command(subcommand)]
    Jobs(jobs::Command),
    /// List recorded errors, newest first; `errors show ID` prints one whole
    Errors(errors::Args),
    /// Database maintenance
    #[command(subcommand)]
    Db(db::Command),
    /// Show or check the effective configuration
    #[command(subcommand)]
    Config(config::Command),
    /// Print the agent's state in the Prometheus text format
    Metrics,
    /// Print the event stream (job transitions and notification events)
    Events(events::Args),
    /// Notification sinks
    #[command(subcommand)]
    Notify(notify::Command),
    /// Write the man page and shell completions (used when packaging)
    #[command(hide = true)]
    Generate {
        /// Directory to write the man pages and the completion files into
        dir: PathBuf,
    },
}

impl Cli {
    pub fn flags(&self) -> Flags {
        Flags {
            config: self.config.clone(),
            db: self.db.clone(),
            socket: self.socket.clone(),
        }
    }
}

/// What every command needs: the effective configuration.
pub struct Env {
    pub loaded: Loaded,
}

impl Env {
    pub fn settings(&self) -> Settings {
        Settings::from(&self.loaded.config.storage)
    }

    /// Runs `f` in one IMMEDIATE transaction and commits unless it fails.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        store::transact(&self.loaded.database, &self.settings(), f)
    }

    /// This command's read pool, sized by `storage.read_pool_size`.
    pub fn reader(&self) -> anyhow::Result<Reader> {
        let size = self.loaded.config.storage.read_pool_size;
        Ok(Reader::open(&self.loaded.database, &self.settings(), size)?)
    }
}

/// Runs a parsed command line (everything except `serve`, which `main` runs).
pub fn run(command: Command, env: &Env) -> anyhow::Result<std::process::ExitCode> {
    match command {
        Command::Serve => unreachable!("main runs serve itself"),
        Command::Status(args) => status::run(args, env),
        Command::Credentials(cmd) => credentials::run(cmd, env),
        Command::Jobs(cmd) => jobs::run(cmd, env),
        Command::Errors(args) => errors::run(args, env),
        Command::Db(cmd) => db::run(cmd, env),
        Command::Config(cmd) => config::run(cmd, env),
        Command::Metrics => metrics::run(env),
        Command::Events(args) => events::run(args, env),
        Command::Notify(cmd) => notify::run(cmd, env),
        Command::Generate { dir } => generate::run(&dir),
    }
}

/// Success exit code.
pub fn ok() -> anyhow::Result<std::process::ExitCode> {
    Ok(std::process::ExitCode::SUCCESS)
}

/// A mistake on the command line itself (a malformed value, a missing argument): `main`
/// prints it and exits 2, like clap's own usage errors. Everything else that fails —
/// a missing credential, an unreadable file, a database problem — exits 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Ends the command with a usage error (exit 2, see [`Usage`]).
pub fn usage(message: impl std::fmt::Display) -> anyhow::Result<std::process::ExitCode> {
    Err(Usage(message.to_string()).into())
}

/// Reports a failure the operator caused (unknown name, duplicate...) and exits 1.
pub fn fail(message: impl std::fmt::Display) -> anyhow::Result<std::process::ExitCode> {
    eprintln!("error: {message}");
    Ok(std::process::ExitCode::FAILURE)
}
