//! Tokens this server issues: HS256, for the `token` command, the demo and
//! tests (production tokens come from the identity provider).

use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

use super::path;
use crate::config::TokenClaims;

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
}
