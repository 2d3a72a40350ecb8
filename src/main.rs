//! The `gatehouse` command line: parses arguments and hands each subcommand to the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gatehouse::cli;
use gatehouse::logging::LogWriter;

/// An SSH bastion that reads every command an agent sends before it reaches a host.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about)]
struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        default_value = "config/gatehouse.toml",
        env = "GATEHOUSE_CONFIG"
    )]
    config: PathBuf,
    /// Log format: text or json.
    #[arg(long, global = true, default_value = "text")]
    log_format: gatehouse::logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the bastion.
    Serve,
    /// Run a throwaway bastion in front of a throwaway sshd, for trying gatehouse out.
    Demo(cli::serve::DemoArgs),
    /// Decide command lines against a policy.
    #[command(subcommand)]
    Policy(cli::policy::PolicyCommand),
    /// Check the configuration.
    #[command(subcommand)]
    Config(cli::admin::ConfigCommand),
    /// The user certificate authority.
    #[command(subcommand)]
    Ca(cli::admin::CaCommand),
    /// Upstream keys, encrypted at rest.
    #[command(subcommand)]
    Vault(cli::admin::VaultCommand),
    /// The hash-chained audit log: verify, export, anchor its head.
    #[command(subcommand)]
    Audit(cli::audit::AuditCommand),
    /// Get a short-lived SSH certificate with an OIDC token (client credentials or device flow).
    Login(cli::login::LoginArgs),
    /// Targets: pin host keys.
    #[command(subcommand)]
    Target(cli::serve::TargetCommand),
    /// Play a session recording (any asciicast v2 file) in this terminal.
    Replay {
        /// The .cast file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Cli::parse();
    // The servers log from a thread of their own (see `logging`); one-shot commands directly.
    let writer = match args.command {
        Command::Serve | Command::Demo(_) => LogWriter::Background,
        _ => LogWriter::Direct,
    };
    let log = gatehouse::logging::init(args.log_format, writer);
    let result = match args.command {
        Command::Serve => cli::serve::serve(&args.config),
        Command::Demo(demo) => cli::serve::demo(demo),
        Command::Policy(cmd) => cli::policy::run(cmd, &args.config),
        Command::Config(cmd) => cli::admin::run_config(cmd, &args.config),
        Command::Ca(cmd) => cli::admin::run_ca(cmd, &args.config),
        Command::Vault(cmd) => cli::admin::run_vault(cmd, &args.config),
        Command::Audit(cmd) => cli::audit::run(cmd, &args.config),
        Command::Target(cmd) => cli::serve::target(cmd, &args.config),
        Command::Replay { file } => cli::replay::run(&file),
        Command::Login(login) => cli::login::run(login),
    };
    // Every queued log line out before the last word.
    drop(log);
    match result {
        Ok(status) => ExitCode::from(u8::try_from(status).unwrap_or(1)),
        Err(err) => {
            eprintln!("gatehouse: {err:#}");
            ExitCode::from(1)
        }
    }
}
