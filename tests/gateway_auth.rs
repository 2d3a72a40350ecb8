//! Authentication against the real OpenSSH client, with certificates made by the real
//! `ssh-keygen` (signed by the demo's CA or by a foreign one).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{stderr, stdout, Demo};

/// Makes a fresh key in `dir` named `name`, returning its private key path.
fn keygen(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    key
}

/// Signs `key`.pub with `ca`, passing extra ssh-keygen options; returns the cert path.
fn sign(ca: &Path, key: &Path, extra: &[&str]) -> PathBuf {
    let out = Command::new("ssh-keygen")
        .arg("-q")
        .arg("-s")
        .arg(ca)
        .args(extra)
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen: {}", stderr(&out));
    PathBuf::from(format!("{}-cert.pub", key.display()))
}

/// Runs `echo ok` on target `demo` with this key and certificate.
fn try_login(demo: &Demo, key: &Path, cert: Option<&Path>, user: &str) -> std::process::Output {
    let mut args: Vec<String> = vec![
        "-o".into(),
        format!("IdentityFile={}", key.display()),
        "-o".into(),
        format!("User={user}"),
    ];
    if let Some(c) = cert {
        args.push("-o".into());
        args.push(format!("CertificateFile={}", c.display()));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    // IdentityFile on the command line comes before the config's, and IdentitiesOnly keeps the
    // agent out; the config's own agent key is still tried after ours, so use a config-free host.
    let mut cmd = Command::new("ssh");
    cmd.arg("-F")
        .arg(demo.ssh_config())
        .arg("-o")
        .arg("BatchMode=yes")
        .args(&refs)
        .arg("probe")
        .arg("echo ok");
    cmd.output().unwrap()
}

/// Adds a `probe` host to the demo's ssh_config: gatehouse's port with no keys of its own.
fn add_probe_host(demo: &Demo) {
    let cfg = std::fs::read_to_string(demo.ssh_config()).unwrap();
    let port = demo.port();
    let kh = demo.path().join("known_hosts");
    let probe = format!(
        "Host probe\n  HostName 127.0.0.1\n  Port {port}\n  HostKeyAlias gatehouse\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  IdentitiesOnly yes\n  PasswordAuthentication no\n  KbdInteractiveAuthentication no\n\n",
        kh.display()
    );
    std::fs::write(demo.ssh_config(), format!("{probe}{cfg}")).unwrap();
}

#[test]
fn certificates_are_checked_by_gatehouse_not_just_russh() {
    let demo = Demo::start();
    add_probe_host(&demo);
    let work = tempfile::tempdir().unwrap();
    let ca = demo.path().join("ca/user_ca");

    // A good certificate from the demo CA works: the baseline for every refusal below.
    let good = keygen(work.path(), "good");
    let good_cert = sign(
        &ca,
        &good,
        &["-I", "carol", "-n", "carol,group:agents", "-V", "-5m:+10m"],
    );
    let out = try_login(&demo, &good, Some(&good_cert), "demo");
    assert_eq!(
        stdout(&out).trim(),
        "ok",
        "good certificate refused: {}",
        stderr(&out)
    );

    let foreign_ca = keygen(work.path(), "foreign_ca");
    let cases: Vec<(&str, Vec<String>, PathBuf)> = vec![
        (
            "foreign CA",
            vec!["-I", "carol", "-n", "carol,group:agents"]
                .into_iter()
                .map(String::from)
                .collect(),
            foreign_ca.clone(),
        ),
        (
            "expired",
            vec!["-I", "carol", "-n", "carol,group:agents", "-V", "-2h:-1h"]
                .into_iter()
                .map(String::from)
                .collect(),
            ca.clone(),
        ),
        (
            "not yet valid",
            vec!["-I", "carol", "-n", "carol,group:agents", "-V", "+1h:+2h"]
                .into_iter()
                .map(String::from)
                .collect(),
            ca.clone(),
        ),
        (
            "host certificate",
            vec!["-h", "-I", "carol", "-n", "carol,group:agents"]
                .into_iter()
                .map(String::from)
                .collect(),
            ca.clone(),
        ),
        (
            "unknown critical option",
            vec![
                "-I",
                "carol",
                "-n",
                "carol,group:agents",
                "-O",
                "critical:gatehouse-test=1",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            ca.clone(),
        ),
        (
            "force-command",
            vec![
                "-I",
                "carol",
                "-n",
                "carol,group:agents",
                "-O",
                "force-command=/bin/true",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            ca.clone(),
        ),
        (
            "source-address elsewhere",
            vec![
                "-I",
                "carol",
                "-n",
                "carol,group:agents",
                "-O",
                "source-address=192.0.2.1/32",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            ca.clone(),
        ),
    ];
    for (i, (what, opts, signer)) in cases.iter().enumerate() {
        let key = keygen(work.path(), &format!("k{i}"));
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        let cert = sign(signer, &key, &opts);
        let out = try_login(&demo, &key, Some(&cert), "demo");
        assert_eq!(
            out.status.code(),
            Some(255),
            "{what}: accepted; stdout {}",
            stdout(&out)
        );
        assert!(stdout(&out).is_empty(), "{what}");
    }

    // source-address that matches loopback is honoured, not merely tolerated.
    let local = keygen(work.path(), "local");
    let local_cert = sign(
        &ca,
        &local,
        &[
            "-I",
            "carol",
            "-n",
            "carol,group:agents",
            "-O",
            "source-address=127.0.0.0/8",
        ],
    );
    let out = try_login(&demo, &local, Some(&local_cert), "demo");
    assert_eq!(stdout(&out).trim(), "ok", "{}", stderr(&out));

    // A plain key, even the one the target itself trusts, never gets in.
    let out = try_login(&demo, &demo.path().join("keys/target_key"), None, "demo");
    assert_eq!(out.status.code(), Some(255));
    // (ssh would pick up good-cert.pub beside the key by itself, so use a key with no cert.)
    let plain = keygen(work.path(), "plain");
    let out = try_login(&demo, &plain, None, "demo");
    assert_eq!(out.status.code(), Some(255));
    demo.log_containing(&["plain public key"]);
}

#[test]
fn missing_grant_and_unknown_target_are_refused_alike() {
    let demo = Demo::start();
    add_probe_host(&demo);
    let work = tempfile::tempdir().unwrap();
    let ca = demo.path().join("ca/user_ca");
    let key = keygen(work.path(), "nogrant");
    let cert = sign(&ca, &key, &["-I", "mallory", "-n", "mallory,group:interns"]);
    let no_grant = try_login(&demo, &key, Some(&cert), "demo");
    let agent = demo.path().join("keys/agent");
    let agent_cert = demo.path().join("keys/agent-cert.pub");
    let unknown = try_login(&demo, &agent, Some(&agent_cert), "no-such-target");
    assert_eq!(no_grant.status.code(), Some(255));
    assert_eq!(unknown.status.code(), Some(255));
    // Same refusal text apart from the login name the client echoes back.
    assert_eq!(
        stderr(&no_grant).replacen("demo@", "X@", 1),
        stderr(&unknown).replacen("no-such-target@", "X@", 1)
    );
    demo.log_containing(&["no grant for this target", "unknown target"]);
}

#[test]
fn revoked_serial_and_identity_are_refused_while_running() {
    let demo = Demo::start();
    add_probe_host(&demo);
    let work = tempfile::tempdir().unwrap();
    let ca = demo.path().join("ca/user_ca");
    let config = demo.path().join("gatehouse.toml");
    let a = keygen(work.path(), "a");
    let a_cert = sign(
        &ca,
        &a,
        &["-I", "dave", "-n", "dave,group:agents", "-z", "4242"],
    );
    let b = keygen(work.path(), "b");
    let b_cert = sign(
        &ca,
        &b,
        &["-I", "erin", "-n", "erin,group:agents", "-z", "4343"],
    );
    assert_eq!(
        stdout(&try_login(&demo, &a, Some(&a_cert), "demo")).trim(),
        "ok"
    );
    assert_eq!(
        stdout(&try_login(&demo, &b, Some(&b_cert), "demo")).trim(),
        "ok"
    );

    let out = common::gatehouse(&[
        "--config",
        config.to_str().unwrap(),
        "ca",
        "revoke",
        "--serial",
        "4242",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = common::gatehouse(&[
        "--config",
        config.to_str().unwrap(),
        "ca",
        "revoke",
        "--identity",
        "erin",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    assert_eq!(
        try_login(&demo, &a, Some(&a_cert), "demo").status.code(),
        Some(255)
    );
    assert_eq!(
        try_login(&demo, &b, Some(&b_cert), "demo").status.code(),
        Some(255)
    );
    demo.log_containing(&["revoked"]);
}
