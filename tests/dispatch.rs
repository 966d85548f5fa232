//! Which job the crawler gets, and when: the dispatch rules of spec §5.2.

mod common;
use common::Agent;
use serde_json::json;
use std::time::Duration;

fn add_job(agent: &Agent, args: &[&str]) -> String {
    let mut all = vec!["jobs", "add", "--credential", "gl"];
    all.extend_from_slice(args);
    agent.ok(&all).trim().to_string()
}

#[test]
fn every_job_request_gets_a_jobs_array_even_with_nothing_to_do() {
    let agent = Agent::start(&[]);
    let mut crawler = agent.connect();
    for _ in 0..3 {
        assert!(crawler.request_jobs().is_empty());
    }
}

#[test]
fn one_job_per_response_highest_priority_first_then_oldest() {
    let agent = Agent::start(&[("CRAWLER_AGENT_DISCOVERY_FOLLOW_UP_TYPES", "")]);
    let areas = agent.add_credential("gl", "tok");
    let low = add_job(&agent, &["--type", "project", "--entity-id", "1"]);
    let old_high = add_job(
        &agent,
        &["--type", "project", "--entity-id", "2", "--priority", "50"],
    );
    let new_high = add_job(
        &agent,
        &["--type", "project", "--entity-id", "3", "--priority", "50"],
    );
    let mut crawler = agent.connect();
    let mut order = Vec::new();
    for _ in 0..4 {
        let job = crawler.request_one();
        let id = job["id"].as_str().unwrap().to_string();
        crawler.send_type(
            "job_completed",
            Some(&id),
            json!({"success": true, "finalCounts": {}}),
        );
        order.push(id);
    }
    assert_eq!(order, [old_high, new_high, areas, low]);
    let claimed: i64 = agent.count("SELECT count(*) FROM job_events WHERE event = 'dispatched'");
    assert_eq!(claimed, 4);
}

#[test]
fn jobs_per_response_is_configurable() {
    let agent = Agent::start(&[("CRAWLER_AGENT_DISPATCH_JOBS_PER_RESPONSE", "2")]);
    agent.add_credential("gl", "tok");
    add_job(&agent, &["--type", "project", "--entity-id", "1"]);
    add_job(&agent, &["--type", "project", "--entity-id", "2"]);
    let mut crawler = agent.connect();
    let jobs = crawler.request_jobs();
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        agent.count("SELECT count(*) FROM jobs WHERE status = 'assigned' AND attempts = 1"),
        2
    );
}

#[test]
fn only_enabled_entity_types_are_dispatched() {
    let agent = Agent::start(&[("CRAWLER_AGENT_DISPATCH_ENTITY_TYPES", "project")]);
    agent.add_credential("gl", "tok");
    let project = add_job(&agent, &["--type", "project", "--entity-id", "1"]);
    let mut crawler = agent.connect();
    assert_eq!(
        crawler.request_one()["id"],
        project.as_str(),
        "the older areas job is skipped, not blocking"
    );
}

#[test]
fn nothing_new_is_handed_out_while_this_crawler_may_still_be_running_a_job() {
    let agent = Agent::start(&[("CRAWLER_AGENT_DISPATCH_ORPHAN_AFTER", "60s")]);
    agent.add_credential("gl", "tok");
    add_job(&agent, &["--type", "project", "--entity-id", "1"]);
    let mut crawler = agent.connect();
    crawler.request_one();
    // A poll that crossed our reply must not start a second job alongside the first.
    assert!(crawler.request_jobs().is_empty());
}

