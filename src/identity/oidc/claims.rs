//! Verified claims → who the caller is: time checks, audience, identity and groups.
//!
//! Runs on a payload whose signature already verified. Nothing here rewrites a value: a claim
//! that is not a valid identity or group name refuses the token (lowercasing `Alice` or
//! dropping a `,` would let two different callers share a name).

use serde_json::{Map, Value};

use crate::config::issuance::IssuerConfig;
use crate::identity::ca::{is_valid_name, MAX_PRINCIPALS};

use super::TokenError;

/// Clock skew tolerated on exp, nbf and iat.
pub const LEEWAY_SECS: u64 = 60;

/// Oldest token accepted (by `iat`): a token is spent minutes after it was issued.
pub const MAX_TOKEN_AGE_SECS: u64 = 600;

/// Longest `jti` remembered.
const MAX_JTI_LEN: usize = 256;

/// What the claims say, once checked.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `sub` (audit).
    pub subject: String,
    /// The certificate's identity (prefix + identity claim).
    pub identity: String,
    /// Group names (each becomes `group:NAME`).
    pub groups: Vec<String>,
    /// `jti`, when the token has one.
    pub jti: Option<String>,
    /// `exp`: the replay record is kept until then.
    pub expires_at: u64,
}

fn claim_str<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

fn claim_time(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| TokenError::Claims(format!("{name} is not a NumericDate"))),
    }
}

/// A claim by name, or by JSON pointer when the name starts with `/`.
fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(path) = name.strip_prefix('/') {
        let (first, rest) = path.split_once('/').unwrap_or((path, ""));
        let top = claims.get(first)?;
        if rest.is_empty() {
            Some(top)
        } else {
            top.pointer(&format!("/{rest}"))
        }
    } else {
        claims.get(name)
    }
}

/// Shortens a claim value for an error message (claims are not secret, but may be huge).
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(48).collect();
    if cut.len() < value.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// Time, audience and subject checks shared by ID tokens and access tokens.
pub fn check_standard(
    claims: &Map<String, Value>,
    issuer: &IssuerConfig,
    now: u64,
) -> Result<(), TokenError> {
    if claim_str(claims, "iss") != Some(issuer.issuer.as_str()) {
        return Err(TokenError::UntrustedIssuer);
    }
    let exp = claim_time(claims, "exp")?.ok_or(TokenError::Claims("exp is missing".into()))?;
    if now > exp.saturating_add(LEEWAY_SECS) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = claim_time(claims, "nbf")? {
        if nbf > now.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::NotYetValid);
        }
    }
    let iat = claim_time(claims, "iat")?.ok_or(TokenError::Claims("iat is missing".into()))?;
    if iat > now.saturating_add(LEEWAY_SECS) {
        return Err(TokenError::NotYetValid);
    }
    if now.saturating_sub(iat) > MAX_TOKEN_AGE_SECS + LEEWAY_SECS {
        return Err(TokenError::TooOld);
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => return Err(TokenError::Audience),
    };
    if !audiences.contains(&issuer.audience.as_str()) {
        return Err(TokenError::Audience);
    }
    // OpenID Connect Core §3.1.3.7 (4-5): with several audiences, azp names the party the token
    // was issued to; it must be one we trust.
    if audiences.len() > 1 {
        match claim_str(claims, "azp") {
            Some(azp) if issuer.authorized_parties.iter().any(|p| p == azp) => {}
            _ => return Err(TokenError::Audience),
        }
    }
    match claim_str(claims, "sub") {
        Some(sub) if !sub.is_empty() => Ok(()),
        _ => Err(TokenError::Claims("sub is missing".into())),
    }
}

/// Maps checked claims to the caller: identity, groups, jti.
pub fn caller(claims: &Map<String, Value>, issuer: &IssuerConfig) -> Result<Caller, TokenError> {
    let subject = claim_str(claims, "sub").unwrap_or_default().to_string();
    let claim = issuer.identity_claim.as_str();
    let value = match lookup(claims, claim) {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(TokenError::Policy(format!(
                "identity claim {claim:?} is not a string"
            )))
        }
        None => {
            return Err(TokenError::Policy(format!(
                "identity claim {claim:?} is missing"
            )))
        }
    };
    // An unverified address can be any address; only a provider-verified one names a person.
    if claim.trim_start_matches('/').ends_with("email")
        && claims.get("email_verified") != Some(&Value::Bool(true))
    {
        return Err(TokenError::Policy(
            "identity claim is an email address the provider has not verified (email_verified is not true)".into(),
        ));
    }
    let identity = format!("{}{value}", issuer.identity_prefix);
    if !is_valid_name(&identity) {
        return Err(TokenError::Policy(format!(
            "identity {} is not a valid name (^[a-z0-9_][a-z0-9._@-]{{0,63}}$); it is refused, never rewritten",
            shown(&identity)
        )));
    }
    let mut groups = Vec::new();
    if let Some(name) = &issuer.groups_claim {
        match lookup(claims, name) {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                if list.len() >= MAX_PRINCIPALS {
                    return Err(TokenError::Policy(format!(
                        "groups claim {name:?} has {} entries; a certificate carries at most {MAX_PRINCIPALS} principals",
                        list.len()
                    )));
                }
                for group in list {
                    let Some(group) = group.as_str() else {
                        return Err(TokenError::Policy(format!(
                            "groups claim {name:?} holds a non-string"
                        )));
                    };
                    if !is_valid_name(group) {
                        return Err(TokenError::Policy(format!(
                            "group {} is not a valid name (^[a-z0-9_][a-z0-9._@-]{{0,63}}$); it is refused, never rewritten",
                            shown(group)
                        )));
                    }
                    if !groups.iter().any(|g| g == group) {
                        groups.push(group.to_string());
                    }
                }
            }
            Some(_) => {
                return Err(TokenError::Policy(format!(
                    "groups claim {name:?} is not an array of strings"
                )))
            }
        }
    }
    let jti = match claims.get("jti") {
        None | Some(Value::Null) => None,
        Some(Value::String(j)) if !j.is_empty() && j.len() <= MAX_JTI_LEN => Some(j.clone()),
        Some(_) => return Err(TokenError::Claims("jti is not a short string".into())),
    };
    let expires_at = claim_time(claims, "exp")?.unwrap_or(0);
    Ok(Caller {
        subject,
        identity,
        groups,
        jti,
        expires_at,
    })
}
