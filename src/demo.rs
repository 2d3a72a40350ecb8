//! `gatehouse demo`: a throwaway OpenSSH sshd as target `demo`, a fresh CA, vault and store,
//! an agent and a reviewer certificate, and an ssh_config that reaches everything
//! non-interactively. Runs until SIGINT/SIGTERM, then stops its sshd too. With
//! `--oidc-issuer URL --oidc-audience AUD` it also serves certificate issuance on loopback,
//! trusting that issuer, and grants the identities it mints the `demo` target.
//!
//! Everything lives under one directory (DIR): DIR/gatehouse.toml is the configuration gatehouse
//! runs with, DIR/ssh_config and DIR/known_hosts are for clients, DIR/keys holds the generated
//! keys and certificates, DIR/sshd the target's files, DIR/data the store, DIR/recordings the
//! recordings.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};

use crate::cli::serve::{build_gateway, shutdown_signal, start_issuance, DemoArgs};
use crate::config::Config;
use crate::identity::ca::{CertRequest, UserCa};
use crate::store::Store;
use crate::vault::Vault;

/// Where the demo expects OpenSSH's server.
pub const SSHD: &str = "/usr/sbin/sshd";
/// Lifetime of the demo's certificates: long enough to try things out at leisure.
const DEMO_CERT_TTL: Duration = Duration::from_secs(8 * 3600);
/// Prefixed to every identity minted from `--oidc-issuer` tokens: the demo's grant names them
/// by it (`oidc-*`), and they can never collide with the demo's own `agent` and `reviewer`.
pub const OIDC_IDENTITY_PREFIX: &str = "oidc-";

/// A generated key pair on disk.
struct KeyFiles {
    private: PathBuf,
    public_line: String,
}

fn generate_key(path: &Path) -> anyhow::Result<(PrivateKey, KeyFiles)> {
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .context("cannot generate an ed25519 key")?;
    let pem = key
        .to_openssh(LineEnding::LF)
        .context("cannot encode a key")?;
    crate::secret_file::create_new(path, pem.as_bytes(), crate::secret_file::PRIVATE_MODE)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let public_line = key
        .public_key()
        .to_openssh()
        .context("cannot encode a key")?;
    std::fs::write(path.with_extension("pub"), format!("{public_line}\n"))?;
    Ok((
        key,
        KeyFiles {
            private: path.to_path_buf(),
            public_line,
        },
    ))
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> anyhow::Result<u16> {
    let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).context("no free port")?;
    Ok(listener.local_addr()?.port())
}

fn current_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            std::process::Command::new("id")
                .arg("-un")
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "root".to_string())
}

/// The demo's target sshd, stopped when dropped.
struct DemoSshd {
    child: tokio::process::Child,
}

/// Times the demo sshd is started on a new port when it exits at start: the port was free when
/// chosen, but another program (a parallel test, say) can bind it before sshd does.
const SSHD_START_ATTEMPTS: usize = 3;

