//! Shared harness: start the real agent on a temp socket and database, talk to it like
//! the real crawler does, and read the SQLite file it wrote.
#![allow(dead_code)]

use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_crawler-agent");

/// A temp directory with a database and socket path, and the agent process if running.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    /// Extra global options, e.g. `--config FILE`.
    pub args: Vec<String>,
    child: Option<Child>,
}

impl Agent {
    /// A directory only; the agent is not started (for CLI tests).
    pub fn new() -> Agent {
        Agent {
            dir: tempfile::tempdir().expect("temp dir"),
            env: Vec::new(),
            args: Vec::new(),
            child: None,
        }
    }

    /// Starts `serve` with the given `CRAWLER_AGENT_*` settings and waits until it
    /// accepts connections.
    pub fn start(env: &[(&str, &str)]) -> Agent {
        let mut agent = Agent::new();
        agent.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        agent.spawn();
        agent
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("agent.db")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--db")
            .arg(self.db_path())
            .arg("--socket")
            .arg(self.socket())
            .env("HOME", self.dir.path())
            .env_remove("SOCKET_PATH")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("STATE_DIRECTORY")
            .env_remove("RUNTIME_DIRECTORY")
            .env_remove("CONFIGURATION_DIRECTORY")
            .env_remove("RUST_LOG")
            .env("CRAWLER_AGENT_LOG_LEVEL", "debug")
            .args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let child = self
            .command()
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start agent");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(self.socket()).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("agent exited early ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "agent did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// A field of /proc/<pid>/status, e.g. `VmRSS` (kB) or `Threads`.
    pub fn proc_status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field).and_then(|v| v.strip_prefix(':')))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// Open file descriptors of the agent.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// SIGTERM, then wait; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        unsafe_kill(child.id() as i32, "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("agent did not stop on SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, no cleanup.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs a CLI command against this agent's database and socket.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(args, &[])
    }

    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).output().expect("run cli")
    }

    /// Runs a CLI command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Adds a credential `gl` with the given token and returns the discovery job id.
    pub fn add_credential(&self, name: &str, token: &str) -> String {
        let out = self.cli_env(
            &[
                "credentials",
                "add",
                name,
                "--url",
                "https://gitlab.example.com",
                "--token-env",
                "TEST_TOKEN",
            ],
            &[("TEST_TOKEN", token)],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix("discovery job ")
                    .map(|r| r.split(' ').next().unwrap().to_string())
            })
            .expect("discovery job id")
    }

    /// Read-only connection to the agent's database.
    pub fn db(&self) -> Connection {
        let c =
            Connection::open_with_flags(self.db_path(), OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }

    pub fn connect(&self) -> Crawler {
        // A busy machine can leave the backlog full for a moment; retry briefly.
        for _ in 0..50 {
            if let Ok(stream) = UnixStream::connect(self.socket()) {
                return Crawler::from_stream(stream);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let e = UnixStream::connect(self.socket()).unwrap_err();
        panic!("cannot connect to the agent: {e}\n{}", self.log());
    }

    /// Waits until `sql` (returning one integer) yields `want`.
    pub fn wait_for(&self, sql: &str, want: i64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(v) = self.db().query_row(sql, [], |r| r.get::<_, i64>(0)) {
                if v == want {
                    return;
                }
                last = Some(v);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("`{sql}` gave {last:?}, wanted {want}\n{}", self.log());
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    pub fn job_status(&self, id: &str) -> String {
        self.db()
            .query_row("SELECT status FROM jobs WHERE id = ?1", [id], |r| r.get(0))
            .unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn unsafe_kill(pid: i32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

pub fn signal(pid: i32, signal: &str) {
    unsafe_kill(pid, signal)
}

/// A client that behaves like the real crawler: `JSON.stringify` messages written
/// back to back with no separator (here in random chunk sizes, including single
/// bytes and splits inside UTF-8 characters), replies split by counting `{` and `}`
/// without regard to strings, each read decoded as UTF-8 on its own.
pub struct Crawler {
    pub stream: UnixStream,
    rng: fastrand::Rng,
    inbox: String,
    pub chunked: bool,
}

impl Crawler {
    pub fn connect(path: &Path) -> Crawler {
        Crawler::from_stream(UnixStream::connect(path).expect("connect"))
    }

    pub fn from_stream(stream: UnixStream) -> Crawler {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Crawler {
            stream,
            rng: fastrand::Rng::with_seed(0x5eed),
            inbox: String::new(),
            chunked: true,
        }
    }

    pub fn message(kind: &str, job_id: Option<&str>, data: Value) -> Value {
        let mut m = json!({"type": kind, "timestamp": "2025-07-12T10:20:00.001Z"});
        if let Some(id) = job_id {
            m["jobId"] = json!(id);
        }
        m["data"] = data;
        m
    }

    /// Writes one message as the crawler does.
    pub fn send(&mut self, message: &Value) {
        let bytes = serde_json::to_vec(message).unwrap();
        self.send_raw(&bytes);
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        if !self.chunked {
            self.stream.write_all(bytes).unwrap();
            return;
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = match self.rng.u8(..4) {
                0 => 1,
                1 => self.rng.usize(1..8),
                _ => self.rng.usize(1..256),
            }
            .min(rest.len());
            self.stream.write_all(&rest[..n]).unwrap();
            rest = &rest[n..];
        }
    }

    pub fn send_type(&mut self, kind: &str, job_id: Option<&str>, data: Value) {
        self.send(&Self::message(kind, job_id, data));
    }

    /// The crawler's reply parser: next complete object, by brace counting.
    pub fn recv(&mut self) -> Value {
        loop {
            if let Some(start) = self.inbox.find('{') {
                let mut depth = 0i64;
                for (i, c) in self.inbox[start..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        let end = start + i + 1;
                        let text = self.inbox[start..end].to_string();
                        self.inbox.drain(..end);
                        return serde_json::from_str(&text)
                            .unwrap_or_else(|e| panic!("crawler could not parse {text:?}: {e}"));
                    }
                }
            }
            let mut chunk = [0u8; 7];
            let n = self.stream.read(&mut chunk).expect("read reply");
            assert!(n > 0, "agent closed the connection");
            // Per-chunk decoding, like data.toString() in the crawler.
            self.inbox.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }

    /// Sends a job_request and returns the jobs of the reply.
    pub fn request_jobs(&mut self) -> Vec<Value> {
        self.send_type("job_request", None, json!({}));
        let reply = self.recv();
        assert_eq!(reply["type"], "job_response", "{reply}");
        reply["data"]["jobs"]
            .as_array()
            .expect("jobs array")
            .clone()
    }

    pub fn request_one(&mut self) -> Value {
        let jobs = self.request_jobs();
        assert_eq!(jobs.len(), 1, "expected one job, got {jobs:?}");
        jobs[0].clone()
    }

    /// True when nothing arrives within `wait`.
    pub fn silent_for(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut b = [0u8; 1];
        let quiet = match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(_) => true,
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        quiet
    }
}
