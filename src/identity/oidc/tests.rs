//! Verifier unit tests with keys installed directly (the provider round trip is tested in
//! tests/oidc_e2e.rs against a real OpenID provider).

use super::*;
use crate::config::issuance::IssuerKind;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header as JwtHeader};
use russh::keys::ssh_key::private::Ed25519Keypair;
use serde_json::json;

const ISS: &str = "https://idp.test";
const NOW: u64 = 1_800_000_000;

struct TestKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

fn test_key(seed: u8, kid: &str) -> TestKey {
    let pair = Ed25519Keypair::from_seed(&[seed; 32]);
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend_from_slice(&[seed; 32]);
    TestKey {
        kid: kid.to_string(),
        encoding: EncodingKey::from_ed_der(&der),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "use": "sig",
                    "x": URL_SAFE_NO_PAD.encode(pair.public.0)}),
    }
}

fn issuer() -> IssuerConfig {
    IssuerConfig {
        issuer: ISS.into(),
        audience: "https://gatehouse.test".into(),
        kind: IssuerKind::Agent,
        identity_claim: "sub".into(),
        identity_prefix: String::new(),
        groups_claim: Some("groups".into()),
        ttl: Duration::from_secs(600),
        allowed_algs: vec!["EdDSA".into()],
        authorized_parties: vec!["https://gatehouse.test".into()],
        jwks_min_refresh: Duration::from_secs(3600),
    }
}

fn verifier(keys: &[&TestKey]) -> OidcVerifier {
    let v = OidcVerifier::new(&[issuer()], http_client().unwrap());
    let jwks = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    assert!(v.install_keys(ISS, KeySet::parse(jwks.to_string().as_bytes()).unwrap()));
    v
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": "ci-runner", "aud": "https://gatehouse.test", "iat": NOW - 5,
           "exp": NOW + 300, "jti": "j-1", "groups": ["agents", "deploy"]})
}

