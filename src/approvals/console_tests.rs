//! Tests for the console's exec commands.

use super::*;
use crate::approvals::tests::{hold_as, hold_decision, ident, open};
use crate::approvals::RequestState;

fn alice() -> CertIdentity {
    ident("alice", &["reviewers"])
}

#[test]
fn lists_pending_as_json_lines_and_table() {
    let f = open();
    let agent = ident("agent-1", &["agents"]);
    let a = hold_as(
        &f.approvals,
        &agent,
        b"systemctl restart nginx",
        &hold_decision(None, 1),
    );
    let b = hold_as(
        &f.approvals,
        &agent,
        b"printf '\x1b[2J'",
        &hold_decision(None, 2),
    );

    let reply = run_console_command(&f.approvals, &alice(), "approvals --json");
    assert_eq!((reply.exit, reply.stderr.as_str()), (0, ""));
    let lines: Vec<serde_json::Value> = reply
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], a.id.to_string());
    assert_eq!(lines[1]["id"], b.id.to_string());
    for key in [
        "id",
        "state",
        "identity",
        "target",
        "command",
        "rule",
        "reason",
        "created_at",
    ] {
        assert!(!lines[0][key].is_null(), "{key} missing");
    }
    assert_eq!(lines[0]["state"], "pending");
    assert_eq!(lines[0]["identity"], "agent-1");
    assert_eq!(lines[0]["command"], "systemctl restart nginx");
    assert_eq!(lines[1]["approvals_required"], 2);

    let table = run_console_command(&f.approvals, &alice(), "approvals");
    assert_eq!(table.exit, 0);
    assert!(table.stdout.starts_with("ID "), "{}", table.stdout);
    assert!(table.stdout.contains(a.id.as_str()));
    assert!(table.stdout.contains("systemctl restart nginx"));
    // Escape sequences from an agent's command never reach the reviewer's terminal raw.
    assert!(!table.stdout.contains('\x1b'));
    assert!(table.stdout.contains("\\u{1b}[2J"));
}

#[test]
fn approve_deny_and_show() {
    let f = open();
    let agent = ident("agent-1", &["agents"]);
    let a = hold_as(
        &f.approvals,
        &agent,
        b"systemctl restart nginx",
        &hold_decision(None, 1),
    );
    let b = hold_as(
        &f.approvals,
        &agent,
        b"git push --force",
        &hold_decision(None, 1),
    );

    let reply = run_console_command(
        &f.approvals,
        &alice(),
        &format!(
            "approve {} --comment 'looks fine'",
            a.id.as_str().to_uppercase()
        ),
    );
    assert_eq!(reply.exit, 0, "{reply:?}");
    assert_eq!(
        reply.stdout,
        format!("{} approved (1 of 1 approvals)\n", a.id)
    );
    let got = f.approvals.get(&a.id).unwrap();
    assert_eq!(got.decisions[0].comment.as_deref(), Some("looks fine"));

    let reply = run_console_command(&f.approvals, &alice(), &format!("deny {} -m no", b.id));
    assert_eq!(reply.exit, 0, "{reply:?}");
    assert_eq!(f.approvals.get(&b.id).unwrap().state, RequestState::Denied);

    let shown = run_console_command(&f.approvals, &alice(), &format!("show {}", b.id));
    assert_eq!(shown.exit, 0);
    assert!(
        shown.stdout.contains("state      denied"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("alice denied: no"),
        "{}",
        shown.stdout
    );
    let shown = run_console_command(&f.approvals, &alice(), &format!("show {} --json", a.id));
    let json: serde_json::Value = serde_json::from_str(shown.stdout.trim()).unwrap();
    assert_eq!(json["state"], "approved");

    let all = run_console_command(&f.approvals, &alice(), "approvals --all --json");
    assert_eq!(all.stdout.lines().count(), 2);
    let none = run_console_command(&f.approvals, &alice(), "approvals");
    assert_eq!(none.stdout, "no pending requests\n");

    // Deciding again: no longer pending.
    let again = run_console_command(&f.approvals, &alice(), &format!("approve {}", b.id));
    assert_eq!(again.exit, EXIT_FAILED);
    assert!(
        again.stderr.starts_with("gatehouse: request "),
        "{}",
        again.stderr
    );
}

#[test]
fn refusals_and_errors() {
    let f = open();
    let agent = ident("agent-1", &["agents"]);
    let carol = ident("carol", &["reviewers"]);
    let held = hold_as(&f.approvals, &carol, b"reboot", &hold_decision(None, 1));

    // Not a reviewer at all.
    let reply = run_console_command(&f.approvals, &agent, "approvals --json");
    assert_eq!(reply.exit, EXIT_REFUSED);
    assert!(reply
        .stderr
        .starts_with("gatehouse: agent-1 is not in a reviewer group"));
    assert!(reply.stdout.is_empty());

    // Own request.
    let own = run_console_command(&f.approvals, &carol, &format!("approve {}", held.id));
    assert_eq!(own.exit, EXIT_REFUSED);
    assert!(own.stderr.contains("their own"), "{}", own.stderr);

    // Unknown id, malformed id, missing id.
    let unknown = run_console_command(&f.approvals, &alice(), "approve abcdefgh");
    assert_eq!(unknown.exit, EXIT_FAILED);
    assert_eq!(unknown.stderr, "gatehouse: no request abcdefgh\n");
    assert_eq!(
        run_console_command(&f.approvals, &alice(), "show abcdefgh").exit,
        EXIT_FAILED
    );
    for line in [
        "approve 12345678",
        "approve",
        "deny abcdefgh --comment",
        "approve abcdefgh abcdefgi",
        "approve abcdefgh --force",
        "approvals --yaml",
        "rm -rf /",
        "approve 'unbalanced",
        "",
    ] {
        let reply = run_console_command(&f.approvals, &alice(), line);
        assert_eq!(reply.exit, EXIT_USAGE, "{line:?}: {reply:?}");
        assert!(reply.stderr.starts_with("gatehouse: "), "{line:?}");
        assert!(reply.stderr.contains("usage:"), "{line:?}");
    }
    let help = run_console_command(&f.approvals, &alice(), "help");
    assert_eq!(help.exit, 0);
    assert!(help.stdout.contains("approve ID [--comment TEXT]"));
    assert_eq!(
        f.approvals.get(&held.id).unwrap().state,
        RequestState::Pending
    );
}

#[test]
fn comment_forms() {
    let f = open();
    let agent = ident("agent-1", &["agents"]);
    let held = hold_as(&f.approvals, &agent, b"reboot", &hold_decision(None, 1));
    let reply = run_console_command(
        &f.approvals,
        &alice(),
        &format!("deny --comment=\"not now\" {}", held.id),
    );
    assert_eq!(reply.exit, 0, "{reply:?}");
    let got = f.approvals.get(&held.id).unwrap();
    assert_eq!(got.decisions[0].comment.as_deref(), Some("not now"));
}
