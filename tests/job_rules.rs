//! The job rules, called directly on a temporary SQLite file: every row of the state
//! machine in the protocol spec §6.2, late and unknown messages included. No socket,
//! no writer thread: each test runs the core's `on_<message>` functions the way the
//! writer does, on messages parsed from the crawler's own JSON.

use crawler_agent::config::Config;
use crawler_agent::policy::Policy;
use crawler_agent::protocol::message::{self, Inbound};
use crawler_agent::protocol::EntityType;
use crawler_agent::secret::Secret;
use crawler_agent::store::connections::{self, Peer, Traffic};
use crawler_agent::store::credentials::{self, NewCredential, TokenSource};
use crawler_agent::store::jobs::{self, Claim, Loss, RefreshPlan, Requester};
use crawler_agent::store::{self, Settings};
use crawler_agent::time::Timestamp;
use rusqlite::Connection;
use std::time::Duration;

struct Db {
    _dir: tempfile::TempDir,
    c: Connection,
    policy: Policy,
    credential: i64,
    now: Timestamp,
}

/// Connection ids opened by [`db`]: the crawler's live connection and a second one.
const CRAWLER: i64 = 1;
const OTHER: i64 = 2;

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
    let credential = credentials::id_by_name(&c, "main").unwrap().unwrap();
    for id in [CRAWLER, OTHER] {
        let peer = Peer {
            pid: Some(1),
            uid: Some(1000),
            gid: Some(1000),
        };
        connections::open(&c, id, peer, now).unwrap();
    }
    let mut policy = Policy::from(&config);
    policy.trusted_entity_types.clear();
    Db {
        _dir: dir,
        c,
        policy,
        credential,
        now,
    }
}

/// Every case ends with the trigger-kept `job_counts` agreeing with a recount of the
/// jobs (and SQLite's own checks passing), whatever transitions the case made.
impl Drop for Db {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let problems = store::read::check::problems(&self.c).unwrap();
            assert!(problems.is_empty(), "{problems:#?}");
        }
    }
}

/// A message as the crawler writes it.
fn parse(json: &str) -> Inbound {
    message::parse(json.as_bytes()).unwrap().body
}

impl Db {
    fn add(&self, entity_type: EntityType, entity_id: &str) -> String {
        let job = jobs::NewJob {
            credential_id: self.credential,
            entity_type,
            entity_id: entity_id.into(),
            namespace_path: None,
            priority: 0,
            max_attempts: self.policy.max_attempts,
            parent_job_id: None,
        };
        match jobs::add(&self.c, &job, self.now).unwrap() {
            jobs::Added::Created(id) => id,
            jobs::Added::Duplicate(id) => panic!("duplicate {id}"),
        }
    }

    fn request(&self, connection_id: i64, first_request: bool) -> Vec<String> {
        self.request_at(connection_id, first_request, self.now)
    }

    fn request_at(&self, connection_id: i64, first_request: bool, now: Timestamp) -> Vec<String> {
        let who = Requester {
            connection_id,
            first_request,
        };
        match jobs::on_request(&self.c, who, &self.policy, Some(Duration::ZERO), now).unwrap() {
            Claim::Done(jobs) => jobs.into_iter().map(|(_, j)| j.id).collect(),
            Claim::RefreshFirst(due) => panic!("refresh first: {due:?}"),
        }
    }

    /// Applies one crawler message the way its handler does.
    fn receive(&self, connection_id: i64, json: &str) {
        let now = self.now;
        match parse(json) {
            Inbound::JobStarted(id, d) => jobs::on_started(&self.c, connection_id, &id, &d, now),
            Inbound::JobCompleted(id, d) => {
                jobs::on_completed(&self.c, connection_id, &id, &d, now)
            }
            Inbound::JobFailed(id, f) => {
                jobs::on_failed(&self.c, connection_id, &id, &f, &self.policy, now)
            }
            Inbound::JobProgress(job_id, progress) => {
                let report = jobs::ProgressReport {
                    job_id,
                    progress,
                    sent_at: None,
                };
                jobs::on_progress(&self.c, connection_id, &[report], now)
            }
            Inbound::JobsDiscovered(id, d) => {
                jobs::on_discovered(&self.c, connection_id, &id, &d, &self.policy, now)
            }
            Inbound::Heartbeat(hb) => jobs::on_heartbeat(
                &self.c,
                connection_id,
                &hb,
                Traffic::default(),
                &self.policy,
                now,
            ),
            other => panic!("not a report: {other:?}"),
        }
        .unwrap()
    }

