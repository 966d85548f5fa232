//! Protocol fidelity, second pass (issue 13): one test per item, against the real
//! agent with the crawler-like client, plus a property test of the parser with the
//! strings JavaScript's `JSON.stringify` can write.

mod common;

use common::{Agent, Crawler};
use crawler_agent::protocol::message::{self, Inbound, RefreshFor};
use proptest::prelude::*;
use serde_json::json;
use std::time::Duration;

/// `units` as JavaScript's `JSON.stringify` writes a string (ES2019 well-formed):
/// quotes, backslashes and control characters escaped, a lone surrogate as a
/// lowercase `\udxxx` escape, everything else as UTF-8. With `escape_all`, every
/// unit as `\uXXXX` (also valid JSON, valid pairs included).
fn js_stringify(units: &[u16], escape_all: bool) -> String {
    let mut out = String::from("\"");
    let mut i = 0;
    while i < units.len() {
        let u = units[i];
        if escape_all {
            out.push_str(&format!("\\u{u:04X}"));
            i += 1;
            continue;
        }
        let pair = (0xD800..=0xDBFF).contains(&u)
            && units
                .get(i + 1)
                .is_some_and(|l| (0xDC00..=0xDFFF).contains(l));
        if pair {
            out.push_str(&String::from_utf16(&units[i..i + 2]).unwrap());
            i += 2;
            continue;
        }
        match u {
            0x22 => out.push_str("\\\""),
            0x5C => out.push_str("\\\\"),
            0x08 => out.push_str("\\b"),
            0x0C => out.push_str("\\f"),
            0x0A => out.push_str("\\n"),
            0x0D => out.push_str("\\r"),
            0x09 => out.push_str("\\t"),
            0..=0x1F => out.push_str(&format!("\\u{u:04x}")),
            0xD800..=0xDFFF => out.push_str(&format!("\\u{u:04x}")),
            _ => out.push(char::from_u32(u32::from(u)).unwrap()),
        }
        i += 1;
    }
    out.push('"');
    out
}

/// What we store for `units`: lone surrogates become U+FFFD.
fn expected(units: &[u16]) -> String {
    String::from_utf16_lossy(units)
}

