//! `gatehouse config|ca|vault` administration commands.
//!
//! Thin wrappers: each loads the configuration, calls the library (`config`, `identity::ca`,
//! `vault`) and prints the outcome for a human. No key material is ever printed except public
//! keys and fingerprints.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{ArgGroup, Subcommand};
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::identity::ca::{public_key_path, CertRequest, UserCa};
use crate::identity::revocation::{revocations_path, RevocationEntry, Revocations};
use crate::policy::PolicySet;
use crate::store::Store;
use crate::vault::{master_key_path, Vault};

/// `gatehouse config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate the configuration.
    Check {},
}

/// `gatehouse ca ...`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the user CA (ed25519, private key mode 0600, public key beside it as .pub).
    Init {},
    /// Sign a user certificate for a public key.
    Issue {
        /// The identity: certificate key id and first principal.
        #[arg(long)]
        identity: String,
        /// Groups, comma-separated; each becomes a `group:NAME` principal.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Validity from now: 30s, 10m, 1h, 1d.
        #[arg(long, default_value = "10m", value_parser = parse_ttl)]
        ttl: Duration,
        /// The OpenSSH public key to certify.
        #[arg(long)]
        public_key: PathBuf,
        /// Where to write the certificate (default: the key's name with -cert.pub, like ssh-keygen).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Allow a terminal (humans and reviewers; agents do not need one).
        #[arg(long)]
        permit_pty: bool,
    },
    /// Revoke one certificate by serial, or every certificate of an identity.
    #[command(group(ArgGroup::new("what").required(true).args(["serial", "identity"])))]
    Revoke {
        /// Certificate serial (shown by `ca issue` and `ssh-keygen -L`).
        #[arg(long)]
        serial: Option<u64>,
        /// Identity (certificate key id).
        #[arg(long)]
        identity: Option<String>,
    },
    /// Print the CA public key(s) and fingerprints.
    Show {},
}

/// `gatehouse vault ...`
#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Create the master key.
    Init {},
    /// Store (or replace) the private key gatehouse uses to log in to a target.
    Put {
        /// Target name, as configured.
        #[arg(long)]
        target: String,
        /// Unencrypted OpenSSH private key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// List stored keys (target and SHA-256 fingerprint, never the key).
    List {},
}

/// Runs `gatehouse config ...`; returns the exit status (1 when a problem was found).
pub fn run_config(cmd: ConfigCommand, config_path: &Path) -> anyhow::Result<i32> {
    match cmd {
        ConfigCommand::Check {} => {
            let config = Config::load(config_path)?;
            let policies = match &config.policy_file {
                Some(file) => PolicySet::load(file)
                    .with_context(|| format!("policy file {}", file.display()))?,
                None => PolicySet::builtin(),
            };
            let report = check_config(&config, &policies);
            for warning in &report.warnings {
                println!("warning: {warning}");
            }
            for problem in &report.problems {
                println!("error: {problem}");
            }
            if report.problems.is_empty() {
                println!(
                    "{}: OK ({} targets, {} grants)",
                    config.path.display(),
                    config.targets.len(),
                    config.grants.len()
                );
                Ok(0)
            } else {
                Ok(1)
            }
        }
    }
}

/// What `config check` found beyond what loading already validates.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Make the configuration unusable (exit status 1).
    pub problems: Vec<String>,
    /// Setup steps not done yet (missing CA, master key, pinned host keys).
    pub warnings: Vec<String>,
}

/// Cross-checks a loaded configuration against the policies and the files it names.
pub fn check_config(config: &Config, policies: &PolicySet) -> CheckReport {
    let mut report = CheckReport::default();
    let file = config.path.display();
    for target in &config.targets {
        if policies.policy(&target.policy).is_none() {
            let source = match &config.policy_file {
                Some(p) => p.display().to_string(),
                None => "the built-in policy set".to_string(),
            };
            report.problems.push(format!(
                "{file}: target {:?}: policy {:?} is not defined in {source}",
                target.name, target.policy
            ));
        }
        if target.host_keys.is_empty() {
            report.warnings.push(format!(
                "{file}: target {:?} has no pinned host key; run `gatehouse target pin {}`",
                target.name, target.name
            ));
        }
        if !config.grants.iter().any(|g| {
            g.targets.iter().any(|t| {
                globset::Glob::new(t)
                    .map(|g| g.compile_matcher().is_match(&target.name))
                    .unwrap_or(false)
            })
        }) {
            report.warnings.push(format!(
                "{file}: target {:?} is not named by any grant; nobody can reach it",
                target.name
            ));
        }
    }
    if !public_key_path(&config.ca.private_key).exists() {
        report.warnings.push(format!(
            "CA key {} does not exist yet; run `gatehouse ca init`",
            config.ca.private_key.display()
        ));
    }
    let master = master_key_path(&config.vault);
    if !master.exists() {
        report.warnings.push(format!(
            "master key {} does not exist yet; run `gatehouse vault init`",
            master.display()
        ));
    }
    report
}

