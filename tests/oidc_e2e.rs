//! Certificate issuance end to end against a real OpenID provider (`oidc-provider` on
//! loopback, tests/idp/): tokens from the provider's client-credentials and device flows, the
//! hostile matrix of issue 4 (hostile tokens forged here with the provider's own key or other
//! keys), key rotation, and `gatehouse login` writing a certificate that `ssh-keygen -L` reads.
//!
//! The SSH leg runs against a real `gatehouse demo --oidc-issuer`: `gatehouse login` fetches a
//! certificate from the demo's own issuance endpoint, and OpenSSH's `ssh` uses that certificate
//! to run a command on the demo target through gatehouse.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gatehouse::audit::AuditLog;
use gatehouse::config::Config;
use gatehouse::http::{serve, CertificateResponse, HttpState};
use gatehouse::identity::ca::UserCa;
use gatehouse::identity::oidc::sign_proof;
use gatehouse::store::Store;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{Certificate, PrivateKey};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
const RESOURCE: &str = "https://gatehouse.test";
const CLIENT_SECRET: &str = "agent-ci-secret-0123456789";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An Ed25519 signing key: the provider's (written into its JWKS file) or an impostor's.
struct SigningKey {
    seed: [u8; 32],
    kid: String,
}

impl SigningKey {
    fn new(kid: &str) -> SigningKey {
        SigningKey {
            seed: rand::random(),
            kid: kid.to_string(),
        }
    }
    fn public(&self) -> [u8; 32] {
        Ed25519Keypair::from_seed(&self.seed).public.0
    }
    fn private_jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "alg": "EdDSA", "use": "sig",
               "x": URL_SAFE_NO_PAD.encode(self.public()), "d": URL_SAFE_NO_PAD.encode(self.seed)})
    }
    fn encoding(&self) -> EncodingKey {
        let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
        der.extend_from_slice(&self.seed);
        EncodingKey::from_ed_der(&der)
    }
    /// Signs `claims` as an access token (`typ: at+jwt`) with this key and kid.
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, claims, &self.encoding()).unwrap()
    }
}

/// The node OpenID provider.
struct Idp {
    child: Child,
    port: u16,
    /// Holds the provider's key file while it runs.
    _dir: tempfile::TempDir,
}

