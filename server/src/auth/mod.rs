//! Authentication and authorization: JWT bearer tokens verified with
//! `jsonwebtoken` — an HS256 shared secret (Supabase), an RS256/ES256 public
//! key (PEM) and/or a JWKS URL (keys by `kid`, cached, re-fetched on an
//! unknown `kid` so key rotation needs no restart).
//!
//! Each key accepts only its own algorithm family, so an HS token signed with
//! the RSA public key as secret (algorithm confusion) fails, and `alg: none`
//! never parses. `exp` is required; `nbf`, `aud` and `iss` are checked with a
//! small leeway. A configurable claim path gives the role (`viewer` or
//! `operator`); an optional claim lists the sources the token may see.
//! Tokens and secrets never appear in logs or error messages.
//!
//! This file holds the caller as the rest of the server sees it
//! ([`Principal`], [`Role`]), where a token comes from, and the extractor;
//! [`scope`] holds the rule for which sources a principal sees, [`verify`]
//! the verifier, [`jwks`] the key set fetched by URL, [`mint`] the tokens
//! this server issues (the `token` command, the demo, tests).
//!
//! The extractor needs only the verifier: it takes an `Arc<Auth>` from any
//! state that provides one (`FromRef`), so this room does not know the
//! application state.

pub mod jwks;
pub mod mint;
pub mod scope;
pub mod verify;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;

pub use mint::{mint, parse_ttl};
pub use scope::Scope;
pub use verify::Auth;

use crate::error::AppError;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The `Sec-WebSocket-Protocol` value announcing a token: `bearer, <token>`.
pub const WS_PROTOCOL: &str = "bearer";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Live figures, lists, trends, error log.
    Viewer,
    /// Also raw JSON payloads and exports.
    Operator,
}

/// The verified caller.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Principal {
    /// `sub` claim.
    pub subject: String,
    /// Role.
    pub role: Role,
    /// Source names the token is limited to; `None` = all sources.
    pub sources: Option<BTreeSet<String>>,
    /// `exp` claim (epoch seconds), if any.
    pub expires_at: Option<i64>,
}

impl Principal {
    /// A principal that may do everything (auth disabled).
    pub fn unrestricted() -> Self {
        Principal {
            subject: "anonymous".into(),
            role: Role::Operator,
            sources: None,
            expires_at: None,
        }
    }

    /// The sources this principal may see.
    pub fn scope(&self) -> Scope<'_> {
        Scope::of(self.sources.as_ref())
    }

    /// May this principal see `source`?
    pub fn can_see(&self, source: &str) -> bool {
        self.scope().sees(source)
    }

    /// 403 unless operator.
    pub fn require_operator(&self) -> Result<(), AppError> {
        if self.role == Role::Operator {
            Ok(())
        } else {
            Err(AppError::Forbidden("this needs the operator role".into()))
        }
    }
}

/// Why a token was refused: `Unauthorized` (401 / close 4401) or
/// `Forbidden` (valid token without a role: 403 / close 4403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Missing, malformed, expired, badly signed…
    Unauthorized(String),
    /// Valid but without a usable role.
    Forbidden(String),
}

impl From<Refusal> for AppError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Unauthorized(m) => AppError::Unauthorized(m),
            Refusal::Forbidden(m) => AppError::Forbidden(m),
        }
    }
}

fn unauthorized(m: &str) -> Refusal {
    Refusal::Unauthorized(m.to_string())
}

/// A dotted claim path (`app_metadata.role`) as its keys.
fn path(s: &str) -> Vec<String> {
    s.split('.')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The bearer token of a request: `Authorization: Bearer …`, else (for
/// browsers, which cannot set headers on WebSockets and EventSource) the
/// `Sec-WebSocket-Protocol: bearer, <token>` header or `access_token` query.
pub fn token_from(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let mut parts = v.splitn(2, ' ');
        if parts
            .next()
            .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
        {
            return parts.next().map(|t| t.trim().to_string());
        }
        return Some(String::new()); // another scheme: treated as a bad token
    }
    if let Some(v) = headers
        .get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
    {
        let items: Vec<&str> = v.split(',').map(str::trim).collect();
        if let Some(i) = items
            .iter()
            .position(|p| p.eq_ignore_ascii_case(WS_PROTOCOL))
        {
            if let Some(t) = items.get(i + 1) {
                return Some((*t).to_string());
            }
        }
    }
    query.and_then(|q| {
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == "access_token").then(|| percent_decode(v))
        })
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%' && i + 2 < b.len())
            .then(|| {
                std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .flatten();
        match (hex, b[i]) {
            (Some(v), _) => {
                out.push(v);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, c) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl<S> FromRequestParts<S> for Principal
where
    Arc<Auth>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Arc::<Auth>::from_ref(state);
        if auth.disabled() {
            return Ok(Principal::unrestricted());
        }
        let token = token_from(&parts.headers, parts.uri.query())
            .ok_or_else(|| AppError::Unauthorized("a bearer token is required".into()))?;
        Ok(auth.verify(&token).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_header_protocol_or_query() {
        let mut h = HeaderMap::new();
        assert_eq!(
            token_from(&h, Some("a=1&access_token=abc%2Edef")),
            Some("abc.def".into())
        );
        h.insert(
            axum::http::header::SEC_WEBSOCKET_PROTOCOL,
            "bearer, tok".parse().expect("hv"),
        );
        assert_eq!(token_from(&h, None), Some("tok".into()));
        h.insert(
            axum::http::header::AUTHORIZATION,
            "Bearer xyz".parse().expect("hv"),
        );
        assert_eq!(token_from(&h, None), Some("xyz".into()));
        h.insert(
            axum::http::header::AUTHORIZATION,
            "Basic xyz".parse().expect("hv"),
        );
        assert_eq!(token_from(&h, None), Some(String::new()));
    }
}
