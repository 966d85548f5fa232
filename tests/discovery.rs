//! Discovered groups and projects: areas and follow-up jobs (spec §7).

mod common;
use common::Agent;
use serde_json::{json, Value};

fn entry(job_type: &str, id: &str, path: &str, name: &str) -> Value {
    json!({"job_type": job_type, "entity_id": id, "namespace_path": path, "entity_name": name, "priority": 1})
}

#[test]
fn the_same_discovery_twice_creates_nothing_new_and_a_rename_updates_in_place() {
    let agent = Agent::start(&[]);
    let areas = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    let batch = json!({"discovered_jobs": [
        entry("crawl_group", "412", "acme/platform", "Platform"),
        entry("crawl_project", "412", "acme/platform/api", "api"),
        entry("crawl_project", "413", "acme/platform/web", "web")],
        "discovery_summary": {"total_groups": 1, "total_projects": 2}});
    crawler.send_type("jobs_discovered", Some(&areas), batch.clone());
    crawler.send_type("jobs_discovered", Some(&areas), batch);
    agent.wait_for("SELECT count(*) FROM discoveries", 2);
    assert_eq!(agent.count("SELECT count(*) FROM areas"), 3);
    assert_eq!(
        agent.count("SELECT count(*) FROM jobs WHERE parent_job_id IS NOT NULL"),
        3
    );
    assert_eq!(
        agent.count("SELECT new_jobs FROM discoveries ORDER BY id DESC LIMIT 1"),
        0
    );

    // Project 413 moved.
    crawler.send_type(
        "jobs_discovered",
        Some(&areas),
        json!({"discovered_jobs": [entry("crawl_project", "413", "acme/web", "web")]}),
    );
    agent.wait_for("SELECT count(*) FROM discoveries", 3);
    assert_eq!(
        agent
            .count("SELECT count(*) FROM areas WHERE gitlab_id = '413' AND full_path = 'acme/web'"),
        1
    );
    assert_eq!(
        agent.count(
            "SELECT count(*) FROM jobs WHERE entity_id = '413' AND namespace_path = 'acme/web'"
        ),
        1
    );
    assert_eq!(agent.count("SELECT count(*) FROM areas"), 3);
}

#[test]
fn invalid_entries_are_dropped_alone_and_counted() {
    let agent = Agent::start(&[]);
    let areas = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type(
        "jobs_discovered",
        Some(&areas),
        json!({"discovered_jobs": [
            entry("crawl_group", "1", "a", "A"),
            entry("crawl_group", "", "b", "B"),
            {"job_type": "crawl_project", "entity_id": 2, "namespace_path": "a/p", "entity_name": "p"},
            {"job_type": "crawl_galaxy", "entity_id": "3", "namespace_path": "x", "entity_name": "x"},
            {"job_type": ["not", "a", "string"]},
            null,
            42]}),
    );
    agent.wait_for(
        "SELECT count(*) FROM discoveries WHERE entries = 7 AND rejected = 5 AND new_areas = 2",
        1,
    );
    assert_eq!(
        agent.count("SELECT count(*) FROM areas WHERE kind = 'project' AND gitlab_id = '2'"),
        1
    );
    assert_eq!(
        agent.count("SELECT count(*) FROM errors WHERE message LIKE '%5 of 7 entries invalid%'"),
        1
    );
}

#[test]
fn discovery_is_kept_even_when_the_job_then_fails() {
    let agent = Agent::start(&[]);
    let areas = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type(
        "jobs_discovered",
        Some(&areas),
        json!({"discovered_jobs": [entry("crawl_group", "9", "g", "G")]}),
    );
    crawler.send_type(
        "job_failed",
        Some(&areas),
        json!({"error": "undefined is not an object (evaluating 'progress.estimatedTime.estimatedTimeRemaining')",
               "errorType": "TypeError", "isRecoverable": true}),
    );
    agent.wait_for(
        &format!("SELECT count(*) FROM jobs WHERE id = '{areas}' AND status = 'failed'"),
        1,
    );
    assert_eq!(agent.count("SELECT count(*) FROM areas"), 1);
}

