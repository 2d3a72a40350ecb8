//! The user CA: issues OpenSSH user certificates and verifies the ones agents present.
//!
//! russh only checks that a certificate is self-consistent; everything that makes it trustworthy
//! (signed by our CA, type user, validity with skew, critical options, principals, revocation) is
//! checked here by [`CertVerifier`]. This module does not decide *what* an identity may reach
//! (grants live in `config`) and never logs key material.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{Fingerprint, LineEnding};
use russh::keys::{Certificate, HashAlg, PrivateKey, PublicKey};

use crate::secret_file;

pub use super::revocation::{RevocationEntry, RevocationWatcher, Revocations};

/// Clock skew tolerated on both ends of a certificate's validity window, and how far `issue`
/// backdates `valid_after` (agents' clocks drift; a certificate must work the second it arrives).
pub const CLOCK_SKEW_SECS: u64 = 60;

/// Most principals a certificate may carry (the identity plus its groups). Bounds the work done
/// per authentication and the size of what we log.
pub const MAX_PRINCIPALS: usize = 32;

/// Prefix of group principals (`group:NAME`), as matched by grants.
pub const GROUP_PREFIX: &str = "group:";

/// The only critical option gatehouse understands (PROTOCOL.certkeys); any other is refused.
const SOURCE_ADDRESS: &str = "source-address";

/// Errors from the CA (never carrying key material).
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: already exists; refusing to overwrite it (move it away first)")]
    Exists { path: PathBuf },
    #[error("{path}: not a usable OpenSSH key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error(
        "{path}: the CA key is passphrase-protected; gatehouse needs it unencrypted with mode 0600"
    )]
    Encrypted { path: PathBuf },
    #[error("invalid identity {0:?}: must match ^[a-z0-9_][a-z0-9._@-]{{0,63}}$")]
    BadIdentity(String),
    #[error("invalid group {0:?}: must match ^[a-z0-9_][a-z0-9._@-]{{0,63}}$")]
    BadGroup(String),
    #[error("too many principals ({0}); a certificate carries at most {MAX_PRINCIPALS}")]
    TooManyPrincipals(usize),
    #[error("invalid ttl: {0}")]
    BadTtl(String),
    #[error("signing the certificate failed: {0}")]
    Sign(String),
    #[error("{path}:{line}: {message}")]
    RevocationSyntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("invalid revocation: {0}")]
    BadRevocation(String),
}

/// Why a presented certificate was refused (logged; the agent only sees a generic refusal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertRejection {
    #[error("certificate signed by an untrusted CA ({fingerprint})")]
    ForeignCa { fingerprint: String },
    #[error("certificate signature does not verify")]
    Signature,
    #[error("certificate is a host certificate, not a user certificate")]
    HostCertificate,
    #[error("certificate validity window is empty (valid_after {valid_after} >= valid_before {valid_before})")]
    EmptyValidity { valid_after: u64, valid_before: u64 },
    #[error("certificate not valid yet (valid after {valid_after}, now {now})")]
    NotYetValid { valid_after: u64, now: u64 },
    #[error("certificate expired (valid before {valid_before}, now {now})")]
    Expired { valid_before: u64, now: u64 },
    #[error("certificate carries unsupported critical option {0:?}")]
    UnknownCriticalOption(String),
    #[error("client address {client} not allowed by source-address {allowed:?}")]
    SourceAddress { allowed: String, client: String },
    #[error("certificate has an empty key id")]
    EmptyKeyId,
    #[error("certificate key id {0:?} is not a valid identity")]
    BadKeyId(String),
    #[error("certificate names no principals (an unrestricted certificate is never accepted)")]
    NoPrincipals,
    #[error("certificate names {0} principals (at most {MAX_PRINCIPALS})")]
    TooManyPrincipals(usize),
    #[error("certificate principal {0:?} is not an identity or group:NAME")]
    BadPrincipal(String),
    #[error("certificate revoked (serial {serial}, identity {identity:?})")]
    Revoked { serial: u64, identity: String },
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
    /// Becomes the key id and the first principal; audit logs name this.
    pub identity: String,
    /// Each becomes a `group:NAME` principal that grants can match.
    pub groups: Vec<String>,
    /// How long the certificate is valid from now (agents: minutes).
    pub ttl: Duration,
    /// The subject's public key; the holder of its private half can use the certificate.
    pub public_key: PublicKey,
    /// Extensions `permit-pty` (humans, reviewers); agents get none.
    pub permit_pty: bool,
}

