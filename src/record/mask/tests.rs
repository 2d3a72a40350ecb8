//! Masker tests: every detector, every split point, escapes, false positives, hold bound,
//! counts and flush semantics.

use std::sync::Arc;

use super::test_rng::Lcg;
use super::*;

fn rules() -> Arc<MaskRules> {
    static RULES: std::sync::OnceLock<Arc<MaskRules>> = std::sync::OnceLock::new();
    Arc::clone(RULES.get_or_init(|| Arc::new(MaskRules::builtin())))
}

/// Feeds `parts` one push each, flushing after each part when `quiet`, and at the end.
fn run_parts(mode: MaskMode, parts: &[&[u8]], quiet: bool) -> (Vec<u8>, Masker) {
    let mut m = Masker::new(rules(), mode);
    let mut out = Vec::new();
    for p in parts {
        m.push(p, &mut out);
        assert!(m.held_len() <= MAX_HOLD);
        if quiet {
            m.flush(&mut out);
        }
    }
    m.flush(&mut out);
    assert!(!m.has_pending());
    (out, m)
}

fn mask_all(input: &[u8]) -> String {
    s(&run_parts(MaskMode::Tag, &[input], false).0)
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `text` with every `[MASKED:kind]` removed (tags may contain words found in secrets).
fn without_tags(text: &str) -> String {
    let mut rest = text;
    let mut kept = String::new();
    while let Some(p) = rest.find("[MASKED:") {
        kept.push_str(&rest[..p]);
        rest = &rest[p..];
        rest = rest.find(']').map_or("", |e| &rest[e + 1..]);
    }
    kept.push_str(rest);
    kept
}

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";

/// (kind, line, secret that must disappear, expected output in tag mode).
fn samples() -> Vec<(&'static str, String, String, String)> {
    let gh = format!(
        "ghp_{}",
        "a1B2c3D4e5F6g7H8i9J0".repeat(2).get(..36).unwrap_or("")
    );
    let pat = format!("github_pat_11ABCDEFG0{}", "x9Y8z7W6v5".repeat(6));
    let mut v = vec![
        ("aws-access-key", "AKIAIOSFODNN7EXAMPLE".to_owned()),
        ("aws-access-key", "ASIAY34FZKBOKMUTVV7A".to_owned()),
        ("github-token", gh),
        ("github-token", pat),
        ("gitlab-token", "glpat-Xy9zAbCdEf12345GhIjK".to_owned()),
        (
            "slack-token",
            "xoxb-2048-1234567890-AbCdEfGhIjKlMnOp".to_owned(),
        ),
        ("stripe-key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc".to_owned()),
        ("stripe-key", "rk_live_51H8abcDEFghiJKLmnoPQR".to_owned()),
        ("jwt", JWT.to_owned()),
        ("card", "4111 1111 1111 1111".to_owned()),
        ("card", "5500-0000-0000-0004".to_owned()),
        ("card", "378282246310005".to_owned()),
        ("iban", "DE89 3704 0044 0532 0130 00".to_owned()),
        ("iban", "GB82WEST12345698765432".to_owned()),
    ]
    .into_iter()
    .map(|(k, secret)| {
        (
            k,
            format!("x {secret} y\n"),
            secret,
            format!("x [MASKED:{k}] y\n"),
        )
    })
    .collect::<Vec<_>>();
    let assigned = [
        (
            "password",
            "DB_PASSWORD=Tr0ub4dor&3x",
            "Tr0ub4dor",
            "DB_PASSWORD=[MASKED:password]&3x",
        ),
        (
            "password",
            "export API_KEY=\"sk-proj-1234 abcd\"",
            "sk-proj-1234 abcd",
            "export API_KEY=\"[MASKED:password]\"",
        ),
        (
            "password",
            "client_secret: 9f8e7d6c5b4a",
            "9f8e7d6c5b4a",
            "client_secret: [MASKED:password]",
        ),
        (
            "password",
            "{\"token\": \"tok_abcdef123456\"}",
            "tok_abcdef123456",
            "{\"token\": \"[MASKED:password]\"}",
        ),
        (
            "password",
            "DB_PASS=hunter2hunter2",
            "hunter2hunter2",
            "DB_PASS=[MASKED:password]",
        ),
        (
            "aws-secret-key",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = [MASKED:aws-secret-key]",
        ),
        (
            "db-password",
            "url=postgres://app:s3cr3t-pw@db.internal:5432/app",
            "s3cr3t-pw",
            "url=postgres://app:[MASKED:db-password]@db.internal:5432/app",
        ),
        (
            "db-password",
            "redis://:Zx8!q@cache:6379",
            "Zx8!q",
            "redis://:[MASKED:db-password]@cache:6379",
        ),
    ];
    for (k, line, secret, want) in assigned {
        v.push((
            k,
            format!("{line}\n"),
            secret.to_owned(),
            format!("{want}\n"),
        ));
    }
    v
}

const KEY_BLOCK: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\n\
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n\
QyNTUxOQAAACDrZ8ydHl9VJ4oS1ZqYc2V9tqQqgVQ0V6bq2rEXAMPLEEXAMPLEEXAMPLE\n\
-----END OPENSSH PRIVATE KEY-----";

#[test]
fn every_detector_masks() {
    for (kind, line, secret, want) in samples() {
        let out = mask_all(line.as_bytes());
        assert_eq!(out, want, "{kind}: {line:?}");
        assert!(!out.contains(&secret), "{kind} leaked");
    }
}

#[test]
fn private_key_blocks() {
    let input = format!("before\n{KEY_BLOCK}\nafter\n");
    assert_eq!(
        mask_all(input.as_bytes()),
        "before\n[MASKED:private-key]\nafter\n"
    );
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n";
    assert_eq!(mask_all(pem.as_bytes()), "[MASKED:private-key]\n");
    let pkcs8 = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n-----END ENCRYPTED PRIVATE KEY-----";
    assert_eq!(mask_all(pkcs8.as_bytes()), "[MASKED:private-key]");
}

#[test]
fn large_key_block_in_small_chunks() {
    let body: String = (0..300).map(|i| format!("{:064}\n", i)).collect();
    let input = format!(
        "a\n-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\nb AKIAIOSFODNN7EXAMPLE\n"
    );
    assert!(input.len() > 4 * MAX_HOLD);
    let chunks: Vec<&[u8]> = input.as_bytes().chunks(97).collect();
    let (out, m) = run_parts(MaskMode::Tag, &chunks, false);
    assert_eq!(
        s(&out),
        "a\n[MASKED:private-key]\nb [MASKED:aws-access-key]\n"
    );
    assert_eq!(m.counts().get("private-key"), Some(&1));
}

#[test]
fn key_block_without_end_is_abandoned_but_masking_continues() {
    let mut input = b"-----BEGIN PRIVATE KEY-----\n".to_vec();
    while input.len() < MAX_KEY_BLOCK + 1000 {
        input.extend_from_slice(b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\n");
    }
    let (out, _) = run_parts(MaskMode::Tag, &[&input], false);
    assert_eq!(s(&out), "[MASKED:private-key]");
    let (out, _) = run_parts(
        MaskMode::Tag,
        &[&input, b"visible again AKIAIOSFODNN7EXAMPLE\n"],
        false,
    );
    assert!(s(&out).ends_with("visible again [MASKED:aws-access-key]\n"));
}

#[test]
fn every_split_point_across_two_chunks() {
    let mut cases: Vec<(String, String)> = samples()
        .into_iter()
        .map(|(_, line, secret, _)| (line, secret))
        .collect();
    cases.push((
        format!("x\n{KEY_BLOCK}\ny\n"),
        "b3BlbnNzaC1rZXktdjEAAAAA".to_owned(),
    ));
    for (line, secret) in cases {
        let whole = mask_all(line.as_bytes());
        let b = line.as_bytes();
        for i in 0..=b.len() {
            let (out, m) = run_parts(MaskMode::Tag, &[&b[..i], &b[i..]], false);
            assert_eq!(s(&out), whole, "split at {i} of {line:?}");
            assert_eq!(
                m.counts().values().sum::<u64>(),
                1,
                "count at {i} of {line:?}"
            );
            assert!(!s(&out).contains(&secret));
        }
    }
}

#[test]
fn every_split_point_with_a_quiet_pause() {
    // The held part is released by the quiet timer between the two reads: a token's head may be
    // released but its body never is.
    let cases: Vec<(String, String)> = samples()
        .into_iter()
        .filter(|(k, ..)| !matches!(*k, "card" | "iban"))
        .map(|(_, line, secret, _)| (line, secret))
        .collect();
    for (line, secret) in cases {
        let b = line.as_bytes();
        for i in 0..=b.len() {
            let (out, m) = run_parts(MaskMode::Tag, &[&b[..i], &b[i..]], true);
            let out = without_tags(&s(&out));
            // The fixed prefix (`github_pat_`) is no secret and may be released before it is
            // recognised; no six bytes reaching past it may appear.
            let anchor = [
                "github_pat_",
                "ghp_",
                "glpat-",
                "xoxb-",
                "sk_live_",
                "rk_live_",
                "AKIA",
                "ASIA",
                "eyJ",
            ]
            .iter()
            .find(|a| secret.starts_with(*a))
            .map_or(0, |a| a.len());
            let leaked = (0..secret.len().saturating_sub(5))
                .filter(|j| j + 6 > anchor)
                .any(|j| secret.get(j..j + 6).is_some_and(|w| out.contains(w)));
            assert!(!leaked, "split at {i} of {line:?}: {out:?}");
            assert_eq!(
                m.counts().values().sum::<u64>(),
                1,
                "count at {i}: {out:?} {:?}",
                m.counts()
            );
        }
    }
    let block = format!("x\n{KEY_BLOCK}\ny\n");
    for i in 0..=block.len() {
        let (out, _) = run_parts(
            MaskMode::Tag,
            &[&block.as_bytes()[..i], &block.as_bytes()[i..]],
            true,
        );
        assert!(!s(&out).contains("b3BlbnNzaC1rZXkt"), "split at {i}");
    }
}

#[test]
fn colour_codes_inside_secrets() {
    let input = b"key: AKIA\x1b[31mIOSFODNN7\x1b[0mEXAMPLE done\n";
    let out = mask_all(input);
    assert_eq!(out, "key: [MASKED:aws-access-key]\x1b[31m\x1b[0m done\n");
    let input = b"card \x1b[1m4111\x1b[0m 1111\x1b]0;t\x07 1111 1111\r\n".to_vec();
    let out = mask_all(&input);
    assert_eq!(out, "card \x1b[1m[MASKED:card]\x1b[0m\x1b]0;t\x07\r\n");
    assert!(!out.contains("1111"));
    for i in 0..=input.len() {
        let (out, _) = run_parts(MaskMode::Tag, &[&input[..i], &input[i..]], false);
        assert!(!s(&out).contains("1111"), "split at {i}");
    }
    let coloured = b"\x1b[32mDB_PASSWORD\x1b[0m=\x1b[33mhunter2hunter2\x1b[0m\n";
    assert!(!mask_all(coloured).contains("hunter2"));
}

#[test]
fn same_length_keeps_layout() {
    let input = b"id AKIAIOSFODNN7EXAMPLE ok\r\n";
    let (out, _) = run_parts(MaskMode::SameLength, &[input], false);
    assert_eq!(s(&out), "id ******************** ok\r\n");
    let block = format!("a\n{KEY_BLOCK}\nb\n");
    let (out, m) = run_parts(MaskMode::SameLength, &[block.as_bytes()], false);
    assert_eq!(out.len(), block.len());
    let lines: Vec<usize> = s(&out).lines().map(str::len).collect();
    assert_eq!(lines, block.lines().map(str::len).collect::<Vec<_>>());
    assert!(!s(&out).contains("OPENSSH"));
    assert_eq!(m.counts().get("private-key"), Some(&1));
    let coloured = b"AKIA\x1b[31mIOSFODNN7EXAMPLE\x1b[0m\n";
    let (out, _) = run_parts(MaskMode::SameLength, &[coloured], false);
    assert_eq!(s(&out), "****\x1b[31m****************\x1b[0m\n");
}

#[test]
fn ordinary_logs_pass_unchanged() {
    let not_luhn = "4111111111111112";
    let digits: Vec<u8> = not_luhn.bytes().map(|c| c - b'0').collect();
    assert!(!detect::luhn(&digits));
    let corpus = format!(
        "2024-01-15T10:23:45.123Z INFO server listening on 0.0.0.0:8080\n\
Jan 15 10:23:45 web-1 sshd[1234]: Accepted publickey for deploy from 10.0.0.5 port 52314 ssh2\n\
request_id=550e8400-e29b-41d4-a716-446655440000 status=200 duration_ms=1234\n\
commit 9fceb02d0ae598e95dc970b74767f19372d61af8\n\
Merge: 1a2b3c4 5d6e7f8\n\
order {not_luhn} processed; epoch_ms=1705314225123 ns=1705314225123456789\n\
blob: SGVsbG8gV29ybGQhIFRoaXMgaXMgYSBiYXNlNjQgYmxvYiB0aGF0IGlzIG5vdCBhIGtleQ==\n\
GET /api/v1/users?page=2&limit=50 HTTP/1.1 200 512 \"-\" \"curl/8.5.0\"\n\
tokens_used=1532 max_tokens=4096 token_count=12\n\
password: ******** passwordless: true token=${{API_TOKEN}}\n\
Password authentication is disabled for user root\n\
PWD=/home/deploy OLDPWD=/srv\n\
see https://example.com:8443/path?x=1 and git@github.com:org/repo.git ssh://git@host:22/r\n\
addr fe80::1ff:fe23:4567:890a and 192.168.100.200 and 2001:db8::1\n\
total 4,294,967,296 bytes pi=3.14159265358979323846 e=2.718281828459045235\n\
sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n\
phone +1-555-123-4567 ext 89, ticket JIRA-12345, build #20240115.3\n\
\x1b[32mPASS\x1b[0m src/app.test.ts (5.2 s) tests passed: 120\n\
DEBUG tokenizer: bert-base vocab_size=30522\n\
eyJ alone, AKIA alone, ghp_ alone, sk_live_ alone\n"
    );
    let b = corpus.as_bytes();
    assert_eq!(mask_all(b), corpus);
    for size in [1, 7, 64, 1000] {
        let chunks: Vec<&[u8]> = b.chunks(size).collect();
        let (out, m) = run_parts(MaskMode::Tag, &chunks, false);
        assert_eq!(s(&out), corpus, "chunk size {size}");
        assert!(m.counts().is_empty());
    }
}

#[test]
fn hold_window_is_bounded() {
    let mut rng = Lcg(7);
    let mut input = Vec::new();
    while input.len() < 200_000 {
        let n = rng.next() % 9000;
        for _ in 0..n {
            input.push(b"abcdefgh ijk-/=."[rng.next() % 16]);
        }
        if rng.next().is_multiple_of(3) {
            input.push(b'\n');
        }
    }
    let mut m = Masker::new(rules(), MaskMode::Tag);
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let n = (rng.next() % 5000 + 1).min(input.len() - pos);
        m.push(&input[pos..pos + n], &mut out);
        pos += n;
        assert!(m.held_len() <= MAX_HOLD, "held {}", m.held_len());
        assert_eq!(out.len() + m.held_len(), pos, "pushed = emitted + held");
        assert_eq!(m.has_pending(), m.held_len() > 0);
    }
    m.flush(&mut out);
    assert_eq!(out, input);
}

#[test]
fn long_line_with_secret_at_the_hold_edge() {
    for offset in [MAX_HOLD / 2 - 10, MAX_HOLD - 5, MAX_HOLD + 3, 3 * MAX_HOLD] {
        let mut line = "a".repeat(offset);
        line.push_str(" AKIAIOSFODNN7EXAMPLE ");
        line.push_str(&"b ".repeat(3000));
        let chunks: Vec<&[u8]> = line.as_bytes().chunks(333).collect();
        let (out, m) = run_parts(MaskMode::Tag, &chunks, false);
        assert!(!s(&out).contains("IOSFODNN7"), "offset {offset}");
        assert_eq!(m.counts().get("aws-access-key"), Some(&1));
    }
}

#[test]
fn counts_per_kind() {
    let input = format!(
        "AKIAIOSFODNN7EXAMPLE AKIAI44QH8DHBEXAMPLE\ncard 4111111111111111\n{KEY_BLOCK}\n\
token=abcdefghijkl and {JWT}\n"
    );
    let (_, m) = run_parts(MaskMode::Tag, &[input.as_bytes()], false);
    let got: Vec<(&str, u64)> = m.counts().iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        got,
        vec![
            ("aws-access-key", 2),
            ("card", 1),
            ("jwt", 1),
            ("password", 1),
            ("private-key", 1)
        ]
    );
}

