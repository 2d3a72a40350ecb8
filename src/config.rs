//! The TOML configuration model and its validation.
//!
//! This module turns `gatehouse.toml` into typed, validated values; relative paths are resolved
//! against the file's own directory. It knows nothing of SSH sessions: the gateway asks it
//! questions (`target`, `granted`) and never reads the file itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::record::mask::MaskSettings;

pub mod algorithms;
pub mod issuance;
mod raw;

/// Errors found while loading a configuration file. Each names the file and, where known, the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
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
    /// How held commands wait and who reviews them.
    pub approvals: ApprovalsConfig,
    /// What is recorded and what happens when recording fails.
    pub recording: RecordingConfig,
    /// Secret masking applied to target output (targets may override it).
    pub masking: MaskSettings,
    /// `[http]` and `[[oidc.issuers]]`: certificate issuance for OIDC-verified callers.
    pub issuance: issuance::IssuanceConfig,
}

/// `[approvals]`
#[derive(Debug, Clone)]
pub struct ApprovalsConfig {
    /// How long a held command waits for a reviewer (wait mode) before it is refused.
    pub wait_timeout: Duration,
    /// How long an approval stays usable by a resend of the same command (return mode).
    pub grant_ttl: Duration,
    /// Reviewer group for rules that name none.
    pub default_reviewers: String,
    /// Webhook notified of every new hold (http:// only for now).
    pub webhook: Option<String>,
}

/// What happens when a recording cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRecordingFailure {
    /// Refuse (or end) the session: nothing runs unrecorded. The default.
    Refuse,
    /// Run anyway, with a loud audit record.
    Continue,
}

/// `[recording]`
#[derive(Debug, Clone)]
pub struct RecordingConfig {
    /// Record agent input (`i` events). Off by default: input can carry passwords.
    pub record_input: bool,
    /// Fail closed (`refuse`) or not (`continue`).
    pub on_failure: OnRecordingFailure,
}

/// How an agent waits for a held command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalMode {
    /// The exec waits until a reviewer decides (or the wait times out).
    Wait,
    /// The exec ends at once with status 75 and a request id; the identical command resent
    /// after approval runs once.
    Return,
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
    /// Ciphers offered to agents, most preferred first (see [`algorithms`]).
    pub ciphers: Vec<String>,
    /// MACs offered to agents with the AES-CTR ciphers, most preferred first.
    pub macs: Vec<String>,
    /// Threads running the data path; `None` means [`default_worker_threads`]. Set in the file
    /// when the machine also runs other busy work (or to give gatehouse every core).
    pub worker_threads: Option<usize>,
    /// How long an agent connection may take from accept to a successful authentication
    /// before it is disconnected (OpenSSH's `LoginGraceTime`).
    pub login_grace: Duration,
}

/// Login grace when the configuration does not say.
pub const DEFAULT_LOGIN_GRACE: Duration = Duration::from_secs(60);
/// Longest login grace a configuration may ask for.
pub const MAX_LOGIN_GRACE: Duration = Duration::from_secs(600);

/// Most data-path threads a configuration may ask for.
pub const MAX_WORKER_THREADS: usize = 256;

