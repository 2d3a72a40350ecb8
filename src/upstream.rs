//! SSH client side of gatehouse: connections to targets with vaulted keys and pinned host keys.
//!
//! One pooled connection per (target, upstream user) carries the channels of many agents, so an
//! agent does not pay the target's handshake and authentication on every connection. A connection
//! carries at most `max_channels` channels at once (OpenSSH's `MaxSessions` defaults to 10); when
//! all are busy a further connection is opened, up to [`MAX_CONNECTIONS_PER_TARGET`], and past that
//! callers wait for a free channel. This module knows nothing of agents or policy.
//!
//! Connections are rotated rather than re-keyed: one that has carried [`ROTATE_AFTER_BYTES`] or
//! lived [`ROTATE_AFTER`] takes no new channels and closes when its last channel ends, while the
//! next channel gets a fresh connection (and fresh keys). russh 0.65.1 drops a whole connection
//! when, after it starts a key re-exchange, more than twice one channel's window of channel data
//! arrives before the target's reply, which is what several busy channels have in flight: see
//! [`crate::rekey`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use crate::config::TargetConfig;

/// Connections kept per (target, user) at most; beyond this, channel opens wait for a free slot.
pub const MAX_CONNECTIONS_PER_TARGET: usize = 8;
/// Channel-open attempts before giving up (each may pick another connection).
const OPEN_ATTEMPTS: usize = 4;
/// How long a TCP connect + handshake + authentication to a target may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Channel data (both ways) after which a connection takes no new channels. Far below
/// [`crate::rekey::REKEY_AFTER_BYTES`], so the channels still open on a rotated connection would
/// have to carry many more gigabytes before russh re-keys it.
pub const ROTATE_AFTER_BYTES: u64 = 1 << 30;
/// Age after which a connection takes no new channels: ten minutes before russh's time-based
/// re-key ([`crate::rekey::REKEY_AFTER`]), so only channels that have run that long are on it then.
pub const ROTATE_AFTER: Duration = Duration::from_secs(50 * 60);
// A rotated connection's remaining channels have gigabytes and minutes left before russh re-keys.
const _: () = assert!(ROTATE_AFTER_BYTES * 8 <= crate::rekey::REKEY_AFTER_BYTES);
const _: () = assert!(ROTATE_AFTER.as_secs() + 600 <= crate::rekey::REKEY_AFTER.as_secs());

/// Why an upstream channel could not be opened. Messages are shown to agents: they name the
/// target but never key material.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("target {target} unreachable at {address}: {reason}")]
    Unreachable {
        target: String,
        address: String,
        reason: String,
    },
    #[error(
        "target {target} presented an unpinned host key ({fingerprint}); refusing the session"
    )]
    HostKeyMismatch { target: String, fingerprint: String },
    #[error("target {target} has no pinned host key; run `gatehouse target pin {target}`")]
    NoPinnedKey { target: String },
    #[error("target {target} refused gatehouse's key for user {user}")]
    AuthRejected { target: String, user: String },
    #[error("no vaulted key for target {target}")]
    NoKey { target: String },
    #[error("target {target}: {reason}")]
    Protocol { target: String, reason: String },
}

/// The key material and pins needed to reach one target.
#[derive(Clone)]
pub struct TargetAccess {
    /// The target as configured (name, address, upstream user, limits).
    pub target: TargetConfig,
    /// Host keys the target must present (config pins plus `gatehouse target pin` pins).
    pub pinned: Vec<PublicKey>,
    /// The vaulted private key; never leaves this process.
    pub key: Arc<PrivateKey>,
    /// Compiled masking rules and mode for this target's output; `None` when masking is off.
    pub mask: Option<(
        Arc<crate::record::mask::MaskRules>,
        crate::record::mask::MaskMode,
    )>,
}

/// An open channel on a pooled connection, with the permit that counts it against the
/// connection's channel limit (released when this is dropped).
pub struct UpstreamChannel {
    /// The channel itself.
    pub channel: russh::Channel<client::Msg>,
    /// Held for the channel's lifetime.
    pub permit: OwnedSemaphorePermit,
    /// The connection's load, which whoever bridges this channel keeps up to date.
    pub load: Arc<ConnectionLoad>,
}

