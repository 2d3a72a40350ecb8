//! The SSH server agents connect to: everything gatehouse needs to answer one agent connection.
//!
//! `listen` accepts connections; `server` translates russh callbacks (authentication, channel
//! and request replies) and answers them at once; `channel` runs one task per agent channel
//! (policy decision, recording, then `run` on the target or `hold` for a reviewer); `bridge`
//! copies the bytes; `ratelimit` counts failed authentications per source address; `shutdown`
//! tells open execs to seal their recordings when the gateway stops. Nothing here parses shell
//! or stores keys: it asks `policy`, `identity` and `upstream`.

pub mod bridge;
pub mod channel;
pub mod console;
pub mod console_data;
pub mod console_screen;
pub mod handshake;
mod hold;
pub mod listen;
pub mod live;
pub mod ratelimit;
pub mod recording;
mod run;
pub mod sealer;
pub mod server;
pub mod shutdown;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use russh::keys::PrivateKey;
use tokio::net::TcpListener;

use crate::approvals::Approvals;
use crate::audit::AuditLog;
use crate::config::Config;
use crate::identity::ca::CertVerifier;
use crate::identity::revocation::RevocationWatcher;
use crate::policy::PolicySet;
use crate::record::cast::SpareFiles;
use crate::upstream::{Pool, TargetAccess};

/// Agent connections served at once. Connections beyond it are accepted and refused at
/// authentication (logged with the reason), and closed by the login grace at the latest.
pub const MAX_CONNECTIONS: usize = 4096;
/// Session channels one agent connection may have open at once.
pub const MAX_CHANNELS_PER_CONNECTION: usize = 32;

/// After every open exec was cut off at shutdown, how long agents get to read why and leave
/// by themselves before the rest are disconnected. (OpenSSH's client exits on a disconnect
/// message without printing the channel output that arrived with it.)
pub const CLIENT_LEAVE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Environment variables an agent may set (everything else is refused and logged). `LC_*` is
/// matched by prefix.
pub const ENV_ALLOWLIST: &[&str] = &["LANG", "TERM", "GATEHOUSE_APPROVAL"];

/// Whether an agent may pass this environment variable.
pub fn env_allowed(name: &str) -> bool {
    ENV_ALLOWLIST.contains(&name)
        || (name.starts_with("LC_")
            && name.len() > 3
            && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
}

/// Shared, read-mostly state of a running gateway.
pub struct Gateway {
    /// The configuration it was started with.
    pub config: Config,
    /// Policies by name; each target names one.
    pub policies: PolicySet,
    /// Checks agent certificates against the trusted CA keys.
    pub verifier: CertVerifier,
    /// Revoked serials and identities; re-read when the file changes.
    pub revocations: RevocationWatcher,
    /// What is needed to reach each target (vaulted key, pins), by target name.
    pub access: HashMap<String, TargetAccess>,
    /// Pooled upstream connections.
    pub pool: Pool,
    /// Failed authentications per source address.
    pub auth_failures: ratelimit::AuthFailures,
    /// The gateway's own host key.
    pub host_key: PrivateKey,
    /// Held commands and reviewer decisions.
    pub approvals: Arc<Approvals>,
    /// The hash-chained audit log (one writer).
    pub audit: Arc<AuditLog>,
    /// Seals exec recordings that end close together in one batch.
    pub sealer: sealer::Sealer,
    /// Files made ahead for exec recordings (restocked by the sealer); `None` when they could
    /// not be made at start, and recordings create their own.
    pub spares: Option<Arc<SpareFiles>>,
    /// Exec channels open right now, for the reviewer console's sessions list.
    pub sessions: live::LiveSessions,
    /// Tells every open exec to seal its recording when the gateway stops, and waits for them.
    pub shutdown: shutdown::Shutdown,
}

/// The login name that opens the reviewer console instead of a target.
pub const CONSOLE_LOGIN: &str = "console";

/// Errors starting the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("host key {path}: {reason}")]
    HostKey { path: String, reason: String },
}

/// Loads the gateway's ed25519 host key from `DATA/ssh_host_ed25519_key`, creating it (0600) on
/// first start.
pub fn load_or_create_host_key(data_dir: &std::path::Path) -> Result<PrivateKey, GatewayError> {
    let path = data_dir.join("ssh_host_ed25519_key");
    let err = |reason: String| GatewayError::HostKey {
        path: path.display().to_string(),
        reason,
    };
    if path.exists() {
        return PrivateKey::read_openssh_file(&path).map_err(|e| err(e.to_string()));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| err(e.to_string()))?;
    let key = PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
        .map_err(|e| err(e.to_string()))?;
    let pem = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| err(e.to_string()))?;
    crate::secret_file::create_new(&path, pem.as_bytes(), crate::secret_file::PRIVATE_MODE)
        .map_err(|e| err(e.to_string()))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| err(e.to_string()))?;
    std::fs::write(path.with_extension("pub"), format!("{public}\n"))
        .map_err(|e| err(e.to_string()))?;
    tracing::info!(path = %path.display(), "generated gateway host key");
    Ok(key)
}

/// An audit record written to the log, on its way to disk. An exec's decision record is
/// written before its command is sent to the target (a killed gatehouse keeps it) and flushed
/// while the target starts the command; none of the command's output or status reaches the
/// agent until [`AuditFlush::durable`] says it is on disk, and a failed flush stops the
/// command. Waiting for the flush before sending the command cost an exec the disk's flush
/// time, 0.2-0.3 ms on the machine the benchmarks ran on.
pub struct AuditFlush(FlushState);

