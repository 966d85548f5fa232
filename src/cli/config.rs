//! `crawler-agent config show | check`.

use super::output;
use super::{ok, Env};
use crate::config::unknown_env_vars;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print every effective value and where it came from
    Show {
        /// One JSON object: {"file": ..., "values": {"section.key": {"value", "source"}}}
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration (exit 2 if it does not load, 1 if this machine
    /// cannot serve it) and warn about unknown CRAWLER_AGENT_* environment variables
    Check,
}

pub fn run(cmd: Command, env: &Env) -> anyhow::Result<ExitCode> {
    let loaded = &env.loaded;
    match cmd {
        Command::Show { json: true } => {
            let values: serde_json::Map<String, serde_json::Value> = loaded
                .entries_as_written()
                .into_iter()
                .map(|(key, value)| {
                    // The TOML text of the value, as JSON.
                    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
                        .ok()
                        .and_then(|mut t| t.remove("v"))
                        .and_then(|v| serde_json::to_value(v).ok())
                        .unwrap_or(serde_json::Value::String(value));
                    let source = loaded.source(&key).to_string();
                    (key, serde_json::json!({"value": parsed, "source": source}))
                })
                .collect();
            let file = loaded.file.as_ref().map(|f| f.display().to_string());
            output::json(&serde_json::json!({"file": file, "values": values}))?;
            ok()
        }
        Command::Show { json: false } => {
            let file = loaded
                .file
                .as_ref()
                .map_or("none (embedded defaults)".to_string(), |f| {
                    f.display().to_string()
                });
            output::line(format!("# config file: {file}"))?;
            let mut section = String::new();
            for (key, value) in loaded.entries_as_written() {
                let (sec, name) = key.split_once('.').unwrap_or(("", &key));
                if sec != section {
                    output::line(format!("\n[{sec}]"))?;
                    section = sec.to_string();
                }
                output::line(format!("{name} = {value}  # {}", loaded.source(&key)))?;
            }
            ok()
        }
        // Loading already validated every value (main exits 1 on a bad config); what
        // is left is what depends on this machine.
        Command::Check => {
            for warning in env_warnings() {
                eprintln!("warning: {warning}");
            }
            if let Err(e) = crate::paths::resolve_group(&loaded.config.socket.group) {
                return super::fail(format!(
                    "socket.group (from {}): {e}",
                    loaded.source("socket.group")
                ));
            }
            let file = loaded
                .file
                .as_ref()
                .map_or("embedded defaults".into(), |f| f.display().to_string());
            output::line(format!("ok: {file}"))?;
            ok()
        }
    }
}

/// Warnings about `CRAWLER_AGENT_*` variables in this process's environment that are
/// not settings (a typo would otherwise be ignored without a word).
pub fn env_warnings() -> Vec<String> {
    let names: Vec<String> = std::env::vars_os()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect();
    unknown_env_vars(names.iter().map(String::as_str))
}
