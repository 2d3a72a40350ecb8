//! Command-line edge: each subcommand's arguments and its entry point. `anyhow` lives here only.

pub mod admin;
pub mod audit;
pub mod login;
pub mod policy;
pub mod replay;
pub mod serve;
