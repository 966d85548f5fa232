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
    let mut watch = std::process::Command::new(common::BIN)
        .args([
            "--db",
            agent.db_path().to_str().unwrap(),
            "--socket",
            agent.socket().to_str().unwrap(),
            "status",
            "--watch",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Collect until two complete snapshots are in (a third header has begun).
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let out = out.clone();
        let mut stdout = watch.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let header = "--- crawler-agent status ";
    common::wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
        String::from_utf8_lossy(&out.lock().unwrap())
            .matches(header)
            .count()
            >= 3
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = reader.join();
    let bytes = out.lock().unwrap().clone();
    let screen = String::from_utf8_lossy(&bytes);
    assert!(
        screen.matches(header).count() >= 3,
        "redrawn every second:\n{screen}"
    );
    assert!(
        screen.contains("[########------------] 40/100 (40%)"),
        "{screen}"
    );
    assert!(!screen.contains('\x1b'), "no screen escapes into a pipe");
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
// Linux only: systemd's `systemd-socket-activate`; elsewhere the agent has no
// socket activation (src/server/systemd.rs).
#[cfg(target_os = "linux")]
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
