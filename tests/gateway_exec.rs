//! End to end through gatehouse: real OpenSSH `ssh` → gatehouse → real OpenSSH `sshd`.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::shared::SharedSsh;
use common::{stderr, stdout, Demo};

#[test]
fn allowed_exec_returns_target_output_and_status_unchanged() {
    let demo = Demo::start();
    let cmd = "printf 'out\\n'; printf 'err\\n' >&2; exit 3";
    let via = demo.ssh("demo", &[], cmd);
    let direct = demo.ssh("demo-direct", &[], cmd);
    assert_eq!(stdout(&via), "out\n", "stderr: {}", stderr(&via));
    assert_eq!(stderr(&via), "err\n");
    assert_eq!(via.status.code(), Some(3));
    assert_eq!(via.stdout, direct.stdout);
    assert_eq!(via.stderr, direct.stderr);
    assert_eq!(via.status.code(), direct.status.code());
}

/// The target may end its output well before the command exits, and an OpenSSH client
/// sharing its connection (ControlMaster) closes the channel as soon as it has sent and
/// received EOF; the exit status then comes from sshd after that close, as it does directly.
/// Through gatehouse the agent must get the same status, not 255.
#[test]
fn exit_status_that_comes_after_the_output_ends_reaches_the_agent() {
    let demo = Demo::start();
    let cmd = "exec </dev/null >/dev/null 2>&1; sleep 0.3; exit 3";
    for host in ["demo-direct", "demo"] {
        let shared = SharedSsh::new(&demo, host);
        let first = shared.ssh(&[], "true");
        assert_eq!(first.status.code(), Some(0), "{host}: {}", stderr(&first));
        for _ in 0..2 {
            let out = shared.ssh(&[], cmd);
            assert_eq!(out.status.code(), Some(3), "{host}: {}", stderr(&out));
            assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{host}");
        }
    }
}

/// An agent that goes away in the middle of a command (its `ssh` killed) can hear nothing
/// more, and nothing more comes from the target once gatehouse closes its side; the exec ends
/// and its recording is sealed then, not after a grace period spent waiting for nothing (5 s
/// before). The command itself is left to the target, as sshd leaves it.
#[test]
fn an_agent_that_leaves_mid_command_has_its_recording_sealed_at_once() {
    let demo = Demo::start();
    let recordings = demo.path().join("recordings");
    let open = || common::unsealed(&recordings).len();
    let started = demo.path().join("started");
    let mut agent = demo
        .ssh_cmd(
            "demo",
            &[],
            &format!("touch {}; sleep 8", started.display()),
        )
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the command never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(open(), 1, "the running exec's recording is not open");
    agent.kill().unwrap();
    agent.wait().unwrap();
    let left = Instant::now();
    while open() > 0 {
        assert!(
            left.elapsed() < Duration::from_secs(3),
            "the recording was still open 3 s after the agent left"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    demo.log_containing(&["exec finished exit_status=None"]);
}

#[test]
fn killed_command_reports_the_same_as_direct() {
    let demo = Demo::start();
    let cmd = "kill -TERM $$";
    let via = demo.ssh("demo", &[], cmd);
    let direct = demo.ssh("demo-direct", &[], cmd);
    assert_eq!(
        via.status.code(),
        direct.status.code(),
        "via stderr: {}",
        stderr(&via)
    );
    assert_ne!(via.status.code(), Some(0));
}

#[test]
fn denied_command_gets_126_and_one_line_and_never_runs() {
    let demo = Demo::start();
    let marker = demo.path().join("denied-marker");
    let cmd = format!(
        "touch {}; mkfs.ext4 /dev/gatehouse-test-nonexistent",
        marker.display()
    );
    let out = demo.ssh("demo", &[], &cmd);
    assert_eq!(out.status.code(), Some(126), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("gatehouse: denied by rule "),
        "stderr: {err}"
    );
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(stdout(&out).is_empty());
    assert!(!marker.exists(), "the denied line ran upstream");
}

#[test]
fn held_command_in_return_mode_exits_75_and_does_not_run() {
    let demo = Demo::start();
    let marker = demo.path().join("held-marker");
    let cmd = format!(
        "touch {} && systemctl restart gatehouse-test-nonexistent",
        marker.display()
    );
    let out = demo.ssh("demo", &["-o", "SetEnv=GATEHOUSE_APPROVAL=return"], &cmd);
    assert_eq!(out.status.code(), Some(75), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("gatehouse: held by rule systemctl-disruptive ("),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!marker.exists());
}

#[test]
fn stdin_is_bridged_and_eof_forwarded() {
    let demo = Demo::start();
    let mut child = demo
        .ssh_cmd("demo", &[], "wc -c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&[b'x'; 100_000])
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out).trim(), "100000");
    assert!(out.status.success());
}

#[test]
fn fifty_megabytes_through_cat_both_ways_keep_their_checksum() {
    let demo = Demo::start();
    let data_path = demo.path().join("blob");
    let mut data = Vec::with_capacity(50 * 1024 * 1024);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while data.len() < 50 * 1024 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&data_path, &data).unwrap();
    let out = demo
        .ssh_cmd("demo", &[], "cat")
        .stdin(std::fs::File::open(&data_path).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "bytes differ after the round trip");
}

