//! `status --watch` measures liveness on every redraw: a dead agent shows as NOT
//! REACHABLE on the first redraw that starts after it died.

mod common;
use common::{Agent, BIN};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The escape sequence that starts every redraw.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// Complete frames printed so far (the last one may still be being written).
fn frames(text: &str) -> Vec<String> {
    let mut parts: Vec<String> = text.split(CLEAR).skip(1).map(str::to_string).collect();
    parts.pop();
    parts
}

#[test]
fn a_dead_agent_shows_as_down_on_the_next_redraw() {
    let mut agent = Agent::start(&[]);
    agent.add_credential("gl", "tok");
    let mut watch = Command::new(BIN)
        .arg("--db")
        .arg(agent.db_path())
        .arg("--socket")
        .arg(agent.socket())
        .args(["status", "--watch"])
        .env("HOME", agent.dir.path())
        .env_remove("CONFIGURATION_DIRECTORY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = Arc::new(Mutex::new(String::new()));
    let reader = {
        let out = out.clone();
        let mut stdout = watch.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let text = || out.lock().unwrap().clone();
    let answering = common::wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
        frames(&text())
            .iter()
            .any(|f| f.contains("agent     answering"))
    });
    assert!(answering, "{}", text());

    agent.kill();
    // The frame being drawn now may have probed before the kill; the one after it
    // started after the kill.
    let seen = text().matches(CLEAR).count();
    let down = common::wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
        frames(&text()).len() > seen
    });
    assert!(down, "the watch stopped redrawing: {}", text());
    let all = frames(&text());
    let next = &all[seen];
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = reader.join();
    assert!(
        next.contains("NOT REACHABLE"),
        "the first redraw started after the agent died says:\n{next}"
    );
}
