//! Soak: crawler-like clients connect, work and disconnect over and over while an
//! operator reads with sqlite3 and prunes; descriptors, threads and memory stay flat,
//! the WAL stays bounded and retention keeps the file from growing.
//!
//! CI runs a short version. The long one:
//!     SOAK_CYCLES=50000 cargo test --release --test soak -- --nocapture
//!
//! Linux only: descriptors, threads and memory are read from `/proc`.
#![cfg(target_os = "linux")]

mod common;
use common::{Agent, Crawler};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn cycles() -> usize {
    std::env::var("SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

/// One crawler life: connect, ask, work, report, disconnect.
fn crawler_life(agent_socket: &std::path::Path, n: usize) {
    let mut crawler = Crawler::connect(agent_socket);
    crawler.chunked = n % 3 == 0;
    crawler.send_type(
        "heartbeat",
        None,
        json!({"uptime": n as f64, "systemStatus": "idle"}),
    );
    let jobs = crawler.request_jobs();
    if let Some(job) = jobs.first() {
        let id = job["id"].as_str().unwrap();
        crawler.send_type("job_started", Some(id), json!({}));
        for i in 0..5 {
            crawler.send_type(
                "job_progress",
                Some(id),
                json!({"stage": "fetching", "processed": i, "message": "m".repeat(100)}),
            );
        }
        if n % 2 == 0 {
            crawler.send_type(
                "job_completed",
                Some(id),
                json!({"success": true, "finalCounts": {"n": 5}}),
            );
        } else {
            crawler.send_type(
                "job_failed",
                Some(id),
                json!({"error": "transient", "isRecoverable": true}),
            );
        }
    }
}

#[test]
fn resources_stay_flat_over_many_connections() {
    let agent = Agent::start(&[
        ("CRAWLER_AGENT_RETRY_BACKOFF_BASE", "0s"),
        ("CRAWLER_AGENT_RETRY_MAX_ATTEMPTS", "1000000"),
        ("CRAWLER_AGENT_RETENTION_PROGRESS_MAX_PER_JOB", "10"),
        ("CRAWLER_AGENT_DISCOVERY_FOLLOW_UP_TYPES", ""),
    ]);
    agent.add_credential("gl", "tok");
    let conn = rusqlite::Connection::open(agent.db_path()).unwrap();
    conn.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)
         INSERT INTO jobs (id, credential_id, entity_type, entity_id, max_attempts, created_at, updated_at)
         SELECT printf('J%04d', i), 1, 'project', i, 1000000, '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z' FROM n;",
    )
    .unwrap();
    drop(conn);

    // An operator keeps querying the views meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (path, stop) = (agent.db_path(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let out = std::process::Command::new("sqlite3")
                    .arg("-readonly")
                    .arg(&path)
                    .arg("SELECT count(*) FROM queue_summary; SELECT count(*) FROM running_jobs; SELECT count(*) FROM live_connections;")
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                reads += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            reads
        })
    };

    let total = cycles();
    let half = total / 2;
    let socket = agent.socket();
    let run = |from: usize, to: usize| {
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let socket = socket.clone();
                std::thread::spawn(move || {
                    for n in (from..to).filter(|n| n % 2 == w) {
                        crawler_life(&socket, n);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
    };
    let wal_path = agent.dir.path().join("agent.db-wal");
    let wal = || std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0);

    // Warm-up, then the baseline.
    run(0, 50);
    let settled = || {
        // Every crawler connection recorded closed and the writer's queue empty.
        agent.wait_for(
            "SELECT count(*) FROM connections WHERE closed_at IS NULL",
            0,
        );
    };
    settled();
    let (fds0, threads0, rss0) = (
        agent.open_fds(),
        agent.proc_status("Threads"),
        agent.proc_status("VmRSS"),
    );
    run(50, half);
    agent.ok(&["db", "prune"]);
    let size_mid = std::fs::metadata(agent.db_path()).unwrap().len();
    run(half, total);
    agent.ok(&["db", "prune"]);
    let size_end = std::fs::metadata(agent.db_path()).unwrap().len();
    settled();
    let (fds1, threads1, rss1) = (
        agent.open_fds(),
        agent.proc_status("Threads"),
        agent.proc_status("VmRSS"),
    );
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();

    println!(
        "soak: {total} connections, {reads} sqlite3 reads; fds {fds0} -> {fds1}, threads {threads0} -> {threads1}, \
         RSS {rss0} kB -> {rss1} kB, WAL {} KiB, file {size_mid} -> {size_end} bytes",
        wal() / 1024
    );
    assert_eq!(
        agent.count("SELECT count(*) FROM connections WHERE closed_at IS NULL"),
        0
    );
    assert!(fds1 <= fds0 + 2, "descriptors leak: {fds0} -> {fds1}");
    assert!(
        threads1 <= threads0,
        "threads leak: {threads0} -> {threads1}"
    );
    assert!(
        rss1 <= rss0 + 16 * 1024,
        "memory grows: {rss0} kB -> {rss1} kB"
    );
    assert!(wal() <= 64 << 20);
    assert!(
        agent.count(
            "SELECT count(*) FROM progress_snapshots GROUP BY job_id ORDER BY 1 DESC LIMIT 1"
        ) <= 10
    );
    assert!(
        size_end <= size_mid + size_mid / 2,
        "retention keeps the file stable: {size_mid} -> {size_end}"
    );
}
