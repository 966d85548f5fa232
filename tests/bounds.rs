//! Bounded configuration: every duration, size and count key has a range; a value
//! outside it stops `serve` and `config check` with exit 2 naming key and range, and a
//! SIGHUP reload with it is refused with the old configuration kept. Extreme values of
//! every key never panic loading, validating or running the agent.

mod common;
use common::{Agent, Crawler};
use crawler_agent::config::ranges::{self, Bound};
use crawler_agent::config::{load, Config, Flags};
use crawler_agent::policy::Policy;
use crawler_agent::time::Timestamp;
use proptest::prelude::*;
use serde_json::json;
use std::time::Duration;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `section.key` → its environment variable.
fn var_of(key: &str) -> String {
    format!("CRAWLER_AGENT_{}", key.replace('.', "_").to_uppercase())
}

/// Every key of the configuration, as `section.key`.
fn every_key() -> Vec<String> {
    let env = |k: &str| (k == "HOME").then(|| "/home/test".to_string());
    load(&Flags::default(), &env)
        .expect("defaults load")
        .entries()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// The values an adversary would try first.
const EXTREMES: &[&str] = &[
    "0",
    "1",
    "-1",
    "1ns",
    "0s",
    "100y",
    "never",
    "NEVER",
    "garbage",
    "",
    " ",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615s",
    "9223372036854775807d",
    "4294967295",
    "4294967296",
    "1e309",
    "NaN",
    "0x10",
    "-5s",
    "1ms",
    "10s",
    "3650d",
    "3651d",
    "0.5s",
    "\u{0}",
    "🦀",
];

/// Loads with `pairs` as the environment; whatever loads must be usable without
/// panicking: the policy, timestamps moved by every duration, the backoff.
fn load_and_use(pairs: &[(String, String)]) {
    let env = |k: &str| {
        if k == "HOME" {
            return Some("/home/test".to_string());
        }
        pairs.iter().find(|(v, _)| v == k).map(|(_, x)| x.clone())
    };
    let Ok(loaded) = load(&Flags::default(), &env) else {
        return;
    };
    let config = &loaded.config;
    for (key, bound, value) in ranges::table(config) {
        assert_eq!(ranges::check(bound, value), None, "{key} passed validation");
        if let ranges::Value::Span(span) = value {
            let now = Timestamp::now();
            let _ = now.minus(span.0).to_string();
            let _ = now.plus(span.0).to_string();
        }
    }
    let policy = Policy::from(config);
    for attempts in [0, 1, 2, 31, 64, u32::MAX] {
        assert!(policy.backoff(attempts) <= policy.backoff_max);
    }
    let _ = loaded.entries();
    let _ = config.log_level();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn extreme_values_of_any_keys_never_panic(
        picks in proptest::collection::vec(
            (any::<prop::sample::Index>(), prop_oneof![
                3 => prop::sample::select(EXTREMES.to_vec()).prop_map(str::to_string),
                1 => ".{0,24}",
                1 => any::<i64>().prop_map(|n| n.to_string()),
                1 => (any::<u64>(), prop::sample::select(vec!["ns", "ms", "s", "m", "h", "d", "y"]))
                    .prop_map(|(n, unit)| format!("{n}{unit}")),
            ]),
            1..5,
        )
    ) {
        let keys = every_key();
        let pairs: Vec<(String, String)> = picks
            .iter()
            .map(|(i, value)| (var_of(i.get::<String>(&keys)), value.clone()))
            .collect();
        load_and_use(&pairs);
    }
}

#[test]
fn every_key_alone_takes_every_extreme_without_panicking() {
    for key in every_key() {
        for value in EXTREMES {
            load_and_use(&[(var_of(&key), value.to_string())]);
        }
    }
}

#[test]
fn out_of_range_stops_serve_and_config_check_with_exit_2_naming_key_and_range() {
    let agent = Agent::new();
    for (var, value, key, range) in [
        (
            "CRAWLER_AGENT_DISCOVERY_REDISCOVER_AFTER",
            "100y",
            "discovery.rediscover_after",
            "1s..=3650d or \"never\"",
        ),
        (
            "CRAWLER_AGENT_RETENTION_ERRORS_MAX_AGE",
            "1ns",
            "retention.errors_max_age",
            "1h..=3650d",
        ),
        (
            "CRAWLER_AGENT_HEARTBEAT_STALE_AFTER",
            "never",
            "heartbeat.stale_after",
            "1s..=7d",
        ),
        (
            "CRAWLER_AGENT_SOCKET_MAX_CONNECTIONS",
            "4294967295",
            "socket.max_connections",
            "1..=1024",
        ),
        (
            "CRAWLER_AGENT_RETRY_BACKOFF_MAX",
            "100y",
            "retry.backoff_max",
            "0s..=365d",
        ),
    ] {
        for args in [&["config", "check"][..], &["serve"][..]] {
            let out = agent.cli_env(args, &[(var, value)]);
            assert_eq!(out.status.code(), Some(2), "{args:?} {var}={value}");
            let err = stderr(&out);
            assert!(
                err.contains(key) && err.contains(range) && err.contains(var),
                "{args:?} {var}={value}: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    assert!(
        !agent.socket().exists(),
        "serve never got as far as the socket"
    );
    assert!(!agent.db_path().exists(), "nor the database");
}

#[test]
fn never_is_accepted_where_it_makes_sense_and_keeps_everything() {
    let agent = Agent::new();
    agent.add_credential("gl", "tok");
    let never = [
        ("CRAWLER_AGENT_DISCOVERY_REDISCOVER_AFTER", "never"),
        ("CRAWLER_AGENT_RETENTION_PROGRESS_MAX_AGE", "never"),
        ("CRAWLER_AGENT_RETENTION_EVENTS_MAX_AGE", "never"),
        ("CRAWLER_AGENT_RETENTION_ERRORS_MAX_AGE", "never"),
    ];
    let out = agent.cli_env(&["config", "show"], &never);
    assert!(out.status.success(), "{}", stderr(&out));
    let show = String::from_utf8_lossy(&out.stdout);
    assert!(
        show.contains("rediscover_after = \"never\""),
        "shown as written: {show}"
    );
    let events = agent.count("SELECT count(*) FROM job_events");
    assert!(events > 0, "adding a credential wrote job events");
    let out = agent.cli_env(&["db", "prune"], &never);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        agent.count("SELECT count(*) FROM job_events"),
        events,
        "nothing is ever old enough to prune"
    );
}

#[test]
fn errors_since_a_century_lists_everything_without_panicking() {
    let agent = Agent::new();
    agent.add_credential("gl", "tok");
    for since in ["100y", "1000000y"] {
        let out = agent.cli(&["errors", "--since", since]);
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{since}: {err}");
        assert!(out.status.success(), "{since}: {err}");
    }
    // An overflowing figure is a usage error, not a panic.
    let out = agent.cli(&["errors", "--since", "99999999999999999999999y"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Each bounded key at one end of its range ("never" where allowed, for the top).
fn at_edge(top: bool) -> Vec<(String, String)> {
    ranges::table(&Config::default())
        .into_iter()
        .map(|(key, bound, _)| {
            let value = match (bound, top) {
                (Bound::Span { never: true, .. }, true) => "never".to_string(),
                (Bound::Span { max, .. }, true) => ranges::compact(max),
                (Bound::Span { min, .. }, false) => ranges::compact(min),
                (Bound::Count { max, .. }, true) => max.to_string(),
                (Bound::Count { min, .. }, false) => min.to_string(),
            };
            (var_of(key), value)
        })
        .collect()
}

/// A short life of the agent with `settings`: a crawler connects, takes the
/// discovery job, reports on it and finishes it; SIGHUP; SIGTERM.
fn short_run(settings: &[(String, String)]) {
    let env: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut agent = Agent::new();
    agent.env = settings.to_vec();
    let out = agent.cli_env(&["config", "check"], &env);
    assert!(out.status.success(), "{settings:?}: {}", stderr(&out));
    agent.add_credential("gl", "tok");
    agent.spawn();
    // With max_connections = 1 the harness's own probe must be gone first.
    agent.wait_probe_handled();
    let mut crawler = Crawler::connect(&agent.socket());
    crawler.send_type("heartbeat", None, json!({"uptime": 1.0}));
    // A 10 ms claim timeout may answer [] on a busy machine; ask until it is handed out.
    let mut job = None;
    common::wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
        job = crawler.request_jobs().pop();
        job.is_some()
    });
    let job = job.unwrap_or_else(|| panic!("no job handed out:\n{}", agent.log()));
    let id = job["id"].as_str().expect("job id").to_string();
    crawler.send_type(
        "job_progress",
        Some(&id),
        json!({"stage": "discovering", "processed": 1}),
    );
    crawler.send_type("job_completed", Some(&id), json!({"success": true}));
    agent.wait_for(
        &format!("SELECT count(*) FROM jobs WHERE id = '{id}' AND status = 'finished'"),
        1,
    );
    common::signal(agent.pid(), "HUP");
    let reloaded = common::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        agent.log().contains("configuration reloaded")
    });
    assert!(reloaded, "{}", agent.log());
    let status = agent.cli(&["status"]);
    assert!(status.status.success(), "{}", stderr(&status));
    drop(crawler);
    assert_eq!(agent.stop(), Some(0), "{}", agent.log());
    assert!(!agent.log().contains("panicked"), "{}", agent.log());
}

#[test]
fn the_agent_runs_with_every_key_at_the_bottom_of_its_range() {
    short_run(&at_edge(false));
}

#[test]
fn the_agent_runs_with_every_key_at_the_top_of_its_range() {
    short_run(&at_edge(true));
}

#[test]
fn a_reload_out_of_range_is_refused_recorded_and_the_old_config_kept() {
    let mut agent = Agent::new();
    let config = agent.dir.path().join("config.toml");
    std::fs::write(&config, "[dispatch]\njobs_per_response = 1\n").unwrap();
    agent.args = vec!["--config".into(), config.display().to_string()];
    agent.spawn();
    agent.add_credential("gl", "tok");
    for i in 0..3 {
        agent.ok(&[
            "jobs",
            "add",
            "--credential",
            "gl",
            "--type",
            "project",
            "--entity-id",
            &i.to_string(),
        ]);
    }
    std::fs::write(
        &config,
        "[dispatch]\njobs_per_response = 2\n[discovery]\nrediscover_after = \"100y\"\n",
    )
    .unwrap();
    common::signal(agent.pid(), "HUP");
    agent.wait_for(
        "SELECT count(*) FROM errors WHERE category = 'config' \
         AND message LIKE '%discovery.rediscover_after%1s..=3650d%'",
        1,
    );
    assert!(
        agent.log().contains("configuration reload rejected"),
        "{}",
        agent.log()
    );
    // The valid half of the file was not applied either: one job per response.
    let mut crawler = agent.connect();
    assert_eq!(crawler.request_jobs().len(), 1, "{}", agent.log());
    // The CLI reads the same (now bad) file, so it refuses it as `serve` would.
    assert_eq!(agent.cli(&["status"]).status.code(), Some(2));
    drop(crawler);
    assert_eq!(agent.stop(), Some(0), "{}", agent.log());
    assert!(!agent.log().contains("panicked"), "{}", agent.log());
}
