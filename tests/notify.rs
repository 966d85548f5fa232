//! Notifications, end to end: the real agent delivers outbox events to a local HTTP
//! receiver on 127.0.0.1 and to a command, at least once (retries, across a restart),
//! with a cooldown and digest that keep a thousand failures to a handful of messages,
//! and never a secret in a payload.

mod common;
use common::Agent;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "glpat-SECRET-42";

/// A webhook receiver: records each request body; answers 500 to the first
/// `fail_first` requests, then 200.
struct Receiver {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start(fail_first: usize) -> Receiver {
        Receiver::on(TcpListener::bind("127.0.0.1:0").unwrap(), fail_first)
    }

    fn on(listener: TcpListener, fail_first: usize) -> Receiver {
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(AtomicUsize::new(0));
        let record = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut data = Vec::new();
                let mut buf = [0u8; 8192];
                let body = loop {
                    let Ok(n) = s.read(&mut buf) else { break None };
                    if n == 0 {
                        break None;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            break Some(body.to_string());
                        }
                    }
                };
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let status = if n < fail_first { "500 Nope" } else { "200 OK" };
                if n >= fail_first {
                    if let Some(body) = body {
                        record.lock().unwrap().push(body);
                    }
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { port, bodies }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn payloads(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str(b).expect("JSON body"))
            .collect()
    }

    fn wait_for(&self, what: &str, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        let ok = common::wait_until(Duration::from_secs(60), Duration::from_millis(20), || {
            done(&self.payloads())
        });
        assert!(ok, "receiver never got {what}: {:?}", self.payloads());
        self.payloads()
    }
}

fn with_config(toml: &str) -> Agent {
    let mut agent = Agent::new();
    let config = agent.dir.path().join("config.toml");
    std::fs::write(&config, toml).unwrap();
    agent.args = vec!["--config".into(), config.display().to_string()];
    agent.spawn();
    agent
}

/// The credential's discovery job fails for good: a `job_failed` event, then
/// `queue_drained` (it was the only job).
fn fail_the_only_job(agent: &Agent) -> String {
    let job = agent.add_credential("gl", TOKEN);
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type(
        "job_failed",
        Some(&job),
        json!({"error": "403 Forbidden", "errorType": "HTTPError", "isRecoverable": false}),
    );
    agent.wait_for("SELECT count(*) FROM events WHERE kind = 'job_failed'", 1);
    job
}

fn kinds(payloads: &[Value]) -> Vec<&str> {
    payloads
        .iter()
        .filter_map(|p| p["event"].as_str())
        .collect()
}

#[test]
fn a_webhook_gets_the_payload_contract_and_no_secret() {
    let receiver = Receiver::start(0);
    let agent = with_config(&format!(
        "[[notify.webhook]]\nname = \"hook\"\nurl = \"{}\"\nformat = \"json\"\n",
        receiver.url()
    ));
    let job = fail_the_only_job(&agent);
    let got = receiver.wait_for("job_failed and queue_drained", |p| {
        let k = kinds(p);
        k.contains(&"job_failed") && k.contains(&"queue_drained")
    });
    let failed = got.iter().find(|p| p["event"] == "job_failed").unwrap();
    for key in [
        "event", "at", "agent", "subject", "message", "severity", "details",
    ] {
        assert!(!failed[key].is_null(), "{key} missing in {failed}");
    }
    assert_eq!(failed["subject"], job.as_str());
    assert_eq!(failed["severity"], "warning");
    assert!(failed["at"].as_str().unwrap().ends_with('Z'));
    assert!(failed["message"]
        .as_str()
        .unwrap()
        .contains("403 Forbidden"));
    assert_eq!(failed["details"]["entity_type"], "areas");
    for p in &got {
        assert!(!p.to_string().contains("SECRET"), "a secret in {p}");
    }
    agent.wait_for(
        "SELECT count(*) FROM notify_deliveries WHERE sink = 'hook' AND status = 'sent'",
        2,
    );
    let metrics = agent.ok(&["metrics"]);
    assert!(
        metrics.contains("crawler_agent_notifications_total{sink=\"hook\",outcome=\"sent\"} 2"),
        "{metrics}"
    );
    assert!(
        !agent.log().contains("plain http://"),
        "loopback http is not warned about"
    );
}

#[test]
fn a_receiver_that_fails_first_gets_the_event_on_a_retry() {
    let receiver = Receiver::start(2);
    let agent = with_config(&format!(
        "[[notify.webhook]]\nurl = \"{}\"\nevents = [\"job_failed\"]\n",
        receiver.url()
    ));
    fail_the_only_job(&agent);
    let got = receiver.wait_for("job_failed", |p| !p.is_empty());
    assert_eq!(kinds(&got), ["job_failed"], "only the kinds asked for");
    agent.wait_for(
        "SELECT count(*) FROM notify_deliveries WHERE sink = 'webhook-1' AND status = 'sent' AND attempts = 3",
        1,
    );
}

#[test]
fn a_receiver_down_across_an_agent_restart_gets_the_event_after_it() {
    let reserved = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let mut agent = with_config(&format!(
        "[notify]\ntimeout = \"1s\"\n[[notify.webhook]]\nurl = \"http://127.0.0.1:{port}/hook\"\nevents = [\"job_failed\"]\n"
    ));
    fail_the_only_job(&agent);
    agent.wait_for(
        "SELECT count(*) FROM notify_deliveries WHERE attempts >= 1 AND status = 'pending' AND last_error IS NOT NULL",
        1,
    );
    assert_eq!(agent.stop(), Some(0));

    let receiver = Receiver::on(TcpListener::bind(("127.0.0.1", port)).unwrap(), 0);
    agent.spawn();
    let got = receiver.wait_for("the event held over the restart", |p| !p.is_empty());
    assert_eq!(kinds(&got), ["job_failed"]);
}