#[test]
fn a_reconnecting_crawler_first_gets_nothing_then_its_lost_job_is_recovered() {
    let agent = Agent::start(&[
        ("CRAWLER_AGENT_DISPATCH_ORPHAN_AFTER", "1s"),
        ("CRAWLER_AGENT_RETRY_BACKOFF_BASE", "0s"),
    ]);
    let job_id = agent.add_credential("gl", "tok");
    let mut first = agent.connect();
    assert_eq!(first.request_one()["id"], job_id.as_str());
    drop(first);
    agent.wait_for(
        "SELECT count(*) FROM connections WHERE closed_at IS NOT NULL AND job_requests = 1",
        1,
    );

    let mut second = agent.connect();
    // First request after (re)connect: the old job may still be running in the crawler.
    assert!(second.request_jobs().is_empty());
    std::thread::sleep(Duration::from_millis(1100));
    // A later request proves the crawler idle: the job was lost, and is retried.
    let again = second.request_one();
    assert_eq!(again["id"], job_id.as_str());
    let events: String = agent
        .db()
        .query_row(
            "SELECT group_concat(event) FROM job_events WHERE job_id = ?1",
            [&job_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(events, "created,dispatched,lost,dispatched");
    assert_eq!(agent.count("SELECT attempts FROM jobs"), 2);
}

#[test]
fn a_fresh_crawler_against_an_idle_agent_gets_work_at_once() {
    let agent = Agent::start(&[]);
    agent.add_credential("gl", "tok");
    assert_eq!(agent.connect().request_jobs().len(), 1);
}

#[test]
fn a_job_waiting_for_its_retry_backoff_is_not_dispatched_early() {
    let agent = Agent::start(&[
        ("CRAWLER_AGENT_RETRY_BACKOFF_BASE", "1h"),
        ("CRAWLER_AGENT_RETRY_BACKOFF_MAX", "2h"),
    ]);
    let job_id = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type(
        "job_failed",
        Some(&job_id),
        json!({"error": "timeout", "isRecoverable": true}),
    );
    agent.wait_for(
        "SELECT count(*) FROM jobs WHERE status = 'queued' AND not_before IS NOT NULL",
        1,
    );
    assert!(crawler.request_jobs().is_empty());
    // An operator can put it back now.
    let out = agent.cli(&["jobs", "retry", &job_id]);
    assert!(!out.status.success(), "retry is for ended jobs only");
}

#[test]
fn unknown_task_type_pauses_that_type_until_an_operator_resumes_it() {
    let agent = Agent::start(&[("CRAWLER_AGENT_DISCOVERY_FOLLOW_UP_TYPES", "")]);
    let areas = agent.add_credential("gl", "tok");
    let issue1 = add_job(
        &agent,
        &["--type", "issue", "--entity-id", "1", "--priority", "20"],
    );
    let issue2 = add_job(
        &agent,
        &["--type", "issue", "--entity-id", "2", "--priority", "20"],
    );
    let mut crawler = agent.connect();
    let job = crawler.request_one();
    assert_eq!(
        job["id"],
        issue1.as_str(),
        "the issue jobs have the higher priority"
    );
    crawler.send_type("job_started", Some(&issue1), json!({}));
    crawler.send_type(
        "job_failed",
        Some(&issue1),
        json!({"error": "Unknown task type: fetch_issues", "errorType": "Error", "isRecoverable": true}),
    );
    agent.wait_for(
        "SELECT count(*) FROM paused_entity_types WHERE entity_type = 'issue'",
        1,
    );
    assert_eq!(
        agent.job_status(&issue1),
        "failed",
        "a permanent error is not retried"
    );
    // The other issue job waits; discovery goes ahead.
    assert_eq!(crawler.request_one()["id"], areas.as_str());
    crawler.send_type(
        "job_completed",
        Some(&areas),
        json!({"success": true, "finalCounts": {}}),
    );
    assert!(crawler.request_jobs().is_empty());
    let status = String::from_utf8(agent.cli(&["status"]).stdout).unwrap();
    assert!(
        status.contains("paused") && status.contains("'issue'"),
        "{status}"
    );

    agent.ok(&["jobs", "resume-type", "issue"]);
    assert_eq!(crawler.request_one()["id"], issue2.as_str());
}

#[test]
fn a_trusted_type_is_never_paused() {
    let agent = Agent::start(&[(
        "CRAWLER_AGENT_DISPATCH_TRUSTED_ENTITY_TYPES",
        "areas,project",
    )]);
    agent.add_credential("gl", "tok");
    // Above the credential's discovery job (priority 10), so this one goes out.
    let p = add_job(
        &agent,
        &["--type", "project", "--entity-id", "1", "--priority", "50"],
    );
    let mut crawler = agent.connect();
    assert_eq!(crawler.request_one()["id"], p.as_str());
    crawler.send_type(
        "job_failed",
        Some(&p),
        json!({"error": "Unknown task type: fetch_project", "isRecoverable": true}),
    );
    agent.wait_for("SELECT count(*) FROM jobs WHERE status = 'failed'", 1);
    assert_eq!(agent.count("SELECT count(*) FROM paused_entity_types"), 0);
}

#[test]
fn a_finished_discovery_is_queued_again_after_rediscover_after() {
    let agent = Agent::start(&[("CRAWLER_AGENT_DISCOVERY_REDISCOVER_AFTER", "2s")]);
    let areas = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type(
        "job_completed",
        Some(&areas),
        json!({"success": true, "finalCounts": {"areas": 0}}),
    );
    agent.wait_for(
        &format!("SELECT count(*) FROM jobs WHERE id = '{areas}' AND status = 'finished'"),
        1,
    );
    agent.wait_for(
        &format!(
            "SELECT count(*) FROM job_events WHERE job_id = '{areas}' AND event = 'rediscover'"
        ),
        1,
    );
    assert_eq!(agent.job_status(&areas), "queued");
    assert_eq!(crawler.request_one()["id"], areas.as_str());
}
