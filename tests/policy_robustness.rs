//! Robustness of the policy engine against real bash and hostile input.
//!
//! - Quoting: real bash says what a word becomes (`bash -c 'printf "%s\n" WORD'`), and the
//!   program name gatehouse decides on must agree.
//! - Fuzz/property: mutated corpus lines and random bytes never panic, and are answered quickly.
//! - Depth: 5,000 nested `$(` is held within a second on an ordinary 2 MiB thread stack.

use std::process::Command;
use std::time::{Duration, Instant};

use gatehouse::policy::{decide, input_state, Action, InputState, PolicySet};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// What bash makes of `word` after quote removal (`None` when bash is not installed).
fn bash_word(word: &str) -> Option<String> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("printf '%s\\n' {word}"))
        .output()
        .ok()?;
    Some(
        String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_string(),
    )
}

#[test]
fn normalized_names_agree_with_bash() {
    let set = PolicySet::builtin();
    let policy = set.policy("default").expect("default policy");
    for word in [
        "r''m",
        "\"r\"m",
        "\\rm",
        "'/usr/bin/../bin/rm'",
        "r\\m",
        "'r'\"m\"",
        "/bin//rm",
        "\"/usr/bin/rm\"",
    ] {
        let Some(bash) = bash_word(word) else {
            eprintln!("bash not found; skipping");
            return;
        };
        let name = gatehouse::policy::normalize::basename(&bash);
        let d = decide(policy, format!("{word} -rf /").as_bytes());
        let first = d.commands.first().cloned().unwrap_or_default();
        let decided = first
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        assert_eq!(decided, name, "bash makes {word} into {bash}");
        assert_eq!(d.decision, Action::Deny, "{word}: {}", d.reason);
    }
}

#[test]
fn ansi_c_words_agree_with_bash() {
    for (word, expected) in [
        ("$'\\x72\\x6d'", "rm"),
        ("$'\\162\\155'", "rm"),
        ("$'a\\'b'", "a'b"),
    ] {
        if let Some(bash) = bash_word(word) {
            assert_eq!(bash, expected, "bash {word}");
        }
    }
    // ...and gatehouse holds ANSI-C quoting in a command name whatever it decodes to.
    let set = PolicySet::builtin();
    let policy = set.policy("default").expect("default policy");
    let d = decide(policy, b"$'\\x72\\x6d' -rf /");
    assert_eq!(
        (d.decision, d.rule.as_str()),
        (Action::Hold, "non-literal-command")
    );
}

fn corpus_lines() -> Vec<String> {
    let mut lines = Vec::new();
    for name in ["deny.txt", "hold.txt", "allow.txt"] {
        let path = format!("{}/tests/policy_corpus/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for l in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let line = l.split_once('\t').map_or(l, |(_, line)| line);
            lines.push(line.to_string());
        }
    }
    lines
}

fn mutate(rng: &mut StdRng, line: &[u8]) -> Vec<u8> {
    const SHELLISH: &[u8] = b"$(){}[]<>|&;'\"`\\!*?~=#-\n\t ";
    let mut out = line.to_vec();
    for _ in 0..rng.random_range(1..6) {
        let pos = if out.is_empty() {
            0
        } else {
            rng.random_range(0..=out.len())
        };
        match rng.random_range(0..5) {
            0 => {
                let c = SHELLISH[rng.random_range(0..SHELLISH.len())];
                out.insert(pos, c);
            }
            1 if !out.is_empty() => {
                out.remove(pos.min(out.len() - 1));
            }
            2 => out.insert(pos, rng.random()),
            3 => {
                let chunk: Vec<u8> = out.iter().copied().take(rng.random_range(0..16)).collect();
                for (i, b) in chunk.into_iter().enumerate() {
                    out.insert(pos + i, b);
                }
            }
            _ => {
                let opener: &[u8] =
                    [b"$(".as_slice(), b"`", b"${", b"<(", b"((", b"\""][rng.random_range(0..6)];
                for (i, b) in opener.iter().enumerate() {
                    out.insert(pos + i, *b);
                }
            }
        }
    }
    out
}

