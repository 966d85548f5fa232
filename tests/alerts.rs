//! The periodic alerts (`crawler_absent`, `crawler_lost`) from the real agent, once
//! per episode, and retention of the outbox.

mod common;
use common::Agent;
use crawler_agent::config::Config;
use crawler_agent::store::{migrate, retention};
use crawler_agent::time::Timestamp;
use serde_json::json;
use std::time::Duration;

const ABSENT: &str = "SELECT count(*) FROM events WHERE kind = 'crawler_absent'";
const LOST: &str = "SELECT count(*) FROM events WHERE kind = 'crawler_lost'";

#[test]
fn work_without_a_crawler_is_an_event_once_per_episode() {
    let agent = Agent::start(&[
        ("CRAWLER_AGENT_NOTIFY_CRAWLER_ABSENT_AFTER", "1s"),
        ("CRAWLER_AGENT_NOTIFY_CRAWLER_LOST_AFTER", "1s"),
    ]);
    // A credential queues its discovery; no crawler is connected.
    let areas = agent.add_credential("gl", "glpat-SECRET-42");
    agent.wait_for(ABSENT, 1);
    // Later passes look at the fired episode again and do not fire it twice.
    agent.wait_for(
        "SELECT count(*) FROM alert_episodes WHERE kind = 'crawler_absent' AND checked_at > fired_at",
        1,
    );
    assert_eq!(agent.count(ABSENT), 1, "once per episode");
    // The crawler takes the job and starts it: the episode is over.
    let mut crawler = agent.connect();
    let job = crawler.request_one();
    assert_eq!(job["id"].as_str(), Some(areas.as_str()));
    crawler.send_type(
        "job_started",
        Some(&areas),
        json!({"entityType": "areas", "entityId": "gl"}),
    );
    agent.wait_for("SELECT count(*) FROM jobs WHERE status = 'running'", 1);
    agent.wait_for("SELECT count(*) FROM alert_episodes", 0);
    assert_eq!(agent.count(LOST), 0, "the crawler is there");
    // The crawler goes away with its job running: lost, once.
    drop(crawler);
    agent.wait_for(LOST, 1);
    agent.wait_for(
        "SELECT count(*) FROM alert_episodes WHERE kind = 'crawler_lost' AND checked_at > fired_at",
        1,
    );
    assert_eq!(agent.count(LOST), 1, "once per episode");
    assert_eq!(agent.count(ABSENT), 1, "nothing is queued");
    let db = agent.db();
    let (subject, severity, message, details): (String, String, String, String) = db
        .query_row(
            "SELECT subject, severity, message, details FROM events WHERE kind = 'crawler_lost'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(subject, "crawler");
    assert_eq!(severity, "critical");
    assert!(message.contains("notify.crawler_lost_after"), "{message}");
    let details: serde_json::Value = serde_json::from_str(&details).unwrap();
    assert_eq!(details["after_s"], 1);
    // A crawler that comes back ends the episode; leaving again is a new one.
    let crawler = agent.connect();
    agent.wait_for("SELECT count(*) FROM alert_episodes", 0);
    drop(crawler);
    agent.wait_for(LOST, 2);
}

#[test]
fn retention_prunes_old_events_with_their_deliveries() {
    let c = rusqlite::Connection::open_in_memory().unwrap();
    c.execute_batch(migrate::SCHEMA).unwrap();
    c.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    let now = Timestamp::now();
    let r = Config::default().retention;
    let old = now.minus(r.events_max_age.0 + Duration::from_secs(60));
    for (id, at) in [(1, old), (2, now)] {
        c.execute(
            "INSERT INTO events (id, at, kind, subject, topic, severity, message, details)
             VALUES (?1, ?2, 'test', 's', 's', 'info', 'm', '{}')",
            rusqlite::params![id, at],
        )
        .unwrap();
        c.execute(
            "INSERT INTO notify_deliveries (event_id, sink, status, next_at, created_at)
             VALUES (?1, 'webhook-1', 'sent', ?2, ?2)",
            rusqlite::params![id, at],
        )
        .unwrap();
    }
    let pruned = retention::prune(&c, &r, now).unwrap();
    assert_eq!(pruned.events, 1);
    let left = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(left("SELECT count(*) FROM events WHERE id = 2"), 1);
    assert_eq!(left("SELECT count(*) FROM events"), 1);
    assert_eq!(left("SELECT count(*) FROM notify_deliveries"), 1);
    assert_eq!(
        left("SELECT count(*) FROM notify_deliveries WHERE event_id = 2"),
        1
    );
}

#[test]
fn writes_failing_behind_a_held_lock_are_an_event_after_they_recover() {
    let agent = Agent::start(&[("CRAWLER_AGENT_STORAGE_BUSY_TIMEOUT", "200ms")]);
    // Fully started (its first figures written), so the lock below meets the running
    // writer and not the start-up, which would give up after 200 ms.
    agent.wait_for("SELECT count(*) FROM agent_runtime", 1);
    // `sqlite3 agent.db` then `BEGIN IMMEDIATE;`: the monitor's next write fails.
    let lock = rusqlite::Connection::open(agent.db_path()).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut log = String::new();
    for _ in 0..600 {
        log = agent.log();
        if log.contains("holding") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(log.contains("database write failed"), "{log}");
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    agent.wait_for(
        "SELECT count(*) FROM events WHERE kind = 'database_error'",
        1,
    );
    let db = agent.db();
    let (subject, severity, message, details): (String, String, String, String) = db
        .query_row(
            "SELECT subject, severity, message, details FROM events WHERE kind = 'database_error'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (subject.as_str(), severity.as_str()),
        ("database", "critical")
    );
    assert!(
        message.starts_with("database writes failed for"),
        "{message}"
    );
    let details: serde_json::Value = serde_json::from_str(&details).unwrap();
    assert!(
        details["error"].as_str().unwrap().contains("locked"),
        "{details}"
    );
    assert!(details["since"].as_str() <= details["until"].as_str());
}
