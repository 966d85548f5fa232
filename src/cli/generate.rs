//! `crawler-agent generate DIR` (hidden; used when packaging): a man page for the
//! command and one for every subcommand, and completions for bash, zsh and fish, all
//! from the clap definition, so they cannot drift from the binary.
//!
//! Each page gets the sections clap does not know: EXIT STATUS, ENVIRONMENT, FILES and
//! SEE ALSO. Bash completions work around clap_complete's hyphenated-name bug
//! (clap-rs/clap#6421: past the first word nothing completes) by generating for
//! `crawler_agent` and registering the result for `crawler-agent`.

use super::output;
use super::Cli;
use clap::CommandFactory;
use clap_complete::Shell;
use std::io::Write;
use std::path::Path;

const BIN: &str = "crawler-agent";

pub fn run(dir: &Path) -> anyhow::Result<std::process::ExitCode> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut pages = 0;
    write_pages(dir, &cmd, BIN, &mut pages)?;
    completions(dir, &cmd)?;
    output::line(format!(
        "wrote {pages} man pages and the completions to {}",
        dir.display()
    ))?;
    super::ok()
}

/// The page of `cmd` (named `name`, e.g. `crawler-agent-jobs-list`) and, recursively,
/// of its subcommands.
fn write_pages(
    dir: &Path,
    cmd: &clap::Command,
    name: &str,
    pages: &mut usize,
) -> anyhow::Result<()> {
    let subcommands: Vec<&clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .collect();
    let page_cmd = cmd.clone().name(name.to_string());
    let man = clap_mangen::Man::new(page_cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if page_cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if !subcommands.is_empty() {
        man.render_subcommands_section(&mut out)?;
    }
    if cmd.get_after_help().is_some() || cmd.get_after_long_help().is_some() {
        man.render_extra_section(&mut out)?;
    }
    out.write_all(EXIT_STATUS.as_bytes())?;
    if name == BIN {
        out.write_all(ENVIRONMENT.as_bytes())?;
        out.write_all(FILES.as_bytes())?;
    }
    let mut see_also: Vec<String> = subcommands
        .iter()
        .map(|s| format!("\\fB{name}-{}\\fR(1)", s.get_name()))
        .collect();
    if name != BIN {
        see_also.insert(0, format!("\\fB{BIN}\\fR(1)"));
    } else {
        see_also.extend(["\\fBsqlite3\\fR(1)".into(), "\\fBsystemctl\\fR(1)".into()]);
    }
    writeln!(out, ".SH \"SEE ALSO\"\n{}", see_also.join(", "))?;
    if page_cmd.get_version().is_some() {
        man.render_version_section(&mut out)?;
    }
    std::fs::write(dir.join(format!("{name}.1")), out)?;
    *pages += 1;
    for sub in subcommands {
        write_pages(dir, sub, &format!("{name}-{}", sub.get_name()), pages)?;
    }
    Ok(())
}

const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success.
.TP
\fB1\fR
Failure: the operation could not be done (an unknown job or credential, a job in
the crawler's hands, an unreadable token file or unset variable, a damaged database,
\fBstatus\fR when the agent does not answer, \fBserve\fR when it cannot start).
.TP
\fB2\fR
Usage error: an unknown command or option, a missing argument, a value that does
not parse (a URL without scheme, a time that is not RFC 3339, a duration such as
\fBsoon\fR), \fBcredentials remove\fR off a terminal without \fB\-\-yes\fR, a
configuration that does not load, or a database another agent is serving.
"#;

const ENVIRONMENT: &str = r#".SH ENVIRONMENT
.TP
\fBCRAWLER_AGENT_\fISECTION\fB_\fIKEY\fR
Any configuration key, e.g. \fBCRAWLER_AGENT_SOCKET_PATH\fR or
\fBCRAWLER_AGENT_RETRY_MAX_ATTEMPTS\fR; above the config file, below the
\fB\-\-db\fR and \fB\-\-socket\fR flags. \fBcrawler-agent config show\fR prints each
value with where it came from; \fBconfig check\fR (and \fBserve\fR, in its log)
warns about a \fBCRAWLER_AGENT_\fR variable that is not a setting.
.TP
\fBSOCKET_PATH\fR
The crawler's own variable for its socket; honoured as the socket path so one
environment serves both.
.TP
\fBSTATE_DIRECTORY\fR, \fBRUNTIME_DIRECTORY\fR, \fBCONFIGURATION_DIRECTORY\fR
Set by systemd; when present the database, socket and config file default to
these directories.
.TP
\fBXDG_RUNTIME_DIR\fR, \fBXDG_DATA_HOME\fR, \fBHOME\fR
Where a hand-run agent keeps its socket and database.
.TP
\fBNOTIFY_SOCKET\fR, \fBWATCHDOG_USEC\fR, \fBLISTEN_FDS\fR
Set by systemd: readiness notification, the watchdog, socket activation.
"#;

const FILES: &str = r#".SH FILES
.TP
\fI/etc/crawler-agent/config.toml\fR
The configuration of the packaged service (every key is optional).
.TP
\fI/var/lib/crawler-agent/agent.db\fR
The database of the packaged service (with \fI\-wal\fR and \fI\-shm\fR beside it).
.TP
\fI/run/crawler-agent/agent.sock\fR
The socket of the packaged service.
.TP
\fI$XDG_RUNTIME_DIR/crawler-agent/agent.sock\fR, \fI~/.local/share/crawler-agent/agent.db\fR
Socket and database of an agent run by hand (\fBcrawler-agent db path\fR prints the
database's path).
"#;

/// Completions for bash, zsh and fish.
fn completions(dir: &Path, cmd: &clap::Command) -> anyhow::Result<()> {
    for shell in [Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), BIN, dir)?;
    }
    // clap-rs/clap#6421: with a hyphen in the name, the generated bash script spells
    // its states two ways and completes nothing past the first word. Generated for a
    // name without one, then registered for the real name.
    let underscored = BIN.replace('-', "_");
    let mut bash = Vec::new();
    // A command not yet built: building fixes every subcommand's bin name.
    clap_complete::generate(
        Shell::Bash,
        &mut Cli::command().name(underscored.clone()),
        &underscored,
        &mut bash,
    );
    let script =
        String::from_utf8(bash)?.replace(&format!(" {underscored}\n"), &format!(" {BIN}\n"));
    std::fs::write(dir.join(format!("{BIN}.bash")), script)?;
    Ok(())
}
