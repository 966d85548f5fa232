//! What happens when a part of the agent panics.
//!
//! A panic is contained to what caused it where that is possible: one writer operation
//! (it fails alone, recorded as a critical `internal` error; see `store::writer`), one
//! connection (closed, its slot released and its close recorded; see `server`). A
//! process-wide thread or task (the writer, the checkpointer, the monitor, the accept
//! loop) cannot be contained: [`fatal`] logs and ends the process at once with
//! [`EXIT_PANIC`], so the service manager restarts a whole agent instead of leaving a
//! half-alive one that answers every `job_request` with `[]`. Nothing is lost by the
//! abrupt exit: everything acknowledged is committed, and SQLite's WAL makes the file
//! consistent on the next open.

use std::any::Any;

/// The exit status after a process-wide panic (`EX_SOFTWARE`).
pub const EXIT_PANIC: i32 = 70;

/// A panic's message, as far as it can be told (`panic!` carries a `&str` or `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    };
    text.chars().take(500).collect()
}

/// Ends the process after a panic in `what`, a part the agent cannot run without.
pub fn fatal(what: &str, payload: &(dyn Any + Send)) -> ! {
    log::error!(
        "{what} panicked ({}); exiting with status {EXIT_PANIC} so the service manager restarts the agent",
        panic_message(payload)
    );
    std::process::exit(EXIT_PANIC)
}

/// Runs `f` (the body of a process-wide thread); a panic ends the process ([`fatal`]).
pub fn essential<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(payload) => fatal(what, payload.as_ref()),
    }
}

/// [`essential`] for a process-wide async task.
pub async fn essential_task<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    use futures_lite::FutureExt;
    match std::panic::AssertUnwindSafe(f).catch_unwind().await {
        Ok(value) => value,
        Err(payload) => fatal(what, payload.as_ref()),
    }
}
