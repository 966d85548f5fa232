//! The SQLite store on its own: schema, migrations, the group-commit writer, crash
//! safety and WAL bounds.

use crawler_agent::config::Config;
use crawler_agent::store::errors::{self, Category, ErrorRecord, Severity};
use crawler_agent::store::{self, migrate, Settings, Store};
use crawler_agent::time::Timestamp;
use rusqlite::Connection;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn settings() -> Settings {
    Settings::from(&Config::default().storage)
}

fn insert_error(c: &Connection, message: String) -> rusqlite::Result<i64> {
    errors::insert(
        c,
        &ErrorRecord::new(Category::Storage, Severity::Low, message),
        Timestamp::now(),
    )
}

#[test]
fn the_schema_applies_to_an_empty_file_and_reopening_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/agent.db");
    drop(store::open_read_write(&path, &settings()).unwrap());
    let c = Connection::open(&path).unwrap();
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let app: i32 = c
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, migrate::CURRENT_VERSION);
    assert_eq!(app, migrate::APPLICATION_ID);
    let objects: i64 = c
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(c);
    drop(store::open_read_write(&path, &settings()).unwrap());
    let c = Connection::open(&path).unwrap();
    let again: i64 = c
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(objects, again);
    for table in [
        "credentials",
        "jobs",
        "job_events",
        "progress_snapshots",
        "errors",
        "connections",
        "areas",
        "token_refreshes",
    ] {
        let n: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "{table}");
    }
    // Every enum column has a CHECK constraint.
    let bad = c.execute(
        "INSERT INTO errors (at, category, severity, message) VALUES ('x', 'nonsense', 'low', 'm')",
        [],
    );
    assert!(bad.is_err());
}

