//! `crawler-agent db backup`: a consistent copy of the live database through SQLite's
//! online backup API, safe beside the running agent.
//!
//! The copy is taken in one step (one read transaction, so the agent's commits never
//! restart it and its writer is never blocked in WAL mode) into a new file created
//! with mode 0600 beside the target, then renamed over the target: a reader of the
//! target never sees half a backup, and the copy is never readable by anyone the live
//! database is not. `without_secrets` blanks every credential secret in the copy
//! (access tokens, refresh tokens, OAuth client secrets, token commands, which often
//! carry a secret of their own) with `secure_delete` on, then `VACUUM`s it, so no page
//! of the file still holds the old values; such a copy may leave the machine.

use super::{open_read_only, Error, Settings};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a backup wrote.
#[derive(Debug)]
pub struct Written {
    pub path: PathBuf,
    pub bytes: u64,
    /// Credentials whose secrets were blanked (0 unless `without_secrets`).
    pub credentials_blanked: usize,
}

/// How often a busy or locked source is tried again before giving up.
const ATTEMPTS: u32 = 50;
const PAUSE: Duration = Duration::from_millis(100);

/// Copies `database` to `target` (replacing it); see the module doc.
pub fn backup(
    database: &Path,
    settings: &Settings,
    target: &Path,
    without_secrets: bool,
) -> Result<Written, Error> {
    refuse_live_files(database, target)?;
    let source = open_read_only(database, settings)?;
    let temporary = temporary_beside(target);
    let result = write_copy(&source, &temporary, without_secrets);
    let blanked = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(e);
        }
    };
    std::fs::rename(&temporary, target).map_err(|source| {
        let _ = std::fs::remove_file(&temporary);
        Error::Create {
            path: target.to_path_buf(),
            source,
        }
    })?;
    let bytes = std::fs::metadata(target).map(|m| m.len()).unwrap_or(0);
    Ok(Written {
        path: target.to_path_buf(),
        bytes,
        credentials_blanked: blanked,
    })
}

/// The backup must not land on the database or one of its companion files, by any
/// path (symlinks and hard links included).
fn refuse_live_files(database: &Path, target: &Path) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let refuse = || Error::Create {
        path: target.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "that is the live database or one of its files",
        ),
    };
    // What the path finally names: the file itself if it exists, else its directory.
    let resolve = |p: &Path| -> PathBuf {
        if let Ok(real) = p.canonicalize() {
            return real;
        }
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        dir.join(p.file_name().unwrap_or_default())
    };
    let target_path = resolve(target);
    let target_inode = std::fs::metadata(target).ok().map(|m| (m.dev(), m.ino()));
    let database = resolve(database);
    for suffix in ["", "-wal", "-shm", "-journal", ".lock"] {
        let mut live = database.clone().into_os_string();
        live.push(suffix);
        let live = PathBuf::from(live);
        let live_inode = std::fs::metadata(&live).ok().map(|m| (m.dev(), m.ino()));
        if target_path == live || (target_inode.is_some() && target_inode == live_inode) {
            return Err(refuse());
        }
    }
    Ok(())
}

fn temporary_beside(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    PathBuf::from(name)
}

/// Writes the copy into `path` (a new 0600 file); returns the credentials blanked.
fn write_copy(source: &Connection, path: &Path, without_secrets: bool) -> Result<usize, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    // Created here, so SQLite opens a file that is private from its first byte.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| Error::Create {
            path: path.to_path_buf(),
            source,
        })?;
    let mut copy = Connection::open(path)?;
    // No journal file on disk beside the copy: it would hold pre-images of secrets.
    copy.query_row("PRAGMA journal_mode = MEMORY", [], |_| Ok(()))?;
    {
        let backup = Backup::new(source, &mut copy)?;
        let mut tries = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                // -1 copies everything in one step; More cannot follow it, but go on.
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked if tries < ATTEMPTS => {
                    tries += 1;
                    std::thread::sleep(PAUSE);
                }
                StepResult::Busy | StepResult::Locked => {
                    return Err(Error::Timeout(PAUSE * ATTEMPTS));
                }
                _ => {}
            }
        }
    }
    // The copy of a WAL database is itself in WAL mode; keep it one self-contained file.
    copy.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
    let blanked = if without_secrets {
        blank_secrets(&copy)?
    } else {
        0
    };
    drop(copy);
    Ok(blanked)
}

/// Blanks every secret in the copy and rewrites the file without the old pages.
fn blank_secrets(copy: &Connection) -> Result<usize, Error> {
    // VACUUM's scratch copy stays in memory too, never in a temporary file.
    copy.execute_batch(
        "PRAGMA secure_delete = ON; PRAGMA journal_mode = MEMORY; PRAGMA temp_store = MEMORY;",
    )?;
    let blanked = copy.execute(
        "UPDATE credentials SET access_token = '',
                refresh_token = CASE WHEN refresh_token IS NULL THEN NULL ELSE '' END,
                oauth_client_secret = CASE WHEN oauth_client_secret IS NULL THEN NULL ELSE '' END,
                token_command = CASE WHEN token_command IS NULL THEN NULL ELSE '' END",
        [],
    )?;
    copy.execute_batch("VACUUM;")?;
    Ok(blanked)
}
