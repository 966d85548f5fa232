//! Typed messages from the crawler, parsed from one JSON object.
//!
//! Parsing is lenient where the crawler is loose (optional fields, unknown extra keys,
//! numbers that may be floats) and strict where acting on garbage would be wrong (a job
//! message needs a string `jobId`). Anything that cannot be parsed becomes a
//! [`ParseError`] that says what was wrong; the caller records it and moves on. Nothing
//! here touches the database or the socket.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

/// Our job ids are 26-character ULIDs; anything much longer cannot be one of ours.
pub const MAX_JOB_ID_BYTES: usize = 128;

/// The longest `jobId` a refusal echoes back: a `token_refresh_request` is always
/// answered, but a reply never carries megabytes of the peer's text.
pub const MAX_ECHOED_JOB_ID_BYTES: usize = 4096;

#[derive(Debug)]
pub struct Message {
    /// The crawler's own `timestamp`, kept as sent (never trusted for ordering).
    pub sent_at: Option<String>,
    pub body: Inbound,
}

#[derive(Debug)]
pub enum Inbound {
    JobRequest,
    Heartbeat(Heartbeat),
    JobStarted(String, JobStarted),
    JobProgress(String, Progress),
    JobCompleted(String, Completed),
    JobFailed(String, Failed),
    JobsDiscovered(String, Discovered),
    TokenRefreshRequest(RefreshFor),
    Discovery(DiscoveryEntities),
}

/// Whose token a `token_refresh_request` asks for. Every request is answered (spec
/// §5.3), so a `jobId` that cannot be one of ours still yields a request: answered
/// with a refusal that echoes the id when it is a string of bounded length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshFor {
    Job(String),
    Invalid {
        /// The `jobId` to put in the refusal ('' when it was not a string or too long).
        echo: String,
        reason: String,
    },
}

/// Every message type the crawler sends, as [`Inbound::type_name`] names them: the
/// metrics count each, and show each at 0 before the first arrives.
pub const TYPE_NAMES: [&str; 9] = [
    "job_request",
    "heartbeat",
    "job_started",
    "job_progress",
    "job_completed",
    "job_failed",
    "jobs_discovered",
    "token_refresh_request",
    "discovery",
];

impl Inbound {
    pub fn type_name(&self) -> &'static str {
        match self {
            Inbound::JobRequest => "job_request",
            Inbound::Heartbeat(_) => "heartbeat",
            Inbound::JobStarted(..) => "job_started",
            Inbound::JobProgress(..) => "job_progress",
            Inbound::JobCompleted(..) => "job_completed",
            Inbound::JobFailed(..) => "job_failed",
            Inbound::JobsDiscovered(..) => "jobs_discovered",
            Inbound::TokenRefreshRequest(_) => "token_refresh_request",
            Inbound::Discovery(_) => "discovery",
        }
    }
}

/// A JSON value kept as the text that was received: stored as is, never rebuilt.
pub type Json = Box<serde_json::value::RawValue>;

