//! `gatehouse serve`, `gatehouse demo` and `gatehouse target`: assembling a gateway from its
//! configuration and running it until SIGINT/SIGTERM.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use russh::keys::PublicKey;

use crate::approvals::{ApprovalSettings, Approvals};
use crate::audit::AuditLog;
use crate::config::Config;
use crate::gateway::{self, Gateway};
use crate::identity::ca::CertVerifier;
use crate::identity::revocation::{revocations_path, RevocationWatcher};
use crate::policy::PolicySet;
use crate::record::cast::{recover_unsealed, SpareFiles};
use crate::record::mask::MaskRules;
use crate::store::Store;
use crate::upstream::{Pool, TargetAccess};
use crate::vault::{master_key_path, Vault};

/// `gatehouse demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the demo's config, keys, store and recordings (default: a new temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// gatehouse's SSH port (default: a free port).
    #[arg(long)]
    pub ssh_port: Option<u16>,
    /// gatehouse's HTTP port (default: a free port).
    #[arg(long)]
    pub http_port: Option<u16>,
    /// Also trust this OIDC issuer.
    #[arg(long, requires = "oidc_audience")]
    pub oidc_issuer: Option<String>,
    /// Audience for --oidc-issuer.
    #[arg(long)]
    pub oidc_audience: Option<String>,
    /// The account commands run as on the demo target (default: the current user). The demo
    /// sshd runs as root when started by root, so it can log in as another local account.
    #[arg(long, env = "GATEHOUSE_DEMO_TARGET_USER")]
    pub target_user: Option<String>,
    /// A policy file to try instead of the compiled-in default ruleset (written into
    /// DIR/gatehouse.toml as `[policy] file`; it must define the policy `default`).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Notify this URL of every held command (`[approvals] webhook`; http:// only).
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Benchmarks only: turn output masking off (`[masking] enabled = false`), to compare the
    /// data path with and without it side by side.
    #[arg(long)]
    pub no_masking: bool,
    /// Benchmarks only: run every exec unrecorded, through the documented degraded mode
    /// (`[recording] on_failure = "continue"` with a recordings directory that cannot exist;
    /// each exec is logged and audited as `recording.failed`).
    #[arg(long)]
    pub no_recording: bool,
}

/// `gatehouse target ...`
#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// Fetch a target's host key and pin it (explicit trust on first use): prints the key and
    /// its fingerprint and adds it to DATA/pinned_host_keys.
    Pin {
        /// Target name.
        name: String,
    },
}

/// Pinned host keys added by `gatehouse target pin`, one `NAME KEYTYPE BASE64` line each.
pub fn pinned_keys_path(config: &Config) -> PathBuf {
    config.server.data_dir.join("pinned_host_keys")
}

/// Raises the soft limit on open files to the hard limit, as servers that hold many
/// connections do: every agent connection costs a descriptor and its upstream channel's
/// connection another, and the common soft default (1024) is far below
/// [`crate::gateway::MAX_CONNECTIONS`]. Running out is survived either way (see
/// [`crate::gateway::listen`]), but it refuses agents that the machine could serve.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(open_files = ?limit.maximum, "raised the open-files limit"),
        Err(err) => {
            tracing::warn!(error = %err, open_files = ?limit.current, "cannot raise the open-files limit")
        }
    }
}

/// The async runtime, with `workers` threads for the data path (see
/// [`crate::config::default_worker_threads`]).
fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.unwrap_or_else(crate::config::default_worker_threads))
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Reads the pins for every target: config `host_keys` plus DATA/pinned_host_keys.
fn pinned_keys(config: &Config) -> anyhow::Result<HashMap<String, Vec<PublicKey>>> {
    let mut pins: HashMap<String, Vec<PublicKey>> = HashMap::new();
    for target in &config.targets {
        for (i, line) in target.host_keys.iter().enumerate() {
            let key = PublicKey::from_openssh(line).with_context(|| {
                format!(
                    "{}: target {} host_keys[{i}] is not an OpenSSH public key",
                    config.path.display(),
                    target.name
                )
            })?;
            pins.entry(target.name.clone()).or_default().push(key);
        }
    }
    let path = pinned_keys_path(config);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, key) = line
                .split_once(' ')
                .with_context(|| format!("{}:{}: expected NAME KEY", path.display(), n + 1))?;
            let key = PublicKey::from_openssh(key.trim())
                .with_context(|| format!("{}:{}: bad public key", path.display(), n + 1))?;
            pins.entry(name.to_string()).or_default().push(key);
        }
    }
    Ok(pins)
}