/// What the bridges of a connection's channels tell the pool about it.
#[derive(Debug, Default)]
pub struct ConnectionLoad {
    /// Channels whose output is backed up right now. russh 0.65 grants window per connection
    /// as data arrives and then waits for room in the channel's queue, so while one channel's
    /// agent is not reading, the whole connection's packet loop waits with it: new channels
    /// are put on a connection that is not backed up (a new one if needed) instead.
    congested: AtomicUsize,
    /// Channel data carried both ways, for rotation ([`ROTATE_AFTER_BYTES`]).
    carried: AtomicU64,
}

impl ConnectionLoad {
    /// Counts `bytes` of channel data carried.
    pub fn carry(&self, bytes: usize) {
        self.carried
            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Marks the connection congested until the returned guard is dropped (a channel's reader
    /// waiting for room to put the target's output).
    pub fn congestion(self: &Arc<Self>) -> Congestion {
        self.congested.fetch_add(1, Ordering::SeqCst);
        Congestion(self.clone())
    }

    fn is_congested(&self) -> bool {
        self.congested.load(Ordering::SeqCst) > 0
    }

    fn carried(&self) -> u64 {
        self.carried.load(Ordering::Relaxed)
    }
}

/// A channel reader's wait for room; the connection counts as congested while one exists.
pub struct Congestion(Arc<ConnectionLoad>);

impl Drop for Congestion {
    fn drop(&mut self) {
        self.0.congested.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether a connection of this age that has carried this much should take no new channels.
fn due_for_rotation(age: Duration, carried: u64) -> bool {
    age >= ROTATE_AFTER || carried >= ROTATE_AFTER_BYTES
}

/// One authenticated SSH connection to a target.
struct Connection {
    /// russh client handle; channels are opened through it.
    handle: client::Handle<PinnedHostKey>,
    /// One permit per channel that may be open at once on this connection.
    slots: Arc<Semaphore>,
    /// Congestion and traffic, kept up to date by the bridges of its channels.
    load: Arc<ConnectionLoad>,
    /// When it was established, for rotation ([`ROTATE_AFTER`]).
    opened: Instant,
}

impl Connection {
    /// A free channel slot, if this connection has one.
    fn slot(self: &Arc<Self>) -> Option<(Arc<Connection>, OwnedSemaphorePermit)> {
        self.slots
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|p| (self.clone(), p))
    }

    fn is_congested(&self) -> bool {
        self.load.is_congested()
    }

    /// Whether this connection should take no new channels (see [`ROTATE_AFTER_BYTES`]).
    fn is_due_for_rotation(&self) -> bool {
        due_for_rotation(self.opened.elapsed(), self.load.carried())
    }
}

/// The live connections to one (target, user); the lock makes connecting single-flight.
type TargetConnections = Mutex<Vec<Arc<Connection>>>;

/// The pool: (target, user) → live connections.
#[derive(Default)]
pub struct Pool {
    /// Connections per (target name, upstream user); the async mutex makes connecting single-flight.
    entries: Mutex<HashMap<(String, String), Arc<TargetConnections>>>,
}

impl Pool {
    /// An empty pool.
    pub fn new() -> Pool {
        Pool::default()
    }

    /// Opens a session channel to the target, reusing a pooled connection when one has room.
    pub async fn open_channel(
        &self,
        access: &TargetAccess,
    ) -> Result<UpstreamChannel, UpstreamError> {
        let key = (access.target.name.clone(), access.target.user.clone());
        let entry = {
            let mut entries = self.entries.lock().await;
            entries.entry(key).or_default().clone()
        };
        // A few attempts: a pooled connection may have died since it was last used, or the
        // target may refuse another channel on it (its MaxSessions is below our max_channels).
        for _ in 0..OPEN_ATTEMPTS {
            let (conn, permit) = {
                let mut conns = entry.lock().await;
                // A rotated connection leaves the pool; it closes when its last channel ends
                // (each open channel keeps its russh session running).
                conns.retain(|c| {
                    let rotate = c.is_due_for_rotation();
                    if rotate && !c.handle.is_closed() {
                        tracing::info!(
                            target_name = %access.target.name,
                            carried_bytes = c.load.carried(),
                            age_secs = c.opened.elapsed().as_secs(),
                            "rotating pooled upstream connection: no new channels on it"
                        );
                    }
                    !rotate && !c.handle.is_closed()
                });
                // A connection that is not backed up; at the connection limit, any with room.
                let free = conns
                    .iter()
                    .filter(|c| !c.is_congested())
                    .find_map(Connection::slot)
                    .or_else(|| {
                        (conns.len() >= MAX_CONNECTIONS_PER_TARGET)
                            .then(|| conns.iter().find_map(Connection::slot))
                            .flatten()
                    });
                match free {
                    Some(found) => found,
                    None if conns.len() < MAX_CONNECTIONS_PER_TARGET => {
                        let conn = Arc::new(connect(access).await?);
                        conns.push(conn.clone());
                        let permit = conn.slots.clone().try_acquire_owned().map_err(|_| {
                            UpstreamError::Protocol {
                                target: access.target.name.clone(),
                                reason: "max_channels is 0".into(),
                            }
                        })?;
                        (conn, permit)
                    }
                    None => {
                        // Every connection is full: wait for a channel on the first one.
                        let conn =
                            conns
                                .first()
                                .cloned()
                                .ok_or_else(|| UpstreamError::Protocol {
                                    target: access.target.name.clone(),
                                    reason: "no connection".into(),
                                })?;
                        drop(conns);
                        let permit = conn.slots.clone().acquire_owned().await.map_err(|_| {
                            UpstreamError::Protocol {
                                target: access.target.name.clone(),
                                reason: "connection closed".into(),
                            }
                        })?;
                        (conn, permit)
                    }
                }
            };
            match conn.handle.channel_open_session().await {
                Ok(channel) => {
                    return Ok(UpstreamChannel {
                        channel,
                        permit,
                        load: conn.load.clone(),
                    })
                }
                Err(russh::Error::ChannelOpenFailure(reason)) => {
                    // The connection is alive but the target wants fewer channels on it: learn
                    // that by retiring this slot for good, and try elsewhere.
                    tracing::debug!(target_name = %access.target.name, ?reason, "target refused a channel; lowering this connection's limit");
                    permit.forget();
                }
                Err(err) => {
                    tracing::warn!(target_name = %access.target.name, error = %err, "upstream connection lost; reconnecting");
                    let _ = conn
                        .handle
                        .disconnect(russh::Disconnect::ByApplication, "", "")
                        .await;
                    entry.lock().await.retain(|c| !Arc::ptr_eq(c, &conn));
                }
            }
        }
        Err(UpstreamError::Protocol {
            target: access.target.name.clone(),
            reason: "could not open a channel".into(),
        })
    }

    /// Closes every pooled connection (shutdown).
    pub async fn close_all(&self) {
        let entries = self.entries.lock().await;
        for entry in entries.values() {
            for conn in entry.lock().await.iter() {
                let _ = conn
                    .handle
                    .disconnect(
                        russh::Disconnect::ByApplication,
                        "gatehouse shutting down",
                        "",
                    )
                    .await;
            }
        }
    }
}

/// russh client handler that accepts only pinned host keys and remembers what it saw.
pub struct PinnedHostKey {
    /// Keys the server may present.
    pinned: Vec<PublicKey>,
    /// Where the presented key is reported (for error messages and `target pin`).
    seen: Arc<std::sync::Mutex<Option<PublicKey>>>,
}

impl client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            // Host certificates are not trusted by themselves: the pinned key is what counts.
            russh::keys::PublicKeyOrCertificate::Certificate(cert) => {
                PublicKey::new(cert.public_key().clone(), "")
            }
        };
        let ok = self.pinned.iter().any(|p| p.key_data() == key.key_data());
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(key);
        }
        Ok(ok)
    }
}

