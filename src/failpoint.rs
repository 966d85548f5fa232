//! Fault injection for the tests, compiled only into debug builds (`cfg(debug_assertions)`,
//! which `cargo test` always has and the release and packaged builds never have), so
//! the shipped binary has no way to be told to panic.
//!
//! `CRAWLER_AGENT_FAILPOINTS` lists `site=argument` pairs separated by `;`. Each site
//! says what its argument means: a writer operation's name (`writer-apply`), a marker
//! in a frame (`connection`), or a trigger file whose existence makes a process-wide
//! thread or task panic (`writer-thread`, `checkpointer`, `monitor`, `accept`), so a
//! test can first see the agent healthy and then pull the trigger. In a release build
//! every function here is an empty inline function.

/// The argument given to `site`, if it is armed.
#[cfg(debug_assertions)]
pub fn armed(site: &str) -> Option<&'static str> {
    use std::sync::OnceLock;
    static SITES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    SITES
        .get_or_init(|| {
            std::env::var("CRAWLER_AGENT_FAILPOINTS")
                .unwrap_or_default()
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .map(|(s, a)| (s.trim().to_string(), a.to_string()))
                .collect()
        })
        .iter()
        .find(|(s, _)| s == site)
        .map(|(_, a)| a.as_str())
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn armed(_site: &str) -> Option<&'static str> {
    None
}

/// Panics if `site` is armed with exactly `name`.
#[inline]
pub fn panic_if_named(site: &str, name: &str) {
    if armed(site) == Some(name) {
        panic!("failpoint {site}={name}");
    }
}

/// Panics if `site` is armed and `bytes` contain its argument.
#[inline]
pub fn panic_if_contains(site: &str, bytes: &[u8]) {
    if let Some(marker) = armed(site).filter(|m| !m.is_empty()) {
        if memchr::memmem::find(bytes, marker.as_bytes()).is_some() {
            panic!("failpoint {site}");
        }
    }
}

/// Panics if `site` is armed and its trigger file exists.
#[inline]
pub fn panic_if_triggered(site: &str) {
    if let Some(file) = armed(site) {
        if std::path::Path::new(file).exists() {
            panic!("failpoint {site}");
        }
    }
}
