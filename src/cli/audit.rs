//! `gatehouse audit verify|export|head`: check, read and anchor the audit log from a shell,
//! while the server runs (the log is a plain file read without locking).
//!
//! The log is `DATA/audit/audit.jsonl` and recordings are re-hashed under the configured
//! recordings directory; both come from the configuration file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use russh::keys::ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey};

use crate::audit::{self, VerifyError};
use crate::config::Config;

/// SSHSIG namespace of `audit head --sign-key` signatures; `ssh-keygen -Y verify -n` takes it.
pub const SIGNATURE_NAMESPACE: &str = "gatehouse-audit";

/// `gatehouse audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain and re-hash every sealed recording.
    ///
    /// Exit status 0 when intact; 1 naming the first broken record (seq) or recording file.
    /// Records cut off the end of the log are only detected by comparing the head with one
    /// anchored earlier (`gatehouse audit head`).
    Verify {
        /// Check the chain only, not the recordings it seals.
        #[arg(long)]
        no_recordings: bool,
    },
    /// Print records (verified as they are read), oldest first.
    ///
    /// Exit status 1 if the chain breaks; the records before the break are printed.
    Export {
        /// Only records at or after this time (RFC 3339, e.g. 2025-01-02T03:04:05Z, or a date).
        #[arg(long, value_name = "TIME", value_parser = parse_since)]
        since: Option<DateTime<Utc>>,
        /// One record per line exactly as stored (can be re-verified elsewhere).
        #[arg(long)]
        json: bool,
    },
    /// Print `SEQ HASH` of the last record, to anchor the log off the box.
    ///
    /// With --sign-key, also an SSH signature (namespace `gatehouse-audit`) over that line
    /// including its newline. Check it with:
    ///   gatehouse audit head > head.txt   (or with --sig-file head.sig)
    ///   ssh-keygen -Y check-novalidate -n gatehouse-audit -s head.sig < head.txt
    Head {
        /// Unencrypted ed25519 private key (OpenSSH format) to sign the head with.
        #[arg(long, value_name = "FILE")]
        sign_key: Option<PathBuf>,
        /// Write the signature here instead of after the head line on stdout.
        #[arg(long, value_name = "FILE", requires = "sign_key")]
        sig_file: Option<PathBuf>,
    },
}

/// Runs an audit subcommand; returns the process exit status.
pub fn run(cmd: AuditCommand, config_path: &Path) -> anyhow::Result<i32> {
    let config = Config::load(config_path)?;
    let log_path = config.server.data_dir.join("audit/audit.jsonl");
    match cmd {
        AuditCommand::Verify { no_recordings } => {
            let root = (!no_recordings).then_some(config.server.recordings_dir.as_path());
            verify(&log_path, root)
        }
        AuditCommand::Export { since, json } => export(&log_path, since, json),
        AuditCommand::Head { sign_key, sig_file } => {
            let head = audit::head(&log_path).map_err(flat)?;
            let line = format!("{} {}\n", head.seq, head.hash);
            let mut out = std::io::stdout().lock();
            out.write_all(line.as_bytes())?;
            if let Some(key_path) = sign_key {
                let pem = sign(&key_path, line.as_bytes())?;
                match sig_file {
                    Some(path) => std::fs::write(&path, pem)
                        .with_context(|| format!("writing {}", path.display()))?,
                    None => out.write_all(pem.as_bytes())?,
                }
            }
            Ok(0)
        }
    }
}

fn verify(log_path: &Path, root: Option<&Path>) -> anyhow::Result<i32> {
    match audit::verify(log_path, root) {
        Ok(report) => {
            let recordings = match root {
                Some(_) => format!(", {} sealed recordings re-hashed", report.recordings),
                None => String::new(),
            };
            println!(
                "audit log intact: {} records{recordings}; head {} {}",
                report.records, report.head.seq, report.head.hash
            );
            if report.incomplete_tail {
                println!("note: the last line is incomplete (a write in progress, or a crash the next start repairs); it was not checked");
            }
            Ok(0)
        }
        Err(e @ (VerifyError::Record { .. } | VerifyError::Recording { .. })) => {
            eprintln!("gatehouse: audit verify FAILED: {e}");
            Ok(1)
        }
        Err(e) => Err(flat(e)),
    }
}

fn export(log_path: &Path, since: Option<DateTime<Utc>>, json: bool) -> anyhow::Result<i32> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for record in audit::export(log_path, since).map_err(flat)? {
        let record = match record {
            Ok(r) => r,
            Err(e @ (VerifyError::Record { .. } | VerifyError::Recording { .. })) => {
                out.flush()?;
                eprintln!("gatehouse: audit export stopped: {e}");
                return Ok(1);
            }
            Err(e) => return Err(flat(e)),
        };
        if json {
            writeln!(out, "{}", record.line)?;
        } else {
            write!(
                out,
                "{} {} {}",
                record.seq,
                record
                    .ts
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                record.kind
            )?;
            let mut fields: Vec<_> = record.fields.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            for (key, value) in fields {
                match value.as_str() {
                    Some(s) if !s.is_empty() && !s.contains(char::is_whitespace) => {
                        write!(out, " {key}={s}")?
                    }
                    _ => write!(out, " {key}={value}")?,
                }
            }
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(0)
}

/// The error's message alone: it already names its cause, which `{:#}` would print twice.
fn flat(e: VerifyError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// An SSHSIG (armored, as `ssh-keygen -Y sign` writes it) over `msg` with the ed25519 key.
fn sign(key_path: &Path, msg: &[u8]) -> anyhow::Result<String> {
    let key = PrivateKey::read_openssh_file(key_path)
        .with_context(|| format!("reading the signing key {}", key_path.display()))?;
    if key.is_encrypted() {
        bail!(
            "{}: the key is passphrase-protected; use an unencrypted audit key",
            key_path.display()
        );
    }
    if key.algorithm() != Algorithm::Ed25519 {
        bail!(
            "{}: the audit key must be ed25519, this one is {}",
            key_path.display(),
            key.algorithm()
        );
    }
    let sig = key
        .sign(SIGNATURE_NAMESPACE, HashAlg::Sha512, msg)
        .context("signing the audit head")?;
    let mut pem = sig
        .to_pem(LineEnding::LF)
        .context("encoding the signature")?;
    if !pem.ends_with('\n') {
        pem.push('\n');
    }
    Ok(pem)
}

/// `--since`: RFC 3339, or a bare date meaning midnight UTC.
fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{s:?} is not an RFC 3339 time (2025-01-02T03:04:05Z) or a date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_and_dates() {
        assert_eq!(
            parse_since("2025-01-02").unwrap(),
            parse_since("2025-01-02T00:00:00Z").unwrap()
        );
        assert_eq!(
            parse_since("2025-01-02T03:00:00+02:00").unwrap(),
            parse_since("2025-01-02T01:00:00Z").unwrap()
        );
        assert!(parse_since("yesterday").is_err());
    }
}
