//! Lone UTF-16 surrogates in `\uXXXX` escapes, as JavaScript writes them.
//!
//! The crawler is JavaScript: `JSON.stringify` writes a lone surrogate (half of an
//! emoji cut by a truncated GitLab title, say) as `\ud800`. That is valid JSON text
//! but not valid Unicode, and serde_json rejects it, which would drop the whole
//! message. [`repair`] rewrites each unpaired `\uD800`-`\uDFFF` escape to `\uFFFD`
//! (the replacement character; the same six bytes, so nothing moves) and leaves
//! valid pairs and every other byte alone. It allocates only when it changes
//! something. It does not parse JSON: a `\` outside a string is invalid JSON anyway
//! and stays for the parser to reject.

use std::borrow::Cow;

const REPLACEMENT: &[u8; 4] = b"FFFD";

/// The value of the four hex digits at `at`, if there are four.
fn hex4(bytes: &[u8], at: usize) -> Option<u16> {
    let digits = bytes.get(at..at + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    u16::from_str_radix(text, 16).ok()
}

fn is_high(u: u16) -> bool {
    (0xD800..=0xDBFF).contains(&u)
}

fn is_low(u: u16) -> bool {
    (0xDC00..=0xDFFF).contains(&u)
}

/// `bytes` with every lone surrogate escape replaced by `\uFFFD`.
pub fn repair(bytes: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while let Some(offset) = memchr::memchr(b'\\', &bytes[i..]) {
        let at = i + offset;
        // Every escape is a backslash and one more byte; `\u` has four hex digits.
        if bytes.get(at + 1) != Some(&b'u') {
            i = at + 2;
            if i >= bytes.len() {
                break;
            }
            continue;
        }
        let Some(unit) = hex4(bytes, at + 2) else {
            i = at + 2;
            continue;
        };
        i = at + 6;
        if !(is_high(unit) || is_low(unit)) {
            continue;
        }
        if is_high(unit)
            && bytes.get(at + 6) == Some(&b'\\')
            && bytes.get(at + 7) == Some(&b'u')
            && hex4(bytes, at + 8).is_some_and(is_low)
        {
            i = at + 12; // a valid pair
            continue;
        }
        let buf = out.get_or_insert_with(|| bytes.to_vec());
        buf[at + 2..at + 6].copy_from_slice(REPLACEMENT);
    }
    match out {
        Some(v) => Cow::Owned(v),
        None => Cow::Borrowed(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::repair;
    use std::borrow::Cow;

    fn fixed(s: &str) -> String {
        String::from_utf8(repair(s.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn lone_halves_become_the_replacement_character() {
        assert_eq!(fixed(r#""a\ud800b""#), r#""a\uFFFDb""#);
        assert_eq!(fixed(r#""\uDC00""#), r#""\uFFFD""#);
        assert_eq!(fixed(r#""\ud800\ud800""#), r#""\uFFFD\uFFFD""#);
        assert_eq!(fixed(r#""\udc00\ud800""#), r#""\uFFFD\uFFFD""#);
        assert_eq!(fixed(r#""x\ud83d""#), r#""x\uFFFD""#);
    }

    #[test]
    fn pairs_and_other_escapes_are_untouched_and_not_copied() {
        for s in [
            r#""\ud83d\ude00""#,
            r#""\\ud800""#,
            r#""\u0041\n\"\\""#,
            r#""\u12"#,
            "\"\\",
            "plain",
        ] {
            assert!(matches!(repair(s.as_bytes()), Cow::Borrowed(_)), "{s}");
        }
        let v: String = serde_json::from_slice(&repair(br#""\ud83d\ude00\udc00""#)).unwrap();
        assert_eq!(v, "\u{1F600}\u{FFFD}");
    }
}
