//! `gatehouse policy check|lint`.

use clap::Subcommand;

/// `gatehouse policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Decide command lines against a policy.
    Check {},
}

/// Runs a policy subcommand; returns the process exit status.
pub fn run(_cmd: PolicyCommand) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
