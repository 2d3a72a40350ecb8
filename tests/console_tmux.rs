//! The reviewer console in a real terminal: tmux runs the real `ssh -t -F DIR/ssh_config
//! console` against `gatehouse demo` (real sshd as target), `send-keys` presses keys and
//! `capture-pane` reads the screen. Agents are the real `ssh` client. Skipped (with a note)
//! when tmux is not installed; `scripts/test` installs it.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::tmux::Tmux;
use common::{stdout, Demo};

/// How long a screen may take to show what a test waits for. Generous: the point is that it
/// shows up without a keypress, not how fast (speed is measured in benches/approval.py).
const SCREEN_WAIT: Duration = Duration::from_secs(20);

/// Runs `ssh ARGS` in a detached pane, or `None` without tmux. After ssh ends the pane prints
/// `ssh exited STATUS` and stays, so the test can read both.
fn console_ssh(name: &str, demo: &Demo, args: &str) -> Option<Tmux> {
    let cmd = format!(
        "ssh -t -F '{}' -o BatchMode=yes {args}; echo \"ssh exited $?\"; sleep 600",
        demo.ssh_config().display()
    );
    Tmux::start(name, "console", &cmd, SCREEN_WAIT)
}

/// Waits for ssh to end and checks that the console left the alternate screen.
fn wait_for_exit(tmux: &Tmux, status: i32) {
    let screen = tmux.wait_for("ssh to end", |s| s.contains("ssh exited"));
    assert!(screen.contains(&format!("ssh exited {status}")), "{screen}");
    assert!(
        !screen.contains("1 Pending"),
        "the console's screen is still shown:\n{screen}"
    );
}

#[test]
fn a_held_command_appears_by_itself_and_is_approved_from_the_screen() {
    let demo = Demo::start();
    let Some(tmux) = console_ssh("approve", &demo, "console") else {
        return;
    };
    tmux.wait_for("the console", |s| s.contains("1 Pending (0)"));

    // python inline code is held by the default policy.
    let agent = demo
        .ssh_cmd("demo", &[], "python3 -c 'print(4242)'")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // No key is pressed: the request must show up by itself.
    let screen = tmux.wait_for("the held request", |s| {
        s.contains("1 Pending (1)") && s.contains("$ python3 -c 'print(4242)'")
    });
    assert!(screen.contains("rule interpreter"), "{screen}");
    assert!(screen.contains("agent → demo"), "{screen}");

    // The live sessions list shows it too, held.
    tmux.keys(&["2"]);
    let screen = tmux.wait_for("the live session", |s| {
        s.contains("python3 -c 'print(4242)'") && s.contains("held")
    });
    assert!(screen.contains("2 Sessions (1)"), "{screen}");
    tmux.keys(&["1"]);

    tmux.keys(&["a"]);
    tmux.wait_for("the approve prompt", |s| s.contains("Approve "));
    tmux.keys(&["looks-fine", "Enter"]);
    let out = agent.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "4242\n");
    let screen = tmux.wait_for("the outcome", |s| s.contains("approved (1 of 1 approvals)"));
    assert!(screen.contains("1 Pending (0)"), "{screen}");

    // A larger terminal (window-change): the status line moves to the new last row.
    let out = tmux.run(&["resize-window", "-t", "console", "-x", "120", "-y", "40"]);
    assert!(out.status.success(), "{out:?}");
    tmux.wait_for("the resized screen", |s| {
        s.lines().nth(39).is_some_and(|l| l.contains("approve"))
    });

    // Approved through the same path as `approve ID`: the comment is on the request.
    let all = demo.ssh("console", &[], "approvals --all --json");
    assert!(stdout(&all).contains("looks-fine"), "{}", stdout(&all));

    tmux.keys(&["q"]);
    wait_for_exit(&tmux, 0);
}

#[test]
fn a_recording_opens_from_the_filtered_list_and_jumps_to_markers() {
    let demo = Demo::start();
    let ran = demo.ssh("demo", &[], "echo replay-me-please");
    assert!(ran.status.success(), "{ran:?}");
    common::wait_sealed(&demo.path().join("recordings"));
    let Some(tmux) = console_ssh("replay", &demo, "console") else {
        return;
    };
    tmux.wait_for("the console", |s| s.contains("3 Recordings (1)"));
    tmux.keys(&["3"]);
    tmux.wait_for("the recordings list", |s| s.contains("started (UTC)"));

    // Filters: a decision that is not there, then the one that is.
    tmux.keys(&["f", "decision:deny", "Enter"]);
    tmux.wait_for("an empty list", |s| s.contains("No recordings match"));
    tmux.keys(&["c", "f", "decision:allow target:demo", "Enter"]);
    let screen = tmux.wait_for("the filtered list", |s| s.contains("1 of 1"));
    assert!(screen.contains("allow"), "{screen}");

    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the replay to end", |s| s.contains("ended, exit 0"));
    assert!(screen.contains("replay-me-please"), "{screen}");
    assert!(screen.contains("agent → demo"), "{screen}");

    tmux.keys(&["Home"]);
    tmux.keys(&["n"]);
    let screen = tmux.wait_for("the first marker", |s| s.contains("marker 1/"));
    assert!(screen.contains("▸ cmd: echo replay-me-please"), "{screen}");
    tmux.keys(&["n"]);
    tmux.wait_for("the second marker", |s| {
        s.contains("marker 2/") && s.contains("▸ allow rule")
    });
    tmux.keys(&["m"]);
    let screen = tmux.wait_for("the marker list", |s| s.contains("markers (n/p)"));
    assert!(screen.contains("exit 0"), "{screen}");

    // q leaves the replay for the list; Ctrl-C leaves the console.
    tmux.keys(&["q"]);
    tmux.wait_for("the list again", |s| s.contains("started (UTC)"));
    tmux.keys(&["C-c"]);
    wait_for_exit(&tmux, 0);
}

#[test]
fn an_agent_certificate_cannot_open_the_console() {
    let demo = Demo::start();
    let args = format!(
        "-o IdentityFile='{}' -o CertificateFile='{}' -o User=console demo",
        demo.path().join("keys/agent").display(),
        demo.path().join("keys/agent-cert.pub").display()
    );
    let Some(tmux) = console_ssh("refused", &demo, &args) else {
        return;
    };
    let screen = tmux.wait_for("ssh to end", |s| s.contains("ssh exited"));
    assert!(screen.contains("Permission denied"), "{screen}");
    assert!(screen.contains("ssh exited 255"), "{screen}");
    demo.log_containing(&["not in a reviewer group"]);
}
