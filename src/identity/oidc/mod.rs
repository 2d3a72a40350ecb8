//! OIDC token verification for certificate issuance: which configured issuer signed a token,
//! whether its claims hold, and who it names.
//!
//! Issuers come only from configuration (`[[oidc.issuers]]`); a token's `iss` merely selects one
//! by exact match and is never fetched from. Two kinds of token are accepted:
//! - JWT access tokens (`typ: at+jwt`, RFC 9068), verified with jsonwebtoken, the algorithm
//!   pinned by the issuer's `allowed_algs` and by the JWK's own `alg`;
//! - ID tokens (and workload tokens shaped like them: GitHub Actions, Kubernetes), verified with
//!   openidconnect's ID-token verifier.
//!
//! Both then pass the same claim checks (`claims`): exp/nbf/iat with 60 s leeway and a 10 minute
//! maximum age, audience (and `azp` when there are several), identity and groups. Replay
//! (`replay`) and proof of possession (`pop`) are separate steps the HTTP handler runs.
//! This module never logs a token.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJwsSigningAlgorithm};
use openidconnect::{ClientId, IssuerUrl, Nonce};
use serde_json::{Map, Value};

use crate::config::issuance::{IssuerConfig, IssuerKind};

pub mod claims;
pub mod jwks;
pub mod pop;
pub mod replay;

pub use claims::{Caller, LEEWAY_SECS, MAX_TOKEN_AGE_SECS};
pub use jwks::{JwksCache, JwksError, KeySet};
pub use pop::{check_key_type, sign_proof, verify_proof, ProofError, PROOF_NAMESPACE};
pub use replay::{replay_key, ReplayError, ReplayGuard};

/// Longest token accepted (real ones are 1-4 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token was refused. Messages name the check, never the token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    #[error("token is not a signed JWT (header.payload.signature)")]
    Malformed,
    #[error("token algorithm {0:?} is never accepted")]
    ForbiddenAlgorithm(String),
    #[error("token algorithm {0:?} is not allowed for this issuer")]
    AlgorithmNotAllowed(String),
    #[error("token issuer is not a configured issuer")]
    UntrustedIssuer,
    #[error("token names a signing key the issuer does not publish")]
    UnknownKey,
    #[error("token signature does not verify")]
    Signature,
    #[error("token audience does not include this service")]
    Audience,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued more than {MAX_TOKEN_AGE_SECS} s ago; get a fresh one")]
    TooOld,
    #[error("token claims: {0}")]
    Claims(String),
    #[error("{0}")]
    Policy(String),
    #[error("the issuer's keys are unavailable: {0}")]
    Unavailable(String),
}

impl TokenError {
    /// Whether the refusal is about *who* the token names (policy, 403) rather than whether it
    /// is a good token (401) or whether we could check it at all (503).
    pub fn is_policy(&self) -> bool {
        matches!(self, TokenError::Policy(_))
    }

    /// Whether the issuer could not be consulted.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, TokenError::Unavailable(_))
    }
}

/// A token that verified, and what it grants.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The issuer (`iss`).
    pub issuer: String,
    /// Identity, groups, jti, expiry.
    pub caller: Caller,
    /// Agent (no extensions) or human (permit-pty).
    pub kind: IssuerKind,
    /// Certificate lifetime for this issuer.
    pub ttl: Duration,
}

/// One configured issuer and its key cache.
#[derive(Debug)]
struct Issuer {
    /// Its configuration.
    config: IssuerConfig,
    /// Its keys.
    keys: JwksCache,
}

/// Verifies tokens from the configured issuers. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct OidcVerifier {
    /// Configured issuers, matched by exact `iss`.
    issuers: Vec<Arc<Issuer>>,
}

/// The parts of a JOSE header we read before choosing a verifier.
#[derive(Debug, serde::Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// The HTTP client used for discovery and JWKS: short timeouts, no redirects (a redirect
/// could point a fetch anywhere), rustls.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
        .build()
}

impl OidcVerifier {
    /// A verifier for these issuers; keys are fetched on first use or by [`OidcVerifier::warm_up`].
    pub fn new(configs: &[IssuerConfig], http: reqwest::Client) -> OidcVerifier {
        OidcVerifier {
            issuers: configs
                .iter()
                .map(|c| {
                    Arc::new(Issuer {
                        keys: JwksCache::new(&c.issuer, http.clone(), c.jwks_min_refresh),
                        config: c.clone(),
                    })
                })
                .collect(),
        }
    }

    /// Whether any issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// Installs keys for `issuer` as if fetched (tests, benches); false if it is not configured.
    pub fn install_keys(&self, issuer: &str, keys: KeySet) -> bool {
        match self.issuers.iter().find(|i| i.config.issuer == issuer) {
            Some(i) => {
                i.keys.install(keys);
                true
            }
            None => false,
        }
    }

    /// Fetches every issuer's discovery document and keys, logging failures (start-up).
    pub async fn warm_up(&self) {
        for issuer in &self.issuers {
            if let Err(err) = issuer.keys.refresh().await {
                tracing::warn!(issuer = %issuer.config.issuer, error = %err, "cannot fetch the issuer's keys yet");
            }
        }
    }

