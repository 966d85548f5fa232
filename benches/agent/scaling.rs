//! Phases 6 and 7 of the benchmark: the claim and the full job cycle at queue depths
//! of 1k to 1M (and with a paused type holding 90 % of the queue at its head), each
//! beside a bare SQLite loop doing the same writes on the same file; then what the
//! operator and the monitor run, timed on the 1M-job database.
//!
//! The queues are written by direct SQL through the store's own connection, in the
//! shape one discovery leaves (every job the same `created_at`, priority 0, one
//! parent): a 1M-entry `jobs_discovered` is 130 MB, over the message cap, and phase 4
//! already times the discovery itself.

use super::common::Agent;
use super::{bench_agent, ms, percentile, start};
use crawler_agent::config::Config;
use crawler_agent::store::{self, read, retention};
use crawler_agent::time::Timestamp;
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// One depth's figures.
pub struct Depth {
    pub label: String,
    pub claim_p50: Duration,
    pub claim_p99: Duration,
    pub cycles_1: f64,
    pub cycles_8: f64,
    pub bare: f64,
    pub grouped: f64,
}

/// `n` queued project jobs sharing one `created_at`, after `paused` jobs of a
/// paused type (issue) at a higher priority, i.e. at the head of the queue.
fn fill(db: &Path, n: u64, paused: u64) {
    let c = store::open_read_write(db, &store::Settings::from(&Config::default().storage))
        .expect("open the bench database");
    c.execute_batch("PRAGMA cache_size = -65536").unwrap();
    let tx = c.unchecked_transaction().unwrap();
    let now = Timestamp::now().to_string();
    let insert = |n: u64, entity_type: &str, priority: i64, prefix: &str| {
        tx.execute(
            "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?1)
             INSERT INTO jobs (id, credential_id, entity_type, entity_id, namespace_path,
                               priority, max_attempts, created_at, updated_at)
             SELECT printf('%s%025d', ?4, i), (SELECT min(id) FROM credentials), ?2, i,
                    'group/project-' || i, ?3, 3, ?5, ?5
             FROM k",
            rusqlite::params![n as i64, entity_type, priority, prefix, now],
        )
        .unwrap();
    };
    insert(paused, "issue", 1, "P");
    insert(n, "project", 0, "Q");
    if paused > 0 {
        tx.execute(
            "INSERT INTO paused_entity_types (entity_type, paused_at, reason)
             VALUES ('issue', ?1, 'bench')",
            [&now],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// One crawler's loop: job_request → job_started → job_completed until `stop`.
/// Returns the claim latencies.
fn cycles(agent: &Agent, stop: &AtomicBool, budget: &AtomicI64) -> Vec<Duration> {
    let mut crawler = agent.connect();
    crawler.chunked = false;
    let mut claims = Vec::new();
    while !stop.load(Ordering::Relaxed) && budget.fetch_sub(1, Ordering::Relaxed) > 0 {
        let t = Instant::now();
        let jobs = crawler.request_jobs();
        claims.push(t.elapsed());
        let Some(id) = jobs.first().and_then(|j| j["id"].as_str()) else {
            break;
        };
        let data = json!({"entityType": "project", "entityId": jobs[0]["entityId"]});
        crawler.send_type("job_started", Some(id), data);
        let done = json!({"success": true, "finalCounts": {}});
        crawler.send_type("job_completed", Some(id), done);
    }
    claims
}

/// Runs `k` crawlers for `secs` or `budget` cycles, whichever ends first; returns
/// (claim latencies, durable cycles per second).
fn run(agent: &Agent, k: usize, secs: f64, budget: i64) -> (Vec<Duration>, f64) {
    let budget = AtomicI64::new(budget);
    let finished_before = agent.count("SELECT count(*) FROM jobs WHERE status = 'finished'");
    let stop = AtomicBool::new(false);
    let t = Instant::now();
    let mut claims: Vec<Duration> = std::thread::scope(|s| {
        let crawlers: Vec<_> = (0..k)
            .map(|_| s.spawn(|| cycles(agent, &stop, &budget)))
            .collect();
        while t.elapsed().as_secs_f64() < secs && budget.load(Ordering::Relaxed) > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        crawlers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    // Cycles count once their job_completed is committed.
    let sent = claims.len() as i64;
    let mut finished = 0;
    while t.elapsed() < Duration::from_secs_f64(secs + 30.0) {
        finished =
            agent.count("SELECT count(*) FROM jobs WHERE status = 'finished'") - finished_before;
        if finished >= sent - k as i64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let rate = finished as f64 / t.elapsed().as_secs_f64();
    claims.sort();
    (claims, rate)
}

/// The bare limits: the claim as one `UPDATE … RETURNING` on the same index, then the
/// same two status writes, on the same file; cycles/s. `per_commit` cycles share a
/// transaction; with `audit`, each of the three transitions also writes its
/// `job_events` row, as the agent does. (1, false) is the bare loop, each write its
/// own transaction; (8, true) the grouped limit: the rows one cycle must write, eight
/// cycles per commit, the most a writer that shares commits could reach here.
fn bare_cycles(db: &Path, secs: f64, budget: u64, per_commit: u64, audit: bool) -> f64 {
    let c = store::open_read_write(db, &store::Settings::from(&Config::default().storage))
        .expect("open the bench database");
    let audit_row = |id: &str, event: &str, from: &str, to: &str, now: &str| {
        if audit {
            c.prepare_cached(
                "INSERT INTO job_events (job_id, at, event, from_status, to_status, connection_id,
                                         detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, NULL, '{\"attempt\":1}')",
            )
            .unwrap()
            .execute(rusqlite::params![id, now, event, from, to])
            .unwrap();
        }
    };
    let mut done = 0u64;
    let t = Instant::now();
    'run: while t.elapsed().as_secs_f64() < secs && done < budget {
        let grouped = per_commit > 1;
        if grouped {
            c.execute_batch("BEGIN IMMEDIATE").unwrap();
        }
        for _ in 0..per_commit {
            let now = Timestamp::now().to_string();
            let id: Option<String> = c
                .prepare_cached(
                    "UPDATE jobs SET status = 'assigned', attempts = attempts + 1,
                            dispatched_at = ?1, updated_at = ?1
                     WHERE id = (SELECT id FROM jobs
                                 WHERE status = 'queued' AND not_before IS NULL
                                   AND entity_type = 'project'
                                 ORDER BY priority DESC, created_at, id LIMIT 1)
                     RETURNING id",
                )
                .unwrap()
                .query_row([&now], |r| r.get(0))
                .ok();
            let Some(id) = id else {
                if grouped {
                    c.execute_batch("COMMIT").unwrap();
                }
                break 'run;
            };
            audit_row(&id, "dispatched", "queued", "assigned", &now);
            for (status, event, from) in [
                ("running", "started", "assigned"),
                ("finished", "completed", "running"),
            ] {
                c.prepare_cached("UPDATE jobs SET status = ?2, updated_at = ?3 WHERE id = ?1")
                    .unwrap()
                    .execute(rusqlite::params![id, status, now])
                    .unwrap();
                audit_row(&id, event, from, status, &now);
            }
            done += 1;
        }
        if grouped {
            c.execute_batch("COMMIT").unwrap();
        }
    }
    done as f64 / t.elapsed().as_secs_f64()
}

/// `n` queued project jobs, as one discovery leaves them.
pub fn fill_queue(db: &Path, n: u64) {
    fill(db, n, 0)
}

/// One depth: a fresh agent and queue, 1 then 8 crawlers, then the bare loop.
pub fn depth(label: &str, n: u64, paused: u64, secs: f64) -> (Depth, Agent) {
    let mut agent = bench_agent();
    start(&mut agent);
    assert!(agent
        .credentials_add("s", "bench-token", &["--no-discover"])
        .status
        .success());
    // Written with the agent stopped: a 1M-row transaction holds the write lock for
    // longer than the agent's busy_timeout.
    agent.stop();
    let t = Instant::now();
    fill(&agent.db_path(), n, paused);
    let filled = t.elapsed();
    start(&mut agent);
    // Each run takes at most a quarter of the queue, so the depth stays near n.
    let budget = (n / 4).max(1);
    let (one, cycles_1) = run(&agent, 1, secs, budget as i64);
    let (_, cycles_8) = run(&agent, 8, secs, budget as i64);
    agent.stop();
    let bare = bare_cycles(&agent.db_path(), secs.min(2.0), budget, 1, false);
    let grouped = bare_cycles(&agent.db_path(), secs.min(2.0), budget, 8, true);
    start(&mut agent);
    let d = Depth {
        label: label.into(),
        claim_p50: percentile(&one, 0.5),
        claim_p99: percentile(&one, 0.99),
        cycles_1,
        cycles_8,
        bare,
        grouped,
    };
    println!(
        "scaling {label}: claim p50 {} p99 {} (1 conn); cycles/s 1 conn {:.0}, 8 conns {:.0}; bare loop {:.0}/s; 8 conns / bare = {:.2}; grouped limit {:.0}/s; 8 conns / grouped = {:.2} (queue written in {})",
        ms(d.claim_p50),
        ms(d.claim_p99),
        d.cycles_1,
        d.cycles_8,
        d.bare,
        d.cycles_8 / d.bare,
        d.grouped,
        d.cycles_8 / d.grouped,
        ms(filled)
    );
    (d, agent)
}

/// A named pass to time.
type Pass<'a> = (&'static str, Box<dyn Fn() + 'a>);

fn median_of_5(mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[2]
}

/// Phase 7: what the operator and the monitor run, on the agent's 1M-job database.
pub fn operator(agent: &mut Agent) {
    let jobs = agent.count("SELECT count(*) FROM jobs");
    for args in [
        &["status", "--json"][..],
        &["jobs", "list", "--limit", "50"],
        &["jobs", "list", "--status", "queued", "--limit", "50"],
        &["metrics"],
    ] {
        let t = median_of_5(|| {
            let out = agent.cli(args);
            assert!(out.status.success(), "{args:?}");
        });
        println!(
            "operator at {jobs} jobs: `{}` median {}",
            args.join(" "),
            ms(t)
        );
    }
    agent.stop();
    let config = Config::default();
    let c =
        store::open_read_write(&agent.db_path(), &store::Settings::from(&config.storage)).unwrap();
    let policy = crawler_agent::policy::Policy::from(&config);
    let now = Timestamp::now();
    use crawler_agent::store::{connections, jobs as core};
    let passes: [Pass<'_>; 5] = [
        (
            "monitor: stale connections",
            Box::new(|| drop(connections::mark_stale(&c, now).unwrap())),
        ),
        (
            "monitor: unstarted jobs of closed connections",
            Box::new(|| {
                let loss = core::Loss::ConnectionClosed {
                    dispatched_before: now,
                };
                core::lose(&c, loss, &policy, now).unwrap();
            }),
        ),
        (
            "monitor: stale discoveries",
            Box::new(|| {
                core::requeue_stale_discoveries(&c, &policy, now).unwrap();
            }),
        ),
        (
            "retention",
            Box::new(|| {
                retention::prune(&c, &config.retention, now).unwrap();
            }),
        ),
        (
            "read: job counts per status",
            Box::new(|| drop(read::jobs::counts(&c).unwrap())),
        ),
    ];
    for (name, pass) in &passes {
        println!(
            "operator at {jobs} jobs: {name} median {}",
            ms(median_of_5(pass))
        );
    }
}
