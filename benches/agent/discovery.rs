//! Phase 4 of the benchmark, one big discovery, and its two limits, each on a fresh
//! database with no agent and no parsing, the entries sorted and the job ids
//! increasing as the agent makes them:
//! - (c) the agent's own batch write (`store::discovery::write_batch`: the stage and
//!   its three statements) on the agent's schema;
//! - (c′) the floor: the same rows as plain INSERTs into tables that keep only what a
//!   discovery cannot do without (a job's id, a job's and an area's uniqueness, the
//!   claim's order, the credential links): no upsert, no foreign key, no trigger.

use super::common::Crawler;
use super::{bare_db, bench_agent, claim_job, finish, ms, start};
use crawler_agent::store::discovery;
use crawler_agent::time::Timestamp;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// Phase 4: one `jobs_discovered` of 100,000 entries (13 MB), timed until its
/// `discoveries` row is visible, with the agent's peak RSS, then the same message again
/// (a rediscovery), beside limits (c) and (c′).
pub fn run(dir: &Path) -> Duration {
    let mut agent = bench_agent();
    start(&mut agent);
    agent.add_credential("d", "bench-token");
    let mut crawler = agent.connect();
    crawler.chunked = false;
    let job = claim_job(&mut crawler);
    let entries: Vec<_> = (0..100_000)
        .map(|i| {
            let (kind, path) = if i % 5 == 0 { ("crawl_group", format!("group-{i}")) } else { ("crawl_project", format!("group-{}/project-{i}", i - i % 5)) };
            json!({"job_type": kind, "entity_id": i.to_string(), "namespace_path": path, "entity_name": format!("name {i}"), "priority": 1})
        })
        .collect();
    let discovery = Crawler::encode(
        "jobs_discovered",
        Some(&job),
        json!({"discovered_jobs": entries, "discovery_summary": {"total_groups": 20000, "total_projects": 80000}}),
    );
    let size = discovery.len();
    let t = Instant::now();
    crawler.send_raw(&discovery);
    while agent.count("SELECT count(*) FROM discoveries") == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let discovered_in = t.elapsed();
    let discovery_rss = agent.proc_status("VmHWM");
    let jobs_made = agent.count("SELECT count(*) FROM jobs") - 1;
    println!("discovery: {} entries ({:.1} MB) committed in {} ({jobs_made} follow-up jobs); RSS peak {:.1} MiB", 100_000, size as f64 / 1e6, ms(discovered_in), discovery_rss as f64 / 1024.0);
    // The same discovery again, as a periodic rediscovery sends it: every entry meets
    // its area and its job (the stage's pages are reused), nothing new is made.
    let t = Instant::now();
    crawler.send_raw(&discovery);
    while agent.count("SELECT count(*) FROM discoveries") < 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let again = t.elapsed();
    let jobs_after = agent.count("SELECT count(*) FROM jobs") - 1;
    println!(
        "rediscovery: the same {} entries again committed in {} ({} new jobs); RSS peak {:.1} MiB",
        100_000,
        ms(again),
        jobs_after - jobs_made,
        agent.proc_status("VmHWM") as f64 / 1024.0
    );
    let bare = limit(&dir.join("bare-discovery.db"), 100_000);
    println!(
        "limit (c) sqlite: the agent's batch write (stage + three statements) for 100000 entries in one transaction takes {}; agent / bare = {:.2}",
        ms(bare),
        discovered_in.as_secs_f64() / bare.as_secs_f64()
    );
    let floor = floor(&dir.join("floor-discovery.db"), 100_000);
    println!(
        "limit (c') sqlite floor: the same rows as plain inserts with only the keys a discovery needs take {}; agent / floor = {:.2}",
        ms(floor),
        discovered_in.as_secs_f64() / floor.as_secs_f64()
    );
    drop(crawler);
    finish(agent);
    discovered_in
}