/// `raw` as a [`Value`] for an audit detail. A number no `f64` holds (`1e400`; valid
/// JSON, though JavaScript never writes it) has no `Value`: such a text is kept as a
/// string rather than failing (or panicking in `json!`) and losing the message.
pub fn as_value(raw: Option<&Json>) -> Value {
    raw.map_or(Value::Null, |r| {
        serde_json::from_str(r.get()).unwrap_or_else(|_| Value::String(r.get().to_owned()))
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    pub uptime: Option<f64>,
    pub memory_usage: Option<Json>,
    pub system_status: Option<String>,
    pub active_jobs: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStarted {
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub stage: Option<String>,
    pub entity_type: Option<String>,
    pub processed: Option<f64>,
    pub total: Option<f64>,
    pub message: Option<String>,
    pub item_counts: Option<Json>,
    pub current_page: Option<f64>,
    pub processing_rate: Option<f64>,
    pub estimated_time_remaining: Option<f64>,
    pub resume_state: Option<Json>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Completed {
    pub success: Option<bool>,
    pub final_counts: Option<Json>,
    pub message: Option<String>,
    pub output_files: Option<Json>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failed {
    pub error: Option<String>,
    pub error_type: Option<String>,
    pub is_recoverable: Option<bool>,
    pub resume_state: Option<Json>,
    pub partial_counts: Option<Json>,
    pub stack_trace: Option<String>,
    pub context: Option<Json>,
}

/// `jobs_discovered`: the only payload in snake_case.
#[derive(Debug, Default, Deserialize)]
pub struct Discovered {
    #[serde(default)]
    pub discovered_jobs: Vec<Element<DiscoveredJob>>,
    pub discovery_summary: Option<Value>,
}

/// An array element that is either the expected object or anything else (`null`, a
/// number...), so one bad element never rejects a whole batch.
#[derive(Debug)]
pub enum Element<T> {
    Valid(T),
    Invalid,
}

impl<T> Element<T> {
    pub fn valid(&self) -> Option<&T> {
        match self {
            Element::Valid(t) => Some(t),
            Element::Invalid => None,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Element<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either<T> {
            Valid(T),
            Invalid(IgnoredAny),
        }
        Ok(match Either::deserialize(d)? {
            Either::Valid(t) => Element::Valid(t),
            Either::Invalid(_) => Element::Invalid,
        })
    }
}

/// One element of `discovered_jobs`. Fields are read leniently (a number where a
/// string belongs is accepted, anything else is `None`) so that one bad element is
/// dropped alone instead of failing the whole batch.
#[derive(Debug, Default, Deserialize)]
pub struct DiscoveredJob {
    #[serde(default, deserialize_with = "lenient_string")]
    pub job_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub entity_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub namespace_path: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub entity_name: Option<String>,
}

/// `discovery` (never sent by the current crawler): areas of one type.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryEntities {
    pub entity_type: Option<String>,
    #[serde(default)]
    pub entities: Vec<Element<DiscoveryEntity>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryEntity {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub path: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub parent_id: Option<String>,
}

fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Text(String),
        Number(serde_json::Number),
        Other(IgnoredAny),
    }
    Ok(match Loose::deserialize(d)? {
        Loose::Text(s) => Some(s),
        Loose::Number(n) => Some(n.to_string()),
        Loose::Other(_) => None,
    })
}

/// Why an object could not become a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, not an object, or no usable `type`: a framing-level problem.
    #[error("{0}")]
    Malformed(String),
    /// A `type` we do not know: ignored by design (spec §3).
    #[error("unknown message type '{0}'")]
    UnknownType(String),
    /// A known type whose fields are wrong.
    #[error("{kind}: {reason}")]
    Invalid { kind: String, reason: String },
}

/// The outer object. `data` stays raw text (borrowed from the input) so that the
/// payload is parsed once, straight into its typed struct: a 100k-entry discovery
/// never exists as a `serde_json::Value` tree.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: Option<Value>,
    timestamp: Option<Value>,
    #[serde(rename = "jobId")]
    job_id: Option<Value>,
    #[serde(borrow)]
    data: Option<&'a serde_json::value::RawValue>,
}

/// Parses one complete JSON object as received. Lone surrogate escapes (which
/// JavaScript writes) become U+FFFD first ([`super::surrogates`]).
pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
    let bytes = super::surrogates::repair(bytes);
    let envelope: Envelope = serde_json::from_slice(&bytes)
        .map_err(|e| ParseError::Malformed(format!("not a JSON object: {e}")))?;
    let kind = match envelope.kind {
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(ParseError::Malformed(format!(
                "'type' is {} instead of a string",
                json_kind(&other)
            )))
        }
        None => return Err(ParseError::Malformed("'type' is missing or null".into())),
    };
    let sent_at = match envelope.timestamp {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let invalid = |reason: String| ParseError::Invalid {
        kind: kind.clone(),
        reason,
    };
    let data = match envelope.data.map(|raw| raw.get()) {
        None | Some("null") => "{}",
        Some(raw) if raw.starts_with('{') => raw,
        Some(raw) => {
            let kind = serde_json::from_str::<Value>(raw).map_or("not JSON", |v| json_kind(&v));
            return Err(invalid(format!("'data' is {kind} instead of an object")));
        }
    };
    let job_id = || -> Result<String, ParseError> {
        match &envelope.job_id {
            Some(Value::String(id)) if id.is_empty() => Err(invalid("'jobId' is empty".into())),
            Some(Value::String(id)) if id.len() > MAX_JOB_ID_BYTES => Err(invalid(format!(
                "'jobId' is {} bytes, longer than any job id ({MAX_JOB_ID_BYTES})",
                id.len()
            ))),
            Some(Value::String(id)) => Ok(id.clone()),
            Some(other) => Err(invalid(format!(
                "'jobId' is {} instead of a string",
                json_kind(other)
            ))),
            None => Err(invalid("'jobId' is missing or null".into())),
        }
    };
    fn payload<T: serde::de::DeserializeOwned>(
        data: &str,
        invalid: impl Fn(String) -> ParseError,
    ) -> Result<T, ParseError> {
        serde_json::from_str(data).map_err(|e| invalid(format!("bad 'data': {e}")))
    }
    let body = match kind.as_str() {
        "job_request" => Inbound::JobRequest,
        "heartbeat" => Inbound::Heartbeat(payload(data, invalid)?),
        "job_started" => Inbound::JobStarted(job_id()?, payload(data, invalid)?),
        "job_progress" => Inbound::JobProgress(job_id()?, payload(data, invalid)?),
        "job_completed" => Inbound::JobCompleted(job_id()?, payload(data, invalid)?),
        "job_failed" => Inbound::JobFailed(job_id()?, payload(data, invalid)?),
        "jobs_discovered" => Inbound::JobsDiscovered(job_id()?, payload(data, invalid)?),
        "token_refresh_request" => Inbound::TokenRefreshRequest(match job_id() {
            Ok(id) => RefreshFor::Job(id),
            Err(e) => RefreshFor::Invalid {
                echo: match &envelope.job_id {
                    Some(Value::String(id)) if id.len() <= MAX_ECHOED_JOB_ID_BYTES => id.clone(),
                    _ => String::new(),
                },
                reason: e.to_string(),
            },
        }),
        "discovery" => Inbound::Discovery(payload(data, invalid)?),
        _ => return Err(ParseError::UnknownType(kind)),
    };
    Ok(Message { sent_at, body })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
