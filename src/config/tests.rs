//! The layering and its messages, seen from outside: precedence, where each value came
//! from, errors that name key and source, and the example file against the defaults.

use super::load::{as_table, keys_of};
use super::*;
use std::io::Write;
use std::path::PathBuf;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("HOME".to_string(), "/home/test".to_string())])
        .collect();
    move |k| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    }
}

fn file_with(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn defaults_need_no_file() {
    let loaded = load(&Flags::default(), &env_of(&[])).unwrap();
    assert_eq!(loaded.config, Config::default());
    assert!(loaded.database.ends_with("agent.db"));
    assert_eq!(
        loaded.source("dispatch.jobs_per_response"),
        &Source::Default
    );
}

#[test]
fn precedence_is_default_file_env_flag() {
    let f = file_with("[dispatch]\njobs_per_response = 2\n[socket]\npath = \"/tmp/f.sock\"\n[retry]\nmax_attempts = 5\n");
    let flags = Flags {
        config: Some(f.path().into()),
        socket: Some("/tmp/flag.sock".into()),
        ..Flags::default()
    };
    let env = env_of(&[
        ("CRAWLER_AGENT_DISPATCH_JOBS_PER_RESPONSE", "4"),
        ("SOCKET_PATH", "/tmp/env.sock"),
    ]);
    let loaded = load(&flags, &env).unwrap();
    assert_eq!(loaded.config.dispatch.jobs_per_response, 4);
    assert_eq!(loaded.config.retry.max_attempts, 5);
    assert_eq!(loaded.socket, PathBuf::from("/tmp/flag.sock"));
    assert_eq!(
        loaded.source("retry.max_attempts"),
        &Source::File(f.path().into())
    );
    assert_eq!(
        loaded.source("dispatch.jobs_per_response"),
        &Source::Env("CRAWLER_AGENT_DISPATCH_JOBS_PER_RESPONSE".into())
    );
}

#[test]
fn crawler_socket_path_is_honoured_below_our_own_variable() {
    let loaded = load(
        &Flags::default(),
        &env_of(&[("SOCKET_PATH", "/tmp/c.sock")]),
    )
    .unwrap();
    assert_eq!(loaded.socket, PathBuf::from("/tmp/c.sock"));
    let both = env_of(&[
        ("SOCKET_PATH", "/tmp/c.sock"),
        ("CRAWLER_AGENT_SOCKET_PATH", "/tmp/a.sock"),
    ]);
    assert_eq!(
        load(&Flags::default(), &both).unwrap().socket,
        PathBuf::from("/tmp/a.sock")
    );
}

#[test]
fn unknown_keys_and_bad_values_name_key_and_file() {
    // The error of loading a file with `text`, and the file's path.
    let file_error = |text: &str| {
        let f = file_with(text);
        let flags = Flags {
            config: Some(f.path().into()),
            ..Flags::default()
        };
        let err = load(&flags, &env_of(&[])).unwrap_err().to_string();
        (err, f.path().display().to_string())
    };
    let (err, path) = file_error("[dispatch]\njobs_per_respons = 2\n");
    assert!(
        err.contains("jobs_per_respons") && err.contains(&path),
        "{err}"
    );
    let (err, _) = file_error("[storage]\ndurability = \"sometimes\"\n");
    assert!(err.contains("durability"), "{err}");

    let err = load(
        &Flags::default(),
        &env_of(&[("CRAWLER_AGENT_RETRY_BACKOFF_BASE", "soon")]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("CRAWLER_AGENT_RETRY_BACKOFF_BASE"), "{err}");

    let err = load(
        &Flags::default(),
        &env_of(&[("CRAWLER_AGENT_SOCKET_MODE", "999")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("socket.mode") && err.contains("CRAWLER_AGENT_SOCKET_MODE"),
        "{err}"
    );
}

#[test]
fn example_file_matches_the_embedded_defaults() {
    let text = include_str!("../../config.example.toml");
    let parsed: Config = toml::from_str(text).unwrap();
    assert_eq!(parsed, Config::default());
    // and documents every key
    for (section, key, _) in keys_of(&as_table(&Config::default())) {
        assert!(
            text.contains(&format!("\n{key} =")) || text.contains(&format!("\n# {key} =")),
            "config.example.toml does not document {section}.{key}"
        );
    }
}

#[test]
fn durations_show_as_written_but_compare_canonically() {
    let entry = |loaded: &super::Loaded, as_written: bool| {
        let all = if as_written {
            loaded.entries_as_written()
        } else {
            loaded.entries()
        };
        all.into_iter()
            .find(|(k, _)| k == "retention.events_max_age")
            .map(|(_, v)| v)
            .unwrap()
    };
    let key = "CRAWLER_AGENT_RETENTION_EVENTS_MAX_AGE";
    let long = load(&Flags::default(), &env_of(&[(key, "90days")])).unwrap();
    let short = load(&Flags::default(), &env_of(&[(key, "90d")])).unwrap();
    assert_eq!(entry(&long, true), "\"90days\"");
    assert_eq!(entry(&short, true), "\"90d\"");
    // A reload that only rewrites the text is no change.
    assert_eq!(entry(&long, false), entry(&short, false));
    assert_eq!(entry(&long, false), "\"90d\"");
}