/// Runs `gatehouse ca ...`.
pub fn run_ca(cmd: CaCommand, config_path: &Path) -> anyhow::Result<i32> {
    let config = Config::load(config_path)?;
    match cmd {
        CaCommand::Init {} => {
            let ca = UserCa::init(&config.ca.private_key)?;
            println!("created user CA {}", config.ca.private_key.display());
            print_public_key(&ca.public_key(), &public_key_path(&config.ca.private_key))?;
        }
        CaCommand::Issue {
            identity,
            groups,
            ttl,
            public_key,
            out,
            permit_pty,
        } => {
            let ca = UserCa::load(&config.ca.private_key)?;
            let subject = PublicKey::read_openssh_file(&public_key)
                .with_context(|| format!("{}: not an OpenSSH public key", public_key.display()))?;
            let out = out.unwrap_or_else(|| default_cert_path(&public_key));
            let groups: Vec<String> = groups.into_iter().filter(|g| !g.is_empty()).collect();
            let cert = ca.issue(&CertRequest {
                identity,
                groups,
                ttl,
                public_key: subject,
                permit_pty,
            })?;
            let text = cert.to_openssh().context("encoding the certificate")?;
            crate::secret_file::replace(
                &out,
                format!("{text}\n").as_bytes(),
                crate::secret_file::PUBLIC_MODE,
            )
            .with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {}", out.display());
            println!("  key id:     {}", cert.key_id());
            println!("  principals: {}", cert.valid_principals().join(", "));
            println!("  serial:     {}", cert.serial());
            println!(
                "  valid:      {} to {}",
                format_time(cert.valid_after()),
                format_time(cert.valid_before())
            );
        }
        CaCommand::Revoke { serial, identity } => {
            let entry = match (serial, identity) {
                (Some(n), None) => RevocationEntry::Serial(n),
                (None, Some(id)) => RevocationEntry::Identity(id),
                _ => bail!("give exactly one of --serial or --identity"),
            };
            let path = revocations_path(&config.server.data_dir);
            if Revocations::append(&path, &entry)? {
                println!(
                    "revoked {entry} in {}; a running server refuses it from its next authentication",
                    path.display()
                );
            } else {
                println!("{entry} was already revoked in {}", path.display());
            }
        }
        CaCommand::Show {} => {
            let path = public_key_path(&config.ca.private_key);
            let key = PublicKey::read_openssh_file(&path)
                .with_context(|| format!("{}: run `gatehouse ca init` first", path.display()))?;
            print_public_key(&key, &path)?;
            for line in &config.ca.trusted_public_keys {
                let key = PublicKey::from_openssh(line.trim())
                    .context("ca.trusted_public_keys: not an OpenSSH public key")?;
                println!(
                    "also trusted: {} {}",
                    key.fingerprint(HashAlg::Sha256),
                    key.comment()
                );
            }
        }
    }
    Ok(0)
}

/// Runs `gatehouse vault ...`.
pub fn run_vault(cmd: VaultCommand, config_path: &Path) -> anyhow::Result<i32> {
    let config = Config::load(config_path)?;
    let master = master_key_path(&config.vault);
    match cmd {
        VaultCommand::Init {} => {
            Vault::init_master_key(&master)?;
            println!(
                "created master key {} (mode 0600); back it up apart from {}: \
                 without it the vaulted keys cannot be read",
                master.display(),
                config.server.data_dir.display()
            );
        }
        VaultCommand::Put { target, key } => {
            if config.target(&target).is_none() {
                bail!(
                    "no target {target:?} in {}; add a [[targets]] entry first",
                    config.path.display()
                );
            }
            let text = Zeroizing::new(
                std::fs::read(&key).with_context(|| format!("reading {}", key.display()))?,
            );
            let private = PrivateKey::from_openssh(&*text)
                .with_context(|| format!("{}: not an OpenSSH private key", key.display()))?;
            let vault = open_vault(&config, &master)?;
            vault.put(&target, &private)?;
            println!(
                "stored key {} for target {target}",
                private.fingerprint(HashAlg::Sha256)
            );
        }
        VaultCommand::List {} => {
            let vault = open_vault(&config, &master)?;
            let entries = vault.list()?;
            if entries.is_empty() {
                println!("no keys stored");
            }
            for (target, fingerprint) in entries {
                println!("{target}\t{fingerprint}");
            }
        }
    }
    Ok(0)
}

/// Opens the store and the vault, explaining the usual cause of a locked store.
fn open_vault(config: &Config, master: &Path) -> anyhow::Result<Vault> {
    let store = Store::open(&config.server.data_dir).with_context(|| {
        "cannot open the store (is `gatehouse serve` running? the store allows one process)"
    })?;
    Ok(Vault::open(&store, master)?)
}

/// Prints a public key line and its fingerprint.
fn print_public_key(key: &PublicKey, path: &Path) -> anyhow::Result<()> {
    println!("{}", key.to_openssh().context("encoding the public key")?);
    println!(
        "fingerprint: {} ({})",
        key.fingerprint(HashAlg::Sha256),
        path.display()
    );
    Ok(())
}

