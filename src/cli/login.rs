//! `gatehouse login`: get an OIDC token (client credentials for agents, device flow for
//! people), make a fresh ed25519 key, prove possession of it over the token, and fetch a
//! short-lived certificate from gatehouse's `POST /v1/certificates`.
//!
//! Writes OUT/id_ed25519 (0600), OUT/id_ed25519.pub, OUT/id_ed25519-cert.pub (0600) and
//! OUT/ssh_config, each replaced in one rename, so re-running from cron or at an agent's start
//! renews them safely. Secrets (client secret, tokens, the private key) are never printed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::http::{CertificateRequest, CertificateResponse, ErrorBody};
use crate::identity::oidc::sign_proof;
use crate::secret_file;

/// `gatehouse login` options.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// gatehouse's HTTP endpoint, e.g. https://bastion.example.com:8443.
    #[arg(long, visible_alias = "url")]
    pub server: String,
    /// The OpenID provider (its issuer URL; discovery is read from it).
    #[arg(long)]
    pub issuer: String,
    /// OAuth client id.
    #[arg(long)]
    pub client_id: String,
    /// Environment variable holding the client secret (client credentials).
    #[arg(long, conflicts_with = "client_secret_file")]
    pub client_secret_env: Option<String>,
    /// File holding the client secret (client credentials; must not be group/world readable).
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,
    /// Resource indicator (RFC 8707) asked for; becomes the access token's audience.
    #[arg(long)]
    pub resource: Option<String>,
    /// `audience` parameter for providers that use it instead of `resource` (Auth0).
    #[arg(long)]
    pub audience: Option<String>,
    /// Scopes asked for (default: none for client credentials, "openid email groups" for --device).
    #[arg(long)]
    pub scope: Option<String>,
    /// Device flow (a person approves in a browser) instead of client credentials.
    #[arg(long)]
    pub device: bool,
    /// Directory for the key, certificate and ssh_config snippet.
    #[arg(long)]
    pub out: PathBuf,
    /// Extra CA certificate (PEM) to trust for gatehouse's TLS (self-signed deployments).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// gatehouse's SSH port, for the ssh_config snippet.
    #[arg(long, default_value_t = 2222)]
    pub ssh_port: u16,
    /// gatehouse's SSH host, for the snippet (default: the --server host).
    #[arg(long)]
    pub ssh_host: Option<String>,
}

/// The provider endpoints `login` needs.
#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    token_endpoint: String,
    #[serde(default)]
    device_authorization_endpoint: Option<String>,
}

/// A token endpoint answer (success or error).
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// The device authorization answer (RFC 8628 §3.2).
#[derive(Deserialize)]
struct DeviceAnswer {
    device_code: String,
    user_code: String,
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    interval: Option<u64>,
}

/// `gatehouse login`.
pub fn run(args: LoginArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(login(args))
}

