//! Test fixtures: a running `gatehouse demo` (real OpenSSH sshd as target) driven by the real
//! OpenSSH client. Each fixture uses its own temp directory and free loopback ports and stops
//! everything it started when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod disk;
pub mod serve;
pub mod shared;
pub mod tmux;

pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// Whether the machine can run the end-to-end tests (OpenSSH server and client present).
pub fn have_openssh() -> bool {
    Path::new("/usr/sbin/sshd").exists() && Command::new("ssh").arg("-V").output().is_ok()
}

/// Fails loudly when OpenSSH is missing: the test command installs it, so a missing sshd is a
/// broken setup, not a reason to skip.
pub fn require_openssh() {
    assert!(
        have_openssh(),
        "OpenSSH server/client missing: run the README test command, which installs them"
    );
}

/// A running `gatehouse demo`.
pub struct Demo {
    pub dir: tempfile::TempDir,
    child: Child,
    /// Everything the demo printed on stdout up to "ready".
    pub banner: String,
}

impl Demo {
    pub fn start() -> Demo {
        Demo::start_with(&[])
    }

    /// `gatehouse demo --dir DIR ARGS...`
    pub fn start_with(args: &[&str]) -> Demo {
        Demo::start_command(Command::new(BIN), args)
    }

    /// `gatehouse demo --dir DIR`, logging at `log_level` into a pipe that nobody reads (the
    /// read end is held until the demo is dropped).
    pub fn start_with_unread_stderr(log_level: &str) -> Demo {
        Demo::start_logging(Command::new(BIN), &[], Some(log_level))
    }

    /// `gatehouse demo --dir DIR ARGS...` allowed at most `open_files` descriptors (soft and
    /// hard limit, so gatehouse cannot raise it).
    pub fn start_with_open_files(open_files: u32, args: &[&str]) -> Demo {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("ulimit -n {open_files} && exec \"$0\" \"$@\""))
            .arg(BIN);
        Demo::start_command(sh, args)
    }

    fn start_command(command: Command, args: &[&str]) -> Demo {
        Demo::start_logging(command, args, None)
    }

    /// Starts the demo logging at `info` into `DIR.log`, or at `unread` into an unread pipe.
    fn start_logging(mut command: Command, args: &[&str], unread: Option<&str>) -> Demo {
        require_openssh();
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-test-")
            .tempdir()
            .expect("tempdir");
        // With an unprivileged demo target user (see scripts/test), commands that write
        // markers into the test directory must be able to.
        if std::env::var_os("GATEHOUSE_DEMO_TARGET_USER").is_some() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("chmod test dir");
        }
        command
            .arg("demo")
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .env("RUST_LOG", unread.unwrap_or("info"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        match unread {
            Some(_) => command.stderr(Stdio::piped()),
            None => command.stderr(Stdio::from(
                std::fs::File::create(dir.path().with_extension("log")).expect("log file"),
            )),
        };
        let mut child = command.spawn().expect("start gatehouse demo");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut banner = String::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                banner.push_str(&line);
                banner.push('\n');
                if line.contains("gatehouse demo ready") {
                    let _ = tx.send(banner.clone());
                }
            }
        });
        let banner = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                let log =
                    std::fs::read_to_string(dir.path().with_extension("log")).unwrap_or_default();
                panic!("gatehouse demo did not become ready; its log:\n{log}");
            }
        };
        Demo { dir, child, banner }
    }

    /// The gatehouse process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// gatehouse's SSH port (host `demo` in the ssh_config).
    pub fn port(&self) -> u16 {
        let cfg = std::fs::read_to_string(self.ssh_config()).expect("ssh_config");
        cfg.lines()
            .skip_while(|l| l.trim() != "Host demo")
            .find_map(|l| l.trim().strip_prefix("Port "))
            .and_then(|p| p.parse().ok())
            .expect("Host demo has a Port")
    }

    pub fn ssh_config(&self) -> PathBuf {
        self.path().join("ssh_config")
    }

    /// The gateway's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().with_extension("log")).unwrap_or_default()
    }

    /// The gateway's log once it holds every one of `needles` (see [`log_containing`]).
    pub fn log_containing(&self, needles: &[&str]) -> String {
        log_containing(&self.path().with_extension("log"), needles)
    }

    /// `ssh -F DIR/ssh_config -o BatchMode=yes [extra] HOST CMD`.
    pub fn ssh(&self, host: &str, extra: &[&str], command: &str) -> Output {
        self.ssh_cmd(host, extra, command)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    }

    pub fn ssh_cmd(&self, host: &str, extra: &[&str], command: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg(self.ssh_config())
            .arg("-o")
            .arg("BatchMode=yes")
            .args(extra)
            .arg(host)
            .arg(command);
        cmd
    }

    /// Stops the demo with SIGTERM and returns its exit status within 15 s.
    pub fn stop(mut self) -> std::process::ExitStatus {
        terminate(&mut self.child)
    }

    /// A demo started and stopped cleanly, its directory kept (until dropped), so that the
    /// test can run `gatehouse serve` and the demo's sshd on what it left.
    pub fn left_behind() -> Demo {
        let mut demo = Demo::start();
        let stopped = terminate(&mut demo.child);
        assert!(stopped.success(), "demo exit {stopped:?}: {}", demo.log());
        demo
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            terminate(&mut self.child);
        }
        let _ = std::fs::remove_file(self.dir.path().with_extension("log"));
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the gatehouse binary with arguments.
pub fn gatehouse(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run gatehouse")
}

/// Resident set size of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The `.open` names of the recordings under `recordings` not sealed yet.
pub fn unsealed(recordings: &Path) -> Vec<PathBuf> {
    files_under(recordings)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "open"))
        .collect()
}

/// Waits (up to 10 s) until no recording under `recordings` is unsealed. An exec's recording
/// is finished and sealed just after its agent has the exit status (with others that end
/// within the sealer's window), so a test that reads recordings right after a command waits
/// for the `.open` names to go first.
pub fn wait_sealed(recordings: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = unsealed(recordings);
        if open.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "still unsealed: {open:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The log at `path` once it holds every one of `needles`; fails the test, showing the log,
/// when 15 s pass first. gatehouse writes its log lines from a thread of its own, so a line
/// about an event may land a moment after the agent has heard of the event.
pub fn log_containing(path: &Path, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        let missing: Vec<&str> = needles
            .iter()
            .copied()
            .filter(|n| !log.contains(n))
            .collect();
        if missing.is_empty() {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {missing:?} in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
