//! A credential helper command: run without a shell, read a token from its stdout.
//!
//! The command prints either the token itself (first line) or a JSON object
//! `{"access_token": "...", "expires_at": "RFC 3339"}` (or `"expires_in": seconds`).
//! It runs with no stdin, within a timeout; a non-zero exit is a failure. Its stderr
//! is logged line by line with the token masked.

use crate::secret::Secret;
use crate::store::credentials::Fetched;
use crate::time::Timestamp;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `command_line` and returns the token it printed.
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
        .spawn()
        .map_err(|e| format!("cannot run token command {program}: {e}"))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(1 << 20).read_to_end(&mut out);
            }
            out
        })
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
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "token command {program} did not finish within {timeout:?}"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for token command {program}: {e}")),
        }
    };
    let out = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
    let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    let fetched = if status.success() {
        parse_output(&out)
    } else {
        Err(format!("token command {program} failed ({status})"))
    };
    let mask = fetched
        .as_ref()
        .ok()
        .map(|f| f.access_token.expose().to_string());
    for line in err.lines().filter(|l| !l.trim().is_empty()).take(20) {
        let line = match &mask {
            Some(token) if !token.is_empty() => line.replace(token.as_str(), "***"),
            _ => line.to_string(),
        };
        log::warn!(
            "token command {program}: {}",
            line.chars().take(300).collect::<String>()
        );
    }
    fetched
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
