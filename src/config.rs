//! The TOML configuration model and its validation.
//!
//! This module turns `gatehouse.toml` into typed, validated values; relative paths are resolved
//! against the file's own directory. It knows nothing of SSH sessions: the gateway asks it
//! questions (`target`, `granted`) and never reads the file itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors found while loading a configuration file. Each names the file and, where known, the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// The whole configuration, validated, with every path absolute.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was loaded from (for error messages and `config check`).
    pub path: PathBuf,
    /// Listening sockets and directories.
    pub server: ServerConfig,
    /// Where the user CA key lives and which CA keys are trusted.
    pub ca: CaConfig,
    /// Where the vault's master key lives.
    pub vault: VaultConfig,
    /// The policy file; `None` means the compiled-in default ruleset.
    pub policy_file: Option<PathBuf>,
    /// Hosts agents may reach, by name.
    pub targets: Vec<TargetConfig>,
    /// Who may reach which targets.
    pub grants: Vec<GrantConfig>,
}

/// `[server]`
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where agents connect with SSH.
    pub ssh_listen: SocketAddr,
    /// Where the issuance endpoint listens (OIDC issue); `None` disables it.
    pub http_listen: Option<SocketAddr>,
    /// sled store, host key, revocations.
    pub data_dir: PathBuf,
    /// asciicast recordings.
    pub recordings_dir: PathBuf,
    /// Failed authentications allowed per source address per minute before refusing outright.
    pub max_auth_failures_per_minute: u32,
}

/// `[ca]`
#[derive(Debug, Clone)]
pub struct CaConfig {
    /// The CA private key (OpenSSH format, 0600). Its public half (`.pub`) is always trusted.
    pub private_key: PathBuf,
    /// Further CA public keys whose certificates are accepted (key rotation).
    pub trusted_public_keys: Vec<String>,
}

/// `[vault]`
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// The 32-byte master key file; `GATEHOUSE_MASTER_KEY_FILE` overrides it.
    pub master_key_file: PathBuf,
}

/// `[[targets]]`
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// The login name agents use to reach it (`ssh web-1@bastion`).
    pub name: String,
    /// `host:port` of the target's sshd.
    pub address: String,
    /// The upstream account gatehouse logs in as (with the vaulted key).
    pub user: String,
    /// Pinned host keys (OpenSSH public key lines); the upstream session is refused on any other.
    pub host_keys: Vec<String>,
    /// Name of the policy (in the policy file) deciding this target's command lines.
    pub policy: String,
    /// Most channels gatehouse opens at once on the pooled upstream connection.
    pub max_channels: usize,
}

/// `[[grants]]`
#[derive(Debug, Clone)]
pub struct GrantConfig {
    /// Identities or `group:NAME` principals (globs allowed).
    pub principals: Vec<String>,
    /// Target names (globs allowed).
    pub targets: Vec<String>,
}

impl Config {
    /// Loads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses configuration text; `path` names it in errors and anchors relative paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: raw::File = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(0),
            message: e.message().to_string(),
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let server = ServerConfig {
            ssh_listen: raw.server.ssh_listen,
            http_listen: raw.server.http_listen,
            data_dir: resolve(&raw.server.data_dir),
            recordings_dir: resolve(&raw.server.recordings_dir),
            max_auth_failures_per_minute: raw.server.max_auth_failures_per_minute,
        };
        let ca = CaConfig {
            private_key: resolve(&raw.ca.private_key),
            trusted_public_keys: raw.ca.trusted_public_keys,
        };
        let vault = VaultConfig {
            master_key_file: resolve(&raw.vault.master_key_file),
        };
        let targets = raw
            .targets
            .into_iter()
            .map(|t| TargetConfig {
                name: t.name,
                address: t.address,
                user: t.user,
                host_keys: t.host_keys,
                policy: t.policy,
                max_channels: t.max_channels,
            })
            .collect();
        let grants = raw
            .grants
            .into_iter()
            .map(|g| GrantConfig {
                principals: g.principals,
                targets: g.targets,
            })
            .collect();
        Ok(Config {
            path: path.to_path_buf(),
            server,
            ca,
            vault,
            policy_file: raw.policy.file.map(|p| resolve(&p)),
            targets,
            grants,
        })
    }

    /// The target with this login name.
    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// Whether any of `principals` holds a grant for `target`.
    pub fn granted(&self, principals: &[String], target: &str) -> bool {
        self.grants.iter().any(|g| {
            g.targets.iter().any(|t| glob_match(t, target))
                && g.principals
                    .iter()
                    .any(|p| principals.iter().any(|have| glob_match(p, have)))
        })
    }
}

/// Shell-style glob match (`*`, `?`, `[..]`) of a whole name; an invalid glob matches nothing.
fn glob_match(pattern: &str, name: &str) -> bool {
    globset::Glob::new(pattern)
        .map(|g| g.compile_matcher().is_match(name))
        .unwrap_or(false)
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The file's shape as serde reads it; validated and resolved into [`Config`].
mod raw {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub server: Server,
        pub ca: Ca,
        pub vault: Vault,
        #[serde(default)]
        pub policy: Policy,
        #[serde(default)]
        pub targets: Vec<Target>,
        #[serde(default)]
        pub grants: Vec<Grant>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Server {
        pub ssh_listen: SocketAddr,
        #[serde(default)]
        pub http_listen: Option<SocketAddr>,
        #[serde(default = "default_data_dir")]
        pub data_dir: PathBuf,
        #[serde(default = "default_recordings_dir")]
        pub recordings_dir: PathBuf,
        #[serde(default = "default_auth_failures")]
        pub max_auth_failures_per_minute: u32,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Ca {
        pub private_key: PathBuf,
        #[serde(default)]
        pub trusted_public_keys: Vec<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Vault {
        pub master_key_file: PathBuf,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Policy {
        #[serde(default)]
        pub file: Option<PathBuf>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Target {
        pub name: String,
        pub address: String,
        pub user: String,
        #[serde(default)]
        pub host_keys: Vec<String>,
        #[serde(default = "default_policy")]
        pub policy: String,
        #[serde(default = "default_max_channels")]
        pub max_channels: usize,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Grant {
        pub principals: Vec<String>,
        pub targets: Vec<String>,
    }

    fn default_data_dir() -> PathBuf {
        PathBuf::from("data")
    }
    fn default_recordings_dir() -> PathBuf {
        PathBuf::from("recordings")
    }
    fn default_auth_failures() -> u32 {
        20
    }
    fn default_policy() -> String {
        "default".to_string()
    }
    fn default_max_channels() -> usize {
        64
    }
}
