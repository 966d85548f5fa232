//! Token sources: a helper command and GitLab OAuth refresh, against scripts and a
//! local HTTP server on 127.0.0.1 playing GitLab's /oauth/token.

mod common;
use common::Agent;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One scripted answer of the fake GitLab.
#[derive(Clone)]
struct Answer {
    status: u16,
    body: String,
    delay: Duration,
}

fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

/// A fake GitLab: answers POST /oauth/token from a script and remembers each request body.
struct FakeGitLab {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeGitLab {
    fn start(script: Vec<Answer>) -> FakeGitLab {
        Self::serve(script, None)
    }

    /// The same over HTTPS, with the certificate and key of `tls`.
    fn start_tls(script: Vec<Answer>, tls: Arc<rustls::ServerConfig>) -> FakeGitLab {
        Self::serve(script, Some(tls))
    }

    fn serve(script: Vec<Answer>, tls: Option<Arc<rustls::ServerConfig>>) -> FakeGitLab {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let script = Arc::new(Mutex::new(script.into_iter()));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (seen, script, tls) = (seen.clone(), script.clone(), tls.clone());
                // One thread per request, so a slow answer does not hold up the next.
                std::thread::spawn(move || match tls {
                    None => serve_one(stream, &seen, &script),
                    Some(config) => {
                        let Ok(session) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        let mut tls = rustls::StreamOwned::new(session, stream);
                        serve_one(&mut tls, &seen, &script);
                        tls.conn.send_close_notify();
                        let _ = tls.flush();
                    }
                });
            }
        });
        FakeGitLab { url, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

type Script = Mutex<std::vec::IntoIter<Answer>>;

fn serve_one(stream: impl Read + Write, seen: &Mutex<Vec<String>>, script: &Script) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    // Nothing read (a failed TLS handshake): no request to record.
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
        if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    seen.lock().unwrap().push(format!(
        "{} {}",
        request_line.trim(),
        String::from_utf8_lossy(&body)
    ));
    let Some(a) = script.lock().unwrap().next() else {
        return;
    };
    std::thread::sleep(a.delay);
    let stream = reader.get_mut();
    let _ = write!(
        stream,
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        a.status,
        a.body.len(),
        a.body
    );
    let _ = stream.flush();
}

