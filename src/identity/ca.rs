//! The user CA: issues OpenSSH user certificates and verifies the ones agents present.
//!
//! russh only checks that a certificate is self-consistent; everything that makes it trustworthy
//! (signed by our CA, type user, validity with skew, critical options, revocation) is checked here.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use russh::keys::{Certificate, PrivateKey, PublicKey};

/// Errors from the CA (never carrying key material).
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{0}")]
    Other(String),
}

/// Why a presented certificate was refused (logged; the agent only sees a generic refusal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertRejection {
    #[error("{0}")]
    Other(String),
}

/// The identity a verified certificate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The certificate's key id (= identity).
    pub identity: String,
    /// All principals: the identity and `group:NAME` entries.
    pub principals: Vec<String>,
    /// Certificate serial (for revocation and audit).
    pub serial: u64,
    /// Unix time after which the certificate is no longer valid.
    pub valid_before: u64,
}

/// What `issue` puts into a certificate.
#[derive(Debug, Clone)]
pub struct CertRequest {
    pub identity: String,
    pub groups: Vec<String>,
    pub ttl: Duration,
    pub public_key: PublicKey,
    /// Extensions `permit-pty` (humans, reviewers); agents get none.
    pub permit_pty: bool,
}

/// The CA's signing key.
pub struct UserCa {
    key: PrivateKey,
}

impl UserCa {
    /// Creates a new ed25519 CA key at `path` (0600) and its `.pub`; refuses to overwrite.
    pub fn init(_path: &Path) -> Result<UserCa, CaError> {
        Err(CaError::Other("not implemented".into()))
    }
    /// Loads the CA key.
    pub fn load(_path: &Path) -> Result<UserCa, CaError> {
        Err(CaError::Other("not implemented".into()))
    }
    /// The CA's public key.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key().clone()
    }
    /// Signs a user certificate: key id = identity, principals = identity + `group:NAME`,
    /// random unique serial, valid-after backdated 60 s.
    pub fn issue(&self, _req: &CertRequest) -> Result<Certificate, CaError> {
        Err(CaError::Other("not implemented".into()))
    }
}

/// Checks certificates presented by agents.
#[derive(Debug, Clone)]
pub struct CertVerifier {}

impl CertVerifier {
    /// Trusts certificates signed by any of these CA public keys.
    pub fn new(_trusted: Vec<PublicKey>) -> CertVerifier {
        CertVerifier {}
    }
    /// Verifies a certificate at unix time `now` for a client at `client_ip`.
    pub fn verify(
        &self,
        _cert: &Certificate,
        _now: u64,
        _client_ip: Option<IpAddr>,
        _revoked: &crate::identity::ca::Revocations,
    ) -> Result<CertIdentity, CertRejection> {
        Err(CertRejection::Other("not implemented".into()))
    }
}

/// Revoked serials and identities, read from `DATA/revocations` (a small text file, so that
/// `gatehouse ca revoke` works while the server runs; the server re-reads it when it changes).
#[derive(Debug, Clone, Default)]
pub struct Revocations {}

impl Revocations {
    /// Loads the list (a missing file is an empty list).
    pub fn load(_path: &Path) -> Result<Revocations, CaError> {
        Ok(Revocations {})
    }
    /// Re-reads the file when it changed since the last read.
    pub fn reload_if_changed(&mut self, _path: &Path) {}
}
