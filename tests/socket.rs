//! The socket itself: framing edge cases, start-up and shutdown.

mod common;
use common::{Agent, Crawler};
use serde_json::json;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};

#[test]
fn a_whole_session_written_one_byte_at_a_time_is_understood() {
    let agent = Agent::start(&[]);
    let job_id = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.chunked = false;
    let job = Crawler::message("job_request", None, json!({}));
    for b in serde_json::to_vec(&job).unwrap() {
        crawler.stream.write_all(&[b]).unwrap();
    }
    assert_eq!(crawler.recv()["data"]["jobs"][0]["id"], job_id.as_str());
    let progress = Crawler::message(
        "job_progress",
        Some(&job_id),
        json!({"stage": "fetching", "processed": 1, "message": "ä😀{}"}),
    );
    for b in serde_json::to_vec(&progress).unwrap() {
        crawler.stream.write_all(&[b]).unwrap();
    }
    agent.wait_for(
        "SELECT count(*) FROM progress_snapshots WHERE message = 'ä😀{}'",
        1,
    );
}

#[test]
fn ten_thousand_messages_in_one_write_are_all_stored_in_order() {
    let agent = Agent::start(&[]);
    let job_id = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    let mut bytes = Vec::new();
    for i in 0..10_000 {
        let m = Crawler::message(
            "job_progress",
            Some(&job_id),
            json!({"stage": "fetching", "processed": i}),
        );
        bytes.extend(serde_json::to_vec(&m).unwrap());
    }
    crawler.stream.write_all(&bytes).unwrap();
    agent.wait_for("SELECT count(*) FROM progress_snapshots", 10_000);
    let in_order: i64 = agent.count(
        "SELECT count(*) FROM progress_snapshots a JOIN progress_snapshots b ON b.id = a.id + 1 WHERE b.processed = a.processed + 1",
    );
    assert_eq!(in_order, 9_999);
}

#[test]
fn an_oversized_message_is_skipped_in_sync_and_recorded() {
    let agent = Agent::start(&[("CRAWLER_AGENT_SOCKET_MAX_MESSAGE_BYTES", "4096")]);
    agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.chunked = false;
    let big =
        json!({"type": "job_progress", "jobId": "x", "data": {"message": "}{\"".repeat(10_000)}});
    crawler.send(&big);
    assert_eq!(
        crawler.request_jobs().len(),
        1,
        "the next message is understood"
    );
    agent.wait_for("SELECT count(*) FROM errors WHERE message LIKE 'message of % bytes exceeds socket.max_message_bytes%'", 1);
}