async fn login(args: LoginArgs) -> anyhow::Result<i32> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &args.ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        builder = builder.add_root_certificate(
            reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{}: not a PEM certificate", path.display()))?,
        );
    }
    let http = builder.build().context("cannot build the HTTP client")?;

    let discovery_url = format!(
        "{}/.well-known/openid-configuration",
        args.issuer.trim_end_matches('/')
    );
    let discovery: Discovery = http
        .get(&discovery_url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("cannot fetch {discovery_url}"))?
        .json()
        .await
        .with_context(|| format!("{discovery_url}: not a discovery document"))?;
    if discovery.issuer != args.issuer {
        bail!(
            "{discovery_url} names issuer {:?}, not {:?}",
            discovery.issuer,
            args.issuer
        );
    }
    let token = if args.device {
        device_flow(&http, &discovery, &args).await?
    } else {
        client_credentials(&http, &discovery, &args).await?
    };

    let seed = secret_file::random_bytes::<32>().context("cannot get random bytes")?;
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment("gatehouse login");
    let proof = sign_proof(&key, token.as_bytes()).context("cannot sign the proof")?;
    let public_key = key
        .public_key()
        .to_openssh()
        .context("cannot encode the public key")?;
    let url = format!("{}/v1/certificates", args.server.trim_end_matches('/'));
    let response = http
        .post(&url)
        .bearer_auth(token.as_str())
        .json(&CertificateRequest {
            public_key: public_key.clone(),
            proof,
        })
        .send()
        .await
        .with_context(|| format!("cannot reach gatehouse at {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let message = match response.json::<ErrorBody>().await {
            Ok(e) => format!("{}: {}", e.error, e.message),
            Err(_) => "no details".to_string(),
        };
        bail!("gatehouse refused the certificate ({status}): {message}");
    }
    let cert: CertificateResponse = response
        .json()
        .await
        .context("gatehouse's answer is not a certificate")?;
    write_files(&args, &key, &public_key, &cert)?;
    let expires = chrono::DateTime::from_timestamp(cert.valid_before as i64, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| cert.valid_before.to_string());
    println!("identity:   {}", cert.identity);
    println!("principals: {}", cert.principals.join(", "));
    println!("expires:    {expires} (serial {})", cert.serial);
    println!(
        "ssh:        ssh -F {} TARGET@gatehouse COMMAND",
        args.out.join("ssh_config").display()
    );
    Ok(0)
}

/// The client secret from the environment or a private file.
fn client_secret(args: &LoginArgs) -> anyhow::Result<Zeroizing<String>> {
    if let Some(var) = &args.client_secret_env {
        let value =
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
        return Ok(Zeroizing::new(value.trim().to_string()));
    }
    if let Some(path) = &args.client_secret_file {
        let bytes = secret_file::read_private(path)
            .with_context(|| format!("cannot read the client secret {}", path.display()))?;
        let text = std::str::from_utf8(&bytes)
            .with_context(|| format!("{}: not UTF-8", path.display()))?;
        return Ok(Zeroizing::new(text.trim().to_string()));
    }
    bail!("client credentials need --client-secret-env VAR or --client-secret-file FILE (or use --device)")
}

/// Adds `resource`, `audience` and `scope` when given.
fn extras<'a>(
    args: &'a LoginArgs,
    form: &mut Vec<(&'static str, &'a str)>,
    default_scope: Option<&'a str>,
) {
    if let Some(r) = &args.resource {
        form.push(("resource", r));
    }
    if let Some(a) = &args.audience {
        form.push(("audience", a));
    }
    if let Some(s) = args.scope.as_deref().or(default_scope) {
        form.push(("scope", s));
    }
}

async fn client_credentials(
    http: &reqwest::Client,
    discovery: &Discovery,
    args: &LoginArgs,
) -> anyhow::Result<Zeroizing<String>> {
    let secret = client_secret(args)?;
    let mut form = vec![("grant_type", "client_credentials")];
    extras(args, &mut form, None);
    // RFC 6749 §2.3.1: id and secret are form-encoded before they go into Basic.
    let encode = |s: &str| form_urlencoded_component(s);
    let answer: TokenAnswer = http
        .post(&discovery.token_endpoint)
        .basic_auth(encode(&args.client_id), Some(encode(&secret)))
        .form(&form)
        .send()
        .await
        .context("cannot reach the token endpoint")?
        .json()
        .await
        .context("the token endpoint's answer is not JSON")?;
    if let Some(error) = answer.error {
        bail!(
            "the provider refused client credentials: {error}: {}",
            answer.error_description.unwrap_or_default()
        );
    }
    answer
        .access_token
        .map(Zeroizing::new)
        .context("the provider returned no access token")
}