impl DemoSshd {
    /// Starts the demo's sshd on a free loopback port; returns it, its port and its host key.
    async fn start(
        dir: &Path,
        user: &str,
        authorized: &str,
    ) -> anyhow::Result<(DemoSshd, u16, String)> {
        if !Path::new(SSHD).exists() {
            bail!("gatehouse demo needs OpenSSH's server at {SSHD} (Debian/Ubuntu: apt-get install openssh-server)");
        }
        let sshd_dir = dir.join("sshd");
        std::fs::create_dir_all(&sshd_dir)?;
        let (_host, host_files) = generate_key(&sshd_dir.join("ssh_host_ed25519_key"))?;
        std::fs::write(sshd_dir.join("authorized_keys"), format!("{authorized}\n"))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            match DemoSshd::spawn(&sshd_dir, port, user, &host_files.private).await {
                Ok(sshd) => return Ok((sshd, port, host_files.public_line)),
                Err(err) if attempt >= SSHD_START_ATTEMPTS => return Err(err),
                Err(err) => {
                    tracing::warn!(port, error = %err, "the demo sshd did not start; trying another port");
                }
            }
        }
    }

    /// Writes the sshd configuration for `port` and starts sshd with it, waiting until it
    /// listens.
    async fn spawn(
        sshd_dir: &Path,
        port: u16,
        user: &str,
        host: &Path,
    ) -> anyhow::Result<DemoSshd> {
        let config = format!(
            "# Generated by gatehouse demo: the demo's target, on loopback only.\n\
             Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
             AuthorizedKeysFile {auth}\nAllowUsers {user}\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
             PermitRootLogin prohibit-password\nMaxSessions 64\nMaxStartups 64:30:128\n\
             AcceptEnv LANG LC_* TERM GATEHOUSE_APPROVAL\nAllowTcpForwarding no\nX11Forwarding no\nPrintMotd no\nLogLevel ERROR\n\
             Subsystem sftp internal-sftp\n",
            host = host.display(),
            pid = sshd_dir.join("sshd.pid").display(),
            auth = sshd_dir.join("authorized_keys").display(),
        );
        let config_path = sshd_dir.join("sshd_config");
        std::fs::write(&config_path, config)?;
        // sshd started as root wants its privilege-separation directory (harmless otherwise).
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = tokio::process::Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {SSHD}"))?;
        let mut sshd = DemoSshd { child };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        for _ in 0..100 {
            if let Ok(Some(status)) = sshd.child.try_wait() {
                bail!("the demo sshd exited at start ({status}); see the lines above");
            }
            if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
                // Say hello properly so that sshd does not log an aborted handshake.
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut banner = [0u8; 64];
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), stream.read(&mut banner)).await;
                let _ = stream.write_all(b"SSH-2.0-gatehouse_demo_probe\r\n").await;
                return Ok(sshd);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the demo sshd did not start listening on {addr}")
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SIGTERM lets sshd remove its pid file; kill_on_drop is the backstop.
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
            if tokio::time::timeout(Duration::from_secs(3), self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.kill().await;
            }
        }
    }
}

fn issue(
    ca: &UserCa,
    identity: &str,
    groups: &[&str],
    keys: &KeyFiles,
    permit_pty: bool,
) -> anyhow::Result<PathBuf> {
    let public_key = russh::keys::PublicKey::from_openssh(&keys.public_line)?;
    let cert = ca
        .issue(&CertRequest {
            identity: identity.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ttl: DEMO_CERT_TTL,
            public_key,
            permit_pty,
        })
        .with_context(|| format!("cannot issue the {identity} certificate"))?;
    let path = PathBuf::from(format!("{}-cert.pub", keys.private.display()));
    std::fs::write(&path, format!("{}\n", cert.to_openssh()?))?;
    Ok(path)
}

/// A TOML basic string holding `text` (quotes and escapes included).
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// The `[server] http_listen` line, the `[[oidc.issuers]]` entry and the grant that make the
/// demo issue certificates for `--oidc-issuer` tokens; empty without it. The configuration is
/// then loaded like any other, so a bad issuer URL is reported against DIR/gatehouse.toml.
fn oidc_toml(args: &DemoArgs, http_port: Option<u16>) -> (String, String) {
    let listen = match http_port {
        Some(port) => format!("http_listen = \"127.0.0.1:{port}\"\n"),
        None => String::new(),
    };
    let (Some(issuer), Some(audience)) = (&args.oidc_issuer, &args.oidc_audience) else {
        return (listen, String::new());
    };
    // Every asymmetric algorithm gatehouse supports: the demo does not know the provider's keys
    // (none and HS* are never accepted anyway).
    let algs = crate::config::issuance::SUPPORTED_ALGS
        .iter()
        .map(|alg| toml_string(alg))
        .collect::<Vec<_>>()
        .join(", ");
    let issuers = format!(
        "\n[[oidc.issuers]]\nissuer = {issuer}\naudience = {audience}\nkind = \"agent\"\n\
         identity_prefix = \"{OIDC_IDENTITY_PREFIX}\"\ngroups_claim = \"groups\"\n\
         allowed_algs = [{algs}]\n\n\
         [[grants]]\nprincipals = [\"{OIDC_IDENTITY_PREFIX}*\"]\ntargets = [\"demo\"]\n",
        issuer = toml_string(issuer),
        audience = toml_string(audience),
    );
    (listen, issuers)
}

