//! `crawler-agent status [--json]`: is the agent answering, and what is it doing?
//!
//! Reads the database the agent writes, through the store's read side, and probes its
//! socket. Exits 1 when nothing answers on the socket, or when the agent answers but its
//! database writer is stuck (the figures it rewrites every 5 s through the writer are
//! older than [`runtime::STALLED_AFTER`]), so it works as a health check.
//! `--watch` probes the socket on every redraw (each probe is one short recorded
//! connection); on a terminal it redraws in place, into a pipe or a file it appends
//! plain snapshots, each under a `--- <time> ---` header (no screen escapes).
//! When nothing answers, [`status_down`] says what the database knows and what to do.

use super::output::{self, clip, or_dash, Table};
use super::status_down::{self, Down};
use super::{hints, Env};
use crate::store::jobs::Status;
use crate::store::read::connections::{self, LiveConnection};
use crate::store::read::credentials::Rollup;
use crate::store::read::errors::{self, ErrorRow};
use crate::store::read::jobs::{self, Pause};
use crate::store::read::runtime;
use crate::store::read::status::{self, RunningJob};
use crate::time::Timestamp;
use serde::Serialize;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object instead of text
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
    /// Redraw every second until interrupted (a live view for a terminal)
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    reachable: bool,
    /// The agent answers but has written nothing for this many seconds: its database
    /// writer is stuck (absent when it is not).
    writer_stalled_seconds: Option<f64>,
    socket: String,
    database: String,
    queue: Vec<QueueCount>,
    connections: Vec<LiveConnection>,
    running: Vec<RunningJob>,
    paused_entity_types: Vec<Pause>,
    credentials: Vec<Rollup>,
    recent_errors: Vec<ErrorRow>,
    /// Set when nothing answers on the socket: what the database says, and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    down: Option<Down>,
}

#[derive(Debug, Serialize)]
struct QueueCount {
    status: Status,
    jobs: i64,
}

