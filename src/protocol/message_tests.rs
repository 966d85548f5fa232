//! Unit tests of `protocol::message`: parsing the spec's examples and lenient fields.

use super::*;

/// Each of [`TYPE_NAMES`] parses to a message that gives that name back, so a
/// renamed or misspelt type fails here.
#[test]
fn type_names_are_the_names_of_the_parsed_types() {
    let names: Vec<&str> = TYPE_NAMES
        .iter()
        .map(|t| {
            let job = if *t == "job_request" || *t == "heartbeat" {
                ""
            } else {
                r#""jobId":"J","#
            };
            let text = format!(r#"{{"type":"{t}",{job}"data":{{}}}}"#);
            match parse(text.as_bytes()) {
                Ok(m) => m.body.type_name(),
                Err(e) => panic!("{t}: {e:?}"),
            }
        })
        .collect();
    assert_eq!(names, TYPE_NAMES);
}

#[test]
fn parses_the_spec_examples() {
    let m = parse(br#"{"type":"job_request","timestamp":"2025-07-12T10:20:00.001Z","data":{}}"#)
        .unwrap();
    assert!(matches!(m.body, Inbound::JobRequest));
    assert_eq!(m.sent_at.as_deref(), Some("2025-07-12T10:20:00.001Z"));

    let m = parse(br#"{"type":"heartbeat","timestamp":"x","data":{"activeJobs":0,"totalProcessed":0,"systemStatus":"idle","uptime":73.41,"memoryUsage":{"rss":1}}}"#).unwrap();
    let Inbound::Heartbeat(h) = m.body else {
        panic!()
    };
    assert_eq!(h.uptime, Some(73.41));

    let m = parse(br#"{"type":"jobs_discovered","jobId":"J","data":{"discovered_jobs":[{"job_type":"crawl_group","entity_id":412,"namespace_path":"a/b","entity_name":"B","priority":1},{"job_type":["x"]}],"discovery_summary":{"total_groups":1}}}"#).unwrap();
    let Inbound::JobsDiscovered(id, d) = m.body else {
        panic!()
    };
    assert_eq!(id, "J");
    assert_eq!(
        d.discovered_jobs[0].valid().unwrap().entity_id.as_deref(),
        Some("412")
    );
    assert_eq!(d.discovered_jobs[1].valid().unwrap().job_type, None);
}

#[test]
fn says_what_is_wrong() {
    assert_eq!(
        parse(b"{}").unwrap_err(),
        ParseError::Malformed("'type' is missing or null".into())
    );
    assert!(
        matches!(parse(br#"{"type":"nope","data":{}}"#), Err(ParseError::UnknownType(t)) if t == "nope")
    );
    let e = parse(br#"{"type":"job_failed","jobId":7,"data":{}}"#)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "job_failed: 'jobId' is a number instead of a string");
    let e =
        parse(br#"{"type":"job_progress","jobId":"J","data":{"processed":"many"}}"#).unwrap_err();
    assert!(matches!(e, ParseError::Invalid { .. }), "{e}");
    assert!(matches!(
        parse(b"{\"type\":1}"),
        Err(ParseError::Malformed(_))
    ));
}
