//! Bulk output through gatehouse with the real OpenSSH client: fifty transfers of 100 MB, a few
//! at a time, each must end on its own with status 0 and every byte. The test fails on a hang
//! (a generous per-transfer deadline), not on slowness: speed is measured in benches/e2e.py.
//!
//! The demo runs as shipped, recording and masking on. A recording of 100 MB of NUL bytes is
//! 600 MB of JSON, so each transfer's recording is deleted once its client has exited: the
//! test checks the data path, and CI machines should not write 30 GB for it.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Demo;

const TRANSFERS: usize = 50;
const BYTES: u64 = 100_000_000;
/// Transfers in flight at once: enough to share the pooled upstream connection.
const CONCURRENCY: usize = 4;
/// A transfer that takes longer than this is taken for a hang and killed.
const DEADLINE: Duration = Duration::from_secs(600);

/// Runs one transfer; returns the bytes received (all checked to be zero) or why it failed.
fn transfer(demo: &Demo) -> Result<u64, String> {
    let mut child = demo
        .ssh_cmd("demo", &[], &format!("head -c {BYTES} /dev/zero"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start ssh: {e}"))?;
    let pid = child.id();
    let finished = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (finished, killed) = (finished.clone(), killed.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            while !finished.load(Ordering::SeqCst) {
                if start.elapsed() > DEADLINE {
                    killed.store(true, Ordering::SeqCst);
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let mut stdout = child.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 1 << 16];
    let (mut total, mut nonzero) = (0u64, 0u64);
    loop {
        match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                nonzero += buf[..n].iter().filter(|&&b| b != 0).count() as u64;
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let mut err = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    finished.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    if killed.load(Ordering::SeqCst) {
        return Err(format!(
            "hung: killed after {DEADLINE:?} with {total} bytes"
        ));
    }
    if !status.success() {
        return Err(format!(
            "ssh exited with {status} after {total} bytes: {err}"
        ));
    }
    if nonzero != 0 {
        return Err(format!("{nonzero} bytes were not zero"));
    }
    Ok(total)
}

/// Deletes every recording file (sealed or still being written: an unlinked file's space is
/// freed when gatehouse closes it).
fn delete_recordings(demo: &Demo) {
    let root = demo.path().join("recordings");
    let Ok(days) = std::fs::read_dir(&root) else {
        return;
    };
    for day in days.flatten() {
        for file in std::fs::read_dir(day.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if file.path().extension().is_some_and(|e| e == "cast") {
                let _ = std::fs::remove_file(file.path());
            }
        }
    }
}

/// The last `n` lines of a log.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// 5 GB through the pooled upstream connections: each is rotated after 1 GiB (a fresh connection
// takes new channels while the old one finishes its own), so russh never re-keys a connection
// with several channels streaming, which would drop them all.
#[test]
fn fifty_transfers_of_100_mb_through_openssh_complete() {
    let demo = Demo::start();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..CONCURRENCY {
            scope.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= TRANSFERS {
                    return;
                }
                match transfer(&demo) {
                    Ok(total) if total == BYTES => {}
                    Ok(total) => failures
                        .lock()
                        .unwrap()
                        .push(format!("transfer {n}: {total} of {BYTES} bytes")),
                    Err(why) => failures
                        .lock()
                        .unwrap()
                        .push(format!("transfer {n}: {why}")),
                }
                delete_recordings(&demo);
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {TRANSFERS} transfers failed (in {:?}):\n{}\n\ngatehouse log tail:\n{}",
        failures.len(),
        started.elapsed(),
        failures.join("\n"),
        tail(&demo.log(), 40)
    );
    let log = demo.log();
    // Every exec ended through the normal path (no stuck bridges left behind).
    assert!(
        !log.contains("recording write failed"),
        "a recording failed during the transfers"
    );
    // The transfers outgrew the first connections: rotation happened, with channels in flight.
    // How many times depends on how the pool spread the 5 GB (a backed-up connection gets no
    // new channels, so several share the load); none at all would need five or more
    // connections each under 1 GiB.
    let rotations = log.matches("rotating pooled upstream connection").count();
    let connections = log.matches("upstream connection established").count();
    eprintln!("{rotations} rotations over {connections} pooled connections");
    assert!(
        rotations >= 1,
        "expected the pooled connection to be rotated during 5 GB; {connections} connections, \
         no rotation"
    );
}
