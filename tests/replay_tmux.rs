//! `gatehouse replay` in a real terminal: tmux runs the binary in a detached 100×30 pane,
//! `send-keys` presses keys, `capture-pane` reads the screen. Skipped (with a note) when tmux
//! is not installed; `scripts/test` installs it.

use std::path::Path;
use std::time::{Duration, Instant};

use gatehouse::record::cast::{Recorder, RecordingHeader};

mod common;

use common::tmux::Tmux;
use common::BIN;

/// Starts `gatehouse replay FILE` in a detached 100×30 session, or `None` without tmux.
fn replay(name: &str, file: &Path) -> Option<Tmux> {
    let cmd = format!("{BIN} replay '{}'", file.display());
    Tmux::start(name, "replay", &cmd, Duration::from_secs(10))
}

/// A gatehouse-style exec recording with long pauses kept (idle_time_limit 1000), so the
/// player cannot reach the second command on its own while the test presses keys.
const FIXTURE: &str = concat!(
    r#"{"version":2,"width":80,"height":24,"timestamp":1748772000,"idle_time_limit":1000,"title":"tmux fixture","gatehouse":{"session_id":"s9","identity":"ci-agent","serial":1,"target":"web-1","upstream_user":"deploy","client":"127.0.0.1:1","channel":0,"pty":false}}"#,
    "\n",
    r#"[0.1,"m","cmd: echo first"]"#,
    "\n",
    r#"[0.2,"o","FIRST-OUTPUT\n"]"#,
    "\n",
    r#"[200.0,"m","cmd: deploy --now"]"#,
    "\n",
    r#"[200.5,"o","DEPLOY-DONE\nsecond line\n"]"#,
    "\n",
    r#"[201.0,"m","exit 0"]"#,
    "\n",
    r#"[201.0,"x","0"]"#,
    "\n",
);

#[test]
fn next_marker_in_a_real_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fixture.cast");
    std::fs::write(&file, FIXTURE).unwrap();
    let Some(tmux) = replay("markers", &file) else {
        return;
    };
    let screen = tmux.wait_for("the first output", |s| s.contains("FIRST-OUTPUT"));
    assert!(screen.contains("ci-agent → web-1"), "{screen}");

    tmux.keys(&["n"]);
    let screen = tmux.wait_for("the deploy marker", |s| s.contains("▸ cmd: deploy --now"));
    assert!(screen.contains("marker 2/3"), "{screen}");
    assert!(
        !screen.contains("DEPLOY-DONE"),
        "paused at the marker:\n{screen}"
    );

    tmux.keys(&["n"]);
    let screen = tmux.wait_for("the exit marker", |s| s.contains("▸ exit 0"));
    // Exec output with bare \n: every line starts at column 0.
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines.contains(&"DEPLOY-DONE"), "{screen}");
    assert!(lines.contains(&"second line"), "{screen}");
    assert!(screen.contains("exit 0"), "{screen}");

    tmux.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmux.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!tmux.alive(), "q ends the player");
}

#[test]
fn plays_a_recording_written_by_gatehouse() {
    let dir = tempfile::tempdir().unwrap();
    let audit = gatehouse::audit::AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
    let header = RecordingHeader {
        session_id: "sess-tmux".into(),
        channel: 0,
        identity: "agent-7".into(),
        serial: 2,
        target: "db-1".into(),
        upstream_user: "postgres".into(),
        client: "127.0.0.1:2".into(),
        width: 80,
        height: 24,
        term: None,
        title: "psql -c 'select 1'".into(),
        pty: false,
    };
    let mut rec = Recorder::create(&dir.path().join("rec"), &header).unwrap();
    rec.marker("cmd: psql -c 'select 1'").unwrap();
    rec.marker("allow rule read-only-sql").unwrap();
    rec.output(b" ?column?\n----------\n        1\n").unwrap();
    rec.marker("exit 3").unwrap();
    let sealed = rec.finish(Some(3), &audit).unwrap();

    let Some(tmux) = replay("written", &sealed.path) else {
        return;
    };
    let screen = tmux.wait_for("the end of the recording", |s| s.contains("ended, exit 3"));
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines.contains(&"----------"), "{screen}");
    assert!(lines.contains(&"        1"), "{screen}");
    assert!(screen.contains("agent-7 → db-1"), "{screen}");
    tmux.keys(&["C-c"]);
}
