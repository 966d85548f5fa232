//! Logging to stderr with `simple_logger`, made safe for a daemon.
//!
//! Under journald (`JOURNAL_STREAM` set) lines carry no timestamp, since the journal
//! adds its own; otherwise UTC timestamps. `RUST_LOG` overrides the configured level.
//! `simple_logger` writes with `eprintln!`, which panics when stderr fails (a full disk
//! behind a redirected stderr, a closed pipe); a log line must never take a thread
//! down, so each write is fenced and a failed line is dropped.

use log::{LevelFilter, Log, Metadata, Record};
use simple_logger::SimpleLogger;
use std::panic::{catch_unwind, AssertUnwindSafe};

struct Fenced(SimpleLogger);

impl Log for Fenced {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        let _ = catch_unwind(AssertUnwindSafe(|| self.0.log(record)));
    }

    fn flush(&self) {}
}

/// Installs the logger; `level` unless `RUST_LOG` names one.
pub fn init(level: LevelFilter) {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(level);
    let logger = SimpleLogger::new()
        .with_level(level)
        .with_module_level("r2d2", LevelFilter::Warn);
    let logger = if std::env::var_os("JOURNAL_STREAM").is_some() {
        logger.without_timestamps()
    } else {
        logger.with_utc_timestamps()
    };
    let max = logger.max_level();
    if log::set_boxed_logger(Box::new(Fenced(logger))).is_ok() {
        log::set_max_level(max);
    }
    // A panic message cannot be printed either when stderr is gone; the default hook
    // already ignores that, so nothing else to do here.
}