#[test]
fn shell_and_subsystem_requests_are_refused() {
    let demo = Demo::start();
    let shell = demo
        .ssh_cmd("demo", &["-T"], "")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // `ssh HOST ''` sends a shell request.
    assert_ne!(shell.status.code(), Some(0));
    assert!(
        stderr(&shell).contains("gatehouse: interactive shells are not available"),
        "{}",
        stderr(&shell)
    );

    let sftp = std::process::Command::new("sftp")
        .arg("-F")
        .arg(demo.ssh_config())
        .arg("-b")
        .arg("-")
        .arg("demo")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ne!(sftp.status.code(), Some(0));

    // Each channel claimed recording files when it opened; nothing ran, so none are left.
    // (`.spare` holds the empty files made ahead for recordings.)
    let recordings = demo.path().join("recordings");
    let days = || {
        std::fs::read_dir(&recordings)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.ends_with(".spare"))
            .collect::<Vec<_>>()
    };
    // The claims made the day's directory: they did happen.
    assert_eq!(days().len(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left: Vec<_> = days()
            .into_iter()
            .flat_map(|day| std::fs::read_dir(day).unwrap())
            .map(|f| f.unwrap().path())
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left behind: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn forwarding_is_refused() {
    let demo = Demo::start();
    // -W opens a direct-tcpip channel at once.
    let out = demo.ssh("demo", &["-W", "127.0.0.1:9"], "");
    assert_ne!(out.status.code(), Some(0));
    let remote = demo.ssh(
        "demo",
        &["-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"],
        "true",
    );
    assert_ne!(remote.status.code(), Some(0), "remote forward was accepted");
    demo.log_containing(&["direct-tcpip", "tcpip-forward"]);
}

#[test]
fn environment_is_filtered() {
    let demo = Demo::start();
    let out = demo.ssh(
        "demo",
        &["-o", "SetEnv=GATEHOUSE_TEST_SECRET=leak LC_GATEHOUSE=ok"],
        "echo \"[$GATEHOUSE_TEST_SECRET][$LC_GATEHOUSE]\"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "[][ok]");
    let log = demo.log_containing(&["GATEHOUSE_TEST_SECRET"]);
    assert!(!log.contains("leak"), "an env value reached the log");
}

/// Out of file descriptors, `accept` fails (EMFILE). That must slow newcomers down, not stop
/// the server: once the connections that used them up are gone, agents are served again.
#[test]
fn running_out_of_descriptors_does_not_stop_the_server() {
    let demo = Demo::start_with_open_files(64, &[]);
    let before = demo.ssh("demo", &[], "echo before");
    assert_eq!(stdout(&before), "before\n", "{}", stderr(&before));
    let flood: Vec<std::net::TcpStream> = (0..120)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", demo.port())).ok())
        .collect();
    assert!(flood.len() > 64, "only {} connections opened", flood.len());
    let fds = format!("/proc/{}/fd", demo.pid());
    common::serve::wait_until("gatehouse to run out of descriptors (or exit)", || {
        std::fs::read_dir(&fds).map_or(true, |d| d.count() >= 60)
    });
    drop(flood);
    let after = demo.ssh("demo", &[], "echo after");
    assert_eq!(stdout(&after), "after\n", "{}", stderr(&after));
    demo.log_containing(&["accepting agent connections again"]);
}

#[test]
fn demo_stops_cleanly_with_its_sshd() {
    let demo = Demo::start();
    let pid_file = demo.path().join("sshd/sshd.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let pid = pid.trim().to_string();
    let dir = demo.path().to_path_buf();
    let status = demo.stop();
    assert!(status.success(), "demo exit: {status:?}");
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(!alive, "demo sshd {pid} still running");
    drop(dir);
}

/// `ssh demo 'head -c 300000000 /dev/zero'` whose output nobody has read for four seconds: the
/// target keeps producing, so gatehouse's queue fills and must push back on the target.
fn stalled_download(demo: &Demo) -> std::process::Child {
    let child = demo
        .ssh_cmd("demo", &[], "head -c 300000000 /dev/zero")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(4));
    child
}

#[test]
fn slow_reader_does_not_grow_gatehouse_memory() {
    let demo = Demo::start();
    // Warm up the upstream pool so that its allocation is in the baseline.
    assert!(demo.ssh("demo", &[], "true").status.success());
    let before = common::rss_kib(demo.pid());
    let mut child = stalled_download(&demo);
    let stalled = common::rss_kib(demo.pid());
    let total = std::io::copy(&mut child.stdout.take().unwrap(), &mut std::io::sink()).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(total, 300_000_000);
    let grown_mib = stalled.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "gatehouse grew by {grown_mib} MiB while the agent did not read"
    );
}

#[test]
fn a_stalled_reader_does_not_hold_up_other_agents() {
    use std::io::Read;
    let demo = Demo::start();
    // One pooled upstream connection, which the stalled channel will back up.
    assert!(demo.ssh("demo", &[], "true").status.success());
    let mut stalled = stalled_download(&demo);
    // Other commands still run. The deadline only tells a hang from slowness.
    for i in 0..5 {
        let mut child = demo
            .ssh_cmd("demo", &[], &format!("echo other-{i}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = stalled.kill();
                panic!("exec {i} hung behind the stalled reader");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(status.success());
        assert_eq!(out, format!("other-{i}\n"));
    }
    // The stalled transfer is intact once read.
    let total = std::io::copy(&mut stalled.stdout.take().unwrap(), &mut std::io::sink()).unwrap();
    assert!(stalled.wait().unwrap().success());
    assert_eq!(total, 300_000_000);
}