/// The CA's signing key. Debug shows only the fingerprint; the key zeroizes itself on drop.
pub struct UserCa {
    /// The unencrypted CA private key.
    key: PrivateKey,
}

impl fmt::Debug for UserCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserCa")
            .field(
                "fingerprint",
                &self.key.fingerprint(HashAlg::Sha256).to_string(),
            )
            .finish_non_exhaustive()
    }
}

/// Where the public half of the key at `private_key` lives (`PATH.pub`, as ssh-keygen does).
pub fn public_key_path(private_key: &Path) -> PathBuf {
    let mut name = private_key.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Whether `name` is a valid identity or group name: `^[a-z0-9_][a-z0-9._@-]{0,63}$`.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64
        && chars.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '@' | '-')
        })
}

/// Whether `principal` is a valid identity or `group:NAME`.
pub fn is_valid_principal(principal: &str) -> bool {
    is_valid_name(principal.strip_prefix(GROUP_PREFIX).unwrap_or(principal))
}

/// Whether the certificate grants `permit-pty` (reviewers and humans; agents never get it).
pub fn permits_pty(cert: &Certificate) -> bool {
    cert.extensions().contains_key("permit-pty")
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl UserCa {
    /// Creates a new ed25519 CA key at `path` (0600) and its `.pub`; refuses to overwrite.
    pub fn init(path: &Path) -> Result<UserCa, CaError> {
        let pub_path = public_key_path(path);
        for p in [path, pub_path.as_path()] {
            if p.symlink_metadata().is_ok() {
                return Err(CaError::Exists {
                    path: p.to_path_buf(),
                });
            }
        }
        let io = |p: &Path| {
            let path = p.to_path_buf();
            move |error| CaError::Io { path, error }
        };
        // The seed comes from the OS generator; ssh-key's `PrivateKey::random` wants the
        // rand_core 0.10 traits, which the rest of the crate does not use.
        let seed = secret_file::random_bytes::<32>().map_err(io(path))?;
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        key.set_comment("gatehouse user CA");
        let pem = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| CaError::BadKey {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        secret_file::create_new(path, pem.as_bytes(), secret_file::PRIVATE_MODE).map_err(
            |source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => CaError::Exists {
                    path: path.to_path_buf(),
                },
                _ => CaError::Io {
                    path: path.to_path_buf(),
                    error: source,
                },
            },
        )?;
        let public = key.public_key().to_openssh().map_err(|e| CaError::BadKey {
            path: pub_path.clone(),
            reason: e.to_string(),
        })?;
        secret_file::create_new(
            &pub_path,
            format!("{public}\n").as_bytes(),
            secret_file::PUBLIC_MODE,
        )
        .map_err(io(&pub_path))?;
        Ok(UserCa { key })
    }

    /// Loads the CA key (must be unencrypted and not readable by group or others).
    pub fn load(path: &Path) -> Result<UserCa, CaError> {
        let bytes = secret_file::read_private(path).map_err(|source| CaError::Io {
            path: path.to_path_buf(),
            error: source,
        })?;
        let key = PrivateKey::from_openssh(&*bytes).map_err(|e| CaError::BadKey {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if key.is_encrypted() {
            return Err(CaError::Encrypted {
                path: path.to_path_buf(),
            });
        }
        Ok(UserCa { key })
    }

    /// The CA's public key.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key().clone()
    }

    /// Signs a user certificate: key id = identity, principals = identity + `group:NAME`,
    /// random unique serial, valid-after backdated 60 s.
    pub fn issue(&self, req: &CertRequest) -> Result<Certificate, CaError> {
        self.issue_at(req, unix_now())
    }

    /// [`UserCa::issue`] as if the time were `now` (unix seconds).
    pub fn issue_at(&self, req: &CertRequest, now: u64) -> Result<Certificate, CaError> {
        if !is_valid_name(&req.identity) {
            return Err(CaError::BadIdentity(req.identity.clone()));
        }
        let mut principals = vec![req.identity.clone()];
        let mut seen = BTreeSet::new();
        for group in &req.groups {
            if !is_valid_name(group) {
                return Err(CaError::BadGroup(group.clone()));
            }
            if seen.insert(group.as_str()) {
                principals.push(format!("{GROUP_PREFIX}{group}"));
            }
        }
        if principals.len() > MAX_PRINCIPALS {
            return Err(CaError::TooManyPrincipals(principals.len()));
        }
        let ttl = req.ttl.as_secs();
        if ttl == 0 {
            return Err(CaError::BadTtl("must be at least one second".into()));
        }
        let valid_before = now
            .checked_add(ttl)
            .ok_or_else(|| CaError::BadTtl("too large".into()))?;
        let valid_after = now.saturating_sub(CLOCK_SKEW_SECS);
        let sign_err = |e: russh::keys::ssh_key::Error| CaError::Sign(e.to_string());
        let random = secret_file::random_bytes::<{ 8 + Builder::RECOMMENDED_NONCE_SIZE }>()
            .map_err(|e| CaError::Sign(e.to_string()))?;
        let (serial_bytes, nonce) = random.split_at(8);
        let mut serial = [0u8; 8];
        serial.copy_from_slice(serial_bytes);
        // Serial 0 means "no serial" to OpenSSH's revocation lists; never hand it out.
        let serial = u64::from_be_bytes(serial).max(1);

        let mut builder = Builder::new(
            nonce.to_vec(),
            req.public_key.key_data().clone(),
            valid_after,
            valid_before,
        )
        .map_err(sign_err)?;
        builder
            .serial(serial)
            .and_then(|b| b.cert_type(CertType::User))
            .and_then(|b| b.key_id(req.identity.clone()))
            .and_then(|b| b.comment(req.identity.clone()))
            .map_err(sign_err)?;
        for principal in principals {
            builder.valid_principal(principal).map_err(sign_err)?;
        }
        if req.permit_pty {
            builder.extension("permit-pty", "").map_err(sign_err)?;
        }
        builder.sign(&self.key).map_err(sign_err)
    }
}

/// Checks certificates presented by agents.
#[derive(Debug, Clone)]
pub struct CertVerifier {
    /// SHA-256 fingerprints of the CA keys whose signatures are accepted (current + rotation).
    trusted: Vec<Fingerprint>,
}

impl CertVerifier {
    /// Trusts certificates signed by any of these CA public keys.
    pub fn new(trusted: Vec<PublicKey>) -> CertVerifier {
        CertVerifier {
            trusted: trusted
                .iter()
                .map(|k| k.fingerprint(HashAlg::Sha256))
                .collect(),
        }
    }

    /// The verifier for a configuration: the CA key's `.pub` plus `trusted_public_keys`.
    pub fn from_config(ca: &crate::config::CaConfig) -> Result<CertVerifier, CaError> {
        let pub_path = public_key_path(&ca.private_key);
        let mut keys =
            vec![
                PublicKey::read_openssh_file(&pub_path).map_err(|e| CaError::BadKey {
                    path: pub_path.clone(),
                    reason: e.to_string(),
                })?,
            ];
        for line in &ca.trusted_public_keys {
            keys.push(
                PublicKey::from_openssh(line.trim()).map_err(|e| CaError::BadKey {
                    path: PathBuf::from("ca.trusted_public_keys"),
                    reason: e.to_string(),
                })?,
            );
        }
        Ok(CertVerifier::new(keys))
    }

    /// Verifies a certificate at unix time `now` for a client at `client_ip`.
    ///
    /// Order: who signed it, whether the signature holds, then the signed fields, so that a
    /// forged certificate is reported as such and not by whatever field it happens to get wrong.
    pub fn verify(
        &self,
        cert: &Certificate,
        now: u64,
        client_ip: Option<IpAddr>,
        revoked: &Revocations,
    ) -> Result<CertIdentity, CertRejection> {
        let signer = cert.signature_key().fingerprint(HashAlg::Sha256);
        if !self.trusted.contains(&signer) {
            return Err(CertRejection::ForeignCa {
                fingerprint: signer.to_string(),
            });
        }
        let (valid_after, valid_before) = (cert.valid_after(), cert.valid_before());
        if valid_after >= valid_before {
            return Err(CertRejection::EmptyValidity {
                valid_after,
                valid_before,
            });
        }
        // `validate_at` checks signature, CA and time; time is checked below with our skew, so
        // ask it at an instant inside the window to have it check only signature and CA.
        cert.validate_at(valid_after, std::slice::from_ref(&signer))
            .map_err(|_| CertRejection::Signature)?;
        if cert.cert_type() != CertType::User {
            return Err(CertRejection::HostCertificate);
        }
        if now.saturating_add(CLOCK_SKEW_SECS) < valid_after {
            return Err(CertRejection::NotYetValid { valid_after, now });
        }
        if now >= valid_before.saturating_add(CLOCK_SKEW_SECS) {
            return Err(CertRejection::Expired { valid_before, now });
        }
        for (name, value) in cert.critical_options().iter() {
            if name != SOURCE_ADDRESS {
                // force-command included: gatehouse decides commands itself (fail closed).
                return Err(CertRejection::UnknownCriticalOption(name.clone()));
            }
            check_source_address(value, client_ip)?;
        }
        let identity = cert.key_id();
        if identity.is_empty() {
            return Err(CertRejection::EmptyKeyId);
        }
        if !is_valid_name(identity) {
            return Err(CertRejection::BadKeyId(identity.to_string()));
        }
        let principals = cert.valid_principals();
        if principals.is_empty() {
            return Err(CertRejection::NoPrincipals);
        }
        if principals.len() > MAX_PRINCIPALS {
            return Err(CertRejection::TooManyPrincipals(principals.len()));
        }
        if let Some(bad) = principals.iter().find(|p| !is_valid_principal(p)) {
            return Err(CertRejection::BadPrincipal(bad.clone()));
        }
        if revoked.is_revoked(cert.serial(), identity) {
            return Err(CertRejection::Revoked {
                serial: cert.serial(),
                identity: identity.to_string(),
            });
        }
        Ok(CertIdentity {
            identity: identity.to_string(),
            principals: principals.to_vec(),
            serial: cert.serial(),
            valid_before,
        })
    }
}

/// `source-address`: a comma-separated CIDR list the client address must fall in. A missing
/// client address or an unparsable entry refuses (fail closed).
fn check_source_address(allowed: &str, client_ip: Option<IpAddr>) -> Result<(), CertRejection> {
    let refuse = |client: &str| CertRejection::SourceAddress {
        allowed: allowed.to_string(),
        client: client.to_string(),
    };
    let client = client_ip.ok_or_else(|| refuse("unknown"))?.to_canonical();
    let mut matched = false;
    for entry in allowed.split(',') {
        let net = parse_cidr(entry.trim()).ok_or_else(|| refuse(&client.to_string()))?;
        matched |= net.contains(client);
    }
    if matched {
        Ok(())
    } else {
        Err(refuse(&client.to_string()))
    }
}

/// An address block, `addr/prefix` or a single address.
struct Cidr {
    /// Network address as written.
    addr: IpAddr,
    /// Leading bits that must match.
    prefix: u32,
}

impl Cidr {
    /// Whether `ip` is inside the block (IPv4 never matches an IPv6 block and vice versa).
    fn contains(&self, ip: IpAddr) -> bool {
        let (net, ip, width) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                (u128::from(n.to_bits()), u128::from(i.to_bits()), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => (n.to_bits(), i.to_bits(), 128),
            _ => return false,
        };
        if self.prefix == 0 {
            return true;
        }
        let shift = width - self.prefix;
        (net >> shift) == (ip >> shift)
    }
}

/// Parses `a.b.c.d/n`, `v6/n` or a bare address.
fn parse_cidr(text: &str) -> Option<Cidr> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p.parse::<u32>().ok().filter(|p| *p <= width)?,
        None => width,
    };
    Some(Cidr {
        addr: addr.to_canonical(),
        prefix: if addr.to_canonical().is_ipv4() && !addr.is_ipv4() {
            prefix.saturating_sub(96)
        } else {
            prefix
        },
    })
}

#[cfg(test)]
#[path = "ca_tests.rs"]
mod tests;
