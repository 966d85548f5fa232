//! Secrets never leak: not into logs, not into CLI output, not into any table but the
//! one that must hold them; and the database is private to its owner.

mod common;
use common::Agent;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

const TOKEN: &str = "glpat-TOPSECRET-4f9a2c";
const ROTATED: &str = "glpat-ROTATED-77b1e0";
const REFRESH: &str = "REFRESHSECRET-91c3";
const CLIENT_SECRET: &str = "CLIENTSECRET-0d5e";
const OAUTH_ACCESS: &str = "OAUTHACCESS-6a2f";

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
    let rotated = agent.cli_env(
        &[
            "credentials",
            "add",
            "gl",
            "--url",
            "https://gitlab.example.com",
            "--token-env",
            "T",
            "--replace",
        ],
        &[("T", ROTATED)],
    );
    assert!(rotated.status.success());
    let oauth = agent.cli_env(
        &[
            "credentials",
            "add",
            "oa",
            "--url",
            "https://gitlab.example.com",
            "--refresh-token-env",
            "RT",
            "--oauth-client-id",
            "app",
            "--oauth-client-secret-env",
            "CS",
            "--access-token-env",
            "AT",
            "--no-discover",
        ],
        &[("RT", REFRESH), ("CS", CLIENT_SECRET), ("AT", OAUTH_ACCESS)],
    );
    assert!(oauth.status.success());
    crawler.send_type("token_refresh_request", Some(&job), json!({}));
    assert_eq!(crawler.recv()["data"]["accessToken"], ROTATED);
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
        // Every field of the job's failures (context, stack trace) too.
        &["jobs", "show", &job],
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
    let secrets = [TOKEN, ROTATED, REFRESH, CLIENT_SECRET, OAUTH_ACCESS];
    for secret in secrets {
        assert!(!agent.log().contains(secret), "{secret} is in the log");
        for out in &outputs {
            assert!(!out.contains(secret), "{secret} is in CLI output:\n{out}");
        }
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
                    for secret in secrets {
                        if text.contains(secret) {
                            holders.push(format!("{table}.{name}"));
                        }
                    }
                }
            }
        }
    }
    holders.sort();
    assert_eq!(
        holders,
        [
            "credentials.access_token",
            "credentials.access_token",
            "credentials.oauth_client_secret",
            "credentials.refresh_token"
        ],
        "the original token was replaced; each secret is in exactly its own column"
    );
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
