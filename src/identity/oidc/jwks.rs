//! One issuer's signing keys: discovery, JWKS fetch and the cache in front of them.
//!
//! Keys are fetched from the *configured* issuer's discovery document, never from anything a
//! token says. A token naming an unknown `kid` triggers a refresh (a provider rotated its keys),
//! but at most one fetch runs at a time and fetches are spaced by `min_refresh`, so a flood of
//! forged `kid`s cannot turn gatehouse into a load generator against the provider.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openidconnect::core::{CoreJsonWebKey, CoreJsonWebKeySet, CoreProviderMetadata};

/// Largest discovery document or JWKS read (real ones are a few KiB).
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Why keys could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JwksError {
    #[error("cannot reach the issuer's {what}: {reason}")]
    Fetch { what: &'static str, reason: String },
    #[error("the issuer's {what} is not valid: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("the issuer's keys were fetched moments ago and failed; retry shortly")]
    Backoff,
}

/// A JWKS, parsed once for each verifier that reads it.
#[derive(Debug)]
pub struct KeySet {
    /// For `at+jwt` access tokens (jsonwebtoken).
    pub jwt: Vec<jsonwebtoken::jwk::Jwk>,
    /// For ID tokens (openidconnect).
    pub oidc: CoreJsonWebKeySet,
}

impl KeySet {
    /// Parses a JWKS, keeping each key that either library understands and skipping the rest
    /// (one exotic key must not take every other key down with it).
    pub fn parse(bytes: &[u8]) -> Result<KeySet, JwksError> {
        #[derive(serde::Deserialize)]
        struct Raw {
            keys: Vec<serde_json::Value>,
        }
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| JwksError::Invalid {
            what: "JWKS",
            reason: e.to_string(),
        })?;
        let mut jwt = Vec::new();
        let mut oidc = Vec::new();
        for key in raw.keys {
            // A private key in a public JWKS is a provider bug; never hold on to it. Symmetric
            // ("oct") and unknown key types are never signature keys for us.
            let kty = key.get("kty").and_then(serde_json::Value::as_str);
            if key.get("d").is_some() || !matches!(kty, Some("RSA" | "EC" | "OKP")) {
                continue;
            }
            if let Ok(k) = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(key.clone()) {
                jwt.push(k);
            }
            if let Ok(k) = serde_json::from_value::<CoreJsonWebKey>(key) {
                oidc.push(k);
            }
        }
        Ok(KeySet {
            jwt,
            oidc: CoreJsonWebKeySet::new(oidc),
        })
    }

    /// Whether a key with this id is present (`None`: any key at all).
    pub fn has(&self, kid: Option<&str>) -> bool {
        match kid {
            Some(kid) => self
                .jwt
                .iter()
                .any(|k| k.common.key_id.as_deref() == Some(kid)),
            None => !self.jwt.is_empty(),
        }
    }
}

/// The key cache of one issuer.
#[derive(Debug)]
pub struct JwksCache {
    /// The configured issuer; discovery lives under it and must name it exactly.
    issuer: String,
    /// Shared HTTP client (timeouts set, redirects off).
    http: reqwest::Client,
    /// Least time between two fetches.
    min_refresh: Duration,
    /// The keys in use; swapped whole on refresh so readers never wait on the network.
    current: RwLock<Option<Arc<KeySet>>>,
    /// Held while fetching: one fetch in flight. Holds the time of the last fetch and the
    /// JWKS address from discovery (fetched once; a refresh re-reads only the JWKS).
    fetch: tokio::sync::Mutex<FetchState>,
}

/// What the fetch lock guards.
#[derive(Debug, Default)]
struct FetchState {
    /// When the last fetch started, to space fetches.
    last: Option<Instant>,
    /// `jwks_uri` from discovery.
    jwks_uri: Option<String>,
}

impl JwksCache {
    /// An empty cache; nothing is fetched until keys are first needed (or [`JwksCache::refresh`]).
    pub fn new(issuer: &str, http: reqwest::Client, min_refresh: Duration) -> JwksCache {
        JwksCache {
            issuer: issuer.to_string(),
            http,
            min_refresh,
            current: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
        }
    }

