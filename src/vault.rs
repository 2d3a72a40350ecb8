//! Upstream private keys, encrypted at rest under a master key; the agent never sees them.
//!
//! Each key is stored in the store's `vault` tree as one record:
//! `version (1) || nonce (24) || XChaCha20-Poly1305(OpenSSH PEM)`, with the target name bound as
//! associated data so a record copied under another target's name does not decrypt. The master
//! key is 32 random bytes in a file of its own (0600), ideally on a different volume from the
//! store (`GATEHOUSE_MASTER_KEY_FILE`). A check record written at first open tells a wrong
//! master key apart from a damaged record. Master key, plaintext keys and decrypted bytes are
//! zeroized when dropped and never appear in Debug output or logs. This module does not know
//! which target uses which key at connection time; `upstream` asks it.

use std::fmt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey};
use zeroize::Zeroizing;

use crate::config::{is_target_name, VaultConfig};
use crate::secret_file;
use crate::store::{Store, StoreError};

/// The environment variable that overrides `vault.master_key_file`.
pub const MASTER_KEY_ENV: &str = "GATEHOUSE_MASTER_KEY_FILE";

/// Master key length: XChaCha20-Poly1305 takes a 256-bit key.
pub const MASTER_KEY_LEN: usize = 32;

/// Name of the store tree holding the records.
const TREE: &str = "vault";

/// Record format version (first byte), so the format can change without guessing.
const VERSION: u8 = 1;

/// XChaCha20 nonce length: large enough that random nonces never repeat in practice.
const NONCE_LEN: usize = 24;

/// Key of the check record; target names cannot start with NUL, so it never collides.
const CHECK_KEY: &[u8] = b"\0master-key-check";

/// Plaintext of the check record.
const CHECK_PLAINTEXT: &[u8] = b"gatehouse vault master key check";

/// Vault errors (never carrying key material).
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: already exists; refusing to overwrite the master key (every stored key would be lost)")]
    Exists { path: PathBuf },
    #[error("{path}: a master key is exactly {MASTER_KEY_LEN} bytes, this file has {len}")]
    MasterKeyLength { path: PathBuf, len: usize },
    #[error("{path}: wrong master key: it does not open this vault (check {MASTER_KEY_ENV} and vault.master_key_file)")]
    WrongMasterKey { path: PathBuf },
    #[error("vault record for target {target:?} does not decrypt: it was altered or written under another name")]
    Decrypt { target: String },
    #[error("vault record for target {target:?} is damaged: {reason}")]
    Corrupt { target: String, reason: String },
    #[error("invalid target name {0:?}")]
    BadTarget(String),
    #[error("the key is passphrase-protected; remove the passphrase first (ssh-keygen -p -N '' -f FILE), gatehouse encrypts it itself")]
    EncryptedKey,
    #[error("key encoding failed: {0}")]
    Encoding(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
}

/// Where the master key file is: `GATEHOUSE_MASTER_KEY_FILE` if set and non-empty, else the
/// configured `vault.master_key_file`.
pub fn master_key_path(config: &VaultConfig) -> PathBuf {
    choose_master_key_path(config, std::env::var_os(MASTER_KEY_ENV))
}

/// [`master_key_path`] with the environment value passed in (tests must not mutate the
/// process environment other tests read).
fn choose_master_key_path(config: &VaultConfig, env: Option<std::ffi::OsString>) -> PathBuf {
    match env {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => config.master_key_file.clone(),
    }
}

/// Encrypted key storage backed by the store's `vault` tree.
pub struct Vault {
    /// The `vault` tree: target name → encrypted record.
    tree: sled::Tree,
    /// The cipher keyed with the master key; it zeroizes the key when dropped.
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault").finish_non_exhaustive()
    }
}

impl Vault {
    /// Creates a new random master key file (0600); refuses to overwrite.
    pub fn init_master_key(path: &Path) -> Result<(), VaultError> {
        let io = |source: std::io::Error| match source.kind() {
            std::io::ErrorKind::AlreadyExists => VaultError::Exists {
                path: path.to_path_buf(),
            },
            _ => VaultError::Io {
                path: path.to_path_buf(),
                error: source,
            },
        };
        if path.symlink_metadata().is_ok() {
            return Err(VaultError::Exists {
                path: path.to_path_buf(),
            });
        }
        let key = secret_file::random_bytes::<MASTER_KEY_LEN>().map_err(io)?;
        secret_file::create_new(path, key.as_ref(), secret_file::PRIVATE_MODE).map_err(io)
    }

