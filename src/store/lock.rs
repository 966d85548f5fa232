//! One agent per database: the exclusive lock `serve` holds on `<database>.lock`.
//!
//! An advisory `flock(2)` on a file beside the database, not a SQLite lock: the CLI
//! never takes it, so every command keeps working beside the running agent, while a
//! second `serve` on the same file (whatever its socket) is refused before it binds a
//! socket or touches the database. The lock belongs to the open file description, so
//! the kernel releases it when the process ends however it ends (a crash, SIGKILL);
//! the file is opened close-on-exec, so no token helper or other child inherits it and
//! keeps it past the agent. The file itself stays (removing it would race with the next
//! agent opening it) and holds the holder's pid and socket, for the refusal message.

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock, held until dropped (or the process ends).
#[derive(Debug)]
pub struct AgentLock {
    _file: Flock<File>,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another agent holds the lock: `holder` is what it wrote ("agent pid N (socket S)").
    #[error("database in use by {holder}: {database} (one agent per database)")]
    InUse { database: PathBuf, holder: String },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The lock file of `database`, beside the file the path finally names (a symlinked
/// path and the real one share one lock).
pub fn lock_path(database: &Path) -> PathBuf {
    let database = database
        .canonicalize()
        .unwrap_or_else(|_| database.to_path_buf());
    let mut name = database.into_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// Longest holder description read back from a lock file.
const MAX_HOLDER_BYTES: u64 = 1024;

impl AgentLock {
    /// Takes the lock for `database` without waiting, and records `socket` and our pid
    /// in it.
    pub fn acquire(database: &Path, socket: &Path) -> Result<AgentLock, LockError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = lock_path(database);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = database.parent() {
            crate::paths::ensure_dir(dir).map_err(io)?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((file, Errno::EWOULDBLOCK)) => {
                return Err(LockError::InUse {
                    database: database.to_path_buf(),
                    holder: holder(&file),
                })
            }
            Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
        };
        let text = format!(
            "agent pid {} (socket {})\n",
            std::process::id(),
            socket.display()
        );
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        Ok(AgentLock { _file: file, path })
    }
}

/// What the holding agent wrote into the lock file, bounded and on one line.
fn holder(file: &File) -> String {
    let mut text = String::new();
    let read = Read::take(file, MAX_HOLDER_BYTES).read_to_string(&mut text);
    let line = text.lines().next().unwrap_or("").trim();
    match read {
        Ok(_) if line.starts_with("agent pid ") => {
            line.chars().filter(|c| !c.is_control()).collect()
        }
        // Locked between its open and its write, or written by something else.
        _ => "another agent".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_database_is_refused_with_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub").join("agent.db");
        let first = AgentLock::acquire(&db, Path::new("/run/a.sock")).unwrap();
        let err = AgentLock::acquire(&db, Path::new("/run/b.sock")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "in use by agent pid {} (socket /run/a.sock)",
                std::process::id()
            )),
            "{text}"
        );
        // The same file through a symlink is the same database.
        let link = dir.path().join("link.db");
        std::fs::write(&db, b"").unwrap();
        std::os::unix::fs::symlink(&db, &link).unwrap();
        let err = AgentLock::acquire(&link, Path::new("/run/c.sock")).unwrap_err();
        assert!(err.to_string().contains("socket /run/a.sock"), "{err}");
        drop(first);
        let again = AgentLock::acquire(&db, Path::new("/run/b.sock")).unwrap();
        let written = std::fs::read_to_string(&again.path).unwrap();
        assert_eq!(
            written,
            format!("agent pid {} (socket /run/b.sock)\n", std::process::id())
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&again.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
