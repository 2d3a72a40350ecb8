//! The policy corpus: destructive lines of every class in several spellings, and everyday
//! lines that must stay allowed, decided against the compiled-in default ruleset.
//!
//! Files under tests/policy_corpus/: `deny.txt` and `hold.txt` hold `RULE<TAB>LINE` entries,
//! `allow.txt` one line per entry. `#` starts a comment line. In a line, `<NL>`, `<CR>`,
//! `<ESC>` and `<NUL>` stand for those characters.

use gatehouse::policy::{decide, Action, PolicySet};

fn unescape(line: &str) -> String {
    line.replace("<NL>", "\n")
        .replace("<CR>", "\r")
        .replace("<ESC>", "\x1b")
        .replace("<NUL>", "\0")
}

fn entries(name: &str) -> Vec<(Option<String>, String)> {
    let path = format!("{}/tests/policy_corpus/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once('\t') {
            Some((rule, line)) => (Some(rule.to_string()), unescape(line)),
            None => (None, unescape(l)),
        })
        .collect()
}

fn run(name: &str, want: Action) -> usize {
    let set = PolicySet::builtin();
    let policy = set.policy("default").expect("default policy");
    let mut failures = Vec::new();
    let all = entries(name);
    for (rule, line) in &all {
        let d = decide(policy, line.as_bytes());
        let rule_ok = rule.as_ref().is_none_or(|r| r == &d.rule);
        if d.decision != want || !rule_ok {
            failures.push(format!(
                "{line:?}: want {want:?} {}, got {:?} {} ({}) {:?}",
                rule.as_deref().unwrap_or(""),
                d.decision,
                d.rule,
                d.reason,
                d.commands
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
    all.len()
}

#[test]
fn deny_corpus() {
    assert!(run("deny.txt", Action::Deny) > 100);
}

#[test]
fn hold_corpus() {
    assert!(run("hold.txt", Action::Hold) > 100);
}

#[test]
fn allow_corpus() {
    assert!(run("allow.txt", Action::Allow) > 80);
}

#[test]
fn non_utf8_is_held() {
    let set = PolicySet::builtin();
    let policy = set.policy("default").expect("default policy");
    let d = decide(policy, b"ls \xff\xfe");
    assert_eq!((d.decision, d.rule.as_str()), (Action::Hold, "non-utf8"));
}

#[test]
fn production_policy_holds_unknown_and_allows_read_only() {
    let set = PolicySet::builtin();
    let policy = set.policy("production").expect("production policy");
    let d = decide(policy, b"ls -la | grep x");
    assert_eq!(d.decision, Action::Allow, "{}", d.reason);
    let d = decide(policy, b"make deploy");
    assert_eq!((d.decision, d.rule.as_str()), (Action::Hold, "default"));
    assert_eq!(d.reviewers.as_deref(), Some("oncall"));
    let d = decide(policy, b"rm -rf /");
    assert_eq!(d.decision, Action::Deny);
}
