//! `cargo bench --bench agent`: the agent against this machine's own limits, in one run.
//!
//! Phases (each prints its figures; the last line is a one-line summary):
//! 1. idle: job_request latency and RSS with nothing else going on;
//! 2. load: K crawler-like connections stream job_progress (about 400 bytes, with
//!    resumeState and itemCounts) as fast as the agent reads, with heartbeats, while
//!    another connection sends a job_request every 10 ms; durable ingest is confirmed
//!    by counting rows afterwards;
//! 3. limits: (a) the socket limit — a minimal reader that only splits the same byte
//!    stream into objects; (b) the SQLite limit — a plain loop inserting the same rows
//!    into the same schema with the same pragmas in batched transactions;
//! 4. a jobs_discovered of 100,000 entries (`agent/discovery.rs`): time to commit,
//!    peak RSS, beside (c) the agent's batch write without the agent and (c′) the
//!    floor: the same rows as plain inserts with only the keys they need;
//! 5. start-up on a database with 1,000,000 progress rows, and `status --json` there;
//! 6. scaling (`agent/scaling.rs`): claim p50/p99 and full job cycles per second on 1
//!    and 8 connections at queue depths 1k, 10k, 100k, 1M and 1M with a paused type
//!    holding 90 % at the head, beside a bare SQLite loop doing the same writes, and
//!    the grouped limit: those writes and their audit rows, eight cycles per commit;
//! 7. what the operator and the monitor run, on the 1M-job database;
//! 8. the long run (`agent/longrun.rs`): BENCH_CYCLES (default 100,000) connect →
//!    heartbeat → work → disconnect cycles; first vs last 10 %, RSS, descriptors.
//!
//! 9. token answers: how long the crawler waits for a `token_refresh_response` when the
//!    token helper answers at once, and when it hangs at the longest
//!    `tokens.command_timeout` allowed (10 s; `tokens.answer_within` is 12 s, the
//!    crawler waits 15 s).
//!
//! BENCH_ONLY=classic (phases 1-5), discovery (4), scaling (6 and 7), longrun (8) or
//! tokens (9) runs only those; BENCH_DEPTHS=1k,1M (labels of phase 6) runs only those
//! depths.
//!
//! During the load, (d) the scheduling limit: a bare relay in this process with the
//! agent's hand-offs and none of its work (a socket thread passes each request to a
//! second thread and writes back its answer), polled like the agent. Its latency is
//! what the four thread wake-ups of a claim cost on this machine under that load.
//!
//! Settings: BENCH_SECONDS (default 8) per timed phase, BENCH_CLIENTS (default 8).
//!
//! The agent, the crawler-like client and the database reads are the tests' own
//! harness (`tests/common`, included below by `#[path]`); what is here is only the
//! load, the bare limits and the figures. BENCH_LOG=LEVEL sets the agent's log level
//! and prints each agent's log when it stops.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "agent/discovery.rs"]
mod discovery;
#[path = "agent/longrun.rs"]
mod longrun;
#[path = "agent/scaling.rs"]
mod scaling;