enum FlushState {
    /// The record could not be written: nothing may be carried out.
    NotWritten,
    /// Written; the flush runs on the blocking pool and answers whether it succeeded.
    Flushing(tokio::task::JoinHandle<bool>),
    /// Waited for: whether the record is on disk.
    Done(bool),
}

impl AuditFlush {
    /// Whether the record is in the log at all (its flush may still fail).
    pub fn written(&self) -> bool {
        !matches!(self.0, FlushState::NotWritten)
    }

    /// Whether the record is on disk, waiting for the flush the first time; false when it
    /// could not be written or flushed.
    pub async fn durable(&mut self) -> bool {
        let durable = match &mut self.0 {
            FlushState::NotWritten => false,
            FlushState::Flushing(flush) => flush.await.unwrap_or(false),
            FlushState::Done(durable) => return *durable,
        };
        self.0 = FlushState::Done(durable);
        durable
    }
}

impl Gateway {
    /// Appends an audit record off the async threads and waits until it is on disk; false when
    /// it could not be written (callers fail closed where the event gates an action).
    pub async fn audit_event(&self, kind: &'static str, fields: serde_json::Value) -> bool {
        let audit = self.audit.clone();
        match tokio::task::spawn_blocking(move || audit.append(kind, fields)).await {
            Ok(Ok(_)) => true,
            Ok(Err(err)) => {
                tracing::error!(%kind, error = %err, "audit append failed");
                false
            }
            Err(err) => {
                tracing::error!(%kind, error = %err, "audit task failed");
                false
            }
        }
    }

    /// Writes an audit record that holds up what the caller does next (an exec's decision,
    /// which must be in the log before the command is sent), after `first`: blocking file
    /// work the caller also needs done before it goes on (starting an exec's recording in its
    /// claimed files). Both run on this thread, one after the other, through
    /// [`crate::store::blocking`]: handing them to the blocking pool costs a thread wake-up, a
    /// few hundred microseconds on a busy machine, on every exec. The record's flush to disk
    /// then runs on the blocking pool while the caller goes on (see [`AuditFlush`]). Returns
    /// what `first` returned and the flush.
    pub async fn audit_after<T>(
        &self,
        first: impl FnOnce() -> T,
        kind: &'static str,
        fields: serde_json::Value,
    ) -> (T, AuditFlush) {
        let (done, written) = crate::store::blocking(|| {
            let done = first();
            (done, self.audit.write(kind, fields))
        });
        let record = match written {
            Ok(record) => record,
            Err(err) => {
                tracing::error!(%kind, error = %err, "audit append failed");
                return (done, AuditFlush(FlushState::NotWritten));
            }
        };
        let audit = self.audit.clone();
        let flush = tokio::task::spawn_blocking(move || match audit.sync_through(&record) {
            Ok(()) => true,
            Err(err) => {
                tracing::error!(%kind, error = %err, "audit flush failed");
                false
            }
        });
        (done, AuditFlush(FlushState::Flushing(flush)))
    }

    /// Copies every approval event into the audit log, for as long as the gateway lives.
    pub fn spawn_approval_auditor(self: &Arc<Self>) {
        let mut events = self.approvals.subscribe();
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let event = match events.recv().await {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::error!(
                            missed = n,
                            "approval events lost before reaching the audit log"
                        );
                        continue;
                    }
                    Err(_) => return,
                };
                let Some(gw) = weak.upgrade() else { return };
                // Nested under `event`: its own keys (`kind`, ...) must not clash with the
                // audit record's. Nothing in an approval event is secret.
                let fields = match serde_json::to_value(&event) {
                    Ok(v) => serde_json::json!({ "event": v }),
                    Err(_) => continue,
                };
                gw.audit_event("approval", fields).await;
            }
        });
    }

    /// Serves agents on `listener` until `shutdown` resolves, then stops in order: stop
    /// accepting, tell every open exec (each writes its session-end marker and seals its
    /// recording), wait for them up to [`shutdown::SHUTDOWN_GRACE`], let agents leave (up to
    /// [`CLIENT_LEAVE_GRACE`]), disconnect the rest, close upstream connections.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let handshake = Arc::new(handshake::Handshake::new(
            &self.host_key,
            &self.config.server,
        ));
        let acceptor = server::Acceptor::new(self.clone());
        let (leave, _) = tokio::sync::broadcast::channel(1);
        listen::accept_until(&listener, handshake, &acceptor, &leave, shutdown).await;
        // The accept loop has stopped; closing the socket refuses newcomers at once.
        // Open connections live on (each in its own task) until their execs have sealed.
        drop(listener);
        tracing::info!("shutting down: sealing open recordings");
        if !self.shutdown.drain(shutdown::SHUTDOWN_GRACE).await {
            tracing::warn!(
                grace = ?shutdown::SHUTDOWN_GRACE,
                "execs still open after the grace period; their recordings are sealed at the next start"
            );
        }
        let leave_by = tokio::time::Instant::now() + CLIENT_LEAVE_GRACE;
        while acceptor.open_connections() > 0 && tokio::time::Instant::now() < leave_by {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let _ = leave.send("gatehouse shutting down".into());
        self.pool.close_all().await;
        if let Some(spares) = self.spares.clone() {
            let _ = tokio::task::spawn_blocking(move || spares.clear()).await;
        }
    }
}
