//! Which file a path named when the agent opened it (device and inode), so the writer
//! and the monitor can tell when the database file was removed or replaced under the
//! running agent. It only looks; what to do about it is theirs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Which file a path named when we opened it (device and inode).
pub struct FileIdentity {
    path: PathBuf,
    identity: Option<(u64, u64)>,
    reported: Option<Instant>,
}

impl FileIdentity {
    pub fn of(path: &Path) -> Self {
        FileIdentity {
            path: path.to_path_buf(),
            identity: Self::read(path),
            reported: None,
        }
    }

    fn read(path: &Path) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path still names the file it named when opened (both absent counts
    /// as the same).
    pub fn unchanged(&self) -> bool {
        Self::read(&self.path) == self.identity
    }

    /// Says (loudly, at most once a minute) when the file was removed or replaced:
    /// our writes then go to a file nobody can open any more.
    pub fn check(&mut self) -> Option<String> {
        let now = Self::read(&self.path);
        if now == self.identity
            || self
                .reported
                .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return None;
        }
        self.reported = Some(Instant::now());
        Some(match now {
            None => format!(
                "database file {} was removed while the agent runs; new data is written to the removed file and lost at exit — restart the agent",
                self.path.display()
            ),
            Some(_) => format!(
                "database file {} was replaced by another file while the agent runs; the agent still writes to the old one — restart the agent",
                self.path.display()
            ),
        })
    }
}