async fn device_flow(
    http: &reqwest::Client,
    discovery: &Discovery,
    args: &LoginArgs,
) -> anyhow::Result<Zeroizing<String>> {
    let endpoint = discovery.device_authorization_endpoint.as_deref().context(
        "the provider does not offer the device flow (no device_authorization_endpoint)",
    )?;
    let mut form = vec![("client_id", args.client_id.as_str())];
    extras(args, &mut form, Some("openid email groups"));
    let device: DeviceAnswer = http
        .post(endpoint)
        .form(&form)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .context("the device authorization request failed")?
        .json()
        .await
        .context("the device authorization answer is not JSON")?;
    eprintln!(
        "To log in, open {} and enter the code {}",
        device.verification_uri, device.user_code
    );
    if let Some(complete) = &device.verification_uri_complete {
        eprintln!("(or open {complete})");
    }
    let deadline = Instant::now() + Duration::from_secs(device.expires_in.unwrap_or(600).min(1800));
    let mut interval = Duration::from_secs(device.interval.unwrap_or(5).clamp(1, 60));
    loop {
        tokio::time::sleep(interval).await;
        if Instant::now() > deadline {
            bail!("the device code expired before it was approved; run gatehouse login again");
        }
        let answer: TokenAnswer = http
            .post(&discovery.token_endpoint)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device.device_code.as_str()),
                ("client_id", args.client_id.as_str()),
            ])
            .send()
            .await
            .context("cannot reach the token endpoint")?
            .json()
            .await
            .context("the token endpoint's answer is not JSON")?;
        match answer.error.as_deref() {
            None => {
                // People log in with their ID token; the access token is for the provider's APIs
                // unless a resource was asked for.
                let token = if args.resource.is_some() {
                    answer.access_token.or(answer.id_token)
                } else {
                    answer.id_token.or(answer.access_token)
                };
                return token
                    .map(Zeroizing::new)
                    .context("the provider returned no token");
            }
            Some("authorization_pending") => {}
            Some("slow_down") => interval += Duration::from_secs(5),
            Some(other) => bail!(
                "device login failed: {other}: {}",
                answer.error_description.unwrap_or_default()
            ),
        }
    }
}

/// `application/x-www-form-urlencoded` encoding of one component.
fn form_urlencoded_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn write_files(
    args: &LoginArgs,
    key: &PrivateKey,
    public_key: &str,
    cert: &CertificateResponse,
) -> anyhow::Result<()> {
    let out = &args.out;
    secret_file::ensure_dir(out).with_context(|| format!("cannot create {}", out.display()))?;
    let out = out
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", out.display()))?;
    let private = out.join("id_ed25519");
    let pem = key
        .to_openssh(LineEnding::LF)
        .context("cannot encode the private key")?;
    let write = |path: &Path, bytes: &[u8], mode: u32| {
        secret_file::replace(path, bytes, mode)
            .with_context(|| format!("cannot write {}", path.display()))
    };
    write(&private, pem.as_bytes(), secret_file::PRIVATE_MODE)?;
    write(
        &out.join("id_ed25519.pub"),
        format!("{public_key}\n").as_bytes(),
        secret_file::PUBLIC_MODE,
    )?;
    let cert_path = out.join("id_ed25519-cert.pub");
    write(
        &cert_path,
        format!("{}\n", cert.certificate).as_bytes(),
        secret_file::PRIVATE_MODE,
    )?;
    let host = match &args.ssh_host {
        Some(h) => h.clone(),
        None => reqwest::Url::parse(&args.server)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "localhost".to_string()),
    };
    let snippet = format!(
        "# Written by `gatehouse login` for {identity}; valid until unix time {until}.\n\
         # Use: ssh -F {cfg} TARGET@gatehouse COMMAND (or Include this file from ~/.ssh/config).\n\
         Host gatehouse\n  HostName {host}\n  Port {port}\n  IdentityFile {key}\n  CertificateFile {cert}\n  \
         IdentitiesOnly yes\n  PasswordAuthentication no\n  KbdInteractiveAuthentication no\n  \
         ForwardAgent no\n  ForwardX11 no\n",
        identity = cert.identity,
        until = cert.valid_before,
        cfg = out.join("ssh_config").display(),
        port = args.ssh_port,
        key = private.display(),
        cert = cert_path.display(),
    );
    write(
        &out.join("ssh_config"),
        snippet.as_bytes(),
        secret_file::PUBLIC_MODE,
    )
}