/// Ciphers offered to targets, most preferred first. The target hop carries every byte an agent
/// reads, and gatehouse decrypts it beside encrypting it again for the agent: with AES and
/// carry-less multiply in hardware, AES-GCM costs a third of ChaCha20-Poly1305 in ring (about
/// 7 GB/s against 2.5 GB/s per core here), so it goes first; without them ChaCha20 stays first
/// (russh's own order).
fn upstream_ciphers() -> &'static [russh::cipher::Name] {
    use russh::cipher::{AES_128_CTR, AES_192_CTR, AES_256_CTR, AES_256_GCM, CHACHA20_POLY1305};
    const AES_FIRST: &[russh::cipher::Name] = &[
        AES_256_GCM,
        CHACHA20_POLY1305,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("aes")
        && std::arch::is_x86_feature_detected!("pclmulqdq")
    {
        return AES_FIRST;
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("aes")
        && std::arch::is_aarch64_feature_detected!("pmull")
    {
        return AES_FIRST;
    }
    &[
        CHACHA20_POLY1305,
        AES_256_GCM,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ]
}

fn client_config() -> Arc<client::Config> {
    Arc::new(client::Config {
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(upstream_ciphers()),
            ..russh::Preferred::DEFAULT
        },
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        window_size: 2 * 1024 * 1024,
        maximum_packet_size: 32768,
        channel_buffer_size: 64,
        nodelay: true,
        limits: crate::rekey::limits(),
        ..Default::default()
    })
}

