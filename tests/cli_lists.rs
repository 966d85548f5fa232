//! The CLI explains itself (issue 16, item 4): lists say on stderr when they are cut,
//! `--limit 0` lists all, long fields are whole when stdout is not a terminal, job ids
//! by unique prefix in any case, `errors show` / `jobs show` print every field, failures
//! with a known cause carry a hint, and `status` says what to do when nothing answers.
//! Each runs the binary on a temp directory and checks stdout, stderr, the exit code
//! and, where a command changes something, the database.

mod common;
use common::{Agent, BIN};
use rusqlite::{params, Connection};
use serde_json::{json, Value};
use std::process::{Command, Output};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// A writable connection to the (stopped) agent's database, to lay out rows.
fn writable(agent: &Agent) -> Connection {
    let c = Connection::open(agent.db_path()).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    c
}

/// Inserts a queued job with the given id for the credential `gl`.
fn insert_job(c: &Connection, id: &str, path: &str) {
    c.execute(
        "INSERT INTO jobs (id, credential_id, entity_type, entity_id, namespace_path, max_attempts,
                           created_at, updated_at)
         VALUES (?1, (SELECT id FROM credentials WHERE name = 'gl'), 'project', ?1, ?2, 3,
                 '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
        params![id, path],
    )
    .unwrap();
}

