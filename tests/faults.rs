//! Database faults: an operator's write lock, a full disk, the file removed.

mod common;
use common::{Agent, Crawler};
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

fn progress_burst(crawler: &mut Crawler, job: &str, n: usize) {
    let mut bytes = Vec::new();
    for i in 0..n {
        let m = Crawler::message(
            "job_progress",
            Some(job),
            json!({"stage": "fetching", "processed": i, "message": "y".repeat(250)}),
        );
        bytes.extend(serde_json::to_vec(&m).unwrap());
    }
    crawler.stream.write_all(&bytes).unwrap();
}

#[test]
fn an_operator_holding_the_write_lock_for_10s_delays_but_loses_nothing() {
    let agent = Agent::start(&[]);
    let areas = agent.add_credential("gl", "tok");
    let project = agent.add_job("gl", "project", "1", &[]);
    let project = project.trim();
    let mut crawler = agent.connect();
    crawler.chunked = false;
    assert_eq!(crawler.request_one()["id"], areas.as_str());

    // `sqlite3 agent.db` then `BEGIN IMMEDIATE;` and a coffee break.
    let lock = rusqlite::Connection::open(agent.db_path()).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let locked_at = Instant::now();

    progress_burst(&mut crawler, &areas, 500);
    crawler.send_type(
        "job_completed",
        Some(&areas),
        json!({"success": true, "finalCounts": {}}),
    );
    crawler.send_type("heartbeat", None, json!({"uptime": 10}));
    let asked = Instant::now();
    assert!(
        crawler.request_jobs().is_empty(),
        "no claim can commit: the answer is []"
    );
    let waited = asked.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "answered within the claim timeout, took {waited:?}"
    );

    std::thread::sleep(Duration::from_secs(10).saturating_sub(locked_at.elapsed()));
    lock.execute_batch("ROLLBACK").unwrap();
    agent.wait_for("SELECT count(*) FROM progress_snapshots", 500);
    agent.wait_for(
        &format!("SELECT count(*) FROM jobs WHERE id = '{areas}' AND status = 'finished'"),
        1,
    );
    assert_eq!(
        agent.count("SELECT heartbeats FROM connections WHERE heartbeats > 0"),
        1
    );
    // The claim that timed out was never applied behind the crawler's back.
    assert_eq!(
        agent.count(&format!("SELECT attempts FROM jobs WHERE id = '{project}'")),
        0
    );
    assert_eq!(crawler.request_one()["id"], project);
    assert!(
        agent.count(
            "SELECT count(*) FROM errors WHERE message LIKE 'job_request answered with no jobs%'"
        ) >= 1
    );
}

// Linux only: lowers the agent's RLIMIT_FSIZE with util-linux's `prlimit --pid`.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_stalls_writes_without_corruption_and_they_resume_when_space_returns() {
    let agent = Agent::start(&[]);
    let areas = agent.add_credential("gl", "tok");
    let project = agent.add_job("gl", "project", "1", &[]);
    let project = project.trim();
    let mut crawler = agent.connect();
    crawler.chunked = false;
    assert_eq!(crawler.request_one()["id"], areas.as_str());
    agent.wait_for(
        "SELECT count(*) FROM job_events WHERE event = 'dispatched'",
        1,
    );
    // No file of the agent may grow past its current size (RLIMIT_FSIZE).
    let wal = std::fs::metadata(agent.dir.path().join("agent.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    let db = std::fs::metadata(agent.db_path()).unwrap().len();
    let limit = wal.max(db) + 8192;
    let pid = agent.pid().to_string();
    let set = |value: &str| {
        let ok = std::process::Command::new("prlimit")
            .args(["--pid", &pid, &format!("--fsize={value}")])
            .status()
            .unwrap();
        assert!(ok.success(), "prlimit failed; agent log:\n{}", agent.log());
    };
    // Soft limit only: lowering the hard one could not be undone without privileges.
    set(&format!("{limit}:unlimited"));
    progress_burst(&mut crawler, &areas, 3000);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        agent.count("SELECT count(*) FROM progress_snapshots") < 3000,
        "the limit did bite"
    );
    // Still serving: another connection could claim the queued project job, but no
    // claim can commit while the disk is full, so the answer is [].
    let mut other = agent.connect();
    assert!(
        other.request_jobs().is_empty(),
        "no claim while the disk is full"
    );
    set("unlimited");
    agent.wait_for("SELECT count(*) FROM progress_snapshots", 3000);
    let integrity: String = agent
        .db()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    // Writable again: the claim that could not commit was never applied, the failed
    // request is on record, and the next request claims the job.
    assert_eq!(
        agent.count(&format!("SELECT attempts FROM jobs WHERE id = '{project}'")),
        0
    );
    agent.wait_for(
        "SELECT count(*) > 0 FROM errors WHERE message LIKE 'job_request answered with no jobs%'",
        1,
    );
    assert_eq!(other.request_one()["id"], project);
}

// Linux only: the removed file is read back through /proc/PID/fd.
#[cfg(target_os = "linux")]
#[test]
fn removing_the_database_file_while_running_is_reported_loudly() {
    let agent = Agent::start(&[]);
    // The start-up probe has been handled (probes are not recorded as connections).
    assert!(common::wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || agent.log().contains("a probe by the agent's own uid")
    ));
    std::fs::remove_file(agent.db_path()).unwrap();
    // Writes still arrive; they must not wedge the agent.
    let mut crawler = agent.connect();
    crawler.send_type("heartbeat", None, json!({"uptime": 1}));
    // The agent still holds the removed file open: its `storage` row is in there.
    let removed = agent.dir.path().join("removed.db");
    let reported = common::wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        recover_removed(&agent, &removed)
            .map(|db| {
                db.query_row(
                    "SELECT count(*) FROM errors WHERE category = 'storage' AND severity = 'critical'
                       AND message LIKE '%was removed while the agent runs%'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap_or(0)
                    == 1
            })
            .unwrap_or(false)
    });
    assert!(reported, "no storage error row; log:\n{}", agent.log());
    assert!(agent.log().contains("ERROR"));
    assert!(crawler.request_jobs().is_empty(), "still answering");
}

/// A copy of the database file the agent still holds open after it was removed (from
/// /proc/PID/fd), with the WAL beside it.
#[cfg(target_os = "linux")]
fn recover_removed(agent: &Agent, to: &std::path::Path) -> Option<rusqlite::Connection> {
    let fds = std::fs::read_dir(format!("/proc/{}/fd", agent.pid())).ok()?;
    let open = fds.flatten().find(|fd| {
        std::fs::read_link(fd.path())
            .map(|target| target.to_string_lossy().ends_with("agent.db (deleted)"))
            .unwrap_or(false)
    })?;
    std::fs::copy(open.path(), to).ok()?;
    let wal = agent.dir.path().join("agent.db-wal");
    let copy_wal = to.with_extension("db-wal");
    let _ = std::fs::remove_file(&copy_wal);
    if wal.exists() {
        std::fs::copy(&wal, &copy_wal).ok()?;
    }
    rusqlite::Connection::open(to).ok()
}
