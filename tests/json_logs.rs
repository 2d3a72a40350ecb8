//! `gatehouse serve --log-format json` as an operator runs it, on the files a stopped
//! `gatehouse demo` left behind (its config, keys and store; its sshd started here again):
//! every stderr line is one JSON object with a level and a message, a session's lines carry the
//! connection span (identity, target, session id), and no key, token or environment value
//! sent through it appears anywhere in the log.

mod common;

use common::serve::{start_serve, start_sshd};

use std::path::Path;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

const TOKEN_JTI: &str = "jti-that-must-not-be-logged-5f1c";
const ENV_ALLOWED: &str = "env-value-allowed-9a3e";
const ENV_REFUSED: &str = "env-value-refused-71bd";

/// A token that names a configured (unreachable) issuer, so gatehouse reads it and fails.
fn forged_token(issuer: &str) -> String {
    let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        part(json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"})),
        part(
            json!({"iss": issuer, "sub": "ci", "aud": "gatehouse", "jti": TOKEN_JTI,
                    "iat": 1_900_000_000u64, "exp": 1_900_000_600u64})
        ),
        URL_SAFE_NO_PAD.encode([7u8; 64])
    )
}

/// Base64 lines of every private key the deployment holds.
fn key_material(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for file in [
        "keys/agent",
        "keys/reviewer",
        "keys/target_key",
        "ca/user_ca",
        "data/ssh_host_ed25519_key",
        "sshd/ssh_host_ed25519_key",
    ] {
        let pem = std::fs::read_to_string(dir.join(file)).unwrap();
        lines.extend(
            pem.lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                .map(str::to_string),
        );
    }
    assert!(lines.len() >= 6);
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_carry_the_connection_and_no_secrets() {
    let demo = common::Demo::left_behind();
    let dir = demo.path();
    let ssh_config = demo.ssh_config();
    let _sshd = start_sshd(dir);

    // Issuance on loopback, trusting an issuer that is not there: a token sent to it is read
    // and refused, which is where a careless log line would show it.
    let http_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = "http://127.0.0.1:9/idp";
    let config_path = dir.join("gatehouse.toml");
    let config = std::fs::read_to_string(&config_path).unwrap().replace(
        "[server]\n",
        &format!("[server]\nhttp_listen = \"127.0.0.1:{http_port}\"\n"),
    ) + &format!(
        "\n[[oidc.issuers]]\nissuer = \"{issuer}\"\naudience = \"gatehouse\"\nkind = \"agent\"\n\
             allowed_algs = [\"EdDSA\"]\n"
    );
    std::fs::write(&config_path, config).unwrap();

    let log_path = dir.join("serve.log");
    let mut serve = start_serve(&config_path, &["--log-format", "json"], &log_path);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let ssh = Command::new("ssh")
        .arg("-F")
        .arg(&ssh_config)
        .args(["-o", "BatchMode=yes", "-o"])
        .arg(format!(
            "SetEnv=LC_GATEHOUSE_NOTE={ENV_ALLOWED} API_TOKEN={ENV_REFUSED}"
        ))
        .args(["demo", "echo json-logs"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        ssh.status.success() && common::stdout(&ssh) == "json-logs\n",
        "{}{}\n{}",
        common::stdout(&ssh),
        common::stderr(&ssh),
        log()
    );
    let token = forged_token(issuer);
    let key = std::fs::read_to_string(dir.join("keys/agent.pub")).unwrap();
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{http_port}/v1/certificates"))
        .bearer_auth(&token)
        .json(&json!({"public_key": key.trim(), "proof": "-----BEGIN SSH SIGNATURE-----\n"}))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_client_error() || answer.status().is_server_error());

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(serve.0.id().to_string())
        .status();
    let status = tokio::task::spawn_blocking(move || serve.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{}", log());

    let text = log();
    let session_id = recording_session_id(dir);
    let mut session_lines = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let obj: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(obj.is_object(), "{line}");
        assert!(obj["level"].is_string(), "no level: {line}");
        assert!(obj["fields"]["message"].is_string(), "no message: {line}");
        if obj["span"]["name"] == "connection" && obj["span"]["session_id"] == session_id.as_str() {
            session_lines += 1;
            assert_eq!(obj["span"]["identity"], "agent", "{line}");
            assert_eq!(obj["span"]["target"], "demo", "{line}");
        }
    }
    let decided = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|o| o["fields"]["message"] == "exec decided")
        .unwrap_or_else(|| panic!("no exec decided line: {text}"));
    assert_eq!(decided["span"]["session_id"], session_id.as_str());
    assert!(session_lines >= 3, "{text}");

    let payload = token.split('.').nth(1).unwrap();
    for secret in [token.as_str(), payload, TOKEN_JTI, ENV_ALLOWED, ENV_REFUSED] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
    assert!(!text.contains("PRIVATE KEY"));
    for line in key_material(dir) {
        assert!(!text.contains(&line), "key material logged");
    }
    // The refused variable is named (never its value).
    assert!(text.contains("API_TOKEN"), "{text}");
}

