//! Redactor throughput on ~8 MB of log-like output, pushed in 32 KiB reads as the bridge does:
//! without secrets (target ≥ 200 MB/s per core), with a secret every 50 lines, and the same as
//! coloured PTY output (every line wrapped in SGR codes, so the escape-stripping path runs);
//! then the timestamped request lines `benches/e2e.py` sends through the data path, and
//! numeric output (columns of numbers separated by single spaces, which card numbers look like).

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use gatehouse::record::mask::{MaskMode, MaskRules, Masker};

const LINES: &[&str] = &[
    "2024-01-15T10:23:45.123Z INFO  http: GET /api/v1/users?page=2&limit=50 status=200 duration_ms=12 bytes=5123",
    "Jan 15 10:23:45 web-1 sshd[1234]: Accepted publickey for deploy from 10.0.0.5 port 52314 ssh2: ED25519 SHA256:q5yMd",
    "request_id=550e8400-e29b-41d4-a716-446655440000 user=4711 action=login result=ok remote=192.168.100.200",
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 Author: Dev <dev@example.com> Merge: 1a2b3c4 5d6e7f8",
    "[worker-3] processed batch 1705314225123 of size 512 in 0.0345s (queue depth 17, retries 0)",
    "payload=SGVsbG8gV29ybGQhIFRoaXMgaXMgYSBiYXNlNjQgYmxvYiB0aGF0IGlzIG5vdCBhIGtleQ== sha256=e3b0c44298fc1c149afbf4c8",
    "WARN  db: slow query (1532 ms): SELECT id, name FROM accounts WHERE created_at > now() - interval '1 day'",
    "    at com.example.service.OrderHandler.handle(OrderHandler.java:214) ~[app.jar:2.3.1]",
];

const SECRETS: &[&str] = &[
    "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
    "DATABASE_URL=postgres://app:s3cr3t-pw@db.internal:5432/app",
    "card on file 4111 1111 1111 1111 charged",
    "Authorization token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
];

fn corpus(with_secrets: bool, coloured: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 << 20);
    let mut i = 0usize;
    while out.len() < 8 << 20 {
        let line = if with_secrets && i % 50 == 49 {
            SECRETS[(i / 50) % SECRETS.len()]
        } else {
            LINES[i % LINES.len()]
        };
        if coloured {
            out.extend_from_slice(b"\x1b[32m");
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\x1b[0m\r\n");
        } else {
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        i += 1;
    }
    out
}

/// Small deterministic generator for the corpora.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Lines shaped like those of `benches/e2e.py`'s log file.
fn request_log() -> Vec<u8> {
    const LEVELS: &[&str] = &["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];
    const SERVICES: &[&str] = &["api", "worker", "db", "cache", "auth", "billing"];
    const STATUS: &[u64] = &[200, 200, 200, 404, 500];
    let mut rng = Lcg(7);
    let mut out = Vec::with_capacity(8 << 20);
    let mut i = 0u64;
    while out.len() < 8 << 20 {
        let line = format!(
            "2026-11-21T12:{:02}:{:02}.{:03}Z {} [{}] request id={:08x} user=u{} \
             path=/v1/items/{} status={} took={}ms\n",
            i / 3600 % 60,
            i / 60 % 60,
            i % 1000,
            LEVELS[rng.next(6) as usize],
            SERVICES[rng.next(6) as usize],
            rng.next(1 << 32),
            1 + rng.next(999),
            1 + rng.next(99999),
            STATUS[rng.next(5) as usize],
            1 + rng.next(900),
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out
}

/// Columns of numbers: every line holds runs of 13+ digits with single spaces, so every line
/// is checked for card numbers (and about one in ten holds a Luhn-valid one).
fn numeric() -> Vec<u8> {
    let mut rng = Lcg(9);
    let mut out = Vec::with_capacity(8 << 20);
    while out.len() < 8 << 20 {
        let line = format!(
            "{} {}.{:03} {} {} {} {} {} {}\n",
            1705314225123 + rng.next(100000),
            rng.next(100),
            rng.next(1000),
            rng.next(10000),
            rng.next(100000),
            rng.next(1000000),
            rng.next(10000),
            rng.next(100),
            rng.next(10000000),
        );
        out.extend_from_slice(line.as_bytes());
    }
    out
}

fn run(rules: &Arc<MaskRules>, input: &[u8], out: &mut Vec<u8>) -> usize {
    let mut m = Masker::new(Arc::clone(rules), MaskMode::Tag);
    out.clear();
    for chunk in input.chunks(32 * 1024) {
        m.push(chunk, out);
    }
    m.flush(out);
    out.len()
}

fn bench(c: &mut Criterion) {
    let rules = Arc::new(MaskRules::builtin());
    let mut group = c.benchmark_group("mask");
    group.sample_size(20);
    let inputs = [
        ("8MB logs, no secrets", corpus(false, false)),
        ("8MB logs, secret every 50 lines", corpus(true, false)),
        (
            "8MB coloured PTY logs, secret every 50 lines",
            corpus(true, true),
        ),
        ("8MB request log (e2e payload)", request_log()),
        ("8MB numeric columns", numeric()),
    ];
    for (name, input) in inputs {
        let mut out = Vec::with_capacity(input.len());
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| run(&rules, black_box(&input), &mut out))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