    /// Opens the vault with the master key file. The first open with a store writes a check
    /// record; later opens with another master key fail with [`VaultError::WrongMasterKey`].
    pub fn open(store: &Store, master_key_file: &Path) -> Result<Vault, VaultError> {
        let bytes =
            secret_file::read_private(master_key_file).map_err(|source| VaultError::Io {
                path: master_key_file.to_path_buf(),
                error: source,
            })?;
        if bytes.len() != MASTER_KEY_LEN {
            return Err(VaultError::MasterKeyLength {
                path: master_key_file.to_path_buf(),
                len: bytes.len(),
            });
        }
        let vault = Vault {
            tree: store.tree(TREE)?,
            cipher: XChaCha20Poly1305::new(Key::from_slice(&bytes)),
        };
        drop(bytes);
        match vault.tree.get(CHECK_KEY)? {
            Some(record) => {
                vault
                    .open_record("", &record)
                    .map_err(|_| VaultError::WrongMasterKey {
                        path: master_key_file.to_path_buf(),
                    })?;
            }
            None => {
                let record = vault.seal("", CHECK_PLAINTEXT)?;
                vault.tree.insert(CHECK_KEY, record)?;
                vault.tree.flush()?;
            }
        }
        Ok(vault)
    }

    /// Stores (replaces) the key used for `target`.
    pub fn put(&self, target: &str, key: &PrivateKey) -> Result<(), VaultError> {
        if !is_target_name(target) {
            return Err(VaultError::BadTarget(target.to_string()));
        }
        if key.is_encrypted() {
            return Err(VaultError::EncryptedKey);
        }
        let pem = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| VaultError::Encoding(e.to_string()))?;
        let record = self.seal(target, pem.as_bytes())?;
        self.tree.insert(target.as_bytes(), record)?;
        self.tree.flush()?;
        Ok(())
    }

    /// The key for `target`, if any.
    pub fn get(&self, target: &str) -> Result<Option<PrivateKey>, VaultError> {
        if !is_target_name(target) {
            return Ok(None);
        }
        match self.tree.get(target.as_bytes())? {
            None => Ok(None),
            Some(record) => {
                let pem = self.open_record(target, &record)?;
                let key = PrivateKey::from_openssh(&*pem).map_err(|e| VaultError::Corrupt {
                    target: target.to_string(),
                    reason: e.to_string(),
                })?;
                Ok(Some(key))
            }
        }
    }

    /// Target names and SHA-256 fingerprints of their keys.
    pub fn list(&self) -> Result<Vec<(String, String)>, VaultError> {
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (name, _) = item?;
            if name.first() == Some(&0) {
                continue;
            }
            let name = String::from_utf8_lossy(&name).into_owned();
            if let Some(key) = self.get(&name)? {
                let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
                out.push((name, fingerprint));
            }
        }
        Ok(out)
    }

    /// Removes the key for `target`; returns whether there was one.
    pub fn remove(&self, target: &str) -> Result<bool, VaultError> {
        let removed = self.tree.remove(target.as_bytes())?.is_some();
        self.tree.flush()?;
        Ok(removed)
    }

    /// Encrypts `plaintext` for `target` with a fresh random nonce.
    fn seal(&self, target: &str, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let nonce = secret_file::random_bytes::<NONCE_LEN>().map_err(|source| VaultError::Io {
            path: PathBuf::from("/dev/urandom"),
            error: source,
        })?;
        let aad = associated_data(target);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(nonce.as_ref()),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Encoding("encryption failed".into()))?;
        let mut record = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        record.push(VERSION);
        record.extend_from_slice(nonce.as_ref());
        record.extend_from_slice(&ciphertext);
        Ok(record)
    }

    /// Decrypts a record stored under `target`.
    fn open_record(&self, target: &str, record: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let corrupt = |reason: &str| VaultError::Corrupt {
            target: target.to_string(),
            reason: reason.to_string(),
        };
        let (version, rest) = record
            .split_first()
            .ok_or_else(|| corrupt("empty record"))?;
        if *version != VERSION {
            return Err(corrupt(&format!("unknown record version {version}")));
        }
        if rest.len() < NONCE_LEN {
            return Err(corrupt("record too short"));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let aad = associated_data(target);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Decrypt {
                target: target.to_string(),
            })
    }
}

