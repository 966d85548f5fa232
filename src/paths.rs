//! Where things live: the default locations when nobody said (system locations under
//! systemd, the user's own directories otherwise), the database and socket paths
//! resolved against them, and the group that owns the socket. Shared by the server
//! and the CLI; it depends on neither.
//!
//! Under systemd the unit's `StateDirectory=`, `RuntimeDirectory=` and
//! `ConfigurationDirectory=` arrive as `$STATE_DIRECTORY`, `$RUNTIME_DIRECTORY` and
//! `$CONFIGURATION_DIRECTORY`. Run by hand (any user, root included) the agent uses
//! the XDG data, runtime and config directories, so `crawler-agent serve` works on a
//! laptop with no setup at all. On macOS (via `directories`) there is no runtime
//! directory: the socket, the database and the config file all live in
//! `~/Library/Application Support/crawler-agent/`, private to the user.
//!
//! Socket paths have a platform limit (`sun_path`: 108 bytes on Linux, 104 on macOS
//! and the BSDs, the terminating NUL included); [`check_socket_path`] refuses a longer
//! one with a suggestion rather than letting `bind` fail obscurely.

use std::path::{Path, PathBuf};

pub const DATABASE_FILE: &str = "agent.db";
pub const SOCKET_FILE: &str = "agent.sock";
pub const CONFIG_FILE: &str = "config.toml";

/// The locations used when neither the config file, the environment nor a flag
/// names one.
#[derive(Debug, Clone)]
pub struct DefaultPaths {
    pub database: PathBuf,
    pub socket: PathBuf,
    /// The config file read when `--config` is not given, if it exists.
    pub config_file: Option<PathBuf>,
}

impl DefaultPaths {
    pub fn detect(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        // systemd may pass several colon-separated directories; the first is ours.
        let systemd_dir = |var: &str| {
            env(var)
                .and_then(|v| v.split(':').next().map(PathBuf::from))
                .filter(|p| !p.as_os_str().is_empty())
        };
        let user = directories::ProjectDirs::from("", "", "crawler-agent");
        let user_data = || {
            user.as_ref()
                .map(|d| d.data_dir().to_path_buf())
                .ok_or_else(|| {
                    "cannot find a home directory for the default database location; \
                 pass --db and --socket (or set HOME)"
                        .to_string()
                })
        };

        let database = match systemd_dir("STATE_DIRECTORY") {
            Some(dir) => dir.join(DATABASE_FILE),
            None => user_data()?.join(DATABASE_FILE),
        };
        let socket = match systemd_dir("RUNTIME_DIRECTORY") {
            Some(dir) => dir.join(SOCKET_FILE),
            // XDG_RUNTIME_DIR is unset for root and over plain `su`, and macOS has
            // no runtime directory at all; the data directory is private to the
            // user too, so it is a safe fallback.
            None => match user.as_ref().and_then(|d| d.runtime_dir()) {
                Some(dir) => dir.join(SOCKET_FILE),
                None => user_data()?.join(SOCKET_FILE),
            },
        };
        let config_file = match systemd_dir("CONFIGURATION_DIRECTORY") {
            Some(dir) => Some(dir.join(CONFIG_FILE)),
            None => user.as_ref().map(|d| d.config_dir().join(CONFIG_FILE)),
        }
        .filter(|p| p.exists());
        Ok(DefaultPaths {
            database,
            socket,
            config_file,
        })
    }

    /// The database file: `configured` (`storage.path`), or the default when empty.
    pub fn database_or(&self, configured: &str) -> PathBuf {
        configured_or(configured, &self.database)
    }

    /// The socket path: `configured` (`socket.path`), or the default when empty.
    pub fn socket_or(&self, configured: &str) -> PathBuf {
        configured_or(configured, &self.socket)
    }
}

fn configured_or(configured: &str, default: &Path) -> PathBuf {
    if configured.is_empty() {
        default.to_path_buf()
    } else {
        PathBuf::from(configured)
    }
}

