//! Tests of issuance and of every refusal path of [`CertVerifier`], plus interoperability with
//! the real OpenSSH `ssh-keygen` in both directions.

use super::*;
use std::process::Command;

const NOW: u64 = 1_800_000_000;

fn key() -> PrivateKey {
    let seed = secret_file::random_bytes::<32>().unwrap();
    PrivateKey::from(Ed25519Keypair::from_seed(&seed))
}

fn ca() -> UserCa {
    UserCa { key: key() }
}

fn request(identity: &str, groups: &[&str]) -> CertRequest {
    CertRequest {
        identity: identity.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ttl: Duration::from_secs(600),
        public_key: key().public_key().clone(),
        permit_pty: false,
    }
}

/// A certificate built directly with ssh-key, for the cases `issue` refuses to make.
fn build(signer: &PrivateKey, edit: impl FnOnce(&mut Builder)) -> Certificate {
    let mut b = Builder::new(
        vec![7u8; 16],
        key().public_key().key_data().clone(),
        NOW - 60,
        NOW + 600,
    )
    .unwrap();
    edit(&mut b);
    b.sign(signer).unwrap()
}

/// Defaults matching what `issue` makes; `edit` may set fields the defaults leave open.
fn good(b: &mut Builder) {
    b.serial(99).unwrap();
    b.cert_type(CertType::User).unwrap();
    b.key_id("alice").unwrap();
    b.valid_principal("alice").unwrap();
}

fn verifier(ca: &UserCa) -> CertVerifier {
    CertVerifier::new(vec![ca.public_key()])
}

fn check(ca: &UserCa, cert: &Certificate) -> Result<CertIdentity, CertRejection> {
    verifier(ca).verify(
        cert,
        NOW,
        Some("10.1.2.3".parse().unwrap()),
        &Revocations::default(),
    )
}

#[test]
fn init_load_and_refuse_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca/user_ca");
    let ca = UserCa::init(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let public = PublicKey::read_openssh_file(public_key_path(&path)).unwrap();
    assert_eq!(public.key_data(), ca.public_key().key_data());
    let loaded = UserCa::load(&path).unwrap();
    assert_eq!(loaded.public_key().key_data(), ca.public_key().key_data());
    assert!(matches!(UserCa::init(&path), Err(CaError::Exists { .. })));
    // Debug shows the fingerprint only.
    let debug = format!("{loaded:?}");
    assert!(
        debug.contains("SHA256:") && !debug.contains("PRIVATE"),
        "{debug}"
    );
    // A CA key readable by others is refused.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(UserCa::load(&path), Err(CaError::Io { .. })));
}

use std::os::unix::fs::PermissionsExt;

#[test]
fn issue_fields() {
    let ca = ca();
    let cert = ca
        .issue_at(
            &request("alice@example.com", &["agents", "ops", "agents"]),
            NOW,
        )
        .unwrap();
    assert_eq!(cert.key_id(), "alice@example.com");
    assert_eq!(
        cert.valid_principals(),
        ["alice@example.com", "group:agents", "group:ops"]
    );
    assert_eq!(cert.valid_after(), NOW - 60);
    assert_eq!(cert.valid_before(), NOW + 600);
    assert_eq!(cert.cert_type(), CertType::User);
    assert_ne!(cert.serial(), 0);
    assert!(cert.extensions().is_empty() && cert.critical_options().is_empty());
    assert!(!permits_pty(&cert));
    let other = ca
        .issue_at(&request("alice@example.com", &[]), NOW)
        .unwrap();
    assert_ne!(cert.serial(), other.serial());

    let mut human = request("bob", &["reviewers"]);
    human.permit_pty = true;
    let cert = ca.issue_at(&human, NOW).unwrap();
    assert!(permits_pty(&cert));
    let id = check(&ca, &cert).unwrap();
    assert_eq!(id.identity, "bob");
    assert_eq!(id.principals, ["bob", "group:reviewers"]);
    assert_eq!(id.serial, cert.serial());
    assert_eq!(id.valid_before, NOW + 600);
}