#[test]
fn jobs_list_says_how_many_more_on_stderr_and_limit_0_lists_all() {
    let agent = Agent::new();
    let areas = agent.add_credential("gl", "tok");
    let c = writable(&agent);
    let long_path = format!("acme/{}", "deep/".repeat(20));
    for i in 0..24 {
        insert_job(&c, &format!("01JOB{i:021}"), &format!("{long_path}{i}"));
    }
    c.execute(
        "UPDATE jobs SET status = 'failed' WHERE id IN ('01JOB000000000000000000000', '01JOB000000000000000000001')",
        [],
    )
    .unwrap();

    let out = agent.cli(&["jobs", "list", "--limit", "10"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = text(&out.stdout);
    let rows: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 10, "{}", show(&out));
    assert!(
        rows[0].starts_with("01JOB000000000000000000023"),
        "newest first: {}",
        show(&out)
    );
    // Not a terminal: the 100-character path is printed whole.
    assert!(stdout.contains(&format!("{long_path}23")), "{}", show(&out));
    let last = "01JOB000000000000000000014";
    assert!(rows[9].starts_with(last), "{}", show(&out));
    assert_eq!(
        text(&out.stderr).trim(),
        format!("… 15 more; use --limit N (0: all), --before {last} (the next page) or --status"),
    );

    // The next page by a lower-case prefix of the last id: the rest, the areas job last.
    let out = agent.cli(&[
        "jobs",
        "list",
        "--limit",
        "15",
        "--before",
        &last.to_lowercase(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 16, "{}", show(&out));
    assert!(stdout.lines().last().unwrap().starts_with(&areas));
    assert_eq!(
        text(&out.stderr),
        "",
        "a page that ends the list says nothing"
    );

    let all = agent.cli(&["jobs", "list", "--limit", "0"]);
    assert_eq!(all.status.code(), Some(0));
    assert_eq!(text(&all.stdout).lines().count(), 26, "{}", show(&all));
    assert_eq!(text(&all.stderr), "");

    let json = agent.cli(&[
        "jobs", "list", "--status", "queued", "--limit", "5", "--json",
    ]);
    assert_eq!(json.status.code(), Some(0));
    let rows: Vec<Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(rows.len(), 5);
    let queued = agent.count("SELECT count(*) FROM jobs WHERE status = 'queued'");
    assert_eq!(queued, 23);
    assert!(
        text(&json.stderr).starts_with(&format!("… {} more;", queued - 5)),
        "{}",
        show(&json)
    );
    let failed = agent.cli(&["jobs", "list", "--status", "failed", "--limit", "2"]);
    assert_eq!(text(&failed.stdout).lines().count(), 3, "{}", show(&failed));
    assert_eq!(text(&failed.stderr), "", "exactly the limit, nothing more");
}

#[test]
fn limit_0_lists_every_job_page_by_page() {
    let agent = Agent::new();
    agent.add_credential("gl", "tok");
    let mut c = writable(&agent);
    let tx = c.transaction().unwrap();
    // More than one internal page (5000), so the listing crosses a page boundary.
    for i in 0..5003 {
        insert_job(&tx, &format!("01MANY{i:020}"), "p");
    }
    tx.commit().unwrap();
    let out = agent.cli(&["jobs", "list", "--limit", "0", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 5004, "every job once");
    let distinct: std::collections::HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), 5004);
    assert_eq!(ids[0], "01MANY00000000000000005002", "newest first");
    let out = agent.cli(&["jobs", "list", "--limit", "0"]);
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 5005, "one header, every job");
    assert_eq!(stdout.matches("CREDENTIAL").count(), 1);
    assert_eq!(text(&out.stderr), "");
    let none = agent.cli(&[
        "jobs", "list", "--limit", "0", "--status", "running", "--json",
    ]);
    assert_eq!(text(&none.stdout).trim(), "[]");
}

#[test]
fn errors_say_how_many_more_and_limit_0_lists_all() {
    let agent = Agent::new();
    agent.add_credential("gl", "tok");
    let c = writable(&agent);
    let now = crawler_agent::time::Timestamp::now().to_string();
    let long = format!("connection reset {}", "x".repeat(300));
    for i in 0..12 {
        c.execute(
            "INSERT INTO errors (at, category, severity, message) VALUES (?1, 'connection', 'low', ?2)",
            params![now, format!("{i} {long}")],
        )
        .unwrap();
    }
    let out = agent.cli(&["errors", "--limit", "5"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(text(&out.stdout).lines().count(), 6, "{}", show(&out));
    assert!(
        text(&out.stdout).contains(&format!("11 {long}")),
        "whole, newest first"
    );
    assert_eq!(
        text(&out.stderr).trim(),
        "… 7 more; use --limit N (0: all) or --since (a shorter window)"
    );
    let all = agent.cli(&["errors", "--limit", "0"]);
    assert_eq!(text(&all.stdout).lines().count(), 13, "{}", show(&all));
    assert_eq!(text(&all.stderr), "");
    let none = agent.cli(&["errors", "--since", "1s", "--limit", "5"]);
    assert_eq!(none.status.code(), Some(0));
}

#[test]
fn job_ids_are_taken_by_unique_prefix_in_any_case() {
    let agent = Agent::new();
    agent.add_credential("gl", "tok");
    let c = writable(&agent);
    let single = "01AAAA00000000000000000001";
    insert_job(&c, single, "a/one");
    for i in 0..12 {
        insert_job(&c, &format!("01BBBB{i:020}"), "b/many");
    }

    let out = agent.cli(&["jobs", "show", "01aaaa"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(text(&out.stdout).starts_with(&format!("id             {single}")));

    let out = agent.cli(&["jobs", "cancel", "01aAaA0"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(agent.job_status(single), "cancelled");
    let out = agent.cli(&["jobs", "retry", "01AAAA"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(agent.job_status(single), "queued");

    // Ambiguous: exit 2, the first ten candidates and how many more; nothing changes.
    let out = agent.cli(&["jobs", "cancel", "01bbbb"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("'01bbbb' is ambiguous: it matches 12 jobs"),
        "{err}"
    );
    for i in 0..10 {
        assert!(err.contains(&format!("\n  01BBBB{i:020}")), "{err}");
    }
    assert!(!err.contains("01BBBB00000000000000000010"), "{err}");
    assert!(err.trim_end().ends_with("and 2 more"), "{err}");
    assert_eq!(
        agent.count("SELECT count(*) FROM jobs WHERE id LIKE '01BBBB%' AND status = 'queued'"),
        12
    );
    assert_eq!(agent.cli(&["jobs", "show", "01B"]).status.code(), Some(2));
    assert_eq!(
        agent
            .cli(&["jobs", "list", "--before", "01bb"])
            .status
            .code(),
        Some(2)
    );

    // None: exit 1, and the id is echoed bounded.
    for typed in ["01ZZZ", "", "01AAAA00000000000000000001X", "01 AAAA"] {
        let out = agent.cli(&["jobs", "show", typed]);
        assert_eq!(out.status.code(), Some(1), "{typed:?}: {}", show(&out));
        assert!(text(&out.stderr).contains("no job"), "{}", show(&out));
    }
    let long = "0".repeat(5000);
    let out = agent.cli(&["jobs", "retry", &long]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).len() < 200, "{}", show(&out));
    // An escape sequence in the typed id is echoed escaped, never to the terminal as is.
    for args in [["jobs", "show"], ["jobs", "cancel"]] {
        let out = agent.cli(&[args[0], args[1], "01\x1b]0;pwned\x07\x1b[2J"]);
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        let err = text(&out.stderr);
        assert!(!err.contains('\x1b') && !err.contains('\x07'), "{err:?}");
        assert!(err.contains("\\u{1b}]0;pwned\\u{7}"), "{err:?}");
    }
}

#[test]
fn failures_with_a_known_cause_carry_a_hint_wherever_they_are_shown() {
    let agent = Agent::start(&[]);
    let areas = agent.add_credential("gl", "tok");
    let project = agent
        .add_job("gl", "project", "7", &["--priority", "20"])
        .trim()
        .to_string();
    let mut crawler = agent.connect();
    assert_eq!(crawler.request_one()["id"], project.as_str());
    crawler.send_type("job_started", Some(&project), json!({}));
    crawler.send_type(
        "job_failed",
        Some(&project),
        json!({"error": "Unknown task type: fetch_project\u{1b}[2J", "errorType": "Error", "isRecoverable": true}),
    );
    agent.wait_for(
        &format!("SELECT count(*) FROM jobs WHERE id = '{project}' AND status = 'failed'"),
        1,
    );
    assert_eq!(crawler.request_one()["id"], areas.as_str());
    let error =
        "undefined is not an object (evaluating 'progress.estimatedTime.estimatedTimeRemaining')";
    let frames: Vec<String> = (0..12)
        .map(|i| format!("    at frame{i} (/usr/src/app/src/api/gitlab-processor.ts:{i}:17)"))
        .collect();
    let stack = format!("TypeError: {error}\n{}", frames.join("\n"));
    crawler.send_type(
        "job_failed",
        Some(&areas),
        json!({"error": error, "errorType": "TypeError", "isRecoverable": true,
               "stackTrace": stack, "context": {"jobId": areas, "entityType": "areas"},
               "partialCounts": {"groups": 4}}),
    );
    agent.wait_for(
        &format!(
            "SELECT count(*) FROM errors WHERE job_id = '{areas}' AND stack_trace IS NOT NULL"
        ),
        1,
    );
    let error_id: i64 = agent
        .db()
        .query_row(
            "SELECT id FROM errors WHERE job_id = ?1 AND stack_trace IS NOT NULL",
            [&areas],
            |r| r.get(0),
        )
        .unwrap();

    // `errors`: each hint once, after the table, naming its errors; the message whole.
    let list = agent.ok(&["errors"]);
    assert!(
        list.contains(&format!("job {areas} failed: {error}")),
        "{list}"
    );
    assert!(
        list.contains(&format!("hint for {error_id}: a known crawler bug")),
        "{list}"
    );
    assert!(list.contains("§6.1"), "{list}");
    assert!(
        list.contains("the crawler cannot run this entity type"),
        "{list}"
    );
    assert!(
        !list.contains('\x1b'),
        "the crawler's escapes are written out: {list}"
    );
    assert!(list.contains("fetch_project\\u{1b}[2J"), "{list}");
    let json: Vec<Value> = serde_json::from_str(&agent.ok(&["errors", "--json"])).unwrap();
    let row = json.iter().find(|e| e["id"] == error_id).unwrap();
    assert!(row["hint"]
        .as_str()
        .unwrap()
        .contains("progress.estimatedTime"));

    // `errors show`: every field, the whole stack trace, the hint.
    let shown = agent.ok(&["errors", "show", &error_id.to_string()]);
    for needle in [
        "error type     TypeError",
        "recoverable    true",
        "partial counts {\"groups\":4}",
        "hint           a known crawler bug",
        "stack trace\n  TypeError: undefined",
        "  at frame11 (/usr/src/app/src/api/gitlab-processor.ts:11:17)",
    ] {
        assert!(shown.contains(needle), "{needle:?} in:\n{shown}");
    }
    let json: Value =
        serde_json::from_str(&agent.ok(&["errors", "show", &error_id.to_string(), "--json"]))
            .unwrap();
    assert_eq!(json["stack_trace"], stack.as_str());
    assert_eq!(json["context"]["entityType"], "areas");
    assert!(json["hint"].as_str().unwrap().contains("5 s"));
    let missing = agent.cli(&["errors", "show", "999999"]);
    assert_eq!(missing.status.code(), Some(1), "{}", show(&missing));
    assert_eq!(agent.cli(&["errors", "show", "x"]).status.code(), Some(2));

    // `jobs show` (by prefix): the hint, the failure with its stack trace, the history.
    let shown = agent.ok(&["jobs", "show", &areas[..20].to_lowercase()]);
    for needle in [
        &format!("last error     {error}") as &str,
        "hint           a known crawler bug",
        "failures       1",
        "  at frame11 (/usr/src/app/src/api/gitlab-processor.ts:11:17)",
        "progress       no progress reported",
        "parent job     -",
    ] {
        assert!(shown.contains(needle), "{needle:?} in:\n{shown}");
    }
    let json: Value =
        serde_json::from_str(&agent.ok(&["jobs", "show", &project, "--json"])).unwrap();
    assert!(json["hint"]
        .as_str()
        .unwrap()
        .contains("dispatch.entity_types"));
    assert_eq!(json["errors_total"], 2, "the failure and the pause: {json}");
    assert!(json["errors"][0]["hint"].is_string());
    assert_eq!(json["progress"]["reports"], 0);
    let transitions = agent.count(&format!(
        "SELECT count(*) FROM job_events WHERE job_id = '{project}'"
    ));
    assert_eq!(json["events_total"], transitions);
    assert_eq!(json["events"].as_array().unwrap().len() as i64, transitions);

    // `status`: the recent errors carry their hints.
    let status = agent.ok(&["status"]);
    assert!(status.contains("    hint: a known crawler bug"), "{status}");
    assert!(
        status.contains("    hint: the crawler cannot run"),
        "{status}"
    );
}

#[test]
fn status_with_no_database_says_no_agent_wrote_here_and_how_to_start_one() {
    let agent = Agent::new();
    let out = agent.cli(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("NOT REACHABLE"), "{stdout}");
    assert!(stdout.contains("no agent has written here"), "{stdout}");
    assert!(stdout.contains(&start_hint(&agent)), "{stdout}");
    assert!(
        !agent.db_path().exists(),
        "status never creates the database"
    );
    let json: Value = serde_json::from_slice(&agent.cli(&["status", "--json"]).stdout).unwrap();
    assert_eq!(json["reachable"], false);
    assert_eq!(json["database_exists"], false);

    // A database the CLI wrote (a credential) but no agent ever served.
    agent.add_credential("gl", "tok");
    let out = agent.cli(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("no agent has written here yet"), "{stdout}");
    assert!(stdout.contains(&start_hint(&agent)), "{stdout}");
}

/// What `status` suggests here: systemctl when the unit is installed, else serve.
fn start_hint(agent: &Agent) -> String {
    let unit = [
        "/etc/systemd/system/crawler-agent.service",
        "/usr/lib/systemd/system/crawler-agent.service",
        "/lib/systemd/system/crawler-agent.service",
    ]
    .iter()
    .any(|f| std::path::Path::new(f).exists());
    if unit {
        "`systemctl start crawler-agent`".into()
    } else {
        format!(
            "`crawler-agent --db {} --socket {} serve`",
            agent.db_path().display(),
            agent.socket().display()
        )
    }
}

#[test]
fn status_when_the_agent_died_says_when_it_last_wrote() {
    let mut agent = Agent::start(&[]);
    agent.wait_for("SELECT count(*) FROM agent_runtime", 1);
    agent.kill();
    let out = agent.cli(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let written: String = agent
        .db()
        .query_row("SELECT updated_at FROM agent_runtime", [], |r| r.get(0))
        .unwrap();
    assert!(
        json["down"]["last_agent_write_at"].as_str().unwrap() >= written.as_str(),
        "{json}"
    );
    assert!(
        json["down"]["held_by_pid"].is_null(),
        "the holder is dead: {json}"
    );
    let out = agent.cli(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("an agent wrote to this database "),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("ago ({}", &written[..10])),
        "{stdout}"
    );
    assert!(stdout.contains("next      "), "{stdout}");
}

#[test]
fn status_on_another_socket_names_the_socket_the_agent_serves() {
    let agent = Agent::start(&[]);
    let elsewhere = agent.dir.path().join("other.sock");
    let out = Command::new(BIN)
        .arg("--db")
        .arg(agent.db_path())
        .arg("--socket")
        .arg(&elsewhere)
        .args(["status"])
        .env("HOME", agent.dir.path())
        .env_remove("CONFIGURATION_DIRECTORY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "next      agent pid {} serves this database on {}",
            agent.pid(),
            agent.socket().display()
        )),
        "{stdout}"
    );
}
