//! Resource caps, each with its config key; every test prints what it measured.

mod common;
use common::Agent;
use std::io::Write;
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;
#[cfg(target_os = "linux")]
use std::time::Duration;

/// Bytes written to a Unix stream socket that its peer has not read yet (SIOCOUTQ,
/// Linux).
#[cfg(target_os = "linux")]
fn unread_by_peer(stream: &std::os::unix::net::UnixStream) -> i32 {
    let mut n: nix::libc::c_int = 0;
    // SAFETY: TIOCOUTQ (= SIOCOUTQ) writes one int through the pointer we own.
    let rc = unsafe { nix::libc::ioctl(stream.as_raw_fd(), nix::libc::TIOCOUTQ, &mut n) };
    assert_eq!(rc, 0, "ioctl(SIOCOUTQ)");
    n
}

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

// Linux only: SIOCOUTQ tells when the agent has read a message.
#[cfg(target_os = "linux")]
#[test]
fn past_the_input_budget_the_connection_holding_the_most_is_closed() {
    let agent = Agent::start(&[("CRAWLER_AGENT_SOCKET_INPUT_BUDGET_BYTES", "20971520")]);
    let unfinished = |n: usize| {
        let mut m = br#"{"type":"heartbeat","data":{"x":""#.to_vec();
        m.resize(m.len() + n, b'a');
        m
    };
    // Two holders whose messages together pass the budget. The budget counts what
    // the agent's buffers hold (their capacity), so which of the two holds the most
    // when the budget is passed is the agent's to say: the test checks that the one
    // it closed held the most by its own account, and that the other is served.
    let mut first = agent.connect();
    let _ = first.stream.write_all(&unfinished(10 << 20));
    let read_all = common::wait_until(Duration::from_secs(30), Duration::from_millis(10), || {
        unread_by_peer(&first.stream) == 0
    });
    assert!(read_all, "the agent did not read the first message");
    let mut second = agent.connect();
    let _ = second.stream.write_all(&unfinished(11 << 20));
    agent.wait_for(
        "SELECT count(*) FROM connections WHERE close_reason LIKE '%socket.input_budget_bytes%'",
        1,
    );
    let (closed, reason): (i64, String) = agent
        .db()
        .query_row(
            "SELECT id, close_reason FROM connections WHERE close_reason LIKE '%socket.input_budget_bytes%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let number_after = |marker: &str| -> u64 {
        let rest = reason
            .split(marker)
            .nth(1)
            .unwrap_or_else(|| panic!("{reason}"));
        rest.trim_start_matches(['(', ' '])
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{reason}"))
    };
    let (total, held) = (number_after("connections ("), number_after("the most ("));
    assert!(total > 20 << 20, "{reason}");
    assert!(held * 2 >= total, "the closed one held the most: {reason}");
    let rss_kib = agent.proc_status("VmRSS");
    println!("budget 20 MiB, messages of 10 and 11 MiB: connection {closed} closed ({reason}); agent RSS {rss_kib} KiB");
    // The other one finishes its message and is still served.
    let ids: Vec<i64> = {
        let db = agent.db();
        let mut stmt = db
            .prepare("SELECT id FROM connections ORDER BY id")
            .unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    let mut survivor = if closed == ids[0] { second } else { first };
    survivor.send_raw(b"\"}}");
    assert!(survivor.request_jobs().is_empty());
    assert_eq!(
        agent.count("SELECT count(*) FROM connections WHERE closed_at IS NULL"),
        1
    );
}
