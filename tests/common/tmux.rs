//! A terminal for tests: a tmux server of our own (unique socket) running one command in a
//! detached 100×30 session. `send-keys` presses keys, `capture-pane` reads the screen; the
//! server is killed on drop.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// One tmux server with one session.
pub struct Tmux {
    /// `-L` socket name, unique per test process and test.
    socket: String,
    /// The session's name (`-t` target).
    pub session: &'static str,
    /// How long [`Tmux::wait_for`] waits for a screen.
    wait: Duration,
}

impl Tmux {
    /// Starts `command` in a detached session, or `None` (with a note) without tmux.
    pub fn start(name: &str, session: &'static str, command: &str, wait: Duration) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            eprintln!("tmux is not installed: skipping");
            return None;
        }
        let tmux = Tmux {
            socket: format!("gatehouse-{session}-{}-{name}", std::process::id()),
            session,
            wait,
        };
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "100",
            "-y",
            "30",
            command,
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        Some(tmux)
    }

    /// Runs a tmux command against this server.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap()
    }

    /// Presses keys in the session.
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.session];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success());
    }

    /// The visible screen.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", self.session]).stdout)
            .into_owned()
    }

    /// Waits for the screen to satisfy `ok`; returns that screen. Fails the test naming `what`
    /// and showing the last screen when it does not come.
    pub fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + self.wait;
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the session (its command) still runs.
    pub fn alive(&self) -> bool {
        self.run(&["has-session", "-t", self.session])
            .status
            .success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
