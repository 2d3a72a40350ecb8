//! Upstream private keys, encrypted at rest under a master key; the agent never sees them.

use std::path::Path;

use russh::keys::PrivateKey;

/// Vault errors (never carrying key material).
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{0}")]
    Other(String),
}

/// Encrypted key storage backed by the store's `vault` tree.
pub struct Vault {}

impl Vault {
    /// Creates a new random master key file (0600); refuses to overwrite.
    pub fn init_master_key(_path: &Path) -> Result<(), VaultError> {
        Err(VaultError::Other("not implemented".into()))
    }
    /// Opens the vault with the master key file.
    pub fn open(
        _store: &crate::store::Store,
        _master_key_file: &Path,
    ) -> Result<Vault, VaultError> {
        Err(VaultError::Other("not implemented".into()))
    }
    /// Stores (replaces) the key used for `target`.
    pub fn put(&self, _target: &str, _key: &PrivateKey) -> Result<(), VaultError> {
        Err(VaultError::Other("not implemented".into()))
    }
    /// The key for `target`, if any.
    pub fn get(&self, _target: &str) -> Result<Option<PrivateKey>, VaultError> {
        Err(VaultError::Other("not implemented".into()))
    }
    /// Target names and SHA-256 fingerprints of their keys.
    pub fn list(&self) -> Result<Vec<(String, String)>, VaultError> {
        Err(VaultError::Other("not implemented".into()))
    }
}
