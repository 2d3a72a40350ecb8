//! `POST /v1/certificates`: the request's path through the checks, each refusal answered with
//! its status and a JSON error, each outcome audited before the caller hears of it.
//!
//! Order: per-address limit → bearer token present → body (size, JSON, public key type) →
//! token (issuer, signature, claims) → proof of possession → per-identity limit → spend the
//! token → sign → audit → answer. The token is spent only once everything about the request
//! is known to be good, so a malformed retry does not burn it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use russh::keys::{HashAlg, PublicKey};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::limits::Refusal;
use super::{HttpState, Peer};
use crate::config::issuance::IssuerKind;
use crate::identity::ca::{unix_now, CertRequest, GROUP_PREFIX};
use crate::identity::oidc::{check_key_type, replay_key, verify_proof, ReplayError, TokenError};

/// The request body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateRequest {
    /// OpenSSH public key line of the key to certify.
    pub public_key: String,
    /// Armored SSHSIG by that key over the bearer token, namespace `gatehouse-certificate-request`.
    pub proof: String,
}

/// The 200 answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificateResponse {
    /// OpenSSH certificate line (`ssh-ed25519-cert-v01@openssh.com AAAA... identity`).
    pub certificate: String,
    /// Key id and first principal.
    pub identity: String,
    /// All principals (identity, then `group:NAME`).
    pub principals: Vec<String>,
    /// Unix seconds.
    pub valid_after: u64,
    /// Unix seconds.
    pub valid_before: u64,
    /// Certificate serial (revocation, audit).
    pub serial: u64,
}

/// Every error answer: a stable code and a sentence; never the token or the body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable reason (`invalid_request`, `invalid_token`, `forbidden`, ...).
    pub error: String,
    /// What was wrong and what to do.
    pub message: String,
}

/// A refusal on its way out.
struct Refused {
    status: StatusCode,
    why: Refusal,
    code: &'static str,
    message: String,
    retry_after: Option<Duration>,
}

