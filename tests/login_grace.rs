//! `[server] login_grace` (OpenSSH's `LoginGraceTime`): a connection that has not
//! authenticated when the grace runs out is closed, whether it never identified itself or
//! stopped after gatehouse's key-exchange offer; an authenticated connection outlives it.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::serve::{start_serve, start_sshd};

const GRACE: Duration = Duration::from_secs(2);

/// Reads until gatehouse closes the connection; returns what was read and when it closed.
/// Panics if it is still open after 20 s.
fn read_until_closed(mut stream: TcpStream, started: Instant) -> (Vec<u8>, Duration) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, started.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, started.elapsed()),
            Err(e) => panic!("still open after {:?}: {e}", started.elapsed()),
        }
    }
}

#[test]
fn connections_that_do_not_authenticate_within_the_grace_are_closed() {
    common::require_openssh();
    let demo = common::Demo::left_behind();
    let dir = demo.path();
    let config_path = dir.join("gatehouse.toml");
    let config = std::fs::read_to_string(&config_path)
        .unwrap()
        .replace("[server]\n", "[server]\nlogin_grace = \"2s\"\n");
    std::fs::write(&config_path, config).unwrap();
    let _sshd = start_sshd(dir);
    let log_path = dir.join("serve.log");
    let _serve = start_serve(&config_path, &[], &log_path);
    let port = demo.port();

    // Silent after connecting: gatehouse identifies itself, waits out the grace, closes.
    let started = Instant::now();
    let silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (got, after) = read_until_closed(silent, started);
    assert!(got.starts_with(b"SSH-2.0-"), "{got:?}");
    assert!(
        after >= GRACE - Duration::from_millis(200),
        "closed after {after:?}"
    );

    // Identified, then stalled: gatehouse's key-exchange offer arrives, the grace runs out
    // all the same.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stalled.write_all(b"SSH-2.0-stalled_1.0\r\n").unwrap();
    let (got, after) = read_until_closed(stalled, started);
    let id_line = got.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert!(
        got.len() > id_line + 100,
        "no key-exchange offer after the identification: {got:?}"
    );
    assert!(
        after >= GRACE - Duration::from_millis(200),
        "closed after {after:?}"
    );

    // Authenticated in time: the connection outlives the grace.
    let out = demo.ssh("demo", &[], "sleep 3; echo still-here");
    assert_eq!(
        common::stdout(&out),
        "still-here\n",
        "{}",
        common::stderr(&out)
    );
    assert!(out.status.success());

    // Each line carries the connection's span: which connection, from where.
    let log = common::log_containing(
        &log_path,
        &[
            "agent sent no SSH identification within the login grace",
            "agent did not authenticate within the login grace",
        ],
    );
    for message in [
        "agent sent no SSH identification within the login grace",
        "agent did not authenticate within the login grace",
    ] {
        let line = log.lines().find(|l| l.contains(message));
        let line = line.unwrap_or_else(|| panic!("no {message:?} in {log}"));
        assert!(
            line.contains("session_id=") && line.contains("peer=127.0.0.1:"),
            "{line}"
        );
    }
}
