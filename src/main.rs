//! The `crawler-agent` binary: parse the command line, load the config, set up
//! logging, and hand over to the library.
//!
//! Exit status: 0 success; 1 a runtime failure (not found, refused, unreachable,
//! database or I/O problem); 2 a usage error (bad command line, a malformed value, a
//! configuration that does not load, or a database another agent is serving).

use clap::Parser;
use crawler_agent::cli::{self, Cli, Command, Env, Usage};
use crawler_agent::config::Loaded;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = Cli::parse();
    let flags = args.flags();
    let loaded = match Loaded::from_process(&flags) {
        Ok(loaded) => loaded,
        // A configuration that does not load (unreadable, unknown key, value out of
        // range) is a usage error: exit 2, like a bad command line.
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let serving = matches!(args.command, Command::Serve);
    init_logging(&loaded, serving);
    if serving {
        for warning in cli::config::env_warnings() {
            log::warn!("{warning}");
        }
    }
    let result = match args.command {
        Command::Serve => crawler_agent::server::run(&loaded, &flags).map(|()| ExitCode::SUCCESS),
        command => cli::run(command, &Env { loaded }),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        // A malformed command line: exit 2, the same as clap's own usage errors.
        Err(e) if e.downcast_ref::<Usage>().is_some() => {
            eprintln!("error: {e}\n\nFor more information, try '--help'.");
            ExitCode::from(2)
        }
        // Another agent serves this database: starting again would not help.
        Err(e) if is_in_use(&e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `serve` logs at the configured level; other commands only warnings, unless asked.
fn init_logging(loaded: &Loaded, serving: bool) {
    crawler_agent::logging::init(if serving {
        loaded.config.log_level()
    } else {
        log::LevelFilter::Warn
    });
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn is_in_use(e: &anyhow::Error) -> bool {
    use crawler_agent::store::lock::LockError;
    matches!(e.downcast_ref::<LockError>(), Some(LockError::InUse { .. }))
}
