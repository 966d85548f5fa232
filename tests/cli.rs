//! Every operator command, run as a process on a temp database, good and bad input.

mod common;
use common::Agent;
use std::process::{Command, Stdio};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn credentials_add_list_replace_remove() {
    let agent = Agent::new();
    let out = agent.cli_env(
        &[
            "credentials",
            "add",
            "gl",
            "--url",
            "https://gitlab.example.com/api/graphql/",
            "--token-env",
            "TOK",
        ],
        &[("TOK", "glpat-secret-1")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("credential gl added (https://gitlab.example.com)"),
        "{text}"
    );
    assert!(text.contains("discovery job"));

    let list = agent.ok(&["credentials", "list"]);
    assert!(list.contains("gl") && list.contains("https://gitlab.example.com"));
    assert!(!list.contains("glpat"), "tokens are never listed");
    let json: serde_json::Value =
        serde_json::from_str(&agent.ok(&["credentials", "list", "--json"])).unwrap();
    assert_eq!(json[0]["name"], "gl");
    assert!(!json.to_string().contains("glpat"));

    // Adding it again is refused; --replace rotates the token.
    let again = agent.cli_env(
        &[
            "credentials",
            "add",
            "gl",
            "--url",
            "https://x.example",
            "--token-env",
            "TOK",
        ],
        &[("TOK", "t2")],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already exists"));
    let secret_file = agent.dir.path().join("token");
    std::fs::write(&secret_file, "glpat-secret-2\n").unwrap();
    let replaced = agent.cli(&[
        "credentials",
        "add",
        "gl",
        "--url",
        "https://gitlab.example.com",
        "--token-file",
        secret_file.to_str().unwrap(),
        "--replace",
    ]);
    assert!(replaced.status.success(), "{}", stderr(&replaced));
    let token: String = agent
        .db()
        .query_row("SELECT access_token FROM credentials", [], |r| r.get(0))
        .unwrap();
    assert_eq!(token, "glpat-secret-2");

    let removed = agent.ok(&["credentials", "remove", "gl", "--yes"]);
    assert!(removed.contains("removed with its 1 job(s)"), "{removed}");
    for table in ["credentials", "jobs", "job_events"] {
        assert_eq!(
            agent.count(&format!("SELECT count(*) FROM {table}")),
            0,
            "{table} after remove"
        );
    }
    assert_eq!(
        agent
            .cli(&["credentials", "remove", "gl", "--yes"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn credentials_add_rejects_bad_input_with_a_clear_message() {
    let agent = Agent::new();
    // Exit 2: the command line is wrong; exit 1: the token could not be read.
    let cases: &[(&[&str], &str, i32)] = &[
        (
            &[
                "credentials",
                "add",
                "gl",
                "--url",
                "gitlab.example.com",
                "--token-env",
                "TOK",
            ],
            "not an absolute",
            2,
        ),
        (
            &[
                "credentials",
                "add",
                "gl",
                "--url",
                "ftp://x",
                "--token-env",
                "TOK",
            ],
            "not an absolute",
            2,
        ),
        (
            &[
                "credentials",
                "add",
                "gl",
                "--url",
                "https://x",
                "--token-env",
                "UNSET_VAR_XYZ",
            ],
            "UNSET_VAR_XYZ is not set",
            1,
        ),
        (
            &[
                "credentials",
                "add",
                "gl",
                "--url",
                "https://x",
                "--token-file",
                "/nonexistent/t",
            ],
            "cannot read token file",
            1,
        ),
        (
            &[
                "credentials",
                "add",
                "bad name",
                "--url",
                "https://x",
                "--token-env",
                "TOK",
            ],
            "credential name",
            2,
        ),
        (
            &[
                "credentials",
                "add",
                "gl",
                "--url",
                "https://x",
                "--token-env",
                "EMPTY",
            ],
            "empty",
            1,
        ),
        (
            &[
                "credentials",
                "add",
                "gl",
                "--url",
                "https://x",
                "--token-command",
                "false",
            ],
            "failed",
            1,
        ),
    ];
    for (args, message, code) in cases {
        let out = agent.cli_env(args, &[("TOK", "t"), ("EMPTY", "")]);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    // No token source at all is a usage error.
    let out = agent.cli(&["credentials", "add", "gl", "--url", "https://x"]);
    assert_eq!(out.status.code(), Some(2));
    // The token is never taken from argv.
    let out = agent.cli(&[
        "credentials",
        "add",
        "gl",
        "--url",
        "https://x",
        "--token",
        "t",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_token_command_can_print_the_token_or_json_with_an_expiry() {
    let agent = Agent::new();
    let out = agent.cli(&[
        "credentials",
        "add",
        "a",
        "--url",
        "https://x",
        "--token-command",
        "echo tok-from-command",
        "--no-discover",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json = r#"printf '{"access_token":"tok-json","expires_at":"2030-01-01T00:00:00Z"}'"#;
    let out = agent.cli(&[
        "credentials",
        "add",
        "b",
        "--url",
        "https://x",
        "--token-command",
        &format!("sh -c {}", shell_quote(json)),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<(String, Option<String>)> = agent
        .db()
        .prepare("SELECT access_token, expires_at FROM credentials ORDER BY name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows[0], ("tok-from-command".to_string(), None));
    assert_eq!(
        rows[1],
        (
            "tok-json".to_string(),
            Some("2030-01-01T00:00:00.000Z".to_string())
        )
    );
    assert_eq!(
        agent.count("SELECT count(*) FROM jobs"),
        1,
        "--no-discover queued nothing for a"
    );
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn jobs_add_list_show_cancel_retry() {
    let agent = Agent::new();
    let areas = agent.add_credential("gl", "tok");
    let id = agent.add_job("gl", "project", "42", &["--path", "a/b", "--priority", "3"]);
    let id = id.trim();
    assert_eq!(id.len(), 26, "a ULID: {id}");

    let dup = agent.cli(&[
        "jobs",
        "add",
        "--credential",
        "gl",
        "--type",
        "project",
        "--entity-id",
        "42",
    ]);
    assert_eq!(dup.status.code(), Some(1));
    assert!(stderr(&dup).contains("already exists") && stderr(&dup).contains(id));
    assert_eq!(
        agent.count("SELECT count(*) FROM jobs"),
        2,
        "nothing changed"
    );

    let unknown = agent.cli(&[
        "jobs",
        "add",
        "--credential",
        "nope",
        "--type",
        "project",
        "--entity-id",
        "1",
    ]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("no credential named 'nope'"));
    let bad_type = agent.cli(&[
        "jobs",
        "add",
        "--credential",
        "gl",
        "--type",
        "galaxy",
        "--entity-id",
        "1",
    ]);
    assert_eq!(bad_type.status.code(), Some(2));
    let no_entity = agent.cli(&["jobs", "add", "--credential", "gl", "--type", "group"]);
    assert_eq!(no_entity.status.code(), Some(2), "a usage error");

    let list = agent.ok(&["jobs", "list"]);
    assert!(list.lines().count() == 3 && list.contains("a/b") && list.contains(&areas));
    let queued: serde_json::Value =
        serde_json::from_str(&agent.ok(&["jobs", "list", "--status", "queued", "--json"])).unwrap();
    assert_eq!(queued.as_array().unwrap().len(), 2);
    assert_eq!(
        agent
            .cli(&["jobs", "list", "--status", "bogus"])
            .status
            .code(),
        Some(2)
    );

    agent.ok(&["jobs", "cancel", id]);
    assert_eq!(
        agent.cli(&["jobs", "cancel", id]).status.code(),
        Some(1),
        "already cancelled"
    );
    agent.ok(&["jobs", "retry", id]);
    let shown: serde_json::Value =
        serde_json::from_str(&agent.ok(&["jobs", "show", id, "--json"])).unwrap();
    assert_eq!(shown["job"]["status"], "queued");
    let events: Vec<&str> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["created", "cancelled", "retried"]);
    let human = agent.ok(&["jobs", "show", id]);
    assert!(human.contains("retried") && human.contains("a/b"));
    assert_eq!(
        agent.cli(&["jobs", "show", "01NOPE"]).status.code(),
        Some(1)
    );
}

#[test]
fn errors_db_and_config_commands() {
    let agent = Agent::new();
    agent.add_credential("gl", "tok");
    assert!(agent.ok(&["errors"]).contains("no errors"));
    assert_eq!(
        agent.ok(&["errors", "--since", "1h", "--json"]).trim(),
        "[]"
    );
    let soon = agent.cli(&["errors", "--since", "soon"]);
    assert_eq!(soon.status.code(), Some(2));
    let said = String::from_utf8_lossy(&soon.stderr);
    assert_eq!(
        said.matches("soon").count(),
        1,
        "says the value once: {said}"
    );
    assert_eq!(
        agent.ok(&["db", "path"]).trim(),
        agent.db_path().to_str().unwrap()
    );
    assert!(agent.ok(&["db", "check"]).starts_with("ok"));
    assert!(agent
        .ok(&["db", "prune"])
        .contains("pruned 0 progress snapshots"));

    let show = agent.cli_env(
        &["config", "show"],
        &[("CRAWLER_AGENT_DISPATCH_JOBS_PER_RESPONSE", "2")],
    );
    let show = String::from_utf8(show.stdout).unwrap();
    assert!(
        show.contains("jobs_per_response = 2  # env CRAWLER_AGENT_DISPATCH_JOBS_PER_RESPONSE"),
        "{show}"
    );
    assert!(show.contains("max_attempts = 3  # default"));
    assert!(show.contains(&format!(
        "path = \"{}\"  # flag --db",
        agent.db_path().display()
    )));
    assert!(agent.ok(&["config", "check"]).starts_with("ok"));

    let bad = agent.dir.path().join("bad.toml");
    std::fs::write(&bad, "[dispatch]\njobs_per_respons = 1\n").unwrap();
    let out = agent.cli(&["--config", bad.to_str().unwrap(), "config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("jobs_per_respons") && stderr(&out).contains("bad.toml"),
        "{}",
        stderr(&out)
    );
    let out = agent.cli(&["--config", "/nonexistent.toml", "config", "check"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn read_commands_on_a_missing_database_say_so() {
    let agent = Agent::new();
    let out = agent.cli(&["jobs", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(!agent.db_path().exists(), "reading never creates the file");
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    let agent = Agent::new();
    agent.add_credential("gl", "tok");
    // Many jobs, so the listing outgrows the pipe buffer.
    let conn = rusqlite::Connection::open(agent.db_path()).unwrap();
    conn.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
         INSERT INTO jobs (id, credential_id, entity_type, entity_id, max_attempts, created_at, updated_at)
         SELECT printf('J%05d', i), 1, 'project', i, 3, '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z' FROM n;",
    )
    .unwrap();
    let script = format!(
        "'{}' --db '{}' jobs list --limit 5000 | head -1; echo \"status=${{PIPESTATUS[0]}}\"",
        common::BIN,
        agent.db_path().display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("ID"), "{text}");
    assert!(text.contains("status=0"), "{text}");
}

#[test]
fn a_file_that_is_not_ours_is_refused_and_left_untouched() {
    let agent = Agent::new();
    std::fs::write(agent.db_path(), b"this is not sqlite at all, just text").unwrap();
    let before = std::fs::read(agent.db_path()).unwrap();
    let out = agent.cli_env(
        &[
            "credentials",
            "add",
            "gl",
            "--url",
            "https://x",
            "--token-env",
            "T",
        ],
        &[("T", "t")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a crawler-agent database"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(agent.db_path()).unwrap(), before);

    // Someone else's SQLite database.
    std::fs::remove_file(agent.db_path()).unwrap();
    let other = rusqlite::Connection::open(agent.db_path()).unwrap();
    other
        .execute_batch("CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('mine');")
        .unwrap();
    drop(other);
    let before = std::fs::read(agent.db_path()).unwrap();
    let out = agent.cli(&["db", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not a crawler-agent database"));
    let serve = agent.cli(&["serve"]);
    assert_eq!(serve.status.code(), Some(1));
    assert_eq!(
        std::fs::read(agent.db_path()).unwrap(),
        before,
        "serve touched nothing either"
    );
    assert!(!agent.socket().exists(), "and left no socket behind");
}

#[test]
fn a_database_from_a_newer_version_is_refused() {
    let agent = Agent::new();
    agent.add_credential("gl", "tok");
    rusqlite::Connection::open(agent.db_path())
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let out = agent.cli_env(
        &[
            "credentials",
            "add",
            "x",
            "--url",
            "https://x",
            "--token-env",
            "T",
        ],
        &[("T", "t")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("newer crawler-agent"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let agent = Agent::new();
    agent.add_credential("gl", "tok");
    let mode = std::fs::metadata(agent.db_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn debian_sqlite3_cli_reads_every_view() {
    let mut agent = Agent::start(&[]);
    agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    agent.stop();
    for view in [
        "queue_summary",
        "running_jobs",
        "recent_errors",
        "live_connections",
    ] {
        let out = Command::new("sqlite3")
            .arg("-readonly")
            .arg(agent.db_path())
            .arg(format!("SELECT count(*) FROM {view};"))
            .output()
            .expect("the sqlite3 CLI is installed (see README / .ci/run)");
        assert!(out.status.success(), "{view}: {}", stderr(&out));
    }
    let out = Command::new("sqlite3")
        .arg(agent.db_path())
        .arg("SELECT status, jobs FROM queue_summary;")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "assigned|1");
}

#[test]
fn config_show_json_gives_every_value_with_its_source() {
    let agent = Agent::new();
    let out = agent.cli_env(
        &["config", "show", "--json"],
        &[("CRAWLER_AGENT_RETRY_MAX_ATTEMPTS", "7")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let attempts = &shown["values"]["retry.max_attempts"];
    assert_eq!(attempts["value"], 7);
    assert!(
        attempts["source"]
            .as_str()
            .unwrap()
            .contains("CRAWLER_AGENT_RETRY_MAX_ATTEMPTS"),
        "{attempts}"
    );
    assert_eq!(
        shown["values"]["dispatch.jobs_per_response"]["source"],
        "default"
    );
}

#[test]
fn config_show_never_prints_a_webhook_urls_secret_path() {
    let agent = Agent::new();
    let file = agent.dir.path().join("config.toml");
    std::fs::write(
        &file,
        "[[notify.webhook]]\nurl = \"https://hooks.slack.com/services/T0/B0/SECRETXYZ\"\n",
    )
    .unwrap();
    for json in [false, true] {
        let mut args = vec!["--config", file.to_str().unwrap(), "config", "show"];
        if json {
            args.push("--json");
        }
        let out = agent.cli(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("hooks.slack.com"), "{text}");
        assert!(!text.contains("SECRETXYZ"), "{text}");
    }
}

/// Every table's row count, to show a command changed nothing.
fn table_counts(agent: &Agent) -> Vec<(String, i64)> {
    [
        "credentials",
        "jobs",
        "job_events",
        "area_credentials",
        "errors",
    ]
    .iter()
    .map(|t| {
        (
            t.to_string(),
            agent.count(&format!("SELECT count(*) FROM {t}")),
        )
    })
    .collect()
}

#[test]
fn usage_errors_exit_2_in_every_command_and_change_nothing() {
    let agent = Agent::new();
    agent.add_credential("gl", "tok");
    let before = table_counts(&agent);
    let ran = agent.dir.path().join("token-command-ran");
    let ran_arg = format!("touch {}", ran.display());
    let cases: &[&[&str]] = &[
        &["frobnicate"],
        &["jobs", "add", "--credential", "gl", "--type", "group"],
        &[
            "jobs",
            "add",
            "--credential",
            "gl",
            "--type",
            "project",
            "--entity-id",
            " ",
        ],
        &[
            "jobs",
            "add",
            "--credential",
            "gl",
            "--type",
            "galaxy",
            "--entity-id",
            "1",
        ],
        &["jobs", "add", "--type", "project", "--entity-id", "1"],
        &["jobs", "list", "--status", "bogus"],
        &["errors", "--since", "soon"],
        &[
            "credentials",
            "add",
            "x",
            "--url",
            "gitlab.example.com",
            "--token-env",
            "TOK",
        ],
        &[
            "credentials",
            "add",
            "x",
            "--url",
            "https://x",
            "--token-env",
            "TOK",
            "--expires-at",
            "tomorrow",
        ],
        // The time is checked before the token command runs.
        &[
            "credentials",
            "add",
            "x",
            "--url",
            "https://x",
            "--token-command",
            &ran_arg,
            "--expires-at",
            "tomorrow",
        ],
        &[
            "credentials",
            "add",
            "bad name",
            "--url",
            "https://x",
            "--token-env",
            "TOK",
        ],
        &["credentials", "add", "x", "--url", "https://x"],
        &["credentials", "remove"],
        &["credentials", "remove", "gl", "--yes", "--dry-run"],
        // Off a terminal, removal needs --yes.
        &["credentials", "remove", "gl"],
        &["db", "backup"],
        &["config", "show", "--bogus"],
    ];
    for args in cases {
        let out = agent.cli_env(args, &[("TOK", "t")]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("error:"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(
            table_counts(&agent),
            before,
            "{args:?} changed the database"
        );
    }
    assert!(!ran.exists(), "a usage error never runs the token command");
    // A bad configuration value is a usage error too.
    let out = agent.cli_env(
        &["config", "show"],
        &[("CRAWLER_AGENT_RETRY_BACKOFF_BASE", "soon")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // What the command line cannot know is a failure: exit 1.
    for args in [
        &[
            "jobs",
            "add",
            "--credential",
            "nope",
            "--type",
            "project",
            "--entity-id",
            "1",
        ][..],
        &["credentials", "remove", "nope", "--yes"],
        &[
            "credentials",
            "add",
            "x",
            "--url",
            "https://x",
            "--token-env",
            "UNSET_VAR_XYZ",
        ],
    ] {
        let out = agent.cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(table_counts(&agent), before);
}

#[test]
fn credentials_remove_says_what_goes_and_needs_yes_or_changes_nothing() {
    let agent = Agent::new();
    let discovery = agent.add_credential("gl", "tok");
    agent.add_credential("other", "tok2");
    let job = agent.ok(&[
        "jobs",
        "add",
        "--credential",
        "gl",
        "--type",
        "project",
        "--path",
        "a/b",
    ]);
    agent.ok(&["jobs", "cancel", job.trim()]);
    let before = table_counts(&agent);

    let out = agent.cli(&["credentials", "remove", "gl", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("would remove: credential gl, 2 job(s) (1 cancelled, 1 queued), 3 job event(s), 0 progress snapshot(s)"),
        "{text}"
    );
    assert!(text.contains("nothing changed"), "{text}");
    assert_eq!(
        table_counts(&agent),
        before,
        "--dry-run changed the database"
    );

    // Not on a terminal and no --yes: refused, with the way out.
    let out = agent.cli(&["credentials", "remove", "gl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("pass --yes"), "{}", stderr(&out));
    assert_eq!(
        table_counts(&agent),
        before,
        "a refusal changed the database"
    );

    let out = agent.cli(&["credentials", "remove", "gl", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("will remove: credential gl, 2 job(s)"));
    assert_eq!(
        agent.count("SELECT count(*) FROM credentials WHERE name = 'gl'"),
        0
    );
    assert_eq!(
        agent.count(&format!(
            "SELECT count(*) FROM jobs WHERE id IN ('{discovery}', '{}')",
            job.trim()
        )),
        0
    );
    assert_eq!(
        agent.count(&format!(
            "SELECT count(*) FROM job_events WHERE job_id IN ('{discovery}', '{}')",
            job.trim()
        )),
        0
    );
    // The other credential and its discovery job are untouched.
    assert_eq!(
        agent.count("SELECT count(*) FROM credentials WHERE name = 'other'"),
        1
    );
    assert_eq!(agent.count("SELECT count(*) FROM jobs"), 1);
}

#[test]
fn a_past_expiry_is_warned_about_and_empty_tokens_name_their_source() {
    let agent = Agent::new();
    let out = agent.credentials_add("old", "tok", &["--expires-at", "2001-02-03T04:05:06Z"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: --expires-at 2001-02-03T04:05:06")
            && stderr(&out).contains("in the past"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        agent.count(
            "SELECT count(*) FROM credentials WHERE name = 'old' AND expires_at LIKE '2001-02-03%'"
        ),
        1
    );
    // --replace is the update: warned the same way.
    let out = agent.credentials_add(
        "old",
        "tok",
        &["--replace", "--expires-at", "2002-01-01T00:00:00Z"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("in the past"), "{}", stderr(&out));
    let out = agent.credentials_add("new", "tok", &["--expires-at", "2999-01-01T00:00:00Z"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));

    let out = agent.cli_env(
        &[
            "credentials",
            "add",
            "e",
            "--url",
            "https://x",
            "--token-env",
            "EMPTY",
        ],
        &[("EMPTY", " ")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "error: token from environment variable EMPTY is empty"
    );
    let file = agent.dir.path().join("empty-token");
    std::fs::write(&file, "\n").unwrap();
    let out = agent.cli(&[
        "credentials",
        "add",
        "e",
        "--url",
        "https://x",
        "--token-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        format!("error: token from file {} is empty", file.display())
    );
    let out = agent.cli(&[
        "credentials",
        "add",
        "e",
        "--url",
        "https://x",
        "--token-env",
        "UNSET_VAR_XYZ",
    ]);
    assert_eq!(
        stderr(&out).trim(),
        "error: token: environment variable UNSET_VAR_XYZ is not set"
    );
    assert_eq!(
        agent.count("SELECT count(*) FROM credentials WHERE name = 'e'"),
        0
    );
}

#[test]
fn durations_come_back_as_written_and_config_show_round_trips() {
    let agent = Agent::new();
    let file = agent.dir.path().join("config.toml");
    std::fs::write(
        &file,
        "[retention]\nevents_max_age = \"90days\"\nended_jobs_max_age = \"never\"\n",
    )
    .unwrap();
    let config = file.to_str().unwrap();
    let env = [("CRAWLER_AGENT_RETENTION_ERRORS_MAX_AGE", "2weeks")];
    let out = agent.cli_env(&["--config", config, "config", "show"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "events_max_age = \"90days\"  # file",
        "errors_max_age = \"2weeks\"  # env CRAWLER_AGENT_RETENTION_ERRORS_MAX_AGE",
        "ended_jobs_max_age = \"never\"  # file",
        // Defaults in their largest exact unit, never humantime's months.
        "discoveries_max_age = \"90d\"  # default",
        "rediscover_after = \"2d\"  # default",
        "backoff_base = \"1m\"  # default",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    assert!(!text.contains("months"), "{text}");

    let json = |args: &[&str], env: &[(&str, &str)]| -> serde_json::Value {
        let out = agent.cli_env(args, env);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let shown = json(&["--config", config, "config", "show", "--json"], &env);
    assert_eq!(
        shown["values"]["retention.events_max_age"]["value"],
        "90days"
    );
    assert_eq!(
        shown["values"]["retention.errors_max_age"]["value"],
        "2weeks"
    );
    assert_eq!(
        shown["values"]["retention.discoveries_max_age"]["value"],
        "90d"
    );

    // What `config show` prints is a config file that loads to the same values.
    let again = agent.dir.path().join("again.toml");
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split("  # ").next().unwrap_or(l).to_string() + "\n")
        .collect();
    std::fs::write(&again, body).unwrap();
    let reloaded = json(
        &[
            "--config",
            again.to_str().unwrap(),
            "config",
            "show",
            "--json",
        ],
        &[],
    );
    for (key, entry) in shown["values"].as_object().unwrap() {
        assert_eq!(
            reloaded["values"][key]["value"], entry["value"],
            "{key} does not round-trip"
        );
    }
}

#[test]
fn config_check_and_serve_warn_about_unknown_agent_variables() {
    let agent = Agent::new();
    let out = agent.cli_env(
        &["config", "check"],
        &[
            ("CRAWLER_AGENT_RETRY_MAX_ATEMPTS", "5"),
            ("CRAWLER_AGENT_NONSENSE", "1"),
            ("CRAWLER_AGENT_RETRY_MAX_ATTEMPTS", "4"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning: environment variable CRAWLER_AGENT_RETRY_MAX_ATEMPTS is not a setting and is ignored; did you mean CRAWLER_AGENT_RETRY_MAX_ATTEMPTS?"),
        "{err}"
    );
    assert!(
        err.contains("CRAWLER_AGENT_NONSENSE is not a setting"),
        "{err}"
    );
    // Known names (the harness sets CRAWLER_AGENT_LOG_LEVEL) are never warned about.
    assert_eq!(
        err.lines().filter(|l| l.starts_with("warning:")).count(),
        2,
        "{err}"
    );
    let clean = agent.cli(&["config", "check"]);
    assert!(stderr(&clean).is_empty(), "{}", stderr(&clean));

    let agent = Agent::start(&[("CRAWLER_AGENT_SOCKET_MOD", "0600")]);
    assert!(
        agent.log().contains("CRAWLER_AGENT_SOCKET_MOD is not a setting and is ignored; did you mean CRAWLER_AGENT_SOCKET_MODE?"),
        "{}",
        agent.log()
    );
}

/// Every subcommand and every argument (global flags included) of `cmd`, with the
/// path that leads to it, that has no help text.
fn without_help(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if arg.is_hide_set() || id == "help" || id == "version" {
            continue;
        }
        if arg.get_help().is_none() && arg.get_long_help().is_none() {
            missing.push(format!("{path} {id}"));
        }
    }
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let here = format!("{path} {}", sub.get_name());
        if !sub.is_hide_set() && sub.get_about().is_none() && sub.get_long_about().is_none() {
            missing.push(here.clone());
        }
        without_help(sub, &here, missing);
    }
}

#[test]
fn every_subcommand_and_flag_has_help() {
    use clap::CommandFactory;
    let mut cmd = crawler_agent::cli::Cli::command();
    cmd.build();
    let mut missing = Vec::new();
    without_help(&cmd, "crawler-agent", &mut missing);
    assert!(
        missing.is_empty(),
        "no help text for:\n{}",
        missing.join("\n")
    );
    // And the walk sees the whole tree: a nested flag is among what it checks.
    let remove = cmd
        .find_subcommand("credentials")
        .and_then(|c| c.find_subcommand("remove"))
        .expect("credentials remove");
    assert!(remove.get_arguments().any(|a| a.get_id() == "dry_run"));
}

#[test]
fn token_log_lines_and_error_rows_name_the_credential_never_the_token() {
    use serde_json::json;
    let mut agent = Agent::start(&[]);
    agent.add_credential("gitlab-main", "glpat-SECRET-9");
    let out = agent.cli(&[
        "credentials",
        "add",
        "helper-cred",
        "--url",
        "https://gitlab.example.com",
        "--token-command",
        "echo tok-CMD-1",
        "--no-discover",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut crawler = agent.connect();
    let job = crawler.request_one();
    let id = job["id"].as_str().unwrap().to_string();
    // A stored token that has not changed since dispatch: refused, and recorded.
    crawler.send_type("token_refresh_request", Some(&id), json!({}));
    let reply = crawler.recv();
    assert_eq!(reply["data"]["refreshSuccessful"], false, "{reply}");
    agent.wait_for(
        &format!(
            "SELECT count(*) FROM errors WHERE message LIKE 'token refresh for job {id} (credential gitlab-main) refused:%'"
        ),
        1,
    );
    crawler.send_type("job_completed", Some(&id), json!({"success": true}));
    agent.wait_for(
        &format!("SELECT count(*) FROM jobs WHERE id = '{id}' AND status = 'finished'"),
        1,
    );
    // A helper's credential: its refresh is logged by name.
    let helper_job = agent.ok(&[
        "jobs",
        "add",
        "--credential",
        "helper-cred",
        "--type",
        "project",
        "--path",
        "g/p",
        "--priority",
        "99",
    ]);
    let job = crawler.request_one();
    assert_eq!(job["id"].as_str(), Some(helper_job.trim()));
    crawler.send_type("token_refresh_request", Some(helper_job.trim()), json!({}));
    let reply = crawler.recv();
    assert_eq!(reply["data"]["refreshSuccessful"], true, "{reply}");
    agent.stop();
    let log = agent.log();
    assert!(
        log.contains("token: token refresh for job")
            && log.contains("(credential gitlab-main) refused"),
        "{log}"
    );
    assert!(
        log.contains("credential helper-cred: token refreshed from command"),
        "{log}"
    );
    assert!(!log.contains("glpat-SECRET-9"), "a token in the log");
    assert!(!log.contains("tok-CMD-1"), "a token in the log");
}

#[test]
fn metrics_show_known_series_at_zero_rather_than_leaving_them_out() {
    let mut agent = Agent::new();
    agent.add_credential("gl", "tok");
    let text = agent.ok(&["metrics"]);
    for line in [
        "crawler_agent_jobs{status=\"failed\"} 0",
        "crawler_agent_queue_jobs{entity_type=\"areas\",status=\"queued\"} 1",
        "crawler_agent_queue_jobs{entity_type=\"merge_request\",status=\"queued\"} 0",
        "crawler_agent_queue_jobs{entity_type=\"release\",status=\"cancelled\"} 0",
        "crawler_agent_errors_retained{category=\"token\",severity=\"high\"} 0",
        "crawler_agent_errors_retained{category=\"internal\",severity=\"critical\"} 0",
        "crawler_agent_last_error_timestamp_seconds{category=\"storage\"} 0",
        "crawler_agent_token_refreshes_total{trigger=\"crawler\",outcome=\"failed\"} 0",
        "crawler_agent_token_refreshes_total{trigger=\"dispatch\",outcome=\"refreshed\"} 0",
        "crawler_agent_crawler_last_activity_timestamp_seconds 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    // With a running agent, every crawler message type is counted from 0.
    agent.spawn();
    agent.wait_for("SELECT count(*) FROM agent_runtime", 1);
    let text = agent.ok(&["metrics"]);
    for kind in [
        "job_request",
        "job_failed",
        "discovery",
        "token_refresh_request",
    ] {
        let line = format!("crawler_agent_messages_received_total{{type=\"{kind}\"}} 0");
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
}

#[test]
fn credentials_remove_on_a_terminal_asks_and_only_yes_removes() {
    // `script` (util-linux, in Debian's essential bsdutils) runs the command on a pty
    // and feeds it our stdin: the only way to be a terminal in a test.
    let agent = Agent::new();
    agent.add_credential("gl", "tok");
    let on_a_terminal = |answer: &str| {
        let line = format!(
            "'{}' --db '{}' --socket '{}' credentials remove gl",
            common::BIN,
            agent.db_path().display(),
            agent.socket().display()
        );
        let mut child = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("HOME", agent.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script(1) from util-linux");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for answer in ["n\n", "\n", "yess\n"] {
        let text = on_a_terminal(answer);
        assert!(text.contains("remove credential 'gl'? [y/N]"), "{text}");
        assert!(text.contains("nothing removed"), "{answer:?}: {text}");
        assert_eq!(
            agent.count("SELECT count(*) FROM credentials"),
            1,
            "{answer:?}"
        );
        assert_eq!(agent.count("SELECT count(*) FROM jobs"), 1, "{answer:?}");
    }
    let text = on_a_terminal("y\n");
    assert!(
        text.contains("credential gl removed with its 1 job(s)"),
        "{text}"
    );
    assert_eq!(agent.count("SELECT count(*) FROM credentials"), 0);
    assert_eq!(agent.count("SELECT count(*) FROM jobs"), 0);
}

#[test]
fn an_endless_token_file_is_refused_not_read_for_ever() {
    let agent = Agent::new();
    let out = agent.cli(&[
        "credentials",
        "add",
        "z",
        "--url",
        "https://x",
        "--token-file",
        "/dev/zero",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "error: token from file /dev/zero: the first line is over 65536 bytes"
    );
}

/// An operator's `INSERT OR REPLACE` in sqlite3 deletes the row it replaces without
/// the delete trigger, so `job_counts` no longer matches the jobs, and a dropped index
/// breaks the claim that names it: `db check` says so and exits 1, `db check --repair`
/// recreates what was dropped and rebuilds the counts, and the check passes again.
#[test]
fn db_check_finds_counts_out_of_step_and_repair_rebuilds_them() {
    let agent = Agent::new();
    agent.add_credential("gl", "tok");
    agent.add_job("gl", "project", "1", &[]);
    let rw = rusqlite::Connection::open(agent.db_path()).unwrap();
    rw.execute_batch(
        "DROP INDEX jobs_in_flight; DROP TRIGGER job_counts_update;
         INSERT OR REPLACE INTO jobs (id, credential_id, entity_type, entity_id, status,
                                      max_attempts, created_at, updated_at)
         SELECT 'REPLACED', credential_id, 'project', '1', 'cancelled', 3, 'x', 'x'
         FROM jobs WHERE entity_type = 'project'",
    )
    .unwrap();
    drop(rw);
    let check = agent.cli(&["db", "check"]);
    let said = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{said}");
    assert!(
        said.contains("job_counts: ")
            && said.contains("missing from the schema: index jobs_in_flight")
            && said.contains("missing from the schema: trigger job_counts_update")
            && said.contains("db check --repair"),
        "{said}"
    );
    let repaired = agent.ok(&["db", "check", "--repair"]);
    assert!(
        repaired.contains("recreated index jobs_in_flight")
            && repaired.contains("recreated trigger job_counts_update")
            && repaired.contains("rebuilt job_counts"),
        "{repaired}"
    );
    assert!(agent.ok(&["db", "check"]).starts_with("ok"));
    let queued: i64 = agent.db().query_row(
        "SELECT coalesce(sum(jobs), 0) FROM job_counts WHERE entity_type = 'project' AND status = 'queued'",
        [],
        |r| r.get(0),
    ).unwrap();
    assert_eq!(queued, 0, "the replaced job is no longer counted as queued");
}

/// The claim names its indexes: an agent started on a file an operator dropped one
/// from recreates it (and a count trigger, rebuilding the counts), logs it, and serves.
#[test]
fn serve_recreates_what_an_operator_dropped_from_the_schema() {
    let mut agent = Agent::new();
    agent.add_credential("gl", "tok");
    let rw = rusqlite::Connection::open(agent.db_path()).unwrap();
    rw.execute_batch("DROP INDEX jobs_in_flight; DROP TRIGGER job_counts_insert;")
        .unwrap();
    drop(rw);
    agent.add_job("gl", "project", "1", &[]);
    agent.spawn();
    let mut crawler = agent.connect();
    assert_eq!(crawler.request_jobs().len(), 1, "the claim works again");
    let objects: i64 = agent
        .db()
        .query_row(
            "SELECT count(*) FROM sqlite_master
             WHERE name IN ('jobs_in_flight', 'job_counts_insert')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(objects, 2);
    assert!(
        agent.log().contains("lacked index jobs_in_flight"),
        "{}",
        agent.log()
    );
    agent.stop();
    assert!(agent.ok(&["db", "check"]).starts_with("ok"));
}
