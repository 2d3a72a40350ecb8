//! Certificate issuance with the JWKS cached: token verification (signature + claims), proof of
//! possession and certificate signing — everything `POST /v1/certificates` does except the
//! provider round trip, the replay store's fsync and the audit log's fsync (disk-bound; see
//! the README for the end-to-end number). Target: p50 ≤ 5 ms.
//!
//! Run: `cargo bench --bench issuance`.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse::config::issuance::{IssuerConfig, IssuerKind};
use gatehouse::identity::ca::{unix_now, CertRequest, UserCa};
use gatehouse::identity::oidc::{http_client, sign_proof, verify_proof, KeySet, OidcVerifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::PrivateKey;
use serde_json::json;

const ISS: &str = "https://idp.bench";

fn bench(c: &mut Criterion) {
    let seed = [7u8; 32];
    let public = Ed25519Keypair::from_seed(&seed).public.0;
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap_or_default();
    der.extend_from_slice(&seed);
    let issuer = IssuerConfig {
        issuer: ISS.into(),
        audience: "gatehouse".into(),
        kind: IssuerKind::Agent,
        identity_claim: "sub".into(),
        identity_prefix: String::new(),
        groups_claim: Some("groups".into()),
        ttl: Duration::from_secs(600),
        allowed_algs: vec!["EdDSA".into()],
        authorized_parties: vec!["gatehouse".into()],
        jwks_min_refresh: Duration::from_secs(3600),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let verifier = OidcVerifier::new(&[issuer], http_client().unwrap());
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k", "alg": "EdDSA",
                                "x": URL_SAFE_NO_PAD.encode(public)}]});
    verifier.install_keys(ISS, KeySet::parse(jwks.to_string().as_bytes()).unwrap());
    let now = unix_now();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("k".into());
    header.typ = Some("at+jwt".into());
    let token = jsonwebtoken::encode(
        &header,
        &json!({"iss": ISS, "sub": "ci-runner", "aud": "gatehouse", "iat": now, "exp": now + 600,
                "jti": "bench", "groups": ["agents", "deploy"]}),
        &EncodingKey::from_ed_der(&der),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = UserCa::init(&dir.path().join("ca")).unwrap();
    let user = PrivateKey::from(Ed25519Keypair::from_seed(&[9u8; 32]));
    let proof = sign_proof(&user, token.as_bytes()).unwrap();

    c.bench_function(
        "issuance: verify token + proof + sign certificate (JWKS cached)",
        |b| {
            b.iter(|| {
                let verified = rt.block_on(verifier.verify(&token, now)).unwrap();
                verify_proof(user.public_key(), &proof, token.as_bytes()).unwrap();
                ca.issue(&CertRequest {
                    identity: verified.caller.identity,
                    groups: verified.caller.groups,
                    ttl: verified.ttl,
                    public_key: user.public_key().clone(),
                    permit_pty: false,
                })
                .unwrap()
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
