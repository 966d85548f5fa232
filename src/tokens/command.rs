//! A credential helper command: run without a shell, read a token from its stdout.
//!
//! The command prints either the token itself (first line) or a JSON object
//! `{"access_token": "...", "expires_at": "RFC 3339"}` (or `"expires_in": seconds`).
//! It runs with no stdin, in its own process group, within a timeout (the whole group
//! is killed then); a non-zero exit is a failure. Its stderr is logged line by line
//! with anything it printed on stdout masked, on failure as on success.

use crate::secret::Secret;
use crate::store::token_refreshes::Fetched;
use crate::time::Timestamp;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest output read from each of the helper's pipes.
const PIPE_LIMIT: usize = 1 << 20;
/// After the helper exits, how long a process it left behind may keep its pipes open
/// before its process group is killed and reading stops.
const PIPES_GRACE: Duration = Duration::from_millis(200);

/// Runs `command_line` and returns the token it printed. The helper runs in its own
/// process group; at the timeout the whole group is killed, and a background process
/// it left holding the pipes stops the reading (and is killed) within
/// [`PIPES_GRACE`], so one run never takes longer than `timeout` plus that grace.
pub fn run(command_line: &str, timeout: Duration) -> Result<Fetched, String> {
    let argv = shlex::split(command_line)
        .filter(|a| !a.is_empty())
        .ok_or("the token command is empty or has unbalanced quotes")?;
    let program = argv[0].clone();
    let mut child = Command::new(&program)
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run token command {program}: {e}"))?;
    let group = Group(child.id());
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        let out = Arc::new(Mutex::new(Vec::new()));
        let (sink, done) = (out.clone(), done_tx.clone());
        std::thread::spawn(move || {
            if let Some(mut p) = pipe {
                let mut chunk = [0u8; 8192];
                loop {
                    match p.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut held = sink.lock().unwrap_or_else(|e| e.into_inner());
                            let room = PIPE_LIMIT.saturating_sub(held.len());
                            held.extend_from_slice(&chunk[..n.min(room)]);
                        }
                    }
                }
            }
            let _ = done.send(());
        });
        out
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    drop(done_tx);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > timeout => {
                group.kill();
                let _ = child.wait();
                return Err(format!(
                    "token command {program} did not finish within {timeout:?}"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                group.kill();
                return Err(format!("waiting for token command {program}: {e}"));
            }
        }
    };
    // Both pipes at EOF, or a process the helper left behind still holds one.
    let grace_end = Instant::now() + PIPES_GRACE;
    let mut closed = 0;
    while closed < 2 {
        let left = grace_end.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(()) => closed += 1,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                log::warn!("token command {program} exited but left a process holding its output; its process group is killed");
                group.kill();
                break;
            }
        }
    }
    let take = |buf: &Arc<Mutex<Vec<u8>>>| {
        let held = buf.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&held).into_owned()
    };
    let (out, err) = (take(&stdout), take(&stderr));
    let fetched = if status.success() {
        parse_output(&out)
    } else {
        Err(format!("token command {program} failed ({status})"))
    };
    // Whatever the outcome, anything on stdout may be a token: mask it in stderr lines.
    let masks = secrets_in(&out);
    for line in err.lines().filter(|l| !l.trim().is_empty()).take(20) {
        // Bounded work: a line is cut before masking (wide enough that a token at the
        // cut is still masked whole) and again for the log.
        let mut line: String = line.chars().take(4096).collect();
        for secret in &masks {
            line = line.replace(secret.as_str(), "***");
        }
        log::warn!(
            "token command {program}: {}",
            line.chars().take(300).collect::<String>()
        );
    }
    fetched
}

/// The helper's process group (its pid, as it leads the group).
struct Group(u32);

impl Group {
    /// SIGKILL to every process of the group (the helper and what it started).
    fn kill(&self) {
        if let Ok(pid) = i32::try_from(self.0) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Strings in a helper's stdout that may be a token: the parsed token, and every
/// word of four characters or more (the output of a failed run is not parsed).
fn secrets_in(out: &str) -> Vec<String> {
    let mut found: Vec<String> = out
        .split(|c: char| c.is_whitespace() || matches!(c, '"' | ',' | ':' | '{' | '}'))
        .filter(|w| w.len() >= 4)
        .map(str::to_string)
        .collect();
    if let Ok(f) = parse_output(out) {
        found.push(f.access_token.expose().to_string());
    }
    // Longest first, so a token is masked whole before any part of it.
    found.sort_by_key(|w| std::cmp::Reverse(w.len()));
    found.dedup();
    found.truncate(1000);
    found
}

/// Reads a helper's output: a bare token, or JSON with `access_token`.
pub fn parse_output(out: &str) -> Result<Fetched, String> {
    let out = out.trim();
    let (token, expires_at) = if out.starts_with('{') {
        #[derive(serde::Deserialize)]
        struct Helper {
            access_token: String,
            expires_at: Option<String>,
            expires_in: Option<f64>,
        }
        // serde's message could quote the input, which may hold the token: keep only
        // the position.
        let h: Helper = serde_json::from_str(out).map_err(|e| {
            format!(
                "token output looks like JSON but is not {{\"access_token\": ...}} (line {}, column {})",
                e.line(),
                e.column()
            )
        })?;
        let expires = match (h.expires_at.as_deref(), h.expires_in) {
            (Some(at), _) => {
                Some(Timestamp::parse(at).ok_or("expires_at is not an RFC 3339 time")?)
            }
            (None, Some(secs)) if secs.is_finite() && secs > 0.0 => {
                Some(Timestamp::now().plus(Duration::from_secs_f64(secs.min(1e9))))
            }
            _ => None,
        };
        (h.access_token, expires)
    } else {
        (
            out.lines().next().unwrap_or_default().trim().to_string(),
            None,
        )
    };
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the token contains spaces or control characters".into());
    }
    Ok(Fetched {
        access_token: Secret::new(token),
        expires_at,
        refresh_token: None,
    })
}
