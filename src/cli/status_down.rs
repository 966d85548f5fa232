//! What `status` says when nothing answers on the socket: whether an agent wrote to
//! this database lately (so it may be serving another socket), which agent holds the
//! database's lock, and the next step (`systemctl start crawler-agent` when the unit
//! is installed, else `crawler-agent serve` with this command's paths).

use super::Env;
use crate::store::read::runtime;
use crate::time::Timestamp;
use serde::Serialize;
use std::path::Path;

/// Where the packages install the systemd unit.
const UNIT_FILES: &[&str] = &[
    "/etc/systemd/system/crawler-agent.service",
    "/usr/lib/systemd/system/crawler-agent.service",
    "/lib/systemd/system/crawler-agent.service",
];

/// An agent wrote this recently: it is probably running, elsewhere.
const RECENT_SECONDS: f64 = 30.0;

/// The diagnosis, printed under "agent NOT REACHABLE" and in `--json`.
#[derive(Debug, Serialize)]
pub struct Down {
    /// When an agent last wrote to this database (None: never, or no database).
    pub last_agent_write_at: Option<String>,
    pub seconds_since_last_agent_write: Option<f64>,
    /// A running agent holds this database's lock: its pid and the socket it serves.
    pub held_by_pid: Option<u32>,
    pub held_by_socket: Option<String>,
    /// What the operator can do next, as one sentence.
    pub next_step: String,
}

/// The diagnosis for `env`'s database, read through `conn` when the file exists.
pub fn diagnose(conn: Option<&rusqlite::Connection>, env: &Env) -> anyhow::Result<Down> {
    let last = match conn {
        Some(c) => runtime::last_agent_write(c)?,
        None => None,
    };
    let age = last
        .as_deref()
        .and_then(Timestamp::parse)
        .map(|t| t.age().as_secs_f64());
    let holder = runtime::lock_holder(&env.loaded.database).filter(|(pid, _)| is_agent(*pid));
    let ours = env.loaded.socket.display().to_string();
    let next_step = match (&holder, age) {
        (Some((pid, socket)), _) if !socket.is_empty() && *socket != ours => format!(
            "agent pid {pid} serves this database on {socket}: run `crawler-agent --socket {} \
             status`, or set socket.path to it",
            quote(socket)
        ),
        (Some((pid, _)), _) => format!(
            "agent pid {pid} holds this database but does not answer: see its log \
             (`journalctl -u crawler-agent`), or restart it"
        ),
        (None, Some(age)) if age <= RECENT_SECONDS => format!(
            "is it running on another socket? (`crawler-agent config show` prints \
             socket.path) If not, start it: {}",
            start_command(env)
        ),
        _ => format!("start it: {}", start_command(env)),
    };
    Ok(Down {
        last_agent_write_at: last,
        seconds_since_last_agent_write: age,
        held_by_pid: holder.as_ref().map(|h| h.0),
        held_by_socket: holder.map(|h| h.1).filter(|s| !s.is_empty()),
        next_step,
    })
}

/// What `status` prints for `down`: what the database says, then the next step.
pub fn lines(down: &Down, database_exists: bool) -> [String; 2] {
    let fact = match (
        &down.last_agent_write_at,
        down.seconds_since_last_agent_write,
    ) {
        _ if !database_exists => "no database here yet: no agent has written here".into(),
        (Some(at), Some(age)) => {
            format!("an agent wrote to this database {} ago ({at})", ago(age))
        }
        (Some(at), None) => format!("an agent last wrote to this database at {at}"),
        (None, _) => "no agent has written here yet".into(),
    };
    [
        format!("          {fact}"),
        format!("next      {}", down.next_step),
    ]
}

/// `2 s`, `5 min`, `3 h`, `4 days`.
fn ago(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// The command that starts the agent here.
fn start_command(env: &Env) -> String {
    if UNIT_FILES.iter().any(|f| Path::new(f).exists()) {
        return "`systemctl start crawler-agent`".into();
    }
    let mut cmd = String::from("`crawler-agent");
    if let Some(file) = &env.loaded.file {
        cmd.push_str(&format!(" --config {}", quote(&file.display().to_string())));
    }
    cmd.push_str(&format!(
        " --db {} --socket {} serve`",
        quote(&env.loaded.database.display().to_string()),
        quote(&env.loaded.socket.display().to_string())
    ));
    cmd
}

fn quote(s: &str) -> String {
    shlex::try_quote(s).map_or_else(|_| s.to_string(), |q| q.into_owned())
}

/// Whether `pid` is a running crawler-agent (the lock file outlives its agent, and
/// its pid may since belong to another program).
fn is_agent(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // EPERM: it runs, as another user.
    let alive = matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None),
        Ok(()) | Err(nix::errno::Errno::EPERM)
    );
    alive && serves(pid).unwrap_or(true)
}

/// Whether process `pid` is a `crawler-agent … serve` (not, say, another command of
/// the CLI that got the dead agent's pid); `None` where the platform does not say.
#[cfg(target_os = "linux")]
fn serves(pid: u32) -> Option<bool> {
    use std::io::Read;
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let mut cmdline = Vec::new();
    std::fs::File::open(format!("/proc/{pid}/cmdline"))
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut cmdline)
        .ok()?;
    Some(
        name.trim().starts_with("crawler-agent")
            && cmdline.split(|b| *b == 0).any(|arg| arg == b"serve"),
    )
}

#[cfg(not(target_os = "linux"))]
fn serves(_pid: u32) -> Option<bool> {
    None
}

#[cfg(test)]
mod tests {
    use super::ago;

    #[test]
    fn ages_read_like_a_person_says_them() {
        assert_eq!(ago(2.4), "2 s");
        assert_eq!(ago(-1.0), "0 s");
        assert_eq!(ago(600.0), "10 min");
        assert_eq!(ago(3.0 * 3600.0), "3 h");
        assert_eq!(ago(5.0 * 86_400.0), "5 days");
        assert_eq!(ago(f64::INFINITY), format!("{} days", u64::MAX / 86_400));
    }
}
