//! The real agent as a child process: a temp directory with its database, socket and
//! log file, `serve` started and stopped by signal, and the CLI run against it.

use super::crawler::Crawler;
use super::wait::wait_until;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_crawler-agent");

/// A temp directory with a database and socket path, and the agent process if running.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    /// Extra global options, e.g. `--config FILE`.
    pub args: Vec<String>,
    /// Variables removed from the environment after `env` is applied (e.g. the
    /// harness's own `CRAWLER_AGENT_LOG_LEVEL`, to let a config file decide).
    pub unset: Vec<String>,
    child: Option<Child>,
}

impl Agent {
    /// A directory only; the agent is not started (for CLI tests).
    pub fn new() -> Agent {
        Agent {
            dir: tempfile::tempdir().expect("temp dir"),
            env: Vec::new(),
            args: Vec::new(),
            unset: Vec::new(),
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
        for k in &self.unset {
            cmd.env_remove(k);
        }
        cmd
    }

    pub fn spawn(&mut self) {
        self.spawn_polling(Duration::from_millis(10));
    }

    /// [`Agent::spawn`], checking for the socket every `every`; returns the time from
    /// starting the process to its first accepted connection.
    pub fn spawn_polling(&mut self, every: Duration) -> Duration {
        let started = Instant::now();
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
        let socket = self.socket();
        let child = self.child.as_mut().unwrap();
        let mut exited = None;
        let accepting = wait_until(Duration::from_secs(20), every, || {
            UnixStream::connect(&socket).is_ok() || {
                exited = child.try_wait().unwrap();
                exited.is_some()
            }
        });
        let ready = started.elapsed();
        if let Some(status) = exited {
            panic!("agent exited early ({status}):\n{}", self.log());
        }
        assert!(accepting, "agent did not start:\n{}", self.log());
        // The socket accepts as soon as it is bound, before the database is opened and
        // migrated: wait for the schema too (whatever the log level).
        let db = self.db_path();
        let opened = wait_until(Duration::from_secs(20), every, || {
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)))
                .is_ok_and(|v| v > 0)
        });
        assert!(opened, "agent did not open its database:\n{}", self.log());
        ready
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

    /// Waits until the agent has handled the harness's start-up probe (a connection by
    /// our own uid that sends nothing is not recorded; the agent logs it at debug
    /// level), so a test that counts connections or slots starts from none.
    pub fn wait_probe_handled(&self) {
        let handled = wait_until(Duration::from_secs(15), Duration::from_millis(20), || {
            self.log().contains("a probe by the agent's own uid")
        });
        assert!(
            handled,
            "the start-up probe was not handled:\n{}",
            self.log()
        );
    }

    /// SIGTERM, then wait; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        self.stop_with("TERM")
    }

    /// Sends `signal` (e.g. "INT"), then waits; returns the exit status code.
    pub fn stop_with(&mut self, signal: &str) -> Option<i32> {
        let mut child = self.child.take()?;
        unsafe_kill(child.id() as i32, signal);
        let mut status = None;
        wait_until(Duration::from_secs(20), Duration::from_millis(10), || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        match status {
            Some(status) => status.code(),
            None => {
                let _ = child.kill();
                panic!("agent did not stop on SIG{signal}:\n{}", self.log());
            }
        }
    }

    /// Waits up to `limit` for the agent to exit on its own; its exit code, if it did.
    pub fn exit_within(&mut self, limit: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let mut status = None;
        wait_until(limit, Duration::from_millis(10), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        let code = status?.code();
        self.child = None;
        code
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

    /// Runs `jobs add` for `credential`, `entity_type` and `entity_id` with `extra`
    /// flags, which must succeed; returns its stdout (the new job's id).
    pub fn add_job(
        &self,
        credential: &str,
        entity_type: &str,
        entity_id: &str,
        extra: &[&str],
    ) -> String {
        let mut args = vec![
            "jobs",
            "add",
            "--credential",
            credential,
            "--type",
            entity_type,
            "--entity-id",
            entity_id,
        ];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    /// Runs `credentials add NAME` for gitlab.example.com with `token` and `extra` flags.
    pub fn credentials_add(&self, name: &str, token: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "credentials",
            "add",
            name,
            "--url",
            "https://gitlab.example.com",
            "--token-env",
            "TEST_TOKEN",
        ];
        args.extend_from_slice(extra);
        self.cli_env(&args, &[("TEST_TOKEN", token)])
    }

    /// Adds credential `name` with the given token and returns the discovery job id.
    pub fn add_credential(&self, name: &str, token: &str) -> String {
        let out = self.credentials_add(name, token, &[]);
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

    pub fn connect(&self) -> Crawler {
        // A busy machine can leave the backlog full for a moment; retry briefly.
        let mut stream = None;
        wait_until(Duration::from_secs(1), Duration::from_millis(20), || {
            stream = UnixStream::connect(self.socket()).ok();
            stream.is_some()
        });
        if let Some(stream) = stream {
            return Crawler::from_stream(stream);
        }
        let e = UnixStream::connect(self.socket()).unwrap_err();
        panic!("cannot connect to the agent: {e}\n{}", self.log());
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