    /// The cached keys, if any.
    pub fn cached(&self) -> Option<Arc<KeySet>> {
        self.current.read().ok().and_then(|k| k.clone())
    }

    /// Keys that should hold `kid`: the cached set when it does, else a refresh (spaced and
    /// single-flight). The returned set may still lack `kid`; the caller refuses the token then.
    pub async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<KeySet>, JwksError> {
        if let Some(keys) = self.cached() {
            if keys.has(kid) {
                return Ok(keys);
            }
        }
        let mut state = self.fetch.lock().await;
        // Someone else may have refreshed while we waited for the lock.
        let cached = self.cached();
        if let Some(keys) = &cached {
            if keys.has(kid) {
                return Ok(keys.clone());
            }
        }
        if state.last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return cached.ok_or(JwksError::Backoff);
        }
        state.last = Some(Instant::now());
        let keys = match self.fetch_keys(&mut state).await {
            Ok(keys) => Arc::new(keys),
            // The keys we hold are still good; the token's kid is simply not among them.
            Err(err) => match cached {
                Some(keys) => {
                    tracing::warn!(issuer = %self.issuer, error = %err, "JWKS refresh failed; keeping the cached keys");
                    return Ok(keys);
                }
                None => return Err(err),
            },
        };
        if let Ok(mut current) = self.current.write() {
            *current = Some(keys.clone());
        }
        tracing::info!(issuer = %self.issuer, keys = keys.jwt.len(), "fetched the issuer's JWKS");
        Ok(keys)
    }

    /// Puts `keys` in the cache as if fetched (tests, benches, and keys pinned out of band).
    pub fn install(&self, keys: KeySet) {
        if let Ok(mut current) = self.current.write() {
            *current = Some(Arc::new(keys));
        }
    }

    /// Fetches now (start-up warm-up), subject to the same spacing.
    pub async fn refresh(&self) -> Result<Arc<KeySet>, JwksError> {
        self.keys_for(Some("\0refresh")).await
    }

    async fn fetch_keys(&self, state: &mut FetchState) -> Result<KeySet, JwksError> {
        let jwks_uri = match &state.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let body = self.get(&url, "discovery document").await?;
                let metadata: CoreProviderMetadata =
                    serde_json::from_slice(&body).map_err(|e| JwksError::Invalid {
                        what: "discovery document",
                        reason: e.to_string(),
                    })?;
                // OpenID Connect Discovery 1.0 §4.3: the document must name the issuer exactly.
                if metadata.issuer().as_str() != self.issuer {
                    return Err(JwksError::Invalid {
                        what: "discovery document",
                        reason: format!(
                            "it names issuer {:?}, not the configured {:?}",
                            metadata.issuer().as_str(),
                            self.issuer
                        ),
                    });
                }
                let uri = metadata.jwks_uri().url().to_string();
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let body = self.get(&jwks_uri, "JWKS").await?;
        KeySet::parse(&body)
    }

    /// GET with a size limit.
    async fn get(&self, url: &str, what: &'static str) -> Result<Vec<u8>, JwksError> {
        let fetch = |reason: String| JwksError::Fetch { what, reason };
        let mut response = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| fetch(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fetch(format!("{url} answered {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fetch(e.to_string()))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(fetch(format!(
                    "{url} is larger than {MAX_DOCUMENT_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_skips_unknown_and_private_keys() {
        let jwks = br#"{"keys":[
            {"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"EdDSA"},
            {"kty":"OKP","crv":"Ed25519","kid":"p","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"},
            {"kty":"weird","kid":"w"}
        ]}"#;
        let keys = KeySet::parse(jwks).unwrap();
        assert!(keys.has(Some("a")));
        assert!(!keys.has(Some("p")));
        assert!(!keys.has(Some("w")));
        assert!(KeySet::parse(b"{}").is_err());
    }
}
