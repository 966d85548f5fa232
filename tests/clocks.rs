//! Wall-clock steps of an hour either way between a dispatch and the next heartbeat,
//! `job_request` or monitor pass neither lose nor keep a job: the job rules run on a
//! temporary SQLite file with the running agent's monotonic records
//! (`server::clocks::Clocks`) driven by a fake monotonic clock, while the wall-clock
//! `now` handed to the rules jumps. A real crawler restart is still detected.

use crawler_agent::config::Config;
use crawler_agent::policy::Policy;
use crawler_agent::protocol::message::{self, Inbound};
use crawler_agent::protocol::EntityType;
use crawler_agent::secret::Secret;
use crawler_agent::server::clocks::{Clock, Clocks};
use crawler_agent::store::connections::{self, Peer, Traffic};
use crawler_agent::store::credentials::{self, NewCredential, TokenSource};
use crawler_agent::store::jobs::{self, Aged, Claim, Loss, Requester};
use crawler_agent::store::{self, Settings};
use crawler_agent::time::Timestamp;
use rusqlite::Connection;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CRAWLER: i64 = 1;
const OTHER: i64 = 2;
const HOUR: Duration = Duration::from_secs(3600);

/// A monotonic clock that moves only when told.
struct FakeClock(Mutex<Instant>);

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

impl FakeClock {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

struct Db {
    _dir: tempfile::TempDir,
    c: Connection,
    policy: Policy,
    now: Timestamp,
    fake: Arc<FakeClock>,
    clocks: Clocks,
    job: String,
}

/// One queued job dispatched to `CRAWLER` at wall `now` and fake monotonic zero.
fn dispatched() -> Db {
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
    let fake = Arc::new(FakeClock(Mutex::new(Instant::now())));
    let clocks = Clocks::new(fake.clone());
    for id in [CRAWLER, OTHER] {
        connections::open(&c, id, Peer::default(), now).unwrap();
        clocks.heard(id);
    }
    let mut policy = Policy::from(&config);
    policy.trusted_entity_types.clear();
    let job = jobs::NewJob {
        credential_id: credential,
        entity_type: EntityType::Areas,
        entity_id: "a".into(),
        namespace_path: None,
        priority: 0,
        max_attempts: policy.max_attempts,
        parent_job_id: None,
    };
    let jobs::Added::Created(job) = jobs::add(&c, &job, now).unwrap() else {
        panic!("duplicate")
    };
    let db = Db {
        _dir: dir,
        c,
        policy,
        now,
        fake,
        clocks,
        job,
    };
    assert_eq!(db.request(CRAWLER, true, now), vec![db.job.clone()]);
    db
}

impl Db {
    /// A `job_request` as its handler makes it: rules aged by the monotonic records,
    /// claimed jobs recorded.
    fn request(&self, connection_id: i64, first_request: bool, now: Timestamp) -> Vec<String> {
        let who = Requester {
            connection_id,
            first_request,
        };
        let claim = jobs::on_request_aged(
            &self.c,
            who,
            &self.clocks,
            &self.policy,
            Some(Duration::ZERO),
            now,
        )
        .unwrap();
        match claim {
            Claim::Done(jobs) => jobs
                .into_iter()
                .map(|(_, j)| {
                    self.clocks.dispatched(&j.id);
                    j.id
                })
                .collect(),
            Claim::RefreshFirst(due) => panic!("refresh first: {due:?}"),
        }
    }

    /// A heartbeat as its handler applies it, with the crawler's uptime.
    fn heartbeat(&self, uptime: f64, now: Timestamp) {
        let json = format!(
            r#"{{"type":"heartbeat","timestamp":"t","data":{{"activeJobs":1,"totalProcessed":0,"systemStatus":"busy","uptime":{uptime}}}}}"#
        );
        let Inbound::Heartbeat(hb) = message::parse(json.as_bytes()).unwrap().body else {
            panic!("not a heartbeat")
        };
        self.clocks.heard(CRAWLER);
        jobs::on_heartbeat_aged(
            &self.c,
            CRAWLER,
            &hb,
            Traffic::default(),
            &self.clocks,
            &self.policy,
            now,
        )
        .unwrap();
    }

    /// The monitor's pass over jobs left on a closed connection.
    fn recover_unstarted(&self, now: Timestamp) -> usize {
        let loss = Loss::ConnectionClosed {
            dispatched_before: now.minus(jobs::UNSTARTED_LOST_AFTER),
        };
        let aged = Aged {
            ages: &self.clocks,
            older_than: jobs::UNSTARTED_LOST_AFTER,
        };
        jobs::lose_aged(&self.c, loss, Some(aged), &self.policy, now).unwrap()
    }

