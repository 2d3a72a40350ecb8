//! gatehouse: an SSH bastion that reads every command line an agent sends before it reaches a host.
//!
//! The crate is laid out along the data path (see ARCHITECTURE): `gateway` speaks SSH to agents,
//! `policy` decides on command lines, `upstream` speaks SSH to targets; `identity`, `vault`,
//! `store` and `config` hold what they need. `cli` is the command-line edge.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod approvals;
pub mod audit;
pub mod cli;
pub mod config;
pub mod demo;
pub mod gateway;
pub mod http;
pub mod identity;
pub mod logging;
pub mod policy;
pub mod record;
pub mod rekey;
pub mod secret_file;
pub mod store;
pub mod tcp;
pub mod upstream;
pub mod vault;
