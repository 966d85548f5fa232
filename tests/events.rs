//! The notification outbox (`events`): each event is written in the same transaction
//! as the change that caused it, by the real agent, and never carries a secret.

mod common;
use common::Agent;
use serde_json::json;

#[test]
fn a_final_failure_a_paused_type_and_the_last_job_ending_are_events() {
    let agent = Agent::start(&[]);
    let areas = agent.add_credential("gl", "glpat-SECRET-42");
    let project = agent.add_job(
        "gl",
        "project",
        "7",
        &["--path", "grp/proj", "--priority", "10"],
    );
    let project = project.trim().to_string();
    let mut crawler = agent.connect();
    // Two jobs, in whichever order the agent hands them out: the project job fails
    // for good (and pauses its type), the discovery completes.
    for round in 0..2 {
        let job = crawler.request_one();
        let id = job["id"].as_str().unwrap().to_string();
        if id == project {
            crawler.send_type(
                "job_failed",
                Some(&project),
                json!({"error": "Unknown task type: project", "errorType": "Error", "isRecoverable": false}),
            );
        } else {
            assert_eq!(id, areas);
            crawler.send_type(
                "job_completed",
                Some(&areas),
                json!({"success": true, "finalCounts": {}}),
            );
        }
        agent.wait_for(
            "SELECT count(*) FROM jobs WHERE status IN ('finished', 'failed')",
            round + 1,
        );
        if round == 0 {
            assert_eq!(
                agent.count("SELECT count(*) FROM events WHERE kind = 'queue_drained'"),
                0,
                "one job is still queued"
            );
        }
    }
    // The last job ended: the crawl is done.
    agent.wait_for(
        "SELECT count(*) FROM events WHERE kind = 'queue_drained'",
        1,
    );
    assert_eq!(
        agent.count("SELECT count(*) FROM events WHERE kind = 'job_failed'"),
        1
    );
    assert_eq!(
        agent.count(
            "SELECT count(*) FROM events WHERE kind = 'type_paused' AND subject = 'project'"
        ),
        1
    );
    let db = agent.db();
    let (subject, message, details): (String, String, String) = db
        .query_row(
            "SELECT subject, message, details FROM events WHERE kind = 'job_failed'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(subject, project);
    assert!(
        message.contains("grp/proj") && message.contains("Unknown task type"),
        "{message}"
    );
    let details: serde_json::Value = serde_json::from_str(&details).unwrap();
    assert_eq!(details["entity_type"], "project");
    assert_eq!(details["reason"], "not recoverable");

    assert_eq!(agent.count("SELECT count(*) FROM events"), 3);
    let all: String = db
        .query_row(
            "SELECT group_concat(subject || message || details) FROM events",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!all.contains("SECRET"), "no token in any event: {all}");
}

#[test]
fn a_failure_with_retries_left_is_not_an_event() {
    let agent = Agent::start(&[]);
    let areas = agent.add_credential("gl", "glpat-SECRET-42");
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type(
        "job_failed",
        Some(&areas),
        json!({"error": "connection reset", "errorType": "Error", "isRecoverable": true}),
    );
    agent.wait_for(
        &format!("SELECT count(*) FROM job_events WHERE job_id = '{areas}' AND event = 'requeued'"),
        1,
    );
    assert_eq!(agent.count("SELECT count(*) FROM events"), 0);
}
