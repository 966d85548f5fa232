//! Splits the crawler's byte stream into JSON objects.
//!
//! The crawler writes `JSON.stringify(msg)` back to back with no separator, and a read
//! may hold part of an object or several. The decoder keeps one byte buffer per
//! connection and follows the JSON grammar structurally (containers, keys, colons,
//! commas; strings with their `\` escapes; scalars as runs of bytes) without building
//! any value. That finds object boundaries exactly — `{`, `}` and quotes inside strings
//! are harmless — and it notices at once when bytes stop making sense as JSON, e.g. a
//! truncated object followed by the next message: the broken object is reported as
//! [`Frame::Malformed`] and scanning restarts at the offending byte, so the messages
//! after it survive. Byte-level scanning is safe for UTF-8: `"`, `\`, `{` and `}`
//! never occur inside a multi-byte sequence.
//!
//! Whitespace between objects is skipped (NDJSON works too); any other byte there is
//! reported as [`Frame::Stray`]. An object longer than the cap is dropped while still
//! being scanned, so framing stays in sync and memory stays bounded. Parsing the
//! object into a message is `message`'s job, not this one's.

use memchr::memchr2;

/// Nesting deeper than this is treated as malformed (serde_json stops at 128 anyway).
pub const MAX_DEPTH: usize = 512;

/// A buffer grown past this by a large message is shrunk again once it is consumed.
const SHRINK_ABOVE: usize = 1 << 20;

/// One thing found in the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete top-level object, exactly the bytes received.
    Object(&'a [u8]),
    /// An object longer than the cap was skipped; `bytes` is its full length.
    Oversized { bytes: u64 },
    /// Bytes that started an object but stopped being JSON; scanning resumed at the
    /// first byte that did not fit. `head` is the start of it (at most the cap).
    Malformed {
        head: &'a [u8],
        reason: &'static str,
    },
    /// A run of bytes outside any object that were neither whitespace nor `{`.
    Stray { bytes: u64, first: u8 },
}

/// What the grammar allows next, outside strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// After `{`: a key or `}`.
    KeyOrEnd,
    /// After `,` in an object.
    Key,
    /// After a key.
    Colon,
    /// After `:` or `,` in an array.
    Value,
    /// After `[`: a value or `]`.
    ValueOrEnd,
    /// After a value.
    CommaOrEnd,
}

