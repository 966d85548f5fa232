//! Operating the running agent: SIGHUP reload.

mod common;
use common::Agent;
use std::time::{Duration, Instant};

fn wait_for_log(agent: &Agent, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent.log().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no '{text}' in the log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_applies_live_settings_keeps_connections_and_rejects_a_bad_file() {
    let mut agent = Agent::new();
    let config = agent.dir.path().join("config.toml");
    std::fs::write(&config, "[dispatch]\njobs_per_response = 1\n").unwrap();
    agent.args = vec!["--config".into(), config.display().to_string()];
    agent.spawn();
    agent.add_credential("gl", "tok");
    for i in 0..4 {
        agent.ok(&[
            "jobs",
            "add",
            "--credential",
            "gl",
            "--type",
            "project",
            "--entity-id",
            &i.to_string(),
        ]);
    }
    let mut crawler = agent.connect();
    let first = crawler.request_jobs();
    assert_eq!(first.len(), 1);
    crawler.send_type(
        "job_completed",
        Some(first[0]["id"].as_str().unwrap()),
        serde_json::json!({"success": true}),
    );

    std::fs::write(
        &config,
        "[dispatch]\njobs_per_response = 2\n[socket]\nmode = \"0600\"\n",
    )
    .unwrap();
    common::signal(agent.pid(), "HUP");
    wait_for_log(
        &agent,
        "configuration reloaded: dispatch.jobs_per_response: 1 -> 2",
    );
    wait_for_log(&agent, "needs a restart to take effect: socket.mode");
    assert_eq!(
        crawler.request_jobs().len(),
        2,
        "the same connection, the new setting"
    );

    std::fs::write(&config, "[dispatch]\njobs_per_response = \"many\"\n").unwrap();
    common::signal(agent.pid(), "HUP");
    wait_for_log(&agent, "configuration reload rejected");
    agent.wait_for("SELECT count(*) FROM errors WHERE category = 'config'", 1);
    let jobs = crawler.request_jobs();
    assert!(jobs.is_empty(), "two jobs are in flight on this connection");
    assert_eq!(agent.stop(), Some(0));
}