/// The `[policy]` and `[approvals]` sections for `--policy FILE` and `--webhook URL` (empty
/// without them). The policy path is made absolute here, so that it still names the file the
/// user meant when read relative to DIR/gatehouse.toml; values are written as TOML strings.
fn extra_config(args: &DemoArgs) -> anyhow::Result<String> {
    let mut extra = String::new();
    if let Some(policy) = &args.policy {
        let path = policy
            .canonicalize()
            .with_context(|| format!("--policy {}", policy.display()))?;
        let path = toml_string(&path.display().to_string());
        extra.push_str(&format!("\n[policy]\nfile = {path}\n"));
    }
    if let Some(url) = &args.webhook {
        let url = toml_string(url);
        extra.push_str(&format!("\n[approvals]\nwebhook = {url}\n"));
    }
    if args.no_recording {
        extra.push_str("\n[recording]\non_failure = \"continue\"\n");
    }
    if args.no_masking {
        extra.push_str("\n[masking]\nenabled = false\n");
    }
    Ok(extra)
}

/// Runs the demo until SIGINT/SIGTERM.
pub async fn run(args: DemoArgs) -> anyhow::Result<i32> {
    // Before anything is written: a wrong --policy leaves DIR as it was.
    let extra = extra_config(&args)?;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("gatehouse-demo-{:08x}", rand::random::<u32>())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if std::fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{} is not empty; give gatehouse demo a new or empty --dir",
            dir.display()
        );
    }
    let dir = dir.canonicalize()?;
    for sub in ["keys", "data", "recordings", "ca"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let user = args.target_user.clone().unwrap_or_else(current_user);

    // Keys: the target's own key (vaulted; also used by demo-direct), the agent's and the reviewer's.
    let (target_key, target_files) = generate_key(&dir.join("keys/target_key"))?;
    let (_agent, agent_files) = generate_key(&dir.join("keys/agent"))?;
    let (_reviewer, reviewer_files) = generate_key(&dir.join("keys/reviewer"))?;

    let (sshd, sshd_port, sshd_host_key) =
        DemoSshd::start(&dir, &user, &target_files.public_line).await?;

    let listener = match args.ssh_port {
        Some(p) => tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, p)).await,
        None => tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await,
    }
    .context("cannot bind gatehouse's SSH port")?;
    let ssh_port = listener.local_addr()?.port();
    // Issuance listens only when asked for: by --oidc-issuer, or by naming its port.
    let http_port = match (args.http_port, &args.oidc_issuer) {
        (Some(port), _) => Some(port),
        (None, Some(_)) => Some(free_port()?),
        (None, None) => None,
    };
    let (http_listen, oidc) = oidc_toml(&args, http_port);

    // /dev/null is a file, so no directory can be made below it: every recording fails.
    let recordings_dir = if args.no_recording {
        "/dev/null/recordings"
    } else {
        "recordings"
    };
    let toml = format!(
        "# Written by `gatehouse demo`: the configuration this demo runs with.\n\
         [server]\nssh_listen = \"127.0.0.1:{ssh_port}\"\n{http_listen}data_dir = \"data\"\nrecordings_dir = \"{recordings_dir}\"\n\n\
         [ca]\nprivate_key = \"ca/user_ca\"\n\n\
         [vault]\nmaster_key_file = \"vault.key\"\n\n\
         [[targets]]\nname = \"demo\"\naddress = \"127.0.0.1:{sshd_port}\"\nuser = \"{user}\"\n\
         host_keys = [\"{sshd_host_key}\"]\npolicy = \"default\"\nmax_channels = 32\n\n\
         [[grants]]\nprincipals = [\"group:agents\", \"group:reviewers\"]\ntargets = [\"demo\"]\n{oidc}{extra}"
    );
    let config_path = dir.join("gatehouse.toml");
    std::fs::write(&config_path, toml)?;
    let config = Config::load(&config_path)?;

    let ca = UserCa::init(&config.ca.private_key).context("cannot create the demo CA")?;
    let agent_cert = issue(&ca, "agent", &["agents"], &agent_files, false)?;
    let reviewer_cert = issue(&ca, "reviewer", &["reviewers"], &reviewer_files, true)?;

    Vault::init_master_key(&config.vault.master_key_file)?;
    let store = Store::open(&config.server.data_dir)?;
    Vault::open(&store, &config.vault.master_key_file)?.put("demo", &target_key)?;
    let gateway = Arc::new(build_gateway(config, &store)?);
    gateway.spawn_approval_auditor();
    let issuance = start_issuance(&gateway.config, &store, gateway.audit.clone()).await?;
    let gateway_host_key = gateway.host_key.public_key().to_openssh()?;

    std::fs::write(
        dir.join("known_hosts"),
        format!("gatehouse {gateway_host_key}\ndemo-target {sshd_host_key}\n"),
    )?;
    let common = format!(
        "  HostName 127.0.0.1\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n  \
         StrictHostKeyChecking yes\n  IdentitiesOnly yes\n  PasswordAuthentication no\n  \
         KbdInteractiveAuthentication no\n  ForwardAgent no\n  ForwardX11 no\n  LogLevel ERROR\n",
        kh = dir.join("known_hosts").display()
    );
    let ssh_config = format!(
        "# Written by `gatehouse demo`. Use: ssh -F {cfg} demo 'df -h /'\n\
         Host demo\n  User demo\n  Port {ssh_port}\n  HostKeyAlias gatehouse\n  IdentityFile {agent}\n  CertificateFile {agent_cert}\n{common}\n\
         Host console\n  User console\n  Port {ssh_port}\n  HostKeyAlias gatehouse\n  IdentityFile {reviewer}\n  CertificateFile {reviewer_cert}\n{common}\n\
         Host demo-direct\n  User {user}\n  Port {sshd_port}\n  HostKeyAlias demo-target\n  IdentityFile {target}\n{common}",
        cfg = dir.join("ssh_config").display(),
        agent = agent_files.private.display(),
        agent_cert = agent_cert.display(),
        reviewer = reviewer_files.private.display(),
        reviewer_cert = reviewer_cert.display(),
        target = target_files.private.display(),
    );
    std::fs::write(dir.join("ssh_config"), ssh_config)?;

    let shutdown = shutdown_signal();
    let cfg = dir.join("ssh_config");
    println!(
        "gatehouse demo: gatehouse on 127.0.0.1:{ssh_port}, target sshd on 127.0.0.1:{sshd_port}"
    );
    println!("  directory: {}", dir.display());
    println!("  allowed:  ssh -F {} demo 'df -h /'", cfg.display());
    println!("  denied:   ssh -F {} demo 'rm -rf /'", cfg.display());
    println!(
        "  held:     ssh -F {} demo 'systemctl restart nginx'",
        cfg.display()
    );
    println!("  direct:   ssh -F {} demo-direct 'df -h /'", cfg.display());
    if let Some(addr) = issuance {
        println!("  certificate issuance: http://{addr}");
    }
    if let (Some(issuer), Some(audience), Some(addr)) =
        (&args.oidc_issuer, &args.oidc_audience, issuance)
    {
        let out = dir.join("oidc");
        println!(
            "  oidc:     gatehouse login --server http://{addr} --issuer {issuer} --resource {audience} \
             --client-id ID --client-secret-file FILE --ssh-host 127.0.0.1 --ssh-port {ssh_port} --out {out}",
            out = out.display()
        );
        println!(
            "            ssh -F {cfg} -o UserKnownHostsFile={kh} -o HostKeyAlias=gatehouse demo@gatehouse 'df -h /'",
            cfg = out.join("ssh_config").display(),
            kh = dir.join("known_hosts").display()
        );
    }
    println!("gatehouse demo ready (Ctrl-C stops it)");

    gateway.serve(listener, shutdown).await;
    drop(store);
    sshd.stop().await;
    println!("gatehouse demo stopped");
    Ok(0)
}
