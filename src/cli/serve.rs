//! `gatehouse serve`, `gatehouse demo` and `gatehouse target`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

/// `gatehouse demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the demo's config, keys, store and recordings (default: a new temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// gatehouse's SSH port (default: a free port).
    #[arg(long)]
    pub ssh_port: Option<u16>,
    /// gatehouse's HTTP port (default: a free port).
    #[arg(long)]
    pub http_port: Option<u16>,
    /// Also trust this OIDC issuer.
    #[arg(long, requires = "oidc_audience")]
    pub oidc_issuer: Option<String>,
    /// Audience for --oidc-issuer.
    #[arg(long)]
    pub oidc_audience: Option<String>,
}

/// `gatehouse target ...`
#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// Fetch a target's host key and pin it in the configuration (explicit trust on first use).
    Pin {
        /// Target name.
        name: String,
    },
}

pub fn serve(_config: &Path) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
pub fn demo(_args: DemoArgs) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
pub fn target(_cmd: TargetCommand, _config: &Path) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
