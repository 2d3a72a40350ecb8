//! When gatehouse's own SSH connections (to agents and to targets) start a key re-exchange.
//!
//! russh 0.65.1, after it sends its KEXINIT, accepts at most twice one channel's window
//! (`Config::window_size`) of channel messages until the peer's KEXINIT arrives, and otherwise
//! drops the whole connection with `Error::Pending`. A peer may legitimately have a full window
//! in flight on *every* channel, so a connection re-keyed by russh while three or more channels
//! stream (a pooled target connection carrying several agents' output, or an agent multiplexing
//! uploads) loses all of them: their agents see `ssh` exit 255 with no exit status. A re-key the
//! peer starts is safe (a peer stops sending channel data once it has sent KEXINIT).
//!
//! So gatehouse re-keys rarely and on a data budget that is still far inside what the ciphers
//! allow: [`REKEY_AFTER_BYTES`] is what OpenSSH itself allows AES-GCM (2^32 16-byte blocks) divided
//! by four, and far below the sequence-number and nonce limits of ChaCha20-Poly1305 and
//! AES-CTR with HMAC. Peers still re-key on their own schedule (OpenSSH re-keys ChaCha20-Poly1305
//! after about 1 GiB). Pooled target connections are also rotated long before either limit (see
//! [`crate::upstream::ROTATE_AFTER_BYTES`]), so new channels always start on fresh keys.

use std::time::Duration;

/// Bytes written or read on one connection after which gatehouse starts a key re-exchange.
pub const REKEY_AFTER_BYTES: u64 = 16 << 30;

/// Time after which gatehouse starts a key re-exchange (RFC 4253 §9 recommends an hour).
pub const REKEY_AFTER: Duration = Duration::from_secs(3600);

/// The russh limits for both server and client configurations. Built field by field because
/// `russh::Limits::new` refuses byte budgets above 1 GiB, which is exactly the re-key that loses
/// channels.
pub fn limits() -> russh::Limits {
    let bytes = usize::try_from(REKEY_AFTER_BYTES).unwrap_or(usize::MAX);
    russh::Limits {
        rekey_write_limit: bytes,
        rekey_read_limit: bytes,
        rekey_time_limit: REKEY_AFTER,
    }
}