/// UTF-16 units biased towards the interesting ones: surrogates, controls, quotes.
fn units() -> impl Strategy<Value = Vec<u16>> {
    let unit = prop_oneof![
        0xD800u16..=0xDFFF,
        0u16..0x20,
        Just(0x22u16),
        Just(0x5Cu16),
        Just(0x7Bu16),
        Just(0x7Du16),
        any::<u16>(),
    ];
    proptest::collection::vec(unit, 0..24)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Item 1: every message type with a JavaScript string in each of its string
    /// fields parses, and the field holds the text with U+FFFD for lone surrogates.
    #[test]
    fn item1_every_message_type_accepts_what_json_stringify_emits(
        u in units(),
        escape_all in any::<bool>(),
    ) {
        let s = js_stringify(&u, escape_all);
        let want = expected(&u);
        let id_units: Vec<u16> = "J".encode_utf16().chain(u.iter().copied()).collect();
        let id = js_stringify(&id_units, escape_all);
        let want_id = expected(&id_units);
        let parse = |text: String| message::parse(text.as_bytes())
            .unwrap_or_else(|e| panic!("{text}: {e}"));

        let m = parse(format!(r#"{{"type":"heartbeat","timestamp":{s},"data":{{"systemStatus":{s},"uptime":1}}}}"#));
        let Inbound::Heartbeat(h) = m.body else { panic!() };
        prop_assert_eq!(h.system_status.as_deref(), Some(want.as_str()));
        prop_assert_eq!(m.sent_at.as_deref(), Some(want.as_str()));

        let m = parse(format!(r#"{{"type":"job_started","jobId":{id},"data":{{"entityType":{s},"entityId":{s}}}}}"#));
        let Inbound::JobStarted(got_id, d) = m.body else { panic!() };
        prop_assert_eq!(&got_id, &want_id);
        prop_assert_eq!(d.entity_id.as_deref(), Some(want.as_str()));

        let m = parse(format!(r#"{{"type":"job_progress","jobId":{id},"data":{{"stage":{s},"message":{s},"processed":1,"resumeState":{{"lastEntityId":{s}}}}}}}"#));
        let Inbound::JobProgress(_, p) = m.body else { panic!() };
        prop_assert_eq!(p.message.as_deref(), Some(want.as_str()));

        let m = parse(format!(r#"{{"type":"job_completed","jobId":{id},"data":{{"success":true,"finalCounts":{{}},"message":{s}}}}}"#));
        let Inbound::JobCompleted(_, c) = m.body else { panic!() };
        prop_assert_eq!(c.message.as_deref(), Some(want.as_str()));

        let m = parse(format!(r#"{{"type":"job_failed","jobId":{id},"data":{{"error":{s},"errorType":{s},"isRecoverable":true,"stackTrace":{s},"context":{{"gitlabUrl":{s}}}}}}}"#));
        let Inbound::JobFailed(_, f) = m.body else { panic!() };
        prop_assert_eq!(f.error.as_deref(), Some(want.as_str()));
        prop_assert_eq!(f.stack_trace.as_deref(), Some(want.as_str()));

        let m = parse(format!(r#"{{"type":"jobs_discovered","jobId":{id},"data":{{"discovered_jobs":[null,{{"job_type":"crawl_group","entity_id":"1","namespace_path":{s},"entity_name":{s},"priority":1}}],"discovery_summary":{{"note":{s}}}}}}}"#));
        let Inbound::JobsDiscovered(_, d) = m.body else { panic!() };
        prop_assert!(d.discovered_jobs[0].valid().is_none());
        prop_assert_eq!(d.discovered_jobs[1].valid().unwrap().entity_name.as_deref(), Some(want.as_str()));

        let m = parse(format!(r#"{{"type":"token_refresh_request","jobId":{id},"data":{{}}}}"#));
        let Inbound::TokenRefreshRequest(r) = m.body else { panic!() };
        prop_assert_eq!(r, RefreshFor::Job(want_id.clone()));

        let m = parse(format!(r#"{{"type":"discovery","data":{{"entityType":"group","entities":[{{"id":"1","name":{s},"path":{s}}}]}}}}"#));
        let Inbound::Discovery(d) = m.body else { panic!() };
        prop_assert_eq!(d.entities[0].valid().unwrap().name.as_deref(), Some(want.as_str()));

        let m = parse(format!(r#"{{"type":"job_request","timestamp":{s},"data":{{}}}}"#));
        prop_assert!(matches!(m.body, Inbound::JobRequest));
    }
}

/// Item 1 over the socket: a `job_failed` and a `jobs_discovered` carrying lone
/// surrogates are stored (U+FFFD in their place), and the batch's bad element costs
/// only itself.
#[test]
fn item1_lone_surrogates_are_stored_as_replacement_characters_and_cost_no_message() {
    let agent = Agent::start(&[("CRAWLER_AGENT_DISPATCH_ORPHAN_AFTER", "60s")]);
    let job_id = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    assert_eq!(crawler.request_one()["id"], job_id.as_str());
    let discovered = format!(
        r#"{{"type":"jobs_discovered","timestamp":"2025-07-12T10:20:03.650Z","jobId":"{job_id}","data":{{"discovered_jobs":[{{"job_type":"crawl_group","entity_id":"412","namespace_path":"acme/t\ud83d","entity_name":"Title \ud83d","priority":1}},null,{{"job_type":"crawl_project","entity_id":"413","namespace_path":"acme/ok","entity_name":"ok \ud83d\ude00","priority":1}}],"discovery_summary":{{"total_groups":1,"total_projects":1}}}}}}"#
    );
    crawler.send_raw(discovered.as_bytes());
    let failed = format!(
        r#"{{"type":"job_failed","timestamp":"2025-07-12T10:20:03.700Z","jobId":"{job_id}","data":{{"error":"cut emoji \ud83d in a title","errorType":"Error","isRecoverable":false,"stackTrace":"at \udc00"}}}}"#
    );
    crawler.send_raw(failed.as_bytes());
    agent.wait_for(
        &format!("SELECT count(*) FROM jobs WHERE id = '{job_id}' AND status = 'failed'"),
        1,
    );
    let db = agent.db();
    let (error, stack): (String, String) = db
        .query_row(
            "SELECT message, stack_trace FROM errors WHERE category = 'job' AND job_id = ?1",
            [&job_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(error.contains("cut emoji \u{FFFD} in a title"), "{error}");
    assert_eq!(stack, "at \u{FFFD}");
    let names: Vec<String> = db
        .prepare("SELECT name FROM areas ORDER BY gitlab_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(names, ["Title \u{FFFD}", "ok \u{1F600}"]);
    let (entries, rejected): (i64, i64) = db
        .query_row("SELECT entries, rejected FROM discoveries", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((entries, rejected), (3, 1), "only the null element is lost");
}

/// Item 2: a `token_refresh_request` is answered whatever its `jobId` is, with a
/// reply the crawler's brace counter can split.
#[test]
fn item2_every_token_refresh_request_gets_a_response_whatever_its_job_id() {
    let agent = Agent::start(&[]);
    let mut crawler = agent.connect();
    let long = "x".repeat(200);
    let huge = "y".repeat(10_000);
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (json!(""), ""),
        (json!(long), long.as_str()),
        (json!(huge), ""),
        (json!(7), ""),
        (json!(null), ""),
        (json!({"a": "}"}), ""),
        (json!("br{ce}s\"q"), "br{ce}s\"q"),
        (
            json!("01UNKNOWNJOB000000000000000"),
            "01UNKNOWNJOB000000000000000",
        ),
    ];
    for (id, echo) in &cases {
        let mut m = Crawler::message("token_refresh_request", None, json!({}));
        m["jobId"] = id.clone();
        crawler.send(&m);
        let reply = crawler.recv();
        assert_eq!(reply["type"], "token_refresh_response", "{id}: {reply}");
        assert_eq!(reply["jobId"], *echo, "{id}");
        assert_eq!(reply["data"]["accessToken"], "", "{id}");
        assert_eq!(reply["data"]["refreshSuccessful"], false, "{id}");
        assert!(!reply["data"]["expiresAt"].as_str().unwrap().is_empty());
    }
    // A missing jobId is answered too.
    crawler.send_raw(br#"{"type":"token_refresh_request","timestamp":"t","data":{}}"#);
    assert_eq!(crawler.recv()["jobId"], "");
    agent.wait_for(
        "SELECT count(*) FROM errors WHERE message LIKE 'token refresh refused:%'",
        7,
    );
}

/// Item 3: an expired stored token never goes out: the job stays queued, the
/// credential is marked unusable everywhere an operator looks, polls get `[]` at
/// once, and replacing the token brings the job back.
#[test]
fn item3_an_empty_or_expired_unrefreshable_token_marks_the_credential_unusable() {
    let agent = Agent::start(&[]);
    let out = agent.credentials_add("gl", "old-token", &["--expires-at", "2001-01-01T00:00:00Z"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut crawler = agent.connect();
    for _ in 0..3 {
        assert!(
            crawler.request_jobs().is_empty(),
            "an expired token went out"
        );
    }
    let db = agent.db();
    let (since, reason): (Option<String>, String) = db
        .query_row(
            "SELECT unusable_since, unusable_reason FROM credentials WHERE name = 'gl'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(since.is_some());
    assert!(reason.contains("expired"), "{reason}");
    let (status, attempts): (String, i64) = db
        .query_row("SELECT status, attempts FROM jobs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("queued", 0));
    agent.wait_for(
        "SELECT count(*) FROM errors WHERE category = 'token' AND message LIKE 'credential gl is unusable%'",
        1,
    );
    assert!(agent
        .ok(&["credentials", "list"])
        .contains("UNUSABLE since"));
    assert!(agent.ok(&["status"]).contains("UNUSABLE"));
    assert!(agent
        .ok(&["metrics"])
        .contains("crawler_agent_credential_unusable{credential=\"gl\"} 1"));

    let out = agent.credentials_add("gl", "new-token", &["--replace"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = crawler.request_one();
    assert_eq!(job["accessToken"], "new-token");
    assert!(agent
        .ok(&["metrics"])
        .contains("crawler_agent_credential_unusable{credential=\"gl\"} 0"));
}

/// Item 4: while a job is in flight, polls get `[]` with no token work at all; the
/// helper runs only for the job that then goes out.
#[test]
fn item4_the_busy_check_comes_before_any_token_work() {
    let agent = Agent::start(&[("CRAWLER_AGENT_DISPATCH_ORPHAN_AFTER", "60s")]);
    let first = agent.add_credential("plain", "plain-token");
    let dir = agent.dir.path();
    let runs = dir.join("runs");
    let helper = dir.join("helper.sh");
    std::fs::write(
        &helper,
        format!(
            // Expires within tokens.refresh_margin: due for a refresh at every dispatch.
            "#!/bin/sh\necho run >> {}\nprintf '{{\"access_token\":\"helper-token\",\"expires_at\":\"%s\"}}' $(date -u -d '+120 seconds' +%Y-%m-%dT%H:%M:%SZ)\n",
            runs.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    agent.ok(&[
        "credentials",
        "add",
        "cmd",
        "--url",
        "https://g.example",
        "--token-command",
        helper.to_str().unwrap(),
    ]);
    let run_count = || {
        std::fs::read_to_string(&runs)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let before = run_count();
    let mut crawler = agent.connect();
    let job = crawler.request_one();
    assert_eq!(job["id"], first.as_str());
    crawler.send_type(
        "job_started",
        Some(&first),
        json!({"entityType": "areas", "entityId": "plain"}),
    );
    for _ in 0..5 {
        assert!(crawler.request_jobs().is_empty(), "busy: nothing goes out");
    }
    assert_eq!(
        run_count(),
        before,
        "no token work while the crawler is busy"
    );
    crawler.send_type(
        "job_completed",
        Some(&first),
        json!({"success": true, "finalCounts": {"areas": 1}}),
    );
    let job = crawler.request_one();
    assert_eq!(job["accessToken"], "helper-token");
    assert!(
        run_count() > before,
        "the helper ran for the job that went out"
    );
}

/// Item 5: messages for an ended job or an unknown id are ignored events with a
/// bounded summary: no snapshot, no change to the job.
#[test]
fn item5_messages_for_ended_or_unknown_jobs_are_ignored_events_that_change_nothing() {
    let agent = Agent::start(&[]);
    let job_id = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type(
        "job_completed",
        Some(&job_id),
        json!({"success": true, "finalCounts": {"areas": 3}}),
    );
    let long = "m".repeat(50_000);
    crawler.send_type(
        "job_progress",
        Some(&job_id),
        json!({"stage": "fetching", "entityType": "areas", "processed": 5, "message": long}),
    );
    crawler.send_type("job_started", Some(&job_id), json!({"entityType": "areas"}));
    crawler.send_type(
        "job_failed",
        Some(&job_id),
        json!({"error": "late", "isRecoverable": true}),
    );
    crawler.send_type(
        "jobs_discovered",
        Some(&job_id),
        json!({"discovered_jobs": [{"job_type": "crawl_group", "entity_id": "9", "namespace_path": "a", "entity_name": "A", "priority": 1}]}),
    );
    crawler.send_type(
        "job_progress",
        Some("01NOSUCHJOB000000000000000"),
        json!({"stage": "fetching", "processed": 1}),
    );
    agent.wait_for("SELECT count(*) FROM ignored_messages", 5);
    let db = agent.db();
    let kinds: Vec<(String, Option<String>)> = db
        .prepare("SELECT kind, job_status FROM ignored_messages ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let finished = Some("finished".to_string());
    assert_eq!(
        kinds,
        [
            ("job_progress".into(), finished.clone()),
            ("job_started".into(), finished.clone()),
            ("job_failed".into(), finished.clone()),
            ("jobs_discovered".into(), finished),
            ("job_progress".into(), None),
        ]
    );
    let longest: i64 = db
        .query_row(
            "SELECT max(length(summary)) FROM ignored_messages",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(longest <= 2048, "summary of {longest} bytes");
    let (snapshots, areas): (i64, i64) = db
        .query_row(
            "SELECT (SELECT count(*) FROM progress_snapshots), (SELECT count(*) FROM areas)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((snapshots, areas), (0, 0));
    let (status, counts): (String, String) = db
        .query_row(
            "SELECT status, final_counts FROM jobs WHERE id = ?1",
            [&job_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (status.as_str(), counts.as_str()),
        ("finished", r#"{"areas":3}"#)
    );
}

/// Item 6: an automatic retry starts over; `jobs retry ID` starts over too; only
/// `jobs retry ID --resume` sends the stored resumeState.
#[test]
fn item6_a_retry_carries_resume_state_only_when_the_operator_asks() {
    let agent = Agent::start(&[("CRAWLER_AGENT_RETRY_BACKOFF_BASE", "0s")]);
    let job_id = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    let fail = |crawler: &mut Crawler, recoverable: bool, want: &str| {
        crawler.send_type(
            "job_failed",
            Some(&job_id),
            json!({"error": "GitLab API error: 502", "isRecoverable": recoverable,
                   "resumeState": {"currentPage": 7}}),
        );
        agent.wait_for(
            &format!("SELECT count(*) FROM jobs WHERE id = '{job_id}' AND status = '{want}'"),
            1,
        );
    };
    assert!(crawler.request_one().get("resumeState").is_none());
    fail(&mut crawler, true, "queued");
    let retry = crawler.request_one();
    assert!(retry.get("resumeState").is_none(), "automatic: {retry}");
    fail(&mut crawler, false, "failed");
    agent.ok(&["jobs", "retry", &job_id]);
    let plain = crawler.request_one();
    assert!(plain.get("resumeState").is_none(), "plain retry: {plain}");
    fail(&mut crawler, false, "failed");
    let out = agent.ok(&["jobs", "retry", &job_id, "--resume"]);
    assert!(out.contains("resum"), "{out}");
    let resumed = crawler.request_one();
    assert_eq!(resumed["resumeState"]["currentPage"], 7, "{resumed}");
    fail(&mut crawler, true, "queued");
    assert!(
        crawler.request_one().get("resumeState").is_none(),
        "--resume is for one dispatch only"
    );
}

/// Item 7: by default the first retry comes no sooner than 60 s (jitter on top) and
/// a connection is stale only after 30 s; below-spec settings are warned about.
#[test]
fn item7_defaults_follow_the_spec_first_retry_after_60s_and_stale_after_30s() {
    let defaults = crawler_agent::config::Config::default();
    assert!(defaults.heartbeat.stale_after.0 >= Duration::from_secs(30));
    let policy = crawler_agent::policy::Policy::from(&defaults);
    for _ in 0..1000 {
        let b = policy.backoff(1);
        assert!(
            b >= Duration::from_secs(60) && b <= Duration::from_secs(90),
            "{b:?}"
        );
    }

    let agent = Agent::start(&[]);
    let job_id = agent.add_credential("gl", "tok");
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type(
        "job_failed",
        Some(&job_id),
        json!({"error": "GitLab API error: 502", "isRecoverable": true}),
    );
    agent.wait_for(
        &format!("SELECT count(*) FROM jobs WHERE id = '{job_id}' AND status = 'queued'"),
        1,
    );
    let wait: f64 = agent
        .db()
        .query_row(
            "SELECT (julianday(not_before) - julianday(updated_at)) * 86400 FROM jobs WHERE id = ?1",
            [&job_id],
            |r| r.get(0),
        )
        .unwrap();
    assert!((59.9..=90.1).contains(&wait), "first retry after {wait} s");
    assert!(!agent.log().contains("below the spec"));
    drop(agent);

    let fast = Agent::start(&[
        ("CRAWLER_AGENT_RETRY_BACKOFF_BASE", "1s"),
        ("CRAWLER_AGENT_HEARTBEAT_STALE_AFTER", "5s"),
    ]);
    common::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        fast.log().matches("below the spec").count() == 2
    });
    assert_eq!(
        fast.log().matches("below the spec").count(),
        2,
        "{}",
        fast.log()
    );
}

/// Item 8: a job cancelled while running keeps the crawler busy until it reports the
/// end, which is recorded and not applied.
#[test]
fn item8_a_job_cancelled_while_running_keeps_the_one_job_rule_until_its_end() {
    let agent = Agent::start(&[("CRAWLER_AGENT_DISPATCH_ORPHAN_AFTER", "60s")]);
    let first = agent.add_credential("a", "tok-a");
    let second = agent.add_credential("b", "tok-b");
    let mut crawler = agent.connect();
    assert_eq!(crawler.request_one()["id"], first.as_str());
    crawler.send_type("job_started", Some(&first), json!({"entityType": "areas"}));
    agent.wait_for(
        &format!("SELECT count(*) FROM jobs WHERE id = '{first}' AND status = 'running'"),
        1,
    );
    agent.ok(&["jobs", "cancel", &first]);
    for _ in 0..3 {
        assert!(
            crawler.request_jobs().is_empty(),
            "the cancelled job still runs in the crawler"
        );
    }
    crawler.send_type(
        "job_completed",
        Some(&first),
        json!({"success": true, "finalCounts": {"areas": 5}}),
    );
    assert_eq!(crawler.request_one()["id"], second.as_str());
    let db = agent.db();
    let (status, counts, pending): (String, Option<String>, bool) = db
        .query_row(
            "SELECT status, final_counts, cancel_pending FROM jobs WHERE id = ?1",
            [&first],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (status.as_str(), counts, pending),
        ("cancelled", None, false)
    );
    let late: i64 = db
        .query_row(
            "SELECT count(*) FROM ignored_messages WHERE job_id = ?1 AND kind = 'job_completed' AND job_status = 'cancelled'",
            [&first],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(late, 1, "the late completion is recorded");
}

/// Item 9: the agent's own uid is allowed even when `socket.allowed_uids` leaves it
/// out; its probes are never recorded as connections; `db prune` covers every table
/// that grows, and ended jobs after `retention.ended_jobs_max_age`.
#[test]
fn item9_own_probes_are_allowed_and_unrecorded_and_retention_covers_every_table() {
    let agent = Agent::start(&[("CRAWLER_AGENT_SOCKET_ALLOWED_UIDS", "4294967000")]);
    let job_id = agent.add_credential("gl", "tok");
    for _ in 0..3 {
        let out = agent.cli(&["status"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        agent.ok(&["metrics"]);
    }
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type(
        "job_completed",
        Some(&job_id),
        json!({"success": true, "finalCounts": {"areas": 1}}),
    );
    crawler.send_type("token_refresh_request", Some(&job_id), json!({}));
    crawler.recv();
    drop(crawler);
    // Writes apply in order: once the crawler's close is stored, so are the probes'.
    agent.wait_for(
        "SELECT count(*) FROM connections WHERE closed_at IS NOT NULL",
        1,
    );
    let db = agent.db();
    let (connections, refused): (i64, i64) = db
        .query_row(
            "SELECT (SELECT count(*) FROM connections),
                    (SELECT count(*) FROM errors WHERE category = 'security')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (connections, refused),
        (1, 0),
        "probes: not refused, not recorded"
    );
    drop(db);
    let mut agent = agent;
    agent.stop();

    // Age everything, add an ended follow-up job with history, then prune.
    let rw = rusqlite::Connection::open(agent.db_path()).unwrap();
    rw.execute_batch(&format!(
        "PRAGMA foreign_keys = ON;
         UPDATE connections SET opened_at = '2000-01-01T00:00:00.000Z', closed_at = '2000-01-01T00:00:01.000Z';
         INSERT INTO discoveries (job_id, received_at, entries, rejected, new_areas, new_jobs)
             VALUES ('{job_id}', '2000-01-01T00:00:00.000Z', 0, 0, 0, 0);
         UPDATE token_refreshes SET at = '2000-01-01T00:00:00.000Z';
         INSERT INTO jobs (id, credential_id, entity_type, entity_id, status, max_attempts,
                           created_at, updated_at, finished_at)
             SELECT 'OLDJOB', id, 'group', '42', 'finished', 3, '2000-01-01T00:00:00.000Z',
                    '2000-01-01T00:00:00.000Z', '2000-01-01T00:00:00.000Z' FROM credentials;
         INSERT INTO job_events (job_id, at, event) VALUES ('OLDJOB', '2999-01-01T00:00:00.000Z', 'completed');
         INSERT INTO progress_snapshots (job_id, received_at) VALUES ('OLDJOB', '2999-01-01T00:00:00.000Z');"
    ))
    .unwrap();
    let count = |sql: &str| -> i64 { rw.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM token_refreshes"), 1);
    let out = agent.cli_env(
        &["db", "prune"],
        &[("CRAWLER_AGENT_RETENTION_ENDED_JOBS_MAX_AGE", "1day")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 connections, 1 discoveries, 1 token refreshes, 1 ended jobs"),
        "{text}"
    );
    for (table, left) in [
        ("connections", 0),
        ("discoveries", 0),
        ("token_refreshes", 0),
        ("job_events WHERE job_id = 'OLDJOB'", 0),
        ("progress_snapshots", 0),
        ("jobs WHERE id = 'OLDJOB'", 0),
        // The discovery job itself (areas) is kept: it is rediscovered later.
        ("jobs", 1),
    ] {
        assert_eq!(
            count(&format!("SELECT count(*) FROM {table}")),
            left,
            "{table}"
        );
    }
}

/// Item 10: per credential: queued, running, finished, failed and items processed,
/// in the `credential_rollup` view, in `status` and in `metrics`.
#[test]
fn item10_a_per_credential_rollup_in_the_view_status_and_metrics() {
    let agent = Agent::start(&[]);
    let first = agent.add_credential("alpha", "tok-a");
    agent.add_credential("beta", "tok-b");
    let mut crawler = agent.connect();
    assert_eq!(crawler.request_one()["id"], first.as_str());
    crawler.send_type(
        "job_completed",
        Some(&first),
        json!({"success": true, "finalCounts": {"areas": 37, "groups": 5}}),
    );
    let beta = crawler.request_one();
    agent.wait_for(
        "SELECT count(*) FROM credential_rollup WHERE name = 'alpha' AND finished = 1 AND items_processed = 42",
        1,
    );
    let row: (i64, i64, i64, i64) = agent
        .db()
        .query_row(
            "SELECT queued, running, finished, failed FROM credential_rollup WHERE name = 'beta'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(row, (0, 1, 0, 0), "beta's job {} is in flight", beta["id"]);
    let status = agent.ok(&["status"]);
    let line = status
        .lines()
        .find(|l| l.starts_with("alpha"))
        .unwrap_or_else(|| panic!("{status}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells, ["alpha", "ok", "0", "0", "1", "0", "42"], "{status}");
    let json = agent.ok(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["credentials"][1]["running"], 1);
    let metrics = agent.ok(&["metrics"]);
    for want in [
        "crawler_agent_credential_items_processed{credential=\"alpha\"} 42",
        "crawler_agent_credential_jobs{credential=\"alpha\",state=\"finished\"} 1",
        "crawler_agent_credential_jobs{credential=\"beta\",state=\"running\"} 1",
    ] {
        assert!(metrics.contains(want), "{want}\n{metrics}");
    }
}
