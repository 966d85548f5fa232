//! Docs that are executed: every shell code block of README.md and docs/operations.md
//! is either marked runnable, and run here with bash against a real agent, or marked
//! skip with a reason. A block marked neither fails the test, so each new block is a
//! conscious choice and a runnable one cannot drift from the binary.
//!
//! The marker is the fence's info string, which renderers (GitHub, pulldown-cmark)
//! ignore after the first word, the language:
//!
//! - ```` ```sh runnable ````: run by this test;
//! - ```` ```sh skip=REASON ````: not run; REASON (free text, required) says why, e.g.
//!   `skip=needs root and systemd`;
//! - ```` ```text output ````, right after a runnable block: what it prints; each line
//!   must appear, in order, in its stdout or stderr (`...` stands for any text).
//!
//! Shell languages are `sh`, `bash`, `shell` (these can be runnable), `console`, `zsh`
//! and `fish` (these can only be skipped); a fence without a language
//! (or an indented code block) is refused too, since it could be either. Other
//! languages (`json`, `promql`, `toml`, ...) are not shell and are left alone.
//!
//! The runnable blocks of one file run in order in one `bash -euo pipefail` (one
//! shell, like a reader following the file in one terminal: a variable set in one
//! block is there in the next), each block sourced with its own stdout and stderr,
//! each killed with its process group after [`BLOCK_TIMEOUT`]. The environment is
//! cleared and rebuilt inside a temp directory: `HOME`, `XDG_RUNTIME_DIR`, `TMPDIR`
//! and the working directory point into it, `PATH` starts with the directory of the
//! freshly built `crawler-agent`, and no `CRAWLER_AGENT_*`, `SOCKET_PATH` or systemd
//! variable is set, so the agent and the CLI use their embedded defaults there. Before
//! a file's blocks the test starts `crawler-agent serve` in that environment (the
//! reader's first terminal: README's "Two commands"); after them it stops the agent
//! with SIGTERM, checks it exited cleanly and removed its socket, and reads the
//! database it left (integrity, foreign keys, and what the walk-through says it did).
//!
//! It also keeps the guarantees honest: every test docs/reliability.md and
//! README.md name as `tests/NAME.rs::fn` (or `src/PATH.rs::tests::fn`) must exist, and
//! every table row of docs/reliability.md must name one or sit in its section "Not
//! checked by a test" (`every_test_named_in_the_guarantees_exists`).

mod common;

use common::wait_until;
use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The documents whose shell blocks are checked, relative to the repository.
const DOCS: &[&str] = &["README.md", "docs/operations.md"];
/// Info-string languages that are shell: each block must be marked.
const SHELLS: &[&str] = &["sh", "bash", "shell", "console", "zsh", "fish"];
/// The shell languages bash can run as written (`console` has prompts).
const BASH: &[&str] = &["sh", "bash", "shell"];
/// How long one block may run before it is killed and reported as hanging.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a block's stdout or stderr is read back for checks and reports.
const OUTPUT_READ_MAX: u64 = 1 << 20;
/// Commands the runnable blocks must exercise between them, so that marking blocks
/// `skip` cannot quietly take the everyday commands out of this test.
const MUST_RUN: &[&str] = &[
    "credentials add",
    "credentials list",
    "jobs add",
    "jobs list",
    "jobs show",
    "jobs cancel",
    "jobs retry",
    "status",
    "errors",
    "db check",
    "db backup",
    "db path",
    "config check",
    "config show",
    "metrics",
    "events",
];

#[derive(Debug, Clone, PartialEq)]
enum Mark {
    Runnable,
    Skip(String),
}

/// One shell code block of a document.
#[derive(Debug, Clone)]
struct Block {
    file: String,
    /// 1-based line of the opening fence.
    line: usize,
    text: String,
    mark: Mark,
    /// The `text output` block right after it: (line of its fence, its text).
    output: Option<(usize, String)>,
}

/// What a fence holds.
#[derive(Debug, PartialEq)]
enum Fence {
    /// Not shell (`json`, `promql`, plain `text`, ...): left alone.
    Other,
    Shell(Mark),
    /// `text output`: what the runnable block before it prints.
    Output,
}

