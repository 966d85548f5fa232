//! Claims the docs make that no other test checked: shutdown by SIGINT, the WAL
//! truncated at exit, nothing unsolicited sent to the crawler, jobs in flight across
//! an agent restart, the raw-sample cap, `durability = "full"`, `errors --since`,
//! `db check` on a damaged file, `jobs retry`'s fresh attempts, the socket path in the
//! log and its length limit.

mod common;
use common::{Agent, Crawler};
use crawler_agent::config::{Config, Durability};
use crawler_agent::store::Store;
use serde_json::json;
use std::io::Read;
use std::time::Duration;

#[test]
fn sigint_stops_the_agent_cleanly_closing_connections_and_truncating_the_wal() {
    let mut agent = Agent::start(&[]);
    agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    agent.wait_for(
        "SELECT count(*) FROM job_events WHERE event = 'dispatched'",
        1,
    );
    assert_eq!(agent.stop_with("INT"), Some(0), "{}", agent.log());
    assert!(!agent.socket().exists(), "the socket file is removed");
    let wal = agent.dir.path().join("agent.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "the WAL is truncated at exit");
    assert_eq!(
        agent.count("SELECT count(*) FROM connections WHERE closed_at IS NULL"),
        0
    );
    assert_eq!(
        agent.count("SELECT count(*) FROM connections WHERE close_reason LIKE 'agent shutdown%'"),
        1
    );
}

#[test]
fn nothing_unsolicited_reaches_the_crawler_not_even_at_shutdown() {
    let mut agent = Agent::start(&[]);
    agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type("heartbeat", None, json!({"uptime": 3.0}));
    crawler.send_type("job_started", Some("no-such-job"), json!({}));
    assert_eq!(agent.stop(), Some(0));
    // Everything after the one reply it asked for, until EOF.
    let mut rest = Vec::new();
    crawler
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = crawler.stream.read_to_end(&mut rest);
    assert_eq!(
        String::from_utf8_lossy(&rest),
        "",
        "sent without being asked"
    );
}

#[test]
fn a_job_in_flight_survives_an_agent_restart_and_finishes_on_a_new_connection() {
    let mut agent = Agent::start(&[]);
    let job = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type("job_started", Some(&job), json!({}));
    agent.wait_for(
        &format!("SELECT count(*) FROM jobs WHERE id = '{job}' AND status = 'running'"),
        1,
    );
    assert_eq!(agent.stop(), Some(0));
    agent.spawn();
    assert_eq!(agent.job_status(&job), "running", "kept across the restart");
    let mut again = agent.connect();
    assert!(
        again.request_jobs().is_empty(),
        "the first request after a reconnect gets nothing while the job may still run"
    );
    again.send_type(
        "job_completed",
        Some(&job),
        json!({"success": true, "finalCounts": {"areas": 1}}),
    );
    agent.wait_for(
        &format!("SELECT count(*) FROM jobs WHERE id = '{job}' AND status = 'finished'"),
        1,
    );
}

#[test]
fn a_bad_message_keeps_at_most_64_kib_of_its_bytes_in_its_error_row() {
    let agent = Agent::start(&[]);
    let mut crawler = agent.connect();
    let big = "x".repeat(200 * 1024);
    crawler.send_raw(format!(r#"{{"type":"heartbeat","data":{{"uptime":"{big}"}}}}"#).as_bytes());
    agent.wait_for(
        "SELECT count(*) FROM errors WHERE message LIKE 'message ignored%'",
        1,
    );
    let (raw_len, truncated, bytes): (i64, i64, i64) = agent
        .db()
        .query_row(
            "SELECT length(json_extract(context, '$.raw')), json_extract(context, '$.truncated'),
                    json_extract(context, '$.bytes')
             FROM errors WHERE message LIKE 'message ignored%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(raw_len, 64 * 1024);
    assert_eq!(truncated, 1);
    assert!(bytes > 200 * 1024);
}

#[test]
fn durability_full_makes_the_writer_sync_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    for (durability, expected) in [(Durability::Normal, 1), (Durability::Full, 2)] {
        config.storage.durability = durability;
        let store = Store::open(&dir.path().join("agent.db"), &config.storage).unwrap();
        let synchronous: i64 = store
            .writer
            .call_blocking(|c| c.query_row("PRAGMA synchronous", [], |r| r.get(0)))
            .unwrap();
        store.close();
        assert_eq!(synchronous, expected, "{durability:?}");
    }
}

#[test]
fn errors_since_shows_only_the_rows_inside_the_window() {
    let agent = Agent::start(&[]);
    let mut crawler = agent.connect();
    crawler.send_raw(br#"{"type":"nope","data":{}}"#);
    agent.wait_for("SELECT count(*) FROM errors", 1);
    // An operator's write beside the running agent (busy_timeout waits for it).
    let db = rusqlite::Connection::open(agent.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch(
        "INSERT INTO errors (at, category, severity, message)
         VALUES ('2001-01-01T00:00:00.000Z', 'protocol', 'low', 'an old one');",
    )
    .unwrap();
    let listed: serde_json::Value =
        serde_json::from_str(&agent.ok(&["errors", "--since", "1h", "--json"])).unwrap();
    let messages: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].contains("unknown message type 'nope'"));
    let all: serde_json::Value =
        serde_json::from_str(&agent.ok(&["errors", "--since", "30years", "--json"])).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
}

#[test]
fn db_check_fails_on_a_damaged_file() {
    let agent = Agent::new();
    agent.add_credential("gl", "tok");
    let ok = agent.cli(&["db", "check"]);
    assert_eq!(ok.status.code(), Some(0));
    // Break the page type of the jobs table's root page (the file is at rest: the
    // CLI's last connection checkpointed it).
    let path = agent.db_path();
    let (root, page): (i64, i64) = agent
        .db()
        .query_row(
            "SELECT rootpage, (SELECT page_size FROM pragma_page_size) FROM sqlite_master WHERE name = 'jobs'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[((root - 1) * page) as usize] = 0x5a;
    std::fs::write(&path, &bytes).unwrap();
    let damaged = agent.cli(&["db", "check"]);
    assert_eq!(damaged.status.code(), Some(1), "{damaged:?}");
}

#[test]
fn jobs_retry_gives_an_ended_job_a_fresh_attempt_budget() {
    let agent = Agent::start(&[]);
    let job = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type(
        "job_failed",
        Some(&job),
        json!({"error": "boom", "isRecoverable": false}),
    );
    agent.wait_for(
        &format!("SELECT count(*) FROM jobs WHERE id = '{job}' AND status = 'failed'"),
        1,
    );
    assert_eq!(
        agent.count(&format!("SELECT attempts FROM jobs WHERE id = '{job}'")),
        1
    );
    agent.ok(&["jobs", "retry", &job]);
    assert_eq!(agent.job_status(&job), "queued");
    assert_eq!(
        agent.count(&format!("SELECT attempts FROM jobs WHERE id = '{job}'")),
        0
    );
    let mut next = agent.connect();
    assert_eq!(next.request_one()["id"], job.as_str());
}

#[test]
fn the_socket_path_is_logged_at_start_and_a_path_over_the_limit_is_refused() {
    let agent = Agent::start(&[]);
    let path = agent.socket();
    let line = format!("listening on {}", path.display());
    let logged = common::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        agent.log().contains(&line)
    });
    assert!(logged, "{}", agent.log());
    let long = agent.dir.path().join("d".repeat(120)).join("agent.sock");
    let out = std::process::Command::new(common::BIN)
        .arg("--db")
        .arg(agent.dir.path().join("other.db"))
        .arg("--socket")
        .arg(&long)
        .arg("serve")
        .env("HOME", agent.dir.path())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("socket.path") && stderr.contains("107 bytes"),
        "{stderr}"
    );
    assert!(!long.exists());
    let _ = Crawler::connect(&path);
}
