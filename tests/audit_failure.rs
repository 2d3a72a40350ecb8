//! Fail closed on the audit log, through the real data path: once a command's decision cannot
//! be written to the audit log, the command is refused with a clear line and never reaches
//! the target; the chain stays intact, and once the log can be written again commands run.
//!
//! The store and the audit log (`data/`) go on a small tmpfs, which the test fills while
//! gatehouse runs: root ignores permissions, but not a full file system. The agent's
//! connection is made before that (its login is audited too) and carries every command
//! (OpenSSH connection sharing).

mod common;

use common::disk::SmallDisk;
use common::serve::{start_serve, start_sshd};
use common::shared::SharedSsh;
use common::{stderr, stdout};

#[test]
fn an_unwritable_audit_log_refuses_the_command_and_nothing_runs() {
    common::require_openssh();
    let demo = common::Demo::left_behind();
    let dir = demo.path();
    let Some(disk) = SmallDisk::over(&dir.join("data"), "4m") else {
        eprintln!("SKIPPED: mounting the small disk needs root");
        return;
    };
    let _sshd = start_sshd(dir);
    let log_path = dir.join("serve.log");
    let config = dir.join("gatehouse.toml");
    let serve = start_serve(&config, &[], &log_path);
    let agent = SharedSsh::new(&demo, "demo");
    let out = agent.ssh(&[], "echo logged-in");
    assert_eq!(stdout(&out), "logged-in\n", "stderr: {}", stderr(&out));

    let filler = disk.fill();
    // The log's last page may still take a record or two; each command's decision needs
    // one, and the first that finds no room is refused.
    let mut refused = None;
    for i in 0..40 {
        let marker = dir.join(format!("ran-{i}"));
        let out = agent.ssh(&[], &format!("touch {}", marker.display()));
        match out.status.code() {
            Some(0) => assert!(marker.exists()),
            Some(126) => {
                refused = Some((marker, out));
                break;
            }
            other => panic!("exit {other:?}, stderr: {}", stderr(&out)),
        }
    }
    let (marker, out) = refused.expect("no command was refused with the audit log full");
    assert_eq!(
        stderr(&out),
        "gatehouse: the audit log is unavailable; refusing the command\n"
    );
    assert!(stdout(&out).is_empty());
    assert!(!marker.exists(), "the command ran without its audit record");
    common::log_containing(&log_path, &["audit append failed"]);

    // Room again: the next command runs, and the chain never broke.
    std::fs::remove_file(filler).unwrap();
    let out = agent.ssh(&[], "echo audited-again");
    assert_eq!(stdout(&out), "audited-again\n", "stderr: {}", stderr(&out));
    drop(agent);
    drop(serve);
    let verify = common::gatehouse(&[
        "--config",
        config.to_str().unwrap(),
        "audit",
        "verify",
        "--no-recordings",
    ]);
    assert!(verify.status.success(), "{}", stderr(&verify));
}
