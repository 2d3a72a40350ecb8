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

mod pool;

use std::sync::Arc;
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use tokio::io::BufReader;
use tokio::net::TcpStream;

use crate::config::TargetConfig;

pub use pool::{
    ChannelSlot, Congestion, ConnectionLoad, Pool, MAX_CONNECTIONS_PER_TARGET, ROTATE_AFTER,
    ROTATE_AFTER_BYTES,
};

/// How long a TCP connect + handshake + authentication to a target may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes taken from a target's socket in one read. russh reads every packet straight from its
/// stream with two exact reads (the first cipher block, then the rest), so a bare socket costs
/// two or more `recv` calls per 32 KiB of output; through this buffer one call takes a burst of
/// packets. The buffer is allocated once per pooled connection and only its touched pages
/// become resident.
const READ_BUFFER: usize = 256 * 1024;

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
    pub permit: ChannelSlot,
    /// The connection's load, which whoever bridges this channel keeps up to date.
    pub load: Arc<ConnectionLoad>,
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
        limits: crate::rekey::limits(),
        ..Default::default()
    })
}

/// The TCP connection to a target, with Nagle off (an exec's request must not wait for an ACK)
/// and reads buffered (see [`READ_BUFFER`]).
async fn open_stream(address: &str) -> Result<BufReader<TcpStream>, russh::Error> {
    let socket = TcpStream::connect(address).await?;
    if let Err(err) = socket.set_nodelay(true) {
        tracing::warn!(error = %err, "could not set TCP_NODELAY on an upstream connection");
    }
    Ok(BufReader::with_capacity(READ_BUFFER, socket))
}

/// Connects, checks the host key against the pins and authenticates with the vaulted key.
async fn connect(access: &TargetAccess) -> Result<client::Handle<PinnedHostKey>, UpstreamError> {
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
        let stream = open_stream(&target.address)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let handle = client::connect_stream(client_config(), stream, handler).await;
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
    Ok(handle)
}

/// Connects to `address` only to learn the host key it presents (for `gatehouse target pin`).
pub async fn fetch_host_key(address: &str) -> Result<PublicKey, UpstreamError> {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let handler = PinnedHostKey {
        pinned: Vec::new(),
        seen: seen.clone(),
    };
    let result = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let stream = open_stream(address).await?;
        client::connect_stream(client_config(), stream, handler).await
    })
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