#[test]
fn flush_semantics() {
    let mut m = Masker::new(rules(), MaskMode::Tag);
    let mut out = Vec::new();
    m.push(b"done\n$ ", &mut out);
    assert_eq!(out, b"done\n");
    assert!(m.has_pending());
    m.flush(&mut out);
    assert_eq!(out, b"done\n$ ");
    assert!(!m.has_pending());
    m.flush(&mut out);
    assert_eq!(out, b"done\n$ ");
    // A token cut by a quiet release: head masked now, tail masked later, counted once.
    out.clear();
    m.push(b"AKIAIOSF", &mut out);
    m.flush(&mut out);
    assert_eq!(out, b"[MASKED:aws-access-key]");
    m.push(b"ODNN7EXAMPLE\n", &mut out);
    assert_eq!(s(&out), "[MASKED:aws-access-key][MASKED:aws-access-key]\n");
    assert_eq!(m.counts().get("aws-access-key"), Some(&1));
}

#[test]
fn settings_custom_rules_and_disable() {
    let settings: MaskSettings = toml::from_str(
        "disable = [\"card\"]\nmode = \"same-length\"\n\
[[rules]]\nname = \"employee-id\"\nregex = 'EMP-[0-9]{6}'\n\
[[rules]]\nname = \"session\"\nregex = 'sid=(?P<secret>[a-f0-9]{16})'\n",
    )
    .unwrap();
    assert_eq!(settings.mode, MaskMode::SameLength);
    validate(&settings).unwrap();
    let rules = Arc::new(MaskRules::compile(&settings).unwrap());
    let mut m = Masker::new(rules, MaskMode::Tag);
    let mut out = Vec::new();
    m.push(
        b"EMP-123456 sid=0123456789abcdef 4111111111111111\n",
        &mut out,
    );
    assert_eq!(
        s(&out),
        "[MASKED:employee-id] sid=[MASKED:session] 4111111111111111\n"
    );

    let off = MaskSettings {
        enabled: false,
        ..MaskSettings::default()
    };
    let mut m = Masker::new(Arc::new(MaskRules::compile(&off).unwrap()), MaskMode::Tag);
    let mut out = Vec::new();
    m.push(b"AKIAIOSFODNN7EXAMPLE", &mut out);
    assert_eq!(out, b"AKIAIOSFODNN7EXAMPLE");
    assert!(!m.has_pending());

    assert!(toml::from_str::<MaskSettings>("enable = true").is_err());
    let d: MaskSettings = toml::from_str("").unwrap();
    assert_eq!(d, MaskSettings::default());
}

