//! GitLab OAuth refresh: `POST {gitlab}/oauth/token` with `grant_type=refresh_token`.
//!
//! GitLab answers with a new access token, its lifetime and a new (rotated) refresh
//! token; the caller stores all three in one transaction before using them. Errors
//! are described by status and GitLab's `error`/`error_description`, never by echoing
//! the body, which could hold a token.

use crate::secret::Secret;
use crate::store::credentials::Fetched;
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
    let expires_at = parsed
        .expires_in
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|secs| {
            let issued = parsed
                .created_at
                .filter(|c| c.is_finite() && *c > 0.0)
                .map(|c| Timestamp::from_system_time(UNIX_EPOCH + Duration::from_secs_f64(c)))
                .unwrap_or_else(Timestamp::now);
            issued.plus(Duration::from_secs_f64(secs.min(1e9)))
        });
    Ok(Fetched {
        access_token: Secret::new(parsed.access_token),
        expires_at,
        refresh_token: parsed
            .refresh_token
            .filter(|t| !t.is_empty())
            .map(Secret::new),
    })
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