impl Idp {
    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(port: u16, key: &SigningKey) -> Idp {
        let idp_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp");
        assert!(
            idp_dir.join("node_modules/oidc-provider").is_dir(),
            "tests/idp/node_modules missing: run scripts/test, which runs `npm ci` there (needs node)"
        );
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys.json");
        std::fs::write(&keys, json!({"keys": [key.private_jwk()]}).to_string()).unwrap();
        let mut child = Command::new("node")
            .arg(idp_dir.join("server.js"))
            .arg(port.to_string())
            .arg(&keys)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node (the test command installs it)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("idp listening") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the OpenID provider did not start");
        Idp {
            child,
            port,
            _dir: dir,
        }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// gatehouse's issuance endpoint, in process, trusting the provider.
struct Gatehouse {
    url: String,
    state: Arc<HttpState>,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Gatehouse {
    async fn start(issuer_toml: &str) -> Gatehouse {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[server]\nssh_listen = \"127.0.0.1:1\"\nhttp_listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\n\
             [ca]\nprivate_key = \"ca/user_ca\"\n[vault]\nmaster_key_file = \"vault.key\"\n\
             [http]\nrequests_per_minute_per_address = 1000\ncertificates_per_minute_per_identity = 1000\n\
             {issuer_toml}"
        );
        let path = dir.path().join("gatehouse.toml");
        std::fs::write(&path, &text).unwrap();
        let config = Config::load(&path).unwrap();
        std::fs::create_dir_all(dir.path().join("ca")).unwrap();
        let ca = UserCa::init(&config.ca.private_key).unwrap();
        let audit = Arc::new(AuditLog::open(&dir.path().join("data/audit/audit.jsonl")).unwrap());
        let store = Store::open(&config.server.data_dir).unwrap();
        let state = Arc::new(HttpState::new(&config, ca, audit, &store).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(state.clone(), listener, async move {
            let _ = rx.await;
        }));
        Gatehouse {
            url,
            state,
            dir,
            stop: Some(tx),
        }
    }

    fn issued(&self) -> u64 {
        self.state.metrics().issued_count()
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data/audit/audit.jsonl")).unwrap_or_default()
    }

    fn ca_pub(&self) -> PathBuf {
        self.dir.path().join("ca/user_ca.pub")
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn agent_issuer(issuer: &str) -> String {
    format!(
        "[[oidc.issuers]]\nissuer = \"{issuer}\"\naudience = \"{RESOURCE}\"\nkind = \"agent\"\n\
         groups_claim = \"groups\"\nttl = \"10m\"\nallowed_algs = [\"EdDSA\"]\njwks_min_refresh = \"1s\"\n"
    )
}

fn user_key() -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&rand::random()))
}

/// POSTs a certificate request; returns status and JSON body.
async fn request(url: &str, token: &str, key: &PrivateKey, proof: Option<String>) -> (u16, Value) {
    let proof = proof.unwrap_or_else(|| sign_proof(key, token.as_bytes()).unwrap());
    let body = json!({"public_key": key.public_key().to_openssh().unwrap(), "proof": proof});
    post_raw(url, token, body.to_string().into_bytes()).await
}

async fn post_raw(url: &str, token: &str, body: Vec<u8>) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/certificates"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A client-credentials access token from the provider.
async fn provider_token(idp: &Idp, resource: &str) -> String {
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/token", idp.issuer()))
        .basic_auth("agent-ci", Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", resource),
            ("scope", "ssh"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_string()
}

fn claims(issuer: &str) -> Value {
    let now = now();
    json!({"iss": issuer, "sub": "forged-agent", "aud": RESOURCE, "iat": now, "exp": now + 300,
           "jti": format!("jti-{}", rand::random::<u64>()), "groups": ["agents"], "client_id": "agent-ci"})
}

fn with(issuer: &str, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut c = claims(issuer);
    f(c.as_object_mut().unwrap());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_tokens_issue_and_hostile_tokens_do_not() {
    let key = SigningKey::new("k1");
    let idp = Idp::start(free_port(), &key);
    let iss = idp.issuer();
    let gh = Gatehouse::start(&agent_issuer(&iss)).await;

    // A real client-credentials token: 200, a certificate ssh-keygen reads, signed by our CA.
    let token = provider_token(&idp, RESOURCE).await;
    let k = user_key();
    let (status, body) = request(&gh.url, &token, &k, None).await;
    assert_eq!(status, 200, "{body}");
    let answer: CertificateResponse = serde_json::from_value(body).unwrap();
    assert_eq!(answer.identity, "agent-ci");
    assert_eq!(answer.principals, ["agent-ci", "group:agents"]);
    assert!(answer.valid_before - answer.valid_after <= 15 * 60 + 60);
    let cert = Certificate::from_openssh(&answer.certificate).unwrap();
    assert!(cert.extensions().is_empty(), "agents get no extensions");
    let cert_file = gh.dir.path().join("agent-cert.pub");
    std::fs::write(&cert_file, format!("{}\n", answer.certificate)).unwrap();
    let listed = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&cert_file)
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(
        listed.contains("group:agents") && listed.contains("Key ID: \"agent-ci\""),
        "{listed}"
    );
    let ca_pub = std::fs::read_to_string(gh.ca_pub()).unwrap();
    let ca_key = russh::keys::PublicKey::from_openssh(ca_pub.trim()).unwrap();
    assert_eq!(
        cert.signature_key(),
        ca_key.key_data(),
        "signed by gatehouse's CA"
    );
    let audit = gh.audit();
    assert!(audit.contains("\"cert.issued\"") && audit.contains(&answer.serial.to_string()));
    assert!(
        !audit.contains(&token),
        "the token must never reach the audit log"
    );
    assert_eq!(gh.issued(), 1);

    // Replayed jti: the very same request again.
    let (status, body) = request(&gh.url, &token, &k, None).await;
    assert_eq!(status, 401, "replay: {body}");
    assert!(
        body["message"].as_str().unwrap().contains("already used"),
        "{body}"
    );

    // The hostile matrix. Each: the status, and nothing issued.
    let other = SigningKey::new("k1");
    let unknown_kid = SigningKey::new("not-published");
    let real = |c: &Value| key.sign(c);
    let hs256 = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        h.typ = Some("at+jwt".into());
        let public_jwk_x = URL_SAFE_NO_PAD.encode(key.public());
        jsonwebtoken::encode(
            &h,
            &claims(&iss),
            &EncodingKey::from_secret(public_jwk_x.as_bytes()),
        )
        .unwrap()
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(claims(&iss).to_string())
    );
    let wrong_audience = provider_token(&idp, "urn:gatehouse:other").await;
    let t = now();
    let cases: Vec<(&str, String, u16)> = vec![
        ("alg none", none, 401),
        ("HS256 keyed with the public key", hs256, 401),
        ("wrong audience (real provider token)", wrong_audience, 401),
        (
            "untrusted issuer",
            real(&with(&iss, |c| {
                c.insert("iss".into(), json!("http://127.0.0.1:9/evil"));
            })),
            401,
        ),
        (
            "impostor: same iss and kid, other key",
            other.sign(&claims(&iss)),
            401,
        ),
        (
            "expired",
            real(&with(&iss, |c| {
                c.insert("exp".into(), json!(t - 120));
                c.insert("iat".into(), json!(t - 400));
            })),
            401,
        ),
        (
            "nbf in the future",
            real(&with(&iss, |c| {
                c.insert("nbf".into(), json!(t + 600));
            })),
            401,
        ),
        (
            "iat too old",
            real(&with(&iss, |c| {
                c.insert("iat".into(), json!(t - 3600));
                c.insert("exp".into(), json!(t + 3600));
            })),
            401,
        ),
        ("unknown kid", unknown_kid.sign(&claims(&iss)), 401),
        (
            "group with comma",
            real(&with(&iss, |c| {
                c.insert("groups".into(), json!(["a,b"]));
            })),
            403,
        ),
        (
            "group with newline",
            real(&with(&iss, |c| {
                c.insert("groups".into(), json!(["a\nb"]));
            })),
            403,
        ),
        (
            "group with NUL",
            real(&with(&iss, |c| {
                c.insert("groups".into(), json!(["a\u{0}b"]));
            })),
            403,
        ),
        (
            "uppercase group",
            real(&with(&iss, |c| {
                c.insert("groups".into(), json!(["Agents"]));
            })),
            403,
        ),
        (
            "200-character group",
            real(&with(&iss, |c| {
                c.insert("groups".into(), json!(["a".repeat(200)]));
            })),
            403,
        ),
        (
            "identity with comma",
            real(&with(&iss, |c| {
                c.insert("sub".into(), json!("ci,root"));
            })),
            403,
        ),
        (
            "identity with newline",
            real(&with(&iss, |c| {
                c.insert("sub".into(), json!("ci\nroot"));
            })),
            403,
        ),
        (
            "uppercase identity",
            real(&with(&iss, |c| {
                c.insert("sub".into(), json!("Root"));
            })),
            403,
        ),
        (
            "200-character identity",
            real(&with(&iss, |c| {
                c.insert("sub".into(), json!("a".repeat(200)));
            })),
            403,
        ),
    ];
    for (name, token, expected) in &cases {
        let (status, body) = request(&gh.url, token, &user_key(), None).await;
        assert_eq!(status, *expected, "{name}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty(),
            "{name}: error says what was wrong: {body}"
        );
        assert!(
            !message.contains(token.as_str()) && !body.to_string().contains(token.as_str()),
            "{name}: echoed the token"
        );
        assert_eq!(gh.issued(), 1, "{name}: nothing issued");
    }

    // Replayed jti of a forged-but-valid token: first 200, then 401.
    let good = real(&claims(&iss));
    assert_eq!(request(&gh.url, &good, &user_key(), None).await.0, 200);
    assert_eq!(request(&gh.url, &good, &user_key(), None).await.0, 401);
    assert_eq!(gh.issued(), 2);

    // Proof by another key; proof over other bytes; proof in another namespace.
    let fresh = real(&claims(&iss));
    let k = user_key();
    let by_other = sign_proof(&user_key(), fresh.as_bytes()).unwrap();
    assert_eq!(request(&gh.url, &fresh, &k, Some(by_other)).await.0, 401);
    let other_bytes = sign_proof(&k, b"some other bytes").unwrap();
    assert_eq!(request(&gh.url, &fresh, &k, Some(other_bytes)).await.0, 401);
    // The failed proofs did not spend the token.
    assert_eq!(request(&gh.url, &fresh, &k, None).await.0, 200);
    assert_eq!(gh.issued(), 3);

    // Malformed JSON, unknown fields, a bad key line, an oversized body, no token.
    let fresh = real(&claims(&iss));
    for body in [&b"{not json"[..], br#"{"public_key": "x"}"#, br#"[1,2]"#] {
        let (status, answer) = post_raw(&gh.url, &fresh, body.to_vec()).await;
        assert_eq!(status, 400, "{answer}");
    }
    let (status, _) = request(
        &gh.url,
        &fresh,
        &user_key(),
        Some("-----BEGIN SSH SIGNATURE-----\n".into()),
    )
    .await;
    assert_eq!(status, 401);
    let (status, answer) = post_raw(&gh.url, &fresh, vec![b' '; 64 * 1024]).await;
    assert_eq!(status, 413, "{answer}");
    let (status, _) = post_raw(&gh.url, "", b"{}".to_vec()).await;
    assert_eq!(status, 401);
    assert_eq!(gh.issued(), 3);

    // Metrics count refusals by reason; the audit log has every refusal, never a token.
    let metrics = reqwest::get(format!("{}/metrics", gh.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gatehouse_certificates_issued_total 3"),
        "{metrics}"
    );
    assert!(metrics.contains("{reason=\"replay\"} 2"), "{metrics}");
    assert!(metrics.contains("{reason=\"policy\"} 9"), "{metrics}");
    // Dropped log lines are counted too (none here).
    assert!(
        metrics.contains("\ngatehouse_log_lines_dropped_total 0\n"),
        "{metrics}"
    );
    let audit = gh.audit();
    assert!(audit.matches("\"cert.refused\"").count() >= cases.len());
    for (_, token, _) in &cases {
        assert!(!audit.contains(token.as_str()));
    }
    assert_eq!(
        reqwest::get(format!("{}/healthz", gh.url))
            .await
            .unwrap()
            .status(),
        200
    );
    idp.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_refreshes_the_jwks() {
    let port = free_port();
    let first = SigningKey::new("first");
    let idp = Idp::start(port, &first);
    let iss = idp.issuer();
    let gh = Gatehouse::start(&agent_issuer(&iss)).await;
    let token = provider_token(&idp, RESOURCE).await;
    assert_eq!(request(&gh.url, &token, &user_key(), None).await.0, 200);
    idp.stop();

    // Restart the provider with a new key under a new kid: the first token from it names a kid
    // gatehouse has not seen, which triggers one JWKS refresh.
    let second = SigningKey::new("second");
    let idp = Idp::start(port, &second);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let token = provider_token(&idp, RESOURCE).await;
    let (status, body) = request(&gh.url, &token, &user_key(), None).await;
    assert_eq!(status, 200, "after rotation: {body}");
    // The old key is gone from the provider's JWKS: tokens under it no longer verify.
    let (status, _) = request(&gh.url, &first.sign(&claims(&iss)), &user_key(), None).await;
    assert_eq!(status, 401);
    assert_eq!(gh.issued(), 2);
    idp.stop();
}

fn login(gh: &Gatehouse, idp: &Idp, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "login",
        "--server",
        &gh.url,
        "--issuer",
        &idp.issuer(),
        "--out",
    ])
    .arg(out)
    .args(extra);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatehouse_login_client_credentials_and_device_flow() {
    let key = SigningKey::new("k1");
    let idp = Idp::start(free_port(), &key);
    let gh = Gatehouse::start(&agent_issuer(&idp.issuer())).await;

    // Agents: client credentials with a secret file.
    let secret = gh.dir.path().join("secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = gh.dir.path().join("agent");
    for round in 0..2 {
        let run = login(
            &gh,
            &idp,
            &out,
            &["--client-id", "agent-ci", "--client-secret-file"],
        )
        .arg(&secret)
        .args(["--resource", RESOURCE])
        .output()
        .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "round {round}: {stdout}{stderr}");
        assert!(stdout.contains("identity:   agent-ci"), "{stdout}");
        assert!(!stdout.contains(CLIENT_SECRET) && !stderr.contains(CLIENT_SECRET));
    }
    let listed = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(out.join("id_ed25519-cert.pub"))
        .output()
        .unwrap();
    assert!(listed.status.success());
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("group:agents"), "{listed}");
    use std::os::unix::fs::PermissionsExt;
    for (file, mode) in [("id_ed25519", 0o600), ("id_ed25519-cert.pub", 0o600)] {
        assert_eq!(
            std::fs::metadata(out.join(file))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            mode,
            "{file}"
        );
    }
    // The key and certificate belong together (ssh-keygen derives the same public key).
    let derived = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(out.join("id_ed25519"))
        .output()
        .unwrap();
    let cert = Certificate::read_file(&out.join("id_ed25519-cert.pub")).unwrap();
    let derived =
        russh::keys::PublicKey::from_openssh(String::from_utf8_lossy(&derived.stdout).trim())
            .unwrap();
    assert_eq!(derived.key_data(), cert.public_key());
    let snippet = std::fs::read_to_string(out.join("ssh_config")).unwrap();
    assert!(
        snippet.contains("CertificateFile") && snippet.contains("IdentityFile"),
        "{snippet}"
    );
    assert_eq!(gh.issued(), 2);

    // People: device flow against a gatehouse that trusts the provider's ID tokens for humans.
    let human = Gatehouse::start(&format!(
        "[[oidc.issuers]]\nissuer = \"{}\"\naudience = \"human-cli\"\nkind = \"human\"\n\
         identity_claim = \"email\"\ngroups_claim = \"groups\"\nallowed_algs = [\"EdDSA\"]\n",
        idp.issuer()
    ))
    .await;
    let out = human.dir.path().join("human");
    let mut child = login(
        &human,
        &idp,
        &out,
        &["--client-id", "human-cli", "--device"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let rest = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(code) = line.split("enter the code ").nth(1) {
                let _ = tx.send(code.trim().to_string());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let code = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("login printed the user code");
    let approved = reqwest::get(format!("{}/test/approve?user_code={code}", idp.issuer()))
        .await
        .unwrap();
    assert_eq!(approved.status(), 200, "{}", approved.text().await.unwrap());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = rest.join().unwrap();
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("identity:   alice@example.com"), "{stdout}");
    assert!(stdout.contains("group:humans"), "{stdout}");
    let cert = Certificate::read_file(&out.join("id_ed25519-cert.pub")).unwrap();
    assert!(
        cert.extensions().contains_key("permit-pty"),
        "humans get permit-pty"
    );
    assert_eq!(cert.extensions().len(), 1, "and nothing else");
    idp.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_with_oidc_issuer_takes_login_certificates() {
    let key = SigningKey::new("k1");
    let idp = Idp::start(free_port(), &key);
    let demo =
        common::Demo::start_with(&["--oidc-issuer", &idp.issuer(), "--oidc-audience", RESOURCE]);
    let banner_value = |label: &str, end: char| {
        demo.banner
            .split(label)
            .nth(1)
            .and_then(|rest| rest.split(end).next())
            .unwrap_or_else(|| panic!("demo banner names {label:?}: {}", demo.banner))
            .trim()
            .to_string()
    };
    let ssh_port = banner_value("gatehouse on 127.0.0.1:", ',');
    let server = banner_value("certificate issuance: ", '\n');
    assert!(server.starts_with("http://127.0.0.1:"), "{server}");

    let secret = demo.path().join("secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = demo.path().join("oidc");
    let run = Command::new(BIN)
        .args(["login", "--server", &server, "--issuer", &idp.issuer()])
        .args(["--client-id", "agent-ci", "--client-secret-file"])
        .arg(&secret)
        .args(["--resource", RESOURCE, "--ssh-host", "127.0.0.1"])
        .args(["--ssh-port", &ssh_port, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}\ngatehouse log:\n{}",
        String::from_utf8_lossy(&run.stderr),
        demo.log()
    );
    // The demo names the issuer's identities with its prefix and grants them the demo target.
    assert!(stdout.contains("identity:   oidc-agent-ci"), "{stdout}");

    // Only the login's key and certificate (the snippet's IdentitiesOnly), the demo's known_hosts.
    let known_hosts = format!(
        "UserKnownHostsFile={}",
        demo.path().join("known_hosts").display()
    );
    let ssh = Command::new("ssh")
        .arg("-F")
        .arg(out.join("ssh_config"))
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "HostKeyAlias=gatehouse",
            "-o",
            &known_hosts,
        ])
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .args(["demo@gatehouse", "echo issued-by-oidc"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&ssh.stdout);
    assert!(
        ssh.status.success() && stdout.contains("issued-by-oidc"),
        "ssh: {stdout}{}\ngatehouse log:\n{}",
        String::from_utf8_lossy(&ssh.stderr),
        demo.log()
    );
    let audit = std::fs::read_to_string(demo.path().join("data/audit/audit.jsonl")).unwrap();
    assert!(audit.contains("\"cert.issued\"") && audit.contains("\"identity\":\"oidc-agent-ci\""));
    idp.stop();
    assert!(demo.stop().success());
}
