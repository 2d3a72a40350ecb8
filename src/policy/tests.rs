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
