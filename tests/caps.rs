//! Resource caps, each with its config key; every test prints what it measured.

mod common;
use common::Agent;
use std::io::Write;

#[test]
fn bad_messages_beyond_the_per_minute_rows_become_one_summary_row() {
    let agent = Agent::start(&[("CRAWLER_AGENT_SOCKET_BAD_MESSAGE_ROWS_PER_MINUTE", "5")]);
    let mut crawler = agent.connect();
    let mut garbage = Vec::new();
    for i in 0..500 {
        garbage.extend_from_slice(format!(r#"{{"type":"job_started","n":{i}}}"#).as_bytes());
    }
    crawler.send_raw(&garbage);
    assert!(
        crawler.request_jobs().is_empty(),
        "the connection carries on"
    );
    drop(crawler);
    agent.wait_for(
        "SELECT count(*) FROM errors WHERE message LIKE '495 more bad messages%'",
        1,
    );
    let rows = agent.count("SELECT count(*) FROM errors WHERE connection_id IS NOT NULL");
    println!("500 bad messages -> {rows} errors rows (5 + 1 summary)");
    assert_eq!(rows, 6);
}

#[test]
fn refused_peers_are_counted_but_recorded_once_per_uid_per_interval() {
    // One slot, held by a crawler: every other peer is refused. (An allow-list cannot
    // refuse us: the agent's own uid is always allowed.)
    let agent = Agent::start(&[("CRAWLER_AGENT_SOCKET_MAX_CONNECTIONS", "1")]);
    agent.wait_probe_handled();
    let mut held = agent.connect();
    assert!(held.request_jobs().is_empty());
    for _ in 0..200 {
        if let Ok(mut s) = std::os::unix::net::UnixStream::connect(agent.socket()) {
            let _ = s.write_all(b"{}");
        }
    }
    // Every refusal is counted (the runtime row is rewritten every 5 s).
    agent.wait_for(
        "SELECT json_extract(counters, '$.connections_refused') >= 200 FROM agent_runtime",
        1,
    );
    let rows = agent.count("SELECT count(*) FROM errors WHERE message LIKE 'connection refused%'");
    println!("200+ refused connects -> {rows} errors row(s)");
    assert_eq!(rows, 1);
}

#[test]
fn past_the_input_budget_the_connection_holding_the_most_is_closed() {
    let agent = Agent::start(&[("CRAWLER_AGENT_SOCKET_INPUT_BUDGET_BYTES", "20971520")]);
    let unfinished = |n: usize| {
        let mut m = br#"{"type":"heartbeat","data":{"x":""#.to_vec();
        m.resize(m.len() + n, b'a');
        m
    };
    let mut big = agent.connect();
    big.send_raw(&unfinished(14 << 20));
    // (The harness's start-up probe is not recorded: this is `big`.)
    agent.wait_for("SELECT count(*) FROM connections", 1);
    let mut small = agent.connect();
    // Together more than the budget, whatever the buffers' spare capacity.
    small.send_raw(&unfinished(8 << 20));
    agent.wait_for(
        "SELECT count(*) FROM connections WHERE close_reason LIKE '%socket.input_budget_bytes%'",
        1,
    );
    let closed: i64 = agent
        .count("SELECT id FROM connections WHERE close_reason LIKE '%socket.input_budget_bytes%'");
    let rss_kib = agent.proc_status("VmRSS");
    println!("budget 20 MiB, holders 14 MiB + 8 MiB: connection {closed} closed; agent RSS {rss_kib} KiB");
    // The small one finishes its message and is still served.
    small.send_raw(b"\"}}");
    assert!(small.request_jobs().is_empty());
    assert_eq!(
        agent.count("SELECT count(*) FROM connections WHERE closed_at IS NULL AND id <> (SELECT min(id) FROM connections)"),
        1
    );
    drop(big);
}
