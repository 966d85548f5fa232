//! Unit tests of the frame splitter.
use super::*;

fn frames(decoder: &mut FrameDecoder) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(f) = decoder.next_frame() {
        out.push(match f {
            Frame::Object(b) => String::from_utf8(b.to_vec()).unwrap(),
            Frame::Oversized { bytes } => format!("<oversized {bytes}>"),
            Frame::Malformed { head, .. } => {
                format!("<malformed {}>", String::from_utf8_lossy(head))
            }
            Frame::Stray { bytes, first } => format!("<stray {bytes} {}>", first as char),
        });
    }
    out
}

fn split(input: &str) -> Vec<String> {
    let mut d = FrameDecoder::new(1 << 20);
    d.push(input.as_bytes());
    frames(&mut d)
}

#[test]
fn splits_concatenated_objects_with_braces_and_escapes_in_strings() {
    let input = r#"{"a":"}{"}{"b":"\"}\\"}  {"c":{"d":[1,{},-2.5e3,true,null,"]"]}}"#;
    assert_eq!(
        split(input),
        vec![
            r#"{"a":"}{"}"#,
            r#"{"b":"\"}\\"}"#,
            r#"{"c":{"d":[1,{},-2.5e3,true,null,"]"]}}"#
        ]
    );
}

#[test]
fn every_split_point_gives_the_same_objects() {
    let input = "{\"a\":\"x\\\\\"}\n{\"b\":\"ü{}\\\"\", \"n\": 12}{\"c\":[1, 2]}";
    for cut in 0..=input.len() {
        let mut d = FrameDecoder::new(1 << 20);
        d.push(&input.as_bytes()[..cut]);
        let mut got = frames(&mut d);
        d.push(&input.as_bytes()[cut..]);
        got.extend(frames(&mut d));
        assert_eq!(got.len(), 3, "cut at {cut}: {got:?}");
    }
}

#[test]
fn stray_bytes_are_reported_and_skipped() {
    assert_eq!(
        split("xyz{\"a\":1}]\n{\"b\":2}"),
        vec!["<stray 3 x>", "{\"a\":1}", "<stray 2 ]>", "{\"b\":2}"]
    );
}

#[test]
fn a_truncated_object_does_not_swallow_the_next_messages() {
    // Cut after a comma: the next `{` cannot be a key.
    assert_eq!(
        split(r#"{"a":1,{"ok":1}"#),
        vec![r#"<malformed {"a":1,>"#, r#"{"ok":1}"#]
    );
    // Cut after a value: the next message is absorbed no further than its end.
    assert_eq!(
        split(r#"{"a":{"lost":1}{"ok":2}"#),
        vec![r#"<malformed {"a":{"lost":1}>"#, r#"{"ok":2}"#]
    );
    // Cut inside a string: the string ends early, the bare word after it breaks.
    let got = split(r#"{"a":"cut{"type":"x","data":{}}{"type":"y"}"#);
    assert_eq!(got.last().unwrap(), r#"{"type":"y"}"#, "{got:?}");
    // A value where a colon belongs.
    assert_eq!(split(r#"{"a" 1}{"ok":3}"#).last().unwrap(), r#"{"ok":3}"#);
}

#[test]
fn nesting_is_bounded() {
    let deep = format!(
        "{{\"a\":{}{}}}{{\"ok\":1}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let got = split(&deep);
    assert!(got[0].starts_with("<malformed"));
    assert_eq!(got.last().unwrap(), "{\"ok\":1}");
}

#[test]
fn oversized_object_is_skipped_without_losing_sync() {
    let big = format!("{{\"a\":\"{}\"}}", "}".repeat(100));
    let mut d = FrameDecoder::new(32);
    let mut seen = Vec::new();
    for chunk in format!("{big}{{\"ok\":1}}").as_bytes().chunks(7) {
        d.push(chunk);
        seen.extend(frames(&mut d));
        assert!(d.buffered() <= 32 + 7);
    }
    assert_eq!(seen, vec!["<oversized 108>", "{\"ok\":1}"]);
}
