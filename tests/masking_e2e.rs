//! Masking through the real data path: real `ssh` → gatehouse → real `sshd`. The agent and the
//! recording see only masks.

mod common;

use common::{stderr, stdout, Demo};

const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const CARD: &str = "4111 1111 1111 1111";

fn private_key_block() -> String {
    let body: String = (0..12)
        .map(|i| format!("{}\n", "Q".repeat(60 + i % 3)))
        .collect();
    format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{body}-----END OPENSSH PRIVATE KEY-----\n")
}

/// Every recording under `dir`, once all are sealed, concatenated.
fn all_recordings(dir: &std::path::Path) -> String {
    common::wait_sealed(dir);
    common::files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cast"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

#[test]
fn secrets_in_a_file_reach_neither_agent_nor_recording() {
    let demo = Demo::start();
    let file = demo.path().join("secrets.env");
    let key = private_key_block();
    std::fs::write(
        &file,
        format!("AWS_ACCESS_KEY_ID={AWS_KEY}\n{key}card: {CARD}\nplain line stays\n"),
    )
    .unwrap();
    let out = demo.ssh("demo", &[], &format!("cat {}", file.display()));
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = stdout(&out);
    assert!(!seen.contains(AWS_KEY), "{seen}");
    assert!(!seen.contains("QQQQQQQQ"), "{seen}");
    assert!(!seen.contains(CARD), "{seen}");
    assert!(seen.contains("[MASKED:aws-access-key]"), "{seen}");
    assert!(seen.contains("[MASKED:private-key]"), "{seen}");
    assert!(seen.contains("[MASKED:card]"), "{seen}");
    assert!(seen.contains("plain line stays"), "{seen}");
    // The recording is sealed just after the agent sees its exit status: wait for it.
    let text = all_recordings(&demo.path().join("recordings"));
    assert!(text.contains("\"x\""), "{text}");
    assert!(!text.contains(AWS_KEY));
    assert!(!text.contains("QQQQQQQQ"));
    assert!(!text.contains(CARD));
    assert!(text.contains("masked: "), "{text}");
}

#[test]
fn a_secret_written_in_two_pieces_with_a_pause_is_still_masked() {
    let demo = Demo::start();
    let (a, b) = AWS_KEY.split_at(9);
    let out = demo.ssh(
        "demo",
        &[],
        &format!("printf 'key={a}'; sleep 0.3; printf '{b} done\\n'"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = stdout(&out);
    assert!(!seen.contains(AWS_KEY), "{seen}");
    assert!(!seen.contains(b), "the second half leaked: {seen}");
    assert!(seen.contains("done"), "{seen}");
}
