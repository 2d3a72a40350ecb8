//! `gatehouse serve` as an operator runs it, on the files a stopped `gatehouse demo` left behind
//! (its config, keys and store), and the demo's target sshd started again from its config.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills a child process when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Polls `ready` every 50 ms for up to a minute.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The demo target's sshd, from the configuration the demo wrote.
pub fn start_sshd(dir: &Path) -> Running {
    let config = dir.join("sshd/sshd_config");
    let port: u16 = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Port "))
        .and_then(|p| p.trim().parse().ok())
        .expect("the demo's sshd_config names its port");
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut sshd = Running(child);
    wait_until("the sshd", || {
        assert!(sshd.0.try_wait().unwrap().is_none(), "sshd exited");
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    sshd
}

/// `gatehouse [global_args] --config CONFIG serve`, logging to `log_path`, once it listens.
pub fn start_serve(config: &Path, global_args: &[&str], log_path: &Path) -> Running {
    let mut serve = Running(
        Command::new(super::BIN)
            .args(global_args)
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(log_path).unwrap_or_default();
    wait_until("gatehouse listening", || {
        assert!(
            serve.0.try_wait().unwrap().is_none(),
            "serve exited: {}",
            log()
        );
        log().contains("gatehouse listening")
    });
    serve
}
