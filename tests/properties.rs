//! Properties of the frame splitter and the reply encoder, over generated input.

use crawler_agent::protocol::encode::encode;
use crawler_agent::protocol::frame::{Frame, FrameDecoder};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Strings that stress both sides: braces, quotes, backslashes, control characters,
/// multi-byte and astral characters, U+2028.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z{}\\[\\]\"\\\\:,]{0,20}",
        any::<String>(),
        Just("}{\"\\u{2028}😀ü漢\n\t\0".to_string()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e300f64..1e300).prop_map(|f| json!(f)),
        nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((nasty_string(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn message() -> impl Strategy<Value = Value> {
    (nasty_string(), json_value()).prop_map(|(kind, data)| json!({"type": kind, "data": data}))
}

/// Splits `bytes` at the given (sorted, deduplicated) cut points.
fn chunks(bytes: &[u8], mut cuts: Vec<usize>) -> Vec<&[u8]> {
    cuts.retain(|c| *c < bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut last = 0;
    for c in cuts {
        out.push(&bytes[last..c]);
        last = c;
    }
    out.push(&bytes[last..]);
    out
}

/// The crawler's reply parser: per-chunk UTF-8 decoding, then brace counting that
/// knows nothing about strings.
fn crawler_split(chunks: &[&[u8]]) -> Vec<Value> {
    let mut buffer = String::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buffer.push_str(&String::from_utf8_lossy(chunk));
        while let Some(start) = buffer.find('{') {
            let mut depth = 0;
            let mut end = None;
            for (i, c) in buffer[start..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = Some(start + i + 1);
                    break;
                }
            }
            let Some(end) = end else { break };
            out.push(serde_json::from_str(&buffer[start..end]).expect("crawler parses the object"));
            buffer.drain(..end);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_chunking_of_valid_messages_yields_exactly_those_messages(
        messages in prop::collection::vec(message(), 1..8),
        separators in prop::collection::vec(prop_oneof![Just(""), Just("\n"), Just(" \r\n\t")], 8),
        cuts in prop::collection::vec(0usize..4096, 0..40),
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (m, sep) in messages.iter().zip(separators.iter().cycle()) {
            let bytes = serde_json::to_vec(m).unwrap();
            stream.extend_from_slice(&bytes);
            stream.extend_from_slice(sep.as_bytes());
            expected.push(bytes);
        }
        let mut decoder = FrameDecoder::new(1 << 20);
        let mut got = Vec::new();
        for chunk in chunks(&stream, cuts) {
            decoder.push(chunk);
            while let Some(frame) = decoder.next_frame() {
                match frame {
                    Frame::Object(bytes) => got.push(bytes.to_vec()),
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }
        }
        prop_assert_eq!(got, expected);
        prop_assert!(!decoder.is_mid_object());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_hold_more_than_the_cap(
        data in prop::collection::vec(any::<u8>(), 0..8192).prop_map(|v| {
            // Plenty of structural bytes, so objects open, close and break often.
            v.into_iter().map(|b| match b % 10 { 0 => b'{', 1 => b'}', 2 => b'"', 3 => b'\\', 4 => b'[', 5 => b':', _ => b }).collect::<Vec<u8>>()
        }),
        chunk in 1usize..512,
        cap in 16usize..1024,
    ) {
        let mut decoder = FrameDecoder::new(cap);
        for piece in data.chunks(chunk) {
            decoder.push(piece);
            while let Some(frame) = decoder.next_frame() {
                if let Frame::Object(bytes) = frame {
                    prop_assert!(bytes.len() <= cap);
                }
            }
            prop_assert!(decoder.buffered() <= cap + chunk, "{} held", decoder.buffered());
        }
    }

    #[test]
    fn every_encoded_reply_survives_the_crawlers_parser(
        values in prop::collection::vec(json_value(), 1..6),
        cuts in prop::collection::vec(0usize..4096, 0..40),
    ) {
        let replies: Vec<Value> = values.into_iter().map(|v| json!({"type": "job_response", "data": {"jobs": [v]}})).collect();
        let mut stream = Vec::new();
        for r in &replies {
            let bytes = encode(r);
            prop_assert!(bytes.is_ascii());
            prop_assert_eq!(bytes.last(), Some(&b'\n'));
            stream.extend(bytes);
        }
        let parsed = crawler_split(&chunks(&stream, cuts));
        prop_assert_eq!(parsed, replies);
    }
}
