//! `crawler-agent db backup`: a consistent 0600 copy while the agent serves, and with
//! `--without-secrets` a copy that holds no secret anywhere in the file.

mod common;
use common::Agent;
use std::os::unix::fs::PermissionsExt;

/// The CLI run on another database file (the harness's `--db` points at the agent's).
fn cli_on(agent: &Agent, db: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(common::BIN)
        .arg("--db")
        .arg(db)
        .args(args)
        .env("HOME", agent.dir.path())
        .env_remove("CONFIGURATION_DIRECTORY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_backup_while_serving_is_complete_private_and_readable_by_the_cli() {
    let agent = Agent::start(&[]);
    let job = agent.add_credential("gl", "glpat-SECRET-ACCESS-1");
    let mut crawler = agent.connect();
    assert_eq!(crawler.request_one()["id"], job.as_str());
    crawler.send_type(
        "job_progress",
        Some(&job),
        serde_json::json!({"processed": 3}),
    );
    agent.wait_for("SELECT count(*) FROM progress_snapshots", 1);

    let copy = agent.dir.path().join("copy.db");
    // A world-readable file already there is replaced by a private one.
    std::fs::write(&copy, "old").unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = agent.ok(&["db", "backup", copy.to_str().unwrap()]);
    assert!(out.contains("mode 0600"), "{out}");
    assert_eq!(mode(&copy), 0o600);

    let c = rusqlite::Connection::open(&copy).unwrap();
    let status: String = c
        .query_row("SELECT status FROM jobs WHERE id = ?1", [&job], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(status, "running", "the copy is the state at backup time");
    let token: String = c
        .query_row("SELECT access_token FROM credentials", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        token, "glpat-SECRET-ACCESS-1",
        "a full backup keeps the token"
    );
    let integrity: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    drop(c);
    // The CLI reads the copy like any database.
    let listed = cli_on(&agent, &copy, &["jobs", "list"]);
    assert!(listed.contains(&job), "{listed}");
    let leftovers: Vec<_> = std::fs::read_dir(agent.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The agent went on serving throughout.
    crawler.send_type(
        "job_completed",
        Some(&job),
        serde_json::json!({"success": true}),
    );
    agent.wait_for(
        &format!("SELECT count(*) FROM jobs WHERE id = '{job}' AND status = 'finished'"),
        1,
    );
}

#[test]
fn without_secrets_no_byte_of_any_secret_is_left_in_the_file() {
    let agent = Agent::new();
    agent.add_credential("gl", "glpat-SECRET-ACCESS-2");
    // Long enough for SQLite's overflow pages: blanking frees them, and only
    // secure_delete + VACUUM keep their old bytes out of the file.
    let long_refresh = "REFRESH-TOKEN-XYZ.".repeat(400);
    let out = agent.cli_env(
        &[
            "credentials",
            "add",
            "oa",
            "--url",
            "https://gitlab.example.com",
            "--oauth-client-id",
            "app",
            "--oauth-client-secret-env",
            "CS",
            "--refresh-token-env",
            "RT",
        ],
        &[("CS", "CLIENT-SECRET-XYZ"), ("RT", &long_refresh)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = agent.dir.path().join("public.db");
    let out = agent.ok(&["db", "backup", "--without-secrets", copy.to_str().unwrap()]);
    assert!(out.contains("blanked"), "{out}");
    assert_eq!(mode(&copy), 0o600);
    let bytes = std::fs::read(&copy).unwrap();
    for secret in [
        "glpat-SECRET-ACCESS-2",
        "CLIENT-SECRET-XYZ",
        "REFRESH-TOKEN-XYZ",
    ] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is still in the file"
        );
    }
    // The live database still has them: only the copy was blanked.
    let live = std::fs::read(agent.db_path()).unwrap();
    let wal = std::fs::read(agent.dir.path().join("agent.db-wal")).unwrap_or_default();
    let needle = b"glpat-SECRET-ACCESS-2";
    assert!(
        live.windows(needle.len()).any(|w| w == needle)
            || wal.windows(needle.len()).any(|w| w == needle)
    );
    let names = cli_on(&agent, &copy, &["credentials", "list"]);
    assert!(names.contains("gl"), "{names}");
}

#[test]
fn a_backup_onto_the_live_database_is_refused() {
    let agent = Agent::new();
    agent.add_credential("gl", "tok");
    let before = std::fs::read(agent.db_path()).unwrap();
    let link = agent.dir.path().join("link.db");
    std::os::unix::fs::symlink(agent.db_path(), &link).unwrap();
    let hard = agent.dir.path().join("hard.db");
    std::fs::hard_link(agent.db_path(), &hard).unwrap();
    for target in [
        agent.db_path(),
        agent.dir.path().join("agent.db-wal"),
        link,
        hard,
    ] {
        let out = agent.cli(&["db", "backup", target.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{target:?}");
    }
    assert_eq!(std::fs::read(agent.db_path()).unwrap(), before);
}
