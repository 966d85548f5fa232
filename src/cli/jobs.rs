//! `crawler-agent jobs add | list | show | cancel | retry | resume-type`.
//!
//! Every command that takes a job id takes a unique prefix of it too, in any case
//! ([`job_ids`]); `jobs show` prints the whole job (rendered by [`super::job_show`]).

use super::output::{self, clip, Table};
use super::{fail, ok, usage, Env};
use crate::protocol::EntityType;
use crate::store::credentials;
use crate::store::jobs::{self, Added, NewJob, Status};
use crate::store::read;
use crate::store::read::job_ids::{self, Resolved};
use crate::time::Timestamp;
use clap::{Args as ClapArgs, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Queue a job
    Add(AddArgs),
    /// List jobs, newest first, one page at a time (stderr says how many more there are)
    List {
        /// Only jobs in this status (queued, assigned, running, finished, failed, cancelled)
        #[arg(long)]
        status: Option<Status>,
        /// Jobs per page; 0 lists them all
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// The next page: jobs added before this job id or unique prefix (the last one
        /// of the previous page)
        #[arg(long, value_name = "ID")]
        before: Option<String>,
        /// Print JSON (every field) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show one job: every field, its failures with stack traces, its progress and history
    Show {
        /// Job id, or a unique prefix of it (any case)
        id: String,
        /// Print JSON (every field) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job that has not ended: it is never dispatched again. A job the crawler
    /// already has keeps running there (the crawler cannot be told to stop); its late
    /// end is recorded as ignored
    Cancel {
        /// Job id, or a unique prefix of it (any case)
        id: String,
    },
    /// Queue an ended (failed, cancelled or finished) job again with a fresh attempt budget
    Retry {
        /// Job id, or a unique prefix of it (any case)
        id: String,
        /// Send the job's stored resumeState with its next dispatch (the crawler then
        /// starts every listing at its currentPage); without it the job starts over
        #[arg(long)]
        resume: bool,
    },
    /// Dispatch an entity type again after the crawler proved it could not run it
    ResumeType {
        /// The entity type, e.g. merge_request
        entity_type: EntityType,
    },
}

#[derive(Debug, ClapArgs)]
pub struct AddArgs {
    /// Name of the credential the job runs with
    #[arg(long)]
    pub credential: String,
    /// Entity type: areas, project, group, user, issue, merge_request, commit, branch, pipeline, release
    #[arg(long = "type", value_name = "ENTITY_TYPE")]
    pub entity_type: EntityType,
    /// Entity id sent to the crawler (default: --path, or the credential name for areas)
    #[arg(long)]
    pub entity_id: Option<String>,
    /// Namespace path (group full_path or project path_with_namespace)
    #[arg(long = "path", value_name = "NAMESPACE_PATH")]
    pub namespace_path: Option<String>,
    /// Higher runs first
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i64,
}

pub fn run(cmd: Command, env: &Env) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Add(args) => add(args, env),
        Command::List {
            status,
            limit,
            before,
            json,
        } => list(status, limit, before.as_deref(), json, env),
        Command::Show { id, json } => match resolve(&id, env)? {
            Ok(id) => super::job_show::run(&id, json, env),
            Err(code) => Ok(code),
        },
        Command::Cancel { id } => match resolve(&id, env)? {
            Ok(id) => change(&id, env, jobs::cancel, "cancelled"),
            Err(code) => Ok(code),
        },
        Command::Retry { id, resume } => {
            let id = match resolve(&id, env)? {
                Ok(id) => id,
                Err(code) => return Ok(code),
            };
            let done = if resume {
                "queued again, resuming from its stored resume state"
            } else {
                "queued again"
            };
            change(
                &id,
                env,
                |tx, id, now| jobs::retry(tx, id, resume, now),
                done,
            )
        }
        Command::ResumeType { entity_type } => resume_type(entity_type, env),
    }
}

fn add(args: AddArgs, env: &Env) -> anyhow::Result<ExitCode> {
    let entity_id = match (&args.entity_id, &args.namespace_path, args.entity_type) {
        (Some(id), _, _) => id.clone(),
        (None, Some(path), _) => path.clone(),
        (None, None, EntityType::Areas) => args.credential.clone(),
        (None, None, t) => return usage(format!("a {t} job needs --entity-id or --path")),
    };
    if entity_id.trim().is_empty() {
        return usage("--entity-id must not be empty");
    }
    let added = env.write(|tx| {
        let Some(credential_id) = credentials::id_by_name(tx, &args.credential)? else {
            return Ok(None);
        };
        let job = NewJob {
            credential_id,
            entity_type: args.entity_type,
            entity_id: entity_id.clone(),
            namespace_path: args.namespace_path.clone(),
            priority: args.priority,
            max_attempts: env.loaded.config.retry.max_attempts,
            parent_job_id: None,
        };
        Ok(Some(jobs::add(tx, &job, Timestamp::now())?))
    })?;
    match added {
        None => fail(format!("no credential named '{}'", args.credential)),
        Some(Added::Created(id)) => {
            output::line(&id)?;
            ok()
        }
        Some(Added::Duplicate(id)) => fail(format!(
            "the same job already exists: {id} (credential {}, type {}, entity {entity_id}); nothing changed",
            args.credential, args.entity_type
        )),
    }
}

/// Exit code of a job id prefix that names several jobs (a usage error, like git's).
const AMBIGUOUS: u8 = 2;