/// Everything a gateway needs, loaded from its configuration and store. Call it inside the
/// runtime: it starts the task that seals recordings.
pub fn build_gateway(config: Config, store: &Store) -> anyhow::Result<Gateway> {
    let policies = match &config.policy_file {
        Some(path) => PolicySet::load(path).with_context(|| "cannot load the policy file")?,
        None => PolicySet::builtin(),
    };
    for target in &config.targets {
        if policies.policy(&target.policy).is_none() {
            anyhow::bail!(
                "{}: target {} names policy {:?}, which the policy file does not define",
                config.path.display(),
                target.name,
                target.policy
            );
        }
    }
    let mut trusted = Vec::new();
    let ca_pub = config.ca.private_key.with_extension("pub");
    let ca_pub_text = std::fs::read_to_string(&ca_pub)
        .with_context(|| format!("cannot read the CA public key {}", ca_pub.display()))?;
    trusted.push(
        PublicKey::from_openssh(ca_pub_text.trim())
            .with_context(|| format!("{}: not an OpenSSH public key", ca_pub.display()))?,
    );
    for (i, line) in config.ca.trusted_public_keys.iter().enumerate() {
        trusted.push(PublicKey::from_openssh(line).with_context(|| {
            format!(
                "{}: ca.trusted_public_keys[{i}] is not an OpenSSH public key",
                config.path.display()
            )
        })?);
    }
    let revocations_path = revocations_path(&config.server.data_dir);
    let revocations = RevocationWatcher::new(&revocations_path)
        .with_context(|| format!("cannot read {}", revocations_path.display()))?;

    let vault =
        Vault::open(store, &master_key_path(&config.vault)).context("cannot open the vault")?;
    let mut pins = pinned_keys(&config)?;
    let mut access = HashMap::new();
    for target in &config.targets {
        let Some(key) = vault
            .get(&target.name)
            .with_context(|| format!("cannot read the vaulted key of target {}", target.name))?
        else {
            tracing::warn!(target_name = %target.name, "no vaulted key; agents cannot reach this target until `gatehouse vault put`");
            continue;
        };
        let settings = target.masking.as_ref().unwrap_or(&config.masking);
        let mask = if settings.enabled {
            let rules = MaskRules::compile(settings)
                .with_context(|| format!("target {}: masking rules", target.name))?;
            Some((Arc::new(rules), settings.mode))
        } else {
            None
        };
        access.insert(
            target.name.clone(),
            TargetAccess {
                mask,
                target: target.clone(),
                pinned: pins.remove(&target.name).unwrap_or_default(),
                key: Arc::new(key),
            },
        );
    }
    let host_key = gateway::load_or_create_host_key(&config.server.data_dir)?;
    let audit_path = config.server.data_dir.join("audit").join("audit.jsonl");
    let audit = Arc::new(
        AuditLog::open(&audit_path)
            .with_context(|| format!("cannot open the audit log {}", audit_path.display()))?,
    );
    match recover_unsealed(&config.server.recordings_dir, &audit) {
        Ok(recovered) if !recovered.is_empty() => {
            tracing::warn!(
                count = recovered.len(),
                "sealed recordings left open by a previous run"
            )
        }
        Ok(_) => {}
        Err(err) => tracing::error!(error = %err, "cannot recover unsealed recordings"),
    }
    let spares = match SpareFiles::open(&config.server.recordings_dir)
        .and_then(|spares| spares.restock().map(|()| spares))
    {
        Ok(spares) => Some(Arc::new(spares)),
        Err(err) => {
            tracing::warn!(error = %err, "cannot make spare recording files; each recording creates its own");
            None
        }
    };
    let reviewer_groups = policies.reviewer_groups(&config.approvals.default_reviewers);
    let approvals = Approvals::open(
        store,
        ApprovalSettings {
            wait_timeout: config.approvals.wait_timeout,
            grant_ttl: config.approvals.grant_ttl,
            default_reviewers: config.approvals.default_reviewers.clone(),
            reviewer_groups,
            webhook: config.approvals.webhook.clone(),
        },
    )
    .context("cannot open the approvals store")?;
    let auth_failures =
        gateway::ratelimit::AuthFailures::new(config.server.max_auth_failures_per_minute);
    Ok(Gateway {
        verifier: CertVerifier::new(trusted),
        revocations,
        policies,
        access,
        pool: Pool::new(),
        auth_failures,
        host_key,
        approvals: Arc::new(approvals),
        sealer: gateway::sealer::Sealer::start(audit.clone(), spares.clone()),
        spares,
        audit,
        sessions: gateway::live::LiveSessions::new(),
        shutdown: gateway::shutdown::Shutdown::new(),
        config,
    })
}

