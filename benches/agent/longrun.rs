//! Phase 8 of the benchmark: the long run. Crawler-like clients connect, heartbeat,
//! take a job, report it started and completed, and disconnect, `BENCH_CYCLES` times
//! (default 100,000) over 4 threads, on a queue that holds them all. The cycle rate of
//! the last 10 % is printed beside that of the first 10 %, with the agent's RSS and
//! open descriptors sampled along the way: with `connections` growing by one row per
//! cycle, nothing may slow down or pile up.

use super::common::Agent;
use super::{bench_agent, finish, start};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

fn total() -> u64 {
    std::env::var("BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// One connect → heartbeat → work → disconnect cycle.
fn cycle(agent: &Agent, uptime: f64) {
    let mut crawler = agent.connect();
    crawler.chunked = false;
    let hb = json!({"activeJobs": 0, "totalProcessed": 0, "systemStatus": "idle",
                    "uptime": uptime, "memoryUsage": {"rss": 1}});
    crawler.send_type("heartbeat", None, hb);
    let jobs = crawler.request_jobs();
    if let Some(id) = jobs.first().and_then(|j| j["id"].as_str()) {
        let data = json!({"entityType": "project", "entityId": jobs[0]["entityId"]});
        crawler.send_type("job_started", Some(id), data);
        crawler.send_type(
            "job_completed",
            Some(id),
            json!({"success": true, "finalCounts": {}}),
        );
    }
}

/// Returns (first-10 % rate, last-10 % rate) in cycles per second.
pub fn run() -> (f64, f64) {
    let n = total();
    let mut agent = bench_agent();
    start(&mut agent);
    assert!(agent
        .credentials_add("l", "bench-token", &["--no-discover"])
        .status
        .success());
    agent.stop();
    super::scaling::fill_queue(&agent.db_path(), n + 1000);
    start(&mut agent);
    let done = AtomicU64::new(0);
    let marks = Mutex::new(Vec::new());
    let begun = Instant::now();
    let tenth = (n / 10).max(1);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = done.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                // Uptime grows with the run, so no heartbeat looks like a restart.
                cycle(&agent, 100.0 + begun.elapsed().as_secs_f64());
                if (i + 1) % tenth == 0 {
                    let sample = (
                        i + 1,
                        begun.elapsed().as_secs_f64(),
                        agent.proc_status("VmRSS"),
                        agent.open_fds(),
                    );
                    marks.lock().unwrap().push(sample);
                }
            });
        }
    });
    let mut marks = marks.into_inner().unwrap();
    marks.sort_by_key(|m| m.0);
    let at = |k: usize| marks.get(k).map_or(0.0, |m| m.1);
    let first = tenth as f64 / at(0).max(1e-9);
    let last_span = at(marks.len().saturating_sub(1)) - at(marks.len().saturating_sub(2));
    let last = tenth as f64 / last_span.max(1e-9);
    for (cycles, t, rss, fds) in &marks {
        println!(
            "long run: {cycles} cycles at {t:.1} s; RSS {:.1} MiB; {fds} descriptors",
            *rss as f64 / 1024.0
        );
    }
    let connections = agent.count("SELECT count(*) FROM connections");
    println!(
        "long run: {n} connect/heartbeat/work/disconnect cycles in {:.1} s; first 10 % {first:.0} cycles/s, last 10 % {last:.0} cycles/s (last / first = {:.2}); {connections} connection rows",
        begun.elapsed().as_secs_f64(),
        last / first
    );
    finish(agent);
    (first, last)
}
