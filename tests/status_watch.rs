//! `status --watch` measures liveness on every redraw: a dead agent shows as NOT
//! REACHABLE on the first redraw that starts after it died. Into a pipe it writes plain
//! snapshots under a header, no screen escapes; on a terminal (a pty from util-linux's
//! `script`, part of every Debian system) it redraws in place and cuts long cells.
//! Started before any database exists, it says how to start an agent until one runs.

mod common;
use common::{Agent, BIN};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The escape sequence that starts every redraw on a terminal.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// The header that starts every snapshot written into a pipe.
const HEADER: &str = "--- crawler-agent status ";

/// Complete frames printed so far (the last one may still be being written).
fn frames(text: &str) -> Vec<String> {
    let mut parts: Vec<String> = text.split(HEADER).skip(1).map(str::to_string).collect();
    parts.pop();
    parts
}

/// A `status --watch` into a pipe on `agent`'s database and socket: the child, the
/// thread collecting its output, and the output so far.
fn watch_into_a_pipe(
    agent: &Agent,
) -> (
    std::process::Child,
    std::thread::JoinHandle<()>,
    Arc<Mutex<String>>,
) {
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
    (watch, reader, out)
}

#[test]
fn a_dead_agent_shows_as_down_on_the_next_redraw() {
    let mut agent = Agent::start(&[]);
    agent.add_credential("gl", "tok");
    let (mut watch, reader, out) = watch_into_a_pipe(&agent);
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
    let seen = text().matches(HEADER).count();
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
    let all = text();
    assert!(
        !all.contains('\x1b'),
        "no escape sequence goes into a pipe:\n{all:?}"
    );
    assert!(
        all.contains("---\nagent     answering"),
        "each snapshot under its header:\n{all}"
    );
}

#[test]
fn a_watch_started_before_any_database_says_how_to_start_and_then_shows_the_agent() {
    let mut agent = Agent::new();
    let (mut watch, reader, out) = watch_into_a_pipe(&agent);
    let text = || out.lock().unwrap().clone();
    let waiting = common::wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
        frames(&text())
            .iter()
            .any(|f| f.contains("no database here yet") && f.contains("serve`"))
    });
    assert!(waiting, "{}", text());
    assert!(!agent.db_path().exists(), "the watch created no database");
    agent.spawn();
    let answering = common::wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
        frames(&text())
            .iter()
            .any(|f| f.contains("agent     answering"))
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = reader.join();
    assert!(
        answering,
        "the watch went on and found the agent:\n{}",
        text()
    );
}

/// Runs `args` against `agent` on a pseudo-terminal (util-linux `script`), with its
/// output (the terminal's) collected; returns the child and the collected text.
fn on_a_terminal(
    agent: &Agent,
    args: &str,
) -> (
    std::process::Child,
    Arc<Mutex<String>>,
    std::thread::JoinHandle<()>,
) {
    let command = format!(
        "'{BIN}' --db '{}' --socket '{}' {args}",
        agent.db_path().display(),
        agent.socket().display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-f", "-e", "-c", &command, "/dev/null"])
        .env("HOME", agent.dir.path())
        .env_remove("CONFIGURATION_DIRECTORY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("util-linux `script` runs the command on a pty");
    let out = Arc::new(Mutex::new(String::new()));
    let collected = out.clone();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
            *collected.lock().unwrap() = String::from_utf8_lossy(&bytes).into_owned();
        }
    });
    (child, out, reader)
}

#[test]
fn on_a_terminal_the_watch_redraws_in_place_and_lists_cut_long_cells() {
    let agent = Agent::start(&[]);
    agent.add_credential("gl", "tok");
    let (mut watch, out, reader) = on_a_terminal(&agent, "status --watch");
    let redrawn = common::wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
        out.lock().unwrap().matches(CLEAR).count() >= 2
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = reader.join();
    let text = out.lock().unwrap().clone();
    assert!(redrawn, "two redraws in place on a terminal:\n{text:?}");
    assert!(text.contains("agent     answering"), "{text:?}");

    let path = format!("acme/{}", "deep/".repeat(20));
    agent.add_job("gl", "group", "9", &["--path", &path]);
    let (mut list, out, reader) = on_a_terminal(&agent, "jobs list");
    let status = list.wait().unwrap();
    let _ = reader.join();
    let text = out.lock().unwrap().clone();
    assert!(status.success(), "{status}: {text:?}");
    assert!(!text.contains(&path), "cut on a terminal: {text:?}");
    assert!(
        text.contains("acme/deep/deep/") && text.contains('…'),
        "{text:?}"
    );
    // The same command into a pipe prints it whole.
    assert!(agent.ok(&["jobs", "list"]).contains(&path));
}
