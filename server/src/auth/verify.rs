//! The verifier: which keys accept which algorithms, the checks on `exp`,
//! `nbf`, `aud` and `iss`, and the claims read into a [`Principal`]. Each key
//! accepts only its own algorithm family (no algorithm confusion; `alg: none`
//! never parses). Tokens and secrets never appear in logs or error messages.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::jwks::Jwks;
use super::{path, unauthorized, Principal, Refusal, Role, MAX_TOKEN_BYTES};
use crate::config::AuthOptions;

pub(super) const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
pub(super) const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
pub(super) const EC: [Algorithm; 2] = [Algorithm::ES256, Algorithm::ES384];

#[derive(Clone)]
pub(super) struct Key {
    pub(super) key: DecodingKey,
    pub(super) algs: &'static [Algorithm],
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
        } else if o.jwt_audience.is_none() && o.jwt_issuer.is_none() {
            // Issue 16.16: fail-open is allowed (a dedicated HS256 secret is
            // enough on its own) but must not go unnoticed.
            tracing::warn!(
                "neither INGESTWATCH_JWT_AUDIENCE (--jwt-audience) nor INGESTWATCH_JWT_ISSUER \
                 (--jwt-issuer) is set: any token the key verifies is accepted, including tokens \
                 the identity provider issued for any application; set one or both"
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
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let exp = check_times(&data.claims, self.leeway, now)?;
        let mut principal = self.principal(&data.claims)?;
        principal.expires_at = Some(exp);
        Ok(principal)
    }

    /// The principal `claims` name (its `expires_at` set by the caller).
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

/// Checks `exp` and `nbf` as NumericDates, fractions included (RFC 7519
/// §2): jsonwebtoken reads only integers and lets a fractional value through
/// unchecked, which made `exp: 1795690000.5` a token that never expires
/// (issue 16.9). Returns `exp` rounded down (the session's expiry).
fn check_times(claims: &Value, leeway: u64, now: f64) -> Result<i64, Refusal> {
    let num = |k: &str| match claims.get(k) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| unauthorized("malformed token")),
    };
    let leeway = leeway as f64;
    let exp = num("exp")?
        .ok_or_else(|| unauthorized("token lacks a required claim (exp, aud or iss)"))?;
    if exp < now - leeway {
        return Err(unauthorized("token expired"));
    }
    if num("nbf")?.is_some_and(|nbf| nbf > now + leeway) {
        return Err(unauthorized("token not yet valid"));
    }
    Ok(exp.floor() as i64)
}
