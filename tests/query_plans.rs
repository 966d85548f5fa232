//! Every statement on a hot or periodic path reads an index, never a whole growing
//! table, and never sorts (issue 14). The statements are not copied here: the real
//! functions run on a temporary database filled with enough rows for the planner's
//! choice to be real, SQLite's trace hook records each statement they run, and each
//! one's `EXPLAIN QUERY PLAN` is checked. So a new or changed statement is checked
//! without anyone listing it.
//!
//! A plan line may `SCAN` only
//! - a table that stays small (credentials, paused types, the runtime row, json_each)
//!   or the batch being applied (a discovery's staged entries, read once),
//! - an index holding only rows that are bounded by the number of crawlers rather than
//!   the history (`jobs_in_flight`: jobs handed out; `connections_live`: open
//!   connections),
//! - an index read in its own order for one row (`ORDER BY … LIMIT 1`:
//!   `connections_heartbeat`).
//!
//! No plan may walk `jobs_status` (one entry per job) outside the operator's counts and
//! pages: a SEARCH on it for a status reads every job of that status.
//!
//! And no plan may use a temporary B-tree (a sort, DISTINCT or GROUP BY outside an
//! index's order). The one exception is listed in [`RETAINED_COUNTS`].

use crawler_agent::config::Config;
use crawler_agent::policy::Policy;
use crawler_agent::protocol::message::{self, Inbound};
use crawler_agent::protocol::EntityType;
use crawler_agent::secret::Secret;
use crawler_agent::store::connections::{self, Peer, Traffic};
use crawler_agent::store::credentials::{self, NewCredential, TokenSource};
use crawler_agent::store::jobs::{self, Claim, Loss, Requester};
use crawler_agent::store::{self, alerts, read, retention, Settings};
use crawler_agent::time::Timestamp;
use rusqlite::trace::{TraceEvent, TraceEventCodes};
use rusqlite::Connection;
use rusqlite::StatementStatus;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

/// Statements seen by the trace hook (it takes a plain `fn`, so a static).
static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn record(e: TraceEvent<'_>) {
    if let TraceEvent::Stmt(_, sql) = e {
        let sql = sql.trim();
        // Statements a trigger runs are reported as "-- ..." comments.
        if !sql.starts_with("--") {
            if let Ok(mut seen) = SEEN.lock() {
                seen.insert(sql.to_string());
            }
        }
    }
}

/// Rows in the growing tables before the hot paths run.
const QUEUED: i64 = 30_000;
const PAUSED_AT_HEAD: i64 = 30_000;
const HISTORY: i64 = 20_000;

struct Db {
    _dir: tempfile::TempDir,
    c: Connection,
    policy: Policy,
    now: Timestamp,
}

fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default();
    let c = store::open_read_write(
        &dir.path().join("agent.db"),
        &Settings::from(&config.storage),
    )
    .unwrap();
    let now = Timestamp::now();
    let cred = NewCredential {
        name: "main".into(),
        gitlab_url: "https://gitlab.example".into(),
        token: Secret::new("glpat-test"),
        source: TokenSource::Env,
        expires_at: None,
    };
    credentials::add(&c, &cred, false, now).unwrap();
    let old = now.minus(Duration::from_secs(3 * 86_400)).to_string();
    let head = now.minus(Duration::from_secs(86_400)).to_string();
    let tx = c.unchecked_transaction().unwrap();
    // History: closed connections with heartbeats, finished jobs with events and
    // progress, errors; a paused type at the head of the queue; a long queue that all
    // shares one created_at (one discovery's worth).
    tx.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO connections (id, opened_at, closed_at, close_reason, last_heartbeat_at,
                                  crawler_uptime_s)
         SELECT i + 10, ?2, ?2, 'peer closed', ?2, 100.0 FROM n",
        rusqlite::params![HISTORY, old],
    )
    .unwrap();
    let jobs = |n: i64, entity_type: &str, status: &str, created: &str, prefix: &str| {
        tx.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT INTO jobs (id, credential_id, entity_type, entity_id, status, max_attempts,
                               created_at, updated_at, finished_at, dispatched_at)
             SELECT printf('%s%08d', ?5, i), 1, ?2, ?5 || i, ?3, 3, ?4, ?4,
                    CASE WHEN ?3 = 'finished' THEN ?4 END,
                    CASE WHEN ?3 = 'finished' THEN ?4 END
             FROM n",
            rusqlite::params![n, entity_type, status, created, prefix],
        )
        .unwrap();
    };
    jobs(HISTORY, "project", "finished", &old, "F");
    jobs(HISTORY / 10, "areas", "finished", &old, "A");
    jobs(PAUSED_AT_HEAD, "issue", "queued", &head, "P");
    jobs(QUEUED, "project", "queued", &head, "Q");
    tx.execute(
        "INSERT INTO job_events (job_id, at, event) SELECT id, created_at, 'completed'
         FROM jobs WHERE status = 'finished'",
        [],
    )
    .unwrap();
    tx.execute(
        "INSERT INTO progress_snapshots (job_id, received_at, stage, processed)
         SELECT id, created_at, 'fetching', 1 FROM jobs WHERE status = 'finished'",
        [],
    )
    .unwrap();
    tx.execute(
        "INSERT INTO errors (at, category, severity, message)
         SELECT created_at, 'job', 'low', 'x' FROM jobs WHERE status = 'finished'",
        [],
    )
    .unwrap();
    tx.execute(
        "INSERT INTO paused_entity_types (entity_type, paused_at, reason) VALUES ('issue', ?1, 'test')",
        [&old],
    )
    .unwrap();
    tx.commit().unwrap();
    for id in [1, 2] {
        connections::open(&c, id, Peer::default(), now).unwrap();
    }
    let mut policy = Policy::from(&config);
    policy.trusted_entity_types.clear();
    Db {
        _dir: dir,
        c,
        policy,
        now,
    }
}

fn parse(json: &str) -> Inbound {
    message::parse(json.as_bytes()).unwrap().body
}

