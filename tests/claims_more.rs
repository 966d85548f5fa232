//! More claims the docs make, each checked against the real agent: `socket.allowed_gids`
//! with peers of another uid and gid, the writer's backpressure and `storage.batch_max`
//! under a flood, and every figure `status` prints for a known state.

mod common;
use common::{Agent, Crawler};
use crawler_agent::config::Config;
use crawler_agent::store::Store;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A crawler-like peer run as `uid`/`gid` (perl, which Debian always has): sends one
/// `job_request` and prints the reply, `EOF` when the agent closed without a word, or
/// `ERR ...` when the read failed (a reset), `TIMEOUT` when nothing happened for 20 s.
/// A write to a peer already closed is not an error (the read says what happened).
fn peer_as(uid: u32, gid: u32, socket: &std::path::Path) -> String {
    use std::os::unix::process::CommandExt;
    const SCRIPT: &str = r#"
use IO::Socket::UNIX;
$SIG{ALRM} = sub { print "TIMEOUT"; exit 0 };
$SIG{PIPE} = 'IGNORE';
alarm 20;
my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or do { print "CONNECT $!"; exit 0 };
$s->syswrite('{"type":"job_request","timestamp":"2025-07-12T10:20:00.001Z","data":{}}');
my $all = '';
while (1) {
    my $buf = '';
    my $n = $s->sysread($buf, 65536);
    if (!defined $n) { print "ERR $!"; exit 0 }
    if ($n == 0) { print($all eq '' ? "EOF" : $all); exit 0 }
    $all .= $buf;
    if ($all =~ /\n/) { print $all; exit 0 }
}
"#;
    let out = std::process::Command::new("perl")
        .uid(uid)
        .gid(gid)
        .env_clear()
        .arg("-e")
        .arg(SCRIPT)
        .arg(socket)
        .output()
        .expect("run perl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn allowed_gids_serves_a_peer_of_an_allowed_group_and_closes_any_other() {
    if !nix::unistd::geteuid().is_root() {
        // Another gid (with another uid: the agent's own uid is always allowed) needs
        // root; CI runs as root.
        eprintln!("not root: peers of another uid and gid cannot be made here");
        return;
    }
    let (allowed, other, nobody) = (4242u32, 4343u32, 65534u32);
    let agent = Agent::start(&[
        ("CRAWLER_AGENT_SOCKET_ALLOWED_GIDS", &allowed.to_string()),
        ("CRAWLER_AGENT_SOCKET_MODE", "0666"),
    ]);
    agent.add_credential("gl", "glpat-ALLOWED-ONLY");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(agent.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();

    let refused = peer_as(nobody, other, &agent.socket());
    assert!(
        refused == "EOF" || refused == "ERR Connection reset by peer",
        "a peer of another group is closed unanswered, got {refused:?}"
    );
    agent.wait_for(
        &format!(
            "SELECT count(*) FROM errors WHERE category = 'security'
             AND context LIKE '%\"gid\":{other}%' AND message LIKE '%allowed_gids%'"
        ),
        1,
    );
    assert_eq!(
        agent.count("SELECT count(*) FROM job_events WHERE event = 'dispatched'"),
        0,
        "nothing was handed to the refused peer"
    );

    let served = peer_as(nobody, allowed, &agent.socket());
    let reply: Value = serde_json::from_str(served.trim())
        .unwrap_or_else(|e| panic!("{e}: {served:?}\n{}", agent.log()));
    assert_eq!(reply["type"], "job_response");
    assert_eq!(
        reply["data"]["jobs"][0]["accessToken"], "glpat-ALLOWED-ONLY",
        "the allowed peer is served"
    );
    agent.wait_for(
        &format!(
            "SELECT count(*) FROM connections WHERE peer_uid = {nobody} AND peer_gid = {allowed}"
        ),
        1,
    );
    assert_eq!(
        agent.count(&format!(
            "SELECT count(*) FROM connections WHERE peer_gid = {other}"
        )),
        0
    );
    assert_eq!(
        agent.count(&format!(
            "SELECT count(*) FROM errors WHERE context LIKE '%\"gid\":{allowed}%'"
        )),
        0
    );
}

/// `storage.writer_queue` and `storage.batch_max`, in the store itself: writers far
/// more than the queue holds wait (backpressure) instead of losing anything, and no
/// transaction takes more than `batch_max` single-row operations.
#[test]
fn the_writer_queue_holds_writers_back_without_loss_and_batches_stay_within_batch_max() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.storage.writer_queue = 2;
    config.storage.batch_max = 4;
    let store = Store::open(&dir.path().join("agent.db"), &config.storage).unwrap();
    store
        .writer
        .call_blocking(|c| c.execute_batch("CREATE TABLE flood (thread INTEGER, n INTEGER)"))
        .unwrap();
    let stats = store.writer.stats.clone();
    let ops_before = stats.operations.load(Ordering::Relaxed);
    let batches_before = stats.batches.load(Ordering::Relaxed);
    // Watch the writer while it works: its queue and the size of each batch.
    let done = Arc::new(AtomicBool::new(false));
    let (max_queued, max_batch) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let watcher = {
        let (done, max_queued, max_batch) = (done.clone(), max_queued.clone(), max_batch.clone());
        let (writer, stats) = (store.writer.clone(), stats.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                max_queued.fetch_max(writer.queued() as u64, Ordering::Relaxed);
                max_batch.fetch_max(
                    stats.last_batch_size.load(Ordering::Relaxed),
                    Ordering::Relaxed,
                );
                std::thread::sleep(Duration::from_micros(50));
            }
        })
    };
    const THREADS: i64 = 8;
    const EACH: i64 = 300;
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let writer = store.writer.clone();
            std::thread::spawn(move || {
                smol::block_on(async {
                    for n in 0..EACH {
                        writer
                            .submit("a flood row", move |c| {
                                c.execute("INSERT INTO flood VALUES (?1, ?2)", [t, n])
                                    .map(drop)
                            })
                            .await
                            .expect("queued");
                    }
                })
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    // `submit` returns once queued; closing commits everything still queued.
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    store.close();
    let ops = stats.operations.load(Ordering::Relaxed) - ops_before;
    let batches = stats.batches.load(Ordering::Relaxed) - batches_before;
    let (rows, distinct): (i64, i64) = rusqlite::Connection::open(dir.path().join("agent.db"))
        .unwrap()
        .query_row(
            "SELECT count(*), count(DISTINCT thread * 100000 + n) FROM flood",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (rows, distinct),
        (THREADS * EACH, THREADS * EACH),
        "no loss"
    );
    assert_eq!(
        ops,
        (THREADS * EACH) as u64,
        "every submitted operation went through"
    );
    assert!(
        batches * 4 >= ops,
        "{ops} operations in {batches} batches: some batch held more than batch_max = 4"
    );
    let (max_queued, max_batch) = (
        max_queued.load(Ordering::Relaxed),
        max_batch.load(Ordering::Relaxed),
    );
    println!(
        "{ops} operations in {batches} batches (largest seen {max_batch}); queue at most {max_queued}"
    );
    assert!(max_batch <= 4, "a batch of {max_batch}");
    assert!(
        max_queued <= 2,
        "{max_queued} operations queued with writer_queue = 2"
    );
}

/// The same end to end: a crawler floods progress reports at an agent with a tiny
/// writer queue and batch; every report is recorded, and the agent's own counters (in
/// `agent_runtime`, what `metrics` shows) never show a batch over `batch_max`.
#[test]
fn a_flood_of_progress_through_a_tiny_writer_queue_is_recorded_in_full() {
    let agent = Agent::start(&[
        ("CRAWLER_AGENT_STORAGE_WRITER_QUEUE", "1"),
        ("CRAWLER_AGENT_STORAGE_BATCH_MAX", "2"),
    ]);
    let job = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.chunked = false;
    crawler.request_one();
    crawler.send_type("job_started", Some(&job), json!({}));
    const REPORTS: i64 = 3000;
    let mut flood = Vec::new();
    for n in 0..REPORTS {
        flood.extend(Crawler::encode(
            "job_progress",
            Some(&job),
            json!({"stage": "fetching", "processed": n, "total": REPORTS}),
        ));
    }
    crawler.send_raw(&flood);
    agent.wait_for(
        &format!("SELECT count(*) FROM progress_snapshots WHERE job_id = '{job}'"),
        REPORTS,
    );
    let last: i64 = agent
        .db()
        .query_row("SELECT max(processed) FROM progress_snapshots", [], |r| {
            r.get(0)
        })
        .unwrap_or(-1);
    assert_eq!(last, REPORTS - 1);
    // The connection is still served after the flood.
    assert!(crawler.request_jobs().is_empty());
    assert_eq!(
        agent.count("SELECT count(*) FROM errors"),
        0,
        "{}",
        agent.log()
    );
    // The agent's runtime figures, rewritten every few seconds: wait for one written
    // after the flood (at least one operation per 64 reports went through the writer).
    let at_least = (REPORTS / 64) as u64;
    let mut counters = Value::Null;
    let reported = common::wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        counters = agent
            .db()
            .query_row("SELECT counters FROM agent_runtime", [], |r| {
                r.get::<_, String>(0)
            })
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        counters["writer_operations"]
            .as_u64()
            .is_some_and(|n| n >= at_least)
    });
    assert!(reported, "no runtime figures after the flood: {counters}");
    let (ops, batches) = (
        counters["writer_operations"].as_u64().unwrap(),
        counters["writer_batches"].as_u64().unwrap(),
    );
    println!("{ops} writer operations in {batches} batches for {REPORTS} progress reports");
    assert!(batches * 2 >= ops, "{counters}");
    assert!(
        counters["writer_last_batch_size"].as_u64().unwrap() <= 2,
        "{counters}"
    );
}

