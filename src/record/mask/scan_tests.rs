//! The candidate finder against its reference: running every detector on every line must find
//! exactly the spans (and the key-block start) that the prefiltered scan finds, on generated
//! text full of secrets, near misses, odd casing, digit runs and capitals at every alignment.

use std::sync::Arc;

use super::test_rng::Lcg;
use super::*;

/// Every detector on every line: what [`MaskRules::scan`] must reproduce.
fn reference(rules: &MaskRules, text: &[u8]) -> (Vec<Span>, Option<(usize, usize)>) {
    let mut spans = Vec::new();
    let mut begin = None;
    let mut start = 0;
    for line in text.split(|&c| c == b'\n') {
        for (index, d) in rules.detectors.iter().enumerate() {
            d.find(line, start, index, &mut spans);
        }
        if let Some(b) = rules.key_begin.as_ref().and_then(|r| r.find(line)) {
            begin = Some((start + b.start(), start + b.end()));
            break;
        }
        start += line.len() + 1;
    }
    merge(&mut spans);
    (spans, begin)
}

fn scanned(rules: &MaskRules, text: &[u8]) -> (Vec<Span>, Option<(usize, usize)>) {
    let mut spans = Vec::new();
    let begin = rules.scan(text, &mut spans);
    (spans, begin)
}

impl Lcg {
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next() % items.len()]
    }

    fn digits(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() % 10) as u8).collect()
    }
}

/// A Luhn-valid number of `n` digits starting with `first`.
fn luhn_number(rng: &mut Lcg, first: u8, n: usize) -> Vec<u8> {
    let mut d = vec![first];
    d.extend(rng.digits(n - 2));
    for check in 0..10 {
        let mut candidate = d.clone();
        candidate.push(check);
        if detect::luhn(&candidate) {
            return candidate;
        }
    }
    unreachable!("one check digit always fits")
}

/// Digits with single separators (or none) between groups of random size.
fn grouped(rng: &mut Lcg, digits: &[u8]) -> String {
    let sep = rng.pick(&["", "", " ", "-", "  ", "_", "."]);
    let mut out = String::new();
    let mut group = 0;
    let size = 3 + rng.next() % 4;
    for &d in digits {
        if group == size {
            out.push_str(sep);
            group = 0;
        }
        out.push(char::from(b'0' + d));
        group += 1;
    }
    out
}