fn sign(key: &TestKey, typ: &str, claims: &Value) -> String {
    let mut header = JwtHeader::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    header.typ = Some(typ.to_string());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

fn with(f: impl FnOnce(&mut Map<String, Value>)) -> Value {
    let mut c = claims();
    f(c.as_object_mut().unwrap());
    c
}

async fn refused(token: &str) -> TokenError {
    let k = test_key(1, "k1");
    verifier(&[&k]).verify(token, NOW).await.unwrap_err()
}

#[tokio::test]
async fn access_token_and_id_token_verify() {
    let k = test_key(1, "k1");
    let v = verifier(&[&k]);
    let ok = v.verify(&sign(&k, "at+jwt", &claims()), NOW).await.unwrap();
    assert_eq!(ok.caller.identity, "ci-runner");
    assert_eq!(ok.caller.groups, ["agents", "deploy"]);
    assert_eq!(ok.caller.jti.as_deref(), Some("j-1"));
    let id = v.verify(&sign(&k, "JWT", &claims()), NOW).await.unwrap();
    assert_eq!(id.caller.subject, "ci-runner");
}

#[tokio::test]
async fn hostile_tokens_refused() {
    let k = test_key(1, "k1");
    let t = |c: &Value| sign(&k, "at+jwt", c);
    assert!(matches!(
        refused(&t(&with(|c| {
            c.insert("exp".into(), json!(NOW - 61));
        })))
        .await,
        TokenError::Expired
    ));
    assert!(matches!(
        refused(&sign(
            &k,
            "JWT",
            &with(|c| {
                c.insert("exp".into(), json!(NOW - 61));
            })
        ))
        .await,
        TokenError::Expired
    ));
    assert!(matches!(
        refused(&t(&with(|c| {
            c.insert("nbf".into(), json!(NOW + 120));
        })))
        .await,
        TokenError::NotYetValid
    ));
    assert!(matches!(
        refused(&t(&with(|c| {
            c.insert("iat".into(), json!(NOW - 700));
        })))
        .await,
        TokenError::TooOld
    ));
    assert!(matches!(
        refused(&t(&with(|c| {
            c.insert("aud".into(), json!("other"));
        })))
        .await,
        TokenError::Audience
    ));
    assert!(matches!(
        refused(&t(&with(|c| {
            c.insert("aud".into(), json!(["https://gatehouse.test", "x"]));
        })))
        .await,
        TokenError::Audience
    ));
    assert!(matches!(
        refused(&t(&with(|c| {
            c.insert("iss".into(), json!("https://evil.test"));
        })))
        .await,
        TokenError::UntrustedIssuer
    ));
    // Impostor: same iss and kid, other key.
    let impostor = test_key(9, "k1");
    assert!(matches!(
        refused(&sign(&impostor, "at+jwt", &claims())).await,
        TokenError::Signature
    ));
    assert!(matches!(
        refused(&sign(&impostor, "JWT", &claims())).await,
        TokenError::Signature
    ));
    let unknown = test_key(9, "k9");
    assert!(matches!(
        refused(&sign(&unknown, "at+jwt", &claims())).await,
        TokenError::UnknownKey
    ));
    // alg none and HS256 with the public key as secret.
    let body = URL_SAFE_NO_PAD.encode(claims().to_string());
    let none = format!(
        "{}.{body}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#)
    );
    assert!(matches!(
        refused(&none).await,
        TokenError::ForbiddenAlgorithm(_)
    ));
    let mut hs = JwtHeader::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some("k1".into());
    let hs = jsonwebtoken::encode(
        &hs,
        &claims(),
        &EncodingKey::from_secret(k.jwk["x"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        refused(&hs).await,
        TokenError::ForbiddenAlgorithm(_)
    ));
    assert!(matches!(refused("a.b").await, TokenError::Malformed));
    assert!(matches!(
        refused(&"a".repeat(MAX_TOKEN_BYTES + 1)).await,
        TokenError::Malformed
    ));
}

#[tokio::test]
async fn principal_injection_refused_not_rewritten() {
    let k = test_key(1, "k1");
    for bad in [
        "a,b",
        "a\nb",
        "a\0b",
        "Agents",
        &"a".repeat(200),
        "",
        "group:x",
    ] {
        let groups = sign(
            &k,
            "at+jwt",
            &with(|c| {
                c.insert("groups".into(), json!([bad]));
            }),
        );
        assert!(refused(&groups).await.is_policy(), "group {bad:?}");
        let sub = sign(
            &k,
            "at+jwt",
            &with(|c| {
                c.insert("sub".into(), json!(bad));
            }),
        );
        let err = refused(&sub).await;
        assert!(
            err.is_policy() || matches!(err, TokenError::Claims(_)),
            "sub {bad:?}: {err}"
        );
    }
    let many: Vec<String> = (0..40).map(|i| format!("g{i}")).collect();
    assert!(refused(&sign(
        &k,
        "at+jwt",
        &with(|c| {
            c.insert("groups".into(), json!(many));
        })
    ))
    .await
    .is_policy());
}

#[tokio::test]
async fn email_identity_needs_verification() {
    let k = test_key(1, "k1");
    let mut cfg = issuer();
    cfg.identity_claim = "email".into();
    let v = OidcVerifier::new(&[cfg], http_client().unwrap());
    v.install_keys(
        ISS,
        KeySet::parse(json!({"keys": [k.jwk.clone()]}).to_string().as_bytes()).unwrap(),
    );
    let unverified = sign(
        &k,
        "at+jwt",
        &with(|c| {
            c.insert("email".into(), json!("a@example.com"));
        }),
    );
    assert!(v.verify(&unverified, NOW).await.unwrap_err().is_policy());
    let verified = sign(
        &k,
        "at+jwt",
        &with(|c| {
            c.insert("email".into(), json!("a@example.com"));
            c.insert("email_verified".into(), json!(true));
        }),
    );
    assert_eq!(
        v.verify(&verified, NOW).await.unwrap().caller.identity,
        "a@example.com"
    );
}