/// The longest socket path `bind` accepts here, in bytes: `sun_path` less its NUL
/// (107 on Linux, 103 on macOS and the BSDs).
pub const MAX_SOCKET_PATH: usize = std::mem::size_of::<nix::libc::sockaddr_un>()
    - std::mem::offset_of!(nix::libc::sockaddr_un, sun_path)
    - 1;

/// A socket path longer than the platform allows; says what to do instead.
#[derive(Debug, thiserror::Error)]
#[error(
    "socket path {path} is {len} bytes, longer than the {max} bytes {os} allows for a \
     Unix socket; choose a shorter one with --socket, socket.path or SOCKET_PATH{hint}",
    path = path.display(),
    len = path.as_os_str().len(),
    max = MAX_SOCKET_PATH,
    os = std::env::consts::OS
)]
pub struct SocketPathTooLong {
    pub path: PathBuf,
    /// ", e.g. /Users/me/.crawler-agent/agent.sock" when one fits, else empty.
    hint: String,
}

/// Refuses a socket path `bind` could not take, naming a shorter one that would do.
pub fn check_socket_path(path: &Path) -> Result<(), SocketPathTooLong> {
    if path.as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok(());
    }
    // In a directory of its own, which `bind` creates private (see `ensure_dir`).
    let hint = directories::BaseDirs::new()
        .map(|d| d.home_dir().join(".crawler-agent").join(SOCKET_FILE))
        .filter(|p| p.as_os_str().len() <= MAX_SOCKET_PATH)
        .map(|p| format!(", e.g. {}", p.display()))
        .unwrap_or_default();
    Err(SocketPathTooLong {
        path: path.to_path_buf(),
        hint,
    })
}

/// The mode of directories we create. On macOS every user's primary group is the
/// shared `staff`, which new files and directories inherit: group access there would
/// let every local user reach the socket (and its tokens), so it is owner only.
const DIR_MODE: u32 = if cfg!(target_vendor = "apple") {
    0o700
} else {
    0o750
};

/// Creates `dir` (and its parents) if missing, private to the owner when we make it.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// A `socket.group` that names no group on this machine.
#[derive(Debug, thiserror::Error)]
#[error("socket group '{0}' does not exist")]
pub struct NoSuchGroup(pub String);

/// The gid of the socket's group, given by name or number; `None` for empty.
pub fn resolve_group(group: &str) -> Result<Option<u32>, NoSuchGroup> {
    if group.is_empty() {
        return Ok(None);
    }
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(Some(gid));
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(Some(g.gid.as_raw())),
        _ => Err(NoSuchGroup(group.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path of exactly `len` bytes inside `dir`.
    fn path_of_len(dir: &Path, len: usize) -> PathBuf {
        let base = dir.join("s");
        let pad = len - base.as_os_str().len();
        dir.join(format!("s{}", "x".repeat(pad)))
    }

    #[test]
    fn the_limit_is_the_one_bind_enforces() {
        let dir = tempfile::tempdir().unwrap();
        let longest = path_of_len(dir.path(), MAX_SOCKET_PATH);
        assert!(check_socket_path(&longest).is_ok());
        std::os::unix::net::UnixListener::bind(&longest).expect("the longest path binds");
        let over = path_of_len(dir.path(), MAX_SOCKET_PATH + 1);
        assert!(std::os::unix::net::UnixListener::bind(&over).is_err());
        let err = check_socket_path(&over).unwrap_err().to_string();
        assert!(
            err.contains(&format!("{} bytes", MAX_SOCKET_PATH + 1)),
            "{err}"
        );
        assert!(
            err.contains(&format!("the {MAX_SOCKET_PATH} bytes")),
            "{err}"
        );
        assert!(err.contains("--socket"), "{err}");
    }

    #[test]
    fn the_limit_matches_the_platform() {
        let expected = if cfg!(any(target_os = "linux", target_os = "android")) {
            107
        } else {
            103
        };
        assert_eq!(MAX_SOCKET_PATH, expected);
    }
}