/// Runs every hot and periodic path once, as the server and the monitor do.
fn exercise(d: &Db) {
    let (c, policy, now) = (&d.c, &d.policy, d.now);
    let claim = |conn_id: i64, first: bool| -> Vec<String> {
        let who = Requester {
            connection_id: conn_id,
            first_request: first,
        };
        match jobs::on_request(c, who, policy, Some(Duration::ZERO), now).unwrap() {
            Claim::Done(j) => j.into_iter().map(|(_, j)| j.id).collect(),
            Claim::RefreshFirst(due) => panic!("refresh first: {due:?}"),
        }
    };
    let got = claim(1, true);
    assert_eq!(
        got.len(),
        1,
        "a claim hands out the head of the unpaused queue"
    );
    assert!(
        got[0].starts_with('Q'),
        "the paused type is skipped: {got:?}"
    );
    let job = &got[0];
    // Busy check (the job is still out), then the job's whole life.
    assert!(claim(1, false).is_empty());
    let hb = r#"{"type":"heartbeat","timestamp":"2025-07-12T10:20:05.002Z","data":{"activeJobs":0,"totalProcessed":0,"systemStatus":"idle","uptime":73.41,"memoryUsage":{"rss":1}}}"#;
    let Inbound::Heartbeat(hb) = parse(hb) else {
        panic!()
    };
    jobs::on_heartbeat(c, 1, &hb, Traffic::default(), policy, now).unwrap();
    let started = format!(
        r#"{{"type":"job_started","timestamp":"2025-07-12T10:20:00.015Z","jobId":"{job}","data":{{"entityType":"project","entityId":"1"}}}}"#
    );
    let Inbound::JobStarted(id, s) = parse(&started) else {
        panic!()
    };
    jobs::on_started(c, 1, &id, &s, now).unwrap();
    let progress = format!(
        r#"{{"type":"job_progress","timestamp":"2025-07-12T10:20:06.100Z","jobId":"{job}","data":{{"stage":"fetching","entityType":"project","processed":200}}}}"#
    );
    let Inbound::JobProgress(job_id, progress) = parse(&progress) else {
        panic!()
    };
    let report = jobs::ProgressReport {
        job_id,
        progress,
        sent_at: None,
    };
    jobs::on_progress(c, 1, &[report], now).unwrap();
    let completed = format!(
        r#"{{"type":"job_completed","timestamp":"2025-07-12T10:20:03.870Z","jobId":"{job}","data":{{"success":true,"finalCounts":{{}}}}}}"#
    );
    let Inbound::JobCompleted(id, done) = parse(&completed) else {
        panic!()
    };
    jobs::on_completed(c, 1, &id, &done, now).unwrap();
    // A failure with a backoff, its release, and a lost job.
    let next = claim(1, false);
    let failed = format!(
        r#"{{"type":"job_failed","timestamp":"2025-07-12T10:20:00.031Z","jobId":"{}","data":{{"error":"boom","isRecoverable":true}}}}"#,
        next[0]
    );
    let Inbound::JobFailed(id, f) = parse(&failed) else {
        panic!()
    };
    jobs::on_failed(c, 1, &id, &f, policy, now).unwrap();
    claim(2, true);
    connections::close(c, 2, "peer closed", Traffic::default(), now).unwrap();
    let later = now.plus(Duration::from_secs(3600));
    let loss = Loss::ConnectionClosed {
        dispatched_before: later,
    };
    jobs::lose(c, loss, policy, later).unwrap();
    let moved_on = Loss::CrawlerMovedOn {
        by: 1,
        dispatched_before: later,
    };
    jobs::lose(c, moved_on, policy, later).unwrap();
    // Connection open, close, the monitor's passes, retention.
    connections::open(c, 3, Peer::default(), now).unwrap();
    connections::next_id(c).unwrap();
    connections::mark_stale(c, later).unwrap();
    connections::close(c, 3, "peer closed", Traffic::default(), now).unwrap();
    jobs::requeue_stale_discoveries(c, policy, now).unwrap();
    retention::prune(c, &Config::default().retention, now).unwrap();
    // The alert checks: start, fire, stay fired, end (every statement of alerts.rs).
    let after = alerts::After {
        crawler_lost: Duration::ZERO,
        crawler_absent: Duration::ZERO,
    };
    for t in [now, now, now] {
        alerts::check(c, after, t).unwrap();
    }
    c.execute("DELETE FROM alert_episodes", []).unwrap();
    alerts::check(c, after, later).unwrap();
    alerts::check(c, after, later.plus(Duration::from_secs(3600))).unwrap();
    // What the operator runs: status, jobs list, metrics.
    read::jobs::counts(c).unwrap();
    read::jobs::pauses(c).unwrap();
    read::status::running(c).unwrap();
    read::connections::live(c).unwrap();
    read::runtime::load(c).unwrap();
    let page = read::jobs::list(c, None, 50, None).unwrap();
    read::jobs::list(c, None, 50, page.last().map(|j| j.id.as_str())).unwrap();
    read::jobs::list(c, Some(jobs::Status::Queued), 50, None).unwrap();
    read::errors::since(c, now.minus(Duration::from_secs(3600)), 50).unwrap();
    // Issue 16: cut lists' counts, job ids by prefix, the show commands, a silent status.
    let last = page.last().map_or("", |j| j.id.as_str());
    read::jobs::remaining(c, None, last).unwrap();
    read::jobs::remaining(c, Some(jobs::Status::Queued), last).unwrap();
    read::errors::count_since(c, now.minus(Duration::from_secs(3600))).unwrap();
    read::job_ids::resolve(c, &last.to_lowercase()).unwrap();
    read::job_ids::resolve(c, &last[..last.len().min(3)]).unwrap();
    read::jobs::progress(c, last).unwrap();
    read::jobs::events(c, last, 1000).unwrap();
    read::jobs::count_events(c, last).unwrap();
    read::errors::for_job(c, last, 50).unwrap();
    read::errors::count_for_job(c, last).unwrap();
    read::errors::get(c, 1).unwrap();
    read::runtime::last_agent_write(c).unwrap();
    read::metrics::families(c, std::path::Path::new("agent.db"), true).unwrap();
    // A discovery: its batch statements read the entries once, outermost.
    let areas = claim(1, false);
    let discovered = format!(
        r#"{{"type":"jobs_discovered","timestamp":"2025-07-12T10:20:03.650Z","jobId":"{}","data":{{"discovered_jobs":[{{"job_type":"crawl_group","entity_id":"412","namespace_path":"acme/platform","entity_name":"Platform","priority":1}}]}}}}"#,
        areas.first().map_or("none", String::as_str)
    );
    let Inbound::JobsDiscovered(id, found) = parse(&discovered) else {
        panic!()
    };
    jobs::on_discovered(c, 1, &id, &found, policy, now).unwrap();
    let _ = EntityType::Project;
}

