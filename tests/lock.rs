//! One agent per database: a second `serve` on the same file exits 2 naming the first
//! agent, while the CLI keeps working; a crashed agent's lock is gone with it.

mod common;
use common::{Agent, BIN};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// `serve` on `agent`'s database with another socket; killed if it is still running
/// after the limit (a second agent that was not refused).
fn second_serve(agent: &Agent, socket: &std::path::Path) -> Output {
    let mut child = Command::new(BIN)
        .arg("--db")
        .arg(agent.db_path())
        .arg("--socket")
        .arg(socket)
        .arg("serve")
        .env("HOME", agent.dir.path())
        .env_remove("RUST_LOG")
        .env_remove("SOCKET_PATH")
        .env_remove("CONFIGURATION_DIRECTORY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = common::wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_second_agent_on_the_same_database_exits_2_naming_the_first() {
    let mut agent = Agent::start(&[]);
    let job = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    assert_eq!(crawler.request_one()["id"], job.as_str());

    let other = agent.dir.path().join("other.sock");
    let out = second_serve(&agent, &other);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "database in use by agent pid {} (socket {})",
            agent.pid(),
            agent.socket().display()
        )),
        "{err}"
    );
    assert!(!other.exists(), "the second agent bound no socket");
    // The first agent's job is still its own, and the CLI works beside it.
    assert_eq!(agent.job_status(&job), "assigned");
    assert!(agent.ok(&["jobs", "list"]).contains(&job));
    assert!(agent.cli(&["status"]).status.success());
    agent.add_job("gl", "project", "7", &[]);
    drop(crawler);

    // SIGKILL: no cleanup, yet the kernel drops the lock and the next agent starts.
    agent.kill();
    agent.spawn();
    assert!(agent.cli(&["status"]).status.success(), "{}", agent.log());
    assert_eq!(agent.stop(), Some(0));
}