#[test]
fn a_thousand_failing_jobs_are_a_few_messages_with_a_digest() {
    let receiver = Receiver::start(0);
    let agent = with_config(&format!(
        "[notify]\ncooldown = \"1s\"\n[[notify.webhook]]\nurl = \"{}\"\nevents = [\"job_failed\"]\n",
        receiver.url()
    ));
    let areas = agent.add_credential("gl", TOKEN);
    // 1,000 project jobs that fail for good at once (max_attempts 1).
    {
        let db = rusqlite::Connection::open(agent.db_path()).unwrap();
        db.busy_timeout(Duration::from_secs(10)).unwrap();
        db.execute_batch(
            "BEGIN;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
             INSERT INTO jobs (id, credential_id, entity_type, entity_id, priority, max_attempts, created_at, updated_at)
             SELECT printf('P%05d', i), 1, 'project', i, 10, 1,
                    strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM n;
             COMMIT;",
        )
        .unwrap();
    }
    let started = Instant::now();
    let mut crawler = agent.connect();
    let mut failed = 0;
    while failed < 1000 {
        let job = crawler.request_one();
        let id = job["id"].as_str().unwrap().to_string();
        if id == areas {
            crawler.send_type(
                "job_completed",
                Some(&id),
                json!({"success": true, "finalCounts": {}}),
            );
            continue;
        }
        failed += 1;
        crawler.send_type(
            "job_failed",
            Some(&id),
            json!({"error": "500 Internal Server Error", "errorType": "HTTPError", "isRecoverable": false}),
        );
    }
    agent.wait_for(
        "SELECT count(*) FROM events WHERE kind = 'job_failed'",
        1000,
    );
    // Every failure is told, in its own message or counted in a digest (which is
    // about the latest event it sums up).
    let represented = |p: &[Value]| -> i64 {
        p.iter()
            .map(|m| m["details"]["digest"]["count"].as_i64().unwrap_or(1))
            .sum()
    };
    let got = receiver.wait_for("all 1000 failures, directly or in digests", |p| {
        represented(p) == 1000
    });
    let elapsed = started.elapsed();
    let digests: Vec<&Value> = got
        .iter()
        .filter(|m| !m["details"]["digest"].is_null())
        .collect();
    assert!(!digests.is_empty());
    assert!(
        digests[0]["message"]
            .as_str()
            .unwrap()
            .contains("more job_failed events"),
        "{}",
        digests[0]
    );
    // At most one message per cooldown (1 s) per topic, plus the last digest.
    let bound = elapsed.as_secs() as usize + 2;
    assert!(got.len() <= bound, "{} messages in {elapsed:?}", got.len());
    println!(
        "1000 failing jobs: {} messages ({} digests) in {elapsed:?} with a 1 s cooldown",
        got.len(),
        digests.len()
    );
}

#[test]
fn a_command_sink_gets_the_event_json_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let agent = with_config(&format!(
        "[[notify.command]]\nname = \"pager\"\nargv = [\"tee\", \"-a\", \"{}\"]\nevents = [\"job_failed\"]\n",
        out.display()
    ));
    fail_the_only_job(&agent);
    let ok = common::wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("\"job_failed\""))
    });
    assert!(ok, "the command never ran:\n{}", agent.log());
    let text = std::fs::read_to_string(&out).unwrap();
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["event"], "job_failed");
    assert!(!text.contains("SECRET"));
    agent.wait_for(
        "SELECT count(*) FROM notify_deliveries WHERE sink = 'pager' AND status = 'sent'",
        1,
    );
}

#[test]
fn notify_test_reports_every_sink_and_fails_if_one_fails() {
    let receiver = Receiver::start(0);
    let agent = with_config(&format!(
        "[[notify.webhook]]\nname = \"hook\"\nurl = \"{}\"\n[[notify.command]]\nname = \"broken\"\nargv = [\"false\"]\n",
        receiver.url()
    ));
    let out = agent.cli(&["notify", "test"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("hook: ok"), "{stdout}");
    assert!(stdout.contains("broken: failed"), "{stdout}");
    let got = receiver.payloads();
    assert_eq!(kinds(&got), ["test"]);
}

#[test]
fn events_prints_transitions_and_events_and_follows_new_ones() {
    let agent = Agent::start(&[]);
    let job = agent.add_credential("gl", TOKEN);
    let lines = agent.ok(&["events", "--json"]);
    let first: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["source"], "job");
    assert_eq!(first["kind"], "created");

    let mut follow = std::process::Command::new(common::BIN)
        .args([
            "--db",
            agent.db_path().to_str().unwrap(),
            "events",
            "--follow",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut crawler = agent.connect();
    crawler.request_one();
    crawler.send_type(
        "job_failed",
        Some(&job),
        json!({"error": "403 Forbidden", "errorType": "HTTPError", "isRecoverable": false}),
    );
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let v: Value = serde_json::from_str(&line).unwrap();
                let hit = v["source"] == "event" && v["kind"] == "job_failed";
                seen.push(line);
                if hit {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        found,
        "--follow never printed the job_failed event: {seen:?}"
    );
    assert!(!seen.concat().contains("SECRET"));
}