const SMALL_TABLES: &[&str] = &[
    "credentials",
    "paused_entity_types",
    "agent_runtime",
    "alert_episodes",
    "json_each",
    // A discovery's batch, staged (`store::discovery`): each statement reads it once.
    "temp.discovered",
    // One row per credential, entity type and status, kept by triggers.
    "job_counts",
    // One row per event, per error category and severity, kept by triggers.
    "job_event_counts",
    "error_counts",
];
const BOUNDED_INDEXES: &[&str] = &[
    "jobs_in_flight",
    "jobs_cancel_pending",
    "connections_live",
    "connections_heartbeat",
];

/// Indexes that hold a row for every job: a SEARCH on one walks a whole status. Only
/// the operator's counts and pages may use them (a page stops at its LIMIT).
const WIDE_INDEXES: &[&str] = &["jobs_status"];

fn wide_allowed(sql: &str) -> bool {
    sql.contains("rowid DESC LIMIT")
        // A list's "N more" counts at most this many entries.
        || sql.contains("LIMIT 100001)")
        // The statuses in flight hold at most one job per crawler connection.
        || sql.contains("status IN ('assigned', 'running')")
        || sql.contains("ORDER BY rowid LIMIT 1")
        // Stops at the first entry.
        || sql.starts_with("SELECT EXISTS (SELECT 1 FROM jobs WHERE status IN")
}

/// What is wrong with one plan line, if anything.
fn problem(line: &str) -> Option<&'static str> {
    if line.contains("TEMP B-TREE") {
        return Some("sorts in a temporary B-tree");
    }
    let rest = line.trim().strip_prefix("SCAN ")?;
    let table = rest.split_whitespace().next().unwrap_or("");
    if SMALL_TABLES.contains(&table) || rest.contains("VIRTUAL TABLE") {
        return None;
    }
    if BOUNDED_INDEXES
        .iter()
        .any(|i| rest.contains(&format!("INDEX {i}")))
    {
        return None;
    }
    if table.starts_with('(') || rest.starts_with("CONSTANT ROW") {
        return None;
    }
    Some("scans a growing table")
}

/// The `metrics` exposition's count of retained token refreshes per label: a
/// whole-table aggregate over a table bounded by retention and by how often tokens
/// are refreshed (job events and errors, which grow with the work, are counted by
/// triggers in `job_event_counts` and `error_counts`).
const RETAINED_COUNTS: &[&str] =
    &["SELECT trigger, outcome, count(*) FROM token_refreshes GROUP BY 1, 2"];

/// Aggregates of the operator's views (`metrics`, `status`) over tables that do not
/// grow with the queue: the trigger-kept job counts (grouped in another order than
/// their key, so SQLite sorts their few rows), errors and notification deliveries
/// (bounded by retention), open connections. Listed so a new one cannot slip in
/// unseen; benches/agent.rs times `metrics` at 1M jobs.
const OPERATOR_AGGREGATES: &[&str] = &[
    "SELECT entity_type, status, sum(jobs) FROM job_counts GROUP BY 1, 2",
    "SELECT CASE stale WHEN 1 THEN 'stale' ELSE 'live' END, count(*) FROM live_connections GROUP BY 1",
    "SELECT sink, count(*) FROM notify_deliveries WHERE status = 'pending' GROUP BY 1",
    "SELECT sink, status, count(*) FROM notify_deliveries WHERE status != 'pending' GROUP BY 1, 2",
];

/// Prefixes of the same kind for statements spread over several lines.
const OPERATOR_AGGREGATE_PREFIXES: &[&str] = &["SELECT c.name, s.state,"];

