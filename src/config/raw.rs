//! The file's shape as serde reads it; validated and resolved into [`super::Config`] by
//! `Config::from_toml`. Nothing here checks values beyond their TOML types.

use super::*;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub server: Server,
    pub ca: Ca,
    pub vault: Vault,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub targets: Vec<Spanned<Target>>,
    #[serde(default)]
    pub grants: Vec<Grant>,
    #[serde(default)]
    pub approvals: Approvals,
    #[serde(default)]
    pub recording: Recording,
    #[serde(default)]
    pub masking: Option<MaskSettings>,
    #[serde(default)]
    pub http: super::issuance::raw::Http,
    #[serde(default)]
    pub oidc: super::issuance::raw::Oidc,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Approvals {
    #[serde(default)]
    pub wait_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub grant_ttl: Option<Spanned<String>>,
    #[serde(default)]
    pub default_reviewers: Option<String>,
    #[serde(default)]
    pub webhook: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Recording {
    #[serde(default)]
    pub record_input: bool,
    #[serde(default)]
    pub on_failure: Option<OnRecordingFailure>,
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
    #[serde(default)]
    pub ciphers: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub macs: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub worker_threads: Option<Spanned<usize>>,
    #[serde(default)]
    pub login_grace: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ca {
    pub private_key: PathBuf,
    #[serde(default)]
    pub trusted_public_keys: Vec<Spanned<String>>,
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
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub user: Spanned<String>,
    #[serde(default)]
    pub host_keys: Vec<Spanned<String>>,
    /// `None` when absent: the default is filled in with the table's span for errors.
    #[serde(default)]
    pub policy: Option<Spanned<String>>,
    #[serde(default)]
    pub max_channels: Option<Spanned<usize>>,
    #[serde(default)]
    pub approval: Option<ApprovalMode>,
    #[serde(default)]
    pub masking: Option<MaskSettings>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub principals: Spanned<Vec<Spanned<String>>>,
    pub targets: Spanned<Vec<Spanned<String>>>,
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
pub fn default_policy() -> String {
    "default".to_string()
}
pub fn default_max_channels() -> usize {
    10
}
