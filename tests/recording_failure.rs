//! Fail closed on recordings, through the real data path: when the recording of a command
//! cannot be created, the command is refused with a clear line and never reaches the target;
//! once recordings can be written again, commands run again.
//!
//! The tests run as root in CI, where permissions do not stop writes, so the recordings
//! directory is made unusable the way root also cannot bypass: the day's directory name is
//! taken by a regular file, or the recordings go on a small disk that fills up.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::disk::SmallDisk;
use common::serve::{start_serve, start_sshd};
use common::{stderr, stdout, Demo};

/// The day directories a recording made now may go to (today and, near midnight, tomorrow).
fn day_dirs(demo: &Demo) -> Vec<std::path::PathBuf> {
    let now = chrono::Utc::now();
    let mut dirs: Vec<_> = [now, now + chrono::Duration::minutes(5)]
        .iter()
        .map(|t| {
            demo.path()
                .join("recordings")
                .join(t.format("%Y-%m-%d").to_string())
        })
        .collect();
    dirs.dedup();
    dirs
}

#[test]
fn unwritable_recordings_refuse_the_command_and_nothing_runs() {
    let demo = Demo::start();
    let marker = demo.path().join("unrecorded-marker");
    let dirs = day_dirs(&demo);
    for dir in &dirs {
        if dir.is_dir() {
            std::fs::remove_dir_all(dir).unwrap();
        }
        std::fs::write(dir, b"not a directory\n").unwrap();
    }

    let out = demo.ssh("demo", &[], &format!("touch {}", marker.display()));
    assert_eq!(out.status.code(), Some(126), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("gatehouse: ") && err.contains("recording"),
        "stderr: {err}"
    );
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(stdout(&out).is_empty());
    assert!(!marker.exists(), "the command ran without a recording");

    // Recordings can be written again: the next command runs and is recorded.
    for dir in &dirs {
        std::fs::remove_file(dir).unwrap();
    }
    let out = demo.ssh("demo", &[], "echo recorded-again");
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "recorded-again\n");
    let recorded = dirs
        .iter()
        .filter(|d| d.is_dir())
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .filter_map(Result::ok)
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("recorded-again")));
    assert!(recorded, "the command after recovery left no recording");
}

/// With the agent's input recorded, a recording that fills its disk in the middle of an upload
/// ends the command there (fail closed), and the agent is told so at once with status 126.
/// (The upstream side closes first in this case; the agent must not be left waiting for a
/// target that can no longer answer.)
#[test]
fn a_recording_that_fails_on_input_ends_the_command_and_tells_the_agent() {
    common::require_openssh();
    let demo = Demo::left_behind();
    let dir = demo.path();
    let config = dir.join("gatehouse.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    assert!(!toml.contains("[recording]"));
    toml.push_str("\n[recording]\nrecord_input = true\n");
    std::fs::write(&config, toml).unwrap();
    let Some(_disk) = SmallDisk::over(&dir.join("recordings"), "1m") else {
        eprintln!("SKIPPED: mounting the small disk needs root");
        return;
    };
    let _sshd = start_sshd(dir);
    let _serve = start_serve(&config, &[], &dir.join("serve.log"));

    // 8 MB of NULs: 48 MB of recording (JSON spells each as \u0000), far over the disk.
    let mut agent = demo
        .ssh_cmd("demo", &[], "cat > /dev/null; echo uploaded")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = agent.id();
    let mut stdin = agent.stdin.take().unwrap();
    std::thread::spawn(move || {
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..128 {
            if stdin.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(agent.wait_with_output());
    });
    let Ok(out) = finished.recv_timeout(Duration::from_secs(30)) else {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status();
        panic!("the agent was still waiting 30 s after its upload began");
    };
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(126), "stderr: {}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "gatehouse: the session recording failed; ending the command\n"
    );
    assert!(!stdout(&out).contains("uploaded"), "{}", stdout(&out));
}
