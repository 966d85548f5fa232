//! The Unix socket the crawler connects to: binding it safely and accepting peers.
//!
//! Binding: the parent directory is created if missing; an existing path is probed —
//! if an agent answers, we refuse to start; a dead socket file is removed; anything
//! that is not a socket is left alone and refused. The socket is created with a
//! restrictive umask and then given the configured mode and group, because the socket
//! file is the only access control (job replies carry tokens). On exit the file is
//! removed, but only if it is still the one we created.
//!
//! Peers: [`peer_of`] asks the kernel who connected, the only way each platform offers
//! (see its doc); the allow-lists in `server` compare the uid and gid it returns.

use nix::sys::stat::{umask, Mode};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::paths::resolve_group;
use crate::store::connections::Peer;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another process is already serving on {0}; stop it or choose another --socket")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error(transparent)]
    TooLong(#[from] crate::paths::SocketPathTooLong),
    #[error("socket group '{0}' does not exist")]
    NoSuchGroup(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

pub struct Listener {
    pub listener: async_net::unix::UnixListener,
    path: PathBuf,
    /// The socket file we created (device, inode); `None` when systemd owns it.
    identity: Option<(u64, u64)>,
}

impl Listener {
    pub fn bind(path: &Path, mode: u32, group: &str) -> Result<Listener, BindError> {
        let io_err = |what: &'static str| {
            let path = path.to_path_buf();
            move |source| BindError::Io { what, path, source }
        };
        crate::paths::check_socket_path(path)?;
        if let Some(dir) = path.parent() {
            crate::paths::ensure_dir(dir).map_err(io_err("cannot create the directory of"))?;
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(BindError::NotASocket(path.to_path_buf()));
            }
            if answers(path) {
                return Err(BindError::InUse(path.to_path_buf()));
            }
            log::info!("removing stale socket file {}", path.display());
            std::fs::remove_file(path).map_err(io_err("cannot remove the stale socket"))?;
        }
        let gid = resolve_group(group).map_err(|e| BindError::NoSuchGroup(e.0))?;
        // Nobody may connect before the mode and group are right.
        let old = umask(Mode::from_bits_truncate(0o177));
        let bound = std::os::unix::net::UnixListener::bind(path);
        umask(old);
        let std_listener = bound.map_err(io_err("cannot bind"))?;
        if let Some(gid) = gid {
            nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
                .map_err(|e| io_err("cannot set the group of")(io::Error::from(e)))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("cannot set the mode of"))?;
        let meta = std::fs::metadata(path).map_err(io_err("cannot stat"))?;
        let listener = async_io::Async::new(std_listener)
            .map(async_net::unix::UnixListener::from)
            .map_err(io_err("cannot register"))?;
        Ok(Listener {
            listener,
            path: path.to_path_buf(),
            identity: Some((meta.dev(), meta.ino())),
        })
    }

    /// Takes over a socket systemd opened for us (socket activation). Its file, mode
    /// and group belong to the `.socket` unit; we never remove it.
    pub fn adopt(
        inherited: std::os::unix::net::UnixListener,
        configured: &Path,
    ) -> Result<Listener, BindError> {
        let path = inherited
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            .unwrap_or_else(|| configured.to_path_buf());
        if path != configured {
            log::warn!(
                "socket activation passed {}, not the configured {}; using the one passed",
                path.display(),
                configured.display()
            );
        }
        let io_err = |source| BindError::Io {
            what: "cannot use the socket passed by systemd",
            path: path.clone(),
            source,
        };
        inherited.set_nonblocking(true).map_err(io_err)?;
        let listener = async_io::Async::new(inherited)
            .map(async_net::unix::UnixListener::from)
            .map_err(io_err)?;
        log::info!("using the socket passed by systemd (socket activation)");
        Ok(Listener {
            listener,
            path,
            identity: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket file if it is still ours.
    pub fn remove_file(&self) {
        let Some(identity) = self.identity else {
            return;
        };
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == identity => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    log::warn!("cannot remove socket {}: {e}", self.path.display());
                }
            }
            _ => log::warn!(
                "socket {} was replaced or removed by someone else; leaving it",
                self.path.display()
            ),
        }
    }
}

/// Who is on the other end, as far as the platform tells (the uid and gid are the
/// peer's effective ones at `connect` time):
///
/// | platform | call | pid | uid, gid |
/// |---|---|---|---|
/// | Linux, Android | `SO_PEERCRED` | yes | yes |
/// | macOS (and Apple's other systems) | `getpeereid` + `LOCAL_PEERPID` | yes | yes |
/// | FreeBSD, OpenBSD, NetBSD, DragonFly | `getpeereid` | no | yes |
/// | anything else | none | no | no |
///
/// A field the platform does not give stays `None`: the connection is still recorded,
/// and an allow-list that is set refuses a peer whose uid (gid) is unknown.
pub fn peer_of(stream: &async_net::unix::UnixStream) -> Peer {
    credentials(stream)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn credentials(stream: &async_net::unix::UnixStream) -> Peer {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    match getsockopt(stream, PeerCredentials) {
        Ok(c) => Peer {
            pid: Some(c.pid()),
            uid: Some(c.uid()),
            gid: Some(c.gid()),
        },
        Err(e) => {
            log::debug!("SO_PEERCRED failed: {e}");
            Peer::default()
        }
    }
}

#[cfg(any(
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
))]
fn credentials(stream: &async_net::unix::UnixStream) -> Peer {
    let (uid, gid) = match nix::unistd::getpeereid(stream) {
        Ok((uid, gid)) => (Some(uid.as_raw()), Some(gid.as_raw())),
        Err(e) => {
            log::debug!("getpeereid failed: {e}");
            (None, None)
        }
    };
    Peer {
        pid: peer_pid(stream),
        uid,
        gid,
    }
}

/// `LOCAL_PEERPID`: the pid of the process that connected (Apple only).
#[cfg(target_vendor = "apple")]
fn peer_pid(stream: &async_net::unix::UnixStream) -> Option<i32> {
    use nix::sys::socket::{getsockopt, sockopt::LocalPeerPid};
    getsockopt(stream, LocalPeerPid)
        .map_err(|e| log::debug!("LOCAL_PEERPID failed: {e}"))
        .ok()
}

/// The BSDs' `getpeereid` has no pid, and nix offers no portable call for one.
#[cfg(all(
    not(target_vendor = "apple"),
    any(
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "netbsd",
        target_os = "dragonfly"
    )
))]
fn peer_pid(_: &async_net::unix::UnixStream) -> Option<i32> {
    None
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
)))]
fn credentials(_: &async_net::unix::UnixStream) -> Peer {
    Peer::default()
}

/// Whether an agent answers on `path`: the public probe the CLI's `status` and
/// `metrics` use, and `bind` uses to refuse a socket in use. Connects and closes at
/// once, sending nothing.
pub fn answers(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_is_who_connected_as_far_as_the_platform_tells() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let stream = async_net::unix::UnixStream::try_from(accepted).unwrap();
        let peer = peer_of(&stream);
        assert_eq!(peer.uid, Some(nix::unistd::geteuid().as_raw()));
        assert_eq!(peer.gid, Some(nix::unistd::getegid().as_raw()));
        let pid_known = cfg!(any(
            target_os = "linux",
            target_os = "android",
            target_vendor = "apple"
        ));
        let expected_pid = pid_known.then(|| std::process::id() as i32);
        assert_eq!(peer.pid, expected_pid);
    }
}