#[test]
fn issue_refuses_bad_requests() {
    let ca = ca();
    for bad in ["", "Alice", "-x", "a b", "a:b", &"a".repeat(65)] {
        assert!(
            matches!(
                ca.issue_at(&request(bad, &[]), NOW),
                Err(CaError::BadIdentity(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        ca.issue_at(&request("a", &["Ops"]), NOW),
        Err(CaError::BadGroup(_))
    ));
    let many: Vec<String> = (0..32).map(|i| format!("g{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(matches!(
        ca.issue_at(&request("a", &many), NOW),
        Err(CaError::TooManyPrincipals(33))
    ));
    assert!(ca.issue_at(&request("a", &many[..31]), NOW).is_ok());
    let mut zero = request("a", &[]);
    zero.ttl = Duration::ZERO;
    assert!(matches!(ca.issue_at(&zero, NOW), Err(CaError::BadTtl(_))));
}

#[test]
fn ssh_keygen_reads_issued_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let mut req = request("agent-7", &["agents"]);
    req.permit_pty = true;
    let cert = ca.issue(&req).unwrap();
    let path = dir.path().join("id-cert.pub");
    std::fs::write(&path, cert.to_openssh().unwrap()).unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("user certificate"), "{text}");
    assert!(text.contains("Key ID: \"agent-7\""), "{text}");
    assert!(
        text.contains(&format!("Serial: {}", cert.serial())),
        "{text}"
    );
    let principals = text.split("Principals:").nth(1).unwrap();
    assert!(
        principals.contains("agent-7") && principals.contains("group:agents"),
        "{text}"
    );
    assert!(text.contains("permit-pty"), "{text}");
    let ca_fp = ca.public_key().fingerprint(HashAlg::Sha256).to_string();
    assert!(text.contains(&ca_fp), "{text}");
}

#[test]
fn verifies_certificate_signed_by_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let keygen = |args: &[&str]| {
        let out = Command::new("ssh-keygen")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    keygen(&["-q", "-t", "ed25519", "-N", "", "-f", "ca"]);
    keygen(&["-q", "-t", "ed25519", "-N", "", "-f", "id"]);
    keygen(&[
        "-q",
        "-s",
        "ca",
        "-I",
        "carol",
        "-n",
        "carol,group:ops",
        "-V",
        "-5m:+5m",
        "-z",
        "77",
        "-O",
        "clear",
        "-O",
        "source-address=10.0.0.0/8,::1",
        "id.pub",
    ]);
    let ca = UserCa::load(&dir.path().join("ca")).unwrap();
    let cert = Certificate::read_file(&dir.path().join("id-cert.pub")).unwrap();
    let v = verifier(&ca);
    let id = v
        .verify(
            &cert,
            unix_now(),
            Some("10.9.9.9".parse().unwrap()),
            &Revocations::default(),
        )
        .unwrap();
    assert_eq!((id.identity.as_str(), id.serial), ("carol", 77));
    assert_eq!(id.principals, ["carol", "group:ops"]);
    let refused = v.verify(
        &cert,
        unix_now(),
        Some("192.168.1.1".parse().unwrap()),
        &Revocations::default(),
    );
    assert!(
        matches!(refused, Err(CertRejection::SourceAddress { .. })),
        "{refused:?}"
    );
}

#[test]
fn refuses_foreign_ca() {
    let ours = ca();
    let foreign = key();
    let cert = build(&foreign, good);
    match check(&ours, &cert) {
        Err(CertRejection::ForeignCa { fingerprint }) => {
            assert_eq!(
                fingerprint,
                foreign.fingerprint(HashAlg::Sha256).to_string()
            )
        }
        other => panic!("{other:?}"),
    }
    // Trusting several CA keys (rotation) accepts either.
    let both = CertVerifier::new(vec![ours.public_key(), foreign.public_key().clone()]);
    assert!(both
        .verify(&cert, NOW, None, &Revocations::default())
        .is_ok());
}

#[test]
fn refuses_tampered_signature() {
    let ca = ca();
    let cert = build(&ca.key, good);
    let mut bytes = cert.to_bytes().unwrap();
    let at = bytes.windows(5).position(|w| w == b"alice").unwrap();
    bytes[at + 4] = b'x';
    let forged = Certificate::from_bytes(&bytes).unwrap();
    assert_eq!(forged.key_id(), "alicx");
    assert_eq!(check(&ca, &forged), Err(CertRejection::Signature));
}

#[test]
fn validity_with_skew() {
    let ca = ca();
    let cert = build(&ca.key, good); // valid NOW-60 .. NOW+600
    let v = verifier(&ca);
    let at = |now: u64| v.verify(&cert, now, None, &Revocations::default());
    assert!(at(NOW).is_ok());
    // Up to 60 s early (client clock ahead of ours) and up to 60 s late are tolerated.
    assert!(at(NOW - 120).is_ok());
    assert!(matches!(
        at(NOW - 121),
        Err(CertRejection::NotYetValid { .. })
    ));
    assert!(at(NOW + 659).is_ok());
    assert!(matches!(at(NOW + 660), Err(CertRejection::Expired { .. })));

    let expired = build(&ca.key, |b| {
        good(b);
    });
    assert!(matches!(
        v.verify(&expired, NOW + 3600, None, &Revocations::default()),
        Err(CertRejection::Expired { valid_before, now }) if valid_before == NOW + 600 && now == NOW + 3600
    ));
    let future = Builder::new(
        vec![1; 16],
        key().public_key().key_data().clone(),
        NOW + 3600,
        NOW + 7200,
    )
    .and_then(|mut b| {
        good(&mut b);
        b.sign(&ca.key)
    })
    .unwrap();
    assert!(matches!(
        check(&ca, &future),
        Err(CertRejection::NotYetValid { .. })
    ));
    // ssh-key will not sign an empty window, so make one by editing the encoded fields.
    let mut bytes = cert.to_bytes().unwrap();
    let window = [(NOW - 60).to_be_bytes(), (NOW + 600).to_be_bytes()].concat();
    let at = bytes
        .windows(16)
        .position(|w| w == window.as_slice())
        .unwrap();
    bytes[at + 8..at + 16].copy_from_slice(&(NOW - 60).to_be_bytes());
    let empty = Certificate::from_bytes(&bytes).unwrap();
    assert!(matches!(
        check(&ca, &empty),
        Err(CertRejection::EmptyValidity { .. })
    ));
}

#[test]
fn refuses_host_certificate() {
    let ca = ca();
    let cert = build(&ca.key, |b| {
        b.serial(1).unwrap();
        b.cert_type(CertType::Host).unwrap();
        b.key_id("alice").unwrap();
        b.valid_principal("alice").unwrap();
    });
    assert_eq!(check(&ca, &cert), Err(CertRejection::HostCertificate));
}

#[test]
fn refuses_unknown_critical_options() {
    let ca = ca();
    for name in ["force-command", "verify-required", "x-custom@example.com"] {
        let cert = build(&ca.key, |b| {
            good(b);
            b.critical_option(name, "true").unwrap();
        });
        assert_eq!(
            check(&ca, &cert),
            Err(CertRejection::UnknownCriticalOption(name.into()))
        );
    }
    // Extensions are not critical: unknown ones are ignored.
    let cert = build(&ca.key, |b| {
        good(b);
        b.extension("x-unknown@example.com", "").unwrap();
    });
    assert!(check(&ca, &cert).is_ok());
}

#[test]
fn source_address() {
    let ca = ca();
    let v = verifier(&ca);
    let with = |allowed: &str| {
        build(&ca.key, |b| {
            good(b);
            b.critical_option("source-address", allowed).unwrap();
        })
    };
    let from = |cert: &Certificate, ip: Option<&str>| {
        v.verify(
            cert,
            NOW,
            ip.map(|i| i.parse().unwrap()),
            &Revocations::default(),
        )
    };
    let cert = with("10.0.0.0/8, 192.168.1.7,2001:db8::/32");
    assert!(from(&cert, Some("10.200.3.4")).is_ok());
    assert!(from(&cert, Some("192.168.1.7")).is_ok());
    assert!(from(&cert, Some("::ffff:10.1.1.1")).is_ok()); // v4-mapped client
    assert!(from(&cert, Some("2001:db8:1::5")).is_ok());
    for refused in [
        Some("11.0.0.1"),
        Some("192.168.1.8"),
        Some("2001:db9::1"),
        None,
    ] {
        assert!(
            matches!(
                from(&cert, refused),
                Err(CertRejection::SourceAddress { .. })
            ),
            "{refused:?}"
        );
    }
    assert!(from(&with("0.0.0.0/0"), Some("8.8.8.8")).is_ok());
    // A malformed list refuses even a client that would match another entry (fail closed).
    for malformed in ["10.0.0.0/33", "bogus", "10.0.0.1,", "*.example.com"] {
        let cert = with(malformed);
        assert!(
            matches!(
                from(&cert, Some("10.0.0.1")),
                Err(CertRejection::SourceAddress { .. })
            ),
            "{malformed}"
        );
    }
}

#[test]
fn refuses_bad_key_id_and_principals() {
    let ca = ca();
    let cert = build(&ca.key, |b| {
        b.serial(1).unwrap();
        b.cert_type(CertType::User).unwrap();
        b.valid_principal("alice").unwrap();
    });
    assert_eq!(check(&ca, &cert), Err(CertRejection::EmptyKeyId));
    let cert = build(&ca.key, |b| {
        b.cert_type(CertType::User).unwrap();
        b.key_id("Alice Smith").unwrap();
        b.valid_principal("alice").unwrap();
    });
    assert_eq!(
        check(&ca, &cert),
        Err(CertRejection::BadKeyId("Alice Smith".into()))
    );
    let cert = build(&ca.key, |b| {
        b.cert_type(CertType::User).unwrap();
        b.key_id("alice").unwrap();
        b.all_principals_valid().unwrap();
    });
    assert_eq!(check(&ca, &cert), Err(CertRejection::NoPrincipals));
    let cert = build(&ca.key, |b| {
        b.cert_type(CertType::User).unwrap();
        b.key_id("alice").unwrap();
        b.valid_principal("alice").unwrap();
        b.valid_principal("group:Admins").unwrap();
    });
    assert_eq!(
        check(&ca, &cert),
        Err(CertRejection::BadPrincipal("group:Admins".into()))
    );
    let cert = build(&ca.key, |b| {
        b.cert_type(CertType::User).unwrap();
        b.key_id("alice").unwrap();
        for i in 0..33 {
            b.valid_principal(format!("p{i}")).unwrap();
        }
    });
    assert_eq!(check(&ca, &cert), Err(CertRejection::TooManyPrincipals(33)));
}

#[test]
fn refuses_revoked() {
    let ca = ca();
    let cert = ca.issue_at(&request("alice", &["agents"]), NOW).unwrap();
    let v = verifier(&ca);
    let mut list = Revocations::default();
    list.insert(RevocationEntry::Serial(cert.serial().wrapping_add(1)));
    assert!(v.verify(&cert, NOW, None, &list).is_ok());
    let mut by_serial = Revocations::default();
    by_serial.insert(RevocationEntry::Serial(cert.serial()));
    assert!(matches!(
        v.verify(&cert, NOW, None, &by_serial),
        Err(CertRejection::Revoked { .. })
    ));
    let mut by_identity = Revocations::default();
    by_identity.insert(RevocationEntry::Identity("alice".into()));
    assert_eq!(
        v.verify(&cert, NOW, None, &by_identity),
        Err(CertRejection::Revoked {
            serial: cert.serial(),
            identity: "alice".into()
        })
    );
}

#[test]
fn verifier_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user_ca");
    let ours = UserCa::init(&path).unwrap();
    let old = key();
    let config = crate::config::CaConfig {
        private_key: path,
        trusted_public_keys: vec![old.public_key().to_openssh().unwrap()],
    };
    let v = CertVerifier::from_config(&config).unwrap();
    for signer in [&ours.key, &old] {
        let cert = build(signer, good);
        assert!(v.verify(&cert, NOW, None, &Revocations::default()).is_ok());
    }
}

#[test]
fn names() {
    for ok in ["a", "_svc", "alice@example.com", "ci.bot-1", "0"] {
        assert!(is_valid_name(ok), "{ok}");
    }
    for bad in ["", "@a", ".a", "A", "a b", "a/b", "group:x"] {
        assert!(!is_valid_name(bad), "{bad}");
    }
    assert!(is_valid_principal("group:ops") && !is_valid_principal("group:"));
}