/// `status` on a known state: 2 queued, 1 running (with progress), 1 failed, one
/// credential, one connected crawler; every figure checked, in text and `--json`.
#[test]
fn status_prints_every_figure_of_a_known_state() {
    let agent = Agent::start(&[]);
    let out = agent.credentials_add("gl", "tok", &["--no-discover"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for e in 1..=4 {
        let e = e.to_string();
        agent.add_job("gl", "project", &e, &[]);
    }
    let mut crawler = agent.connect();
    let running = crawler.request_one()["id"].as_str().unwrap().to_string();
    crawler.send_type("job_started", Some(&running), json!({}));
    crawler.send_type(
        "job_progress",
        Some(&running),
        json!({"stage": "fetching", "processed": 30, "total": 120}),
    );
    crawler.send_type("heartbeat", None, json!({"uptime": 42.0, "activeJobs": 1}));
    // A second crawler connection takes one job and fails it for good, then leaves.
    let mut other = agent.connect();
    let failed = other.request_one()["id"].as_str().unwrap().to_string();
    other.send_type(
        "job_failed",
        Some(&failed),
        json!({"error": "status-test failure", "errorType": "Error", "isRecoverable": false}),
    );
    agent.wait_for(
        &format!("SELECT count(*) FROM jobs WHERE id = '{failed}' AND status = 'failed'"),
        1,
    );
    drop(other);
    agent.wait_for(
        "SELECT count(*) FROM connections WHERE closed_at IS NULL",
        1,
    );
    agent.wait_for(
        &format!("SELECT count(*) FROM progress_snapshots WHERE job_id = '{running}'"),
        1,
    );
    agent.wait_for(
        "SELECT count(*) FROM connections WHERE closed_at IS NULL AND last_heartbeat_at IS NOT NULL",
        1,
    );

    // Traffic counters are written as the messages are handled: wait for all four.
    agent.wait_for(
        "SELECT messages_in FROM connections WHERE closed_at IS NULL",
        4,
    );

    let text = agent.ok(&["status"]);
    let line = |prefix: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in\n{text}"))
            .to_string()
    };
    assert!(line("agent ").contains("answering"), "{text}");
    assert!(line("agent ").contains(agent.socket().to_str().unwrap()));
    assert!(line("database ").contains(agent.db_path().to_str().unwrap()));
    let jobs_line = line("jobs ");
    let mut jobs: Vec<&str> = jobs_line["jobs ".len()..]
        .trim()
        .split(", ")
        .map(|s| s.trim())
        .collect::<Vec<_>>();
    jobs.sort();
    jobs.retain(|s| !s.ends_with(" 0"));
    assert_eq!(jobs, ["failed 1", "queued 2", "running 1"], "{text}");
    let words = |l: String| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    // CREDENTIAL TOKEN QUEUED RUNNING FINISHED FAILED ITEMS
    assert_eq!(
        words(line("gl ")),
        ["gl", "ok", "2", "1", "0", "1", "30"],
        "{text}"
    );
    // CONN OPENED PID STATE LAST HEARTBEAT CRAWLER UPTIME MESSAGES
    let conn = text
        .lines()
        .skip_while(|l| !l.starts_with("CONN"))
        .nth(1)
        .map(|l| words(l.to_string()))
        .unwrap_or_else(|| panic!("no connection row in\n{text}"));
    assert_eq!(conn[2], std::process::id().to_string(), "peer pid: {text}");
    assert_eq!(conn[3], "live");
    assert_eq!(conn[conn.len() - 2], "42s", "crawler uptime: {text}");
    assert_eq!(conn[conn.len() - 1], "4", "messages in: {text}");
    let job = words(line(&running));
    assert_eq!(&job[1..5], ["project", "1", "running", "1"], "{text}");
    assert!(line(&running).contains("30/120 (25%)"), "{text}");
    assert!(
        text.contains("status-test failure"),
        "recent errors: {text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with(&failed[..])),
        "the failed job is not in flight: {text}"
    );

    let json: Value = serde_json::from_str(&agent.ok(&["status", "--json"])).unwrap();
    assert_eq!(json["reachable"], true);
    assert!(json["writer_stalled_seconds"].is_null());
    let count = |status: &str| {
        json["queue"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["status"] == status)
            .map_or(0, |q| q["jobs"].as_i64().unwrap())
    };
    assert_eq!(
        (
            count("queued"),
            count("running"),
            count("failed"),
            count("assigned"),
            count("finished")
        ),
        (2, 1, 1, 0, 0),
        "{json}"
    );
    let cred = &json["credentials"][0];
    assert_eq!(json["credentials"].as_array().unwrap().len(), 1);
    assert_eq!(
        (
            cred["name"].as_str(),
            cred["usable"].as_bool(),
            cred["queued"].as_i64(),
            cred["running"].as_i64(),
            cred["failed"].as_i64(),
            cred["items_processed"].as_i64()
        ),
        (Some("gl"), Some(true), Some(2), Some(1), Some(1), Some(30)),
        "{json}"
    );
    let conns = json["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 1, "{json}");
    assert_eq!(conns[0]["peer_pid"], std::process::id());
    assert_eq!(conns[0]["stale"], false);
    assert_eq!(conns[0]["crawler_uptime_s"], 42.0);
    assert_eq!(conns[0]["messages_in"], 4);
    let running_jobs = json["running"].as_array().unwrap();
    assert_eq!(running_jobs.len(), 1, "{json}");
    assert_eq!(running_jobs[0]["id"], running);
    assert_eq!(
        (
            running_jobs[0]["processed"].as_i64(),
            running_jobs[0]["total"].as_i64()
        ),
        (Some(30), Some(120))
    );
    assert!(
        json["recent_errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"]
                .as_str()
                .unwrap_or("")
                .contains("status-test failure")),
        "{json}"
    );
}