/// Connects, checks the host key against the pins and authenticates with the vaulted key.
async fn connect(access: &TargetAccess) -> Result<Connection, UpstreamError> {
    let target = &access.target;
    if access.pinned.is_empty() {
        return Err(UpstreamError::NoPinnedKey {
            target: target.name.clone(),
        });
    }
    let seen = Arc::new(std::sync::Mutex::new(None));
    let handler = PinnedHostKey {
        pinned: access.pinned.clone(),
        seen: seen.clone(),
    };
    let unreachable = |reason: String| UpstreamError::Unreachable {
        target: target.name.clone(),
        address: target.address.clone(),
        reason,
    };
    let attempt = async {
        let handle = client::connect(client_config(), target.address.as_str(), handler).await;
        let mut handle = match handle {
            Ok(h) => h,
            Err(russh::Error::UnknownKey) => {
                let fingerprint = seen
                    .lock()
                    .ok()
                    .and_then(|s| {
                        s.as_ref()
                            .map(|k| k.fingerprint(HashAlg::Sha256).to_string())
                    })
                    .unwrap_or_else(|| "unknown".into());
                tracing::error!(target_name = %target.name, %fingerprint, "upstream host key is not pinned");
                return Err(UpstreamError::HostKeyMismatch {
                    target: target.name.clone(),
                    fingerprint,
                });
            }
            Err(err) => return Err(unreachable(err.to_string())),
        };
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten();
        let auth = handle
            .authenticate_publickey(
                target.user.clone(),
                PrivateKeyWithHashAlg::new(access.key.clone(), hash),
            )
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if !auth.success() {
            return Err(UpstreamError::AuthRejected {
                target: target.name.clone(),
                user: target.user.clone(),
            });
        }
        Ok(handle)
    };
    let handle = tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| unreachable(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))??;
    tracing::info!(target_name = %target.name, user = %target.user, "upstream connection established");
    Ok(Connection {
        handle,
        slots: Arc::new(Semaphore::new(target.max_channels)),
        load: Arc::new(ConnectionLoad::default()),
        opened: Instant::now(),
    })
}

/// Connects to `address` only to learn the host key it presents (for `gatehouse target pin`).
pub async fn fetch_host_key(address: &str) -> Result<PublicKey, UpstreamError> {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let handler = PinnedHostKey {
        pinned: Vec::new(),
        seen: seen.clone(),
    };
    let result = tokio::time::timeout(
        CONNECT_TIMEOUT,
        client::connect(client_config(), address, handler),
    )
    .await;
    let key = seen.lock().ok().and_then(|s| s.clone());
    match (key, result) {
        (Some(key), _) => Ok(key),
        (None, Ok(Err(err))) => Err(UpstreamError::Unreachable {
            target: address.into(),
            address: address.into(),
            reason: err.to_string(),
        }),
        (None, _) => Err(UpstreamError::Unreachable {
            target: address.into(),
            address: address.into(),
            reason: "no host key received".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_rotate_on_traffic_or_age() {
        assert!(!due_for_rotation(Duration::ZERO, 0));
        assert!(!due_for_rotation(
            ROTATE_AFTER - Duration::from_secs(1),
            ROTATE_AFTER_BYTES - 1
        ));
        assert!(due_for_rotation(Duration::ZERO, ROTATE_AFTER_BYTES));
        assert!(due_for_rotation(ROTATE_AFTER, 0));
    }

    #[test]
    fn load_counts_traffic_and_congestion_guards() {
        let load = Arc::new(ConnectionLoad::default());
        load.carry(1000);
        load.carry(24);
        assert_eq!(load.carried(), 1024);
        assert!(!load.is_congested());
        let a = load.congestion();
        let b = load.congestion();
        assert!(load.is_congested());
        drop(a);
        assert!(load.is_congested());
        drop(b);
        assert!(!load.is_congested());
    }

    #[test]
    fn rekey_limits_are_above_russh_s_one_gib_default() {
        let limits = crate::rekey::limits();
        assert_eq!(
            limits.rekey_read_limit as u64,
            crate::rekey::REKEY_AFTER_BYTES
        );
        assert_eq!(
            limits.rekey_write_limit as u64,
            crate::rekey::REKEY_AFTER_BYTES
        );
        assert!(limits.rekey_read_limit > russh::Limits::default().rekey_read_limit);
    }
}
