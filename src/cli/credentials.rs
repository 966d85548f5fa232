//! `crawler-agent credentials add | list | remove`.
//!
//! A token is never taken from the command line (argv is visible to every user in
//! `ps`): it comes from an environment variable, a file, or a command's output.

use super::output::{self, or_dash, Table};
use super::{fail, ok, Env};
use crate::protocol::EntityType;
use crate::secret::Secret;
use crate::store::credentials::{self, Added, NewCredential, Removed, TokenSource};
use crate::store::jobs::{self, NewJob};
use crate::time::Timestamp;
use anyhow::Context as _;
use clap::{Args as ClapArgs, Subcommand};
use std::io::Read;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a credential and queue its discovery job
    Add(AddArgs),
    /// List credentials (never their tokens)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a credential and its jobs (refused while one of its jobs is in flight)
    Remove { name: String },
}

#[derive(Debug, ClapArgs)]
#[command(group = clap::ArgGroup::new("token").required(true).multiple(false))]
pub struct AddArgs {
    /// A short unique name, e.g. gitlab-com
    pub name: String,
    /// GitLab base URL; a trailing / or /api/... is removed
    #[arg(long)]
    pub url: String,
    /// Read the token from this environment variable
    #[arg(long, value_name = "VAR", group = "token")]
    pub token_env: Option<String>,
    /// Read the token from this file (first line)
    #[arg(long, value_name = "FILE", group = "token")]
    pub token_file: Option<PathBuf>,
    /// Run this command (no shell) and read the token from its output: the token
    /// itself, or JSON {"access_token": ..., "expires_at": ...}
    #[arg(long, value_name = "CMD", group = "token")]
    pub token_command: Option<String>,
    /// When the token expires (RFC 3339), if known
    #[arg(long, value_name = "TIME")]
    pub expires_at: Option<String>,
    /// Replace the URL and token of an existing credential (token rotation)
    #[arg(long)]
    pub replace: bool,
    /// Do not queue the discovery (`areas`) job
    #[arg(long)]
    pub no_discover: bool,
}

/// Priority of the discovery job a new credential gets: it runs before bulk work.
const DISCOVERY_PRIORITY: i64 = 10;
/// How long `--token-command` may take.
const TOKEN_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(cmd: Command, env: &Env) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Add(args) => add(args, env),
        Command::List { json } => list(json, env),
        Command::Remove { name } => remove(&name, env),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn add(args: AddArgs, env: &Env) -> anyhow::Result<ExitCode> {
    if !valid_name(&args.name) {
        return fail(format!(
            "credential name '{}' must be 1-64 letters, digits, '-', '_' or '.'",
            args.name
        ));
    }
    let url = match credentials::normalize_url(&args.url) {
        Ok(url) => url,
        Err(e) => return fail(format!("--url: {e}")),
    };
    let (token, source, mut expires_at) = match read_token(&args) {
        Ok(t) => t,
        Err(e) => return fail(format!("{e:#}")),
    };
    if let Some(text) = &args.expires_at {
        match Timestamp::parse(text) {
            Some(t) => expires_at = Some(t),
            None => return fail(format!("--expires-at '{text}' is not an RFC 3339 time")),
        }
    }
    let now = Timestamp::now();
    let new = NewCredential {
        name: args.name.clone(),
        gitlab_url: url.clone(),
        token,
        source,
        expires_at,
    };
    let max_attempts = env.loaded.config.retry.max_attempts;
    let outcome = env.write(|tx| {
        let added = credentials::add(tx, &new, args.replace, now)?;
        let discovery = match (&added, args.no_discover) {
            (Added::Created(id) | Added::Replaced(id), false) => {
                let job = NewJob {
                    credential_id: *id,
                    entity_type: EntityType::Areas,
                    entity_id: args.name.clone(),
                    namespace_path: None,
                    priority: DISCOVERY_PRIORITY,
                    max_attempts,
                    parent_job_id: None,
                };
                Some(jobs::add(tx, &job, now)?)
            }
            _ => None,
        };
        Ok((added, discovery))
    })?;
    match outcome.0 {
        Added::Exists(_) => {
            return fail(format!(
                "credential '{}' already exists; use --replace to change its URL and token",
                args.name
            ))
        }
        Added::Replaced(_) => output::line(format!("credential {} updated ({url})", args.name))?,
        Added::Created(_) => output::line(format!("credential {} added ({url})", args.name))?,
    }
    match outcome.1 {
        Some(jobs::Added::Created(job_id)) => {
            output::line(format!("discovery job {job_id} queued"))?
        }
        Some(jobs::Added::Duplicate(job_id)) => {
            output::line(format!("discovery job {job_id} already exists"))?
        }
        None => {}
    }
    ok()
}

