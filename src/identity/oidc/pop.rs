//! Proof of possession: the caller signs the exact token bytes with the private half of the key
//! it wants certified, as `ssh-keygen -Y sign -n gatehouse-certificate-request -f KEY` does.
//!
//! This binds the request to one key: a request captured in transit cannot be replayed with the
//! public key swapped. It does not stop a thief who holds the token *and* spends it first with a
//! key of their own; the one-certificate-per-`jti` rule and short token lifetimes bound that.

use russh::keys::ssh_key::public::KeyData;
use russh::keys::ssh_key::{LineEnding, SshSig};
use russh::keys::{HashAlg, PrivateKey, PublicKey};

/// The SSHSIG namespace of a certificate request (a signature made for anything else never
/// counts, e.g. a git commit signature over the same bytes).
pub const PROOF_NAMESPACE: &str = "gatehouse-certificate-request";

/// Smallest RSA modulus signed.
pub const MIN_RSA_BITS: u32 = 2048;

/// Largest armored proof accepted.
const MAX_PROOF_BYTES: usize = 8 * 1024;

/// Why a key or proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("public key: {0}")]
    KeyType(String),
    #[error("proof is not an armored SSH signature (ssh-keygen -Y sign output)")]
    Malformed,
    #[error("proof was not made with the namespace {PROOF_NAMESPACE:?}")]
    Namespace,
    #[error("proof was made by a different key than public_key")]
    OtherKey,
    #[error("proof does not verify over the bearer token")]
    Signature,
}

/// Accepts ed25519, ECDSA and RSA ≥ 2048 keys; refuses DSA, security-key and small RSA keys.
pub fn check_key_type(key: &PublicKey) -> Result<(), ProofError> {
    match key.key_data() {
        KeyData::Ed25519(_) | KeyData::Ecdsa(_) => Ok(()),
        KeyData::Rsa(rsa) if rsa.key_size() >= MIN_RSA_BITS => Ok(()),
        KeyData::Rsa(rsa) => Err(ProofError::KeyType(format!(
            "RSA key of {} bits; at least {MIN_RSA_BITS} are required",
            rsa.key_size()
        ))),
        other => Err(ProofError::KeyType(format!(
            "{} keys are not accepted; use ed25519, ECDSA or RSA >= {MIN_RSA_BITS}",
            other.algorithm()
        ))),
    }
}

/// Verifies that `proof` is `key`'s SSHSIG over `token` in [`PROOF_NAMESPACE`].
pub fn verify_proof(key: &PublicKey, proof: &str, token: &[u8]) -> Result<(), ProofError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(ProofError::Malformed);
    }
    let sig = SshSig::from_pem(proof.trim()).map_err(|_| ProofError::Malformed)?;
    if sig.namespace() != PROOF_NAMESPACE {
        return Err(ProofError::Namespace);
    }
    if sig.public_key() != key.key_data() {
        return Err(ProofError::OtherKey);
    }
    key.verify(PROOF_NAMESPACE, token, &sig)
        .map_err(|_| ProofError::Signature)
}

/// Makes the proof for `token` with `key` (what `gatehouse login` sends).
pub fn sign_proof(key: &PrivateKey, token: &[u8]) -> Result<String, ProofError> {
    key.sign(PROOF_NAMESPACE, HashAlg::Sha512, token)
        .and_then(|sig| sig.to_pem(LineEnding::LF))
        .map_err(|_| ProofError::Signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::private::Ed25519Keypair;

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
    }

    #[test]
    fn proof_round_trip_and_refusals() {
        let k = key(1);
        let proof = sign_proof(&k, b"token").unwrap();
        verify_proof(k.public_key(), &proof, b"token").unwrap();
        assert_eq!(
            verify_proof(k.public_key(), &proof, b"other"),
            Err(ProofError::Signature)
        );
        assert_eq!(
            verify_proof(key(2).public_key(), &proof, b"token"),
            Err(ProofError::OtherKey)
        );
        assert_eq!(
            verify_proof(k.public_key(), "garbage", b"token"),
            Err(ProofError::Malformed)
        );
        let other_ns = k
            .sign("git", HashAlg::Sha512, b"token")
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap();
        assert_eq!(
            verify_proof(k.public_key(), &other_ns, b"token"),
            Err(ProofError::Namespace)
        );
    }

    #[test]
    fn key_types() {
        check_key_type(key(1).public_key()).unwrap();
    }
}
