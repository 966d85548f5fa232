//! Sending one payload to one sink, with a hard timeout: a webhook through `ureq`
//! (HTTPS with the system's roots via the platform verifier, 2xx is success), or a
//! command run without a shell with the JSON on stdin (exit 0 is success; on timeout
//! it is killed). Blocking: called on smol's blocking pool. Errors never contain the
//! URL, which may itself be a secret (Slack hook URLs are).

use super::config::{host_of, Target};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn deliver(target: &Target, payload: &Value, timeout: Duration) -> Result<(), String> {
    match target {
        Target::Webhook { url, slack } => {
            let body = if *slack {
                super::payload::slack(payload)
            } else {
                payload.clone()
            };
            webhook(url, &body, timeout)
        }
        Target::Command { argv } => command(argv, payload, timeout),
    }
}

fn webhook(url: &str, body: &Value, timeout: Duration) -> Result<(), String> {
    let http = crate::tokens::oauth::client(timeout);
    let host = host_of(url).unwrap_or("?");
    match http
        .post(url)
        .header("content-type", "application/json")
        .send(body.to_string())
    {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!(
            "{host} answered HTTP {}",
            response.status().as_u16()
        )),
        Err(ureq::Error::Timeout(_)) => Err(format!("{host}: no answer within {timeout:?}")),
        Err(e) => Err(format!("{host}: {}", e.to_string().replace(url, "<url>"))),
    }
}

fn command(argv: &[String], payload: &Value, timeout: Duration) -> Result<(), String> {
    let program = argv.first().ok_or("empty argv")?;
    let mut child = Command::new(program)
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let mut text = payload.to_string();
    text.push('\n');
    if let Some(mut stdin) = child.stdin.take() {
        // A program that exits without reading gets EPIPE here: its exit status decides.
        let _ = stdin.write_all(text.as_bytes());
    }
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{program} exited with {status}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} did not finish within {timeout:?}; killed"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("{program}: {e}")),
        }
    }
}
