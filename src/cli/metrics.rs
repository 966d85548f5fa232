//! `crawler-agent metrics`: the agent's state in the Prometheus text format.
//!
//! The families come from the store's read side ([`crate::store::read::metrics`]), the
//! same as the running agent's `/metrics` endpoint, and the text from
//! [`crate::exposition`]; this command adds whether the agent answers on its socket,
//! and the running agent's `process_*` figures when its pid is known (from its
//! persisted figures) and readable. The packaged timer writes this for node_exporter's
//! textfile collector.

use super::{ok, Env};
use crate::exposition::{self, process};
use crate::store::read::{metrics, runtime};
use std::process::ExitCode;

pub fn run(env: &Env) -> anyhow::Result<ExitCode> {
    let reader = env.reader()?;
    let conn = reader.conn()?;
    let up = crate::server::listener::answers(&env.loaded.socket);
    let families = metrics::families(&conn, &env.loaded.database, up)?;
    // Only a live agent's pid: a stale row may name a pid reused by another process.
    let process = match runtime::load(&conn)? {
        Some(r) if up && runtime::age_seconds(&r) < 30.0 => {
            i32::try_from(r.pid).map_or_else(|_| Vec::new(), process::families)
        }
        _ => Vec::new(),
    };
    super::output::line(exposition::render(families, process).trim_end())?;
    ok()
}