#[test]
fn a_discovery_message_upserts_areas_without_jobs() {
    // Groups would get follow-up jobs from a jobs_discovered; a discovery makes none.
    let agent = Agent::start(&[("CRAWLER_AGENT_DISCOVERY_FOLLOW_UP_TYPES", "group,project")]);
    agent.add_credential("gl", "tok");
    assert_eq!(
        agent.count("SELECT count(*) FROM jobs"),
        1,
        "the first areas job"
    );
    let mut crawler = agent.connect();
    crawler.send_type(
        "discovery",
        None,
        json!({"entityType": "group", "entities": [
            {"id": "412", "name": "Platform", "path": "acme/platform"},
            {"id": "413", "name": "Sub", "path": "acme/platform/sub", "parentId": "412"}]}),
    );
    agent.wait_for("SELECT count(*) FROM areas WHERE kind = 'group'", 2);
    assert_eq!(
        agent.count("SELECT count(*) FROM areas WHERE parent_gitlab_id = '412'"),
        1
    );
    assert_eq!(
        agent.count("SELECT count(*) FROM jobs"),
        1,
        "no follow-up jobs"
    );
}

/// A batch that fails half-way (here its follow-up jobs, on a job id that is taken)
/// leaves nothing behind once its transaction rolls back, not even in the stage: the
/// next batch writes exactly its own rows. And should a caller commit after such a
/// failure, the next batch still writes only its own.
#[test]
fn a_batch_that_fails_half_way_leaves_nothing_for_the_next() {
    use crawler_agent::config::Config;
    use crawler_agent::store::{self, discovery};
    use crawler_agent::time::Timestamp;
    let dir = tempfile::tempdir().unwrap();
    let settings = store::Settings::from(&Config::default().storage);
    let mut c = store::open_read_write(&dir.path().join("a.db"), &settings).unwrap();
    c.execute_batch(
        "INSERT INTO credentials (id, name, gitlab_url, access_token, token_source, created_at, updated_at)
             VALUES (1, 'gl', 'https://x', 't', 'env', 'x', 'x');
         INSERT INTO jobs (id, credential_id, entity_type, entity_id, max_attempts, status, created_at, updated_at)
             VALUES ('PARENT', 1, 'areas', 'gl', 3, 'running', 'x', 'x'),
                    ('TAKEN', 1, 'project', '999', 3, 'queued', 'x', 'x');",
    )
    .unwrap();
    let origin = discovery::Origin {
        job_id: "PARENT",
        credential_id: 1,
        gitlab_url: "https://x",
        max_attempts: 3,
    };
    let entry = |id: &'static str, job: &str| discovery::Entry {
        kind: "project",
        gitlab_id: id,
        full_path: "g/p",
        name: "p",
        job: Some(job.to_string()),
    };
    let count = |c: &rusqlite::Connection, sql: &str| -> i64 {
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    };

    let tx = c.transaction().unwrap();
    let failed = [entry("1", "J1"), entry("2", "TAKEN")];
    let err = discovery::write_batch(&tx, &failed, origin, Timestamp::now()).unwrap_err();
    assert!(err.to_string().contains("UNIQUE"), "{err}");
    // The areas and links were written before the jobs failed: all of it goes.
    tx.rollback().unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM temp.discovered"), 0);
    assert_eq!(count(&c, "SELECT count(*) FROM areas"), 0);

    let tx = c.transaction().unwrap();
    discovery::write_batch(&tx, &[entry("3", "J3")], origin, Timestamp::now()).unwrap();
    tx.commit().unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM temp.discovered"), 0);
    assert_eq!(count(&c, "SELECT count(*) FROM areas"), 1);
    assert_eq!(
        count(&c, "SELECT count(*) FROM areas WHERE gitlab_id = '3'"),
        1
    );
    assert_eq!(count(&c, "SELECT count(*) FROM area_credentials"), 1);
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM jobs WHERE parent_job_id = 'PARENT'"
        ),
        1
    );
    assert_eq!(count(&c, "SELECT count(*) FROM jobs WHERE id = 'J3'"), 1);

    // Committed after the failure: the half-written areas stay (the caller's choice),
    // the staged entries do not reach the next batch.
    let tx = c.transaction().unwrap();
    let failed = [entry("4", "J4"), entry("5", "TAKEN")];
    assert!(discovery::write_batch(&tx, &failed, origin, Timestamp::now()).is_err());
    tx.commit().unwrap();
    let tx = c.transaction().unwrap();
    discovery::write_batch(&tx, &[entry("6", "J6")], origin, Timestamp::now()).unwrap();
    tx.commit().unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM temp.discovered"), 0);
    assert_eq!(
        count(&c, "SELECT count(*) FROM jobs WHERE id IN ('J4', 'J5')"),
        0
    );
    assert_eq!(count(&c, "SELECT count(*) FROM jobs WHERE id = 'J6'"), 1);
}