#[test]
fn the_writer_answers_each_caller_only_after_commit_from_many_threads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let store = Store::open(&path, &Config::default().storage).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let writer = store.writer.clone();
            let path = path.clone();
            std::thread::spawn(move || {
                let reader = store::open_read_only(&path, &settings()).unwrap();
                for i in 0..500 {
                    let id = writer
                        .call_blocking(move |c| insert_error(c, format!("t{t} #{i}")))
                        .unwrap();
                    // Answered means committed: another connection sees it now.
                    let seen: i64 = reader
                        .query_row("SELECT count(*) FROM errors WHERE id = ?1", [id], |r| {
                            r.get(0)
                        })
                        .unwrap();
                    assert_eq!(seen, 1, "row {id} answered before it was visible");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Fire-and-forget operations are committed by close().
    for i in 0..1000 {
        smol::block_on(store.writer.submit("test", move |c| {
            insert_error(c, format!("fire {i}")).map(drop)
        }))
        .unwrap();
    }
    store.close();
    let c = Connection::open(&path).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM errors", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3000);
    let wal = std::fs::metadata(dir.path().join("agent.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(wal, 0, "close() truncates the WAL");
}

#[test]
fn one_failing_operation_does_not_take_its_batch_down() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("agent.db"), &Config::default().storage).unwrap();
    let bad = store.writer.call_blocking(|c| {
        insert_error(c, "partial".into())?;
        c.execute("INSERT INTO errors (at, category, severity, message) VALUES ('x', 'bogus', 'low', 'm')", [])
    });
    assert!(bad.is_err());
    let good = store
        .writer
        .call_blocking(|c| insert_error(c, "fine".into()));
    assert!(good.is_ok());
    let rows: Vec<String> = store
        .writer
        .call_blocking(|c| {
            c.prepare("SELECT message FROM errors")?
                .query_map([], |r| r.get(0))?
                .collect()
        })
        .unwrap();
    assert_eq!(rows, ["fine"], "the failed operation was rolled back whole");
}

/// A fire-and-forget operation (the crawler's reports) that fails or panics is dropped
/// alone, and since nobody waits for it the writer puts the failure on record: in the
/// batch's transaction, or, for one that runs alone and is rolled back whole, after
/// the rollback. A caller that waits hears of its failure itself: no row for it.
#[test]
fn a_dropped_report_is_on_record_in_errors_even_when_its_transaction_is_rolled_back() {
    use crawler_agent::store::Mode;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("agent.db"), &Config::default().storage).unwrap();
    let lane = store.writer.lane();
    let bogus =
        "INSERT INTO errors (at, category, severity, message) VALUES ('x', 'bogus', 'low', 'm')";
    smol::block_on(async {
        lane.submit("a report", move |c| {
            insert_error(c, "partial 1".into())?;
            c.execute(bogus, []).map(drop)
        })
        .await
        .unwrap();
        lane.submit_as(Mode::Alone, 1, "a big report", move |c| {
            insert_error(c, "partial 2".into())?;
            c.execute(bogus, []).map(drop)
        })
        .await
        .unwrap();
        lane.submit_as(Mode::Alone, 1, "a report that panics", |c| {
            insert_error(c, "partial 3".into())?;
            panic!("boom")
        })
        .await
        .unwrap();
    });
    assert!(store
        .writer
        .call_blocking(|c| c.execute(bogus, []).map(drop))
        .is_err());
    // After the lane's earlier operations.
    let rows: Vec<(String, String)> =
        smol::block_on(lane.call_within(Duration::from_secs(60), |c| {
            c.prepare("SELECT category, message FROM errors ORDER BY id")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        }))
        .unwrap();
    let messages: Vec<&str> = rows.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(rows.len(), 3, "{messages:?}");
    assert!(
        !messages.iter().any(|m| m.starts_with("partial")),
        "{messages:?}"
    );
    assert_eq!(rows[0].0, "storage");
    assert!(
        rows[0].1.starts_with("storing a report failed: "),
        "{messages:?}"
    );
    assert!(
        rows[0].1.contains("CHECK constraint failed"),
        "{messages:?}"
    );
    assert_eq!(rows[1].0, "storage");
    assert!(
        rows[1].1.starts_with("storing a big report failed: "),
        "{messages:?}"
    );
    assert_eq!(rows[2].0, "internal");
    assert!(
        rows[2]
            .1
            .contains("storing a report that panics panicked (boom)"),
        "{messages:?}"
    );
    store.close();
}

/// Run by `sigkill_mid_stream_loses_nothing_acknowledged` in a child process.
#[test]
#[ignore = "child process of sigkill_mid_stream_loses_nothing_acknowledged"]
fn child_writer() {
    let Ok(path) = std::env::var("CHILD_DB") else {
        return;
    };
    let store = Store::open(path.as_ref(), &Config::default().storage).unwrap();
    for i in 0u64.. {
        // A burst of fire-and-forget writes, then one acknowledged write.
        for j in 0..20 {
            let _ = smol::block_on(store.writer.submit("burst", move |c| {
                insert_error(c, format!("burst {i}.{j}")).map(drop)
            }));
        }
        store
            .writer
            .call_blocking(move |c| insert_error(c, format!("ack {i}")))
            .unwrap();
        println!("ack {i}");
    }
}

#[test]
fn sigkill_mid_stream_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let mut total_acked = 0;
    for round in 0..5 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "child_writer",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("CHILD_DB", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut acked = Vec::new();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("ack ") {
                acked.push(n.parse::<u64>().unwrap());
                if acked.len() >= 300 + round * 100 {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let c = Connection::open(&path).unwrap();
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        for n in &acked {
            let found: i64 = c
                .query_row(
                    "SELECT count(*) FROM errors WHERE message = ?1",
                    [format!("ack {n}")],
                    |r| r.get(0),
                )
                .unwrap();
            assert!(found >= 1, "round {round}: acknowledged write {n} lost");
        }
        total_acked += acked.len();
    }
    assert!(total_acked >= 2500);
}

/// Nothing waits on the reader and nothing is lost; the WAL cannot start over while
/// the reader holds it, so the 64 MiB check only says these rows fit (they do), and the
/// bound that matters is the one after the reader lets go.
#[test]
fn a_reader_holding_a_snapshot_across_200k_writes_loses_nothing_and_the_wal_shrinks_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let store = Store::open(&path, &Config::default().storage).unwrap();
    let wal_path = dir.path().join("agent.db-wal");
    let wal = || std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0);

    // An operator's long read in sqlite3: BEGIN; SELECT ...; (and nothing else).
    let reader = Connection::open(&path).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM errors", [], |r| r.get(0))
        .unwrap();

    let mut largest = 0;
    for chunk in 0..200 {
        for i in 0..1000 {
            let n = chunk * 1000 + i;
            smol::block_on(store.writer.submit("load", move |c| {
                insert_error(c, format!("row {n}")).map(drop)
            }))
            .unwrap();
        }
        largest = largest.max(wal());
    }
    store.writer.call_blocking(|_| Ok(())).unwrap();
    largest = largest.max(wal());
    println!(
        "largest WAL with a pinned reader: {:.1} MiB",
        largest as f64 / 1048576.0
    );
    assert!(largest <= 64 << 20, "WAL grew to {largest} bytes");

    // Once the reader lets go, the next checkpoint truncates it.
    reader.execute_batch("COMMIT").unwrap();
    // The idle checkpointer truncates the WAL once nothing was written for 100 ms:
    // a write now and then, with pauses longer than that, until it has.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut written_after = 0;
    let shrank = loop {
        store
            .writer
            .call_blocking(|c| insert_error(c, "after".into()))
            .unwrap();
        written_after += 1;
        if wal() < 4 << 20 {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let after = wal();
    println!(
        "WAL after the reader finished: {:.1} KiB",
        after as f64 / 1024.0
    );
    assert!(
        after < 4 << 20,
        "WAL still {after} bytes after the reader finished"
    );
    store.close();
    let n: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM errors", [], |r| r.get(0))
        .unwrap();
    assert!(shrank);
    assert_eq!(n, 200_000 + written_after);
}

#[test]
fn under_continuous_writes_the_wal_still_starts_over() {
    // SQLite only starts the WAL over when a write begins with every frame copied; a
    // writer that never pauses never sees that, and the WAL would grow with the data.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let mut config = Config::default().storage;
    config.wal_checkpoint_bytes = 1 << 20;
    let store = Store::open(&path, &config).unwrap();
    let wal_path = dir.path().join("agent.db-wal");
    let wal = || std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0);

    // About 64 MiB of rows, handed over as fast as the writer takes them.
    let payload = "x".repeat(4000);
    let mut largest = 0;
    for n in 0..16_000 {
        let message = format!("{n} {payload}");
        smol::block_on(
            store
                .writer
                .submit("load", move |c| insert_error(c, message.clone()).map(drop)),
        )
        .unwrap();
        if n % 64 == 0 {
            largest = largest.max(wal());
        }
    }
    store.writer.call_blocking(|_| Ok(())).unwrap();
    largest = largest.max(wal());
    let held = store
        .writer
        .stats
        .wal_hold_micros
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "largest WAL: {:.1} MiB; bulk work held back {} ms in all",
        largest as f64 / 1048576.0,
        held / 1000
    );
    assert!(
        held > 0,
        "the writer never waited for the WAL to start over"
    );
    assert!(largest <= 24 << 20, "WAL grew to {largest} bytes");
    store.close();
    let n: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM errors", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 16_000);
}

