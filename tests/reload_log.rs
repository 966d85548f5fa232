//! A SIGHUP that changes `log.level` changes what is logged, up and down.

mod common;
use common::Agent;
use std::time::Duration;

fn wait_for_log(agent: &Agent, text: &str) {
    let found = common::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        agent.log().contains(text)
    });
    assert!(found, "no '{text}' in the log:\n{}", agent.log());
}

/// Lines of the per-message debug log for heartbeats.
fn heartbeat_lines(agent: &Agent) -> usize {
    agent.log().matches(": heartbeat\n").count()
}

#[test]
fn sighup_raises_and_lowers_the_log_level_for_real() {
    let mut agent = Agent::new();
    let config = agent.dir.path().join("config.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").unwrap();
    agent.args = vec!["--config".into(), config.display().to_string()];
    agent.unset = vec!["CRAWLER_AGENT_LOG_LEVEL".into()];
    agent.spawn();
    let mut crawler = agent.connect();
    // The reply to a job_request comes after every earlier message was handled.
    let heartbeat_then_reply = |crawler: &mut common::Crawler| {
        crawler.send_type("heartbeat", None, serde_json::json!({"uptime": 1}));
        assert!(crawler.request_jobs().is_empty());
    };
    heartbeat_then_reply(&mut crawler);
    assert_eq!(
        heartbeat_lines(&agent),
        0,
        "info hides debug:\n{}",
        agent.log()
    );

    std::fs::write(&config, "[log]\nlevel = \"debug\"\n").unwrap();
    common::signal(agent.pid(), "HUP");
    wait_for_log(
        &agent,
        "configuration reloaded: log.level: \"info\" -> \"debug\"",
    );
    heartbeat_then_reply(&mut crawler);
    assert_eq!(
        heartbeat_lines(&agent),
        1,
        "debug shows it:\n{}",
        agent.log()
    );

    // Down to warn; the socket.mode change only gives a warning line to wait for.
    std::fs::write(
        &config,
        "[log]\nlevel = \"warn\"\n[socket]\nmode = \"0600\"\n",
    )
    .unwrap();
    common::signal(agent.pid(), "HUP");
    wait_for_log(&agent, "needs a restart to take effect: socket.mode");
    let before = agent.log();
    heartbeat_then_reply(&mut crawler);
    drop(crawler);
    agent.wait_for(
        "SELECT count(*) FROM connections WHERE closed_at IS NULL",
        0,
    );
    let after = agent.log();
    assert_eq!(
        heartbeat_lines(&agent),
        1,
        "warn hides debug again:\n{after}"
    );
    assert!(
        !after[before.len()..].contains(" INFO "),
        "and info (connection closed):\n{after}"
    );
    assert_eq!(agent.stop(), Some(0));
}
