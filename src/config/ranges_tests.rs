//! Unit tests of the ranges table, the example file held to it included.
use super::*;

#[test]
fn every_default_is_inside_its_range() {
    for (key, bound, value) in table(&Config::default()) {
        assert_eq!(check(bound, value), None, "{key}");
    }
}

#[test]
fn the_edges_are_inclusive_and_one_step_outside_is_not() {
    let b = Bound::span(SEC, DAY);
    assert!(check(b, Value::Span(Span(SEC))).is_none());
    assert!(check(b, Value::Span(Span(DAY))).is_none());
    let below = check(b, Value::Span(Span(SEC - Duration::from_nanos(1)))).unwrap();
    assert!(below.contains("1s..=1d"), "{below}");
    assert!(check(b, Value::Span(Span(DAY + MS))).is_some());
    assert!(check(b, Value::Span(Span::NEVER))
        .unwrap()
        .contains("never"));
    let b = Bound::span_or_never(SEC, DAY);
    assert!(check(b, Value::Span(Span::NEVER)).is_none());
    let c = Bound::count(1, 16);
    assert!(check(c, Value::Count(0)).unwrap().contains("1..=16"));
    assert!(check(c, Value::Count(16)).is_none());
    assert!(check(c, Value::Count(u64::MAX)).is_some());
}

#[test]
fn compact_durations_read_back_as_the_same_value() {
    for d in [
        MS,
        100 * MS,
        SEC,
        90 * SEC,
        HOUR,
        3650 * DAY,
        Duration::from_nanos(1),
    ] {
        let text = compact(d);
        assert_eq!(crate::time::parse_duration(&text), Ok(d), "{text}");
    }
    assert_eq!(compact(3650 * DAY), "3650d");
}

#[test]
fn the_example_file_documents_every_range() {
    let text = include_str!("../../config.example.toml");
    let lines: Vec<&str> = text.lines().collect();
    for (key, bound, _) in table(&Config::default()) {
        let (section, name) = key.split_once('.').unwrap();
        let range = format!("Range {}.", bound.describe());
        let header = format!("[{section}]");
        let start = lines
            .iter()
            .position(|l| *l == header)
            .unwrap_or_else(|| panic!("no {header} in config.example.toml"));
        let at = start
            + lines[start..]
                .iter()
                .position(|l| l.starts_with(&format!("{name} =")))
                .unwrap_or_else(|| panic!("{key} is not in config.example.toml"));
        // The comment lines right above the key say its range.
        let comment: Vec<&str> = lines[..at]
            .iter()
            .rev()
            .take_while(|l| l.starts_with('#'))
            .copied()
            .collect();
        assert!(
            comment.iter().any(|l| l.contains(&range)),
            "config.example.toml does not say `{range}` right above {key}"
        );
    }
}
