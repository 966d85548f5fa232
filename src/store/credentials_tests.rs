//! Unit tests of the credentials store.
use super::normalize_url;

#[test]
fn urls_are_reduced_to_the_instance_base() {
    let ok = |u: &str| normalize_url(u).unwrap();
    assert_eq!(
        ok("https://gitlab.example.com/"),
        "https://gitlab.example.com"
    );
    assert_eq!(
        ok("https://gitlab.example.com/api/graphql"),
        "https://gitlab.example.com"
    );
    assert_eq!(ok("http://h:8080/gitlab/api/v4/"), "http://h:8080/gitlab");
    assert!(normalize_url("gitlab.example.com").is_err());
    assert!(normalize_url("ftp://x").is_err());
    assert!(normalize_url("https://").is_err());
    assert!(normalize_url("https://x/?a=1").is_err());
}
