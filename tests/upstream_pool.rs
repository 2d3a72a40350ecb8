//! The upstream pool against a target that allows fewer sessions per connection than
//! gatehouse's `max_channels`, run on the files a stopped `gatehouse demo` left behind with its
//! sshd restarted at `MaxSessions 3`. The pool keeps a spare channel open on each connection and
//! learns the target's limit from refused opens: neither may ever fail an agent's exec, whether
//! execs come one after another (each leaving a spare behind) or many at once.

mod common;

use std::process::{Command, Output, Stdio};

use common::serve::{start_serve, start_sshd};
use common::{stderr, stdout};

fn ssh(ssh_config: &std::path::Path, command: &str) -> std::process::Child {
    Command::new("ssh")
        .arg("-F")
        .arg(ssh_config)
        .args(["-o", "BatchMode=yes", "demo", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn assert_ran(out: &Output, expected: &str, log: &std::path::Path) {
    assert!(
        out.status.success() && stdout(out) == expected,
        "status {:?}, stdout {:?}, stderr {:?}\n{}",
        out.status,
        stdout(out),
        stderr(out),
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
fn execs_succeed_when_the_target_allows_fewer_sessions_than_max_channels() {
    common::require_openssh();
    let demo = common::Demo::left_behind();
    let dir = demo.path();
    let ssh_config = demo.ssh_config();
    let sshd_config = dir.join("sshd/sshd_config");
    let text = std::fs::read_to_string(&sshd_config).unwrap();
    assert!(text.contains("MaxSessions 64\n"));
    std::fs::write(
        &sshd_config,
        text.replace("MaxSessions 64\n", "MaxSessions 3\n"),
    )
    .unwrap();
    let _sshd = start_sshd(dir);
    let log = dir.join("serve.log");
    let _serve = start_serve(&dir.join("gatehouse.toml"), &[], &log);

    // One after another: from the second on, each runs on the spare the previous one left.
    for i in 0..6 {
        let out = ssh(&ssh_config, &format!("echo seq-{i}"))
            .wait_with_output()
            .unwrap();
        assert_ran(&out, &format!("seq-{i}\n"), &log);
    }
    // Waves of overlapping execs: more than one connection's worth, with spares in between.
    for wave in 0..3 {
        let running: Vec<_> = (0..7)
            .map(|i| ssh(&ssh_config, &format!("sleep 0.3; echo wave-{wave}-{i}")))
            .collect();
        for (i, child) in running.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            assert_ran(&out, &format!("wave-{wave}-{i}\n"), &log);
        }
    }
    // Seven at once cannot fit on one connection of three sessions: the pool opened more.
    let log_text = std::fs::read_to_string(&log).unwrap();
    let connections = log_text.matches("upstream connection established").count();
    assert!(connections >= 3, "{connections} connections\n{log_text}");
}