/// Data-path threads when the configuration does not say: half the CPUs, at least one.
///
/// One exec's bytes pass four tasks (the target connection's packet loop, the output reader,
/// the masker and recorder's writer, the agent connection's packet loop), each handing chunks
/// to the next. With a worker per CPU the scheduler spreads one such pipeline over every core
/// and the tasks spend their time waking each other across cores; measured on 2 CPUs with one
/// paramiko transfer, one worker instead of two cut gatehouse's CPU per byte by a fifth and
/// raised throughput by a quarter. The other half of the CPUs is not idle: recordings are
/// hashed and written, and audit records synced, on the blocking pool, and the kernel does
/// the TCP work.
pub fn default_worker_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .max(1)
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
    /// Wait or return mode for held commands (an agent may ask for return mode with the
    /// `GATEHOUSE_APPROVAL=return` environment variable).
    pub approval: ApprovalMode,
    /// Masking for this target's output; `None` uses the global `[masking]`.
    pub masking: Option<MaskSettings>,
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
            error: source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses configuration text; `path` names it in errors and anchors relative paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: raw::File = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(0),
            message: e.message().trim_end().to_string(),
        })?;
        let check = Checker { text, path };
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
        let (ciphers, macs) = algorithms::check(&check, raw.server.ciphers, raw.server.macs)?;
        let server = ServerConfig {
            ssh_listen: raw.server.ssh_listen,
            http_listen: raw.server.http_listen,
            data_dir: resolve(&raw.server.data_dir),
            recordings_dir: resolve(&raw.server.recordings_dir),
            max_auth_failures_per_minute: raw.server.max_auth_failures_per_minute,
            ciphers,
            macs,
            worker_threads: match raw.server.worker_threads {
                Some(n) if !(1..=MAX_WORKER_THREADS).contains(n.get_ref()) => {
                    return Err(check.invalid(
                        &n,
                        "server.worker_threads",
                        &format!("must be between 1 and {MAX_WORKER_THREADS}"),
                    ))
                }
                n => n.map(toml::Spanned::into_inner),
            },
            login_grace: match &raw.server.login_grace {
                None => DEFAULT_LOGIN_GRACE,
                Some(v) => match parse_duration(v.get_ref()) {
                    Ok(grace) if grace <= MAX_LOGIN_GRACE => grace,
                    Ok(_) => {
                        return Err(check.invalid(v, "server.login_grace", "must be at most 10m"))
                    }
                    Err(why) => return Err(check.invalid(v, "server.login_grace", &why)),
                },
            },
        };
        let mut trusted_public_keys = Vec::new();
        for (i, key) in raw.ca.trusted_public_keys.into_iter().enumerate() {
            check.public_key(&key, &format!("ca.trusted_public_keys[{i}]"))?;
            trusted_public_keys.push(key.into_inner());
        }
        let ca = CaConfig {
            private_key: resolve(&raw.ca.private_key),
            trusted_public_keys,
        };
        let vault = VaultConfig {
            master_key_file: resolve(&raw.vault.master_key_file),
        };
        let mut targets: Vec<TargetConfig> = Vec::new();
        for (i, t) in raw.targets.into_iter().enumerate() {
            let table = t.span();
            let t = t.into_inner();
            let key = |field: &str| format!("targets[{i}].{field}");
            if !is_target_name(t.name.get_ref()) {
                return Err(check.invalid(
                    &t.name,
                    &key("name"),
                    "must match ^[a-z0-9][a-z0-9._-]{0,63}$ (it is the SSH login name)",
                ));
            }
            if t.name.get_ref() == "console" {
                return Err(check.invalid(
                    &t.name,
                    &key("name"),
                    "`console` is reserved for the reviewer console login",
                ));
            }
            if targets.iter().any(|seen| seen.name == *t.name.get_ref()) {
                return Err(check.invalid(&t.name, &key("name"), "duplicate target name"));
            }
            if let Err(why) = check_address(t.address.get_ref()) {
                return Err(check.invalid(&t.address, &key("address"), &why));
            }
            let user = t.user.get_ref();
            if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(check.invalid(
                    &t.user,
                    &key("user"),
                    "must be a non-empty account name without spaces",
                ));
            }
            for (j, host_key) in t.host_keys.iter().enumerate() {
                check.public_key(host_key, &key(&format!("host_keys[{j}]")))?;
            }
            let policy = t
                .policy
                .unwrap_or_else(|| toml::Spanned::new(table.clone(), raw::default_policy()));
            if policy.get_ref().trim().is_empty() {
                return Err(check.invalid(&policy, &key("policy"), "must not be empty"));
            }
            let max_channels = t
                .max_channels
                .unwrap_or_else(|| toml::Spanned::new(table.clone(), raw::default_max_channels()));
            if *max_channels.get_ref() == 0 {
                return Err(check.invalid(
                    &max_channels,
                    &key("max_channels"),
                    "must be at least 1",
                ));
            }
            let masking = match t.masking {
                Some(m) => {
                    validate_masking(&m)
                        .map_err(|why| check.invalid(&t.name, &key("masking"), &why))?;
                    Some(m)
                }
                None => None,
            };
            targets.push(TargetConfig {
                name: t.name.into_inner(),
                address: t.address.into_inner(),
                user: t.user.into_inner(),
                host_keys: t
                    .host_keys
                    .into_iter()
                    .map(toml::Spanned::into_inner)
                    .collect(),
                policy: policy.into_inner(),
                max_channels: max_channels.into_inner(),
                approval: t.approval.unwrap_or(ApprovalMode::Wait),
                masking,
            });
        }
        let mut grants = Vec::new();
        for (i, g) in raw.grants.into_iter().enumerate() {
            let key = |field: &str| format!("grants[{i}].{field}");
            if g.principals.get_ref().is_empty() {
                return Err(check.invalid(&g.principals, &key("principals"), "must not be empty"));
            }
            if g.targets.get_ref().is_empty() {
                return Err(check.invalid(&g.targets, &key("targets"), "must not be empty"));
            }
            for (j, p) in g.principals.get_ref().iter().enumerate() {
                if let Err(why) = check_principal_glob(p.get_ref()) {
                    return Err(check.invalid(p, &key(&format!("principals[{j}]")), &why));
                }
            }
            for (j, t) in g.targets.get_ref().iter().enumerate() {
                if let Err(why) = check_glob(t.get_ref(), is_target_char) {
                    return Err(check.invalid(t, &key(&format!("targets[{j}]")), &why));
                }
            }
            grants.push(GrantConfig {
                principals: g
                    .principals
                    .into_inner()
                    .into_iter()
                    .map(toml::Spanned::into_inner)
                    .collect(),
                targets: g
                    .targets
                    .into_inner()
                    .into_iter()
                    .map(toml::Spanned::into_inner)
                    .collect(),
            });
        }
        let duration = |value: &Option<toml::Spanned<String>>, key: &str, default: u64| match value
        {
            None => Ok(Duration::from_secs(default)),
            Some(v) => parse_duration(v.get_ref()).map_err(|why| check.invalid(v, key, &why)),
        };
        let approvals = ApprovalsConfig {
            wait_timeout: duration(&raw.approvals.wait_timeout, "approvals.wait_timeout", 600)?,
            grant_ttl: duration(&raw.approvals.grant_ttl, "approvals.grant_ttl", 900)?,
            default_reviewers: raw
                .approvals
                .default_reviewers
                .unwrap_or_else(|| "reviewers".to_string()),
            webhook: raw.approvals.webhook,
        };
        let recording = RecordingConfig {
            record_input: raw.recording.record_input,
            on_failure: raw
                .recording
                .on_failure
                .unwrap_or(OnRecordingFailure::Refuse),
        };
        let masking = raw.masking.unwrap_or_default();
        validate_masking(&masking).map_err(|why| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: 0,
            message: format!("masking: {why}"),
        })?;
        let issuance = issuance::resolve(raw.http, raw.oidc, server.http_listen, &check, &resolve)?;
        Ok(Config {
            issuance,
            masking,
            path: path.to_path_buf(),
            server,
            ca,
            vault,
            policy_file: raw.policy.file.map(|p| resolve(&p)),
            targets,
            grants,
            approvals,
            recording,
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

/// Builds file:line errors for values found after parsing.
struct Checker<'a> {
    /// The file's text, to turn byte spans into line numbers.
    text: &'a str,
    /// The file's path, named in every error.
    path: &'a Path,
}

impl Checker<'_> {
    /// An error at `value`'s line naming the key that holds it.
    fn invalid<T>(&self, value: &toml::Spanned<T>, key: &str, why: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: line_of(self.text, value.span().start),
            message: format!("{key}: {why}"),
        }
    }

    /// Refuses a value that is not an OpenSSH public key line.
    fn public_key(&self, value: &toml::Spanned<String>, key: &str) -> Result<(), ConfigError> {
        russh::keys::PublicKey::from_openssh(value.get_ref().trim())
            .map(|_| ())
            .map_err(|e| {
                self.invalid(
                    value,
                    key,
                    &format!("not an OpenSSH public key (\"ssh-ed25519 AAAA...\"): {e}"),
                )
            })
    }
}