use common::{wait_until, Agent, Crawler};
use crawler_agent::config::Config;
use crawler_agent::protocol::frame::{Frame, FrameDecoder};
use crawler_agent::store;
use serde_json::json;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn seconds() -> u64 {
    std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

fn clients() -> usize {
    std::env::var("BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

/// The agent as the benchmark runs it, not started yet: only warnings logged (or
/// BENCH_LOG's level), follow-up jobs for groups and projects.
fn bench_agent() -> Agent {
    let mut agent = Agent::new();
    agent.env = vec![
        (
            "CRAWLER_AGENT_LOG_LEVEL".into(),
            std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        ),
        (
            "CRAWLER_AGENT_DISCOVERY_FOLLOW_UP_TYPES".into(),
            "group,project".into(),
        ),
    ];
    agent
}

/// Starts `agent`; returns the time from exec to its first accepted connection.
fn start(agent: &mut Agent) -> Duration {
    agent.spawn_polling(Duration::from_micros(200))
}

/// Stops `agent` with SIGTERM; with BENCH_LOG set, prints what it logged.
fn finish(mut agent: Agent) {
    agent.stop();
    if std::env::var_os("BENCH_LOG").is_some() {
        eprint!("{}", agent.log());
    }
}

/// Sends a `job_request` and returns the id of the first job it is given.
fn claim_job(crawler: &mut Crawler) -> String {
    crawler
        .request_jobs()
        .first()
        .and_then(|job| job["id"].as_str())
        .expect("a job to claim")
        .to_string()
}

/// 512 realistic progress messages for one job, back to back.
fn progress_stream(job: &str) -> (Vec<u8>, u64) {
    let mut out = Vec::new();
    for i in 0..512u64 {
        out.extend(Crawler::encode(
            "job_progress",
            Some(job),
            json!({"stage": "fetching", "entityType": "project", "processed": i * 100, "total": 51200,
                   "message": format!("Fetched page {i} of merge requests for acme/platform/api"),
                   "itemCounts": {"mergeRequests": i * 100, "issues": i * 40, "commits": i * 250},
                   "currentPage": i, "processingRate": 123.4, "estimatedTimeRemaining": 42,
                   "resumeState": {"lastEntityId": format!("{}", 90000 + i), "currentPage": i, "entityType": "merge_request"}}),
        ));
    }
    (out, 512)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Sends job_request every `every` until `stop`; returns the latencies.
fn poll_latency(
    socket: &Path,
    every: Duration,
    stop: &AtomicBool,
    count: Option<usize>,
) -> Vec<Duration> {
    let mut crawler = Crawler::connect(socket);
    crawler.chunked = false;
    let request = Crawler::encode("job_request", None, json!({}));
    let mut out = Vec::new();
    // The first request of a connection is special (spec §5.2); measure the later ones.
    crawler.send_raw(&request);
    crawler.skip_reply();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) && count.is_none_or(|c| out.len() < c) {
        let t = Instant::now();
        crawler.send_raw(&request);
        crawler.skip_reply();
        out.push(t.elapsed());
        next += every;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    out.sort();
    out
}

/// Limit (d): the agent's hand-offs with no work in them. A socket thread reads each
/// request and passes it to a second thread (the agent's writer), which hands an
/// answer back; the socket thread writes it: four thread wake-ups, like a claim.
fn relay_server(path: &Path) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let (to_writer, requests) = std::sync::mpsc::channel::<()>();
        let (to_socket, answers) = std::sync::mpsc::channel::<&'static [u8]>();
        let writer = std::thread::spawn(move || {
            while requests.recv().is_ok() {
                let reply: &[u8] = b"{\"type\":\"job_response\",\"data\":{\"jobs\":[]}}\n";
                if to_socket.send(reply).is_err() {
                    break;
                }
            }
        });
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            let Some(reply) = (n > 0 && to_writer.send(()).is_ok())
                .then(|| answers.recv().ok())
                .flatten()
            else {
                break;
            };
            if s.write_all(reply).is_err() {
                break;
            }
        }
        drop(to_writer);
        writer.join().unwrap();
    })
}