    fn status(&self, id: &str) -> String {
        self.one(&format!("SELECT status FROM jobs WHERE id = '{id}'"))
    }

    fn one<T: rusqlite::types::FromSql>(&self, sql: &str) -> T {
        self.c.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// The job's audit trail: event names in order.
    fn events(&self, id: &str) -> Vec<String> {
        let mut stmt = self
            .c
            .prepare("SELECT event FROM job_events WHERE job_id = ?1 ORDER BY id")
            .unwrap();
        let rows = stmt.query_map([id], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    fn close(&self, connection_id: i64) {
        connections::close(&self.c, connection_id, "test", Traffic::default(), self.now).unwrap();
    }
}

fn started(id: &str) -> String {
    format!(
        r#"{{"type":"job_started","timestamp":"2025-07-12T10:20:00.015Z","jobId":"{id}","data":{{"entityType":"areas","entityId":"x"}}}}"#
    )
}

fn completed(id: &str) -> String {
    format!(
        r#"{{"type":"job_completed","timestamp":"2025-07-12T10:20:01.000Z","jobId":"{id}","data":{{"success":true,"finalCounts":{{"areas":3}}}}}}"#
    )
}

fn failed(id: &str, error: &str, recoverable: bool) -> String {
    format!(
        r#"{{"type":"job_failed","timestamp":"2025-07-12T10:20:01.000Z","jobId":"{id}","data":{{"error":"{error}","errorType":"Error","isRecoverable":{recoverable},"resumeState":{{"currentPage":4}},"stackTrace":"at x (y.ts:1)"}}}}"#
    )
}

fn progress(id: &str) -> String {
    format!(
        r#"{{"type":"job_progress","timestamp":"2025-07-12T10:20:00.500Z","jobId":"{id}","data":{{"stage":"fetching","entityType":"areas","processed":7,"resumeState":{{"currentPage":2}}}}}}"#
    )
}

#[test]
fn a_request_claims_the_next_job_as_assigned_with_its_connection_and_attempt() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    assert_eq!(db.request(CRAWLER, true), vec![id.clone()]);
    assert_eq!(db.status(&id), "assigned");
    assert_eq!(db.one::<i64>("SELECT attempts FROM jobs"), 1);
    assert_eq!(db.one::<i64>("SELECT connection_id FROM jobs"), CRAWLER);
    assert_eq!(db.events(&id), ["created", "dispatched"]);
}

#[test]
fn nothing_is_handed_out_while_a_job_is_in_flight_on_this_crawler() {
    let db = db();
    let first = db.add(EntityType::Areas, "a");
    db.add(EntityType::Areas, "b");
    assert_eq!(db.request(CRAWLER, true), vec![first.clone()]);
    // A later request within orphan_after: the job may still run.
    assert!(db.request(CRAWLER, false).is_empty());
    assert_eq!(db.status(&first), "assigned");
}

#[test]
fn a_first_request_gets_nothing_while_a_job_is_in_flight_on_a_gone_connection() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    db.add(EntityType::Areas, "b");
    assert_eq!(db.request(OTHER, true), vec![id.clone()]);
    db.close(OTHER);
    assert!(db.request(CRAWLER, true).is_empty());
    assert_eq!(db.status(&id), "assigned");
}

#[test]
fn a_job_in_flight_on_another_live_connection_does_not_block_a_request() {
    let db = db();
    let a = db.add(EntityType::Areas, "a");
    let b = db.add(EntityType::Areas, "b");
    assert_eq!(db.request(OTHER, true), vec![a]);
    assert_eq!(db.request(CRAWLER, true), vec![b]);
}

#[test]
fn a_later_request_proves_the_crawler_idle_and_loses_its_old_job() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    assert_eq!(db.request(CRAWLER, true), vec![id.clone()]);
    let later = db.now.plus(db.policy.orphan_after + Duration::from_secs(1));
    // The lost job is requeued with a backoff, so this request gets nothing.
    assert!(db.request_at(CRAWLER, false, later).is_empty());
    assert_eq!(db.status(&id), "queued");
    assert_eq!(db.events(&id), ["created", "dispatched", "lost"]);
}

