//! The payload contract (docs/operations.md): `format = "json"` sends
//! `{"event", "at", "agent", "subject", "message", "severity", "details"}`, a command
//! gets the same JSON on stdin, `format = "slack"` sends `{"text": "..."}`. A digest
//! (events the cooldown held back) says so in `message` and in `details.digest`.
//! Built only from outbox rows, which never hold a secret.

use crate::store::deliveries::Due;
use serde_json::{json, Value};

/// This machine's name, for `agent`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The JSON payload of one delivery.
pub fn json(d: &Due, agent: &str) -> Value {
    let mut details: Value = serde_json::from_str(&d.event.details).unwrap_or(json!({}));
    let mut message = d.event.message.clone();
    if d.digest > 0 {
        let since = d.digest_since.clone().unwrap_or_default();
        message = format!(
            "{} more {} events ({}) since {since}; the latest: {message}",
            d.digest, d.event.kind, d.event.subject
        );
        if let Value::Object(map) = &mut details {
            map.insert("digest".into(), json!({"count": d.digest, "since": since}));
        }
    }
    json!({
        "event": d.event.kind,
        "at": d.event.at,
        "agent": agent,
        "subject": d.event.subject,
        "message": message,
        "severity": d.event.severity,
        "details": details,
    })
}

/// Slack's incoming-webhook shape.
pub fn slack(payload: &Value) -> Value {
    let text = format!(
        "[{}] {} on {}: {}",
        payload["severity"].as_str().unwrap_or(""),
        payload["event"].as_str().unwrap_or(""),
        payload["agent"].as_str().unwrap_or(""),
        payload["message"].as_str().unwrap_or("")
    );
    json!({ "text": text })
}