/// K writers streaming `streams[k]` into `socket` for `secs`; returns messages sent.
fn stream_load(socket: &Path, streams: &[(Vec<u8>, u64)], secs: u64, heartbeat: bool) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = streams
        .iter()
        .cloned()
        .map(|(bytes, n)| {
            let (socket, stop, sent) = (socket.to_path_buf(), stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut crawler = Crawler::connect(&socket);
                crawler.chunked = false;
                let hb = Crawler::encode("heartbeat", None, json!({"activeJobs": 0, "totalProcessed": 0, "systemStatus": "idle", "uptime": 1.0}));
                let mut last_hb = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if heartbeat && last_hb.elapsed() >= Duration::from_secs(5) {
                        crawler.send_raw(&hb);
                        last_hb = Instant::now();
                    }
                    crawler.send_raw(&bytes);
                    sent.fetch_add(n, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    sent.load(Ordering::Relaxed)
}

/// (a) The socket limit: accept K connections and only split their bytes into objects.
fn socket_limit(dir: &Path, streams: &[(Vec<u8>, u64)], secs: u64) -> f64 {
    let path = dir.join("limit.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let objects = Arc::new(AtomicU64::new(0));
    let k = streams.len();
    let readers = {
        let objects = objects.clone();
        std::thread::spawn(move || {
            let mut handles = Vec::new();
            for _ in 0..k {
                let (mut s, _) = listener.accept().unwrap();
                let objects = objects.clone();
                handles.push(std::thread::spawn(move || {
                    let mut d = FrameDecoder::new(64 << 20);
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = s.read(&mut buf).unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        d.push(&buf[..n]);
                        let mut found = 0;
                        while let Some(f) = d.next_frame() {
                            if let Frame::Object(_) = f {
                                found += 1;
                            }
                        }
                        objects.fetch_add(found, Ordering::Relaxed);
                    }
                }));
            }
            for h in handles {
                h.join().unwrap();
            }
        })
    };
    let started = Instant::now();
    stream_load(&path, streams, secs, false);
    let elapsed = started.elapsed();
    readers.join().unwrap();
    objects.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

/// A fresh database for a bare limit, with the agent's schema and pragmas: credential
/// 1 (`https://x`) and its running job `job_id` of `entity_type`.
fn bare_db(db: &Path, job_id: &str, entity_type: &str) -> rusqlite::Connection {
    let settings = store::Settings::from(&Config::default().storage);
    let c = store::open_read_write(db, &settings).unwrap();
    c.execute_batch(
        "INSERT INTO credentials (id, name, gitlab_url, access_token, token_source, created_at, updated_at)
             VALUES (1, 'b', 'https://x', 't', 'env', '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z');",
    )
    .unwrap();
    c.execute(
        "INSERT INTO jobs (id, credential_id, entity_type, entity_id, max_attempts, status, created_at, updated_at)
             VALUES (?1, 1, ?2, '1', 3, 'running', '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z')",
        [job_id, entity_type],
    )
    .unwrap();
    c
}

/// (b) The SQLite limit: the same rows into the same schema, batched transactions.
/// Leaves a database with at least `min_rows` progress rows at `db`.
fn sqlite_limit(db: &Path, secs: u64, min_rows: u64) -> f64 {
    let mut c = bare_db(db, "JOB1", "project");
    let started = Instant::now();
    let mut rows = 0u64;
    // Timed until `secs` have passed and the file holds `min_rows` (for phase 5).
    while started.elapsed() < Duration::from_secs(secs) || rows < min_rows {
        let tx = c.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO progress_snapshots (job_id, received_at, sent_at, connection_id, stage,
                         entity_type, processed, total, message, item_counts, current_page, processing_rate,
                         estimated_time_remaining, resume_state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )
                .unwrap();
            for i in 0..2048u64 {
                let n = rows + i;
                stmt.execute(rusqlite::params![
                    "JOB1",
                    "2025-07-12T10:20:00.001Z",
                    "2025-07-12T10:20:00.001Z",
                    1,
                    "fetching",
                    "project",
                    (n * 100) as i64,
                    51200,
                    format!("Fetched page {n} of merge requests for acme/platform/api"),
                    format!(
                        r#"{{"mergeRequests":{},"issues":{},"commits":{}}}"#,
                        n * 100,
                        n * 40,
                        n * 250
                    ),
                    n as i64,
                    123.4,
                    42.0,
                    format!(
                        r#"{{"lastEntityId":"{}","currentPage":{n},"entityType":"merge_request"}}"#,
                        90000 + n
                    ),
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
        rows += 2048;
    }
    let elapsed = started.elapsed();
    let _ = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    rows as f64 / elapsed.as_secs_f64()
}

/// `db backup` of a big database while the agent serves: how long a full and a
/// secret-free copy take, and what they do to job_request latency (measured in the
/// same run, before and during).
fn backup_while_serving(agent: &Agent) -> String {
    let never = AtomicBool::new(false);
    let before = poll_latency(&agent.socket(), Duration::from_millis(5), &never, Some(400));
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (socket, stop) = (agent.socket(), stop.clone());
        std::thread::spawn(move || poll_latency(&socket, Duration::from_millis(5), &stop, None))
    };
    let copy = agent.dir.path().join("backup.db");
    let mut took = Vec::new();
    for args in [&[][..], &["--without-secrets"][..]] {
        let t = Instant::now();
        let mut cli = vec!["db", "backup"];
        cli.extend_from_slice(args);
        cli.push(copy.to_str().expect("utf-8 temp path"));
        let out = agent.cli(&cli);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        took.push(t.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let during = poller.join().unwrap();
    let size = std::fs::metadata(&copy).map_or(0, |m| m.len());
    format!(
        "backup: full copy in {}, without secrets (with VACUUM) in {} ({:.1} MiB); job_request p99 before {} / during {} = {:.1}x ({} requests during)",
        ms(took[0]),
        ms(took[1]),
        size as f64 / 1048576.0,
        ms(percentile(&before, 0.99)),
        ms(percentile(&during, 0.99)),
        percentile(&during, 0.99).as_secs_f64() / percentile(&before, 0.99).as_secs_f64(),
        during.len()
    )
}

fn main() {
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "classic" {
        phases_1_to_5();
    }
    if only == "discovery" {
        let dir = tempfile::tempdir().unwrap();
        discovery::run(dir.path());
    }
    if only.is_empty() || only == "scaling" {
        phases_6_and_7();
    }
    if only.is_empty() || only == "longrun" {
        longrun::run();
    }
    if only.is_empty() || only == "tokens" {
        token_answers();
    }
}

/// Phase 9: the time from a `token_refresh_request` to its answer, with a helper that
/// answers at once (median of 20) and with one that hangs (once), with
/// `tokens.command_timeout` at its maximum (10 s) and the default `answer_within`.
fn token_answers() {
    let mut agent = bench_agent();
    agent
        .env
        .push(("CRAWLER_AGENT_TOKENS_COMMAND_TIMEOUT".into(), "10s".into()));
    start(&mut agent);
    let mode = agent.dir.path().join("mode");
    std::fs::write(&mode, "fast").unwrap();
    let helper = agent.dir.path().join("helper.sh");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$(cat {})\" = hang ] && exec sleep 60\necho bench-token\n",
            mode.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    agent.ok(&[
        "credentials",
        "add",
        "t",
        "--url",
        "https://g.example",
        "--no-discover",
        "--token-command",
        helper.to_str().unwrap(),
    ]);
    agent.ok(&[
        "jobs",
        "add",
        "--credential",
        "t",
        "--type",
        "project",
        "--entity-id",
        "1",
    ]);
    let mut crawler = agent.connect();
    crawler.chunked = false;
    let job = claim_job(&mut crawler);
    let db = rusqlite::Connection::open(agent.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut fast = Vec::new();
    for _ in 0..20 {
        // Each ask runs the helper (the token has not changed since dispatch).
        db.execute(
            "UPDATE credentials SET updated_at = '2000-01-01T00:00:00.000Z'",
            [],
        )
        .unwrap();
        let asked = Instant::now();
        crawler.send_type("token_refresh_request", Some(&job), json!({}));
        crawler.recv();
        fast.push(asked.elapsed());
    }
    fast.sort();
    std::fs::write(&mode, "hang").unwrap();
    db.execute(
        "UPDATE credentials SET updated_at = '2000-01-01T00:00:00.000Z'",
        [],
    )
    .unwrap();
    let asked = Instant::now();
    crawler.send_type("token_refresh_request", Some(&job), json!({}));
    crawler
        .stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let reply = crawler.recv();
    let hung = asked.elapsed();
    println!(
        "token answers: helper at once p50 {} max {}; helper hanging {} (refreshSuccessful {}), \
         {:.2} of the crawler's 15 s",
        ms(percentile(&fast, 0.5)),
        ms(*fast.last().unwrap()),
        ms(hung),
        reply["data"]["refreshSuccessful"],
        hung.as_secs_f64() / 15.0
    );
    finish(agent);
}

/// Phase 6 at each depth, then phase 7 on the 1M-job database.
fn phases_6_and_7() {
    let secs = (seconds() as f64 / 2.0).max(1.0);
    // BENCH_DEPTHS=10k,1M runs only those depths (by label), e.g. under a profiler.
    let wanted = std::env::var("BENCH_DEPTHS").ok();
    let wanted: Option<Vec<&str>> = wanted.as_deref().map(|w| w.split(',').collect());
    let mut depths = Vec::new();
    for (label, n, paused) in [
        ("1k", 1_000, 0),
        ("10k", 10_000, 0),
        ("100k", 100_000, 0),
        ("1M, 90 % paused at the head", 100_000, 900_000),
        ("1M", 1_000_000, 0),
    ] {
        if wanted.as_ref().is_some_and(|w| !w.contains(&label)) {
            continue;
        }
        let (d, agent) = scaling::depth(label, n, paused, secs);
        depths.push(d);
        if n == 1_000_000 {
            let mut agent = agent;
            scaling::operator(&mut agent);
            finish(agent);
        } else {
            finish(agent);
        }
    }
    let Some(first) = depths.first() else { return };
    let base = first.claim_p50.as_secs_f64();
    for d in &depths {
        println!(
            "scaling summary {}: claim p50 {} = {:.2}x of {}; 8 conns {:.0} cycles/s = {:.2} of the bare loop, {:.2} of the grouped limit",
            d.label,
            ms(d.claim_p50),
            d.claim_p50.as_secs_f64() / base,
            first.label,
            d.cycles_8,
            d.cycles_8 / d.bare,
            d.cycles_8 / d.grouped
        );
    }
}

fn phases_1_to_5() {
    let dir = tempfile::tempdir().unwrap();
    let secs = seconds();
    let k = clients();
    println!(
        "crawler-agent benchmark: {k} clients, {secs} s per timed phase, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Phase 1: idle.
    let mut agent = bench_agent();
    start(&mut agent);
    let db = agent.db_path();
    assert!(agent
        .credentials_add("b", "bench-token", &["--no-discover"])
        .status
        .success());
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss = agent.proc_status("VmRSS");
    let never = AtomicBool::new(false);
    // An empty queue: every request still runs the whole dispatch path.
    let idle = poll_latency(
        &agent.socket(),
        Duration::from_millis(2),
        &never,
        Some(2000),
    );
    for j in 0..k {
        let out = agent.cli(&[
            "jobs",
            "add",
            "--credential",
            "b",
            "--type",
            "project",
            "--entity-id",
            &j.to_string(),
        ]);
        assert!(out.status.success());
    }
    println!(
        "idle: job_request p50 {} p99 {} p999 {}; RSS {:.1} MiB",
        ms(percentile(&idle, 0.5)),
        ms(percentile(&idle, 0.99)),
        ms(percentile(&idle, 0.999)),
        idle_rss as f64 / 1024.0
    );

    // Phase 2: load. Each client first claims its own job, like a crawler.
    let mut streams = Vec::new();
    for _ in 0..k {
        let mut crawler = agent.connect();
        crawler.chunked = false;
        let job = claim_job(&mut crawler);
        crawler.send_type("job_started", Some(&job), json!({}));
        std::mem::forget(crawler); // keep the claiming connection open: its job stays in flight
        streams.push(progress_stream(&job));
    }
    let before = agent.count("SELECT count(*) FROM progress_snapshots");
    let stop = Arc::new(AtomicBool::new(false));
    let wal_path = PathBuf::from(format!("{}-wal", db.display()));
    let wal_max = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (stop, wal_max, wal_path) = (stop.clone(), wal_max.clone(), wal_path.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let size = std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0);
                wal_max.fetch_max(size, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let poller = {
        let (socket, stop) = (agent.socket(), stop.clone());
        std::thread::spawn(move || poll_latency(&socket, Duration::from_millis(10), &stop, None))
    };
    let echo_path = dir.path().join("echo.sock");
    let echo = relay_server(&echo_path);
    let echo_poller = {
        let stop = stop.clone();
        std::thread::spawn(move || poll_latency(&echo_path, Duration::from_millis(10), &stop, None))
    };
    let started = Instant::now();
    let sent = stream_load(&agent.socket(), &streams, secs, true);
    let expected = before + sent as i64;
    let mut committed = 0;
    let limit = Duration::from_secs(secs * 20 + 60).saturating_sub(started.elapsed());
    let all_in = wait_until(limit, Duration::from_millis(5), || {
        committed = agent.count("SELECT count(*) FROM progress_snapshots");
        committed >= expected
    });
    assert!(all_in, "rows missing: {committed} of {expected}");
    let ingest_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let loaded = poller.join().unwrap();
    let echoed = echo_poller.join().unwrap();
    echo.join().unwrap();
    watcher.join().unwrap();
    let ingest = sent as f64 / ingest_time.as_secs_f64();
    let peak_rss = agent.proc_status("VmHWM");
    let wal = wal_max.load(Ordering::Relaxed);
    println!("load: {sent} job_progress messages committed in {:.2} s = {:.0} msg/s (all {sent} rows present)", ingest_time.as_secs_f64(), ingest);
    println!(
        "load: job_request p50 {} p99 {} p999 {} ({} requests)",
        ms(percentile(&loaded, 0.5)),
        ms(percentile(&loaded, 0.99)),
        ms(percentile(&loaded, 0.999)),
        loaded.len()
    );
    println!(
        "limit (d) scheduling: a bare relay with the same four hand-offs, meanwhile: p50 {} p99 {} p999 {}; agent p99 / bare p99 = {:.1}",
        ms(percentile(&echoed, 0.5)),
        ms(percentile(&echoed, 0.99)),
        ms(percentile(&echoed, 0.999)),
        percentile(&loaded, 0.99).as_secs_f64() / percentile(&echoed, 0.99).as_secs_f64()
    );
    println!(
        "load: RSS peak {:.1} MiB; WAL largest {:.1} MiB",
        peak_rss as f64 / 1024.0,
        wal as f64 / 1048576.0
    );
    finish(agent);

    // Phase 3: the machine's limits with the same bytes and rows.
    let socket_rate = socket_limit(dir.path(), &streams, secs);
    println!("limit (a) socket: a bare splitter reads {socket_rate:.0} objects/s");
    let mut big = bench_agent();
    let sqlite_rate = sqlite_limit(&big.db_path(), secs, 1_000_000);
    println!("limit (b) sqlite: a bare batched insert loop writes {sqlite_rate:.0} rows/s");
    let limit = socket_rate.min(sqlite_rate);
    println!("ratio: ingest / socket limit = {:.2}; ingest / sqlite limit = {:.2}; ingest / min(a, b) = {:.2}", ingest / socket_rate, ingest / sqlite_rate, ingest / limit);

    // Phase 4: one huge discovery.
    let discovered_in = discovery::run(dir.path());

    // Phase 5: start-up and status on a database with 1M progress rows.
    let rows = big.count("SELECT count(*) FROM progress_snapshots");
    let mut starts = Vec::new();
    for _ in 0..5 {
        starts.push(start(&mut big));
        big.stop();
    }
    starts.sort();
    start(&mut big);
    let mut status_times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let out = big.cli(&["status", "--json"]);
        status_times.push(t.elapsed());
        assert!(out.status.success());
    }
    status_times.sort();
    let backups = backup_while_serving(&big);
    finish(big);
    println!(
        "start-up: exec to accepting on {rows} progress rows: median {} (best {})",
        ms(starts[2]),
        ms(starts[0])
    );
    println!(
        "status --json on that database: median {}",
        ms(status_times[2])
    );
    println!("{backups}");

    println!(
        "summary: ingest {:.0} msg/s = {:.0}% of min(socket, sqlite); job_request p99 idle {} / loaded {} (bare relay {}); RSS idle {:.1} / peak {:.1} MiB; 100k discovery {}; start {}; status {}; WAL max {:.1} MiB",
        ingest,
        100.0 * ingest / limit,
        ms(percentile(&idle, 0.99)),
        ms(percentile(&loaded, 0.99)),
        ms(percentile(&echoed, 0.99)),
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        ms(discovered_in),
        ms(starts[2]),
        ms(status_times[2]),
        wal as f64 / 1048576.0
    );
}
