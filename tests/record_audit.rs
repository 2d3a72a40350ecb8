//! Recordings and the audit log end to end: casts written through the public API (also the
//! fixtures `tests/python/test_cast_reader.py` plays with stock asciinema), and the
//! `gatehouse audit` subcommands run as a user would, with `ssh-keygen` checking signatures.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use gatehouse::audit::{self, AuditLog};
use gatehouse::record::cast::{Recorder, RecordingHeader};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

fn header(session: &str, title: &str) -> RecordingHeader {
    RecordingHeader {
        session_id: session.into(),
        channel: 0,
        identity: "ci-agent".into(),
        serial: 9,
        target: "web-1".into(),
        upstream_user: "deploy".into(),
        client: "127.0.0.1:40000".into(),
        width: 80,
        height: 24,
        term: None,
        title: title.into(),
        pty: false,
    }
}

/// Records `chunks` as output in one recording; returns (cast path, the text a player prints).
fn record(
    root: &Path,
    audit: &AuditLog,
    session: &str,
    markers: &[&str],
    chunks: &[Vec<u8>],
    exit: i32,
) -> (PathBuf, Vec<u8>) {
    let mut rec = Recorder::create(root, &header(session, session)).unwrap();
    for m in markers {
        rec.marker(m).unwrap();
    }
    let mut all = Vec::new();
    for c in chunks {
        rec.output(c).unwrap();
        rec.write_pending().unwrap();
        all.extend_from_slice(c);
    }
    let sealed = rec.finish(Some(exit), audit).unwrap();
    let expected = String::from_utf8_lossy(&all).into_owned().into_bytes();
    (sealed.path, expected)
}

/// Writes the player fixtures into `dir`: one cast per case and `manifest.json` naming each
/// cast with the file holding the bytes `asciinema cat` must print.
fn write_fixtures(dir: &Path) {
    let root = dir.join("recordings");
    let audit = AuditLog::open(&dir.join("audit.jsonl")).unwrap();
    let utf8 = "héllo wörld — 日本語 😀\n".repeat(50).into_bytes();
    let mut binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    binary.extend_from_slice(b"\xe2\x82"); // cut short at the very end
    let huge: Vec<u8> = (0..200_000)
        .flat_map(|i| format!("line {i:06} of a long listing\n").into_bytes())
        .collect();
    // (name, markers, output chunks, exit status)
    type Case<'a> = (&'a str, Vec<&'a str>, Vec<Vec<u8>>, i32);
    let cases: Vec<Case> = vec![
        (
            "exec",
            vec!["cmd: uname -a", "allow rule read-only"],
            vec![b"Linux web-1 6.1.0 x86_64\n".to_vec()],
            0,
        ),
        (
            "refused",
            vec!["cmd: rm -rf /", "deny rule no-rm: destructive"],
            vec![b"gatehouse: denied by rule no-rm: destructive\n".to_vec()],
            126,
        ),
        (
            "huge",
            vec![],
            huge.chunks(32 * 1024).map(<[u8]>::to_vec).collect(),
            0,
        ),
        (
            "binary",
            vec![],
            binary.chunks(777).map(<[u8]>::to_vec).collect(),
            1,
        ),
        (
            "utf8-split",
            vec![],
            utf8.chunks(5).map(<[u8]>::to_vec).collect(),
            0,
        ),
        (
            "utf8-bytewise",
            vec![],
            utf8.chunks(1).map(<[u8]>::to_vec).collect(),
            0,
        ),
    ];
    let mut manifest = Vec::new();
    for (name, markers, chunks, exit) in cases {
        let (cast, expected) = record(&root, &audit, name, &markers, &chunks, exit);
        let expected_path = dir.join(format!("{name}.expected"));
        std::fs::write(&expected_path, expected).unwrap();
        manifest.push(json!({"name": name, "cast": cast, "expected": expected_path}));
    }
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    let report = audit::verify(audit.path(), Some(&root)).unwrap();
    assert_eq!(report.recordings, 6);
}

/// Run by `test_cast_reader.py` with GATEHOUSE_CAST_OUT set; on its own it checks that the
/// fixtures are written and verify.
#[test]
fn cast_fixtures() {
    match std::env::var_os("GATEHOUSE_CAST_OUT") {
        Some(dir) => write_fixtures(Path::new(&dir)),
        None => write_fixtures(tempfile::tempdir().unwrap().path()),
    }
}

struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gatehouse.toml");
        std::fs::write(
            &config,
            "[server]\nssh_listen = \"127.0.0.1:2222\"\ndata_dir = \"data\"\n\
             recordings_dir = \"recordings\"\n[ca]\nprivate_key = \"data/user_ca\"\n\
             [vault]\nmaster_key_file = \"data/master_key\"\n",
        )
        .unwrap();
        Site { dir, config }
    }
    fn log_path(&self) -> PathBuf {
        self.dir.path().join("data/audit/audit.jsonl")
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("recordings")
    }
    fn gatehouse(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn audit_cli_verify_export_and_detects_tampering() {
    let site = Site::new();
    let audit = AuditLog::open(&site.log_path()).unwrap();
    audit
        .append("auth.success", json!({"identity": "ci-agent", "serial": 9}))
        .unwrap();
    let (cast, _) = record(
        &site.root(),
        &audit,
        "s1",
        &["cmd: ls"],
        &[b"a\n".to_vec()],
        0,
    );
    audit
        .append("session.end", json!({"session_id": "s1"}))
        .unwrap();

    // Verify runs beside the live writer (the log stays open and locked here).
    let out = site.gatehouse(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("3 records, 1 sealed recordings"));

    let out = site.gatehouse(&["audit", "export", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        std::fs::read_to_string(site.log_path()).unwrap()
    );
    let out = site.gatehouse(&["audit", "export", "--since", "2000-01-01"]);
    let listing = text(&out.stdout);
    assert!(listing.contains("1 ") && listing.contains("auth.success identity=ci-agent serial=9"));
    let out = site.gatehouse(&["audit", "export", "--since", "2999-01-01T00:00:00Z"]);
    assert!(out.stdout.is_empty());

    // One byte of the recording changed: verify names the file.
    let original = std::fs::read(&cast).unwrap();
    let mut bytes = original.clone();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x20;
    std::fs::write(&cast, &bytes).unwrap();
    let out = site.gatehouse(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let rel = cast
        .strip_prefix(site.root())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(text(&out.stderr).contains(&rel), "{}", text(&out.stderr));
    std::fs::write(&cast, &original).unwrap();

    // A record edited: verify names its seq.
    drop(audit);
    let log = std::fs::read_to_string(site.log_path()).unwrap();
    std::fs::write(site.log_path(), log.replace("\"serial\":9", "\"serial\":8")).unwrap();
    let out = site.gatehouse(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("audit record 1 "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn audit_head_signature_checks_with_ssh_keygen() {
    let site = Site::new();
    let audit = AuditLog::open(&site.log_path()).unwrap();
    let head = audit.append("config.reload", json!({})).unwrap();
    let key = site.dir.path().join("audit_key");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "audit", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen is installed (OpenSSH client)");
    assert!(keygen.success());

    let out = site.gatehouse(&["audit", "head"]);
    let line = format!("{} {}\n", head.seq, head.hash);
    assert_eq!(text(&out.stdout), line);

    let sig = site.dir.path().join("head.sig");
    let out = site.gatehouse(&[
        "audit",
        "head",
        "--sign-key",
        key.to_str().unwrap(),
        "--sig-file",
        sig.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), line);
    let check = |msg: &str, sig: &Path| {
        let mut child = Command::new("ssh-keygen")
            .args(["-Y", "check-novalidate", "-n", "gatehouse-audit", "-s"])
            .arg(sig)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(msg.as_bytes())
            .unwrap();
        child.wait().unwrap().success()
    };
    assert!(check(&line, &sig));
    assert!(!check(&line.replace(' ', "  "), &sig));

    // Without --sig-file the signature follows the head line on stdout.
    let out = site.gatehouse(&["audit", "head", "--sign-key", key.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    let (first, armored) = stdout.split_at(stdout.find('\n').unwrap() + 1);
    assert_eq!(first, line);
    assert!(armored.starts_with("-----BEGIN SSH SIGNATURE-----"));
    let sig2 = site.dir.path().join("head2.sig");
    std::fs::write(&sig2, armored).unwrap();
    assert!(check(&line, &sig2));
}
