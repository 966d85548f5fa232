//! Crash safety: SIGKILL at random points of a heavy session, twenty times over.

mod common;
use common::{Agent, Crawler};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the crawler side saw in one round.
#[derive(Default)]
struct Seen {
    /// Job ids received in a job_response, with how often.
    dispatched: HashMap<String, u32>,
    /// Progress messages fully written to the socket.
    progress_sent: u64,
}

fn heavy_session(socket: std::path::PathBuf, stop: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::default();
    let Ok(stream) = std::os::unix::net::UnixStream::connect(&socket) else {
        return seen;
    };
    drop(stream);
    let mut crawler = Crawler::connect(&socket);
    crawler.chunked = false;
    let mut rng = fastrand::Rng::with_seed(7);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        while !stop.load(Ordering::Relaxed) {
            let jobs = crawler.request_jobs();
            let Some(job) = jobs.first() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let id = job["id"].as_str().unwrap().to_string();
            *seen.dispatched.entry(id.clone()).or_default() += 1;
            crawler.send_type(
                "job_started",
                Some(&id),
                json!({"entityType": "project", "entityId": job["entityId"]}),
            );
            for i in 0..rng.usize(20..200) {
                crawler.send_type(
                    "job_progress",
                    Some(&id),
                    json!({"stage": "fetching", "processed": i, "message": "x".repeat(200)}),
                );
                seen.progress_sent += 1;
            }
            if rng.bool() {
                crawler.send_type(
                    "job_completed",
                    Some(&id),
                    json!({"success": true, "finalCounts": {"n": 1}}),
                );
            } else {
                crawler.send_type(
                    "job_failed",
                    Some(&id),
                    json!({"error": "flaky", "isRecoverable": true}),
                );
            }
        }
    }));
    let _ = result; // the connection dies with the agent
    seen
}

#[test]
fn sigkill_at_random_points_never_corrupts_or_loses_a_claim() {
    let mut agent = Agent::new();
    agent.env = vec![
        ("CRAWLER_AGENT_DISPATCH_ORPHAN_AFTER".into(), "1s".into()),
        ("CRAWLER_AGENT_RETRY_BACKOFF_BASE".into(), "0s".into()),
        ("CRAWLER_AGENT_RETRY_MAX_ATTEMPTS".into(), "1000".into()),
        ("CRAWLER_AGENT_DISCOVERY_FOLLOW_UP_TYPES".into(), "".into()),
    ];
    agent.add_credential("gl", "tok");
    let conn = rusqlite::Connection::open(agent.db_path()).unwrap();
    conn.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
         INSERT INTO jobs (id, credential_id, entity_type, entity_id, max_attempts, created_at, updated_at)
         SELECT printf('J%04d', i), 1, 'project', i, 1000, '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z' FROM n;",
    )
    .unwrap();
    drop(conn);
    // The session threads die with each agent; keep their panics out of the output.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() != Some("crawler-session") {
            default_hook(info);
        }
    }));
    let mut rng = fastrand::Rng::with_seed(20);
    let mut all_dispatched: HashMap<String, u32> = HashMap::new();
    let mut largest_loss = 0i64;
    let mut stored_before = 0i64;
    for round in 0..20 {
        agent.spawn();
        let stop = Arc::new(AtomicBool::new(false));
        let session = {
            let (socket, stop) = (agent.socket(), stop.clone());
            std::thread::Builder::new()
                .name("crawler-session".into())
                .spawn(move || heavy_session(socket, stop))
                .unwrap()
        };
        std::thread::sleep(Duration::from_millis(rng.u64(150..600)));
        agent.kill();
        stop.store(true, Ordering::Relaxed);
        let seen = session.join().unwrap();
        for (id, n) in seen.dispatched {
            *all_dispatched.entry(id).or_default() += n;
        }

        let db = rusqlite::Connection::open(agent.db_path()).unwrap();
        let integrity: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok", "round {round}");
        let fk: i64 = db
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(fk, 0, "round {round}");
        let impossible: i64 = db
            .query_row(
                "SELECT count(*) FROM jobs WHERE
                   (status IN ('assigned', 'running') AND (dispatched_at IS NULL OR attempts < 1 OR connection_id IS NULL))
                   OR (status = 'running' AND started_at IS NULL)
                   OR (status IN ('finished', 'failed', 'cancelled') AND finished_at IS NULL)
                   OR attempts > max_attempts
                   OR (status = 'queued' AND attempts > 0 AND last_error IS NULL)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(impossible, 0, "round {round}: jobs in impossible states");
        for (id, n) in &all_dispatched {
            let claims: u32 = db
                .query_row(
                    "SELECT count(*) FROM job_events WHERE job_id = ?1 AND event = 'dispatched'",
                    [id],
                    |r| r.get(0),
                )
                .unwrap();
            assert!(
                claims >= *n,
                "round {round}: job {id} was received {n} times but {claims} claims are recorded"
            );
        }
        let stored: i64 = db
            .query_row("SELECT count(*) FROM progress_snapshots", [], |r| r.get(0))
            .unwrap();
        let loss = seen.progress_sent as i64 - (stored - stored_before);
        // Nothing is stored twice or invented, and what is lost is at most what can be
        // in flight at a kill: the socket's buffers, the writer's bulk queue (256
        // operations of up to 64 reports) and one batch (1,024 rows).
        let socket_buffers = 2 * 208 * 1024 / 250;
        let in_flight = socket_buffers + 256 * 64 + 1024;
        assert!(
            (0..=in_flight).contains(&loss),
            "round {round}: {loss} progress messages lost (bound {in_flight})"
        );
        largest_loss = largest_loss.max(loss);
        stored_before = stored;
    }
    println!(
        "20 SIGKILLs: {} jobs received by the crawler, all recorded as claimed; largest loss: {largest_loss} progress messages written to the socket but not yet committed",
        all_dispatched.len()
    );
    assert!(!all_dispatched.is_empty());
}