#[test]
fn job_started_moves_assigned_to_running() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    db.request(CRAWLER, true);
    db.receive(CRAWLER, &started(&id));
    assert_eq!(db.status(&id), "running");
    assert_eq!(db.events(&id), ["created", "dispatched", "started"]);
}

#[test]
fn job_started_completed_and_failed_apply_to_a_job_queued_after_a_reset() {
    let db = db();
    let a = db.add(EntityType::Areas, "a");
    db.receive(CRAWLER, &started(&a));
    assert_eq!(db.status(&a), "running");
    let b = db.add(EntityType::Areas, "b");
    db.receive(CRAWLER, &completed(&b));
    assert_eq!(db.status(&b), "finished");
    let c = db.add(EntityType::Areas, "c");
    db.receive(CRAWLER, &failed(&c, "boom", false));
    assert_eq!(db.status(&c), "failed");
}

#[test]
fn progress_is_kept_in_full_and_moves_an_assigned_job_to_running() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    db.request(CRAWLER, true);
    db.receive(CRAWLER, &progress(&id));
    db.receive(CRAWLER, &progress(&id));
    assert_eq!(db.status(&id), "running");
    assert_eq!(db.one::<i64>("SELECT count(*) FROM progress_snapshots"), 2);
    assert_eq!(
        db.one::<String>("SELECT resume_state FROM progress_snapshots LIMIT 1"),
        r#"{"currentPage":2}"#
    );
}

#[test]
fn job_completed_finishes_the_job_with_its_counts_and_clears_the_resume_state() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    db.request(CRAWLER, true);
    db.receive(CRAWLER, &started(&id));
    db.receive(CRAWLER, &completed(&id));
    assert_eq!(db.status(&id), "finished");
    assert_eq!(
        db.one::<String>("SELECT final_counts FROM jobs"),
        r#"{"areas":3}"#
    );
    assert_eq!(
        db.one::<Option<String>>("SELECT resume_state FROM jobs"),
        None
    );
}

/// Valid JSON that JavaScript never writes and no f64 holds: the completion is
/// applied and stored as sent, and the counts (which clamp each job's items, and
/// whose NaN sum would have failed the write) stay right.
#[test]
fn final_counts_past_any_float_still_finish_the_job() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    db.request(CRAWLER, true);
    db.receive(CRAWLER, &started(&id));
    let counts = r#"{"a":1e400,"b":-1e400,"c":7}"#;
    db.receive(
        CRAWLER,
        &format!(
            r#"{{"type":"job_completed","timestamp":"2025-07-12T10:20:09.000Z","jobId":"{id}","data":{{"success":true,"finalCounts":{counts}}}}}"#
        ),
    );
    assert_eq!(db.status(&id), "finished");
    assert_eq!(db.one::<String>("SELECT final_counts FROM jobs"), counts);
    assert_eq!(
        db.one::<i64>("SELECT items_processed FROM credential_rollup"),
        0,
        "an undefined sum counts as nothing"
    );
}

#[test]
fn a_recoverable_failure_is_requeued_with_a_backoff_and_stored_in_full() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    db.request(CRAWLER, true);
    db.receive(CRAWLER, &failed(&id, "socket hang up", true));
    assert_eq!(db.status(&id), "queued");
    let not_before: String = db.one("SELECT not_before FROM jobs");
    assert!(not_before > db.now.to_string(), "backoff: {not_before}");
    assert_eq!(
        db.one::<String>("SELECT stack_trace FROM errors WHERE job_id IS NOT NULL"),
        "at x (y.ts:1)"
    );
    assert_eq!(db.events(&id), ["created", "dispatched", "requeued"]);
    // Not before its backoff.
    assert!(db.request(CRAWLER, false).is_empty());
}

