//! `gatehouse config|ca|vault` administration commands.

use clap::Subcommand;

/// `gatehouse config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate the configuration.
    Check {},
}

/// `gatehouse ca ...`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the user CA.
    Init {},
}

/// `gatehouse vault ...`
#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Create the master key.
    Init {},
}

pub fn run_config(_cmd: ConfigCommand, _config: &std::path::Path) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
pub fn run_ca(_cmd: CaCommand, _config: &std::path::Path) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
pub fn run_vault(_cmd: VaultCommand, _config: &std::path::Path) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
