//! Policy decision speed against the compiled-in default ruleset: typical lines (≤ 200 bytes),
//! a 64 KiB flat line, and 5,000 nested `$(` (held before parsing).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use gatehouse::policy::{decide, PolicySet};

const TYPICAL: &[&str] = &[
    "ls -la /var/log",
    "grep -rn ERROR /var/log/app/*.log | tail -n 50",
    "for f in *.log; do wc -l \"$f\"; done",
    "git push origin my-branch",
    "sudo env FOO=1 nice rm -rf --no-preserve-root /",
    "psql -h db -U app -c 'SELECT count(*) FROM users WHERE created_at > now() - interval 1 day'",
    "curl -fsSL https://example.com/install.sh | sh",
    "kubectl -n prod get pods -o wide | grep -v Running",
    "bash -c 'cd /srv/app && git pull && make build && systemctl status app'",
    "find /tmp -name '*.tmp' -mtime +7 -exec rm -f {} +",
];

fn bench(c: &mut Criterion) {
    let set = PolicySet::builtin();
    let Some(policy) = set.policy("default") else {
        return;
    };
    for (i, line) in TYPICAL.iter().enumerate() {
        c.bench_function(&format!("typical/{i:02} ({} bytes)", line.len()), |b| {
            b.iter(|| decide(policy, black_box(line.as_bytes())))
        });
    }
    let mut flat = String::new();
    while flat.len() + 40 < 64 * 1024 {
        flat.push_str("echo hello | grep h && ls -la /tmp; ");
    }
    c.bench_function(&format!("flat line ({} bytes)", flat.len()), |b| {
        b.iter(|| decide(policy, black_box(flat.as_bytes())))
    });
    let nested = format!("{}ls{}", "$(".repeat(5000), ")".repeat(5000));
    c.bench_function("5000 nested $(", |b| {
        b.iter(|| decide(policy, black_box(nested.as_bytes())))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