#[test]
fn failures_end_the_job_when_not_recoverable_permanent_or_out_of_attempts() {
    let db = db();
    let a = db.add(EntityType::Areas, "a");
    db.receive(CRAWLER, &failed(&a, "boom", false));
    assert_eq!(db.status(&a), "failed");
    let b = db.add(EntityType::Areas, "b");
    db.receive(
        CRAWLER,
        &failed(&b, "token_refresh_response payload was incomplete", true),
    );
    assert_eq!(db.status(&b), "failed");
    let c = db.add(EntityType::Areas, "c");
    db.c.execute(
        "UPDATE jobs SET attempts = max_attempts WHERE id = ?1",
        [&c],
    )
    .unwrap();
    db.receive(CRAWLER, &failed(&c, "socket hang up", true));
    assert_eq!(db.status(&c), "failed");
}

#[test]
fn unknown_task_type_fails_the_job_and_pauses_its_type() {
    let db = db();
    let id = db.add(EntityType::Project, "42");
    let other = db.add(EntityType::Project, "43");
    db.receive(
        CRAWLER,
        &failed(&id, "Unknown task type: fetch_project", true),
    );
    assert_eq!(db.status(&id), "failed");
    assert_eq!(
        db.one::<String>("SELECT entity_type FROM paused_entity_types"),
        "project"
    );
    // The other project job stays queued and is not handed out.
    assert!(db.request(CRAWLER, true).is_empty());
    assert_eq!(db.status(&other), "queued");
}

#[test]
fn jobs_discovered_adds_areas_and_follow_up_jobs_once_and_leaves_the_job_as_it_was() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    db.request(CRAWLER, true);
    db.receive(CRAWLER, &started(&id));
    let discovered = format!(
        r#"{{"type":"jobs_discovered","timestamp":"t","jobId":"{id}","data":{{"discovered_jobs":[{{"job_type":"crawl_group","entity_id":"412","namespace_path":"g","entity_name":"G"}},{{"job_type":"crawl_project","entity_id":"412","namespace_path":"g/p","entity_name":"P"}},null],"discovery_summary":{{"total_groups":1}}}}}}"#
    );
    db.receive(CRAWLER, &discovered);
    db.receive(CRAWLER, &discovered);
    assert_eq!(db.status(&id), "running");
    assert_eq!(db.one::<i64>("SELECT count(*) FROM areas"), 2);
    let follow_ups: i64 = db.one("SELECT count(*) FROM jobs WHERE parent_job_id IS NOT NULL");
    let expected = ["group", "project"]
        .iter()
        .filter(|t| db.policy.follow_up_types.iter().any(|f| f.as_str() == **t))
        .count();
    assert_eq!(follow_ups as usize, expected);
    // The null element is counted and reported, the others kept.
    assert_eq!(
        db.one::<i64>("SELECT count(*) FROM errors WHERE category = 'validation'"),
        2
    );
}

#[test]
fn a_refresh_request_for_a_stored_token_that_did_not_change_is_refused() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    db.request(CRAWLER, true);
    let plan = jobs::on_refresh_requested(&db.c, &id, db.now).unwrap();
    assert!(matches!(plan, RefreshPlan::Refuse { .. }), "{plan:?}");
    assert_eq!(db.status(&id), "assigned");
    let plan = jobs::on_refresh_requested(&db.c, "no-such-job", db.now).unwrap();
    assert!(matches!(plan, RefreshPlan::UnknownJob), "{plan:?}");
}