/// Binds a record to its target name (and to this format).
fn associated_data(target: &str) -> Vec<u8> {
    let mut aad = b"gatehouse-vault-v1:".to_vec();
    aad.extend_from_slice(target.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::private::Ed25519Keypair;
    use std::os::unix::fs::PermissionsExt;

    fn key() -> PrivateKey {
        let seed = secret_file::random_bytes::<32>().unwrap();
        PrivateKey::from(Ed25519Keypair::from_seed(&seed))
    }

    struct Fixture {
        dir: tempfile::TempDir,
        store: Store,
        master: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("data")).unwrap();
        let master = dir.path().join("keys/master.key");
        Vault::init_master_key(&master).unwrap();
        Fixture { dir, store, master }
    }

    #[test]
    fn master_key_file() {
        let f = fixture();
        let meta = std::fs::metadata(&f.master).unwrap();
        assert_eq!(meta.len(), 32);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(matches!(
            Vault::init_master_key(&f.master),
            Err(VaultError::Exists { .. })
        ));
        let short = f.dir.path().join("short");
        secret_file::create_new(&short, &[1; 16], 0o600).unwrap();
        assert!(matches!(
            Vault::open(&f.store, &short),
            Err(VaultError::MasterKeyLength { len: 16, .. })
        ));
    }

    #[test]
    fn put_get_list_roundtrip() {
        let f = fixture();
        let vault = Vault::open(&f.store, &f.master).unwrap();
        assert!(vault.list().unwrap().is_empty());
        let k1 = key();
        let k2 = key();
        vault.put("web-1", &k1).unwrap();
        vault.put("db-1", &k2).unwrap();
        let got = vault.get("web-1").unwrap().unwrap();
        assert_eq!(got.public_key().key_data(), k1.public_key().key_data());
        assert!(vault.get("nope").unwrap().is_none());
        let list = vault.list().unwrap();
        assert_eq!(
            list,
            vec![
                (
                    "db-1".to_string(),
                    k2.fingerprint(HashAlg::Sha256).to_string()
                ),
                (
                    "web-1".to_string(),
                    k1.fingerprint(HashAlg::Sha256).to_string()
                ),
            ]
        );
        // Replace.
        vault.put("web-1", &k2).unwrap();
        let got = vault.get("web-1").unwrap().unwrap();
        assert_eq!(got.public_key().key_data(), k2.public_key().key_data());
        assert!(vault.remove("db-1").unwrap());
        assert_eq!(vault.list().unwrap().len(), 1);
        assert!(matches!(
            vault.put("Bad Name", &k1),
            Err(VaultError::BadTarget(_))
        ));
        assert_eq!(format!("{vault:?}"), "Vault { .. }");
    }

    #[test]
    fn at_rest_is_encrypted_and_bound_to_target() {
        let f = fixture();
        let vault = Vault::open(&f.store, &f.master).unwrap();
        let k = key();
        vault.put("web-1", &k).unwrap();
        let pem = k.to_openssh(LineEnding::LF).unwrap();
        let tree = f.store.tree(TREE).unwrap();
        let record = tree.get("web-1").unwrap().unwrap();
        assert!(!record
            .windows(10)
            .any(|w| pem.as_bytes().windows(10).any(|p| p == w)));
        // A record copied under another name does not decrypt.
        tree.insert("web-2", record.clone()).unwrap();
        assert!(matches!(
            vault.get("web-2"),
            Err(VaultError::Decrypt { .. })
        ));
        // A flipped bit is detected.
        let mut bad = record.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        tree.insert("web-1", bad).unwrap();
        assert!(matches!(
            vault.get("web-1"),
            Err(VaultError::Decrypt { .. })
        ));
        // Two puts of the same key never reuse a nonce.
        vault.put("a", &k).unwrap();
        vault.put("b", &k).unwrap();
        let (a, b) = (
            tree.get("a").unwrap().unwrap(),
            tree.get("b").unwrap().unwrap(),
        );
        assert_ne!(a[1..25], b[1..25]);
    }

    #[test]
    fn wrong_master_key_is_a_clear_error() {
        let f = fixture();
        Vault::open(&f.store, &f.master)
            .unwrap()
            .put("web-1", &key())
            .unwrap();
        let other = f.dir.path().join("other.key");
        Vault::init_master_key(&other).unwrap();
        let err = Vault::open(&f.store, &other).unwrap_err();
        assert!(matches!(err, VaultError::WrongMasterKey { .. }), "{err}");
        assert!(err.to_string().contains("wrong master key"));
        // A master key readable by others is refused.
        std::fs::set_permissions(&f.master, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            Vault::open(&f.store, &f.master),
            Err(VaultError::Io { .. })
        ));
    }

    #[test]
    fn env_overrides_master_key_path() {
        let config = VaultConfig {
            master_key_file: PathBuf::from("/configured"),
        };
        let choose = |env: Option<&str>| choose_master_key_path(&config, env.map(Into::into));
        assert_eq!(choose(Some("/from/env")), PathBuf::from("/from/env"));
        assert_eq!(choose(Some("")), PathBuf::from("/configured"));
        assert_eq!(choose(None), PathBuf::from("/configured"));
    }
}
