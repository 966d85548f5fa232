//! Operating the running agent: SIGHUP reload.

mod common;
use common::Agent;
use std::time::Duration;

fn wait_for_log(agent: &Agent, text: &str) {
    let found = common::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        agent.log().contains(text)
    });
    assert!(found, "no '{text}' in the log:\n{}", agent.log());
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

#[test]
fn metrics_are_valid_prometheus_text_with_the_agents_own_counters() {
    let agent = Agent::start(&[]);
    let job = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type(
        "job_progress",
        Some(&job),
        serde_json::json!({"stage": "fetching", "processed": 5}),
    );
    crawler.send_type("nonsense", None, serde_json::json!({}));
    // The agent persists its figures every 5 s.
    agent.wait_for("SELECT count(*) FROM agent_runtime WHERE counters LIKE '%\"messages_received.job_progress\":1%'", 1);
    let text = agent.ok(&["metrics"]);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        assert!(name.starts_with("crawler_agent_"), "{line}");
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
    }
    for expected in [
        "crawler_agent_up 1",
        "crawler_agent_jobs{status=\"running\"} 1",
        "crawler_agent_messages_received_total{type=\"job_progress\"} 1",
        "crawler_agent_messages_received_total{type=\"other\"} 1",
        "crawler_agent_jobs_dispatched_total 1",
        "crawler_agent_connections{state=\"live\"}",
        "crawler_agent_errors_retained{category=\"protocol\",severity=\"low\"} 1",
        "crawler_agent_wal_bytes",
        "crawler_agent_writer_commit_seconds_total",
        "crawler_agent_writer_wal_hold_seconds_total 0",
    ] {
        assert!(text.contains(expected), "missing {expected}:\n{text}");
    }
}

#[test]
fn status_watch_draws_a_live_view_with_progress_bars() {
    let agent = Agent::start(&[]);
    let job = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type(
        "job_progress",
        Some(&job),
        serde_json::json!({"stage": "fetching", "processed": 40, "total": 100}),
    );
    agent.wait_for("SELECT count(*) FROM progress_snapshots", 1);
    let out = std::process::Command::new("timeout")
        .args([
            "2.5",
            common::BIN,
            "--db",
            agent.db_path().to_str().unwrap(),
            "--socket",
            agent.socket().to_str().unwrap(),
            "status",
            "--watch",
        ])
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.matches("crawler-agent status").count() >= 2,
        "redrawn every second:\n{screen}"
    );
    assert!(
        screen.contains("[########------------] 40/100 (40%)"),
        "{screen}"
    );
    assert!(screen.contains("\x1b[2J"));
}

#[test]
fn the_man_page_and_completions_come_from_the_cli_definition() {
    let agent = Agent::new();
    let dir = agent.dir.path().join("gen");
    agent.ok(&["generate", dir.to_str().unwrap()]);
    let man = std::fs::read_to_string(dir.join("crawler-agent.1")).unwrap();
    assert!(man.contains("crawler\\-agent") && man.contains("serve"));
    for file in ["crawler-agent.bash", "_crawler-agent", "crawler-agent.fish"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(text.contains("credentials"), "{file}");
    }
}

#[test]
fn metrics_are_served_on_a_loopback_address_and_only_there() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let agent = Agent::start(&[("CRAWLER_AGENT_METRICS_LISTEN", &addr)]);
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let page = get("/metrics");
    assert!(page.starts_with("HTTP/1.0 200 OK"), "{page}");
    assert!(
        page.contains("crawler_agent_up 1")
            && page.contains("crawler_agent_jobs{status=\"queued\"}")
    );
    assert!(get("/other").starts_with("HTTP/1.0 404"));

    let out = agent.cli_env(
        &["config", "check"],
        &[("CRAWLER_AGENT_METRICS_LISTEN", "0.0.0.0:9477")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
}

#[test]
fn a_socket_passed_by_systemd_is_adopted_and_left_in_place() {
    let agent = Agent::new();
    let socket = agent.socket();
    let mut child = std::process::Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&socket)
        .arg(common::BIN)
        .args([
            "--db",
            agent.db_path().to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "serve",
        ])
        .env("HOME", agent.dir.path())
        .stderr(std::fs::File::create(agent.log_path()).unwrap())
        .spawn()
        .expect("systemd-socket-activate (package systemd)");
    let bound = common::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        socket.exists()
    });
    assert!(bound, "no socket");
    // The first connection starts the agent on the inherited descriptor.
    assert!(agent.connect().request_jobs().is_empty());
    wait_for_log(&agent, "using the socket passed by systemd");
    common::signal(child.id() as i32, "TERM");
    assert!(child.wait().unwrap().success());
    assert!(agent.log().contains("stopped cleanly"));
    assert!(socket.exists(), "the socket belongs to systemd and stays");
}