/// Checks masking settings (detector names, custom regexes).
fn validate_masking(settings: &MaskSettings) -> Result<(), String> {
    crate::record::mask::validate(settings).map_err(|e| e.to_string())
}

/// Parses `30s`, `10m`, `1h`, `1d` (or bare seconds) into a positive duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit, e.g. 30s, 10m, 1h, 1d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: unknown unit {unit:?}; use s, m, h or d")),
    };
    match n.checked_mul(scale) {
        Some(0) => Err("must be positive".to_string()),
        Some(secs) => Ok(Duration::from_secs(secs)),
        None => Err(format!("{text:?}: too large")),
    }
}

/// Whether `name` can be a target name: it is the SSH login name, so `^[a-z0-9][a-z0-9._-]{0,63}$`.
pub fn is_target_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 64
        && chars.all(is_target_char)
}

/// Characters allowed in a target name after the first.
fn is_target_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
}

/// Characters allowed in an identity or group name (see `identity::ca`).
fn is_principal_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '@' | '-')
}

/// `host:port` (or `[v6]:port`) without resolving the name: a bad value fails at load, not at
/// the first connection.
fn check_address(address: &str) -> Result<(), String> {
    let expected = "must be host:port, e.g. \"10.0.0.5:22\" or \"web-1.internal:22\"";
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| expected.to_string())?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(format!("{expected} (bad port {port:?})")),
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("{expected} (bad IPv6 address {v6:?})"));
    }
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if host_ok {
        Ok(())
    } else {
        Err(format!("{expected} (bad host {host:?})"))
    }
}

/// A grant principal: an identity or `group:NAME`, either possibly a glob.
fn check_principal_glob(pattern: &str) -> Result<(), String> {
    let name = pattern.strip_prefix("group:").unwrap_or(pattern);
    check_glob(name, is_principal_char).map_err(|why| {
        format!("{why} (principals are identities or group:NAME, names use a-z 0-9 . _ @ -)")
    })?;
    check_glob(pattern, |_| true)
}

/// A glob that compiles and whose literal characters are allowed by `literal`.
fn check_glob(pattern: &str, literal: fn(char) -> bool) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("must not be empty".to_string());
    }
    if let Some(bad) = pattern
        .chars()
        .find(|c| !literal(*c) && !matches!(c, '*' | '?' | '[' | ']' | '!' | '{' | '}' | ','))
    {
        return Err(format!("character {bad:?} cannot appear in {pattern:?}"));
    }
    globset::Glob::new(pattern)
        .map(|_| ())
        .map_err(|e| format!("invalid glob {pattern:?}: {e}"))
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

#[cfg(test)]
mod tests;
