//! The metrics the alert rules read: the text of `crawler-agent metrics` and of the
//! loopback `/metrics` endpoint (written by prometheus-client), and the endpoint's
//! bounds (a few connections at once, a short header timeout, stops on shutdown).

mod common;
use common::Agent;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn free_port() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Every sample line parses as `name{labels} value`; names are the agent's or the
/// standard `process_*`; the text ends with OpenMetrics' `# EOF`.
fn assert_valid(text: &str) {
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        assert!(
            name.starts_with("crawler_agent_") || name.starts_with("process_"),
            "{line}"
        );
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
    }
}

#[test]
fn metrics_are_valid_text_with_the_agents_counters_and_the_rules_inputs() {
    let agent = Agent::start(&[]);
    let job = agent.add_credential("gl", "glpat-SECRET-42");
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type(
        "job_progress",
        Some(&job),
        serde_json::json!({"stage": "fetching", "processed": 5}),
    );
    crawler.send_type("nonsense", None, serde_json::json!({}));
    crawler.send_type(
        "heartbeat",
        None,
        serde_json::json!({"activeJobs": 0, "totalProcessed": 0, "systemStatus": "idle", "uptime": 9.5}),
    );
    agent.wait_for("SELECT count(*) FROM connections WHERE heartbeats = 1", 1);
    // The agent persists its figures every 5 s.
    agent.wait_for("SELECT count(*) FROM agent_runtime WHERE counters LIKE '%\"messages_received.job_progress\":1%'", 1);
    let text = agent.ok(&["metrics"]);
    assert_valid(&text);
    for expected in [
        "crawler_agent_up 1",
        "crawler_agent_jobs{status=\"running\"} 1",
        "crawler_agent_queue_jobs{entity_type=\"areas\",status=\"running\"} 1",
        "crawler_agent_messages_received_total{type=\"job_progress\"} 1",
        "crawler_agent_messages_received_total{type=\"other\"} 1",
        "crawler_agent_jobs_dispatched_total 1",
        "crawler_agent_connections{state=\"live\"}",
        "crawler_agent_crawler_connected 1",
        "crawler_agent_crawler_last_activity_timestamp_seconds ",
        "crawler_agent_credential_state{credential=\"gl\",state=\"ok\"} 1",
        "crawler_agent_credential_state{credential=\"gl\",state=\"expired\"} 0",
        "crawler_agent_errors_retained{category=\"protocol\",severity=\"low\"} 1",
        "crawler_agent_last_error_timestamp_seconds{category=\"protocol\"} ",
        "crawler_agent_wal_bytes",
        "crawler_agent_writer_commit_seconds_total",
        "crawler_agent_writer_wal_hold_seconds_total 0",
        // The running agent's own process, found through its persisted pid.
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
    ] {
        assert!(text.contains(expected), "missing {expected}:\n{text}");
    }
    assert!(!text.contains("SECRET"), "no token in the metrics:\n{text}");

    drop(crawler);
    agent.wait_for(
        "SELECT count(*) FROM connections WHERE closed_at IS NULL",
        0,
    );
    let text = agent.ok(&["metrics"]);
    assert!(text.contains("crawler_agent_crawler_connected 0"), "{text}");
}

#[test]
fn metrics_are_served_on_a_loopback_address_and_only_there() {
    let addr = free_port();
    let agent = Agent::start(&[("CRAWLER_AGENT_METRICS_LISTEN", &addr)]);
    let page = get(&addr, "/metrics");
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(
        page.contains("content-type: application/openmetrics-text"),
        "{page}"
    );
    let body = page.split_once("\r\n\r\n").unwrap().1;
    assert_valid(body);
    assert!(
        body.contains("crawler_agent_up 1")
            && body.contains("crawler_agent_jobs{status=\"queued\"}")
            && body.contains(&format!("process_open_fds {}", "")),
        "{body}"
    );
    assert!(get(&addr, "/other").starts_with("HTTP/1.1 404"));

    let out = agent.cli_env(
        &["config", "check"],
        &[("CRAWLER_AGENT_METRICS_LISTEN", "0.0.0.0:9477")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
    for (key, value) in [
        ("CRAWLER_AGENT_METRICS_MAX_CONNECTIONS", "0"),
        ("CRAWLER_AGENT_METRICS_MAX_CONNECTIONS", "65"),
        ("CRAWLER_AGENT_METRICS_HEADER_TIMEOUT", "10ms"),
        ("CRAWLER_AGENT_METRICS_HEADER_TIMEOUT", "100y"),
    ] {
        let out = agent.cli_env(&["config", "check"], &[(key, value)]);
        assert_eq!(out.status.code(), Some(2), "{key}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("metrics."), "{key}={value}: {stderr}");
    }
}

/// Established TCP connections the agent holds on `port` (its descriptors matched
/// against /proc/net/tcp): what the endpoint has accepted and not yet closed.
fn established(agent: &Agent, port: u16) -> usize {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", agent.pid()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|t| {
            let t = t.to_string_lossy().to_string();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && f[3] == "01" && inodes.iter().any(|i| i == f[9])
        })
        .count()
}

#[test]
fn idle_metrics_clients_hold_at_most_max_connections_descriptors_and_are_dropped() {
    let addr = free_port();
    let mut agent = Agent::start(&[
        ("CRAWLER_AGENT_METRICS_LISTEN", &addr),
        ("CRAWLER_AGENT_METRICS_MAX_CONNECTIONS", "2"),
        ("CRAWLER_AGENT_METRICS_HEADER_TIMEOUT", "1s"),
    ]);
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    // A scrape first, so the endpoint's read pool is open before we count.
    assert!(get(&addr, "/metrics").starts_with("HTTP/1.1 200"));

    // One idle client: closed by the agent after the header timeout.
    let started = Instant::now();
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let n = idle.read(&mut [0u8; 64]).unwrap_or(0);
    let header_timeout_seen = started.elapsed();
    assert_eq!(n, 0, "the agent closes a connection that sends no request");

    // Forty idle clients: the agent accepts two at a time; the rest wait in the
    // kernel's backlog, holding none of its descriptors. The first two (accepted
    // first) send a request and get their answer, so the agent takes the next two.
    let mut idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    for s in idle.iter_mut().take(2) {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut page = String::new();
        let _ = s.read_to_string(&mut page);
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    }
    let during = established(&agent, port);
    assert!(
        during <= 2,
        "{during} metrics connections held with 40 clients waiting (cap 2)"
    );
    // Once the idle clients go away, a scrape is answered again.
    idle.clear();
    let flooded = Instant::now();
    let ok = common::wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
        get(&addr, "/metrics").starts_with("HTTP/1.1 200")
    });
    assert!(ok, "no scrape answered after the idle clients left");
    println!(
        "metrics endpoint: idle connection closed after {header_timeout_seen:?} (header_timeout 1s); \
         {during} connections held with 40 clients waiting (cap 2); \
         scrape answered {:?} after they left",
        flooded.elapsed()
    );

    // An idle client does not hold up shutdown.
    let _held = TcpStream::connect(&addr).unwrap();
    let stopping = Instant::now();
    assert_eq!(agent.stop(), Some(0));
    println!(
        "stopped in {:?} with an idle metrics client",
        stopping.elapsed()
    );
}
