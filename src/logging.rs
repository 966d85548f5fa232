//! Logging to stderr with `simple_logger`, made safe for a daemon, with a level that
//! can change while running.
//!
//! Under journald (`JOURNAL_STREAM` set) lines carry no timestamp, since the journal
//! adds its own; otherwise UTC timestamps. `RUST_LOG` overrides the configured level,
//! at start and on every reload. `simple_logger` writes with `eprintln!`, which panics
//! when stderr fails (a full disk behind a redirected stderr, a closed pipe); a log
//! line must never take a thread down, so each write is fenced and a failed line is
//! dropped.
//!
//! The level lives here, not in `simple_logger` (whose level is fixed when it is
//! built): [`set_level`] changes it for every following line, up or down, which is
//! what a SIGHUP that changes `log.level` needs.

use log::{LevelFilter, Log, Metadata, Record};
use simple_logger::SimpleLogger;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The current level, as `LevelFilter as usize` (Off = 0 ... Trace = 5).
static LEVEL: AtomicUsize = AtomicUsize::new(LevelFilter::Info as usize);

struct Fenced(SimpleLogger);

impl Log for Fenced {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= level() && self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let _ = catch_unwind(AssertUnwindSafe(|| self.0.log(record)));
        }
    }

    fn flush(&self) {}
}

fn level() -> LevelFilter {
    match LEVEL.load(Ordering::Relaxed) {
        0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// The level `RUST_LOG` pins, if it names one.
fn from_environment() -> Option<LevelFilter> {
    std::env::var("RUST_LOG").ok()?.parse().ok()
}

/// Installs the logger; `level` unless `RUST_LOG` names one.
pub fn init(level: LevelFilter) {
    // Everything reaches `Fenced`, which applies the live level; only r2d2's chatter
    // is held to warnings for good.
    let logger = SimpleLogger::new()
        .with_level(LevelFilter::Trace)
        .with_module_level("r2d2", LevelFilter::Warn);
    let logger = if std::env::var_os("JOURNAL_STREAM").is_some() {
        logger.without_timestamps()
    } else {
        logger.with_utc_timestamps()
    };
    if log::set_boxed_logger(Box::new(Fenced(logger))).is_ok() {
        set_level(level);
    }
    // A panic message cannot be printed either when stderr is gone; the default hook
    // already ignores that, so nothing else to do here.
}

/// Logs at `level` from now on (unless `RUST_LOG` pins one); returns the level in
/// effect.
pub fn set_level(level: LevelFilter) -> LevelFilter {
    let level = from_environment().unwrap_or(level);
    LEVEL.store(level as usize, Ordering::Relaxed);
    log::set_max_level(level);
    level
}

/// The level lines are logged at now.
pub fn current_level() -> LevelFilter {
    level()
}