#[derive(Debug)]
enum State {
    Between {
        stray: u64,
        first: u8,
    },
    InObject {
        /// `{` or `[` for each open container.
        stack: Vec<u8>,
        expect: Expect,
        in_string: bool,
        /// Inside a string, the previous byte was a backslash.
        escaped: bool,
        /// Inside a number or literal (`true`, `false`, `null`).
        in_scalar: bool,
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

enum Step {
    /// Keep scanning.
    More,
    /// The object closed with the byte just consumed.
    Done,
    /// The byte at `pos` does not fit the grammar.
    Broken(&'static str),
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
            // Give back the memory of a past large message.
            if self.buf.capacity() > SHRINK_ABOVE && self.buf.len() < SHRINK_ABOVE / 4 {
                self.buf.shrink_to(SHRINK_ABOVE / 4);
            }
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Memory this decoder holds for input (its buffer's capacity), for the agent's
    /// budget of unfinished input across connections.
    pub fn held(&self) -> usize {
        self.buf.capacity()
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
                    // Consume the opening brace here; the object scan starts after it.
                    self.pos += 1;
                    self.state = State::InObject {
                        stack: vec![b'{'],
                        expect: Expect::KeyOrEnd,
                        in_string: false,
                        escaped: false,
                        in_scalar: false,
                        discarded: None,
                    };
                }
                State::InObject { .. } => {
                    let step = self.scan_object();
                    let State::InObject { discarded, .. } = &mut self.state else {
                        unreachable!("scan_object keeps the state");
                    };
                    let dropped = *discarded;
                    match step {
                        Step::More => {
                            let held = self.pos - self.start;
                            if dropped.is_some() || held > self.max_object {
                                *discarded = Some(dropped.unwrap_or(0) + held as u64);
                                self.start = self.pos;
                            }
                            return None;
                        }
                        Step::Done => {
                            let (begin, end) = (self.start, self.pos);
                            self.start = end;
                            self.state = State::Between { stray: 0, first: 0 };
                            let len = (end - begin) as u64;
                            return Some(match dropped {
                                Some(d) => Frame::Oversized { bytes: d + len },
                                None if end - begin > self.max_object => {
                                    Frame::Oversized { bytes: len }
                                }
                                None => Frame::Object(&self.buf[begin..end]),
                            });
                        }
                        Step::Broken(reason) => {
                            // Resume at the byte that did not fit: it may be the `{`
                            // of the next message.
                            let (begin, end) = (self.start, self.pos);
                            self.start = end;
                            self.state = State::Between { stray: 0, first: 0 };
                            let head = &self.buf[begin..end.min(begin + self.max_object)];
                            return Some(Frame::Malformed { head, reason });
                        }
                    }
                }
            }
        }
    }

    /// Scans the current object from `pos` until it closes, breaks, or the buffer ends.
    fn scan_object(&mut self) -> Step {
        let State::InObject {
            stack,
            expect,
            in_string,
            escaped,
            in_scalar,
            ..
        } = &mut self.state
        else {
            return Step::More;
        };
        while self.pos < self.buf.len() {
            if *escaped {
                *escaped = false;
                self.pos += 1;
                continue;
            }
            if *in_string {
                match memchr2(b'"', b'\\', &self.buf[self.pos..]) {
                    None => self.pos = self.buf.len(),
                    Some(i) => {
                        let quote = self.buf[self.pos + i] == b'"';
                        self.pos += i + 1;
                        if quote {
                            *in_string = false;
                        } else {
                            *escaped = true;
                        }
                    }
                }
                continue;
            }
            let b = self.buf[self.pos];
            if *in_scalar {
                if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.') {
                    self.pos += 1;
                    continue;
                }
                *in_scalar = false;
            }
            if matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                self.pos += 1;
                continue;
            }
            let top = stack.last().copied().unwrap_or(b'{');
            let ok = match (*expect, b) {
                (Expect::KeyOrEnd | Expect::Key, b'"') => {
                    *in_string = true;
                    *expect = Expect::Colon;
                    true
                }
                (Expect::Colon, b':') => {
                    *expect = Expect::Value;
                    true
                }
                (Expect::Value | Expect::ValueOrEnd, b'{' | b'[') => {
                    if stack.len() >= MAX_DEPTH {
                        return Step::Broken("nested too deeply");
                    }
                    stack.push(b);
                    *expect = if b == b'{' {
                        Expect::KeyOrEnd
                    } else {
                        Expect::ValueOrEnd
                    };
                    true
                }
                (Expect::Value | Expect::ValueOrEnd, b'"') => {
                    *in_string = true;
                    *expect = Expect::CommaOrEnd;
                    true
                }
                (Expect::Value | Expect::ValueOrEnd, b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
                    *in_scalar = true;
                    *expect = Expect::CommaOrEnd;
                    true
                }
                (Expect::CommaOrEnd, b',') => {
                    *expect = if top == b'{' {
                        Expect::Key
                    } else {
                        Expect::Value
                    };
                    true
                }
                (Expect::CommaOrEnd | Expect::KeyOrEnd, b'}') if top == b'{' => {
                    stack.pop();
                    *expect = Expect::CommaOrEnd;
                    true
                }
                (Expect::CommaOrEnd | Expect::ValueOrEnd, b']') if top == b'[' => {
                    stack.pop();
                    *expect = Expect::CommaOrEnd;
                    true
                }
                _ => false,
            };
            if !ok {
                return Step::Broken(if b == b'{' {
                    "a new object began inside an unfinished one"
                } else {
                    "not valid JSON"
                });
            }
            self.pos += 1;
            if stack.is_empty() {
                return Step::Done;
            }
        }
        Step::More
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
