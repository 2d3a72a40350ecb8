//! Held commands end to end: the agent (real `ssh`) waits or gets 75, a reviewer decides with
//! `ssh console approve|deny ID` (real `ssh`, reviewer certificate), the command runs exactly
//! once on the real sshd. Also checks the recordings and the audit chain that result.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{stderr, stdout, Demo};

/// A held but harmless command: appends one `x` to `marker` (python inline code is held by
/// the default policy).
fn held_command(marker: &std::path::Path) -> String {
    format!(
        "python3 -c \"open('{}', 'a').write('x')\"",
        marker.display()
    )
}

/// Extracts the request id from `gatehouse: held by rule R (ID): ...`.
fn request_id(line: &str) -> String {
    let start = line.find('(').expect("request id in held line") + 1;
    let end = line[start..].find(')').expect("closing paren") + start;
    line[start..end].to_string()
}

fn console(demo: &Demo, command: &str) -> std::process::Output {
    demo.ssh("console", &[], command)
}

#[test]
fn wait_mode_runs_once_after_approval_and_refuses_after_denial() {
    let demo = Demo::start();
    let marker = demo.path().join("approved-marker");
    let mut agent = demo
        .ssh_cmd("demo", &[], &held_command(&marker))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(agent.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("gatehouse: held by rule "), "{line}");
    assert!(line.contains("waiting for approval"), "{line}");
    let id = request_id(&line);
    assert!(!marker.exists(), "ran before approval");

    let listed = console(&demo, "approvals --json");
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(stdout(&listed).contains(&id), "{}", stdout(&listed));

    // The requester cannot approve its own request; a reviewer can.
    let started = Instant::now();
    let approve = console(&demo, &format!("approve {id} --comment looks-fine"));
    assert!(approve.status.success(), "{}", stderr(&approve));
    let status = agent.wait().unwrap();
    assert!(status.success(), "held command failed after approval");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "x");

    // Denied: 126 and the reviewer's comment.
    let out = std::thread::scope(|s| {
        let agent = s.spawn(|| {
            demo.ssh_cmd("demo", &[], &held_command(&marker))
                .stdin(Stdio::null())
                .output()
                .unwrap()
        });
        let id = loop {
            let listed = console(&demo, "approvals --json");
            if let Some(id) = stdout(&listed)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["state"] == "pending")
                .and_then(|v| v["id"].as_str().map(String::from))
            {
                break id;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let deny = console(&demo, &format!("deny {id} --comment not-today"));
        assert!(deny.status.success(), "{}", stderr(&deny));
        agent.join().unwrap()
    });
    assert_eq!(out.status.code(), Some(126));
    let err = stderr(&out);
    assert!(
        err.lines()
            .last()
            .unwrap()
            .starts_with("gatehouse: denied by reviewer"),
        "{err}"
    );
    assert!(err.contains("not-today"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "x",
        "denied command ran"
    );

    // Everything is on the record: a chain that verifies, and recordings that name the decisions
    // (sealed just after each agent had its answer).
    let recordings = demo.path().join("recordings");
    common::wait_sealed(&recordings);
    let config = demo.path().join("gatehouse.toml");
    let verify = common::gatehouse(&["--config", config.to_str().unwrap(), "audit", "verify"]);
    assert!(
        verify.status.success(),
        "{}{}",
        stdout(&verify),
        stderr(&verify)
    );
    let casts: Vec<String> = common::files_under(&recordings)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cast"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(
        casts.iter().any(|c| c.contains("approved by reviewer")),
        "{casts:?}"
    );
    assert!(
        casts.iter().any(|c| c.contains("denied by reviewer")),
        "{casts:?}"
    );
}

#[test]
fn return_mode_exits_75_and_the_identical_resend_runs_once() {
    let demo = Demo::start();
    let marker = demo.path().join("return-marker");
    let cmd = held_command(&marker);
    let ret = ["-o", "SetEnv=GATEHOUSE_APPROVAL=return"];
    let first = demo.ssh("demo", &ret, &cmd);
    assert_eq!(first.status.code(), Some(75), "{}", stderr(&first));
    let id = request_id(&stderr(&first));
    // Resending while pending gives the same request, not a new one.
    let again = demo.ssh("demo", &ret, &cmd);
    assert_eq!(again.status.code(), Some(75));
    assert_eq!(request_id(&stderr(&again)), id);

    let approve = console(&demo, &format!("approve {id}"));
    assert!(approve.status.success(), "{}", stderr(&approve));
    let run = demo.ssh("demo", &ret, &cmd);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "x");
    // The grant is used up: the next resend is held again.
    let after = demo.ssh("demo", &ret, &cmd);
    assert_eq!(after.status.code(), Some(75));
    assert_ne!(request_id(&stderr(&after)), id);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "x");
}

#[test]
fn console_is_for_reviewers_only_and_nobody_approves_their_own_request() {
    let demo = Demo::start();
    let agent_key = demo.path().join("keys/agent");
    let agent_cert = demo.path().join("keys/agent-cert.pub");
    let as_agent = [
        "-o".to_string(),
        format!("IdentityFile={}", agent_key.display()),
        "-o".to_string(),
        format!("CertificateFile={}", agent_cert.display()),
        "-o".to_string(),
        "User=console".to_string(),
    ];
    let args: Vec<&str> = as_agent.iter().map(String::as_str).collect();
    let out = demo.ssh("demo", &args, "approvals --json");
    assert_eq!(out.status.code(), Some(255), "an agent opened the console");
    demo.log_containing(&["not in a reviewer group"]);

    let unknown = console(&demo, "frobnicate");
    assert_eq!(unknown.status.code(), Some(2));
}
