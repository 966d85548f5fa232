//! Writes replies the way the crawler can read them (spec §2.2).
//!
//! The crawler decodes each read as UTF-8 on its own and then splits objects by
//! counting `{` and `}` without any notion of strings. So every reply is one compact
//! object followed by `\n`, with `{`, `}` and every non-ASCII character inside strings
//! written as `\uXXXX` escapes (surrogate pairs above U+FFFF). The escaping happens in
//! the serializer ([`CrawlerFormatter`]), never by editing text afterwards, so the
//! structural braces are untouched. `JSON.parse` turns the escapes back.

use crate::secret::Secret;
use crate::time::Timestamp;
use serde::Serialize;
use serde_json::Value;
use std::io;

/// A compact JSON formatter that escapes braces and non-ASCII inside strings.
pub struct CrawlerFormatter;

impl serde_json::ser::Formatter for CrawlerFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut plain = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() && c != '{' && c != '}' {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[plain..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            plain = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[plain..])
    }
}

/// Serialises one reply: compact, escaped, newline-terminated.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, CrawlerFormatter);
    // Our reply types are plain structs of strings, numbers and JSON values: they
    // cannot fail to serialise into memory.
    if message.serialize(&mut ser).is_err() {
        out.clear();
        out.extend_from_slice(b"{}");
    }
    out.push(b'\n');
    out
}

/// A job as handed to the crawler inside a `job_response`.
#[derive(Debug, Clone)]
pub struct OutboundJob {
    pub id: String,
    pub entity_type: String,
    pub entity_id: String,
    pub gitlab_url: String,
    pub access_token: Secret,
    pub resume_state: Option<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireJob<'a> {
    id: &'a str,
    entity_type: &'a str,
    entity_id: &'a str,
    gitlab_url: &'a str,
    access_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    resume_state: Option<&'a Value>,
}

#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    #[serde(rename = "jobId", skip_serializing_if = "Option::is_none")]
    job_id: Option<&'a str>,
    data: D,
}

/// `job_response`: `data.jobs` is always an array, possibly empty.
pub fn job_response(jobs: &[OutboundJob]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Data<'a> {
        jobs: Vec<WireJob<'a>>,
    }
    let jobs = jobs
        .iter()
        .map(|j| WireJob {
            id: &j.id,
            entity_type: &j.entity_type,
            entity_id: &j.entity_id,
            gitlab_url: &j.gitlab_url,
            // The token leaves the process here, inside the reply the crawler asked for.
            access_token: j.access_token.expose(),
            resume_state: j.resume_state.as_ref(),
        })
        .collect();
    encode(&Envelope {
        kind: "job_response",
        timestamp: Timestamp::now().to_string(),
        job_id: None,
        data: Data { jobs },
    })
}

/// The answer to a `token_refresh_request`. `token: None` is a refusal, which the
/// crawler recognises by the empty `accessToken`.
pub fn token_refresh_response(job_id: &str, token: Option<(&Secret, Timestamp)>) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Data<'a> {
        access_token: &'a str,
        refresh_successful: bool,
        expires_at: String,
    }
    let data = match token {
        // The token leaves the process here, in the reply to the crawler's request.
        Some((secret, expires)) => Data {
            access_token: secret.expose(),
            refresh_successful: true,
            expires_at: expires.to_string(),
        },
        None => Data {
            access_token: "",
            refresh_successful: false,
            expires_at: Timestamp::now().to_string(),
        },
    };
    encode(&Envelope {
        kind: "token_refresh_response",
        timestamp: Timestamp::now().to_string(),
        job_id: Some(job_id),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_and_non_ascii_are_escaped_only_inside_strings() {
        let v = serde_json::json!({"a": "x{y}z", "b": ["ü", "😀", "\u{2028}"], "c": {"d": 1}});
        let text = String::from_utf8(encode(&v)).unwrap();
        assert_eq!(
            text,
            "{\"a\":\"x\\u007by\\u007dz\",\"b\":[\"\\u00fc\",\"\\ud83d\\ude00\",\"\\u2028\"],\"c\":{\"d\":1}}\n"
        );
        assert!(text.is_ascii());
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn empty_job_response_has_an_array() {
        let text = String::from_utf8(job_response(&[])).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "job_response");
        assert_eq!(v["data"]["jobs"], serde_json::json!([]));
        assert!(v.get("jobId").is_none());
    }
}