/// The shell blocks of `markdown` with their expected output, or every block that is
/// not marked right (with its line and what to do), so a reader fixes them all at once.
fn shell_blocks(file: &str, markdown: &str) -> Result<Vec<Block>, Vec<String>> {
    let line_of = |offset: usize| markdown[..offset].matches('\n').count() + 1;
    let mut blocks: Vec<Block> = Vec::new();
    let mut problems = Vec::new();
    // (line, classification) of the block being read, and its text so far.
    let mut open: Option<(usize, Result<Fence, String>)> = None;
    let mut text = String::new();
    // Whether the last code block closed was a runnable shell block without output yet.
    let mut after_runnable = false;
    for (event, range) in Parser::new(markdown).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(kind)) => {
                let class = match kind {
                    CodeBlockKind::Fenced(info) => classify(&info),
                    CodeBlockKind::Indented => Err("an indented code block: write it as a \
                        fenced block with a language"
                        .to_string()),
                };
                open = Some((line_of(range.start), class));
                text.clear();
            }
            Event::Text(t) if open.is_some() => text.push_str(&t),
            Event::End(TagEnd::CodeBlock) => {
                let Some((line, class)) = open.take() else {
                    continue;
                };
                let text = std::mem::take(&mut text);
                let was_after_runnable = std::mem::take(&mut after_runnable);
                match class {
                    Ok(Fence::Shell(mark)) => {
                        after_runnable = mark == Mark::Runnable;
                        blocks.push(Block {
                            file: file.to_string(),
                            line,
                            text,
                            mark,
                            output: None,
                        });
                    }
                    Ok(Fence::Output) if was_after_runnable => {
                        if let Some(block) = blocks.last_mut() {
                            block.output = Some((line, text));
                        }
                    }
                    Ok(Fence::Output) => problems.push(format!(
                        "{file}:{line}: a `text output` block that does not follow a \
                         runnable shell block: put it right after the block whose output \
                         it shows, or make it plain `text`"
                    )),
                    Ok(Fence::Other) => {}
                    Err(why) => problems.push(format!("{file}:{line}: {why}")),
                }
            }
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(blocks)
    } else {
        Err(problems)
    }
}

/// What a fence's info string says, or why it is refused.
fn classify(info: &str) -> Result<Fence, String> {
    let info = info.trim();
    let (lang, rest) = match info.split_once(char::is_whitespace) {
        Some((lang, rest)) => (lang, rest.trim()),
        None => (info, ""),
    };
    let shell = SHELLS.iter().any(|s| s.eq_ignore_ascii_case(lang));
    let how = "mark it `runnable` (run by tests/docs.rs) or `skip=REASON` after the language";
    if lang.is_empty() {
        return Err(format!(
            "a code block without a language: give it one (`text` when it is not a \
             command; for a shell block, {how})"
        ));
    }
    if !shell {
        return match rest.split_whitespace().next() {
            Some("output") if lang == "text" && rest == "output" => Ok(Fence::Output),
            Some(w) if w == "runnable" || w.starts_with("skip") || w == "output" => Err(format!(
                "a `{lang}` block marked `{rest}`: only shell blocks ({}) run, and \
                     only `text output` is checked against what one printed",
                SHELLS.join(", ")
            )),
            _ => Ok(Fence::Other),
        };
    }
    if rest == "runnable" {
        if !BASH.iter().any(|s| s.eq_ignore_ascii_case(lang)) {
            return Err(format!(
                "a `{lang}` block marked runnable: only {} blocks run (with bash); mark it \
                 `skip=REASON` or write it for bash",
                BASH.join(", ")
            ));
        }
        return Ok(Fence::Shell(Mark::Runnable));
    }
    if let Some(reason) = rest.strip_prefix("skip=") {
        if !reason.trim().is_empty() {
            return Ok(Fence::Shell(Mark::Skip(reason.trim().to_string())));
        }
        return Err(
            "a shell block marked `skip=` without a reason: say why it cannot run here".to_string(),
        );
    }
    if rest.is_empty() {
        Err(format!("an unmarked shell block: {how}"))
    } else {
        Err(format!(
            "a shell block with an unknown marker `{rest}`: {how}"
        ))
    }
}

/// Checks that every non-empty line of `expected` appears, in order, among the lines
/// of `stdout` or of `stderr` (each stream read in order; `...` in an expected line
/// stands for any text). Returns the first expected line not found.
fn check_output<'a>(expected: &'a str, stdout: &str, stderr: &str) -> Result<(), &'a str> {
    let mut streams = [stdout.lines(), stderr.lines()];
    for want in expected
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
    {
        let found = streams.iter_mut().any(|lines| {
            // Look ahead without consuming a stream the line is not in.
            let rest: Vec<&str> = lines.clone().collect();
            match rest.iter().position(|got| matches(want, got.trim_end())) {
                Some(at) => {
                    lines.nth(at);
                    true
                }
                None => false,
            }
        });
        if !found {
            return Err(want);
        }
    }
    Ok(())
}

/// Whether `line` is `pattern` with each `...` standing for any text.
fn matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == line;
    }
    if !line.starts_with(first) || !line.ends_with(last) || line.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// A temp directory standing in for a fresh user's machine.
