//! A client that talks to the agent like the real crawler: concatenated JSON out,
//! a brace-counting parser for the replies.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A client that behaves like the real crawler: `JSON.stringify` messages written
/// back to back with no separator (here in random chunk sizes, including single
/// bytes and splits inside UTF-8 characters), replies split by counting `{` and `}`
/// without regard to strings, each read decoded as UTF-8 on its own.
pub struct Crawler {
    pub stream: UnixStream,
    rng: fastrand::Rng,
    inbox: String,
    pub chunked: bool,
}

impl Crawler {
    pub fn connect(path: &Path) -> Crawler {
        Crawler::from_stream(UnixStream::connect(path).expect("connect"))
    }

    pub fn from_stream(stream: UnixStream) -> Crawler {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Crawler {
            stream,
            rng: fastrand::Rng::with_seed(0x5eed),
            inbox: String::new(),
            chunked: true,
        }
    }

    pub fn message(kind: &str, job_id: Option<&str>, data: Value) -> Value {
        let mut m = json!({"type": kind, "timestamp": "2025-07-12T10:20:00.001Z"});
        if let Some(id) = job_id {
            m["jobId"] = json!(id);
        }
        m["data"] = data;
        m
    }

    /// [`Crawler::message`] as the bytes `JSON.stringify` gives.
    pub fn encode(kind: &str, job_id: Option<&str>, data: Value) -> Vec<u8> {
        serde_json::to_vec(&Self::message(kind, job_id, data)).unwrap()
    }

    /// Writes one message as the crawler does.
    pub fn send(&mut self, message: &Value) {
        let bytes = serde_json::to_vec(message).unwrap();
        self.send_raw(&bytes);
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        if !self.chunked {
            self.stream.write_all(bytes).unwrap();
            return;
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = match self.rng.u8(..4) {
                0 => 1,
                1 => self.rng.usize(1..8),
                _ => self.rng.usize(1..256),
            }
            .min(rest.len());
            self.stream.write_all(&rest[..n]).unwrap();
            rest = &rest[n..];
        }
    }

    pub fn send_type(&mut self, kind: &str, job_id: Option<&str>, data: Value) {
        self.send(&Self::message(kind, job_id, data));
    }

    /// The crawler's reply parser: next complete object, by brace counting.
    pub fn recv(&mut self) -> Value {
        loop {
            if let Some(start) = self.inbox.find('{') {
                let mut depth = 0i64;
                for (i, c) in self.inbox[start..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        let end = start + i + 1;
                        let text = self.inbox[start..end].to_string();
                        self.inbox.drain(..end);
                        return serde_json::from_str(&text)
                            .unwrap_or_else(|e| panic!("crawler could not parse {text:?}: {e}"));
                    }
                }
            }
            let mut chunk = [0u8; 7];
            let n = self.stream.read(&mut chunk).expect("read reply");
            assert!(n > 0, "agent closed the connection");
            // Per-chunk decoding, like data.toString() in the crawler.
            self.inbox.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }

    /// Reads past the next reply without decoding it, in large reads, up to the newline
    /// the agent ends each reply with: for timing the agent, not the parser.
    pub fn skip_reply(&mut self) {
        loop {
            if let Some(end) = self.inbox.find('\n') {
                self.inbox.drain(..=end);
                return;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("read reply");
            assert!(n > 0, "agent closed the connection");
            self.inbox.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }

    /// Sends a job_request and returns the jobs of the reply.
    pub fn request_jobs(&mut self) -> Vec<Value> {
        self.send_type("job_request", None, json!({}));
        let reply = self.recv();
        assert_eq!(reply["type"], "job_response", "{reply}");
        reply["data"]["jobs"]
            .as_array()
            .expect("jobs array")
            .clone()
    }

    pub fn request_one(&mut self) -> Value {
        let jobs = self.request_jobs();
        assert_eq!(jobs.len(), 1, "expected one job, got {jobs:?}");
        jobs[0].clone()
    }

    /// True when the agent closed this connection within `wait` without sending a
    /// byte (EOF or reset); false when anything arrived or it stayed open.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut b = [0u8; 1];
        let closed = match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        closed
    }

    /// True when nothing arrives within `wait`.
    pub fn silent_for(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut b = [0u8; 1];
        let quiet = match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(_) => true,
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        quiet
    }
}