impl Refused {
    fn new(
        status: StatusCode,
        why: Refusal,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Refused {
            status,
            why,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(ErrorBody {
                error: self.code.to_string(),
                message: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(after) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

fn token_refusal(err: &TokenError) -> Refused {
    if err.is_policy() {
        Refused::new(
            StatusCode::FORBIDDEN,
            Refusal::Policy,
            "forbidden",
            err.to_string(),
        )
    } else if err.is_unavailable() {
        Refused::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Unavailable,
            "issuer_unavailable",
            err.to_string(),
        )
    } else {
        Refused::new(
            StatusCode::UNAUTHORIZED,
            Refusal::Token,
            "invalid_token",
            err.to_string(),
        )
    }
}

/// What the audit record of a refusal may say: only verified facts.
#[derive(Default)]
struct Known {
    iss: Option<String>,
    sub: Option<String>,
    jti: Option<String>,
    identity: Option<String>,
    fingerprint: Option<String>,
}

/// `GET /metrics`.
pub(super) async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// `POST /v1/certificates`.
pub(super) async fn issue(
    State(state): State<Arc<HttpState>>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut known = Known::default();
    match handle(&state, peer, &headers, body, &mut known).await {
        Ok(response) => response,
        Err(refused) => {
            state.metrics.refused(refused.why);
            let record = json!({
                "reason": refused.why.label(),
                "status": refused.status.as_u16(),
                "message": refused.message,
                "source": peer.ip().to_string(),
                "iss": known.iss,
                "sub": known.sub,
                "jti": known.jti,
                "identity": known.identity,
                "key_fingerprint": known.fingerprint,
            });
            tracing::info!(source = %peer.ip(), reason = refused.why.label(), status = refused.status.as_u16(), "certificate request refused");
            // Rate-limited requests are not audited one by one: a flood would become an fsync flood.
            if refused.why != Refusal::RateLimited {
                let audit = state.audit.clone();
                let result =
                    tokio::task::spawn_blocking(move || audit.append("cert.refused", record)).await;
                if let Ok(Err(err)) = result {
                    tracing::error!(error = %err, "cannot audit a refused certificate request");
                }
            }
            refused.into_response()
        }
    }
}

async fn handle(
    state: &HttpState,
    peer: std::net::SocketAddr,
    headers: &HeaderMap,
    body: Body,
    known: &mut Known,
) -> Result<Response, Refused> {
    if let Err(after) = state.per_address.check(&peer.ip()) {
        let mut r = Refused::new(
            StatusCode::TOO_MANY_REQUESTS,
            Refusal::RateLimited,
            "rate_limited",
            "too many requests from this address; retry later",
        );
        r.retry_after = Some(after);
        return Err(r);
    }
    let token = bearer(headers)?;
    let limit = state.settings.max_body_bytes;
    let too_large = || {
        Refused::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::TooLarge,
            "too_large",
            format!("request body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    let request: CertificateRequest = serde_json::from_slice(&bytes).map_err(|e| {
        Refused::new(
            StatusCode::BAD_REQUEST,
            Refusal::Malformed,
            "invalid_request",
            format!(
                "body must be a JSON object {{\"public_key\": \"ssh-ed25519 AAAA...\", \"proof\": \"-----BEGIN SSH SIGNATURE-----...\"}} ({} at line {} column {})",
                match e.classify() {
                    serde_json::error::Category::Data => "wrong or missing fields",
                    serde_json::error::Category::Eof => "truncated",
                    _ => "not JSON",
                },
                e.line(),
                e.column()
            ),
        )
    })?;
    let malformed = |message: String| {
        Refused::new(
            StatusCode::BAD_REQUEST,
            Refusal::Malformed,
            "invalid_request",
            message,
        )
    };
    let public_key = PublicKey::from_openssh(request.public_key.trim())
        .map_err(|_| malformed("public_key is not an OpenSSH public key line".into()))?;
    known.fingerprint = Some(public_key.fingerprint(HashAlg::Sha256).to_string());
    check_key_type(&public_key).map_err(|e| malformed(e.to_string()))?;

    let now = unix_now();
    let verified = state
        .oidc
        .verify(token, now)
        .await
        .map_err(|e| token_refusal(&e))?;
    known.iss = Some(verified.issuer.clone());
    known.sub = Some(verified.caller.subject.clone());
    known.jti = verified.caller.jti.clone();
    known.identity = Some(verified.caller.identity.clone());

    verify_proof(&public_key, &request.proof, token.as_bytes()).map_err(|e| {
        Refused::new(
            StatusCode::UNAUTHORIZED,
            Refusal::Proof,
            "invalid_proof",
            format!(
                "{e}; sign the exact token bytes: ssh-keygen -Y sign -n {} -f KEY",
                crate::identity::oidc::PROOF_NAMESPACE
            ),
        )
    })?;

    if let Err(after) = state.per_identity.check(&verified.caller.identity) {
        let mut r = Refused::new(
            StatusCode::TOO_MANY_REQUESTS,
            Refusal::RateLimited,
            "rate_limited",
            "too many certificates for this identity; retry later",
        );
        r.retry_after = Some(after);
        return Err(r);
    }

    let key = replay_key(&verified.issuer, verified.caller.jti.as_deref(), token);
    state
        .replay
        .spend(&key, verified.caller.expires_at, now)
        .await
        .map_err(|e| match e {
            ReplayError::Replayed => Refused::new(
                StatusCode::UNAUTHORIZED,
                Refusal::Replay,
                "invalid_token",
                "token already used: one certificate per token; get a fresh token",
            ),
            ReplayError::Store(_) => Refused::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                Refusal::Internal,
                "internal",
                "cannot record the token as used; nothing was issued",
            ),
        })?;

    let internal = |what: &str| {
        Refused::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Refusal::Internal,
            "internal",
            format!("{what}; nothing was issued"),
        )
    };
    let cert = state
        .ca
        .issue_at(
            &CertRequest {
                identity: verified.caller.identity.clone(),
                groups: verified.caller.groups.clone(),
                ttl: verified.ttl,
                public_key: public_key.clone(),
                permit_pty: verified.kind == IssuerKind::Human,
            },
            now,
        )
        .map_err(|e| {
            Refused::new(
                StatusCode::FORBIDDEN,
                Refusal::Policy,
                "forbidden",
                e.to_string(),
            )
        })?;
    let certificate = cert
        .to_openssh()
        .map_err(|_| internal("cannot encode the certificate"))?;
    let principals: Vec<String> = std::iter::once(verified.caller.identity.clone())
        .chain(
            verified
                .caller
                .groups
                .iter()
                .map(|g| format!("{GROUP_PREFIX}{g}")),
        )
        .collect();
    let response = CertificateResponse {
        certificate,
        identity: verified.caller.identity.clone(),
        principals,
        valid_after: cert.valid_after(),
        valid_before: cert.valid_before(),
        serial: cert.serial(),
    };
    let record = json!({
        "iss": verified.issuer,
        "sub": verified.caller.subject,
        "jti": verified.caller.jti,
        "identity": response.identity,
        "principals": response.principals,
        "serial": response.serial,
        "key_fingerprint": known.fingerprint,
        "valid_after": response.valid_after,
        "valid_before": response.valid_before,
        "issuer_kind": match verified.kind { IssuerKind::Agent => "agent", IssuerKind::Human => "human" },
        "source": peer.ip().to_string(),
    });
    let audit = state.audit.clone();
    match tokio::task::spawn_blocking(move || audit.append("cert.issued", record)).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            tracing::error!(error = %err, "cannot audit an issued certificate; withholding it");
            return Err(internal("cannot write the audit record"));
        }
        Err(_) => return Err(internal("cannot write the audit record")),
    }
    state.metrics.issued();
    tracing::info!(identity = %response.identity, serial = response.serial, source = %peer.ip(), "certificate issued");
    Ok((StatusCode::OK, axum::Json(response)).into_response())
}

/// The bearer token from `Authorization: Bearer ...` (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Result<&str, Refused> {
    let missing = || {
        Refused::new(
            StatusCode::UNAUTHORIZED,
            Refusal::Token,
            "invalid_token",
            "missing Authorization: Bearer <OIDC token>",
        )
    };
    let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}