    /// The monitor's stale pass.
    fn mark_stale(&self, stale_after: Duration, now: Timestamp) -> Vec<i64> {
        let silent_for = |id| self.clocks.silent_for(id);
        connections::mark_stale_aged(&self.c, now.minus(stale_after), &silent_for, stale_after)
            .unwrap()
    }

    fn status(&self) -> String {
        self.c
            .query_row("SELECT status FROM jobs WHERE id = ?1", [&self.job], |r| {
                r.get(0)
            })
            .unwrap()
    }
}

#[test]
fn a_forward_step_at_the_next_heartbeat_loses_no_job() {
    let db = dispatched();
    db.fake.advance(Duration::from_secs(5));
    // The crawler has run for 100 s; the wall clock jumped an hour ahead.
    db.heartbeat(100.0, db.now.plus(HOUR + Duration::from_secs(5)));
    assert_eq!(db.status(), "assigned");
    // The same heartbeat judged by the wall clock alone loses it: what the step did.
    let started = db
        .now
        .plus(HOUR + Duration::from_secs(5) - Duration::from_secs(102));
    let loss = Loss::CrawlerRestarted {
        by: CRAWLER,
        started,
    };
    assert_eq!(jobs::lose(&db.c, loss, &db.policy, started).unwrap(), 1);
}

#[test]
fn a_restart_is_detected_whichever_way_the_wall_clock_stepped() {
    for step_back in [false, true] {
        let db = dispatched();
        db.fake.advance(Duration::from_secs(60));
        // The crawler process is 3 s old: the job went out 60 s ago to its predecessor.
        let now = if step_back {
            db.now.minus(HOUR)
        } else {
            db.now.plus(HOUR)
        };
        db.heartbeat(3.0, now);
        assert_eq!(db.status(), "queued", "step back: {step_back}");
    }
}

#[test]
fn a_backward_step_at_the_next_heartbeat_keeps_a_live_job() {
    let db = dispatched();
    db.fake.advance(Duration::from_secs(5));
    db.heartbeat(100.0, db.now.minus(HOUR));
    assert_eq!(db.status(), "assigned");
}

#[test]
fn a_step_either_way_before_the_next_request_neither_orphans_nor_keeps_a_job() {
    // Forward: 2 s after the dispatch (within orphan_after), an hour later by the
    // wall: the crawler may still run it, so it stays and nothing else goes out.
    let db = dispatched();
    db.fake.advance(Duration::from_secs(2));
    assert!(db.request(CRAWLER, false, db.now.plus(HOUR)).is_empty());
    assert_eq!(db.status(), "assigned");
    // Backward: past orphan_after by monotonic time, an hour earlier by the wall: a
    // later request proves the crawler idle, so the job is lost and goes out again.
    let db = dispatched();
    db.fake
        .advance(db.policy.orphan_after + Duration::from_secs(1));
    db.request(CRAWLER, false, db.now.minus(HOUR));
    assert_eq!(db.status(), "queued", "lost, back in the queue");
}

#[test]
fn a_step_either_way_before_the_monitor_pass_neither_loses_nor_keeps_an_unstarted_job() {
    let db = dispatched();
    connections::close(&db.c, CRAWLER, "test", Traffic::default(), db.now).unwrap();
    db.clocks.closed(CRAWLER);
    db.fake.advance(Duration::from_secs(5));
    assert_eq!(db.recover_unstarted(db.now.plus(HOUR)), 0);
    assert_eq!(db.status(), "assigned");
    db.fake.advance(jobs::UNSTARTED_LOST_AFTER);
    assert_eq!(db.recover_unstarted(db.now.minus(HOUR)), 1);
    assert_eq!(db.status(), "queued");
}

#[test]
fn a_step_either_way_neither_marks_a_live_connection_stale_nor_hides_a_silent_one() {
    let db = dispatched();
    let stale_after = Duration::from_secs(30);
    db.fake.advance(Duration::from_secs(5));
    assert!(db.mark_stale(stale_after, db.now.plus(HOUR)).is_empty());
    db.fake.advance(stale_after);
    db.clocks.heard(OTHER);
    assert_eq!(db.mark_stale(stale_after, db.now.minus(HOUR)), [CRAWLER]);
}

#[test]
fn rows_from_before_this_run_fall_back_to_the_stored_wall_clock() {
    let db = dispatched();
    let fresh = Clocks::new(db.fake.clone());
    let loss = Loss::CrawlerRestarted {
        by: CRAWLER,
        started: db.now.plus(Duration::from_secs(1)),
    };
    let aged = Aged {
        ages: &fresh,
        older_than: Duration::from_secs(1000),
    };
    let later = db.now.plus(Duration::from_secs(2));
    assert_eq!(
        jobs::lose_aged(&db.c, loss, Some(aged), &db.policy, later).unwrap(),
        1
    );
}