fn read_token(args: &AddArgs) -> anyhow::Result<(Secret, TokenSource, Option<Timestamp>)> {
    let (raw, source) = if let Some(var) = &args.token_env {
        let value =
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
        (value, TokenSource::Env)
    } else if let Some(file) = &args.token_file {
        let value = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read token file {}", file.display()))?;
        (
            value.lines().next().unwrap_or_default().to_string(),
            TokenSource::File,
        )
    } else if let Some(command) = &args.token_command {
        (run_token_command(command)?, TokenSource::Command)
    } else {
        anyhow::bail!("give one of --token-env, --token-file or --token-command");
    };
    let raw = raw.trim();
    // A helper may print JSON with an expiry.
    if raw.starts_with('{') {
        #[derive(serde::Deserialize)]
        struct Helper {
            access_token: String,
            expires_at: Option<String>,
        }
        let parsed: Helper = serde_json::from_str(raw).map_err(|e| {
            // The error text may quote the input; do not show it.
            anyhow::anyhow!("token output looks like JSON but is not {{\"access_token\": ...}} (error at line {}, column {})", e.line(), e.column())
        })?;
        let expires = parsed.expires_at.as_deref().and_then(Timestamp::parse);
        return check_token(Secret::new(parsed.access_token), source, expires);
    }
    check_token(Secret::new(raw), source, None)
}

fn check_token(
    token: Secret,
    source: TokenSource,
    expires: Option<Timestamp>,
) -> anyhow::Result<(Secret, TokenSource, Option<Timestamp>)> {
    let text = token.expose();
    if text.is_empty() {
        anyhow::bail!("the token is empty");
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        anyhow::bail!("the token contains spaces or control characters");
    }
    Ok((token, source, expires))
}

/// Runs the operator's token command without a shell and returns its stdout.
fn run_token_command(command: &str) -> anyhow::Result<String> {
    let argv = shlex::split(command)
        .filter(|a| !a.is_empty())
        .context("--token-command is empty or has unbalanced quotes")?;
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot run token command {}", argv[0]))?;
    let mut stdout = child.stdout.take().context("token command has no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).map(|_| out)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > TOKEN_COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "token command {} did not finish within {TOKEN_COMMAND_TIMEOUT:?}",
                argv[0]
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        anyhow::bail!("token command {} failed ({status})", argv[0]);
    }
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("reading the token command's output failed"))?
        .context("reading the token command's output")
}

fn list(json: bool, env: &Env) -> anyhow::Result<ExitCode> {
    let conn = env.read()?;
    let all = credentials::list(&conn)?;
    if json {
        output::json(&all)?;
        return ok();
    }
    let mut table = Table::new(&["NAME", "URL", "SOURCE", "EXPIRES", "JOBS", "LAST REFRESH"]);
    for c in &all {
        let refresh = match (&c.last_refresh, &c.last_refresh_outcome) {
            (Some(at), Some(outcome)) => format!("{outcome} {at}"),
            _ => "-".into(),
        };
        table.row(vec![
            c.name.clone(),
            c.gitlab_url.clone(),
            c.token_source.clone(),
            or_dash(c.expires_at.as_ref()),
            c.jobs.to_string(),
            refresh,
        ]);
    }
    if table.is_empty() {
        output::line("no credentials; add one with `crawler-agent credentials add NAME --url URL --token-env VAR`")?;
    } else {
        table.print()?;
    }
    ok()
}

fn remove(name: &str, env: &Env) -> anyhow::Result<ExitCode> {
    match env.write(|tx| Ok(credentials::remove(tx, name)?))? {
        Removed::NotFound => fail(format!("no credential named '{name}'")),
        Removed::InFlight(n) => fail(format!(
            "credential '{name}' has {n} job(s) in the crawler's hands; cancel them or wait"
        )),
        Removed::Removed { jobs } => {
            output::line(format!("credential {name} removed with its {jobs} job(s)"))?;
            ok()
        }
    }
}
