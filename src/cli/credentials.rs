//! `crawler-agent credentials add | list | remove`.
//!
//! A token is never taken from the command line (argv is visible to every user in
//! `ps`): it comes from an environment variable, a file, or a command's output.
//! A malformed name, URL or time is a usage error (exit 2); a token that cannot be
//! read is a failure (exit 1). `remove` (in `remove`) says what it deletes and asks.

mod remove;

use super::output::{self, or_dash, Table};
use super::{fail, ok, usage, Env};
use crate::protocol::EntityType;
use crate::secret::Secret;
use crate::store::credentials::{self, Added, NewCredential, TokenSource};
use crate::store::jobs::{self, NewJob};
use crate::store::read;
use crate::time::Timestamp;
use anyhow::Context as _;
use clap::{Args as ClapArgs, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a credential and queue its discovery job
    Add(Box<AddArgs>),
    /// List credentials (never their tokens)
    List {
        /// Print a JSON array instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Remove a credential with its jobs and their history, after saying what goes
    /// (refused while one of its jobs is in the crawler's hands)
    Remove(remove::Args),
}

#[derive(Debug, ClapArgs)]
#[command(group = clap::ArgGroup::new("token").required(true).multiple(false))]
#[command(group = clap::ArgGroup::new("secret").multiple(false))]
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
    /// A command (run without a shell) that prints a token, or JSON
    /// {"access_token": ..., "expires_at": ...}; run now and whenever a fresh token is needed
    #[arg(long, value_name = "CMD", group = "token")]
    pub token_command: Option<String>,
    /// GitLab OAuth: read the refresh token from this environment variable
    #[arg(
        long,
        value_name = "VAR",
        group = "token",
        requires = "oauth_client_id",
        requires = "secret"
    )]
    pub refresh_token_env: Option<String>,
    /// GitLab OAuth: read the refresh token from this file
    #[arg(
        long,
        value_name = "FILE",
        group = "token",
        requires = "oauth_client_id",
        requires = "secret"
    )]
    pub refresh_token_file: Option<PathBuf>,
    /// GitLab OAuth: the application id
    #[arg(long, value_name = "ID")]
    pub oauth_client_id: Option<String>,
    /// GitLab OAuth: read the application secret from this environment variable
    #[arg(long, value_name = "VAR", group = "secret")]
    pub oauth_client_secret_env: Option<String>,
    /// GitLab OAuth: read the application secret from this file
    #[arg(long, value_name = "FILE", group = "secret")]
    pub oauth_client_secret_file: Option<PathBuf>,
    /// GitLab OAuth: a current access token to start with (else the first dispatch refreshes)
    #[arg(long, value_name = "VAR", requires = "oauth_client_id")]
    pub access_token_env: Option<String>,
    /// When the token expires (RFC 3339, e.g. 2027-01-31T00:00:00Z), if known; a time
    /// already past is accepted with a warning
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

pub fn run(cmd: Command, env: &Env) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Add(args) => add(*args, env),
        Command::List { json } => list(json, env),
        Command::Remove(args) => remove::run(&args, env),
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
        return usage(format!(
            "credential name '{}' must be 1-64 letters, digits, '-', '_' or '.'",
            output::clip(&args.name.escape_debug().to_string(), 80)
        ));
    }
    let url = match credentials::normalize_url(&args.url) {
        Ok(url) => url,
        Err(e) => return usage(format!("--url: {}", output::clip(&e, 200))),
    };
    // Parsed before the token is read: a token command is not run for a typo.
    let given_expiry = match args.expires_at.as_deref().map(|t| (t, Timestamp::parse(t))) {
        None => None,
        Some((_, Some(t))) => Some(t),
        Some((text, None)) => {
            return usage(format!(
                "--expires-at '{}' is not an RFC 3339 time such as 2027-01-31T00:00:00Z",
                output::clip(&text.escape_debug().to_string(), 80)
            ))
        }
    };
    let (token, source, fetched_expiry) = match read_token(&args, env) {
        Ok(t) => t,
        Err(e) => return fail(format!("{e:#}")),
    };
    let expires_at = given_expiry.or(fetched_expiry);
    let now = Timestamp::now();
    if let Some(at) = expires_at.filter(|at| *at <= now) {
        let from = if given_expiry.is_some() {
            "--expires-at"
        } else {
            "the token command's expires_at"
        };
        let then = if source.can_refresh() {
            "it is refreshed before its first job goes out"
        } else {
            "it is not handed out, and its jobs wait until it is replaced (--replace)"
        };
        eprintln!("warning: {from} {at} is in the past: the token counts as expired; {then}");
    }
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

