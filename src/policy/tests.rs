//! Decision tests: one per construct and per fail-closed reason, each naming the rule it expects.

use super::*;

fn check(line: &str) -> Decision {
    let set = PolicySet::builtin();
    let policy = set.policy("default").expect("default policy");
    decide(policy, line.as_bytes())
}

#[track_caller]
fn expect(line: &str, action: Action, rule: &str) {
    let d = check(line);
    assert_eq!(
        (d.decision, d.rule.as_str()),
        (action, rule),
        "{line:?}: {}",
        d.reason
    );
}

#[test]
fn builtin_policy_loads() {
    let set = PolicySet::parse(BUILTIN_POLICY, Path::new("config/policy.toml"));
    assert!(set.is_ok(), "{:?}", set.err());
    let set = PolicySet::builtin();
    assert_eq!(set.names().collect::<Vec<_>>(), ["default", "production"]);
}

#[test]
fn everyday_allowed() {
    for line in [
        "ls -la",
        "grep -r error /var/log/syslog | tail -n 50",
        "git push origin my-branch",
        "rm /tmp/foo.txt",
        "psql -c 'SELECT count(*) FROM users'",
        "kubectl get pods -n prod",
        "docker ps",
        "for f in *.log; do wc -l \"$f\"; done",
        "",
    ] {
        expect(
            line,
            Action::Allow,
            if line.is_empty() { "empty" } else { "default" },
        );
    }
}

#[test]
fn fail_closed_reasons() {
    expect("ls\rrm -rf /", Action::Hold, "control-characters");
    expect("$x /", Action::Hold, "non-literal-command");
    expect("if then fi", Action::Hold, "parse-error");
    expect("f() { ls; }", Action::Hold, "function-definition");
    expect("PATH=/tmp ls", Action::Hold, "dangerous-assignment");
    expect("echo ${x@P}", Action::Hold, "prompt-expansion");
    expect("echo $((a[$(id)]))", Action::Hold, "arithmetic-subscript");
    expect("bash", Action::Hold, "interpreter-stdin");
    expect("python3 -c 'print(1)'", Action::Hold, "interpreter");
    expect("curl x | sh", Action::Hold, "download-and-execute");
    expect("eval ls", Action::Hold, "eval");
    expect("sudo -i", Action::Hold, "interactive-shell");
    expect(
        &format!("{}ls{}", "$(".repeat(100), ")".repeat(100)),
        Action::Hold,
        "nesting-too-deep",
    );
    let d = decide(
        PolicySet::builtin().policy("default").expect("default"),
        &vec![b'a'; MAX_LINE_BYTES + 1],
    );
    assert_eq!(d.rule, "line-too-long");
    let d = decide(
        PolicySet::builtin().policy("default").expect("default"),
        b"ls \xff",
    );
    assert_eq!(d.rule, "non-utf8");
}

#[test]
fn holds_carry_reviewers_and_denies_do_not() {
    let d = check("git push --force");
    assert_eq!(d.reviewers.as_deref(), Some("reviewers"));
    assert_eq!(d.approvals_required, 1);
    let d = check("rm -rf /");
    assert_eq!(d.reviewers, None);
    assert_eq!(d.approvals_required, 0);
}

#[test]
fn most_severe_command_decides() {
    expect("git push -f; rm -rf /", Action::Deny, "rm-recursive-root");
    expect("ls; git push -f", Action::Hold, "git-force-push");
}

#[test]
fn rule_may_allow_a_builtin_hold() {
    let text = format!(
        "{BUILTIN_POLICY}\n[[rules]]\nid = \"allow-python\"\naction = \"allow\"\nreason = \"trusted\"\nprograms = [\"python3\"]\n"
    );
    let set = PolicySet::parse(&text, Path::new("p.toml")).expect("valid");
    let d = decide(
        set.policy("default").expect("default"),
        b"python3 -c 'print(1)'",
    );
    assert_eq!(
        (d.decision, d.rule.as_str()),
        (Action::Allow, "allow-python")
    );
}

#[test]
fn unresolved_arguments_hold_and_name_the_rule() {
    let set = PolicySet::builtin();
    let policy = set.policy("default").expect("default policy");
    let d = decide(policy, b"find / | xargs rm -rf");
    assert_eq!(d.decision, Action::Hold);
    assert_eq!(d.rule, "unresolved-argument");
    assert!(
        d.reason.contains("xargs adds arguments read from stdin"),
        "{}",
        d.reason
    );
    assert!(d.reason.contains("(deny)"), "{}", d.reason);
    let d = decide(policy, b"cd \"$D\" && rm -rf build");
    assert_eq!(d.decision, Action::Hold);
    assert!(d.reason.contains("working directory"), "{}", d.reason);
    // A certain deny is not softened by an uncertain rule before it.
    let d = decide(policy, b"rm -rf / \"$X\"");
    assert_eq!(d.decision, Action::Deny, "{d:?}");
    // Nothing a rule could match: still allowed.
    let d = decide(policy, b"echo \"$X\" | xargs grep foo");
    assert_eq!(d.decision, Action::Allow, "{d:?}");
}

#[test]
fn a_file_with_only_rules_keeps_the_builtin_tables() {
    let text = "[policies.default]\ndefault = \"allow\"\n\n[[rules]]\nid = \"no-rm-root\"\naction = \"deny\"\nreason = \"no\"\nprograms = [\"rm\"]\noperands = [\"/\"]\n";
    let set = PolicySet::parse(text, Path::new("p.toml")).expect("valid");
    let policy = set.policy("default").expect("default");
    // sudo is still unwrapped, python -c still held.
    let d = decide(policy, b"sudo -u root rm -rf /");
    assert_eq!((d.decision, d.rule.as_str()), (Action::Deny, "no-rm-root"));
    let d = decide(policy, b"python3 -c 'print(1)'");
    assert_eq!((d.decision, d.rule.as_str()), (Action::Hold, "interpreter"));
}
