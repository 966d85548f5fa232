//! Never half-alive: an agent that answers on its socket while its database writer
//! cannot commit is reported stuck by `status` (exit 1) and `metrics`, and healthy
//! again once the writer commits.

mod common;
use common::wait::wait_until;
use common::Agent;
use std::time::Duration;

fn status(agent: &Agent) -> (Option<i32>, String) {
    let out = agent.cli(&["status"]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn stalled_gauge(agent: &Agent) -> String {
    agent
        .ok(&["metrics"])
        .lines()
        .find(|l| l.starts_with("crawler_agent_writer_stalled "))
        .unwrap_or("no crawler_agent_writer_stalled sample")
        .to_string()
}

#[test]
fn a_writer_stuck_behind_an_operators_write_lock_fails_status_and_shows_in_metrics_until_released()
{
    let agent = Agent::start(&[("CRAWLER_AGENT_STORAGE_BUSY_TIMEOUT", "100ms")]);
    // The running agent has written its figures: it is healthy.
    agent.wait_for("SELECT count(*) FROM agent_runtime", 1);
    let (code, out) = status(&agent);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("STUCK"), "{out}");
    assert_eq!(stalled_gauge(&agent), "crawler_agent_writer_stalled 0");

    // `sqlite3 agent.db` then `BEGIN IMMEDIATE;` and a long coffee break.
    let lock = rusqlite::Connection::open(agent.db_path()).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();

    let mut last = (None, String::new());
    let stuck = wait_until(Duration::from_secs(90), Duration::from_millis(250), || {
        last = status(&agent);
        last.0 == Some(1) && last.1.contains("writer    STUCK")
    });
    assert!(stuck, "status never said stuck: {last:?}\n{}", agent.log());
    assert!(last.1.contains("answering"), "{}", last.1);
    let json: serde_json::Value =
        serde_json::from_slice(&agent.cli(&["status", "--json"]).stdout).unwrap();
    assert_eq!(json["reachable"], true);
    assert!(
        json["writer_stalled_seconds"].as_f64().unwrap() > 15.0,
        "{json}"
    );
    let metrics = agent.ok(&["metrics"]);
    assert!(metrics.contains("crawler_agent_up 1\n"), "{metrics}");
    assert!(
        metrics.contains("crawler_agent_writer_stalled 1\n"),
        "{metrics}"
    );
    // It is stuck because its writes fail, which the log says.
    assert!(agent.log().contains("retrying"), "{}", agent.log());

    lock.execute_batch("ROLLBACK").unwrap();
    let recovered = wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
        last = status(&agent);
        last.0 == Some(0)
    });
    assert!(
        recovered,
        "status stayed failing: {last:?}\n{}",
        agent.log()
    );
    assert!(!last.1.contains("STUCK"), "{}", last.1);
    let json: serde_json::Value =
        serde_json::from_slice(&agent.cli(&["status", "--json"]).stdout).unwrap();
    assert!(json["writer_stalled_seconds"].is_null(), "{json}");
    assert_eq!(stalled_gauge(&agent), "crawler_agent_writer_stalled 0");
    assert!(agent.log().contains("database writable again"));
}