struct Sandbox {
    root: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let sandbox = Sandbox {
            root: tempfile::tempdir().expect("temp dir"),
        };
        for dir in ["home", "run", "tmp", "blocks"] {
            std::fs::create_dir(sandbox.path(dir)).expect("sandbox dir");
        }
        // Like a login's runtime directory: the user's own.
        std::fs::set_permissions(sandbox.path("run"), std::fs::Permissions::from_mode(0o700))
            .expect("chmod run");
        sandbox
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Where the agent puts its socket and database on embedded defaults here.
    fn socket(&self) -> PathBuf {
        self.path("run/crawler-agent/agent.sock")
    }

    fn database(&self) -> PathBuf {
        self.path("home/.local/share/crawler-agent/agent.db")
    }

    /// `program` with the sandbox's environment and nothing else.
    fn command(&self, program: &str) -> Command {
        let bin_dir = Path::new(common::BIN).parent().expect("binary directory");
        let path = match std::env::var_os("PATH") {
            Some(rest) => {
                let mut dirs = vec![bin_dir.to_path_buf()];
                dirs.extend(std::env::split_paths(&rest));
                std::env::join_paths(dirs).expect("PATH")
            }
            None => bin_dir.as_os_str().to_owned(),
        };
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", path)
            .env("HOME", self.path("home"))
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env("TMPDIR", self.path("tmp"))
            .env("LANG", "C.UTF-8")
            .current_dir(self.path("home"))
            .stdin(Stdio::null());
        cmd
    }
}

/// `crawler-agent serve` on embedded defaults in a sandbox; killed if dropped running.
struct Serving {
    child: Child,
    log: PathBuf,
}

