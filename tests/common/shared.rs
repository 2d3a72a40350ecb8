//! One OpenSSH connection shared by many `ssh` runs (ControlMaster), as agents and CI jobs
//! often use it: the master keeps the connection, each run is a new channel on it.

use std::path::PathBuf;
use std::process::{Output, Stdio};

use super::Demo;

/// A shared connection to `host` of a demo's ssh_config, made by the first run and closed
/// when dropped (also when the test fails, so no master outlives it).
pub struct SharedSsh<'a> {
    demo: &'a Demo,
    host: String,
    /// The master's options: its socket (in the demo's directory) and how long it stays.
    options: [String; 6],
}

impl<'a> SharedSsh<'a> {
    /// Shares connections to `host` of `demo`'s ssh_config (the demo may have stopped: a
    /// test can serve its directory itself).
    pub fn new(demo: &'a Demo, host: &str) -> SharedSsh<'a> {
        let control: PathBuf = demo.path().join(format!("cm-{host}"));
        SharedSsh {
            demo,
            host: host.to_string(),
            options: [
                "-o".into(),
                "ControlMaster=auto".into(),
                "-o".into(),
                format!("ControlPath={}", control.display()),
                "-o".into(),
                "ControlPersist=60".into(),
            ],
        }
    }

    /// `ssh [extra] HOST COMMAND` over the shared connection, stdin empty.
    pub fn ssh(&self, extra: &[&str], command: &str) -> Output {
        let mut args: Vec<&str> = self.options.iter().map(String::as_str).collect();
        args.extend(extra);
        self.demo
            .ssh_cmd(&self.host, &args, command)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for SharedSsh<'_> {
    fn drop(&mut self) {
        let _ = self.ssh(&["-O", "exit"], "");
    }
}
