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

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::Value;

use crate::config::{AuthOptions, TokenClaims};
use crate::error::AppError;
use crate::state::AppState;

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

    /// May this principal see `source`?
    pub fn can_see(&self, source: &str) -> bool {
        self.sources.as_ref().is_none_or(|s| s.contains(source))
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

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const EC: [Algorithm; 2] = [Algorithm::ES256, Algorithm::ES384];

#[derive(Clone)]
struct Key {
    key: DecodingKey,
    algs: &'static [Algorithm],
}

struct Jwks {
    url: String,
    http: reqwest::Client,
    keys: RwLock<(HashMap<String, Key>, Option<Instant>)>,
    fetch_lock: tokio::sync::Mutex<()>,
}

/// Refetch the JWKS at most this often on unknown `kid`s, and at least this often otherwise.
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(10);
const JWKS_MAX_AGE: Duration = Duration::from_secs(600);

impl Jwks {
    async fn fetch(&self) -> anyhow::Result<()> {
        let set: JwkSet = self
            .http
            .get(&self.url)
            .send()
            .await
            .context("fetching the JWKS")?
            .error_for_status()
            .context("fetching the JWKS")?
            .json()
            .await
            .context("parsing the JWKS")?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let algs: &'static [Algorithm] = match jwk.algorithm {
                AlgorithmParameters::RSA(_) => &RSA,
                AlgorithmParameters::EllipticCurve(_) => &EC,
                _ => continue, // symmetric keys are never published; other kinds unsupported
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, Key { key, algs });
            }
        }
        tracing::info!(keys = keys.len(), "JWKS loaded");
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = (keys, Some(Instant::now()));
        Ok(())
    }

    fn cached(&self, kid: &str) -> (Option<Key>, Option<Instant>) {
        let g = self.keys.read().unwrap_or_else(|e| e.into_inner());
        (g.0.get(kid).cloned(), g.1)
    }

    async fn key(&self, kid: &str) -> Option<Key> {
        let (key, fetched) = self.cached(kid);
        let age = fetched.map(|t| t.elapsed());
        let stale = age.is_none_or(|a| a > JWKS_MAX_AGE);
        let may_refetch = age.is_none_or(|a| a > JWKS_MIN_REFETCH);
        if key.is_some() && !stale {
            return key;
        }
        if may_refetch {
            let _guard = self.fetch_lock.lock().await;
            let (again, fetched_again) = self.cached(kid);
            if fetched_again == fetched {
                if let Err(e) = self.fetch().await {
                    tracing::warn!(error = %format!("{e:#}"), "JWKS refresh failed; keeping cached keys");
                }
            } else if again.is_some() {
                return again;
            }
            return self.cached(kid).0;
        }
        key
    }
}

/// The verifier (disabled, or with its keys).
pub struct Auth {
    disabled: bool,
    hmac: Option<Key>,
    pem: Option<Key>,
    jwks: Option<Jwks>,
    audience: Option<String>,
    issuer: Option<String>,
    role_claim: Vec<String>,
    sources_claim: Vec<String>,
    leeway: u64,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("disabled", &self.disabled)
            .field("hmac", &self.hmac.is_some())
            .field("pem", &self.pem.is_some())
            .field("jwks", &self.jwks.as_ref().map(|j| j.url.clone()))
            .finish_non_exhaustive()
    }
}

