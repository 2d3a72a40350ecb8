//! Recorder cost per 100 MB of session output, stage by stage, for two payloads: log text (the
//! common case) and zeros (the worst case: every NUL is the six JSON bytes `\u0000`). Output is
//! pushed in 32 KiB reads, as SSH channel data arrives. Every rate is MB of session output per
//! second (not of recording bytes), so it reads directly against the data path's throughput.
//!
//! - `encode`: UTF-8 carry and JSON escaping into event lines ([`EventEncoder`]), also for
//!   text that is mostly not ASCII;
//! - `sha256 sha2` / `sha256 ring`: the seal's running hash over the encoded lines;
//! - `write`: the encoded lines written to a file in the gateway's batches (page cache);
//! - `recorder`: all of it through [`Recorder`] the way the gateway's writer job drives it on
//!   the blocking pool (event lines hashed and written every [`WRITE_BYTES`]). Left out: the fsyncs of the
//!   first write (disk latency, once per recording) and the final fsync and seal, which come
//!   after the session has ended.
//!
//! `cargo bench --bench record -- --warm-up-time 1 --measurement-time 5`

use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{
    black_box, criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use gatehouse::gateway::recording::WRITE_BYTES;
use gatehouse::record::cast::{EventEncoder, Recorder, RecordingHeader};
use sha2::{Digest, Sha256};

/// Session output per iteration.
const TOTAL: usize = 100 * 1000 * 1000;
/// One SSH channel data read.
const CHUNK: usize = 32 * 1024;

/// ~100 MB of log lines like benches/e2e.py's (levels, services, ids, paths; no secrets).
fn log_text() -> Vec<u8> {
    const LEVELS: [&str; 6] = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];
    const SERVICES: [&str; 6] = ["api", "worker", "db", "cache", "auth", "billing"];
    const STATUS: [u32; 5] = [200, 200, 200, 404, 500];
    // xorshift64: deterministic, no dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(TOTAL + 256);
    let mut i = 0u64;
    while out.len() < TOTAL {
        let pick = |n: u64, r: u64| (r % n) as usize;
        let _ = writeln!(
            out,
            "2026-11-21T12:{:02}:{:02}.{:03}Z {} [{}] request id={:08x} user=u{} path=/v1/items/{} \
             status={} took={}ms",
            i / 3600 % 60,
            i / 60 % 60,
            i % 1000,
            LEVELS[pick(6, next())],
            SERVICES[pick(6, next())],
            next() as u32,
            1 + next() % 999,
            1 + next() % 99_999,
            STATUS[pick(5, next())],
            1 + next() % 900,
        );
        i += 1;
    }
    out.truncate(TOTAL);
    out
}

/// Encodes `input` as the recorder does; `sink` gets each batch of event lines.
fn encode(input: &[u8], buf: &mut Vec<u8>, mut sink: impl FnMut(&[u8])) {
    let mut encoder = EventEncoder::new(Instant::now());
    buf.clear();
    for chunk in input.chunks(CHUNK) {
        encoder.output(buf, chunk, Instant::now());
        if buf.len() >= WRITE_BYTES {
            sink(buf);
            buf.clear();
        }
    }
    encoder.finish(buf, Instant::now());
    sink(buf);
    buf.clear();
}

/// ~100 MB of text that is mostly not ASCII (accented words, CJK, box drawing): the escaper's
/// UTF-8 path, measured for `encode` only.
fn utf8_text() -> Vec<u8> {
    const LINE: &str = "│ naïve café – 日本語のログ行 – ünïcödé ✓ │ status=ok\n";
    let mut out = LINE.repeat(TOTAL / LINE.len() + 1).into_bytes();
    out.truncate(TOTAL);
    out
}

fn header() -> RecordingHeader {
    RecordingHeader {
        session_id: "bench".into(),
        channel: 0,
        identity: "agent@example.com".into(),
        serial: 1,
        target: "web-1".into(),
        upstream_user: "deploy".into(),
        client: "127.0.0.1:1".into(),
        width: 80,
        height: 24,
        term: None,
        title: "head -c 100000000 app.log".into(),
        pty: false,
    }
}

/// Time for one recording of `input` through [`Recorder`] as the gateway drives it. The files
/// are deleted unsealed afterwards, before writeback, as benches/e2e.py does between runs.
fn record(input: &[u8]) -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut recorder = Recorder::create_deferred(dir.path(), &header()).expect("recorder");
    // The first write fsyncs the new names: disk latency, once per recording, not CPU per byte.
    recorder.write_pending().expect("first write");
    let t = Instant::now();
    // The recorder writes its event lines out itself every FLUSH_BYTES.
    for chunk in input.chunks(CHUNK) {
        recorder.output_at(chunk, Instant::now()).expect("output");
    }
    recorder.write_pending().expect("write");
    let took = t.elapsed();
    drop(recorder);
    took
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes(TOTAL as u64));
    let mut buf = Vec::with_capacity(2 * WRITE_BYTES + 6 * CHUNK);
    let utf8 = utf8_text();
    group.bench_function(BenchmarkId::new("encode", "UTF-8 text"), |b| {
        b.iter(|| {
            let mut n = 0;
            encode(black_box(&utf8), &mut buf, |lines| n += lines.len());
            n
        })
    });
    drop(utf8);
    for (name, input) in [("log text", log_text()), ("zeros", vec![0u8; TOTAL])] {
        let mut encoded = Vec::new();
        encode(&input, &mut buf, |lines| encoded.extend_from_slice(lines));
        println!(
            "{name}: {} MB of output, {} MB of event lines",
            input.len() / 1_000_000,
            encoded.len() / 1_000_000
        );

        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| {
                let mut n = 0;
                encode(black_box(&input), &mut buf, |lines| n += lines.len());
                n
            })
        });
        group.bench_function(BenchmarkId::new("sha256 sha2", name), |b| {
            b.iter(|| {
                let mut hasher = Sha256::new();
                for batch in encoded.chunks(WRITE_BYTES) {
                    hasher.update(batch);
                }
                hasher.finalize()
            })
        });
        group.bench_function(BenchmarkId::new("sha256 ring", name), |b| {
            b.iter(|| {
                let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
                for batch in encoded.chunks(WRITE_BYTES) {
                    ctx.update(batch);
                }
                ctx.finish()
            })
        });
        group.bench_function(BenchmarkId::new("write", name), |b| {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("write.cast");
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let mut file = std::fs::File::create(&path).expect("file");
                    let t = Instant::now();
                    for batch in encoded.chunks(WRITE_BYTES) {
                        file.write_all(batch).expect("write");
                    }
                    took += t.elapsed();
                    drop(file);
                    std::fs::remove_file(&path).expect("remove");
                }
                took
            })
        });
        group.bench_function(BenchmarkId::new("recorder", name), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| record(&input)).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
