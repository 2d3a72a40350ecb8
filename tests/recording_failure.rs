//! Fail closed on recordings, through the real data path: when the recording of a command
//! cannot be created, the command is refused with a clear line and never reaches the target;
//! once recordings can be written again, commands run again.
//!
//! The tests run as root in CI, where permissions do not stop writes, so the recordings
//! directory is made unusable the way root also cannot bypass: the day's directory name is
//! taken by a regular file.

mod common;

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