/// The session id in the header of the one recording made.
fn recording_session_id(dir: &Path) -> String {
    let mut found = Vec::new();
    for day in std::fs::read_dir(dir.join("recordings")).unwrap() {
        for cast in std::fs::read_dir(day.unwrap().path()).unwrap() {
            let path = cast.unwrap().path();
            if path.extension().is_some_and(|e| e == "cast") {
                found.push(path);
            }
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    let text = std::fs::read_to_string(&found[0]).unwrap();
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    header["gatehouse"]["session_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A reader that stops reading gatehouse's stderr (a stuck log shipper, a full pipe) does not
/// stop its sessions: lines go to a log thread through a bounded queue, so the data path never
/// waits for the pipe. At debug level a few execs fill the pipe's 64 KiB; every exec after that
/// must still run, and gatehouse must still answer and stop.
#[test]
fn a_stalled_stderr_reader_does_not_stall_sessions() {
    let demo = common::Demo::start_with_unread_stderr("debug");
    // A stalled gateway would stop answering keepalives: ssh then gives up after ~6 s.
    let keepalive = ["-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3"];
    for n in 0..60 {
        let out = demo.ssh("demo", &keepalive, &format!("echo exec-{n}"));
        assert_eq!(
            common::stdout(&out).trim(),
            format!("exec-{n}"),
            "exec {n}: status {:?}, stderr {}",
            out.status,
            common::stderr(&out)
        );
    }
    let stopped = demo.stop();
    assert!(stopped.success(), "demo exit {stopped:?}");
}

/// An exec's log line carries the start of its command line and the line's length, not the
/// whole of it (up to 256 KiB; the audit log has it whole): log lines wait in a bounded queue
/// of lines, and that bound must mean a bound on memory.
#[test]
fn an_exec_log_line_cuts_a_long_command_line() {
    let demo = common::Demo::start();
    let word = "x".repeat(3000);
    let out = demo.ssh("demo", &[], &format!("echo {word}"));
    assert_eq!(
        common::stdout(&out).trim(),
        word,
        "{}",
        common::stderr(&out)
    );
    let log = demo.log_containing(&["command_bytes=3005"]);
    let decided = log
        .lines()
        .find(|l| l.contains("exec decided") && l.contains("command_bytes=3005"))
        .unwrap_or_else(|| panic!("no exec decided line with its length:\n{log}"));
    assert!(decided.contains(&"x".repeat(1019)), "{decided}");
    assert!(!decided.contains(&"x".repeat(1020)), "{decided}");
    let audit = std::fs::read_to_string(demo.path().join("data/audit/audit.jsonl")).unwrap();
    assert!(audit.contains(&word), "the audit log keeps the whole line");
}