#[test]
fn a_token_replaced_since_dispatch_is_served_on_refresh() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    db.request(CRAWLER, true);
    let replaced = NewCredential {
        name: "main".into(),
        gitlab_url: "https://gitlab.example".into(),
        token: Secret::new("glpat-new"),
        source: TokenSource::Env,
        expires_at: None,
    };
    let later = db.now.plus(Duration::from_secs(1));
    credentials::add(&db.c, &replaced, true, later).unwrap();
    match jobs::on_refresh_requested(&db.c, &id, later).unwrap() {
        RefreshPlan::Serve { token, .. } => assert_eq!(token.expose(), "glpat-new"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unstarted_job_on_a_closed_connection_is_lost_after_a_minute() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    db.request(OTHER, true);
    db.close(OTHER);
    let soon = db.now.plus(Duration::from_secs(30));
    let loss = Loss::ConnectionClosed {
        dispatched_before: soon.minus(jobs::UNSTARTED_LOST_AFTER),
    };
    assert_eq!(jobs::lose(&db.c, loss, &db.policy, soon).unwrap(), 0);
    let later = db
        .now
        .plus(jobs::UNSTARTED_LOST_AFTER + Duration::from_secs(1));
    let loss = Loss::ConnectionClosed {
        dispatched_before: later.minus(jobs::UNSTARTED_LOST_AFTER),
    };
    assert_eq!(jobs::lose(&db.c, loss, &db.policy, later).unwrap(), 1);
    assert_eq!(db.status(&id), "queued");
}

#[test]
fn a_lost_job_at_its_last_attempt_fails() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    db.request(CRAWLER, true);
    db.c.execute("UPDATE jobs SET attempts = max_attempts", [])
        .unwrap();
    let later = db.now.plus(Duration::from_secs(1));
    let loss = Loss::CrawlerRestarted {
        by: CRAWLER,
        started: later,
    };
    assert_eq!(jobs::lose(&db.c, loss, &db.policy, later).unwrap(), 1);
    assert_eq!(db.status(&id), "failed");
    assert_eq!(db.events(&id), ["created", "dispatched", "lost"]);
}

#[test]
fn a_heartbeat_from_a_younger_crawler_process_loses_the_jobs_it_had() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    let dispatched_long_ago = db.now.minus(Duration::from_secs(600));
    db.request_at(CRAWLER, true, dispatched_long_ago);
    db.receive(
        CRAWLER,
        r#"{"type":"heartbeat","timestamp":"t","data":{"activeJobs":0,"totalProcessed":0,"systemStatus":"idle","uptime":5.2}}"#,
    );
    assert_eq!(db.status(&id), "queued");
    assert_eq!(db.events(&id).last().unwrap(), "lost");
}

#[test]
fn messages_for_an_ended_job_change_nothing_and_are_recorded_as_ignored() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    db.request(CRAWLER, true);
    db.receive(CRAWLER, &completed(&id));
    db.receive(CRAWLER, &started(&id));
    db.receive(CRAWLER, &failed(&id, "late", true));
    db.receive(CRAWLER, &completed(&id));
    assert_eq!(db.status(&id), "finished");
    assert_eq!(
        db.events(&id),
        [
            "created",
            "dispatched",
            "completed",
            "ignored",
            "ignored",
            "ignored"
        ]
    );
}

#[test]
fn messages_for_an_unknown_job_become_error_rows_and_create_nothing() {
    let db = db();
    for m in [
        started("ghost"),
        completed("ghost"),
        failed("ghost", "x", true),
        progress("ghost"),
    ] {
        db.receive(CRAWLER, &m);
    }
    assert_eq!(db.one::<i64>("SELECT count(*) FROM jobs"), 0);
    assert_eq!(
        db.one::<i64>("SELECT count(*) FROM errors WHERE job_id = 'ghost'"),
        4
    );
}

#[test]
fn finished_discoveries_are_queued_again_after_rediscover_after() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    db.request(CRAWLER, true);
    db.receive(CRAWLER, &completed(&id));
    assert_eq!(
        jobs::requeue_stale_discoveries(&db.c, &db.policy, db.now).unwrap(),
        0
    );
    let later = db
        .now
        .plus(db.policy.rediscover_after + Duration::from_secs(1));
    assert_eq!(
        jobs::requeue_stale_discoveries(&db.c, &db.policy, later).unwrap(),
        1
    );
    assert_eq!(db.status(&id), "queued");
    assert_eq!(db.one::<i64>("SELECT attempts FROM jobs"), 0);
}

