//! `crawler-agent notify test`: sends a test event to every configured sink, now and
//! directly (not through the outbox), and prints each outcome; exit 1 if any failed.

use super::output;
use super::{fail, ok, Env};
use crate::notify::{config, payload, sink};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Send a test event to every sink and print each outcome
    Test,
}

pub fn run(command: Command, env: &Env) -> anyhow::Result<ExitCode> {
    let Command::Test = command;
    let notify = &env.loaded.config.notify;
    let sinks = config::sinks(notify);
    if sinks.is_empty() {
        output::line("no sinks configured ([[notify.webhook]], [[notify.command]])")?;
        return ok();
    }
    let event = serde_json::json!({
        "event": "test",
        "at": crate::time::Timestamp::now().to_string(),
        "agent": payload::hostname(),
        "subject": "notify test",
        "message": "a test notification from crawler-agent notify test",
        "severity": "info",
        "details": {},
    });
    let mut failed = 0;
    for s in &sinks {
        match sink::deliver(&s.target, &event, notify.timeout.0) {
            Ok(()) => output::line(format!("{}: ok", s.name))?,
            Err(e) => {
                failed += 1;
                output::line(format!("{}: failed: {e}", s.name))?;
            }
        }
    }
    if failed > 0 {
        return fail(format!("{failed} of {} sinks failed", sinks.len()));
    }
    ok()
}
