//! `crawler-agent jobs add | list | show | cancel | retry | resume-type`.

use super::output::{self, clip, or_dash, Table};
use super::{fail, ok, usage, Env};
use crate::protocol::EntityType;
use crate::store::credentials;
use crate::store::jobs::{self, Added, NewJob, Status};
use crate::store::read;
use crate::time::Timestamp;
use clap::{Args as ClapArgs, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Queue a job
    Add(AddArgs),
    /// List jobs, newest first, one page at a time
    List {
        /// Only jobs in this status (queued, assigned, running, finished, failed, cancelled)
        #[arg(long)]
        status: Option<Status>,
        /// Jobs per page (at most 10000)
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// The next page: jobs added before this job id (the last one of the previous page)
        #[arg(long, value_name = "ID")]
        before: Option<String>,
        /// Print a JSON array instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show one job with its full history
    Show {
        /// The job's id
        id: String,
        /// Print one JSON object (the job and its events) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job that has not ended: it is never dispatched again. A job the crawler
    /// already has keeps running there (the crawler cannot be told to stop); its late
    /// end is recorded as ignored
    Cancel {
        /// The job's id
        id: String,
    },
    /// Queue an ended (failed, cancelled or finished) job again with a fresh attempt budget
    Retry {
        /// The job's id
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
        Command::Show { id, json } => show(&id, json, env),
        Command::Cancel { id } => change(&id, env, jobs::cancel, "cancelled"),
        Command::Retry { id, resume } => {
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

fn list(
    status: Option<Status>,
    limit: u32,
    before: Option<&str>,
    json: bool,
    env: &Env,
) -> anyhow::Result<ExitCode> {
    let conn = env.reader()?.conn()?;
    let rows = read::jobs::list(&conn, status, limit, before)?;
    if json {
        output::json(&rows)?;
        return ok();
    }
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
    for j in &rows {
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
        table.print()?;
    }
    ok()
}

fn show(id: &str, json: bool, env: &Env) -> anyhow::Result<ExitCode> {
    let conn = env.reader()?.conn()?;
    let Some(job) = read::jobs::get(&conn, id)? else {
        return fail(format!("no job {id}"));
    };
    let events = read::jobs::events(&conn, id)?;
    if json {
        output::json(&serde_json::json!({"job": job, "events": events}))?;
        return ok();
    }
    let fields: [(&str, String); 17] = [
        ("id", job.id.clone()),
        ("status", job.status.to_string()),
        ("credential", job.credential.clone()),
        ("entity type", job.entity_type.clone()),
        ("entity id", job.entity_id.clone()),
        ("path", or_dash(job.namespace_path.as_ref())),
        ("priority", job.priority.to_string()),
        (
            "attempts",
            format!("{} of {}", job.attempts, job.max_attempts),
        ),
        ("not before", or_dash(job.not_before.as_ref())),
        ("connection", or_dash(job.connection_id)),
        ("created", job.created_at.clone()),
        ("dispatched", or_dash(job.dispatched_at.as_ref())),
        ("started", or_dash(job.started_at.as_ref())),
        ("finished", or_dash(job.finished_at.as_ref())),
        ("last error", or_dash(job.last_error.as_ref())),
        ("resume state", or_dash(job.resume_state.as_ref())),
        ("final counts", or_dash(job.final_counts.as_ref())),
    ];
    for (name, value) in fields {
        output::line(format!("{name:<13} {value}"))?;
    }
    output::line("")?;
    let mut table = Table::new(&["AT", "EVENT", "FROM", "TO", "CONN", "DETAIL"]);
    for e in &events {
        table.row(vec![
            e.at.clone(),
            e.event.clone(),
            or_dash(e.from_status.as_ref()),
            or_dash(e.to_status.as_ref()),
            or_dash(e.connection_id),
            clip(
                &e.detail.as_ref().map(|d| d.to_string()).unwrap_or_default(),
                100,
            ),
        ]);
    }
    table.print()?;
    ok()
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
