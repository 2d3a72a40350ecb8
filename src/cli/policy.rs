//! `gatehouse policy check|lint`: decide command lines and validate policy files from a shell.
//!
//! This is the command-line edge of the policy engine; it reads the configuration to find the
//! policy file and the target's policy, then hands lines to [`gatehouse::policy::decide`].

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};

use crate::config::Config;
use crate::policy::{decide, Decision, PolicySet};

/// Output format of `policy check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `deny  rule=ID  reason=...` then the commands found, indented.
    Text,
    /// One JSON object per line: decision, rule, reason, commands, reviewers, approvals_required.
    Json,
}

/// `gatehouse policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Decide command lines against a policy.
    ///
    /// The policy comes from --policy-file/--policy, else from the configuration (--config):
    /// its [policy] file (the compiled-in ruleset when unset) and, with --target, that target's
    /// policy. Without a configuration file the compiled-in ruleset and policy `default` apply.
    ///
    /// Exit status: 0 when every line was decided (whatever the decision), 2 on a usage or
    /// configuration error.
    #[command(
        after_help = "Examples:\n  gatehouse policy check -- 'ls; rm -rf /'\n  \
                            printf '%s\\n' 'ls' 'git push -f' | gatehouse policy check --format json -"
    )]
    Check {
        /// Target whose policy applies (needs a configuration file).
        #[arg(long)]
        target: Option<String>,
        /// Policy file to use instead of the configuration's.
        #[arg(long, value_name = "FILE")]
        policy_file: Option<PathBuf>,
        /// Policy name to use instead of the target's (default: `default`).
        #[arg(long, value_name = "NAME")]
        policy: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// The command line to decide, or `-` to decide each line of stdin.
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
        line: Vec<String>,
    },
    /// Validate a policy file (the configuration's, or the compiled-in one, when FILE is
    /// omitted). Exit status 0 when valid, 1 with `file:line: key: message` when not.
    Lint {
        /// The policy file.
        file: Option<PathBuf>,
    },
}

/// Runs a policy subcommand; returns the process exit status.
pub fn run(cmd: PolicyCommand, config_path: &Path) -> anyhow::Result<i32> {
    match cmd {
        PolicyCommand::Check {
            target,
            policy_file,
            policy,
            format,
            line,
        } => {
            let (set, name) = match resolve(config_path, target, policy_file, policy) {
                Ok(found) => found,
                Err(message) => {
                    eprintln!("gatehouse: {message}");
                    return Ok(2);
                }
            };
            let Some(policy) = set.policy(&name) else {
                let names: Vec<&str> = set.names().collect();
                eprintln!(
                    "gatehouse: no policy named {name:?} (have: {})",
                    names.join(", ")
                );
                return Ok(2);
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            if line.len() == 1 && line.first().is_some_and(|l| l == "-") {
                let stdin = std::io::stdin();
                let mut reader = stdin.lock();
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    if reader.read_until(b'\n', &mut buf)? == 0 {
                        break;
                    }
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                    }
                    print(&mut out, &decide(policy, &buf), format, true)?;
                }
            } else {
                print(
                    &mut out,
                    &decide(policy, line.join(" ").as_bytes()),
                    format,
                    false,
                )?;
            }
            Ok(0)
        }
        PolicyCommand::Lint { file } => {
            let result = match &file {
                Some(path) => PolicySet::load(path).map(|_| path.display().to_string()),
                None => match config_policy_file(config_path) {
                    Ok(Some(path)) => PolicySet::load(&path).map(|_| path.display().to_string()),
                    Ok(None) => {
                        let set = PolicySet::builtin();
                        Ok(format!(
                            "compiled-in ruleset ({} policies)",
                            set.names().count()
                        ))
                    }
                    Err(message) => {
                        eprintln!("gatehouse: {message}");
                        return Ok(2);
                    }
                },
            };
            match result {
                Ok(what) => {
                    println!("{what}: ok");
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(1)
                }
            }
        }
    }
}

/// The configuration's policy file: `Ok(None)` for the compiled-in ruleset or no config.
fn config_policy_file(config_path: &Path) -> Result<Option<PathBuf>, String> {
    if !config_path.exists() {
        return Ok(None);
    }
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    Ok(config.policy_file)
}

/// Finds the policy set and the policy name to decide with.
fn resolve(
    config_path: &Path,
    target: Option<String>,
    policy_file: Option<PathBuf>,
    policy: Option<String>,
) -> Result<(PolicySet, String), String> {
    let config = if config_path.exists() {
        Some(Config::load(config_path).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let mut name = policy.unwrap_or_else(|| "default".into());
    if let Some(t) = target {
        let Some(config) = &config else {
            return Err(format!(
                "--target {t} needs a configuration file, and {} does not exist",
                config_path.display()
            ));
        };
        let Some(target) = config.target(&t) else {
            return Err(format!(
                "no target named {t:?} in {}",
                config_path.display()
            ));
        };
        name = target.policy.clone();
    }
    let file = policy_file.or_else(|| config.as_ref().and_then(|c| c.policy_file.clone()));
    let set = match file {
        Some(path) => PolicySet::load(&path).map_err(|e| e.to_string())?,
        None => PolicySet::builtin(),
    };
    Ok((set, name))
}

/// Prints one decision; `one_line` keeps text output to one line per input line (stdin mode).
fn print(
    out: &mut impl Write,
    d: &Decision,
    format: Format,
    one_line: bool,
) -> std::io::Result<()> {
    match format {
        Format::Json => {
            let json = serde_json::to_string(d).map_err(std::io::Error::other)?;
            writeln!(out, "{json}")
        }
        Format::Text => {
            write!(
                out,
                "{:<5}  rule={}  reason={}",
                d.decision, d.rule, d.reason
            )?;
            if let Some(r) = &d.reviewers {
                write!(out, "  reviewers={r}  approvals={}", d.approvals_required)?;
            }
            if one_line {
                return writeln!(out, "  commands={}", d.commands.join(" ; "));
            }
            writeln!(out)?;
            for c in &d.commands {
                writeln!(out, "    {c}")?;
            }
            Ok(())
        }
    }
}
