//! Unit tests of `shell`: one per construct and per fail-closed finding.

use super::*;

fn names(script: &str) -> Vec<String> {
    let mut out = Extraction::default();
    extract(script, 0, &mut out);
    out.commands
        .iter()
        .map(|c| {
            c.words
                .iter()
                .map(|w| w.text.clone())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn findings(script: &str) -> Vec<&'static str> {
    let mut out = Extraction::default();
    extract(script, 0, &mut out);
    out.findings.iter().map(|f| f.rule).collect()
}

#[test]
fn lists_and_pipelines() {
    assert_eq!(names("ls; rm -rf /"), ["ls", "rm -rf /"]);
    assert_eq!(names("a && b || c & d"), ["a", "b", "c", "d"]);
    assert_eq!(names("a | b |& c"), ["a", "b", "c"]);
    assert_eq!(names("a\nb"), ["a", "b"]);
}

#[test]
fn compound_commands() {
    assert_eq!(names("(a; b)"), ["a", "b"]);
    assert_eq!(names("{ a; }"), ["a"]);
    assert_eq!(
        names("if a; then b; elif c; then d; else e; fi"),
        ["a", "b", "c", "d", "e"]
    );
    // The loop variable holds a path the glob found: the command sees the glob.
    assert_eq!(
        names("for f in *.log; do wc -l \"$f\"; done"),
        ["wc -l *.log"]
    );
    assert_eq!(
        names("for d in /a /b; do rm -r $d; done"),
        ["rm -r /a", "rm -r /b"]
    );
    assert_eq!(
        names("while a; do b; done; until c; do d; done"),
        ["a", "b", "c", "d"]
    );
    assert_eq!(names("case x in y) a;; *) b;; esac"), ["a", "b"]);
    assert_eq!(names("coproc a"), ["a"]);
    assert_eq!(names("for ((i=0;i<3;i++)); do a; done"), ["a"]);
}

#[test]
fn substitutions_everywhere() {
    assert!(names("echo $(rm -rf /)").contains(&"rm -rf /".to_string()));
    assert!(names("echo \"$(rm x)\"").contains(&"rm x".to_string()));
    assert!(names("echo ${x:-$(rm x)}").contains(&"rm x".to_string()));
    assert!(names("a=(1 $(rm x))").contains(&"rm x".to_string()));
    assert!(names("cat <<< \"$(rm x)\"").contains(&"rm x".to_string()));
    assert!(names("diff <(rm x) y").contains(&"rm x".to_string()));
    assert!(names("echo `rm x`").contains(&"rm x".to_string()));
    assert!(names("[[ -n $(rm x) ]]").contains(&"rm x".to_string()));
    assert!(names("cat <<EOF\n$(rm x)\nEOF").contains(&"rm x".to_string()));
    assert!(names("x=$(rm x)").contains(&"rm x".to_string()));
}

#[test]
fn redirects_recorded() {
    let mut out = Extraction::default();
    extract("echo x > /etc/passwd 2>&1", 0, &mut out);
    let r = &out.commands[0].redirects;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].target.text, "/etc/passwd");
    assert_eq!(r[0].kind, RedirectKind::Write);
    let mut out = Extraction::default();
    extract("{ echo x; } >> /etc/hosts", 0, &mut out);
    assert!(out
        .commands
        .iter()
        .any(|c| c.redirects.iter().any(|r| r.target.text == "/etc/hosts")));
}

#[test]
fn stdin_sources() {
    let mut out = Extraction::default();
    extract("curl x | sh", 0, &mut out);
    assert!(matches!(&out.commands[1].stdin, Stdin::Pipe { feeders, .. } if feeders == &["curl"]));
    let mut out = Extraction::default();
    extract("echo ls | sh", 0, &mut out);
    assert!(matches!(&out.commands[1].stdin, Stdin::Pipe { literal: Some(t), .. } if t == "ls\n"));
    let mut out = Extraction::default();
    extract("sh <<< 'ls'", 0, &mut out);
    assert_eq!(out.commands[0].stdin, Stdin::Text(Some("ls\n".into())));
}

#[test]
fn fail_closed_findings() {
    assert_eq!(findings("f() { ls; }"), ["function-definition"]);
    assert_eq!(findings("PATH=/tmp ls"), ["dangerous-assignment"]);
    assert_eq!(
        findings("export LD_PRELOAD=/x.so"),
        ["dangerous-assignment"]
    );
    assert_eq!(findings("if then"), ["parse-error"]);
    assert_eq!(findings("(( a[$(id)] ))"), ["arithmetic-subscript"]);
}