pub fn run(args: Args, env: &Env) -> anyhow::Result<ExitCode> {
    if args.watch {
        return watch(env);
    }
    let reachable = crate::server::listener::answers(&env.loaded.socket);
    if !reachable && !env.loaded.database.exists() {
        return no_database(env, args.json);
    }
    let conn = env.reader()?.conn()?;
    let report = report(&conn, env, reachable)?;
    if args.json {
        output::json(&report)?;
    } else {
        print(&report, None)?;
    }
    Ok(if reachable && report.writer_stalled_seconds.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Nothing answers and there is no database file: say so, and how to start an agent.
fn no_database(env: &Env, json: bool) -> anyhow::Result<ExitCode> {
    let down = status_down::diagnose(None, env)?;
    if json {
        output::json(&serde_json::json!({
            "reachable": false,
            "socket": env.loaded.socket.display().to_string(),
            "database": env.loaded.database.display().to_string(),
            "database_exists": false,
            "down": down,
        }))?;
    } else {
        for line in no_database_lines(env, &down, false) {
            output::line(line)?;
        }
    }
    Ok(ExitCode::FAILURE)
}

fn no_database_lines(env: &Env, down: &Down, reachable: bool) -> Vec<String> {
    let socket = env.loaded.socket.display();
    let mut lines = vec![
        if reachable {
            format!("agent     answers on {socket}, but not with this database")
        } else {
            format!("agent     NOT REACHABLE on {socket}")
        },
        format!("database  {} (none)", env.loaded.database.display()),
    ];
    lines.extend(status_down::lines(down, false));
    lines
}

/// Redraws the report every second, probing the socket on every redraw: the agent's
/// own figures in the database say what it last did, never that it is alive now (a
/// dead agent's figures stay fresh-looking for seconds), so a dead agent shows as NOT
/// REACHABLE on the first redraw after it died.
/// Until the database exists (an agent not started yet), each redraw says so and how
/// to start one, as `status` does.
fn watch(env: &Env) -> anyhow::Result<ExitCode> {
    let mut reader = None;
    let mut previous: std::collections::HashMap<String, (i64, std::time::Instant)> =
        Default::default();
    loop {
        let reachable = crate::server::listener::answers(&env.loaded.socket);
        if reader.is_none() && env.loaded.database.exists() {
            reader = Some(env.reader()?);
        }
        let Some(reader) = &reader else {
            snapshot_header()?;
            let down = status_down::diagnose(None, env)?;
            for line in no_database_lines(env, &down, reachable) {
                output::line(line)?;
            }
            snapshot_footer()?;
            continue;
        };
        let conn = reader.conn()?;
        let report = report(&conn, env, reachable)?;
        let now = std::time::Instant::now();
        let rates: std::collections::HashMap<String, f64> = report
            .running
            .iter()
            .filter_map(|j| {
                let (before, at) = previous.get(&j.id)?;
                let elapsed = now.duration_since(*at).as_secs_f64();
                Some((
                    j.id.clone(),
                    (j.processed? - before) as f64 / elapsed.max(0.001),
                ))
            })
            .collect();
        previous = report
            .running
            .iter()
            .filter_map(|j| Some((j.id.clone(), (j.processed?, now))))
            .collect();
        snapshot_header()?;
        print(&report, Some(&rates))?;
        snapshot_footer()?;
    }
}

fn snapshot_header() -> std::io::Result<()> {
    if output::on_terminal() {
        // Clear the screen and draw from the top left: plain ANSI, fine over SSH.
        print!("\x1b[H\x1b[2J");
        output::line(format!(
            "crawler-agent status — {} (Ctrl-C to quit)\n",
            Timestamp::now()
        ))
    } else {
        // A log of snapshots: no escapes, one header per snapshot.
        output::line(format!("--- crawler-agent status {} ---", Timestamp::now()))
    }
}

/// Ends a snapshot and waits for the next redraw.
fn snapshot_footer() -> std::io::Result<()> {
    if !output::on_terminal() {
        output::line("")?;
    }
    std::thread::sleep(Duration::from_secs(1));
    Ok(())
}

fn report(conn: &rusqlite::Connection, env: &Env, reachable: bool) -> anyhow::Result<Report> {
    let socket = &env.loaded.socket;
    let writer_stalled_seconds = match runtime::load(conn)? {
        Some(r) if reachable => runtime::writer_stalled(&r, &env.loaded.database),
        _ => None,
    };
    let down = if reachable {
        None
    } else {
        Some(status_down::diagnose(Some(conn), env)?)
    };
    Ok(Report {
        down,
        reachable,
        writer_stalled_seconds,
        socket: socket.display().to_string(),
        database: env.loaded.database.display().to_string(),
        queue: jobs::counts(conn)?
            .into_iter()
            .map(|(status, jobs)| QueueCount { status, jobs })
            .collect(),
        connections: connections::live(conn)?,
        running: status::running(conn)?,
        paused_entity_types: jobs::pauses(conn)?,
        credentials: crate::store::read::credentials::rollup(conn)?,
        recent_errors: errors::since(conn, Timestamp::now().minus(Duration::from_secs(86400)), 5)?,
    })
}

/// A 20-character bar for `done` of `total`.
fn bar(done: i64, total: i64) -> String {
    let filled = ((done.clamp(0, total) as f64 / total as f64) * 20.0).round() as usize;
    format!("[{}{}]", "#".repeat(filled), "-".repeat(20 - filled))
}

fn print(
    r: &Report,
    rates: Option<&std::collections::HashMap<String, f64>>,
) -> std::io::Result<()> {
    let state = if r.reachable {
        "answering"
    } else {
        "NOT REACHABLE"
    };
    output::line(format!("agent     {state} on {}", r.socket))?;
    if let Some(down) = &r.down {
        for line in status_down::lines(down, true) {
            output::line(line)?;
        }
    }
    if let Some(age) = r.writer_stalled_seconds {
        output::line(format!(
            "writer    STUCK: the agent has written nothing for {age:.0}s \
             (disk full? a write lock held? see the agent's log)"
        ))?;
    }
    output::line(format!("database  {}", r.database))?;
    let queue: Vec<String> = r
        .queue
        .iter()
        .map(|q| format!("{} {}", q.status, q.jobs))
        .collect();
    output::line(format!("jobs      {}", queue.join(", ")))?;
    for p in &r.paused_entity_types {
        output::line(format!(
            "paused    '{}' jobs since {} ({}); resume with `crawler-agent jobs resume-type {}`",
            p.entity_type,
            p.paused_at,
            clip(&p.reason, 60),
            p.entity_type
        ))?;
    }
    output::line("")?;
    if !r.credentials.is_empty() {
        let mut t = Table::new(&[
            "CREDENTIAL",
            "TOKEN",
            "QUEUED",
            "RUNNING",
            "FINISHED",
            "FAILED",
            "ITEMS",
        ]);
        for c in &r.credentials {
            t.row(vec![
                c.name.clone(),
                if c.usable { "ok" } else { "UNUSABLE" }.into(),
                c.queued.to_string(),
                c.running.to_string(),
                c.finished.to_string(),
                c.failed.to_string(),
                c.items_processed.to_string(),
            ]);
        }
        t.print()?;
        if r.credentials.iter().any(|c| !c.usable) {
            output::line(
                "an UNUSABLE credential's jobs wait until its token is replaced \
                 (`crawler-agent credentials add NAME --replace`); see `credentials list`",
            )?;
        }
        output::line("")?;
    }
    if r.connections.is_empty() {
        output::line("no crawler connected")?;
    } else {
        let mut t = Table::new(&[
            "CONN",
            "OPENED",
            "PID",
            "STATE",
            "LAST HEARTBEAT",
            "CRAWLER UPTIME",
            "MESSAGES",
        ]);
        for c in &r.connections {
            t.row(vec![
                c.id.to_string(),
                c.opened_at.clone(),
                or_dash(c.peer_pid),
                if c.stale {
                    "stale".into()
                } else {
                    "live".into()
                },
                c.seconds_since_heartbeat
                    .filter(|_| c.last_heartbeat_at.is_some())
                    .map_or("never".into(), |s| format!("{s:.0}s ago")),
                c.crawler_uptime_s
                    .map_or("-".into(), |u| format!("{u:.0}s")),
                c.messages_in.to_string(),
            ]);
        }
        t.print()?;
    }
    output::line("")?;
    if r.running.is_empty() {
        output::line("no job in flight")?;
    } else {
        let mut t = Table::new(&["JOB", "TYPE", "ENTITY", "STATUS", "TRY", "PROGRESS"]);
        for j in &r.running {
            let rate = rates
                .and_then(|r| r.get(&j.id))
                .map_or(String::new(), |r| format!(" {r:.1}/s"));
            let progress = match (j.processed, j.total) {
                (Some(p), Some(t)) if t > 0 => {
                    format!(
                        "{} {p}/{t} ({:.0}%){rate}",
                        bar(p, t),
                        p as f64 * 100.0 / t as f64
                    )
                }
                (Some(p), _) => format!("{p} processed{rate}"),
                _ => "-".into(),
            };
            t.row(vec![
                j.id.clone(),
                j.entity_type.clone(),
                clip(&j.entity, 40),
                j.status.clone(),
                j.attempts.to_string(),
                format!("{progress} {}", j.stage.as_deref().unwrap_or("")),
            ]);
        }
        t.print()?;
    }
    if !r.recent_errors.is_empty() {
        output::line("\nrecent errors:")?;
        for e in &r.recent_errors {
            output::line(format!(
                "  {} {} {} {}",
                e.at,
                e.severity,
                e.category,
                clip(&e.message, 100)
            ))?;
            if let Some(hint) = hints::for_error(&e.message) {
                output::line(format!("    hint: {hint}"))?;
            }
        }
    }
    Ok(())
}
