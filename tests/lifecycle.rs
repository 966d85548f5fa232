//! A job's life as the real crawler reports it, checked in the SQLite file.

mod common;
use common::Agent;
use serde_json::json;

const TOKEN: &str = "glpat-{tok}}{\"\\ü中😀";
const NEW_TOKEN: &str = "glpat-new-{}ä";

#[test]
fn a_discovery_job_runs_from_request_to_completion_and_everything_is_recorded() {
    let agent = Agent::start(&[]);
    let job_id = agent.add_credential("gl", TOKEN);
    let mut crawler = agent.connect();

    let job = crawler.request_one();
    assert_eq!(job["id"], job_id.as_str());
    assert_eq!(job["entityType"], "areas");
    assert_eq!(job["entityId"], "gl");
    assert_eq!(job["gitlabUrl"], "https://gitlab.example.com");
    assert_eq!(
        job["accessToken"], TOKEN,
        "token survives brace counting and per-chunk decoding"
    );
    assert!(
        job.get("resumeState").is_none(),
        "no resumeState unless resuming"
    );

    crawler.send_type(
        "job_started",
        Some(&job_id),
        json!({"entityType": "areas", "entityId": "gl"}),
    );
    crawler.send_type(
        "job_progress",
        Some(&job_id),
        json!({"stage": "fetching", "entityType": "areas", "processed": 200, "total": 400,
               "message": "Fetched 200 items", "itemCounts": {"groups": 200}, "currentPage": 2,
               "processingRate": 12.5, "estimatedTimeRemaining": 16,
               "resumeState": {"lastEntityId": "99", "currentPage": 3, "entityType": "group"}}),
    );
    crawler.send_type(
        "jobs_discovered",
        Some(&job_id),
        json!({"discovered_jobs": [
            {"job_type": "crawl_group", "entity_id": "412", "namespace_path": "acme/platform", "entity_name": "Platform", "priority": 1},
            {"job_type": "crawl_project", "entity_id": "412", "namespace_path": "acme/platform/api", "entity_name": "api", "priority": 1}],
            "discovery_summary": {"total_groups": 1, "total_projects": 1}}),
    );
    // GitLab said 401: the operator rotates the token, the crawler asks again.
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
        &[("T", NEW_TOKEN)],
    );
    assert!(rotated.status.success());
    crawler.send_type("token_refresh_request", Some(&job_id), json!({}));
    let refresh = crawler.recv();
    assert_eq!(refresh["type"], "token_refresh_response");
    assert_eq!(refresh["jobId"], job_id.as_str());
    assert_eq!(refresh["data"]["accessToken"], NEW_TOKEN);
    assert_eq!(refresh["data"]["refreshSuccessful"], true);
    assert!(!refresh["data"]["expiresAt"].as_str().unwrap().is_empty());

    crawler.send_type(
        "job_completed",
        Some(&job_id),
        json!({"success": true, "finalCounts": {"areas": 2}, "message": "Job completed successfully"}),
    );
    agent.wait_for(
        &format!("SELECT count(*) FROM jobs WHERE id = '{job_id}' AND status = 'finished'"),
        1,
    );

    let db = agent.db();
    let events: Vec<String> = db
        .prepare("SELECT event FROM job_events WHERE job_id = ?1 ORDER BY id")
        .unwrap()
        .query_map([&job_id], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        events,
        [
            "created",
            "dispatched",
            "started",
            "discovered",
            "completed"
        ]
    );
    let (counts, resume): (String, Option<String>) = db
        .query_row(
            "SELECT final_counts, resume_state FROM jobs WHERE id = ?1",
            [&job_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(counts, r#"{"areas":2}"#);
    assert_eq!(resume, None, "completion clears the resume state");
    let progress: (String, i64, i64, String, i64, f64, String) = db
        .query_row(
            "SELECT stage, processed, total, item_counts, current_page, processing_rate, resume_state FROM progress_snapshots",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
        )
        .unwrap();
    assert_eq!(progress.0, "fetching");
    assert_eq!((progress.1, progress.2, progress.4), (200, 400, 2));
    assert_eq!(progress.3, r#"{"groups":200}"#);
    assert_eq!(progress.5, 12.5);
    assert!(progress.6.contains("lastEntityId"));
    // Group 412 and project 412 are different areas.
    assert_eq!(
        agent.count("SELECT count(*) FROM areas WHERE gitlab_id = '412'"),
        2
    );
    assert_eq!(agent.count("SELECT count(*) FROM area_credentials"), 2);
    assert_eq!(
        agent.count("SELECT count(*) FROM jobs WHERE parent_job_id IS NOT NULL AND entity_id = '412' AND status = 'queued'"),
        2
    );
    assert_eq!(agent.count("SELECT count(*) FROM discoveries WHERE summary = '{\"total_groups\":1,\"total_projects\":1}'"), 1);
    assert_eq!(
        agent.count("SELECT count(*) FROM token_refreshes WHERE outcome = 'served'"),
        1
    );
    let detail: String = db
        .query_row(
            "SELECT group_concat(detail) FROM token_refreshes",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!detail.contains("glpat"), "no token in the refresh record");
    let live = format!(
        "SELECT count(*) FROM connections WHERE peer_pid = {} AND closed_at IS NULL",
        std::process::id()
    );
    assert_eq!(
        agent.count(&live),
        1,
        "the crawler connection is recorded with its pid"
    );
    assert!(!agent.log().contains("glpat"), "no token in the log");
    assert_eq!(
        agent.count("SELECT count(*) FROM jobs WHERE parent_job_id IS NULL"),
        1,
        "--replace queued no second discovery"
    );
}

#[test]
fn a_failed_job_is_stored_in_full_and_retried_from_the_start_until_the_cap() {
    let agent = Agent::start(&[
        ("CRAWLER_AGENT_RETRY_BACKOFF_BASE", "0s"),
        ("CRAWLER_AGENT_DISPATCH_ORPHAN_AFTER", "60s"),
    ]);
    let job_id = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    for attempt in 1..=3 {
        let job = crawler.request_one();
        assert_eq!(job["id"], job_id.as_str(), "attempt {attempt}");
        // Spec §4.3: the crawler starts every listing at currentPage, so an automatic
        // retry never carries the resumeState (only `jobs retry ID --resume` does).
        assert!(
            job.get("resumeState").is_none(),
            "attempt {attempt} carried a resumeState: {job}"
        );
        crawler.send_type(
            "job_started",
            Some(&job_id),
            json!({"entityType": "areas", "entityId": "gl"}),
        );
        crawler.send_type(
            "job_failed",
            Some(&job_id),
            json!({"error": "GitLab API error: 502 Bad Gateway", "errorType": "Error", "isRecoverable": true,
                   "resumeState": {"currentPage": 7}, "partialCounts": {"groups": 3},
                   "stackTrace": "Error: 502\n    at fetch (x.ts:1:1)",
                   "context": {"jobId": job_id, "httpStatus": 502}}),
        );
        let want = if attempt < 3 { "queued" } else { "failed" };
        agent.wait_for(&format!("SELECT count(*) FROM jobs WHERE id = '{job_id}' AND status = '{want}' AND attempts = {attempt}"), 1);
    }
    assert!(crawler.request_jobs().is_empty(), "no attempts left");
    let (error_type, recoverable, stack, context, partial, resume): (String, bool, String, String, String, String) = agent
        .db()
        .query_row(
            "SELECT error_type, is_recoverable, stack_trace, context, partial_counts, resume_state FROM errors
             WHERE category = 'job' ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )
        .unwrap();
    assert_eq!(error_type, "Error");
    assert!(recoverable);
    assert_eq!(stack, "Error: 502\n    at fetch (x.ts:1:1)");
    assert!(context.contains("\"httpStatus\":502"));
    assert_eq!(partial, r#"{"groups":3}"#);
    assert_eq!(resume, r#"{"currentPage":7}"#);
    let last: String = agent
        .db()
        .query_row(
            "SELECT detail FROM job_events WHERE job_id = ?1 ORDER BY id DESC LIMIT 1",
            [&job_id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(last.contains("attempts exhausted"), "{last}");
}

#[test]
fn a_failure_marked_not_recoverable_is_final_at_once() {
    let agent = Agent::start(&[("CRAWLER_AGENT_RETRY_BACKOFF_BASE", "0s")]);
    let job_id = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type(
        "job_failed",
        Some(&job_id),
        json!({"error": "403 Forbidden", "isRecoverable": false}),
    );
    agent.wait_for(
        &format!("SELECT count(*) FROM jobs WHERE id = '{job_id}' AND status = 'failed'"),
        1,
    );
    assert!(crawler.request_jobs().is_empty());
}

#[test]
fn late_and_duplicate_messages_never_revive_an_ended_job() {
    let agent = Agent::start(&[]);
    let job_id = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type(
        "job_completed",
        Some(&job_id),
        json!({"success": true, "finalCounts": {}}),
    );
    crawler.send_type("job_started", Some(&job_id), json!({}));
    crawler.send_type(
        "job_failed",
        Some(&job_id),
        json!({"error": "late", "isRecoverable": true}),
    );
    crawler.send_type(
        "job_completed",
        Some(&job_id),
        json!({"success": true, "finalCounts": {}}),
    );
    agent.wait_for(
        &format!("SELECT count(*) FROM job_events WHERE job_id = '{job_id}' AND event = 'ignored'"),
        3,
    );
    assert_eq!(agent.job_status(&job_id), "finished");
    // The late failure is still kept as an error row.
    assert_eq!(
        agent.count("SELECT count(*) FROM errors WHERE message LIKE '%late'"),
        1
    );

    // A cancelled job stays cancelled whatever the crawler says.
    let other = agent.add_job("gl", "project", "7", &[]);
    let other = other.trim();
    let job = crawler.request_one();
    assert_eq!(job["id"], other);
    agent.ok(&["jobs", "cancel", other]);
    crawler.send_type(
        "job_completed",
        Some(other),
        json!({"success": true, "finalCounts": {}}),
    );
    agent.wait_for(
        &format!("SELECT count(*) FROM job_events WHERE job_id = '{other}' AND event = 'ignored'"),
        1,
    );
    assert_eq!(agent.job_status(other), "cancelled");
}

#[test]
fn messages_about_unknown_jobs_and_unknown_types_are_recorded_and_the_connection_carries_on() {
    let agent = Agent::start(&[]);
    agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.send_type("job_started", Some("NOPE"), json!({}));
    crawler.send_type(
        "job_progress",
        Some("NOPE"),
        json!({"stage": "fetching", "processed": 1}),
    );
    crawler.send_type("job_completed", Some("NOPE"), json!({"success": true}));
    crawler.send_type("job_failed", Some("NOPE"), json!({"error": "x"}));
    crawler.send_type(
        "jobs_discovered",
        Some("NOPE"),
        json!({"discovered_jobs": []}),
    );
    crawler.send_type("job_assignment", None, json!({}));
    crawler.send(&json!({"origin": "x", "type": "jobRequest", "key": "request_jobs"}));
    assert_eq!(crawler.request_jobs().len(), 1, "still served");
    agent.wait_for("SELECT count(*) FROM errors WHERE job_id = 'NOPE'", 5);
    assert_eq!(agent.count("SELECT count(*) FROM errors WHERE message LIKE 'message ignored: unknown message type%'"), 2);
}

#[test]
fn token_refresh_is_always_answered_and_refused_when_it_cannot_help() {
    let agent = Agent::start(&[]);
    let mut crawler = agent.connect();
    // Unknown job: refused at once instead of letting the crawler wait 15 s.
    crawler.send_type("token_refresh_request", Some("01UNKNOWN"), json!({}));
    let r = crawler.recv();
    assert_eq!(r["jobId"], "01UNKNOWN");
    assert_eq!(r["data"]["accessToken"], "");
    assert_eq!(r["data"]["refreshSuccessful"], false);
    assert!(!r["data"]["expiresAt"].as_str().unwrap().is_empty());

    // A stored token that has not changed since dispatch is refused: it just failed.
    agent.add_credential("same", "tok");
    let job = crawler.request_one();
    crawler.send_type(
        "token_refresh_request",
        Some(job["id"].as_str().unwrap()),
        json!({}),
    );
    assert_eq!(crawler.recv()["data"]["accessToken"], "");
    crawler.send_type(
        "job_failed",
        Some(job["id"].as_str().unwrap()),
        json!({"error": "401", "isRecoverable": false}),
    );

    // A stored token known to be expired never goes out at all (issue 13, item 3):
    // the credential is marked unusable instead.
    let out = agent.cli_env(
        &[
            "credentials",
            "add",
            "old",
            "--url",
            "https://g.example",
            "--token-env",
            "T",
            "--expires-at",
            "2020-01-01T00:00:00Z",
        ],
        &[("T", "expired-token")],
    );
    assert!(out.status.success());
    assert!(crawler.request_jobs().is_empty());
    agent.wait_for(
        "SELECT count(*) FROM token_refreshes WHERE outcome = 'failed'",
        2,
    );
    agent.wait_for(
        "SELECT count(*) FROM errors WHERE category = 'token' AND message LIKE 'credential old is unusable%'",
        1,
    );
    assert_eq!(
        agent.count("SELECT count(*) FROM errors WHERE category = 'token'"),
        3
    );
}

#[test]
fn heartbeats_are_kept_on_the_connection_and_a_silent_one_is_marked_stale_but_not_closed() {
    let agent = Agent::start(&[("CRAWLER_AGENT_HEARTBEAT_STALE_AFTER", "1s")]);
    agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.send_type(
        "heartbeat",
        None,
        json!({"activeJobs": 0, "totalProcessed": 0, "systemStatus": "idle", "uptime": 73.41,
               "memoryUsage": {"rss": 98451456, "heapTotal": 1, "heapUsed": 1, "external": 1, "arrayBuffers": 1}}),
    );
    agent.wait_for("SELECT count(*) FROM connections WHERE heartbeats = 1 AND crawler_uptime_s = 73.41 AND crawler_status = 'idle'", 1);
    agent.wait_for("SELECT count(*) FROM live_connections WHERE stale = 1", 1);
    assert_eq!(
        crawler.request_jobs().len(),
        1,
        "a stale connection is still served"
    );
    let status = agent.cli(&["status"]);
    assert!(status.status.success());
    assert!(String::from_utf8_lossy(&status.stdout).contains("stale"));
}

#[test]
fn a_crawler_restart_seen_in_its_uptime_makes_its_old_jobs_orphans() {
    let agent = Agent::start(&[("CRAWLER_AGENT_RETRY_BACKOFF_BASE", "0s")]);
    let job_id = agent.add_credential("gl", "tok");
    let mut first = agent.connect();
    first.send_type("heartbeat", None, json!({"uptime": 500.0}));
    first.request_one();
    first.send_type("job_started", Some(&job_id), json!({}));
    drop(first);
    // The job must be older than the new process's uptime plus the 2 s slack.
    agent.wait_for(
        &format!("SELECT (julianday('now') - julianday(dispatched_at)) * 86400 > 2.6 FROM jobs WHERE id = '{job_id}'"),
        1,
    );
    let mut second = agent.connect();
    second.send_type("heartbeat", None, json!({"uptime": 0.5}));
    agent.wait_for(
        &format!("SELECT count(*) FROM job_events WHERE job_id = '{job_id}' AND event = 'lost'"),
        1,
    );
    assert_eq!(agent.job_status(&job_id), "queued");
    assert_eq!(
        agent.count("SELECT count(*) FROM errors WHERE message LIKE 'crawler restarted%'"),
        1
    );
}

#[test]
fn strings_with_braces_quotes_and_any_unicode_are_stored_byte_exact() {
    let agent = Agent::start(&[]);
    let job_id = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    let nasty = "a{b}c}{d \"q\" back\\slash\nnew line umlaut äöü CJK 漢字 emoji 😀 sep\u{2028}end";
    crawler.send_type(
        "job_progress",
        Some(&job_id),
        json!({"stage": "fetching", "processed": 1, "message": nasty}),
    );
    crawler.send_type(
        "job_failed",
        Some(&job_id),
        json!({"error": nasty, "isRecoverable": false}),
    );
    agent.wait_for(
        &format!("SELECT count(*) FROM jobs WHERE id = '{job_id}' AND status = 'failed'"),
        1,
    );
    let (last_error, progress): (String, String) = agent
        .db()
        .query_row(
            "SELECT j.last_error, p.message FROM jobs j JOIN progress_snapshots p ON p.job_id = j.id",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(last_error, nasty);
    assert_eq!(progress, nasty);
}

#[test]
fn a_client_sending_newline_separated_json_is_served_too() {
    let agent = Agent::start(&[]);
    agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.chunked = false;
    crawler.send_raw(b"{\"type\":\"heartbeat\",\"data\":{\"uptime\":1}}\n\n");
    crawler.send_raw(b"{\"type\":\"job_request\",\"data\":{}}\r\n");
    let reply = crawler.recv();
    assert_eq!(reply["data"]["jobs"].as_array().unwrap().len(), 1);
}