/// `id_ed25519.pub` → `id_ed25519-cert.pub` (ssh-keygen's name, which ssh finds by itself).
pub fn default_cert_path(public_key: &Path) -> PathBuf {
    let name = public_key.as_os_str().to_string_lossy();
    let stem = name.strip_suffix(".pub").unwrap_or(&name);
    PathBuf::from(format!("{stem}-cert.pub"))
}

/// Parses a duration like `30s`, `10m`, `1h`, `1d` (a bare number is seconds).
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration(text)
}

/// Unix seconds as an RFC 3339 UTC time.
fn format_time(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "forever".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::ca::{CertRejection, CertVerifier};
    use russh::keys::Certificate;

    #[test]
    fn ttl() {
        assert_eq!(parse_ttl("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_ttl("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("45"), Ok(Duration::from_secs(45)));
        for bad in ["", "m", "0s", "10w", "-1m", "1.5h", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cert_path() {
        assert_eq!(
            default_cert_path(Path::new("/k/id_ed25519.pub")),
            PathBuf::from("/k/id_ed25519-cert.pub")
        );
        assert_eq!(
            default_cert_path(Path::new("key")),
            PathBuf::from("key-cert.pub")
        );
    }

    /// A minimal config in a temp dir; the master key path is absolute so the environment
    /// variable is the only thing that could redirect it.
    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gatehouse.toml");
        std::fs::write(
            &path,
            "[server]\nssh_listen = \"127.0.0.1:2222\"\ndata_dir = \"data\"\n\
             [ca]\nprivate_key = \"data/user_ca\"\n\
             [vault]\nmaster_key_file = \"data/master.key\"\n\
             [[targets]]\nname = \"web-1\"\naddress = \"127.0.0.1:22\"\nuser = \"deploy\"\n\
             [[grants]]\nprincipals = [\"group:agents\"]\ntargets = [\"web-*\"]\n",
        )
        .unwrap();
        (dir, path)
    }

    fn keygen(dir: &Path, name: &str) -> PathBuf {
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f", name])
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success());
        dir.join(name)
    }

    #[test]
    fn ca_commands_end_to_end() {
        let (dir, config) = setup();
        assert_eq!(run_ca(CaCommand::Init {}, &config).unwrap(), 0);
        assert!(run_ca(CaCommand::Init {}, &config).is_err());
        assert_eq!(run_ca(CaCommand::Show {}, &config).unwrap(), 0);
        let key = keygen(dir.path(), "agent");
        let issue = CaCommand::Issue {
            identity: "agent-1".into(),
            groups: vec!["agents".into()],
            ttl: Duration::from_secs(600),
            public_key: key.with_extension("pub"),
            out: None,
            permit_pty: false,
        };
        assert_eq!(run_ca(issue, &config).unwrap(), 0);
        let cert_path = dir.path().join("agent-cert.pub");
        let cert = Certificate::read_file(&cert_path).unwrap();
        assert_eq!(cert.valid_principals(), ["agent-1", "group:agents"]);

        let loaded = Config::load(&config).unwrap();
        let verifier = CertVerifier::from_config(&loaded.ca).unwrap();
        let revocations = revocations_path(&loaded.server.data_dir);
        let now = crate::identity::ca::unix_now();
        let verify =
            || verifier.verify(&cert, now, None, &Revocations::load(&revocations).unwrap());
        assert!(verify().is_ok());
        let revoke = CaCommand::Revoke {
            serial: Some(cert.serial()),
            identity: None,
        };
        assert_eq!(run_ca(revoke, &config).unwrap(), 0);
        assert!(matches!(verify(), Err(CertRejection::Revoked { .. })));
    }

    #[test]
    fn vault_commands_end_to_end() {
        let (dir, config) = setup();
        assert_eq!(run_vault(VaultCommand::Init {}, &config).unwrap(), 0);
        assert!(run_vault(VaultCommand::Init {}, &config).is_err());
        let key = keygen(dir.path(), "upstream");
        let put = |target: &str| VaultCommand::Put {
            target: target.into(),
            key: key.clone(),
        };
        assert_eq!(run_vault(put("web-1"), &config).unwrap(), 0);
        assert!(run_vault(put("db-1"), &config).is_err(), "unknown target");
        assert_eq!(run_vault(VaultCommand::List {}, &config).unwrap(), 0);
    }

    #[test]
    fn check_reports_missing_setup() {
        let (_dir, config) = setup();
        let config = Config::load(&config).unwrap();
        let report = check_config(&config, &PolicySet::builtin());
        let all = report.warnings.join("\n");
        assert!(all.contains("gatehouse ca init"), "{all}");
        assert!(all.contains("target pin web-1"), "{all}");
        // The policy lookup is called for each target; whether "default" exists depends on
        // the policy engine, so only the shape of a problem is checked here.
        for problem in &report.problems {
            assert!(problem.contains("policy \"default\""), "{problem}");
        }
    }
}
