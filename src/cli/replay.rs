//! `gatehouse replay FILE.cast`: plays a recording (any asciicast v2 file) on the local
//! terminal with the console's replay view.
//!
//! Raw mode comes from `stty` (run with our stdin, restored from `stty -g` on every exit path
//! that returns), which keeps a terminal library out of the binary: the view itself only needs
//! bytes in and bytes out. Keys are read by a thread and handed over on a bounded channel; the
//! loop ticks the player every 33 ms and writes only what changed on screen.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use gatehouse_tui::{enter_screen, leave_screen, Action, ReplayApp};

/// Frame period: about 30 frames a second.
const TICK: Duration = Duration::from_millis(33);
/// How often the terminal size is checked (one `stty size` each time).
const SIZE_CHECK: Duration = Duration::from_millis(500);
/// Reads queued between frames; the reader blocks when the player falls behind.
const INPUT_QUEUE: usize = 64;

/// Runs the player until the viewer quits; returns the process exit status.
pub fn run(path: &Path) -> anyhow::Result<i32> {
    let mut app = ReplayApp::open(path).context("cannot replay")?;
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        bail!("gatehouse replay needs a terminal (stdin and stdout); try `asciinema cat FILE` for a pipe");
    }
    let raw = RawMode::enable()?;
    let mut out = std::io::stdout().lock();
    out.write_all(enter_screen())?;
    let result = play(&mut app, &mut out);
    // Leave the screen and restore the terminal even when playing failed.
    let _ = out.write_all(leave_screen());
    let _ = out.flush();
    drop(raw);
    result.map(|()| 0)
}

fn play(app: &mut ReplayApp, out: &mut impl Write) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(INPUT_QUEUE);
    // The reader blocks in read(); it ends with the process (there is no portable way to
    // interrupt a blocking stdin read), which is right after this returns.
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf.get(..n).unwrap_or_default().to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut size = terminal_size().unwrap_or((80, 24));
    app.resize(size.0, size.1);
    let mut last_size_check = Instant::now();
    loop {
        match rx.recv_timeout(TICK) {
            Ok(bytes) => {
                if app.handle_input(&bytes).contains(&Action::Quit) {
                    return Ok(());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // stdin closed: nothing can stop the player any more, so stop now.
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
        let now = Instant::now();
        if now.duration_since(last_size_check) >= SIZE_CHECK {
            last_size_check = now;
            if let Some(new) = terminal_size().filter(|s| *s != size) {
                size = new;
                app.resize(size.0, size.1);
            }
        }
        app.tick(now);
        let frame = app.render();
        if !frame.is_empty() {
            out.write_all(&frame)?;
            out.flush()?;
        }
    }
}

/// The terminal in raw mode, without echo, until dropped.
struct RawMode {
    /// `stty -g` output from before: restores every setting exactly.
    saved: String,
}

impl RawMode {
    fn enable() -> anyhow::Result<RawMode> {
        let saved = stty(&["-g"]).context("cannot read the terminal settings (stty -g)")?;
        stty(&["raw", "-echo"]).context("cannot put the terminal in raw mode (stty raw -echo)")?;
        Ok(RawMode {
            saved: saved.trim().to_string(),
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if stty(&[self.saved.as_str()]).is_err() {
            let _ = stty(&["sane"]);
        }
    }
}

/// Runs `stty ARGS` on our terminal (stdin) and returns its output.
fn stty(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("stty")
        .args(args)
        .stdin(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .context("cannot run stty")?;
    if !output.status.success() {
        bail!(
            "stty {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Columns and rows from `stty size` (which prints `rows cols`).
fn terminal_size() -> Option<(u16, u16)> {
    let text = stty(&["size"]).ok()?;
    let mut parts = text.split_whitespace();
    let rows: u16 = parts.next()?.parse().ok()?;
    let cols: u16 = parts.next()?.parse().ok()?;
    (rows > 0 && cols > 0).then_some((cols, rows))
}
