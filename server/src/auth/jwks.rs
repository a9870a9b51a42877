//! A JSON Web Key Set fetched by URL: keys by `kid`, cached, re-fetched on
//! an unknown `kid` (at most every 10 s) so key rotation needs no restart,
//! and at least every 10 minutes otherwise.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::verify::{Key, EC, RSA};

/// The key set and when it was fetched.
pub(super) struct Jwks {
    pub(super) url: String,
    pub(super) http: reqwest::Client,
    pub(super) keys: RwLock<(HashMap<String, Key>, Option<Instant>)>,
    pub(super) fetch_lock: tokio::sync::Mutex<()>,
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

    pub(super) async fn key(&self, kid: &str) -> Option<Key> {
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