#[test]
fn validation_errors_name_the_problem() {
    let bad = |toml_text: &str| {
        let st: MaskSettings = toml::from_str(toml_text).unwrap();
        validate(&st).unwrap_err().to_string()
    };
    assert!(bad("disable = [\"cards\"]").contains("`cards`"));
    let e = bad("[[rules]]\nname = \"acme\"\nregex = 'ACME-[0-9'\n");
    assert!(e.contains("`acme`") && e.contains("invalid regex"), "{e}");
    assert!(bad("[[rules]]\nname = \"any\"\nregex = 'x*'\n").contains("empty"));
    assert!(bad("[[rules]]\nname = \"jwt\"\nregex = 'x+'\n").contains("built-in"));
    assert!(bad("[[rules]]\nname = \"a b\"\nregex = 'x+'\n").contains("invalid"));
}

#[test]
fn builtin_rules_compile() {
    MaskRules::compile(&MaskSettings::default()).unwrap();
    assert!(MaskRules::builtin().is_active());
    assert_eq!(QUIET_FLUSH, std::time::Duration::from_millis(20));
}

#[test]
fn non_utf8_bytes_pass_through() {
    let input = b"\xff\xfe bin \x00\x01 AKIAIOSFODNN7EXAMPLE \xc3\x28\n";
    assert_eq!(
        run_parts(MaskMode::Tag, &[input], false).0,
        b"\xff\xfe bin \x00\x01 [MASKED:aws-access-key] \xc3\x28\n"
    );
}
