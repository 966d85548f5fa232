//! Secrets never leak: not into logs, not into CLI output, not into any table but the
//! one that must hold them; and the database is private to its owner.

mod common;
use common::Agent;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

const TOKEN: &str = "glpat-TOPSECRET-4f9a2c";

#[test]
fn a_full_session_at_trace_level_never_reveals_the_token() {
    let mut agent = Agent::start(&[("CRAWLER_AGENT_LOG_LEVEL", "trace")]);
    let job = agent.add_credential("gl", TOKEN);
    let mut crawler = agent.connect();
    let dispatched = crawler.request_one();
    assert_eq!(
        dispatched["accessToken"], TOKEN,
        "the crawler itself gets it"
    );
    crawler.send_type(
        "job_started",
        Some(&job),
        json!({"entityType": "areas", "entityId": "gl"}),
    );
    crawler.send_type("token_refresh_request", Some(&job), json!({}));
    assert_eq!(crawler.recv()["data"]["accessToken"], TOKEN);
    crawler.send_type(
        "job_failed",
        Some(&job),
        json!({"error": "401 Unauthorized", "isRecoverable": true,
               "context": {"gitlabUrl": "https://gitlab.example.com", "jobId": job}}),
    );
    crawler.send_type("token_refresh_request", Some("unknown"), json!({}));
    crawler.recv();
    agent.wait_for("SELECT count(*) FROM token_refreshes", 2);

    let mut outputs = vec![];
    for args in [
        &["credentials", "list"][..],
        &["credentials", "list", "--json"],
        &["jobs", "list", "--json"],
        &["jobs", "show", &job, "--json"],
        &["status", "--json"],
        &["errors", "--json"],
        &["config", "show"],
    ] {
        let out = agent.cli_env(args, &[("RUST_LOG", "trace")]);
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
        outputs.push(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    agent.stop();
    assert!(
        agent.log().contains("TRACE") || agent.log().contains("DEBUG"),
        "the log is verbose"
    );
    assert!(!agent.log().contains(TOKEN), "the token is in the log");
    for out in outputs {
        assert!(!out.contains(TOKEN), "the token is in CLI output:\n{out}");
    }

    // Only credentials.access_token holds it.
    let db = agent.db();
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut holders = Vec::new();
    for table in tables {
        let mut stmt = db.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let names: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for (i, name) in names.iter().enumerate() {
                if let Ok(Some(text)) = row.get::<_, Option<String>>(i) {
                    if text.contains(TOKEN) {
                        holders.push(format!("{table}.{name}"));
                    }
                }
            }
        }
    }
    assert_eq!(holders, ["credentials.access_token"]);
}

#[test]
fn the_database_and_its_journal_files_are_readable_by_the_owner_only() {
    let agent = Agent::start(&[]);
    agent.add_credential("gl", TOKEN);
    agent.connect().request_one();
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", agent.db_path().display());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{path} is mode {mode:o}");
    }
}