/// The longest first line read from a token or secret file.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Reads a secret from an environment variable or a file (first line), never argv.
/// Every error names the variable or the file, once.
fn secret_from(var: Option<&String>, file: Option<&PathBuf>, what: &str) -> anyhow::Result<Secret> {
    let (raw, origin) = match (var, file) {
        (Some(var), _) => match std::env::var(var) {
            Ok(raw) => (raw, format!("environment variable {var}")),
            Err(std::env::VarError::NotPresent) => {
                anyhow::bail!("{what}: environment variable {var} is not set")
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                anyhow::bail!("{what}: environment variable {var} is not UTF-8 text")
            }
        },
        (None, Some(file)) => {
            // Bounded: `--token-file /dev/zero` must not read for ever.
            let mut bytes = Vec::new();
            std::fs::File::open(file)
                .and_then(|f| {
                    use std::io::Read as _;
                    f.take(MAX_SECRET_FILE_BYTES + 1).read_to_end(&mut bytes)
                })
                .with_context(|| format!("cannot read {what} file {}", file.display()))?;
            let origin = format!("file {}", file.display());
            let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
            if first.len() as u64 > MAX_SECRET_FILE_BYTES {
                anyhow::bail!(
                    "{what} from {origin}: the first line is over {MAX_SECRET_FILE_BYTES} bytes"
                );
            }
            let Ok(first) = String::from_utf8(first.to_vec()) else {
                anyhow::bail!("{what} from {origin} is not UTF-8 text");
            };
            (first, origin)
        }
        (None, None) => anyhow::bail!("no {what} given"),
    };
    let raw = raw.trim();
    if raw.is_empty() {
        anyhow::bail!("{what} from {origin} is empty");
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        anyhow::bail!("{what} from {origin} contains spaces or control characters");
    }
    Ok(Secret::new(raw))
}

fn read_token(
    args: &AddArgs,
    env: &Env,
) -> anyhow::Result<(Secret, TokenSource, Option<Timestamp>)> {
    if let Some(line) = &args.token_command {
        let timeout = env.loaded.config.tokens.command_timeout.0;
        let fetched = crate::tokens::command::run(line, timeout).map_err(anyhow::Error::msg)?;
        return Ok((
            fetched.access_token,
            TokenSource::Command(line.clone()),
            fetched.expires_at,
        ));
    }
    if args.refresh_token_env.is_some() || args.refresh_token_file.is_some() {
        let refresh_token = secret_from(
            args.refresh_token_env.as_ref(),
            args.refresh_token_file.as_ref(),
            "refresh token",
        )?;
        let client_secret = secret_from(
            args.oauth_client_secret_env.as_ref(),
            args.oauth_client_secret_file.as_ref(),
            "OAuth client secret",
        )?;
        let client_id = args
            .oauth_client_id
            .clone()
            .context("--oauth-client-id is required")?;
        let access = match &args.access_token_env {
            Some(var) => secret_from(Some(var), None, "access token")?,
            // Empty: the agent refreshes before the first dispatch.
            None => Secret::new(""),
        };
        let source = TokenSource::OAuth {
            refresh_token,
            client_id,
            client_secret,
        };
        return Ok((access, source, None));
    }
    let (token, source) = match (&args.token_env, &args.token_file) {
        (Some(_), _) => (
            secret_from(args.token_env.as_ref(), None, "token")?,
            TokenSource::Env,
        ),
        (None, Some(_)) => (
            secret_from(None, args.token_file.as_ref(), "token")?,
            TokenSource::File,
        ),
        (None, None) => anyhow::bail!(
            "give one of --token-env, --token-file, --token-command or --refresh-token-env"
        ),
    };
    Ok((token, source, None))
}

fn list(json: bool, env: &Env) -> anyhow::Result<ExitCode> {
    let conn = env.reader()?.conn()?;
    let all = read::credentials::list(&conn)?;
    if json {
        output::json(&all)?;
        return ok();
    }
    let mut table = Table::new(&[
        "NAME",
        "URL",
        "SOURCE",
        "EXPIRES",
        "JOBS",
        "TOKEN",
        "LAST REFRESH",
    ]);
    for c in &all {
        let refresh = match (&c.last_refresh, &c.last_refresh_outcome) {
            (Some(at), Some(outcome)) => format!(
                "{outcome} {at} {}",
                super::output::clip(c.last_refresh_detail.as_deref().unwrap_or(""), 60)
            ),
            _ => "-".into(),
        };
        table.row(vec![
            c.name.clone(),
            c.gitlab_url.clone(),
            c.token_source.clone(),
            or_dash(c.expires_at.as_ref()),
            c.jobs.to_string(),
            match (&c.unusable_since, &c.unusable_reason) {
                (Some(since), reason) => format!(
                    "UNUSABLE since {since}: {}",
                    super::output::clip(reason.as_deref().unwrap_or(""), 60)
                ),
                _ => "ok".into(),
            },
            refresh,
        ]);
    }
    if table.is_empty() {
        output::line("no credentials; add one with `crawler-agent credentials add NAME --url URL --token-env VAR`")?;
    } else {
        table.print()?;
        if all.iter().any(|c| c.unusable_since.is_some()) {
            output::line(
                "an UNUSABLE credential's jobs stay queued until its token is replaced: \
                 `crawler-agent credentials add NAME --replace ...`",
            )?;
        }
    }
    ok()
}