#[test]
fn garbage_and_truncated_objects_do_not_lose_the_messages_around_them() {
    let agent = Agent::start(&[]);
    agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.send_raw(b"hello\x00\xff");
    crawler.send_raw(br#"{"type":"heartbeat","data":{"uptime":"#); // truncated...
    crawler.send_raw(br#"}"#); // ...closed, but not JSON
    crawler.send_raw(br#"{"type":"heartbeat","data":{"uptime":5}}"#);
    crawler.send_raw(b"{\"type\":\"heartbeat\",\"data\":{\"systemStatus\":\"\xff\xfe\"}}");
    crawler.send_raw(br#"{"type":null,"data":{}}{"data":{}}{"type":"job_started","data":{}}"#);
    crawler.send_raw(
        br#"{"type":"heartbeat","data":{"uptime":1e999999}}{"type":"heartbeat","data":"x"}"#,
    );
    crawler.send_raw(br#"[1,2]"#);
    assert_eq!(crawler.request_jobs().len(), 1);
    agent.wait_for("SELECT count(*) FROM connections WHERE heartbeats = 1", 1);
    let protocol =
        agent.count("SELECT count(*) FROM errors WHERE category IN ('protocol', 'validation')");
    assert!(protocol >= 8, "{protocol} error rows");
    let raw: String = agent
        .db()
        .query_row(
            "SELECT context FROM errors WHERE message LIKE '%not a JSON object%' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(raw.contains("raw"), "the bad bytes are kept: {raw}");
}

#[test]
fn a_peer_that_closes_mid_message_leaves_the_part_it_sent_in_an_error_row() {
    let agent = Agent::start(&[]);
    let mut crawler = agent.connect();
    crawler.send_raw(
        br#"{"type":"heartbeat","data":{"uptime":1}}{"type":"job_progress","jobId":"abc","da"#,
    );
    crawler.stream.shutdown(std::net::Shutdown::Write).unwrap();
    agent.wait_for("SELECT count(*) FROM errors WHERE message LIKE 'connection ended inside a message%' AND context LIKE '%abc%'", 1);
    agent.wait_for(
        "SELECT count(*) FROM connections WHERE heartbeats = 1 AND closed_at IS NOT NULL",
        1,
    );
}

#[test]
fn other_connections_are_undisturbed_by_a_broken_one() {
    let agent = Agent::start(&[]);
    agent.add_credential("gl", "tok");
    let mut bad = agent.connect();
    bad.send_raw(b"{{{{{{{{{{\"");
    let mut good = agent.connect();
    assert_eq!(good.request_jobs().len(), 1);
    drop(bad);
}

#[test]
fn sigterm_commits_everything_already_received_and_removes_the_socket() {
    let mut agent = Agent::start(&[]);
    let job_id = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.chunked = false;
    let mut bytes = Vec::new();
    for i in 0..5_000 {
        let m = Crawler::message(
            "job_progress",
            Some(&job_id),
            json!({"stage": "fetching", "processed": i}),
        );
        bytes.extend(serde_json::to_vec(&m).unwrap());
    }
    crawler.stream.write_all(&bytes).unwrap();
    assert_eq!(agent.stop(), Some(0), "clean exit:\n{}", agent.log());
    assert!(!agent.socket().exists(), "socket removed");
    assert_eq!(
        agent.count("SELECT count(*) FROM progress_snapshots"),
        5_000
    );
    assert_eq!(
        agent.count("SELECT count(*) FROM connections WHERE closed_at IS NULL"),
        0
    );
    assert!(agent.log().contains("stopped cleanly"));
    // The job stays in flight for the orphan rules after restart.
    assert_eq!(agent.job_status(&job_id), "running");
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_agent_is_not() {
    let mut first = common::Agent::new();
    // A socket file nobody listens on, as left by a crash.
    drop(std::os::unix::net::UnixListener::bind(first.socket()).unwrap());
    assert!(std::fs::metadata(first.socket())
        .unwrap()
        .file_type()
        .is_socket());
    first.spawn();
    let mode = std::fs::metadata(first.socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);

    // The same database: refused by the database lock before the socket is looked at.
    let second = first.cli(&["serve"]);
    assert_eq!(second.status.code(), Some(2));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("database in use by agent pid"), "{err}");
    // Another database on the same socket: refused by the socket check.
    let second = std::process::Command::new(common::BIN)
        .arg("--db")
        .arg(first.dir.path().join("other.db"))
        .arg("--socket")
        .arg(first.socket())
        .arg("serve")
        .env("HOME", first.dir.path())
        .env_remove("CONFIGURATION_DIRECTORY")
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already serving"), "{err}");
    assert_eq!(
        first.connect().request_jobs().len(),
        0,
        "the first agent still serves"
    );
}

#[test]
fn a_path_that_is_not_a_socket_is_never_removed() {
    let agent = common::Agent::new();
    std::fs::write(agent.socket(), b"precious").unwrap();
    let out = agent.cli(&["serve"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a socket"));
    assert_eq!(std::fs::read(agent.socket()).unwrap(), b"precious");
}

#[test]
fn status_exits_1_when_the_agent_does_not_answer() {
    let mut agent = Agent::start(&[]);
    assert!(agent.cli(&["status"]).status.success());
    agent.stop();
    let out = agent.cli(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["reachable"], false);
}

#[test]
fn the_socket_gets_the_configured_mode_and_group() {
    use std::os::unix::fs::MetadataExt;
    let own = nix::unistd::getegid().as_raw();
    // A group the socket would not get by itself (the tests run as root, who may
    // give a file any group).
    let gid = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse::<u32>().ok())
        .find(|g| *g != own)
        .expect("a group other than our own in /etc/group")
        .to_string();
    let agent = Agent::start(&[
        ("CRAWLER_AGENT_SOCKET_MODE", "0600"),
        ("CRAWLER_AGENT_SOCKET_GROUP", &gid),
    ]);
    let meta = std::fs::metadata(agent.socket()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.gid().to_string(), gid);
    let bad = Agent::new();
    let out = bad.cli_env(
        &["serve"],
        &[("CRAWLER_AGENT_SOCKET_GROUP", "no-such-group-xyz")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-group-xyz"));
}

/// Runs the binary with only the given HOME (no XDG_RUNTIME_DIR, no SOCKET_PATH).
fn run_with_home(home: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = std::process::Command::new(common::BIN)
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("SOCKET_PATH")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_socket_path_longer_than_the_platform_allows_is_refused_with_a_suggestion() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("agent.db");
    let long_dir = home.path().join("d".repeat(120));
    let long = long_dir.join("agent.sock");
    let suggestion = home.path().join(".crawler-agent").join("agent.sock");

    let args = [
        "--db",
        db.to_str().unwrap(),
        "--socket",
        long.to_str().unwrap(),
    ];
    let (code, err) = run_with_home(home.path(), &[&args[..], &["serve"]].concat(), &[]);
    assert_eq!(code, 2, "a configuration error: {err}");
    assert!(err.contains("longer than the"), "{err}");
    assert!(err.contains("--socket"), "{err}");
    assert!(
        err.contains(suggestion.to_str().unwrap()),
        "a shorter path to use: {err}"
    );
    assert!(
        !long_dir.exists(),
        "nothing created for a path that cannot work"
    );

    // `config check` says the same about socket.path, and where the value came from.
    let (code, err) = run_with_home(
        home.path(),
        &["config", "check"],
        &[("CRAWLER_AGENT_SOCKET_PATH", long.to_str().unwrap())],
    );
    assert_eq!(code, 2, "a configuration error: {err}");
    assert!(
        err.contains("socket.path") && err.contains("longer than the"),
        "{err}"
    );
}

#[test]
fn a_default_socket_path_too_long_for_the_platform_is_refused_before_binding() {
    // A home this deep puts the default socket (in the user's data directory when
    // there is no XDG_RUNTIME_DIR, as on a Mac) past the limit.
    let base = tempfile::tempdir().unwrap();
    let home = base.path().join("h".repeat(110));
    std::fs::create_dir_all(&home).unwrap();
    let db = base.path().join("agent.db");
    let (code, err) = run_with_home(&home, &["--db", db.to_str().unwrap(), "serve"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(home.to_str().unwrap()),
        "names the default path: {err}"
    );
    assert!(err.contains("longer than the"), "{err}");
    assert!(
        !err.contains("e.g."),
        "no suggestion that would be too long too: {err}"
    );
}
