//! One certificate per token: `jti` (or, for tokens without one, the token's SHA-256) is
//! remembered in the store tree `oidc_jti` until the token's expiry plus leeway, flushed to disk
//! before the certificate is handed out, so a restart does not reopen a spent token.

use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::claims::LEEWAY_SECS;
use crate::store::{Store, StoreError};

/// The store tree holding spent tokens.
pub const TREE: &str = "oidc_jti";

/// Least time between two sweeps of expired entries.
const SWEEP_EVERY_SECS: u64 = 60;

/// Replay store errors (the request is refused: fail closed).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("token already used (one certificate per token)")]
    Replayed,
    #[error("replay store: {0}")]
    Store(String),
}

/// Spent tokens.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    /// `issuer \0 jti` → expiry (u64 big-endian).
    tree: sled::Tree,
    /// Unix time of the last sweep, shared by clones.
    last_sweep: std::sync::Arc<AtomicU64>,
}

/// The replay key of a token: its `jti` when it has one, else the SHA-256 of its bytes
/// (ID tokens often carry no `jti`).
pub fn replay_key(issuer: &str, jti: Option<&str>, token: &str) -> Vec<u8> {
    let mut key = issuer.as_bytes().to_vec();
    key.push(0);
    match jti {
        Some(jti) => {
            key.extend_from_slice(b"jti:");
            key.extend_from_slice(jti.as_bytes());
        }
        None => {
            key.extend_from_slice(b"sha256:");
            key.extend_from_slice(hex::encode(Sha256::digest(token.as_bytes())).as_bytes());
        }
    }
    key
}

impl ReplayGuard {
    /// Opens the tree.
    pub fn open(store: &Store) -> Result<ReplayGuard, StoreError> {
        Ok(ReplayGuard {
            tree: store.tree(TREE)?,
            last_sweep: Default::default(),
        })
    }

    /// Marks `key` spent until `expires_at` (+ leeway); `Replayed` if it already was.
    /// Returns after the mark is on disk.
    pub async fn spend(&self, key: &[u8], expires_at: u64, now: u64) -> Result<(), ReplayError> {
        self.sweep(now);
        let until = expires_at.saturating_add(LEEWAY_SECS).to_be_bytes();
        match self
            .tree
            .compare_and_swap(key, None as Option<&[u8]>, Some(&until[..]))
        {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(ReplayError::Replayed),
            Err(e) => return Err(ReplayError::Store(e.to_string())),
        }
        self.tree
            .flush_async()
            .await
            .map(|_| ())
            .map_err(|e| ReplayError::Store(e.to_string()))
    }

    /// Whether `key` is spent (tests and diagnostics).
    pub fn is_spent(&self, key: &[u8]) -> bool {
        matches!(self.tree.get(key), Ok(Some(_)))
    }

    /// Drops entries whose token can no longer verify anyway (at most once a minute).
    fn sweep(&self, now: u64) {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now < last.saturating_add(SWEEP_EVERY_SECS)
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        for (key, value) in self.tree.iter().flatten() {
            let until = <[u8; 8]>::try_from(value.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if until < now {
                let _ = self.tree.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spent_once_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = replay_key("https://idp", Some("j1"), "tok");
        {
            let store = Store::open(dir.path()).unwrap();
            let guard = ReplayGuard::open(&store).unwrap();
            guard.spend(&key, 2_000, 1_000).await.unwrap();
            assert!(matches!(
                guard.spend(&key, 2_000, 1_000).await,
                Err(ReplayError::Replayed)
            ));
        }
        let store = Store::open(dir.path()).unwrap();
        let guard = ReplayGuard::open(&store).unwrap();
        assert!(matches!(
            guard.spend(&key, 2_000, 1_000).await,
            Err(ReplayError::Replayed)
        ));
        // Past expiry + leeway the sweep forgets it.
        guard.spend(b"other", 3_000, 5_000).await.unwrap();
        assert!(!guard.is_spent(&key));
        assert_ne!(replay_key("i", None, "a"), replay_key("i", None, "b"),);
    }
}