#[test]
fn an_operator_cancels_a_live_job_and_retries_an_ended_one() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    assert_eq!(
        jobs::cancel(&db.c, &id, db.now).unwrap(),
        Ok(jobs::Status::Queued)
    );
    assert!(jobs::cancel(&db.c, &id, db.now).unwrap().is_err());
    assert_eq!(
        jobs::retry(&db.c, &id, false, db.now).unwrap(),
        Ok(jobs::Status::Cancelled)
    );
    assert_eq!(db.status(&id), "queued");
    assert!(jobs::retry(&db.c, &id, false, db.now).unwrap().is_err());
}

/// The resumeState a dispatch carries, if any, for each job handed to `connection_id`.
fn dispatched_resume(db: &Db, connection_id: i64) -> Vec<Option<serde_json::Value>> {
    let who = Requester {
        connection_id,
        first_request: false,
    };
    match jobs::on_request(&db.c, who, &db.policy, Some(Duration::ZERO), db.now).unwrap() {
        Claim::Done(jobs) => jobs.into_iter().map(|(_, j)| j.resume_state).collect(),
        Claim::RefreshFirst(due) => panic!("refresh first: {due:?}"),
    }
}

/// A job dispatched on connection OTHER, which closed before it started; a minute
/// later the agent takes it back (lost) and queues it again: the "reset" of §6.2.
fn reset_job(db: &Db) -> String {
    let id = db.add(EntityType::Areas, "a");
    assert_eq!(db.request(OTHER, true), std::slice::from_ref(&id));
    db.close(OTHER);
    let later = db
        .now
        .plus(jobs::UNSTARTED_LOST_AFTER + Duration::from_secs(1));
    let loss = Loss::ConnectionClosed {
        dispatched_before: later.minus(jobs::UNSTARTED_LOST_AFTER),
    };
    assert_eq!(jobs::lose(&db.c, loss, &db.policy, later).unwrap(), 1);
    assert_eq!(db.status(&id), "queued");
    id
}

/// §6.2 "queued after a reset": a job the agent took back is still the crawler's if
/// it reports on it later (it was slow, not gone); started, completed and failed all
/// apply.
#[test]
fn reports_for_a_job_reset_to_queued_by_a_loss_still_apply() {
    let db = db();
    let id = reset_job(&db);
    db.receive(CRAWLER, &started(&id));
    assert_eq!(db.status(&id), "running");
    db.receive(CRAWLER, &completed(&id));
    assert_eq!(db.status(&id), "finished");
    assert_eq!(
        db.events(&id),
        ["created", "dispatched", "lost", "started", "completed"]
    );

    let db = self::db();
    let id = reset_job(&db);
    db.receive(CRAWLER, &completed(&id));
    assert_eq!(db.status(&id), "finished");

    let db = self::db();
    let id = reset_job(&db);
    db.receive(CRAWLER, &failed(&id, "late failure", false));
    assert_eq!(db.status(&id), "failed");
    assert_eq!(db.events(&id).last().unwrap(), "failed");
}