#[test]
fn fuzzed_lines_never_panic_and_answer_fast() {
    let set = PolicySet::builtin();
    let policy = set.policy("default").expect("default policy");
    let lines = corpus_lines();
    let mut rng = StdRng::seed_from_u64(0x6a7e_4f05);
    let mut slowest = Duration::ZERO;
    for i in 0..4000 {
        let input: Vec<u8> = if i % 4 == 0 {
            (0..rng.random_range(0..200))
                .map(|_| rng.random())
                .collect()
        } else {
            let base = lines
                .get(rng.random_range(0..lines.len().max(1)))
                .cloned()
                .unwrap_or_default();
            mutate(&mut rng, base.as_bytes())
        };
        let start = Instant::now();
        let d = decide(policy, &input);
        let _ = input_state(&input);
        slowest = slowest.max(start.elapsed());
        // A line gatehouse cannot parse is never allowed.
        if d.rule == "parse-error" {
            assert_eq!(d.decision, Action::Hold);
        }
    }
    assert!(
        slowest < Duration::from_secs(1),
        "slowest decision took {slowest:?}"
    );
}

#[test]
fn deep_nesting_held_fast_on_a_small_stack() {
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let set = PolicySet::builtin();
            let policy = set.policy("default").expect("default policy");
            let mut results = Vec::new();
            for (open, close) in [
                ("$(", ")"),
                ("(", ")"),
                ("{ ", "; }"),
                ("<(", ")"),
                ("\"$(", ")\""),
                ("${x:-", "}"),
                ("if true; then ", "; fi"),
                ("bash -c '", "'"),
                ("[[ ! ", " ]]"),
            ] {
                let line = format!("{}ls{}", open.repeat(5000), close.repeat(5000));
                let start = Instant::now();
                let d = decide(policy, line.as_bytes());
                results.push((open, d.decision, d.rule, start.elapsed()));
                let _ = input_state(line.as_bytes());
            }
            // Exactly at the limit: still parsed, on this stack.
            let at_limit = format!("{}ls{}", "echo $(".repeat(60), ")".repeat(60));
            let d = decide(policy, at_limit.as_bytes());
            results.push(("$( x60", d.decision, d.rule, Duration::ZERO));
            let nested_bash = (0..6).fold(String::from("rm -rf /"), |inner, _| {
                format!(
                    "bash -c {}",
                    shlex::try_quote(&inner)
                        .map(|q| q.into_owned())
                        .unwrap_or_default()
                )
            });
            let d = decide(policy, nested_bash.as_bytes());
            results.push(("bash -c x6", d.decision, d.rule, Duration::ZERO));
            results
        })
        .expect("spawn");
    let results = handle.join().expect("no stack overflow");
    for (what, decision, rule, took) in &results {
        assert!(*took < Duration::from_secs(1), "{what}: {took:?}");
        match *what {
            "$( x60" => assert_eq!(*decision, Action::Allow, "{what}: {rule}"),
            "bash -c x6" => assert_eq!(*decision, Action::Deny, "{what}: {rule}"),
            _ => assert_eq!(*decision, Action::Hold, "{what}: {rule}"),
        }
    }
}

#[test]
fn long_flat_line_decided() {
    let set = PolicySet::builtin();
    let policy = set.policy("default").expect("default policy");
    let mut line = String::new();
    while line.len() < 60 * 1024 {
        line.push_str("echo hello | grep h && ls -la /tmp; ");
    }
    let start = Instant::now();
    let d = decide(policy, line.as_bytes());
    assert_eq!(d.decision, Action::Allow, "{}", d.reason);
    assert!(start.elapsed() < Duration::from_secs(5));
    let too_long = "a".repeat(65 * 1024);
    assert_eq!(decide(policy, too_long.as_bytes()).rule, "line-too-long");
}

#[test]
fn input_states() {
    assert_eq!(input_state(b"ls -la"), InputState::Complete);
    assert_eq!(input_state(b"echo 'unterminated"), InputState::Incomplete);
    assert_eq!(input_state(b"if true; then"), InputState::Incomplete);
    assert_eq!(input_state(b"ls |"), InputState::Incomplete);
    assert_eq!(input_state(b"ls )"), InputState::Invalid);
    assert_eq!(input_state(b"\xff"), InputState::Invalid);
}