impl Serving {
    fn start(sandbox: &Sandbox) -> Serving {
        let log = sandbox.path("agent.log");
        let stderr = std::fs::File::create(&log).expect("agent log");
        let stdout = std::fs::File::create(sandbox.path("serve.out")).expect("serve out");
        let child = sandbox
            .command("crawler-agent")
            .arg("serve")
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start crawler-agent serve");
        let mut serving = Serving { child, log };
        let (socket, db) = (sandbox.socket(), sandbox.database());
        let mut exited = None;
        // Listening, and the schema in place (the socket is bound before migration).
        let up = wait_until(Duration::from_secs(60), Duration::from_millis(20), || {
            exited = serving.child.try_wait().expect("try_wait");
            exited.is_some()
                || (UnixStream::connect(&socket).is_ok()
                    && rusqlite::Connection::open_with_flags(
                        &db,
                        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                    )
                    .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)))
                    .is_ok_and(|v| v > 0))
        });
        assert!(
            up && exited.is_none(),
            "crawler-agent serve on embedded defaults did not come up at {} ({exited:?}):\n{}",
            socket.display(),
            serving.log()
        );
        serving
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as Ctrl-C or systemd would; the agent must exit 0 and remove its socket.
    fn stop(mut self, sandbox: &Sandbox) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let mut status = None;
        wait_until(Duration::from_secs(60), Duration::from_millis(20), || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        let log = self.log();
        let status = status.unwrap_or_else(|| panic!("agent ignored SIGTERM:\n{log}"));
        assert!(status.success(), "agent exited with {status}:\n{log}");
        assert!(
            !sandbox.socket().exists(),
            "agent left its socket behind:\n{log}"
        );
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One block as it ran.
#[derive(Debug)]
struct Ran {
    stdout: String,
    stderr: String,
}

/// Runs `blocks` in order in one `bash -euo pipefail` in the sandbox. On the first
/// failure (non-zero exit, an `exit` that ends the shell, or a block running past
/// `timeout`) returns a report naming the file, the fence's line, the block, the exit
/// status, stdout and stderr.
fn run_blocks(sandbox: &Sandbox, blocks: &[&Block], timeout: Duration) -> Result<Vec<Ran>, String> {
    run_blocks_armed(sandbox, blocks, timeout, &|| true)
}

/// [`run_blocks`] where a block's time limit counts only from when `armed()` holds
/// (always, but in the test of the limit itself, which waits for a state instead of
/// betting on how fast a loaded machine starts bash).
fn run_blocks_armed(
    sandbox: &Sandbox,
    blocks: &[&Block],
    timeout: Duration,
    armed: &dyn Fn() -> bool,
) -> Result<Vec<Ran>, String> {
    let dir = sandbox.path("blocks");
    let progress = dir.join("progress");
    let quote = |p: &Path| {
        let s = p.to_str().expect("UTF-8 temp path");
        assert!(!s.contains('\''), "temp path with a quote: {s}");
        format!("'{s}'")
    };
    // A block that writes without end fails at 64 MiB a file (SIGXFSZ) instead of
    // filling the disk before its time limit (bash counts in KiB).
    let mut main = String::from("ulimit -f 65536\n");
    for (i, block) in blocks.iter().enumerate() {
        let script = dir.join(format!("{i}.sh"));
        std::fs::write(&script, &block.text).expect("write block");
        main.push_str(&format!(
            "printf '{i}\\n' >> {progress}\n. {script} > {out} 2> {err}\n",
            progress = quote(&progress),
            script = quote(&script),
            out = quote(&dir.join(format!("{i}.out"))),
            err = quote(&dir.join(format!("{i}.err"))),
        ));
    }
    main.push_str(&format!("printf 'end\\n' >> {}\n", quote(&progress)));
    let main_path = dir.join("main.sh");
    std::fs::write(&main_path, main).expect("write main");

    let mut child = sandbox
        .command("bash")
        .args(["-euo", "pipefail"])
        .arg(&main_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start bash");
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let started_blocks = || -> Vec<String> {
        std::fs::read_to_string(&progress)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let (mut seen, mut since) = (0, Instant::now());
    let mut timed_out = false;
    let status: ExitStatus = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        let now_started = started_blocks().len();
        if now_started != seen || !armed() {
            (seen, since) = (now_started, Instant::now());
        } else if since.elapsed() > timeout {
            timed_out = true;
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            break child.wait().expect("wait bash");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Whatever a block left running in the background goes with the shell.
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);

    // At most the first MiB of what a block printed, lossily decoded.
    let read = |i: usize, ext: &str| {
        let mut bytes = Vec::new();
        if let Ok(file) = std::fs::File::open(dir.join(format!("{i}.{ext}"))) {
            let _ = file.take(OUTPUT_READ_MAX).read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let started = started_blocks();
    let finished = started.last().map(String::as_str) == Some("end");
    if status.success() && finished {
        return Ok((0..blocks.len())
            .map(|i| Ran {
                stdout: read(i, "out"),
                stderr: read(i, "err"),
            })
            .collect());
    }
    let Some(last) = started.iter().rev().find_map(|s| s.parse::<usize>().ok()) else {
        return Err(format!("bash did not start the first block ({status})"));
    };
    let block = blocks[last];
    let what = if timed_out {
        format!("did not finish within {timeout:?} and was killed")
    } else if status.success() {
        "ended the shell with `exit 0` before the blocks after it ran".to_string()
    } else {
        format!("failed: bash exited with {status}")
    };
    Err(format!(
        "{}:{}: this block {what}\n--- block ---\n{}--- stdout ---\n{}--- stderr ---\n{}",
        block.file,
        block.line,
        block.text,
        read(last, "out"),
        read(last, "err")
    ))
}

/// Reads a document of the repository and refuses unmarked shell blocks.
fn document(file: &str) -> Vec<Block> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let markdown = std::fs::read_to_string(&path).expect("read document");
    shell_blocks(file, &markdown).unwrap_or_else(|problems| {
        panic!(
            "{} shell block(s) of {file} neither runnable nor skipped:\n{}",
            problems.len(),
            problems.join("\n")
        )
    })
}

/// Prints how many blocks of `file` run and why the others do not.
fn summary(file: &str, blocks: &[Block]) -> String {
    let runnable = blocks.iter().filter(|b| b.mark == Mark::Runnable).count();
    let mut out = format!(
        "{file}: {runnable} runnable, {} skipped",
        blocks.len() - runnable
    );
    for block in blocks {
        if let Mark::Skip(reason) = &block.mark {
            out.push_str(&format!("\n  {file}:{} skip: {reason}", block.line));
        }
    }
    out
}

/// Runs every runnable block of `file` against an agent serving on embedded defaults.
fn run_document(file: &str) -> Sandbox {
    run_document_checking(file, |_, _| {})
}

/// [`run_document`], calling `while_serving(sandbox, agent log)` before the agent stops.
fn run_document_checking(file: &str, while_serving: impl FnOnce(&Sandbox, &str)) -> Sandbox {
    let blocks = document(file);
    println!("{}", summary(file, &blocks));
    let runnable: Vec<&Block> = blocks.iter().filter(|b| b.mark == Mark::Runnable).collect();
    assert!(!runnable.is_empty(), "{file} has no runnable shell block");
    let sandbox = Sandbox::new();
    let agent = Serving::start(&sandbox);
    match run_blocks(&sandbox, &runnable, BLOCK_TIMEOUT) {
        Ok(ran) => {
            for (block, ran) in runnable.iter().zip(&ran) {
                println!("{file}:{} ok\n{}{}", block.line, ran.stdout, ran.stderr);
                if let Some((line, expected)) = &block.output {
                    if let Err(missing) = check_output(expected, &ran.stdout, &ran.stderr) {
                        panic!(
                            "{file}:{line}: the output shown is not what the block at line {} \
                             printed: no line matches {missing:?} (in order; `...` is any \
                             text)\n--- shown ---\n{expected}--- stdout ---\n{}--- stderr \
                             ---\n{}",
                            block.line, ran.stdout, ran.stderr
                        );
                    }
                }
            }
        }
        Err(report) => panic!("{report}\n--- agent log ---\n{}", agent.log()),
    }
    while_serving(&sandbox, &agent.log());
    agent.stop(&sandbox);
    // Whatever the blocks did, the database is sound.
    let db = rusqlite::Connection::open(sandbox.database()).expect("open database");
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(integrity, "ok", "{file}: the database after its blocks");
    let bad_keys: i64 = db
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .expect("foreign_key_check");
    assert_eq!(bad_keys, 0, "{file}: foreign keys after its blocks");
    sandbox
}

#[test]
fn readme_runs_as_written() {
    // "`serve` prints where the socket and the database are."
    let sandbox = run_document_checking("README.md", |sandbox, log| {
        for path in [sandbox.socket(), sandbox.database()] {
            let path = path.to_str().expect("UTF-8 path");
            assert!(log.contains(path), "serve did not print {path}:\n{log}");
        }
    });
    // What the walk-through says it does, in the file the agent wrote.
    let db = rusqlite::Connection::open(sandbox.database()).expect("open database");
    let credentials: Vec<(String, String, String)> = db
        .prepare("SELECT name, gitlab_url, token_source FROM credentials")
        .and_then(|mut st| {
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .expect("credentials");
    assert_eq!(
        credentials,
        [(
            "gitlab-com".into(),
            "https://gitlab.com".into(),
            "env".into()
        )]
    );
    let jobs: Vec<(String, String, String)> = db
        .prepare(
            "SELECT entity_type, status, group_concat(e.event, ' ' ORDER BY e.id) FROM jobs j \
                  JOIN job_events e ON e.job_id = j.id GROUP BY j.id ORDER BY entity_type",
        )
        .and_then(|mut st| {
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .expect("jobs");
    assert_eq!(
        jobs,
        [
            ("areas".into(), "queued".into(), "created".into()),
            (
                "project".into(),
                "queued".into(),
                "created cancelled retried".into()
            ),
        ],
        "the discovery job queued by `credentials add`, the project job cancelled and retried"
    );
}

#[test]
fn operations_guide_runs_as_written() {
    let sandbox = run_document("docs/operations.md");
    // The backups the guide makes are real, private copies.
    for copy in ["home/agent-for-support.db", "home/backup"] {
        let path = sandbox.path(copy);
        let path = if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&path)
                .expect("backup dir")
                .map(|e| e.expect("entry").path())
                .collect();
            assert_eq!(entries.len(), 1, "one dated backup in {}", path.display());
            entries.remove(0)
        } else {
            path
        };
        let mode = std::fs::metadata(&path)
            .expect("backup exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        let copy = rusqlite::Connection::open(&path).expect("open backup");
        let version: i64 = copy
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("a database");
        assert!(version > 0, "{} has the schema", path.display());
    }
}

#[test]
fn the_runnable_blocks_cover_the_everyday_commands() {
    let blocks: Vec<Block> = DOCS.iter().flat_map(|f| document(f)).collect();
    // Commands on comment lines do not count.
    let runnable: String = blocks
        .iter()
        .filter(|b| b.mark == Mark::Runnable)
        .flat_map(|b| b.text.lines())
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let words: Vec<&str> = runnable.split_whitespace().collect();
    let missing: Vec<&&str> = MUST_RUN
        .iter()
        .filter(|command| {
            let command: Vec<&str> = command.split(' ').collect();
            // `crawler-agent db path`, `"$(crawler-agent db path)"`, `.../crawler-agent`
            let bare = |w: &str| w.trim_end_matches([')', '"', ';']).to_string();
            !words.windows(command.len() + 1).any(|w| {
                w[0].ends_with("crawler-agent")
                    && w[1..]
                        .iter()
                        .map(|w| bare(w))
                        .eq(command.iter().map(|c| c.to_string()))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "no runnable block of {DOCS:?} runs `crawler-agent` {missing:?}"
    );
}

// The extractor and the runner themselves: they must be able to fail.

const SAMPLE: &str = "# Doc

```sh runnable
echo one
```

```bash skip=needs systemd
systemctl start x
```

```json
{\"a\": 1}
```

- a list item:

  ~~~sh runnable
  echo indented
  ~~~
";

#[test]
fn marked_blocks_are_read_with_their_lines_and_others_left_alone() {
    let blocks = shell_blocks("sample.md", SAMPLE).expect("all marked");
    let got: Vec<(usize, &str, &Mark)> = blocks
        .iter()
        .map(|b| (b.line, b.text.as_str(), &b.mark))
        .collect();
    assert_eq!(
        got,
        vec![
            (3, "echo one\n", &Mark::Runnable),
            (
                7,
                "systemctl start x\n",
                &Mark::Skip("needs systemd".to_string())
            ),
            (17, "echo indented\n", &Mark::Runnable),
        ]
    );
}

#[test]
fn unmarked_or_badly_marked_shell_blocks_are_refused() {
    let doc = "text\n\n```sh\nls\n```\n\n```bash skip=\nls\n```\n\n```\nls\n```\n\n\
               ```sh runable\nls\n```\n\n```json runnable\n{}\n```\n\n    indented\n\n\
               ```fish runnable\nls\n```\n";
    let problems = shell_blocks("bad.md", doc).expect_err("refused");
    assert_eq!(problems.len(), 7, "{problems:#?}");
    for (problem, (line, says)) in problems.iter().zip([
        (3, "unmarked shell block"),
        (7, "without a reason"),
        (11, "without a language"),
        (15, "unknown marker `runable`"),
        (19, "only shell blocks"),
        (23, "indented code block"),
        (25, "a `fish` block marked runnable"),
    ]) {
        assert!(
            problem.starts_with(&format!("bad.md:{line}: ")) && problem.contains(says),
            "expected line {line} `{says}`, got {problem}"
        );
    }
}

#[test]
fn an_output_block_is_checked_line_by_line_in_order() {
    let doc = "```sh runnable\necho a\n```\n\n```text output\nadded ..., mode 0600)\n```\n";
    let blocks = shell_blocks("o.md", doc).expect("marked");
    let (line, expected) = blocks[0].output.clone().expect("output attached");
    assert_eq!(line, 5);
    let out = "wrote x.db (200 bytes)\nadded x.db (1 byte, mode 0600)\n";
    assert_eq!(check_output(&expected, out, ""), Ok(()));
    assert_eq!(
        check_output(&expected, "", out),
        Ok(()),
        "stderr counts too"
    );
    assert!(check_output(&expected, "added x.db (1 byte, mode 0644)\n", "").is_err());
    // In order, each actual line used once.
    assert!(check_output("b\na\n", "a\nb\n", "").is_err());
    assert!(check_output("a\na\n", "a\n", "").is_err());
    assert_eq!(check_output("a\n\nb\n", "a\nx\nb\n", ""), Ok(()));
    assert!(matches("x...y...z", "x1y2z") && !matches("x...y", "xy1") && !matches("a", "ab"));
    assert!(!matches("ab...ba", "aba"), "the two ends may not overlap");
    // An output block must follow a runnable block.
    for doc in [
        "```text output\nx\n```\n",
        "```sh skip=why\nx\n```\n\n```text output\nx\n```\n",
        "```sh runnable\nx\n```\n\n```text output\nx\n```\n\n```text output\ny\n```\n",
    ] {
        let problems = shell_blocks("o.md", doc).expect_err(doc);
        assert!(
            problems[0].contains("does not follow a runnable"),
            "{problems:?}"
        );
    }
}

fn blocks_of(texts: &[&str]) -> Vec<Block> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| Block {
            file: "t.md".to_string(),
            line: 10 * (i + 1),
            text: text.to_string(),
            mark: Mark::Runnable,
            output: None,
        })
        .collect()
}

#[test]
fn a_failing_block_is_reported_with_file_line_text_exit_status_and_output() {
    let sandbox = Sandbox::new();
    let blocks = blocks_of(&[
        "echo first",
        "echo to-stdout\necho to-stderr >&2\nfalse\necho never",
    ]);
    let refs: Vec<&Block> = blocks.iter().collect();
    let report = run_blocks(&sandbox, &refs, BLOCK_TIMEOUT).expect_err("`false` fails");
    for part in [
        "t.md:20: this block failed: bash exited with exit status: 1",
        "--- block ---\necho to-stdout\necho to-stderr >&2\nfalse\necho never",
        "--- stdout ---\nto-stdout\n--- stderr ---\nto-stderr\n",
    ] {
        assert!(report.contains(part), "missing {part:?} in:\n{report}");
    }
    assert!(
        !report.contains("never\n---") && !report.contains("first"),
        "{report}"
    );
}

#[test]
fn blocks_share_one_strict_shell() {
    let sandbox = Sandbox::new();
    // A variable (exported or not) and the directory carry over, as in a terminal.
    let blocks = blocks_of(&[
        "X=1\nexport Y=2\nmkdir d && cd d",
        "test \"$X$Y\" = 12\ntest \"${PWD##*/}\" = d\necho $HOME",
    ]);
    let refs: Vec<&Block> = blocks.iter().collect();
    let ran = run_blocks(&sandbox, &refs, BLOCK_TIMEOUT).expect("runs");
    assert_eq!(ran[1].stdout.trim(), sandbox.path("home").to_str().unwrap());
    // -u, -o pipefail, and `exit 0` ending the file early are all failures.
    for (text, says) in [
        ("echo \"$UNSET_VARIABLE\"", "failed"),
        ("false | true", "failed"),
        ("exit 0", "ended the shell"),
    ] {
        let blocks = blocks_of(&[text, "true"]);
        let refs: Vec<&Block> = blocks.iter().collect();
        let report = run_blocks(&Sandbox::new(), &refs, BLOCK_TIMEOUT).expect_err(text);
        assert!(
            report.starts_with("t.md:10: this block ") && report.contains(says),
            "{text}: {report}"
        );
    }
}

#[cfg(target_os = "linux")] // reads /proc
#[test]
fn a_hanging_block_is_killed_with_what_it_left_running() {
    let sandbox = Sandbox::new();
    let pid_file = sandbox.path("tmp/background.pid");
    let text = format!(
        "sleep 600 &\necho $! > '{pid}.new' && mv '{pid}.new' '{pid}'\nwait",
        pid = pid_file.display()
    );
    let blocks = blocks_of(&["true", &text]);
    let refs: Vec<&Block> = blocks.iter().collect();
    // The 100 ms limit counts once the second block has started its background sleep.
    let armed = || pid_file.exists();
    let report =
        run_blocks_armed(&sandbox, &refs, Duration::from_millis(100), &armed).expect_err("killed");
    assert!(
        report.starts_with("t.md:20: this block did not finish within 100ms"),
        "{report}"
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    let gone = wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
        // Killed and reaped by init, or at least a zombie.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
    });
    assert!(gone, "the block's background sleep {pid} survived");
}

// The guarantees name the tests that check them, and those tests exist.
//
// docs/reliability.md and README.md name each test as a code span `tests/NAME.rs::fn`
// (or `src/PATH.rs::tests::fn` for a unit test, `benches/agent.rs::fn`). Each such
// reference must name a `fn fn(` in that file, and every table row of
// docs/reliability.md must hold at least one, unless it is in the section
// "Not checked by a test".

/// Documents whose test references are checked, and whether their table rows must each
/// name a test.
const GUARANTEE_DOCS: &[(&str, bool)] = &[("docs/reliability.md", true), ("README.md", false)];
/// The section whose rows say what no test checks.
const NOT_CHECKED: &str = "Not checked by a test";

/// `(file, function)` if `code` is a test reference: a lowercase path under `tests/`,
/// `src/` or `benches/` ending in `.rs`, `::`, an optional `tests::`, and a name.
/// Placeholders such as `tests/FILE.rs::test_name` are not references.
fn test_reference(code: &str) -> Option<(&str, &str)> {
    let (path, name) = code.split_once("::")?;
    let name = name.strip_prefix("tests::").unwrap_or(name);
    let stem = path.strip_suffix(".rs")?;
    let word = |s: &str, extra: char| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == extra)
    };
    let under = ["tests/", "src/", "benches/"]
        .iter()
        .any(|dir| stem.strip_prefix(dir).is_some_and(|rest| word(rest, '/')));
    (under && word(name, '_')).then_some((path, name))
}

/// Whether `source` has `fn name(` marked `#[test]` (among the attributes and comments
/// right above it; proptest's tests are marked the same way), so a helper is no test.
fn is_a_test(source: &str, name: &str) -> bool {
    let lines: Vec<&str> = source.lines().map(str::trim).collect();
    let signature = format!("fn {name}(");
    lines.iter().enumerate().any(|(i, line)| {
        line.starts_with(&signature)
            && lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.starts_with("#[") || l.starts_with("//"))
                .any(|l| *l == "#[test]")
    })
}

/// What [`guarantee_problems`] looked at, so a check that saw nothing cannot pass.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    references: usize,
    rows: usize,
}

/// Every reference of `markdown` that names no `fn NAME(` in the file `source` returns,
/// and (when `rows_need_a_test`) every table body row outside [`NOT_CHECKED`] without a
/// reference, as `file:line: ...`.
fn guarantee_problems(
    file: &str,
    markdown: &str,
    rows_need_a_test: bool,
    source: &dyn Fn(&str) -> Option<String>,
) -> (Seen, Vec<String>) {
    let line_of = |offset: usize| markdown[..offset].matches('\n').count() + 1;
    let mut seen = Seen::default();
    let mut problems = Vec::new();
    let mut section = String::new();
    let mut in_heading = false;
    let mut in_head_row = false;
    // The line of the table body row being read and how many references it holds.
    let mut row: Option<(usize, usize)> = None;
    let parser = Parser::new_ext(markdown, Options::ENABLE_TABLES);
    for (event, range) in parser.into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { .. }) => {
                in_heading = true;
                section.clear();
            }
            Event::End(TagEnd::Heading(_)) => in_heading = false,
            Event::Text(text) | Event::Code(text) if in_heading => section.push_str(&text),
            Event::Start(Tag::TableHead) => in_head_row = true,
            Event::End(TagEnd::TableHead) => in_head_row = false,
            Event::Start(Tag::TableRow) if !in_head_row => row = Some((line_of(range.start), 0)),
            Event::End(TagEnd::TableRow) => {
                if let Some((line, references)) = row.take() {
                    seen.rows += 1;
                    if rows_need_a_test && references == 0 && section != NOT_CHECKED {
                        problems.push(format!(
                            "{file}:{line}: a table row in \"{section}\" names no test: name \
                             one as `tests/NAME.rs::fn`, or move it to \"{NOT_CHECKED}\""
                        ));
                    }
                }
            }
            Event::Code(code) => {
                let Some((path, name)) = test_reference(&code) else {
                    continue;
                };
                seen.references += 1;
                if let Some((_, references)) = row.as_mut() {
                    *references += 1;
                }
                if !source(path).is_some_and(|text| is_a_test(&text, name)) {
                    problems.push(format!(
                        "{file}:{}: `{code}` names no `#[test] fn {name}(` in {path}",
                        line_of(range.start)
                    ));
                }
            }
            _ => {}
        }
    }
    (seen, problems)
}

