//! With `--auth-disabled` (loopback development only) any web page the
//! developer visits could otherwise reach the server: a `/ws` upgrade or an
//! SSE stream is not protected by CORS, and DNS rebinding (a foreign name
//! that resolves to 127.0.0.1) makes the whole API same-origin for that page
//! (issue 16.14). In that mode this layer refuses, with 403:
//!
//! - a request whose `Host` is not a loopback name or address (`localhost`,
//!   `*.localhost`, `127.0.0.0/8`, `[::1]`) nor the host of one of
//!   `--cors-origins`, on every route;
//! - a request carrying an `Origin` that is not a loopback origin nor one of
//!   `--cors-origins` (browsers send it on every WebSocket upgrade, on
//!   cross-origin requests and on POSTs). Clients that send no `Origin`
//!   (curl, `ingestwatch tail`) are not browsers and pass.
//!
//! With authentication on the token decides and this layer is not installed.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::envelope;
use crate::state::AppState;

/// The host part of an authority (`name[:port]`, `[v6][:port]`), lowercased.
fn host_of(authority: &str) -> String {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        a.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(a, |(h, _)| h)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `scheme://authority` of an `Origin` value (`None` for `null` or junk).
fn origin_authority(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.split_once("://")?;
    matches!(scheme, "http" | "https").then_some(())?;
    Some(rest.trim_end_matches('/'))
}

fn allow_listed_origin(allowed: &[String], origin: &str) -> bool {
    let o = origin.trim().trim_end_matches('/');
    allowed
        .iter()
        .any(|a| a.trim().trim_end_matches('/').eq_ignore_ascii_case(o))
}

fn host_ok(allowed: &[String], host: &str) -> bool {
    let h = host_of(host);
    !h.is_empty()
        && (is_loopback_host(&h)
            || allowed
                .iter()
                .filter_map(|a| origin_authority(a.trim()))
                .any(|a| host_of(a) == h))
}

fn origin_ok(allowed: &[String], origin: &str) -> bool {
    allow_listed_origin(allowed, origin)
        || origin_authority(origin).is_some_and(|a| is_loopback_host(&host_of(a)))
}

fn refuse(code: &str, message: &str) -> Response {
    (StatusCode::FORBIDDEN, Json(envelope(code, message))).into_response()
}

/// The layer's function (installed by [`super::app`] only when auth is disabled).
pub async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let allowed = &st.options.auth.cors_origins;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if !host.is_some_and(|h| host_ok(allowed, h)) {
        return refuse(
            "forbidden_host",
            "authentication is disabled: only loopback host names are served",
        );
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        if !origin.to_str().is_ok_and(|o| origin_ok(allowed, o)) {
            return refuse(
                "forbidden_origin",
                "authentication is disabled: only loopback origins (or --cors-origins) may connect",
            );
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_origins() {
        let allowed = vec!["https://dev.example.test:5173".to_string()];
        for h in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "a.localhost",
            "[::1]:80",
            "dev.example.test",
        ] {
            assert!(host_ok(&allowed, h), "{h}");
        }
        for h in [
            "",
            "evil.example",
            "127.0.0.1.evil.example",
            "localhost.evil.example:80",
            "[::2]:80",
        ] {
            assert!(!host_ok(&allowed, h), "{h}");
        }
        for o in [
            "http://127.0.0.1:8080",
            "https://localhost",
            "http://[::1]:9",
            "https://dev.example.test:5173/",
        ] {
            assert!(origin_ok(&allowed, o), "{o}");
        }
        for o in [
            "null",
            "https://evil.example",
            "file://",
            "http://dev.example.test:5173",
            "ftp://localhost",
        ] {
            assert!(!origin_ok(&allowed, o), "{o}");
        }
    }
}