    /// Verifies `token` at unix time `now`.
    pub async fn verify(&self, token: &str, now: u64) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = decode_part(h)?;
        if header.alg.eq_ignore_ascii_case("none")
            || header.alg.to_ascii_uppercase().starts_with("HS")
        {
            return Err(TokenError::ForbiddenAlgorithm(header.alg));
        }
        // Unverified: only selects which configured issuer to verify against.
        let unverified: Map<String, Value> = decode_part(p)?;
        let iss = unverified
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(TokenError::UntrustedIssuer)?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.config.issuer == iss)
            .ok_or(TokenError::UntrustedIssuer)?;
        let config = &issuer.config;
        if !config.allowed_algs.contains(&header.alg) {
            return Err(TokenError::AlgorithmNotAllowed(header.alg));
        }
        let keys = issuer
            .keys
            .keys_for(header.kid.as_deref())
            .await
            .map_err(|e| TokenError::Unavailable(e.to_string()))?;
        if !keys.has(header.kid.as_deref()) {
            return Err(TokenError::UnknownKey);
        }
        let access_token = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if access_token {
            verify_access_token(token, &header, &keys, config)?;
        } else {
            verify_id_token(token, &keys, config, now)?;
        }
        // The signature holds: the payload decoded above is the verified one.
        claims::check_standard(&unverified, config, now)?;
        let caller = claims::caller(&unverified, config)?;
        Ok(VerifiedToken {
            issuer: config.issuer.clone(),
            caller,
            kind: config.kind,
            ttl: config.ttl,
        })
    }
}

/// RFC 9068 access token: jsonwebtoken with the algorithm the JWK and the issuer allow.
fn verify_access_token(
    token: &str,
    header: &Header,
    keys: &KeySet,
    config: &IssuerConfig,
) -> Result<(), TokenError> {
    use jsonwebtoken::errors::ErrorKind;
    let jwk = match &header.kid {
        Some(kid) => keys
            .jwt
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid)),
        None if keys.jwt.len() == 1 => keys.jwt.first(),
        None => None,
    }
    .ok_or(TokenError::UnknownKey)?;
    let alg: jsonwebtoken::Algorithm = header
        .alg
        .parse()
        .map_err(|_| TokenError::AlgorithmNotAllowed(header.alg.clone()))?;
    // The key's own alg, when published, must be the header's: a key is never used with an
    // algorithm its owner did not intend (RFC 7517 §4.4).
    if let Some(key_alg) = jwk.common.key_algorithm {
        if key_alg.to_string() != header.alg {
            return Err(TokenError::AlgorithmNotAllowed(header.alg.clone()));
        }
    }
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|_| TokenError::UnknownKey)?;
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.algorithms = vec![alg];
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_audience(&[&config.audience]);
    validation.set_issuer(&[&config.issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map(|_| ())
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidAudience => TokenError::Audience,
            ErrorKind::InvalidIssuer => TokenError::UntrustedIssuer,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                TokenError::AlgorithmNotAllowed(header.alg.clone())
            }
            ErrorKind::MissingRequiredClaim(c) => TokenError::Claims(format!("{c} is missing")),
            ErrorKind::InvalidSignature => TokenError::Signature,
            _ => TokenError::Signature,
        })
}

/// ID token (or a workload token shaped like one): openidconnect's verifier. Its exp check has
/// no leeway, so its clock runs `LEEWAY_SECS` behind; nbf and iat are checked by `claims`.
fn verify_id_token(
    token: &str,
    keys: &KeySet,
    config: &IssuerConfig,
    now: u64,
) -> Result<(), TokenError> {
    let id_token: CoreIdToken = serde_json::from_value(Value::String(token.to_string()))
        .map_err(|_| TokenError::Malformed)?;
    let algs = config.allowed_algs.iter().filter_map(|a| {
        serde_json::from_value::<CoreJwsSigningAlgorithm>(Value::String(a.clone())).ok()
    });
    let issuer_url =
        IssuerUrl::new(config.issuer.clone()).map_err(|_| TokenError::UntrustedIssuer)?;
    let clock = chrono::DateTime::from_timestamp(now.saturating_sub(LEEWAY_SECS) as i64, 0)
        .ok_or(TokenError::Expired)?;
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(config.audience.clone()),
        issuer_url,
        keys.oidc.clone(),
    )
    .set_allowed_algs(algs)
    // Extra audiences are judged by `claims` (azp must be an authorized party).
    .set_other_audience_verifier_fn(|_| true)
    .set_time_fn(move || clock);
    id_token
        .claims(&verifier, |_: Option<&Nonce>| Ok(()))
        .map(|_| ())
        .map_err(|e| {
            use openidconnect::ClaimsVerificationError as E;
            match e {
                E::Expired(_) => TokenError::Expired,
                E::InvalidAudience(_) => TokenError::Audience,
                E::InvalidIssuer(_) => TokenError::UntrustedIssuer,
                E::SignatureVerification(
                    openidconnect::SignatureVerificationError::NoMatchingKey,
                ) => TokenError::UnknownKey,
                E::SignatureVerification(
                    openidconnect::SignatureVerificationError::DisallowedAlg(_),
                ) => TokenError::AlgorithmNotAllowed("(from the token)".into()),
                E::SignatureVerification(_) => TokenError::Signature,
                _ => TokenError::Claims("ID token does not verify".into()),
            }
        })
}

#[cfg(test)]
mod tests;