/// §6.2: progress keeps the latest resumeState, a failure stores the one it carries
/// (else the latest progress had), and a dispatch carries it only when the operator
/// asked for a resumed retry.
#[test]
fn the_latest_resume_state_is_kept_and_reused_only_on_a_resumed_retry() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    db.request(CRAWLER, true);
    db.receive(CRAWLER, &progress(&id));
    // A failure without a resumeState of its own keeps the latest progress's.
    db.receive(
        CRAWLER,
        &format!(
            r#"{{"type":"job_failed","timestamp":"t","jobId":"{id}","data":{{"error":"boom","errorType":"Error","isRecoverable":false}}}}"#
        ),
    );
    assert_eq!(db.status(&id), "failed");
    assert_eq!(
        db.one::<Option<String>>("SELECT resume_state FROM jobs")
            .as_deref(),
        Some(r#"{"currentPage":2}"#)
    );
    jobs::retry(&db.c, &id, true, db.now).unwrap().unwrap();
    assert_eq!(
        dispatched_resume(&db, OTHER),
        [Some(serde_json::json!({"currentPage": 2}))],
        "a resumed retry carries it"
    );
    // A failure that carries its own resumeState replaces it.
    db.receive(OTHER, &failed(&id, "boom again", false));
    assert_eq!(
        db.one::<Option<String>>("SELECT resume_state FROM jobs")
            .as_deref(),
        Some(r#"{"currentPage":4}"#)
    );
    // A plain retry starts over: nothing is sent, the state is kept for later.
    jobs::retry(&db.c, &id, false, db.now).unwrap().unwrap();
    assert_eq!(dispatched_resume(&db, CRAWLER), [None]);
    assert_eq!(
        db.one::<Option<String>>("SELECT resume_state FROM jobs")
            .as_deref(),
        Some(r#"{"currentPage":4}"#)
    );
}

/// §6.2 the 60 s rule takes only jobs never started whose connection is gone: not one
/// on a live connection, not one the crawler started, however old.
#[test]
fn the_unstarted_rule_spares_live_connections_and_started_jobs() {
    let db = db();
    db.add(EntityType::Areas, "a");
    db.add(EntityType::Areas, "b");
    let on_live = db.request(CRAWLER, true);
    let on_closed = db.request(OTHER, true);
    assert_eq!((on_live.len(), on_closed.len()), (1, 1));
    db.receive(OTHER, &started(&on_closed[0]));
    db.close(OTHER);
    let much_later = db.now.plus(Duration::from_secs(3600));
    let loss = Loss::ConnectionClosed {
        dispatched_before: much_later.minus(jobs::UNSTARTED_LOST_AFTER),
    };
    assert_eq!(jobs::lose(&db.c, loss, &db.policy, much_later).unwrap(), 0);
    assert_eq!(db.status(&on_live[0]), "assigned");
    assert_eq!(db.status(&on_closed[0]), "running");
}

/// A job lost by the 60 s rule at its last attempt fails instead of going back.
#[test]
fn a_job_lost_unstarted_at_its_last_attempt_fails() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    db.request(OTHER, true);
    db.c.execute("UPDATE jobs SET attempts = max_attempts", [])
        .unwrap();
    db.close(OTHER);
    let later = db
        .now
        .plus(jobs::UNSTARTED_LOST_AFTER + Duration::from_secs(1));
    let loss = Loss::ConnectionClosed {
        dispatched_before: later.minus(jobs::UNSTARTED_LOST_AFTER),
    };
    assert_eq!(jobs::lose(&db.c, loss, &db.policy, later).unwrap(), 1);
    assert_eq!(db.status(&id), "failed");
    assert_eq!(db.events(&id), ["created", "dispatched", "lost"]);
    assert!(db
        .one::<String>("SELECT last_error FROM jobs")
        .contains("lost"));
}

/// §6.2: messages for a job that failed for good change nothing (no resurrection) and
/// are recorded as ignored.
#[test]
fn messages_for_a_failed_job_change_nothing_and_are_recorded_as_ignored() {
    let db = db();
    let id = db.add(EntityType::Areas, "a");
    db.request(CRAWLER, true);
    db.receive(CRAWLER, &failed(&id, "fatal", false));
    assert_eq!(db.status(&id), "failed");
    let error_before = db.one::<String>("SELECT last_error FROM jobs");
    db.receive(CRAWLER, &started(&id));
    db.receive(CRAWLER, &progress(&id));
    db.receive(CRAWLER, &completed(&id));
    db.receive(CRAWLER, &failed(&id, "again", true));
    assert_eq!(db.status(&id), "failed");
    assert_eq!(
        db.one::<String>("SELECT last_error FROM jobs"),
        error_before
    );
    assert_eq!(db.one::<i64>("SELECT count(*) FROM progress_snapshots"), 0);
    let events = db.events(&id);
    assert_eq!(&events[..3], ["created", "dispatched", "failed"]);
    assert_eq!(events[3..].len(), 4, "{events:?}");
    assert!(events[3..].iter().all(|e| e == "ignored"), "{events:?}");
}