fn fragment(rng: &mut Lcg) -> String {
    const FIXED: &[&str] = &[
        "AKIAIOSFODNN7EXAMPLE",
        "ASIAY34FZKBOKMUTVV7A",
        "AKIAshort",
        "xAKIAIOSFODNN7EXAMPLE",
        "ghp_a1B2c3D4e5F6g7H8i9J0a1B2c3D4e5F6g7H8",
        "gho_tooshort",
        "github_pat_11ABCDEFG0x9Y8z7W6v5x9Y8z7W6v5x9Y8z7W6v5",
        "glpat-Xy9zAbCdEf12345GhIjK",
        "xoxb-2048-1234567890-AbCdEfGhIjKlMnOp",
        "xoxz-nope",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "rk_live_51H8abcDEFghiJKLmnoPQR",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
        "eyJ.short",
        "postgres://app:s3cr3t-pw@db.internal:5432/app",
        "redis://:Zx8!q@cache:6379",
        "https://example.com:8443/path?x=1",
        "ssh://git@host:22/r",
        "mysql://u:p@",
        "://:@",
        "DB_PASSWORD=Tr0ub4dor&3x",
        "Db_PaSsWoRd = \"hunter2 hunter2\"",
        "client_SECRET:9f8e7d6c5b4a",
        "'token': 'tok_abcdef123456'",
        "API-KEY=abc123def",
        "apikey\t=\tzzz",
        "db_pwd=letmein99",
        "X_PWD:qwerty1",
        "pass=opensesame",
        "passphrase: correct horse",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_SECRET_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "tokens_used=1532",
        "password: ********",
        "publickey for deploy",
        "keyboard: us",
        "monkey=banana",
        "token=${API_TOKEN}",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "-----BEGIN CERTIFICATE-----",
        "-----BEGIN  PRIVATE KEY-----",
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82WEST12345698765432",
        "GB82 WEST 1234 5698 7654 32",
        "NO9386011117947",
        "NO93 8601 1117 947",
        "XX12345678901234567",
        "ED25519 SHA256",
        "2026-11-21T12:00:01.123Z",
        "550e8400-e29b-41d4-a716-446655440000",
        "4111 1111 1111 1111",
        "4222222222222",
        "5500-0000-0000-0004",
        "378282246310005",
        "3.14159265358979323846",
        "1705314225123456789",
        "SELECT ID FROM T WHERE X",
        "INFO",
        "WARN  ",
    ];
    match rng.next() % 6 {
        0 | 1 => rng.pick(FIXED).to_owned(),
        2 => {
            let first = b"1234567"[rng.next() % 7] - b'0';
            let n = 12 + rng.next() % 9;
            let d = luhn_number(rng, first, n);
            grouped(rng, &d)
        }
        3 => {
            let n = 8 + rng.next() % 14;
            let d = rng.digits(n);
            grouped(rng, &d)
        }
        4 => {
            let country = rng.pick(&["DE", "GB", "NO", "FR", "ZZ", "AB", "NL"]);
            let body: String = (0..(10 + rng.next() % 20))
                .map(|_| char::from(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ "[rng.next() % 37]))
                .collect();
            format!("{country}{:02}{body}", rng.next() % 100)
        }
        _ => rng
            .pick(&["word", "Word", "a", "x9", "_", "..", "HTTP/1.1", "k", "A1"])
            .to_owned(),
    }
}

fn generated_text(rng: &mut Lcg, lines: usize) -> String {
    let mut text = String::new();
    for _ in 0..lines {
        for _ in 0..(1 + rng.next() % 6) {
            text.push_str(&fragment(rng));
            text.push_str(rng.pick(&[" ", " ", "", "-", "=", ":", "_", ".", "\"", "\t", "  "]));
        }
        text.push_str(rng.pick(&["\n", "\n", "\r\n"]));
    }
    text
}

fn mask(rules: &Arc<MaskRules>, input: &[u8]) -> String {
    let mut m = Masker::new(Arc::clone(rules), MaskMode::Tag);
    let mut out = Vec::new();
    m.push(input, &mut out);
    m.flush(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn settings(toml_text: &str) -> MaskRules {
    let st: MaskSettings = toml::from_str(toml_text).unwrap();
    MaskRules::compile(&st).unwrap()
}

#[test]
fn prefiltered_scan_matches_every_detector_on_every_line() {
    let rule_sets = [
        MaskRules::builtin(),
        settings("disable = [\"private-key\", \"card\"]"),
        settings("disable = [\"iban\", \"password\", \"db-password\"]"),
        settings(
            "[[rules]]\nname = \"employee-id\"\nregex = 'EMP-[0-9]{6}'\n\
             [[rules]]\nname = \"no-literal\"\nregex = '[0-9]{3}x[0-9]{3}'\n",
        ),
    ];
    let mut rng = Lcg(11);
    let mut found = 0;
    for round in 0..300 {
        let mut text = generated_text(&mut rng, 1 + round % 12);
        if round % 3 == 0 {
            text.push_str("EMP-123456 and 123x456 end");
        }
        for rules in &rule_sets {
            let want = reference(rules, text.as_bytes());
            assert_eq!(scanned(rules, text.as_bytes()), want, "{text:?}");
            found += want.0.len();
        }
    }
    assert!(found > 1000, "the generator must produce secrets ({found})");
}

#[test]
fn minimal_cards_and_ibans_at_every_alignment() {
    let rules = Arc::new(MaskRules::builtin());
    for (secret, kind) in [
        ("4222222222222", "card"),
        ("4111-1111-1111-1111", "card"),
        ("NO9386011117947", "iban"),
        ("NO93 8601 1117 947", "iban"),
    ] {
        for filler in ["x ", " ", "ab.", "\t", "WARN ", "a-"] {
            for n in 0..40 {
                let line = format!("{}{} ok\n", filler.repeat(n), secret);
                let (spans, _) = scanned(&rules, line.as_bytes());
                assert_eq!(
                    spans,
                    reference(&rules, line.as_bytes()).0,
                    "{line:?} ({kind})"
                );
                let masked = mask(&rules, line.as_bytes());
                assert!(
                    masked.contains(&format!("[MASKED:{kind}]")) && !masked.contains(secret),
                    "{line:?} -> {masked:?}"
                );
            }
        }
    }
}

#[test]
fn ordinary_digit_heavy_lines_have_no_candidates() {
    let rules = MaskRules::builtin();
    let lines = [
        "2026-11-21T12:00:01.123Z 2026-11-21T12:00:01.456Z took 1705314225123 ns",
        "epoch_ms=1705314225123 ns=1705314225123456789 id=550e8400-e29b-41d4-a716-446655440000",
        "10.0.0.5:52314 -> 192.168.100.200:443 bytes 12345 67890 pkts 12 34",
        "ED25519 SHA256:q5yMd publickey for deploy from 10.0.0.5 port 52314",
        "https://example.com:8443/path?x=1 keys 4 monkey business",
    ];
    for line in lines {
        let mut candidates = rules.prefilter.candidates(line.as_bytes());
        assert!(candidates.first_from(0).is_none(), "{line:?}");
    }
}
