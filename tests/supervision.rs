//! A panic is contained to what caused it, or ends the process so the service manager
//! restarts it: never a half-alive agent. Faults are injected through the debug-build
//! failpoints (`CRAWLER_AGENT_FAILPOINTS`, see `src/failpoint.rs`), which the release
//! binary does not have; so these tests only exist in debug builds (`cargo test`).
#![cfg(debug_assertions)]

mod common;
use common::Agent;
use serde_json::json;
use std::time::Duration;

#[test]
fn a_panicking_writer_operation_fails_alone_and_is_recorded_as_internal() {
    let agent = Agent::start(&[("CRAWLER_AGENT_FAILPOINTS", "writer-apply=a heartbeat")]);
    agent.add_credential("gl", "glpat-x");
    let mut crawler = agent.connect();
    for _ in 0..2 {
        crawler.send_type("heartbeat", None, json!({"uptime": 5.0}));
    }
    agent.wait_for(
        "SELECT count(*) FROM errors WHERE category = 'internal' AND severity = 'critical' AND message LIKE '%a heartbeat panicked%'",
        2,
    );
    // Everything else goes on: the connection, the writer, dispatch.
    let job = crawler.request_one();
    assert!(job["id"].is_string());
    assert_eq!(
        agent.count("SELECT count(*) FROM connections WHERE heartbeats > 0"),
        0
    );
    assert!(agent.cli(&["status"]).status.success());
}

#[test]
fn a_panicking_connection_task_releases_its_slot_and_records_its_close() {
    let agent = Agent::start(&[
        ("CRAWLER_AGENT_FAILPOINTS", "connection=PANIC-HERE"),
        ("CRAWLER_AGENT_SOCKET_MAX_CONNECTIONS", "2"),
    ]);
    // Two slots (the harness's readiness probe may hold one for a moment); a leaked
    // slot per panic would refuse the peer of round 3 at the latest.
    for round in 1..=4 {
        let mut crawler = agent.connect();
        assert!(
            crawler.request_jobs().is_empty(),
            "round {round} was served"
        );
        crawler.send_type(
            "heartbeat",
            None,
            json!({"uptime": 1.0, "note": "PANIC-HERE"}),
        );
        agent.wait_for(
            "SELECT count(*) FROM connections WHERE close_reason LIKE 'internal error: the connection task panicked%'",
            round,
        );
    }
    assert_eq!(
        agent.count("SELECT count(*) FROM errors WHERE category = 'internal' AND severity = 'critical' AND connection_id IS NOT NULL"),
        4
    );
    assert_eq!(
        agent.count("SELECT count(*) FROM errors WHERE message LIKE 'connection refused%'"),
        0,
        "no peer was refused: every slot came back"
    );
}

#[test]
fn a_panic_in_a_process_wide_thread_or_task_ends_the_process_with_status_70() {
    for site in ["writer-thread", "checkpointer", "monitor", "accept"] {
        let dir = tempfile::tempdir().unwrap();
        let trigger = dir.path().join("trigger");
        let spec = format!("{site}={}", trigger.display());
        let mut agent = Agent::start(&[("CRAWLER_AGENT_FAILPOINTS", spec.as_str())]);
        // Healthy first.
        assert!(agent.connect().request_jobs().is_empty(), "{site}");
        std::fs::write(&trigger, b"").unwrap();
        if site == "accept" {
            // The accept loop panics on its next peer.
            let _ = std::os::unix::net::UnixStream::connect(agent.socket());
        }
        let code = agent.exit_within(Duration::from_secs(20));
        assert_eq!(code, Some(70), "{site}:\n{}", agent.log());
        assert!(agent.log().contains("panicked"), "{site}: logged");
    }
}
