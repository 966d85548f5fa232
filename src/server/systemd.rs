//! Talking to systemd, when it runs us: readiness, status, stopping, watchdog, and a
//! listening socket handed over by a `.socket` unit. Everything here is a no-op when
//! the agent runs by hand (no `NOTIFY_SOCKET`, no `LISTEN_FDS`), and on platforms
//! without systemd (macOS, the BSDs) it is compiled as no-ops: `sd-notify` is a
//! Linux-only dependency, so nothing systemd-specific is built there.

pub use imp::*;

#[cfg(target_os = "linux")]
mod imp {
    use sd_notify::NotifyState;
    use std::os::fd::FromRawFd;
    use std::time::Duration;

    pub fn ready(status: &str) {
        let _ = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn status(status: &str) {
        let _ = sd_notify::notify(false, &[NotifyState::Status(status)]);
    }

    pub fn reloading() {
        let _ = sd_notify::notify(false, &[NotifyState::Reloading]);
    }

    pub fn reloaded(status: &str) {
        let _ = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn stopping() {
        let _ = sd_notify::notify(
            false,
            &[NotifyState::Stopping, NotifyState::Status("stopping")],
        );
    }

    /// How often to ping the watchdog (half of `WatchdogSec`), if it is enabled.
    pub fn watchdog_interval() -> Option<Duration> {
        let mut usec = 0;
        sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
    }

    pub fn watchdog_ping() {
        let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
    }

    /// The listening Unix socket passed by socket activation (`LISTEN_FDS`), if any.
    pub fn inherited_listener() -> Option<std::os::unix::net::UnixListener> {
        let fd = sd_notify::listen_fds().ok()?.next()?;
        // SAFETY: systemd passed this descriptor to us alone (LISTEN_PID is ours, checked
        // by listen_fds); we take ownership of it exactly once.
        let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
        // A socket unit may hand over anything; only a Unix listening socket will do.
        listener.local_addr().ok().map(|_| listener)
    }
}

/// No systemd here: nothing to notify, no watchdog, no inherited socket.
#[cfg(not(target_os = "linux"))]
mod imp {
    use std::time::Duration;

    pub fn ready(_: &str) {}

    pub fn status(_: &str) {}

    pub fn reloading() {}

    pub fn reloaded(_: &str) {}

    pub fn stopping() {}

    pub fn watchdog_interval() -> Option<Duration> {
        None
    }

    pub fn watchdog_ping() {}

    pub fn inherited_listener() -> Option<std::os::unix::net::UnixListener> {
        None
    }
}