/// The full id of the job `typed` names (its id or a unique prefix, any case), or the
/// exit code after saying why not: 1 when no job matches, 2 when several do (the
/// first [`job_ids::CANDIDATES`] listed).
pub fn resolve(typed: &str, env: &Env) -> anyhow::Result<Result<String, ExitCode>> {
    let conn = env.reader()?.conn()?;
    // The operator's own text, but possibly pasted from a crawler's log: bounded, and
    // with no control character left to reach the terminal.
    let shown = output::printable(&output::cut(typed, job_ids::MAX_ID_LEN));
    match job_ids::resolve(&conn, typed)? {
        Resolved::One(id) => Ok(Ok(id)),
        Resolved::None => Ok(Err(fail(format!("no job {shown}"))?)),
        Resolved::Ambiguous { first, matches } => {
            let more = matches - first.len() as i64;
            let mut text = format!(
                "error: job id prefix '{shown}' is ambiguous: it matches {}{matches} jobs; type more of the id",
                if matches >= job_ids::COUNT_CAP { "at least " } else { "" },
            );
            for id in &first {
                text.push_str(&format!("\n  {id}"));
            }
            if more > 0 {
                text.push_str(&format!("\n  and {more} more"));
            }
            output::note(text)?;
            Ok(Err(ExitCode::from(AMBIGUOUS)))
        }
    }
}

fn list(
    status: Option<Status>,
    limit: u32,
    before: Option<&str>,
    json: bool,
    env: &Env,
) -> anyhow::Result<ExitCode> {
    let before = match before {
        None => None,
        Some(typed) => match resolve(typed, env)? {
            Ok(id) => Some(id),
            Err(code) => return Ok(code),
        },
    };
    let conn = env.reader()?.conn()?;
    if limit == 0 {
        return list_all(&conn, status, before, json);
    }
    let rows = read::jobs::list(&conn, status, limit, before.as_deref())?;
    let more = match rows.last() {
        Some(last) if limit != 0 && rows.len() == limit as usize => {
            read::jobs::remaining(&conn, status, &last.id)?
        }
        _ => 0,
    };
    if json {
        output::json(&rows)?;
    } else {
        table(&rows, true)?;
    }
    if let (true, Some(last)) = (more > 0, rows.last()) {
        let more = if more > read::jobs::REMAINING_CAP {
            format!("over {}", read::jobs::REMAINING_CAP)
        } else {
            more.to_string()
        };
        output::note(format!(
            "… {more} more; use --limit N (0: all), --before {} (the next page) or --status",
            last.id
        ))?;
    }
    ok()
}

/// Jobs read and printed at a time by `--limit 0`: memory stays bounded however many
/// jobs there are.
const ALL_PAGE: u32 = 5000;

/// `jobs list --limit 0`: every job (before `before`), page by page.
fn list_all(
    conn: &rusqlite::Connection,
    status: Option<Status>,
    mut before: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut array = if json {
        Some(output::JsonArray::begin()?)
    } else {
        None
    };
    let mut first = true;
    loop {
        let rows = read::jobs::list(conn, status, ALL_PAGE, before.as_deref())?;
        match array.as_mut() {
            Some(array) => rows.iter().try_for_each(|j| array.item(j))?,
            None if first || !rows.is_empty() => table(&rows, first)?,
            None => {}
        }
        first = false;
        match rows.last() {
            Some(last) if rows.len() == ALL_PAGE as usize => before = Some(last.id.clone()),
            _ => break,
        }
    }
    if let Some(array) = array {
        array.end()?;
    }
    ok()
}

/// Prints `rows` as a table (with its header when `header`), or "no jobs".
fn table(rows: &[read::jobs::JobRow], header: bool) -> anyhow::Result<()> {
    let mut table = Table::new(&[
        "ID",
        "STATUS",
        "TYPE",
        "ENTITY",
        "CREDENTIAL",
        "TRIES",
        "UPDATED",
        "LAST ERROR",
    ]);
    for j in rows {
        table.row(vec![
            j.id.clone(),
            j.status.to_string(),
            j.entity_type.clone(),
            clip(j.namespace_path.as_deref().unwrap_or(&j.entity_id), 40),
            j.credential.clone(),
            format!("{}/{}", j.attempts, j.max_attempts),
            j.updated_at.clone(),
            clip(j.last_error.as_deref().unwrap_or(""), 60),
        ]);
    }
    if table.is_empty() {
        output::line("no jobs")?;
    } else {
        table.print_page(header)?;
    }
    Ok(())
}

fn change(
    id: &str,
    env: &Env,
    apply: impl Fn(&rusqlite::Connection, &str, Timestamp) -> rusqlite::Result<Result<Status, String>>,
    done: &str,
) -> anyhow::Result<ExitCode> {
    match env.write(|tx| Ok(apply(tx, id, Timestamp::now())?))? {
        Ok(was) => {
            output::line(format!("job {id} {done} (was {was})"))?;
            ok()
        }
        Err(why) => fail(why),
    }
}

fn resume_type(t: EntityType, env: &Env) -> anyhow::Result<ExitCode> {
    if env.write(|tx| Ok(jobs::resume_type(tx, t)?))? {
        output::line(format!("'{t}' jobs will be dispatched again"))?;
        ok()
    } else {
        fail(format!("'{t}' is not paused"))
    }
}