fn add_oauth(agent: &Agent, url: &str) {
    let out = agent.cli_env(
        &[
            "credentials",
            "add",
            "oa",
            "--url",
            url,
            "--refresh-token-env",
            "RT",
            "--oauth-client-id",
            "app-1",
            "--oauth-client-secret-env",
            "CS",
        ],
        &[("RT", "refresh-ONE"), ("CS", "client-SECRET")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn credential_row(agent: &Agent) -> (String, Option<String>, Option<String>) {
    agent
        .db()
        .query_row(
            "SELECT access_token, refresh_token, expires_at FROM credentials WHERE name = 'oa'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
}

const GOOD: &str = r#"{"access_token":"access-TWO","token_type":"Bearer","expires_in":7200,"refresh_token":"refresh-TWO","created_at":1900000000}"#;

#[test]
fn oauth_refresh_before_dispatch_stores_the_rotated_refresh_token() {
    let gitlab = FakeGitLab::start(vec![
        answer(200, GOOD),
        answer(200, &GOOD.replace("TWO", "THREE")),
    ]);
    let agent = Agent::start(&[]);
    add_oauth(&agent, &gitlab.url);
    let mut crawler = agent.connect();
    // No access token yet: the first dispatch refreshes.
    let job = crawler.request_one();
    assert_eq!(job["accessToken"], "access-TWO");
    let (access, refresh, expires) = credential_row(&agent);
    assert_eq!(
        (access.as_str(), refresh.as_deref()),
        ("access-TWO", Some("refresh-TWO"))
    );
    assert_eq!(
        expires.as_deref(),
        Some("2030-03-17T19:46:40.000Z"),
        "created_at + expires_in"
    );
    let sent = &gitlab.requests()[0];
    assert!(sent.starts_with("POST /oauth/token"), "{sent}");
    for field in [
        "grant_type=refresh_token",
        "refresh_token=refresh-ONE",
        "client_id=app-1",
        "client_secret=client-SECRET",
    ] {
        assert!(sent.contains(field), "{field} missing in {sent}");
    }

    // GitLab later rejects access-TWO: the crawler asks, the agent refreshes again.
    let id = job["id"].as_str().unwrap();
    crawler.send_type("token_refresh_request", Some(id), json!({}));
    let reply = crawler.recv();
    assert_eq!(reply["data"]["accessToken"], "access-THREE");
    assert_eq!(reply["data"]["refreshSuccessful"], true);
    assert!(
        gitlab.requests()[1].contains("refresh_token=refresh-TWO"),
        "the rotated token was used"
    );
    assert_eq!(credential_row(&agent).1.as_deref(), Some("refresh-THREE"));
    let outcomes: String = agent
        .db()
        .query_row(
            "SELECT group_concat(trigger || ':' || outcome) FROM token_refreshes",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(outcomes, "dispatch:refreshed,crawler:refreshed");
    for secret in ["access-T", "refresh-", "client-SECRET"] {
        assert!(!agent.log().contains(secret), "{secret} in the log");
    }
    let listed = agent.ok(&["credentials", "list"]);
    assert!(
        listed.contains("oauth") && listed.contains("refreshed") && !listed.contains("refresh-"),
        "{listed}"
    );
}

#[test]
fn every_oauth_failure_still_gets_an_answer_in_time() {
    let slow = Answer {
        status: 200,
        body: GOOD.into(),
        delay: Duration::from_secs(8),
    };
    let gitlab = FakeGitLab::start(vec![
        answer(
            400,
            r#"{"error":"invalid_grant","error_description":"The provided authorization grant is invalid"}"#,
        ),
        slow,
        answer(200, "{not json"),
        answer(500, "<html>oops</html>"),
    ]);
    let agent = Agent::start(&[("CRAWLER_AGENT_TOKENS_HTTP_TIMEOUT", "2s")]);
    add_oauth(&agent, &gitlab.url);
    // Give the credential a token so dispatch does not refresh on its own.
    rw(&agent)
        .execute(
            "UPDATE credentials SET access_token = 'old', expires_at = '2099-01-01T00:00:00.000Z'",
            [],
        )
        .unwrap();
    let mut crawler = agent.connect();
    let job = crawler.request_one();
    let id = job["id"].as_str().unwrap().to_string();
    let expectations = [
        "HTTP 400: invalid_grant",
        "no answer within the timeout",
        "malformed token response",
        "HTTP 500",
    ];
    for (i, expected) in expectations.iter().enumerate() {
        // Answered (the time it takes is a benchmark figure, phase 9).
        crawler.send_type("token_refresh_request", Some(&id), json!({}));
        let reply = crawler.recv();
        assert_eq!(reply["type"], "token_refresh_response");
        assert_eq!(reply["data"]["accessToken"], "", "case {i}");
        assert_eq!(reply["data"]["refreshSuccessful"], false);
        agent.wait_for(&format!("SELECT count(*) FROM token_refreshes WHERE outcome = 'failed' AND detail LIKE '%{expected}%'"), 1);
    }
    assert_eq!(
        credential_row(&agent).1.as_deref(),
        Some("refresh-ONE"),
        "a failed refresh keeps the refresh token"
    );
    assert!(agent.count("SELECT count(*) FROM errors WHERE category = 'token'") >= 4);
}

#[test]
fn concurrent_refreshes_of_one_credential_are_coalesced() {
    let slowish = Answer {
        status: 200,
        body: GOOD.into(),
        delay: Duration::from_millis(500),
    };
    let gitlab = FakeGitLab::start(vec![slowish]);
    let agent = Agent::start(&[("CRAWLER_AGENT_DISPATCH_JOBS_PER_RESPONSE", "3")]);
    add_oauth(&agent, &gitlab.url);
    rw(&agent)
        .execute(
            "UPDATE credentials SET access_token = 'old', expires_at = '2099-01-01T00:00:00.000Z'",
            [],
        )
        .unwrap();
    for e in 1..=2 {
        agent.ok(&[
            "jobs",
            "add",
            "--credential",
            "oa",
            "--type",
            "project",
            "--entity-id",
            &e.to_string(),
        ]);
    }
    let mut crawler = agent.connect();
    let jobs = crawler.request_jobs();
    assert_eq!(jobs.len(), 3);
    // Three jobs hit 401 at once and all ask for a new token.
    let mut askers: Vec<_> = jobs.iter().map(|_| agent.connect()).collect();
    for (c, job) in askers.iter_mut().zip(&jobs) {
        c.send_type(
            "token_refresh_request",
            Some(job["id"].as_str().unwrap()),
            json!({}),
        );
    }
    for c in &mut askers {
        assert_eq!(c.recv()["data"]["accessToken"], "access-TWO");
    }
    assert_eq!(gitlab.requests().len(), 1, "one refresh served all three");
}

/// Writes `script` as an executable helper and adds credential `cmd` that runs it.
fn add_helper_credential(agent: &Agent, script: &str) {
    let path = agent.dir.path().join("helper.sh");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    agent.ok(&[
        "credentials",
        "add",
        "cmd",
        "--url",
        "https://g.example",
        "--token-command",
        path.to_str().unwrap(),
    ]);
}

#[test]
fn a_token_command_is_run_again_when_the_crawler_needs_a_new_token() {
    let agent = Agent::start(&[]);
    let dir = agent.dir.path();
    let counter = dir.join("n");
    add_helper_credential(
        &agent,
        &format!(
            "#!/bin/sh\nn=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}\necho \"helper says hi\" >&2\nprintf '{{\"access_token\":\"cmd-token-%s\",\"expires_at\":\"2099-01-01T00:00:00Z\"}}' $n\n",
            c = counter.display()
        ),
    );
    let mut crawler = agent.connect();
    let job = crawler.request_one();
    assert_eq!(job["accessToken"], "cmd-token-1");
    crawler.send_type(
        "token_refresh_request",
        Some(job["id"].as_str().unwrap()),
        json!({}),
    );
    assert_eq!(crawler.recv()["data"]["accessToken"], "cmd-token-2");
    assert!(agent.log().contains("helper says hi"), "stderr is logged");
    assert!(!agent.log().contains("cmd-token"), "but never the token");
}

#[test]
fn a_failing_or_hanging_token_command_is_a_refusal_in_time() {
    let agent = Agent::start(&[("CRAWLER_AGENT_TOKENS_COMMAND_TIMEOUT", "1s")]);
    let dir = agent.dir.path();
    let mode = dir.join("mode");
    std::fs::write(&mode, "ok").unwrap();
    add_helper_credential(
        &agent,
        &format!(
            "#!/bin/sh\ncase $(cat {m}) in\n ok) echo tok-ok ;;\n fail) echo 'no vault' >&2; exit 3 ;;\n hang) sleep 30 ;;\nesac\n",
            m = mode.display()
        ),
    );
    let mut crawler = agent.connect();
    let id = crawler.request_one()["id"].as_str().unwrap().to_string();
    for (m, expected) in [
        ("fail", "failed (exit status: 3)"),
        ("hang", "did not finish within 1s"),
    ] {
        std::fs::write(&mode, m).unwrap();
        crawler.send_type("token_refresh_request", Some(&id), json!({}));
        assert_eq!(crawler.recv()["data"]["accessToken"], "");
        agent.wait_for(&format!("SELECT count(*) FROM token_refreshes WHERE outcome = 'failed' AND detail LIKE '%{expected}%'"), 1);
    }
}

#[test]
fn oauth_options_are_validated() {
    let agent = Agent::new();
    // A refresh token without the application is a usage error.
    let out = agent.cli_env(
        &[
            "credentials",
            "add",
            "x",
            "--url",
            "https://g",
            "--refresh-token-env",
            "RT",
        ],
        &[("RT", "r")],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = agent.cli_env(
        &[
            "credentials",
            "add",
            "x",
            "--url",
            "https://g",
            "--refresh-token-env",
            "RT",
            "--oauth-client-id",
            "a",
            "--oauth-client-secret-env",
            "MISSING_CS",
        ],
        &[("RT", "r")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MISSING_CS is not set"));
}

#[test]
fn a_refresh_slower_than_the_answer_deadline_is_still_stored_and_the_next_uses_its_rotated_token() {
    let slow = Answer {
        status: 200,
        body: GOOD.into(),
        delay: Duration::from_secs(3),
    };
    let gitlab = FakeGitLab::start(vec![slow, answer(200, &GOOD.replace("TWO", "THREE"))]);
    // The answer deadline (12 s in production) shortened so the endpoint is slower.
    let agent = Agent::start(&[("CRAWLER_AGENT_TOKENS_ANSWER_WITHIN", "1s")]);
    add_oauth(&agent, &gitlab.url);
    agent.add_job("oa", "group", "7", &[]);
    let db = rw(&agent);
    db.execute(
        "UPDATE credentials SET access_token = 'old', expires_at = '2099-01-01T00:00:00.000Z'",
        [],
    )
    .unwrap();
    let mut crawler = agent.connect();
    let job = crawler.request_one();
    let id = job["id"].as_str().unwrap().to_string();
    crawler.send_type("token_refresh_request", Some(&id), json!({}));
    let reply = crawler.recv();
    assert_eq!(
        reply["data"]["refreshSuccessful"], false,
        "the deadline passed first"
    );
    // GitLab rotated the refresh token: the agent stores it although nobody waits.
    agent.wait_for(
        "SELECT count(*) FROM credentials WHERE refresh_token = 'refresh-TWO' AND access_token = 'access-TWO'",
        1,
    );
    // The crawler asks again: the token that arrived late is served.
    crawler.send_type("token_refresh_request", Some(&id), json!({}));
    assert_eq!(crawler.recv()["data"]["accessToken"], "access-TWO");
    // The next refresh (before the next dispatch) succeeds with the rotated token.
    crawler.send_type(
        "job_completed",
        Some(&id),
        json!({"success": true, "finalCounts": {}}),
    );
    db.execute(
        "UPDATE credentials SET expires_at = '2000-01-01T00:00:00.000Z'",
        [],
    )
    .unwrap();
    let next = crawler.request_one();
    assert_eq!(next["accessToken"], "access-THREE");
    assert!(gitlab.requests()[1].contains("refresh_token=refresh-TWO"));
}

#[test]
fn an_oauth_answer_with_absurd_times_is_a_failed_refresh_not_a_panic() {
    let ms = r#"{"access_token":"access-TWO","expires_in":7200,"refresh_token":"refresh-TWO","created_at":1900000000000}"#;
    let absurd = r#"{"access_token":"access-X","expires_in":1e300,"refresh_token":"refresh-X"}"#;
    let gitlab = FakeGitLab::start(vec![answer(200, ms), answer(200, absurd)]);
    let agent = Agent::start(&[]);
    add_oauth(&agent, &gitlab.url);
    let mut crawler = agent.connect();
    // created_at in milliseconds is read as milliseconds.
    let job = crawler.request_one();
    assert_eq!(job["accessToken"], "access-TWO");
    assert_eq!(
        credential_row(&agent).2.as_deref(),
        Some("2030-03-17T19:46:40.000Z")
    );
    let id = job["id"].as_str().unwrap().to_string();
    crawler.send_type("token_refresh_request", Some(&id), json!({}));
    // access-TWO changed since dispatch: served; ask once more to force a refresh.
    crawler.recv();
    rw(&agent)
        .execute(
            "UPDATE credentials SET updated_at = '2000-01-01T00:00:00.000Z'",
            [],
        )
        .unwrap();
    crawler.send_type("token_refresh_request", Some(&id), json!({}));
    assert_eq!(crawler.recv()["data"]["refreshSuccessful"], false);
    agent.wait_for(
        "SELECT count(*) FROM token_refreshes WHERE outcome = 'failed' AND detail LIKE '%expires_in%'",
        1,
    );
    assert_eq!(
        credential_row(&agent).1.as_deref(),
        Some("refresh-TWO"),
        "kept"
    );
    assert_eq!(
        agent.count("SELECT count(*) FROM errors WHERE category = 'internal'"),
        0
    );
}

#[test]
fn a_helper_leaving_a_background_child_on_its_stdout_is_answered_and_the_child_killed() {
    let agent = Agent::start(&[("CRAWLER_AGENT_TOKENS_COMMAND_TIMEOUT", "2s")]);
    let pidfile = agent.dir.path().join("leftover.pid");
    // Prints a token, then leaves a child holding stdout for five minutes.
    add_helper_credential(
        &agent,
        &format!(
            "#!/bin/sh\necho helper-TOKEN\nsleep 300 &\necho $! > {}\n",
            pidfile.display()
        ),
    );
    let mut crawler = agent.connect();
    let asked = Instant::now();
    let job = crawler.request_one();
    println!(
        "job_response after {:?} (command_timeout 2s; the leftover child would hold stdout 300s)",
        asked.elapsed()
    );
    assert_eq!(job["accessToken"], "helper-TOKEN");
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let proc_dir = format!("/proc/{}", pid.trim());
    assert!(
        common::wait::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            // Gone, or a zombie waiting for init to reap it.
            std::fs::read_to_string(format!("{proc_dir}/stat")).map_or(true, |s| s.contains(") Z"))
        }),
        "the helper's process group was killed"
    );
}

/// A CA made for this test and a leaf certificate it signed for 127.0.0.1: the CA's
/// PEM (what the agent is told to trust) and the server side of TLS.
fn test_ca() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose, SanType,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "crawler-agent test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &ca).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf_cert.der().clone()], key)
    .unwrap();
    (ca.pem(), Arc::new(server))
}

/// README/docs: the OAuth client verifies GitLab's certificate against the system's
/// roots, which `SSL_CERT_FILE` replaces (rustls-native-certs, through ureq's platform
/// verifier on Linux). A GitLab whose certificate chains to a CA given there is
/// refreshed over HTTPS; one whose CA is not trusted is a failed refresh, not a hang.
#[test]
fn oauth_refresh_over_https_trusts_the_ca_given_in_ssl_cert_file() {
    let (ca_pem, tls) = test_ca();
    let (other_ca_pem, _) = test_ca();
    let cas = tempfile::tempdir().unwrap();
    let (trusted, untrusted) = (cas.path().join("ca.pem"), cas.path().join("other.pem"));
    std::fs::write(&trusted, ca_pem).unwrap();
    std::fs::write(&untrusted, other_ca_pem).unwrap();
    let gitlab = FakeGitLab::start_tls(
        vec![
            answer(200, GOOD),
            answer(200, &GOOD.replace("TWO", "THREE")),
        ],
        tls,
    );
    assert!(gitlab.url.starts_with("https://127.0.0.1:"));

    // Another CA: the handshake fails, the crawler gets its answer, nothing is stored.
    let refused = agent_trusting(&untrusted);
    add_oauth(&refused, &gitlab.url);
    refused.add_job("oa", "group", "7", &[]);
    rw(&refused)
        .execute(
            "UPDATE credentials SET access_token = 'old', expires_at = '2099-01-01T00:00:00.000Z'",
            [],
        )
        .unwrap();
    let mut crawler = refused.connect();
    let id = crawler.request_one()["id"].as_str().unwrap().to_string();
    crawler.send_type("token_refresh_request", Some(&id), json!({}));
    let reply = crawler.recv();
    assert_eq!(reply["data"]["refreshSuccessful"], false, "{reply}");
    refused.wait_for(
        "SELECT count(*) FROM token_refreshes WHERE outcome = 'failed' AND detail LIKE '%invalid peer certificate%'",
        1,
    );
    assert!(
        gitlab.requests().is_empty(),
        "no request went out over an untrusted connection"
    );
    assert_eq!(credential_row(&refused).1.as_deref(), Some("refresh-ONE"));

    // The test CA trusted: dispatch refreshes over HTTPS and stores the rotation.
    let agent = agent_trusting(&trusted);
    add_oauth(&agent, &gitlab.url);
    let mut crawler = agent.connect();
    let job = crawler.request_one();
    assert_eq!(job["accessToken"], "access-TWO");
    assert_eq!(
        credential_row(&agent),
        (
            "access-TWO".to_string(),
            Some("refresh-TWO".to_string()),
            Some("2030-03-17T19:46:40.000Z".to_string())
        )
    );
    assert!(gitlab.requests()[0].contains("refresh_token=refresh-ONE"));
    // The crawler asks for a new token: refreshed again over HTTPS, in the reply.
    let id = job["id"].as_str().unwrap();
    crawler.send_type("token_refresh_request", Some(id), json!({}));
    let reply = crawler.recv();
    assert_eq!(reply["data"]["accessToken"], "access-THREE");
    assert_eq!(reply["data"]["refreshSuccessful"], true);
    assert_eq!(credential_row(&agent).1.as_deref(), Some("refresh-THREE"));
    assert!(gitlab.requests()[1].contains("refresh_token=refresh-TWO"));
    assert_eq!(
        agent.count("SELECT count(*) FROM token_refreshes WHERE outcome = 'refreshed'"),
        2
    );
}

/// An agent whose only trust roots are the CAs in `ca_file`: `SSL_CERT_FILE` set and
/// `SSL_CERT_DIR` unset (either one alone replaces the system's roots; both add up).
fn agent_trusting(ca_file: &std::path::Path) -> Agent {
    let mut agent = Agent::new();
    agent.env = vec![("SSL_CERT_FILE".into(), ca_file.display().to_string())];
    agent.unset = vec!["SSL_CERT_DIR".into()];
    agent.spawn();
    agent
}

/// A read-write connection beside the running agent, waiting for its write lock
/// rather than failing with SQLITE_BUSY (as an operator's sqlite3 would).
fn rw(agent: &Agent) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(agent.db_path()).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// Sets the stored token of credential `name` and its expiry `from_now` ahead.
fn set_token(agent: &Agent, name: &str, token: &str, from_now: Duration) {
    let expires = crawler_agent::time::Timestamp::now()
        .plus(from_now)
        .to_string();
    let changed = rw(agent)
        .execute(
            "UPDATE credentials SET access_token = ?1, expires_at = ?2 WHERE name = ?3",
            rusqlite::params![token, expires, name],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

/// A helper that counts its runs in `counter` and prints `helper-N`, valid one day.
fn counting_helper(counter: &std::path::Path) -> String {
    format!(
        "#!/bin/sh\nn=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}\nprintf '{{\"access_token\":\"helper-%s\",\"expires_in\":86400}}' $n\n",
        c = counter.display()
    )
}

fn runs(counter: &std::path::Path) -> u32 {
    std::fs::read_to_string(counter)
        .map(|s| s.trim().parse().unwrap())
        .unwrap_or(0)
}

/// `tokens.refresh_margin`: a stored token expiring later than the margin goes out as
/// stored (no helper run); one expiring within it is refreshed before dispatch.
#[test]
fn refresh_margin_decides_whether_a_token_is_refreshed_before_dispatch() {
    let agent = Agent::start(&[("CRAWLER_AGENT_TOKENS_REFRESH_MARGIN", "1h")]);
    let counter = agent.dir.path().join("runs");
    add_helper_credential(&agent, &counting_helper(&counter));
    assert_eq!(runs(&counter), 1, "`credentials add` ran the helper once");
    for e in 1..=2 {
        let e = e.to_string();
        agent.add_job("cmd", "project", &e, &[]);
    }
    let mut crawler = agent.connect();

    // Outside the margin (expires in 2 h, margin 1 h): served as stored.
    set_token(&agent, "cmd", "stored-A", Duration::from_secs(2 * 3600));
    let job = crawler.request_one();
    assert_eq!(job["accessToken"], "stored-A");
    assert_eq!(runs(&counter), 1, "no refresh outside the margin");
    crawler.send_type(
        "job_completed",
        job["id"].as_str(),
        json!({"success": true, "finalCounts": {}}),
    );
    agent.wait_for(
        &format!(
            "SELECT count(*) FROM jobs WHERE id = '{}' AND status = 'finished'",
            job["id"].as_str().unwrap()
        ),
        1,
    );

    // Within the margin (expires in 30 min): refreshed first, the new token goes out.
    set_token(&agent, "cmd", "stored-B", Duration::from_secs(30 * 60));
    let job = crawler.request_one();
    assert_eq!(job["accessToken"], "helper-2");
    assert_eq!(runs(&counter), 2, "one refresh within the margin");
    assert_eq!(
        agent.count("SELECT count(*) FROM token_refreshes WHERE trigger = 'dispatch' AND outcome = 'refreshed'"),
        1
    );
    crawler.send_type(
        "job_completed",
        job["id"].as_str(),
        json!({"success": true, "finalCounts": {}}),
    );
    agent.wait_for(
        &format!(
            "SELECT count(*) FROM jobs WHERE id = '{}' AND status = 'finished'",
            job["id"].as_str().unwrap()
        ),
        1,
    );

    // The refreshed token (one day) is outside the margin again: served as stored.
    let job = crawler.request_one();
    assert_eq!(job["accessToken"], "helper-2");
    assert_eq!(runs(&counter), 2);
}

/// "Run without a shell": `;`, `$(...)` and backquotes in a token command are
/// arguments to the helper, never interpreted.
#[test]
fn a_token_command_is_run_without_a_shell() {
    let agent = Agent::start(&[]);
    let dir = agent.dir.path();
    let (marker, args_file) = (dir.join("marker"), dir.join("args"));
    let helper = dir.join("helper.sh");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nprintf '%s|' \"$@\" > {}\necho helper-TOKEN\n",
            args_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let m = marker.display().to_string();
    let line = format!(
        "{} ; touch {m} $(touch {m}) `touch {m}` && touch {m} | touch {m}",
        helper.display()
    );
    agent.ok(&[
        "credentials",
        "add",
        "cmd",
        "--url",
        "https://g.example",
        "--token-command",
        &line,
    ]);
    std::fs::remove_file(&args_file).unwrap();
    let mut crawler = agent.connect();
    let job = crawler.request_one();
    // Force a run by the agent itself (not only by `credentials add`).
    crawler.send_type("token_refresh_request", job["id"].as_str(), json!({}));
    assert_eq!(crawler.recv()["data"]["accessToken"], "helper-TOKEN");
    let args = std::fs::read_to_string(&args_file).expect("the agent ran the helper");
    assert_eq!(
        args,
        format!(";|touch|{m}|$(touch|{m})|`touch|{m}`|&&|touch|{m}|||touch|{m}|"),
        "every word reached the helper as an argument"
    );
    assert!(!marker.exists(), "nothing in the line was run by a shell");
}

/// A helper that prints its token on stderr too: the log and the errors table show the
/// line with the token masked, on success and on failure.
#[test]
fn a_token_a_helper_prints_on_stderr_is_masked_in_the_log_and_the_errors() {
    let agent = Agent::start(&[]);
    let mode = agent.dir.path().join("mode");
    std::fs::write(&mode, "ok").unwrap();
    add_helper_credential(
        &agent,
        &format!(
            "#!/bin/sh\nm=$(cat {m})\necho \"debug: fetched glpat-SECRET-$m for you\" >&2\necho \"glpat-SECRET-$m\"\n[ \"$m\" = ok ] || exit 4\n",
            m = mode.display()
        ),
    );
    let mut crawler = agent.connect();
    let job = crawler.request_one();
    assert_eq!(job["accessToken"], "glpat-SECRET-ok");
    let id = job["id"].as_str().unwrap().to_string();
    // A successful run by the agent.
    crawler.send_type("token_refresh_request", Some(&id), json!({}));
    assert_eq!(crawler.recv()["data"]["accessToken"], "glpat-SECRET-ok");
    // Make the next ask run the helper again (the token "changed since dispatch"
    // would otherwise be served as it is), this time failing.
    rw(&agent)
        .execute(
            "UPDATE credentials SET updated_at = '2000-01-01T00:00:00.000Z'",
            [],
        )
        .unwrap();
    std::fs::write(&mode, "bad").unwrap();
    crawler.send_type("token_refresh_request", Some(&id), json!({}));
    assert_eq!(crawler.recv()["data"]["refreshSuccessful"], false);
    agent.wait_for(
        "SELECT count(*) FROM token_refreshes WHERE outcome = 'failed' AND detail LIKE '%exit status: 4%'",
        1,
    );
    // The stderr lines were logged (masked) for both runs by the agent.
    let log = agent.log();
    assert!(
        log.matches("debug: fetched *** for you").count() >= 2,
        "stderr logged with the token masked:\n{log}"
    );
    assert!(!log.contains("glpat-SECRET"), "a token in the log:\n{log}");
    let leaked: i64 = agent.count(
        "SELECT count(*) FROM errors WHERE message LIKE '%glpat-SECRET%' OR coalesce(context, '') LIKE '%glpat-SECRET%'",
    );
    assert_eq!(leaked, 0, "a token in the errors table");
    let leaked: i64 =
        agent.count("SELECT count(*) FROM token_refreshes WHERE detail LIKE '%glpat-SECRET%'");
    assert_eq!(leaked, 0, "a token in token_refreshes");
}

/// A helper slower than `tokens.answer_within` (and well within its own
/// `command_timeout`): the crawler still gets its refusal, from the deadline; the
/// connection keeps working. (The time it takes is a benchmark figure, not a test.)
#[test]
fn a_helper_slower_than_the_answer_deadline_gets_the_crawler_a_refusal_not_a_hang() {
    let agent = Agent::start(&[
        ("CRAWLER_AGENT_TOKENS_ANSWER_WITHIN", "500ms"),
        ("CRAWLER_AGENT_TOKENS_COMMAND_TIMEOUT", "10s"),
    ]);
    let mode = agent.dir.path().join("mode");
    std::fs::write(&mode, "ok").unwrap();
    add_helper_credential(
        &agent,
        &format!(
            "#!/bin/sh\n[ \"$(cat {m})\" = slow ] && exec sleep 25\necho tok-ok\n",
            m = mode.display()
        ),
    );
    let mut crawler = agent.connect();
    let id = crawler.request_one()["id"].as_str().unwrap().to_string();
    std::fs::write(&mode, "slow").unwrap();
    crawler.send_type("token_refresh_request", Some(&id), json!({}));
    let reply = crawler.recv();
    assert_eq!(reply["type"], "token_refresh_response");
    assert_eq!(reply["data"]["accessToken"], "");
    assert_eq!(reply["data"]["refreshSuccessful"], false);
    agent.wait_for(
        "SELECT count(*) FROM token_refreshes WHERE outcome = 'failed' AND detail LIKE 'no token within%'",
        1,
    );
    // The connection still answers while the helper runs on.
    crawler.send_type("job_request", None, json!({}));
    assert_eq!(crawler.recv()["type"], "job_response");
}