fn path(s: &str) -> Vec<String> {
    s.split('.')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Auth {
    /// Builds the verifier; refuses a configuration without any key unless
    /// auth is explicitly disabled (and then only on a loopback address).
    pub fn from_options(o: &AuthOptions, listen: std::net::SocketAddr) -> anyhow::Result<Auth> {
        let any_key = o.jwt_secret.is_some() || o.jwt_public_key.is_some() || o.jwks_url.is_some();
        if o.auth_disabled {
            if !listen.ip().is_loopback() {
                anyhow::bail!("--auth-disabled is refused on a non-loopback address ({listen})");
            }
            tracing::warn!("authentication is DISABLED (loopback only)");
        } else if !any_key {
            anyhow::bail!(
                "no JWT key configured: set INGESTWATCH_JWT_SECRET, INGESTWATCH_JWT_PUBLIC_KEY or \
                 INGESTWATCH_JWKS_URL (or --auth-disabled on a loopback address)"
            );
        }
        let hmac = match &o.jwt_secret {
            Some(s) if s.len() < 16 => {
                anyhow::bail!("INGESTWATCH_JWT_SECRET must be at least 16 bytes")
            }
            Some(s) => Some(Key {
                key: DecodingKey::from_secret(s.as_bytes()),
                algs: &HMAC,
            }),
            None => None,
        };
        let pem = match &o.jwt_public_key {
            Some(p) => {
                let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                if let Ok(key) = DecodingKey::from_rsa_pem(&bytes) {
                    Some(Key { key, algs: &RSA })
                } else if let Ok(key) = DecodingKey::from_ec_pem(&bytes) {
                    Some(Key { key, algs: &EC })
                } else {
                    anyhow::bail!("{} is not an RSA or EC public key in PEM", p.display());
                }
            }
            None => None,
        };
        let jwks = o.jwks_url.as_ref().map(|url| Jwks {
            url: url.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            keys: RwLock::new((HashMap::new(), None)),
            fetch_lock: tokio::sync::Mutex::new(()),
        });
        Ok(Auth {
            disabled: o.auth_disabled,
            hmac,
            pem,
            jwks,
            audience: o.jwt_audience.clone(),
            issuer: o.jwt_issuer.clone(),
            role_claim: path(&o.role_claim),
            sources_claim: path(&o.sources_claim),
            leeway: o.jwt_leeway_secs,
        })
    }

    /// True when every request is let through.
    pub fn disabled(&self) -> bool {
        self.disabled
    }

    /// Verifies a token.
    pub async fn verify(&self, token: &str) -> Result<Principal, Refusal> {
        if self.disabled {
            return Ok(Principal::unrestricted());
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(unauthorized("token too large"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| unauthorized("malformed token"))?;
        let key = match &header.kid {
            Some(kid) if self.jwks.is_some() => match self.jwks.as_ref() {
                Some(j) => j.key(kid).await,
                None => None,
            },
            _ => None,
        };
        let key = match key {
            Some(k) => k,
            None => [&self.hmac, &self.pem]
                .into_iter()
                .flatten()
                .find(|k| k.algs.contains(&header.alg))
                .cloned()
                .ok_or_else(|| {
                    if header.kid.is_some() && self.jwks.is_some() {
                        unauthorized("unknown key id")
                    } else {
                        unauthorized("token algorithm not accepted")
                    }
                })?,
        };
        if !key.algs.contains(&header.alg) {
            return Err(unauthorized("token algorithm not accepted"));
        }
        let mut v = Validation::new(header.alg);
        v.algorithms = key.algs.to_vec();
        v.leeway = self.leeway;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        match &self.audience {
            Some(a) => {
                v.set_audience(&[a]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        if let Some(i) = &self.issuer {
            v.set_issuer(&[i]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Value>(token, &key.key, &v).map_err(|e| {
            unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "token expired",
                ErrorKind::ImmatureSignature => "token not yet valid",
                ErrorKind::InvalidAudience => "token audience not accepted",
                ErrorKind::InvalidIssuer => "token issuer not accepted",
                ErrorKind::InvalidSignature => "token signature invalid",
                ErrorKind::MissingRequiredClaim(_) => {
                    "token lacks a required claim (exp, aud or iss)"
                }
                ErrorKind::InvalidAlgorithm => "token algorithm not accepted",
                _ => "malformed token",
            })
        })?;
        self.principal(&data.claims)
    }

    fn principal(&self, claims: &Value) -> Result<Principal, Refusal> {
        let lookup = |p: &[String]| p.iter().try_fold(claims, |v, k| v.get(k));
        let role = match lookup(&self.role_claim).and_then(Value::as_str) {
            Some("viewer") => Role::Viewer,
            Some("operator") => Role::Operator,
            _ => {
                return Err(Refusal::Forbidden(
                    "token carries no ingestwatch role (viewer or operator)".into(),
                ))
            }
        };
        let sources = match lookup(&self.sources_claim) {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            ),
            Some(_) => {
                return Err(Refusal::Forbidden(
                    "the sources claim must be a list of source names".into(),
                ))
            }
        };
        Ok(Principal {
            subject: claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(128)
                .collect(),
            role,
            sources,
            expires_at: claims.get("exp").and_then(Value::as_i64),
        })
    }
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

impl FromRequestParts<AppState> for Principal {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        if st.auth.disabled() {
            return Ok(Principal::unrestricted());
        }
        let token = token_from(&parts.headers, parts.uri.query())
            .ok_or_else(|| AppError::Unauthorized("a bearer token is required".into()))?;
        Ok(st.auth.verify(&token).await?)
    }
}

/// Parses a TTL like `90s`, `30m`, `8h`, `30d`.
pub fn parse_ttl(s: &str) -> anyhow::Result<Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().context("TTL must start with a number, e.g. 8h")?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3_600,
        "d" => n * 86_400,
        _ => anyhow::bail!("TTL unit must be s, m, h or d"),
    };
    anyhow::ensure!(secs > 0, "TTL must be positive");
    Ok(Duration::from_secs(secs))
}

/// Mints an HS256 token (the `token` command, the demo, tests).
pub fn mint(args: &TokenClaims) -> anyhow::Result<String> {
    let ttl = parse_ttl(&args.ttl)?;
    let now = chrono::Utc::now().timestamp();
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), Value::from(args.subject.clone()));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now + ttl.as_secs() as i64));
    if let Some(a) = &args.audience {
        claims.insert("aud".into(), Value::from(a.clone()));
    }
    if let Some(i) = &args.issuer {
        claims.insert("iss".into(), Value::from(i.clone()));
    }
    if !args.sources.is_empty() {
        claims.insert("sources".into(), Value::from(args.sources.clone()));
    }
    let mut claims = Value::Object(claims);
    // Put the role at its (possibly nested) claim path.
    let p = path(&args.role_claim);
    let mut slot = &mut claims;
    for (i, k) in p.iter().enumerate() {
        let last = i + 1 == p.len();
        let obj = slot
            .as_object_mut()
            .context("role claim path crosses a non-object")?;
        slot = obj.entry(k.clone()).or_insert_with(|| {
            if last {
                Value::Null
            } else {
                Value::Object(Default::default())
            }
        });
    }
    *slot = Value::from(args.role.clone());
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(args.jwt_secret.as_bytes()),
    )
    .context("signing the token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_parses_units() {
        assert_eq!(parse_ttl("90s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_ttl("8h").ok(), Some(Duration::from_secs(28_800)));
        assert!(parse_ttl("8w").is_err());
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("h").is_err());
    }

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