/// The per-credential rollup (`credential_rollup` view): one row per credential (a
/// few), sorted by name; its job counts come from `job_counts`, its items in flight
/// from the two in-flight statuses on `jobs_status` (at most one job per crawler
/// connection). These lines of its plan are expected; any other is checked.
const ROLLUP: &str = "SELECT name, token_state = 'usable', queued,";
const ROLLUP_LINES: &[&str] = &[
    "SCAN c",
    "SCAN credential_rollup",
    "USE TEMP B-TREE FOR ORDER BY",
    "SEARCH j USING INDEX jobs_status (status=?)",
];

fn plan(c: &Connection, sql: &str) -> Vec<String> {
    // Planned with its parameters unbound, as the prepared statement is.
    let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let mut rows = stmt.raw_query();
    let mut lines = Vec::new();
    while let Some(r) = rows.next().unwrap() {
        lines.push(r.get::<_, String>(3).unwrap());
    }
    lines
}

#[test]
fn every_hot_and_periodic_statement_reads_an_index_and_never_sorts() {
    let d = db();
    // As the writer does: every statement of the hot paths stays prepared, so the
    // re-prepare counts below are those of the statements the agent keeps.
    d.c.set_prepared_statement_cache_capacity(256);
    d.c.trace_v2(TraceEventCodes::SQLITE_TRACE_STMT, Some(record));
    exercise(&d);
    d.c.trace_v2(TraceEventCodes::empty(), None);
    let seen = SEEN.lock().unwrap().clone();
    assert!(seen.len() > 20, "the trace saw the statements: {seen:?}");
    let mut bad = Vec::new();
    for sql in &seen {
        // SQLite re-parses and re-plans a statement whose plan depended on the value
        // of a bound parameter (a LIMIT, a term tested against a partial index's
        // condition) each time that parameter changes: the claim's per-type seek did
        // so at every seek. The statements the core keeps prepared must never be.
        if let Ok(stmt) = d.c.prepare_cached(sql) {
            let reprepared = stmt.get_status(StatementStatus::RePrepare);
            if reprepared > 0 {
                bad.push(format!("re-prepared {reprepared} times: {sql}"));
            }
        }
    }
    for sql in &seen {
        // Transaction control and pragmas have no plan.
        let head = sql.split_whitespace().next().unwrap_or("").to_uppercase();
        if !matches!(
            head.as_str(),
            "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "WITH" | "REPLACE"
        ) {
            continue;
        }
        if RETAINED_COUNTS.contains(&sql.as_str())
            || OPERATOR_AGGREGATES.contains(&sql.as_str())
            || OPERATOR_AGGREGATE_PREFIXES
                .iter()
                .any(|p| sql.starts_with(p))
        {
            continue;
        }
        let lines = plan(&d.c, sql);
        let first = lines.first().map_or("", String::as_str);
        let batch_outside = first.contains("VIRTUAL TABLE") || first == "SCAN temp.discovered";
        if (sql.contains("json_each(") || sql.contains("temp.discovered"))
            && sql.contains("JOIN")
            && !batch_outside
        {
            bad.push(format!(
                "the batch is not the outer loop: {sql}\n  plan: {lines:?}"
            ));
        }
        for line in &lines {
            if sql.starts_with(ROLLUP) && ROLLUP_LINES.contains(&line.as_str()) {
                continue;
            }
            // The upsert's foreign-key program for `jobs.parent_job_id` (children of
            // the updated row); SQLite compiles it into every jobs upsert. An open
            // question, see docs/performance.md.
            if line == "SCAN jobs" && sql.starts_with("INSERT INTO jobs") {
                continue;
            }
            if WIDE_INDEXES
                .iter()
                .any(|i| line.contains(&format!("INDEX {i} ")))
                && !wide_allowed(sql)
            {
                bad.push(format!(
                    "walks a whole status: {line}\n  in: {sql}\n  plan: {lines:?}"
                ));
            }
            if let Some(why) = problem(line) {
                bad.push(format!("{why}: {line}\n  in: {sql}\n  plan: {lines:?}"));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}
