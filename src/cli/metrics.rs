//! `crawler-agent metrics`: the agent's state in the Prometheus text format.
//!
//! The text is rendered by the store's read side ([`crate::store::read::metrics`]), the
//! same as the running agent's `/metrics` endpoint; this command adds whether the
//! agent answers on its socket. The packaged timer writes this for node_exporter's
//! textfile collector.

use super::{ok, Env};
use crate::store::read::metrics;
use std::process::ExitCode;

pub fn run(env: &Env) -> anyhow::Result<ExitCode> {
    let reader = env.reader()?;
    let conn = reader.conn()?;
    let up = crate::server::listener::answers(&env.loaded.socket);
    super::output::line(metrics::render(&conn, &env.loaded.database, up)?.trim_end())?;
    ok()
}
