//! Splits the crawler's byte stream into JSON objects.
//!
//! The crawler writes `JSON.stringify(msg)` back to back with no separator, and a read
//! may hold part of an object or several. The decoder keeps one byte buffer per
//! connection and finds object boundaries by counting braces *outside strings*
//! (honouring `\` escapes), so `{`, `}` and quotes inside values are harmless. Byte-level
//! scanning is safe for UTF-8: `"`, `\`, `{` and `}` never occur inside a multi-byte
//! sequence. Whitespace between objects is skipped (NDJSON works too); any other byte
//! there is reported as stray. An object larger than the cap is dropped while still
//! being scanned, so framing stays in sync and memory stays bounded.
//!
//! It does not parse JSON: a complete object is handed out as raw bytes.

use memchr::{memchr2, memchr3};

/// One thing found in the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete top-level object, exactly the bytes received.
    Object(&'a [u8]),
    /// An object longer than the cap was skipped; `bytes` is its full length.
    Oversized { bytes: u64 },
    /// A run of bytes outside any object that were neither whitespace nor `{`.
    Stray { bytes: u64, first: u8 },
}

#[derive(Debug)]
enum State {
    Between {
        stray: u64,
        first: u8,
    },
    InObject {
        depth: u64,
        in_string: bool,
        escaped: bool,
        /// Bytes of this object already thrown away because it passed the cap.
        discarded: Option<u64>,
    },
}

#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// First byte not yet handed out or discarded.
    start: usize,
    /// Next byte to scan.
    pos: usize,
    state: State,
    max_object: usize,
}

impl FrameDecoder {
    pub fn new(max_object: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            pos: 0,
            state: State::Between { stray: 0, first: 0 },
            max_object,
        }
    }

    /// Appends bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.pos -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held for an object that is not complete yet.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The start of the incomplete object held, as text, at most `max` bytes.
    pub fn partial_sample(&self, max: usize) -> String {
        let held = &self.buf[self.start..];
        String::from_utf8_lossy(&held[..held.len().min(max)]).into_owned()
    }

    /// True when the stream ended in the middle of an object.
    pub fn is_mid_object(&self) -> bool {
        matches!(self.state, State::InObject { .. })
    }

    /// The next complete frame, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        loop {
            match &mut self.state {
                State::Between { stray, first } => {
                    while let Some(&b) = self.buf.get(self.pos) {
                        match b {
                            b' ' | b'\n' | b'\r' | b'\t' if *stray == 0 => self.pos += 1,
                            b'{' => break,
                            _ => {
                                if *stray == 0 {
                                    *first = b;
                                }
                                *stray += 1;
                                self.pos += 1;
                            }
                        }
                    }
                    self.start = self.pos;
                    if *stray > 0 {
                        let frame = Frame::Stray {
                            bytes: *stray,
                            first: *first,
                        };
                        *stray = 0;
                        return Some(frame);
                    }
                    if self.pos == self.buf.len() {
                        return None;
                    }
                    self.state = State::InObject {
                        depth: 0,
                        in_string: false,
                        escaped: false,
                        discarded: None,
                    };
                }
                State::InObject {
                    depth,
                    in_string,
                    escaped,
                    discarded,
                } => {
                    let mut end = None;
                    while self.pos < self.buf.len() {
                        let rest = &self.buf[self.pos..];
                        if *escaped {
                            *escaped = false;
                            self.pos += 1;
                        } else if *in_string {
                            match memchr2(b'"', b'\\', rest) {
                                None => self.pos = self.buf.len(),
                                Some(i) => {
                                    self.pos += i + 1;
                                    if rest[i] == b'"' {
                                        *in_string = false;
                                    } else {
                                        *escaped = true;
                                    }
                                }
                            }
                        } else {
                            match memchr3(b'"', b'{', b'}', rest) {
                                None => self.pos = self.buf.len(),
                                Some(i) => {
                                    self.pos += i + 1;
                                    match rest[i] {
                                        b'"' => *in_string = true,
                                        b'{' => *depth += 1,
                                        _ => {
                                            *depth -= 1;
                                            if *depth == 0 {
                                                end = Some(self.pos);
                                                break;
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    let Some(end) = end else {
                        let held = self.pos - self.start;
                        if discarded.is_some() || held > self.max_object {
                            *discarded = Some(discarded.unwrap_or(0) + held as u64);
                            self.start = self.pos;
                        }
                        return None;
                    };
                    let begin = self.start;
                    self.start = end;
                    let dropped = discarded.take();
                    self.state = State::Between { stray: 0, first: 0 };
                    return Some(match dropped {
                        Some(d) => Frame::Oversized {
                            bytes: d + (end - begin) as u64,
                        },
                        None if end - begin > self.max_object => Frame::Oversized {
                            bytes: (end - begin) as u64,
                        },
                        None => Frame::Object(&self.buf[begin..end]),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(decoder: &mut FrameDecoder) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(f) = decoder.next_frame() {
            out.push(match f {
                Frame::Object(b) => String::from_utf8(b.to_vec()).unwrap(),
                Frame::Oversized { bytes } => format!("<oversized {bytes}>"),
                Frame::Stray { bytes, first } => format!("<stray {bytes} {}>", first as char),
            });
        }
        out
    }

    #[test]
    fn splits_concatenated_objects_with_braces_and_escapes_in_strings() {
        let input = r#"{"a":"}{"}{"b":"\"}\\"}  {"c":{"d":[1,{}]}}"#;
        let mut d = FrameDecoder::new(1 << 20);
        d.push(input.as_bytes());
        assert_eq!(
            frames(&mut d),
            vec![r#"{"a":"}{"}"#, r#"{"b":"\"}\\"}"#, r#"{"c":{"d":[1,{}]}}"#]
        );
        assert!(!d.is_mid_object());
    }

    #[test]
    fn every_split_point_gives_the_same_objects() {
        let input = "{\"a\":\"x\\\\\"}\n{\"b\":\"ü{}\\\"\"}{\"c\":1}";
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
        let mut d = FrameDecoder::new(1 << 20);
        d.push(b"xyz{\"a\":1}]\n{\"b\":2}");
        assert_eq!(
            frames(&mut d),
            vec!["<stray 3 x>", "{\"a\":1}", "<stray 2 ]>", "{\"b\":2}"]
        );
    }

    #[test]
    fn oversized_object_is_skipped_without_losing_sync() {
        let big = format!("{{\"a\":\"{}\"}}", "}".repeat(100));
        let mut d = FrameDecoder::new(32);
        for chunk in format!("{big}{{\"ok\":1}}").as_bytes().chunks(7) {
            d.push(chunk);
            for f in frames(&mut d) {
                assert!(f == "<oversized 108>" || f == "{\"ok\":1}", "{f}");
            }
            assert!(d.buffered() <= 32 + 7);
        }
    }
}
