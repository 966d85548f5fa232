//! The `crawler-agent` binary: parse the command line, load the config, set up
//! logging, and hand over to the library.

use clap::Parser;
use crawler_agent::cli::{self, Cli, Command, Env};
use crawler_agent::config::Loaded;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = Cli::parse();
    let loaded = match Loaded::from_process(&args.flags()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&loaded, matches!(args.command, Command::Serve));
    let result = match args.command {
        Command::Serve => crawler_agent::server::run(&loaded).map(|()| ExitCode::SUCCESS),
        command => cli::run(command, &Env { loaded }),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr. Under journald (JOURNAL_STREAM set) without timestamps, since
/// the journal adds its own; otherwise with UTC timestamps. `RUST_LOG` overrides
/// `log.level`. Commands other than `serve` log warnings only, unless asked.
fn init_logging(loaded: &Loaded, serving: bool) {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(if serving {
            loaded.config.log_level()
        } else {
            log::LevelFilter::Warn
        });
    let logger = simple_logger::SimpleLogger::new()
        .with_level(level)
        .with_module_level("r2d2", log::LevelFilter::Warn);
    let logger = if std::env::var_os("JOURNAL_STREAM").is_some() {
        logger.without_timestamps()
    } else {
        logger.with_utc_timestamps()
    };
    let _ = logger.init();
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