/// (kind, GitLab id, path, name, job id) per entry, in the agent's order.
fn entries(n: u32) -> Vec<(&'static str, String, String, String, String)> {
    let mut rows: Vec<_> = (0..n)
        .map(|i| {
            let (kind, path) = if i % 5 == 0 {
                ("group", format!("group-{i}"))
            } else {
                ("project", format!("group-{}/project-{i}", i - i % 5))
            };
            (kind, i.to_string(), path)
        })
        .collect();
    rows.sort();
    rows.into_iter()
        .enumerate()
        .map(|(k, (kind, id, path))| {
            (
                kind,
                id.clone(),
                path,
                format!("name {id}"),
                format!("01J{k:023}"),
            )
        })
        .collect()
}

/// Limit (c): `write_batch` for `n` entries in one transaction.
pub fn limit(db: &Path, n: u32) -> Duration {
    let mut c = bare_db(db, "PARENT", "areas");
    // The page cache the agent's writer gives an operation that runs alone.
    c.execute_batch("PRAGMA cache_size = -16384").unwrap();
    let rows = entries(n);
    let batch: Vec<_> = rows
        .iter()
        .map(|(kind, id, path, name, job)| discovery::Entry {
            kind,
            gitlab_id: id,
            full_path: path,
            name,
            job: Some(job.clone()),
        })
        .collect();
    let origin = discovery::Origin {
        job_id: "PARENT",
        credential_id: 1,
        gitlab_url: "https://x",
        max_attempts: 3,
    };
    let started = Instant::now();
    let tx = c.transaction().unwrap();
    discovery::write_batch(&tx, &batch, origin, Timestamp::now()).unwrap();
    tx.commit().unwrap();
    started.elapsed()
}

/// Limit (c′): the floor, `n` entries as plain rows with only the keys they need.
pub fn floor(db: &Path, n: u32) -> Duration {
    // The agent's pragmas (storage.durability = normal) and the 16 MiB page cache its
    // writer gives an operation that runs alone.
    let mut c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -16384;
         CREATE TABLE jobs (id TEXT PRIMARY KEY, credential_id INTEGER, entity_type TEXT,
             entity_id TEXT, namespace_path TEXT, priority INTEGER, max_attempts INTEGER,
             parent_job_id TEXT, created_at TEXT, updated_at TEXT,
             UNIQUE (credential_id, entity_type, entity_id));
         CREATE INDEX jobs_ready ON jobs (entity_type, priority DESC, created_at, id);
         CREATE TABLE areas (id INTEGER PRIMARY KEY, gitlab_url TEXT, kind TEXT, gitlab_id TEXT,
             full_path TEXT, name TEXT, first_seen_at TEXT, last_seen_at TEXT,
             discovered_by_job TEXT, UNIQUE (gitlab_url, kind, gitlab_id));
         CREATE TABLE area_credentials (area_id INTEGER, credential_id INTEGER,
             PRIMARY KEY (area_id, credential_id)) WITHOUT ROWID;",
    )
    .unwrap();
    let rows = entries(n);
    let now = Timestamp::now();
    let started = Instant::now();
    let tx = c.transaction().unwrap();
    {
        let mut area = tx
            .prepare("INSERT INTO areas (gitlab_url, kind, gitlab_id, full_path, name, first_seen_at, last_seen_at, discovered_by_job) VALUES ('https://x', ?1, ?2, ?3, ?4, ?5, ?5, 'PARENT')")
            .unwrap();
        let mut link = tx
            .prepare("INSERT INTO area_credentials VALUES (?1, 1)")
            .unwrap();
        let mut job = tx
            .prepare("INSERT INTO jobs VALUES (?1, 1, ?2, ?3, ?4, 0, 3, 'PARENT', ?5, ?5)")
            .unwrap();
        for (kind, id, path, name, job_id) in &rows {
            let area_id = area
                .insert(rusqlite::params![kind, id, path, name, now])
                .unwrap();
            link.execute([area_id]).unwrap();
            job.execute(rusqlite::params![job_id, kind, id, path, now])
                .unwrap();
        }
    }
    tx.commit().unwrap();
    started.elapsed()
}