#[test]
fn every_test_named_in_the_guarantees_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = |path: &str| std::fs::read_to_string(root.join(path)).ok();
    let mut problems = Vec::new();
    for (file, rows_need_a_test) in GUARANTEE_DOCS {
        let markdown = std::fs::read_to_string(root.join(file)).expect("read document");
        let (seen, found) = guarantee_problems(file, &markdown, *rows_need_a_test, &source);
        println!(
            "{file}: {} test references, {} table rows",
            seen.references, seen.rows
        );
        assert!(seen.references > 0, "{file} names no test at all");
        if *rows_need_a_test {
            assert!(seen.rows > 0, "{file}: no table row was read");
            assert!(
                markdown.contains(&format!("## {NOT_CHECKED}\n")),
                "{file} has no \"{NOT_CHECKED}\" section"
            );
        }
        problems.extend(found);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_missing_test_name_or_a_row_without_one_is_reported() {
    let doc = "# Doc\n\n\
               Durable (`tests/a.rs::real_one`, `src/b.rs::tests::unit_one`).\n\n\
               ## Faults\n\n\
               | fault | test |\n|---|---|\n\
               | crash | `tests/a.rs::real_one` |\n\
               | typo | `tests/a.rs::bogus_name_that_does_not_exist` |\n\
               | nothing named | by construction |\n\
               | missing file | `tests/nope.rs::real_one` |\n\
               | a helper, no test | `tests/a.rs::helper` |\n\n\
               Placeholders are no reference: `tests/FILE.rs::test_name`, `server::clocks`.\n\n\
               ## Not checked by a test\n\n\
               | claim | why |\n|---|---|\n\
               | power loss | cannot be produced |\n";
    let source = |path: &str| match path {
        "tests/a.rs" => Some("#[test]\nfn real_one() {}\nfn helper() {}\n".to_string()),
        "src/b.rs" => Some("mod tests {\n    #[test]\n    fn unit_one() {}\n}\n".to_string()),
        _ => None,
    };
    let (seen, problems) = guarantee_problems("d.md", doc, true, &source);
    assert_eq!(
        seen,
        Seen {
            references: 6,
            rows: 6
        }
    );
    assert_eq!(problems.len(), 4, "{problems:#?}");
    for (problem, (line, says)) in problems.iter().zip([
        (
            10,
            "`tests/a.rs::bogus_name_that_does_not_exist` names no `#[test] fn bogus_name",
        ),
        (11, "a table row in \"Faults\" names no test"),
        (12, "names no `#[test] fn real_one(` in tests/nope.rs"),
        (13, "names no `#[test] fn helper(` in tests/a.rs"),
    ]) {
        assert!(
            problem.starts_with(&format!("d.md:{line}: ")) && problem.contains(says),
            "expected line {line} `{says}`, got {problem}"
        );
    }
    // Rows need a test only where the caller says so (README's command table).
    let (_, problems) = guarantee_problems("d.md", doc, false, &source);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    // A test is `#[test]` above `fn`, through other attributes and comments only.
    assert!(is_a_test("#[test]\n#[ignore]\n/// doc\n    fn t() {}", "t"));
    assert!(!is_a_test("#[test]\nfn other() {}\nfn t() {}", "t"));
    assert!(!is_a_test("fn t() {}", "t") && !is_a_test("#[test]\nfn t_longer() {}", "t"));
    // The reference grammar.
    assert_eq!(
        test_reference("tests/a_b.rs::c_1"),
        Some(("tests/a_b.rs", "c_1"))
    );
    assert_eq!(
        test_reference("src/store/lock.rs::tests::x"),
        Some(("src/store/lock.rs", "x"))
    );
    for not in [
        "tests/FILE.rs::test_name",
        "tests/a.rs",
        "tests/a.rs::",
        "lib/a.rs::x",
        "tests/../a.rs::x",
        "tests/a.rs::x::y",
        "tests/a.rs::x(",
    ] {
        assert_eq!(test_reference(not), None, "{not}");
    }
}
