//! GitLab OAuth refresh: `POST {gitlab}/oauth/token` with `grant_type=refresh_token`.
//!
//! GitLab answers with a new access token, its lifetime and a new (rotated) refresh
//! token; the caller stores all three in one transaction before using them. Errors
//! are described by status and GitLab's `error`/`error_description`, never by echoing
//! the body, which could hold a token.

use crate::secret::Secret;
use crate::store::token_refreshes::Fetched;
use crate::time::Timestamp;
use std::time::{Duration, UNIX_EPOCH};

/// An HTTP client for token refreshes: system trust roots, a hard overall timeout.
pub fn client(timeout: Duration) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .tls_config(tls)
        .user_agent(concat!("crawler-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

pub struct Application<'a> {
    pub gitlab_url: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a Secret,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: Option<f64>,
    created_at: Option<f64>,
}

#[derive(serde::Deserialize)]
struct ErrorResponse {
    error: Option<String>,
    error_description: Option<String>,
}

/// Exchanges `refresh_token` for a new access token (and a rotated refresh token).
pub fn refresh(
    http: &ureq::Agent,
    app: &Application<'_>,
    refresh_token: &Secret,
) -> Result<Fetched, String> {
    let url = format!("{}/oauth/token", app.gitlab_url);
    // The request carries the refresh token and the client secret: never in clear
    // over a network, only to this machine.
    if !transport_allowed(&url) {
        return Err(format!(
            "{url}: refusing to send credentials over plain http:// to a host that is not loopback (use https://)"
        ));
    }
    // The secrets leave the process here, in the request GitLab needs.
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose()),
        ("client_id", app.client_id),
        ("client_secret", app.client_secret.expose()),
    ];
    let mut response = http.post(&url).send_form(form).map_err(|e| match e {
        ureq::Error::Timeout(_) => format!("{url}: no answer within the timeout"),
        other => format!("{url}: {}", describe(&other)),
    })?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .map_err(|e| format!("{url}: reading the answer failed: {}", describe(&e)))?;
    if !status.is_success() {
        let why = serde_json::from_str::<ErrorResponse>(&body)
            .ok()
            .map(|e| {
                let text = format!(
                    "{} {}",
                    e.error.unwrap_or_default(),
                    e.error_description.unwrap_or_default()
                );
                text.trim().chars().take(200).collect::<String>()
            })
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "no error description".into());
        return Err(format!("{url}: HTTP {}: {why}", status.as_u16()));
    }
    let parsed: TokenResponse = serde_json::from_str(&body).map_err(|e| {
        format!(
            "{url}: malformed token response (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    if parsed.access_token.is_empty() {
        return Err(format!(
            "{url}: the token response has an empty access_token"
        ));
    }
    let expires_at = expiry(parsed.expires_in, parsed.created_at, Timestamp::now())
        .map_err(|why| format!("{url}: the token response is not usable: {why}"))?;
    Ok(Fetched {
        access_token: Secret::new(parsed.access_token),
        expires_at,
        refresh_token: parsed
            .refresh_token
            .filter(|t| !t.is_empty())
            .map(Secret::new),
    })
}

/// The longest token lifetime believed (GitLab's default is 2 hours).
const MAX_EXPIRES_IN: f64 = 10.0 * 365.0 * 86_400.0;
/// `created_at` above this is in milliseconds (seconds would be past the year 5000).
const MILLIS_ABOVE: f64 = 1e11;
/// How far `created_at` may be from our clock: farther is not a time GitLab sends.
const MAX_SKEW: Duration = Duration::from_secs(10 * 365 * 86_400);

/// The expiry a token response gives: `created_at` (seconds or milliseconds since
/// 1970; absent: now) plus `expires_in` seconds. Values no GitLab sends (negative,
/// zero, not finite, a lifetime over ten years, a creation time more than ten years from
/// ours) are refused, never turned into a time that cannot be stored.
pub fn expiry(
    expires_in: Option<f64>,
    created_at: Option<f64>,
    now: Timestamp,
) -> Result<Option<Timestamp>, String> {
    let Some(secs) = expires_in else {
        return Ok(None);
    };
    if !secs.is_finite() || secs <= 0.0 || secs > MAX_EXPIRES_IN {
        return Err(format!(
            "expires_in {secs} is not between 0 and {MAX_EXPIRES_IN} seconds"
        ));
    }
    let issued = match created_at {
        None => now,
        Some(c) if c.is_finite() && c > 0.0 => {
            let secs_since_epoch = if c > MILLIS_ABOVE { c / 1000.0 } else { c };
            if secs_since_epoch > MILLIS_ABOVE {
                return Err(format!("created_at {c} is not a time"));
            }
            let t =
                Timestamp::from_system_time(UNIX_EPOCH + Duration::from_secs_f64(secs_since_epoch));
            if t < now.minus(MAX_SKEW) || t > now.plus(MAX_SKEW) {
                return Err(format!(
                    "created_at {t} is more than ten years from this machine's clock"
                ));
            }
            t
        }
        Some(c) => return Err(format!("created_at {c} is not a time")),
    };
    Ok(Some(issued.plus(Duration::from_secs_f64(secs))))
}

/// Whether credentials may be sent to `url`: https://, or http:// to a loopback host.
pub fn transport_allowed(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    if lower.starts_with("https://") {
        return true;
    }
    let Some(rest) = lower.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // No userinfo tricks: `http://127.0.0.1@evil.example/` goes to evil.example.
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An error's text without anything that could be a secret (no URLs with queries).
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => format!("connection failed: {io}"),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::Tls(t) => format!("TLS: {t}"),
        other => other.to_string().chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(transport_allowed("https://gitlab.example/oauth/token"));
        assert!(transport_allowed("http://127.0.0.1:8080/oauth/token"));
        assert!(transport_allowed("http://[::1]:80/oauth/token"));
        assert!(transport_allowed("http://localhost/oauth/token"));
        assert!(!transport_allowed("http://gitlab.example/oauth/token"));
        assert!(!transport_allowed(
            "http://127.0.0.1@gitlab.example/oauth/token"
        ));
        assert!(!transport_allowed(
            "http://127.0.0.1.evil.example/oauth/token"
        ));
        assert!(!transport_allowed("ftp://127.0.0.1/"));
    }

    #[test]
    fn created_at_in_seconds_or_milliseconds_and_absurd_values_refused() {
        let now = Timestamp::now();
        let secs = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let a = expiry(Some(7200.0), Some(secs), now).unwrap().unwrap();
        let b = expiry(Some(7200.0), Some(secs * 1000.0), now)
            .unwrap()
            .unwrap();
        assert!(a.plus(Duration::from_secs(1)) > b && b.plus(Duration::from_secs(1)) > a);
        for (e, c) in [
            (Some(-1.0), None),
            (Some(0.0), None),
            (Some(f64::NAN), None),
            (Some(f64::INFINITY), None),
            (Some(1e300), None),
            (Some(7200.0), Some(1e300)),
            (Some(7200.0), Some(-5.0)),
            (Some(7200.0), Some(1.0)),
            (Some(7200.0), Some(f64::MAX)),
        ] {
            assert!(expiry(e, c, now).is_err(), "{e:?} {c:?}");
        }
        assert_eq!(expiry(None, Some(1e300), now), Ok(None));
    }
}