#[test]
fn retention_prunes_old_rows_and_keeps_the_newest_progress_per_job() {
    use crawler_agent::config::{RetentionConfig, Span};
    use crawler_agent::store::retention;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let c = store::open_read_write(&path, &settings()).unwrap();
    c.execute_batch(
        "INSERT INTO credentials (id, name, gitlab_url, access_token, token_source, created_at, updated_at)
             VALUES (1, 'gl', 'https://x', 't', 'env', '2020-01-01T00:00:00.000Z', '2020-01-01T00:00:00.000Z');
         INSERT INTO jobs (id, credential_id, entity_type, entity_id, max_attempts, created_at, updated_at)
             VALUES ('J1', 1, 'areas', 'gl', 3, '2020-01-01T00:00:00.000Z', '2020-01-01T00:00:00.000Z');
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)
         INSERT INTO progress_snapshots (job_id, received_at, processed)
             SELECT 'J1', CASE WHEN i <= 10 THEN '2020-01-01T00:00:00.000Z' ELSE strftime('%Y-%m-%dT%H:%M:%fZ', 'now') END, i FROM n;
         INSERT INTO job_events (job_id, at, event) VALUES ('J1', '2020-01-01T00:00:00.000Z', 'created'),
                                                          ('J1', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'dispatched');
         INSERT INTO errors (at, category, severity, message) VALUES ('2020-01-01T00:00:00.000Z', 'job', 'low', 'old'),
                                                                   (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'job', 'low', 'new');",
    )
    .unwrap();
    let rules = RetentionConfig {
        progress_max_age: Span::secs(86400),
        progress_max_per_job: 25,
        events_max_age: Span::secs(86400),
        errors_max_age: Span::secs(86400),
        prune_every: Span::secs(3600),
        ..RetentionConfig::default()
    };
    let pruned = retention::prune(&c, &rules, Timestamp::now()).unwrap();
    assert_eq!(
        (pruned.progress_snapshots, pruned.job_events, pruned.errors),
        (25, 1, 1)
    );
    let (lowest, count): (i64, i64) = c
        .query_row(
            "SELECT min(processed), count(*) FROM progress_snapshots",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((lowest, count), (26, 25), "the newest 25 are kept");
}
