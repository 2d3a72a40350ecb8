//! Upstream failures through the real programs: the target's sshd down, and a target whose host
//! key does not match the pin. gatehouse runs as `gatehouse serve` on the demo's files.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, Demo, BIN};

/// Starts `gatehouse serve --config FILE` and waits for its port.
fn serve(config: &std::path::Path, port: u16, log: &std::path::Path) -> Child {
    let child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "gatehouse serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn gatehouse_port(config_text: &str) -> u16 {
    config_text
        .lines()
        .find_map(|l| l.strip_prefix("ssh_listen = \"127.0.0.1:"))
        .and_then(|rest| rest.trim_end_matches('"').parse().ok())
        .unwrap()
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

#[test]
fn target_down_and_host_key_mismatch_are_refused_clearly() {
    let demo = Demo::start();
    let dir = demo.path().to_path_buf();
    let config = dir.join("gatehouse.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let port = gatehouse_port(&text);
    // Stopping the demo stops its sshd: the target is down. Keep its files.
    let keep = tempfile::Builder::new()
        .prefix("gatehouse-upstream-")
        .tempdir()
        .unwrap();
    let copy = keep.path().join("demo");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&dir)
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    assert!(demo.stop().success());
    let config = copy.join("gatehouse.toml");
    let text = text.replace(dir.to_str().unwrap(), copy.to_str().unwrap());
    std::fs::write(&config, &text).unwrap();
    let ssh_config = std::fs::read_to_string(copy.join("ssh_config"))
        .unwrap()
        .replace(dir.to_str().unwrap(), copy.to_str().unwrap());
    std::fs::write(copy.join("ssh_config"), ssh_config).unwrap();
    let ssh = |cmd: &str| {
        let started = Instant::now();
        let out = Command::new("ssh")
            .arg("-F")
            .arg(copy.join("ssh_config"))
            .args(["-o", "BatchMode=yes", "demo", cmd])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out, started.elapsed())
    };

    let server = serve(&config, port, &keep.path().join("serve-1.log"));
    let (out, took) = ssh("echo hello");
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("gatehouse: target demo unreachable"),
        "{}",
        stderr(&out)
    );
    assert!(took < Duration::from_secs(15), "no answer for {took:?}");
    stop(server);

    // The target is back, but presents another host key than the pinned one.
    let sshd_config = copy.join("sshd/sshd_config");
    let other = copy.join("sshd/other_host_key");
    let sshd_text = std::fs::read_to_string(&sshd_config)
        .unwrap()
        .replace(dir.to_str().unwrap(), copy.to_str().unwrap())
        .lines()
        .map(|l| {
            if l.starts_with("HostKey ") {
                format!("HostKey {}", other.display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&sshd_config, sshd_text + "\n").unwrap();
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap()
        .success());
    let mut sshd = Command::new("/usr/sbin/sshd")
        .arg("-D")
        .arg("-f")
        .arg(&sshd_config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sshd_port: u16 = text
        .lines()
        .find_map(|l| l.strip_prefix("address = \"127.0.0.1:"))
        .and_then(|rest| rest.trim_end_matches('"').parse().ok())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", sshd_port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
    let server = serve(&config, port, &keep.path().join("serve-2.log"));
    let (out, _) = ssh("echo hello");
    stop(server);
    let _ = sshd.kill();
    let _ = sshd.wait();
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unpinned host key"),
        "{}",
        stderr(&out)
    );
    let log = std::fs::read_to_string(keep.path().join("serve-2.log")).unwrap();
    assert!(log.contains("upstream host key is not pinned"), "{log}");
}
