//! One OpenSSH connection shared by many `ssh` runs (ControlMaster), as agents and CI jobs
//! often use it: the master keeps the connection, each run is a new channel on it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A shared connection to `host` of an ssh_config, made by the first run and closed when
/// dropped (also when the test fails, so no master outlives it).
pub struct SharedSsh {
    config: PathBuf,
    host: String,
    /// The master's socket.
    control: PathBuf,
}

impl SharedSsh {
    /// Shares connections to `host` of `config`, the master's socket in `dir`.
    pub fn new(config: &Path, host: &str, dir: &Path) -> SharedSsh {
        SharedSsh {
            config: config.to_path_buf(),
            host: host.to_string(),
            control: dir.join(format!("cm-{host}")),
        }
    }

    /// `ssh [extra] HOST COMMAND` over the shared connection, stdin empty.
    pub fn ssh(&self, extra: &[&str], command: &str) -> Output {
        Command::new("ssh")
            .arg("-F")
            .arg(&self.config)
            .args(["-o", "BatchMode=yes", "-o", "ControlMaster=auto"])
            .arg("-o")
            .arg(format!("ControlPath={}", self.control.display()))
            .args(["-o", "ControlPersist=60"])
            .args(extra)
            .arg(&self.host)
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for SharedSsh {
    fn drop(&mut self) {
        let _ = self.ssh(&["-O", "exit"], "");
    }
}