/// Resolves when SIGINT or SIGTERM arrives. The handlers are installed when this is called,
/// not when the future is first polled, so a signal that arrives right after start-up is not lost.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            // Without signal handlers there is no clean stop; fall back to Ctrl-C only.
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Starts certificate issuance on `server.http_listen` when it is set, beside the gateway (it
/// stops with the process). Returns the address it listens on.
pub async fn start_issuance(
    config: &Config,
    store: &Store,
    audit: Arc<AuditLog>,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let Some(addr) = config.server.http_listen else {
        return Ok(None);
    };
    let ca = crate::identity::ca::UserCa::load(&config.ca.private_key)
        .context("cannot load the CA for certificate issuance")?;
    let state = Arc::new(
        crate::http::HttpState::new(config, ca, audit, store)
            .context("cannot start certificate issuance")?,
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(err) = crate::http::serve(state, listener, shutdown_signal()).await {
            tracing::error!(error = %err, "certificate issuance stopped");
        }
    });
    Ok(Some(local))
}

/// `gatehouse serve`.
pub fn serve(config_path: &Path) -> anyhow::Result<i32> {
    let config = Config::load(config_path)?;
    raise_open_files_limit();
    let rt = runtime(config.server.worker_threads)?;
    rt.block_on(async move {
        let store = Store::open(&config.server.data_dir)?;
        let addr = config.server.ssh_listen;
        let gateway = Arc::new(build_gateway(config, &store)?);
        gateway.spawn_approval_auditor();
        start_issuance(&gateway.config, &store, gateway.audit.clone()).await?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!(%addr, "gatehouse listening");
        gateway.serve(listener, shutdown_signal()).await;
        tracing::info!("gatehouse stopped");
        Ok(0)
    })
}

/// `gatehouse demo`.
pub fn demo(args: DemoArgs) -> anyhow::Result<i32> {
    raise_open_files_limit();
    let rt = runtime(None)?;
    rt.block_on(crate::demo::run(args))
}

/// `gatehouse target ...`.
pub fn target(cmd: TargetCommand, config_path: &Path) -> anyhow::Result<i32> {
    let config = Config::load(config_path)?;
    match cmd {
        TargetCommand::Pin { name } => {
            let target = config.target(&name).with_context(|| {
                format!("no target named {name:?} in {}", config.path.display())
            })?;
            let rt = runtime(Some(1))?;
            let key = rt.block_on(crate::upstream::fetch_host_key(&target.address))?;
            let line = key.to_openssh().context("cannot encode the host key")?;
            let fingerprint = key.fingerprint(russh::keys::HashAlg::Sha256);
            let path = pinned_keys_path(&config);
            std::fs::create_dir_all(&config.server.data_dir)?;
            let mut existing = std::fs::read_to_string(&path).unwrap_or_default();
            let entry = format!("{name} {line}");
            if existing.lines().any(|l| l.trim() == entry) {
                println!("already pinned: {name} {fingerprint}");
                return Ok(0);
            }
            existing.push_str(&entry);
            existing.push('\n');
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, existing)?;
            std::fs::rename(&tmp, &path)?;
            println!("pinned {name} at {}: {fingerprint}\n{line}", target.address);
            println!("compare this fingerprint with the target's own (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on it)");
            Ok(0)
        }
    }
}
