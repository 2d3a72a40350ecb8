use chrono::Utc;
use serde_json::Value;
use std::fs::OpenOptions;
use std::os::unix::fs::MetadataExt;

use super::utf8::Utf8Carry;
use super::*;
use crate::audit;

/// A recording's header as the gateway fills it for an exec without a PTY (also used by the
/// gateway's recording tests).
pub(crate) fn header() -> RecordingHeader {
    RecordingHeader {
        session_id: "sess-1".into(),
        channel: 0,
        identity: "agent@example.com".into(),
        serial: 42,
        target: "web-1".into(),
        upstream_user: "deploy".into(),
        client: "127.0.0.1:5555".into(),
        width: 80,
        height: 24,
        term: None,
        title: "uname -a".into(),
        pty: false,
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    audit: AuditLog,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
        Fixture { dir, audit }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("recordings")
    }
    fn recorder(&self) -> Recorder {
        Recorder::create(&self.root(), &header()).unwrap()
    }
    fn verify(&self) -> Result<audit::VerifyReport, audit::VerifyError> {
        audit::verify(self.audit.path(), Some(&self.root()))
    }
}

/// Parses a cast: checks every line is non-blank JSON, returns header and events.
fn parse(path: &Path) -> (Value, Vec<(f64, String, String)>) {
    let bytes = std::fs::read(path).unwrap();
    let text = String::from_utf8(bytes).expect("valid UTF-8");
    assert!(text.ends_with('\n'));
    let mut lines = text.split_terminator('\n');
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let events = lines
        .map(|l| {
            assert!(!l.trim().is_empty(), "blank line");
            let v: Value = serde_json::from_str(l).unwrap();
            let a = v.as_array().unwrap();
            assert_eq!(a.len(), 3);
            (
                a[0].as_f64().unwrap(),
                a[1].as_str().unwrap().to_string(),
                a[2].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (header, events)
}

fn output_of(events: &[(f64, String, String)]) -> String {
    events
        .iter()
        .filter(|e| e.1 == "o")
        .map(|e| e.2.as_str())
        .collect()
}

const MIXED: &str = "a é € 😀 z\n";

/// What the recorder makes of one read: the text, through the one-pass escaper and back.
fn decode(carry: &mut Utf8Carry, bytes: &[u8]) -> String {
    let mut buf = vec![b'"'];
    json::write_text(&mut buf, carry, bytes);
    buf.push(b'"');
    serde_json::from_slice(&buf).unwrap()
}

/// The end of the stream: U+FFFD if a sequence was still carried.
fn finish(carry: &mut Utf8Carry) -> String {
    if carry.finish() {
        "\u{fffd}".into()
    } else {
        String::new()
    }
}

#[test]
fn utf8_carry_at_every_split_point() {
    let bytes = MIXED.as_bytes();
    for i in 0..=bytes.len() {
        let mut carry = Utf8Carry::default();
        let mut out = decode(&mut carry, &bytes[..i]);
        out += &decode(&mut carry, &bytes[i..]);
        out += &finish(&mut carry);
        assert_eq!(out, MIXED, "split at {i}");
        for j in i..=bytes.len() {
            let mut carry = Utf8Carry::default();
            let out = decode(&mut carry, &bytes[..i])
                + &decode(&mut carry, &bytes[i..j])
                + &decode(&mut carry, &bytes[j..])
                + &finish(&mut carry);
            assert_eq!(out, MIXED, "split at {i} and {j}");
        }
    }
}

#[test]
fn utf8_byte_at_a_time_in_a_recording() {
    let fx = Fixture::new();
    let mut rec = fx.recorder();
    for b in MIXED.as_bytes() {
        rec.output(&[*b]).unwrap();
    }
    let sealed = rec.finish(Some(0), &fx.audit).unwrap();
    let (_, events) = parse(&sealed.path);
    assert_eq!(output_of(&events), MIXED);
}

#[test]
fn invalid_bytes_become_replacement_characters() {
    let mut carry = Utf8Carry::default();
    assert_eq!(decode(&mut carry, b"a\xffb\xc3"), "a\u{fffd}b");
    assert_eq!(decode(&mut carry, b"("), "\u{fffd}(");
    assert_eq!(decode(&mut carry, b"\xe2\x82"), "");
    assert_eq!(finish(&mut carry), "\u{fffd}");
    assert_eq!(decode(&mut carry, b"ok"), "ok");
}

#[test]
fn lines_are_json_without_blanks_and_keep_bare_newlines() {
    let fx = Fixture::new();
    let mut rec = fx.recorder();
    rec.output(b"line1\nline2\n\n").unwrap();
    rec.output(b"").unwrap();
    rec.output(b"\x1b[31mred\x1b[0m\r\n\t\"q\"\\").unwrap();
    rec.output(&[0, 1, 2, 0xff, 0xfe]).unwrap();
    rec.input(b"ls\r").unwrap();
    rec.resize(120, 40).unwrap();
    rec.marker("cmd: ls -la").unwrap();
    rec.marker("deny rule R: \"quoted\"\n").unwrap();
    let sealed = rec.finish(Some(3), &fx.audit).unwrap();
    let text = std::fs::read_to_string(&sealed.path).unwrap();
    assert!(!text.contains("\n\n"));
    let (header, events) = parse(&sealed.path);
    assert_eq!(header["version"], 2);
    assert_eq!(header["width"], 80);
    assert_eq!(header["env"]["TERM"], "dumb");
    assert_eq!(header["gatehouse"]["identity"], "agent@example.com");
    assert_eq!(header["gatehouse"]["serial"], 42);
    assert_eq!(header["gatehouse"]["upstream_user"], "deploy");
    assert!(header["timestamp"].as_i64().unwrap() > 1_600_000_000);
    let kinds: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(kinds, ["o", "o", "o", "i", "r", "m", "m", "x"]);
    assert_eq!(events[0].2, "line1\nline2\n\n");
    assert_eq!(events[2].2, "\u{0}\u{1}\u{2}\u{fffd}\u{fffd}");
    assert_eq!(events[4].2, "120x40");
    assert_eq!(events[7].2, "3");
    assert_eq!(sealed.events, 8);
    assert!(events.windows(2).all(|w| w[0].0 <= w[1].0));
    // Times carry exactly 6 decimals.
    let second = text.lines().nth(1).unwrap();
    let time = second.trim_start_matches('[').split(',').next().unwrap();
    assert_eq!(time.split('.').nth(1).unwrap().len(), 6, "{second}");
}

#[test]
fn flush_policy() {
    let fx = Fixture::new();
    let mut rec = fx.recorder();
    let header_len = std::fs::metadata(rec.path()).unwrap().len();
    assert!(header_len > 0, "header is written at create");
    rec.output(b"small").unwrap();
    assert_eq!(std::fs::metadata(rec.path()).unwrap().len(), header_len);
    // The writer's once-a-second call writes it out.
    rec.write_pending().unwrap();
    let after_timer = std::fs::metadata(rec.path()).unwrap().len();
    assert!(after_timer > header_len);
    // 64 KiB pending is written without waiting for the timer.
    rec.output(&vec![b'x'; FLUSH_BYTES]).unwrap();
    assert!(std::fs::metadata(rec.path()).unwrap().len() > after_timer + FLUSH_BYTES as u64);
    assert!(rec.buf.is_empty());
    rec.finish(None, &fx.audit).unwrap();
}

#[test]
fn seal_matches_the_file_and_verifies() {
    let fx = Fixture::new();
    let mut rec = fx.recorder();
    let marker = rec.open_marker.clone();
    assert!(marker.exists());
    for i in 0..1000 {
        rec.output(format!("row {i} ✓\n").as_bytes()).unwrap();
    }
    let sealed = rec.finish(Some(0), &fx.audit).unwrap();
    assert!(!marker.exists());
    let (size, sha256) = audit::read::hash_file(&sealed.path).unwrap();
    assert_eq!(
        (size, sha256.as_str()),
        (sealed.size, sealed.sha256.as_str())
    );
    let records: Vec<_> = audit::export(fx.audit.path(), None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let seal = records.last().unwrap();
    assert_eq!(seal.kind, "recording.sealed");
    assert_eq!(seal.fields["path"], sealed.relative.as_str());
    assert_eq!(seal.fields["sha256"], sealed.sha256.as_str());
    assert_eq!(seal.fields["size"], sealed.size);
    assert_eq!(seal.fields["events"], 1001);
    assert_eq!(seal.fields["exit_status"], 0);
    assert_eq!(fx.root().join(&sealed.relative), sealed.path);
    assert_eq!(fx.verify().unwrap().recordings, 1);
}

#[test]
fn one_changed_byte_breaks_verify() {
    let fx = Fixture::new();
    let mut rec = fx.recorder();
    rec.output(b"secret-free output\n").unwrap();
    let sealed = rec.finish(Some(0), &fx.audit).unwrap();
    let mut bytes = std::fs::read(&sealed.path).unwrap();
    let at = bytes.len() - 20;
    bytes[at] ^= 0x01;
    std::fs::write(&sealed.path, bytes).unwrap();
    let err = fx.verify().unwrap_err();
    assert!(err.to_string().contains(&sealed.relative), "{err}");
}

#[test]
fn file_names_are_sanitized_and_grouped_by_date() {
    let fx = Fixture::new();
    let mut h = header();
    h.identity = "../ev il/$(x)".into();
    h.target = "..".into();
    let rec = Recorder::create(&fx.root(), &h).unwrap();
    let rel = rec.relative.clone();
    let (day, name) = rel.split_once('/').unwrap();
    assert_eq!(day, Utc::now().format("%Y-%m-%d").to_string());
    assert!(name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
    assert!(name.contains("_..-ev-il---x-_unknown_sess-1_0"), "{name}");
    // Same second, same session and channel: a second file, never an overwrite.
    let again = Recorder::create(&fx.root(), &h).unwrap();
    assert_ne!(again.path(), rec.path());
}

#[test]
fn deferred_create_writes_only_the_header_before_write_pending() {
    let fx = Fixture::new();
    let mut rec = Recorder::create_deferred(&fx.root(), &header()).unwrap();
    let marker = PathBuf::from(format!("{}{OPEN_SUFFIX}", rec.path().display()));
    // The marker is the file's second name, from the start.
    let (a, b) = (
        std::fs::metadata(&marker).unwrap(),
        std::fs::metadata(rec.path()).unwrap(),
    );
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
    let header_only = std::fs::read_to_string(rec.path()).unwrap();
    assert_eq!(header_only.lines().count(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(&header_only).unwrap()["version"],
        2
    );
    rec.output(b"early output\n").unwrap();
    assert_eq!(std::fs::read_to_string(rec.path()).unwrap(), header_only);
    rec.write_pending().unwrap();
    let (head, events) = parse(rec.path());
    assert_eq!(head["version"], 2);
    assert_eq!(output_of(&events), "early output\n");
    let sealed = rec.finish(Some(0), &fx.audit).unwrap();
    assert!(!marker.exists());
    assert_eq!(sealed.events, 2);
    fx.verify().unwrap();
}

#[test]
fn unwritable_root_fails_create() {
    let fx = Fixture::new();
    let root = fx.root();
    std::fs::write(&root, b"a file, not a directory").unwrap();
    assert!(Recorder::create(&root, &header()).is_err());
}

#[test]
fn recovery_cuts_marks_and_seals() {
    let fx = Fixture::new();
    let mut rec = fx.recorder();
    rec.output(b"before the crash\n").unwrap();
    rec.marker("cmd: sleep 100").unwrap();
    let path = rec.path().to_path_buf();
    drop(rec); // like a kill: buffered events reach the file, no seal
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"[9.5, \"o\", \"half a li").unwrap();
    drop(f);

    let repaired = recover_unsealed(&fx.root(), &fx.audit).unwrap();
    assert_eq!(repaired, std::slice::from_ref(&path));
    let (_, events) = parse(&path);
    assert_eq!(output_of(&events), "before the crash\n");
    let last = events.last().unwrap();
    assert_eq!(
        (last.1.as_str(), last.2.as_str()),
        ("m", recover::TRUNCATED_MARKER)
    );
    assert!(last.0 >= events[events.len() - 2].0);
    let seal = audit::export(fx.audit.path(), None)
        .unwrap()
        .last()
        .unwrap()
        .unwrap();
    assert_eq!(seal.fields["recovered"], true);
    assert_eq!(seal.fields["events"], 3);
    assert_eq!(seal.fields["session_id"], "sess-1");
    assert_eq!(fx.verify().unwrap().recordings, 1);
    // Nothing left to recover.
    assert!(recover_unsealed(&fx.root(), &fx.audit).unwrap().is_empty());
}

#[test]
fn recovery_restores_a_lost_header_from_an_old_style_marker() {
    let fx = Fixture::new();
    let rec = fx.recorder();
    let (path, marker) = (rec.path().to_path_buf(), rec.open_marker.clone());
    drop(rec);
    // Earlier versions kept the header's copy in a marker file of its own.
    let header_line = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&marker).unwrap();
    std::fs::write(&marker, header_line).unwrap();
    std::fs::write(&path, b"{\"version\": 2, \"wid").unwrap();
    recover_unsealed(&fx.root(), &fx.audit).unwrap();
    let (header, events) = parse(&path);
    assert_eq!(header["gatehouse"]["session_id"], "sess-1");
    assert_eq!(events.len(), 1);
    assert!(fx.verify().is_ok());
}

#[test]
fn recovery_after_a_crash_between_seal_and_marker_removal() {
    let fx = Fixture::new();
    let mut rec = fx.recorder();
    rec.output(b"done\n").unwrap();
    let (path, marker) = (rec.path().to_path_buf(), rec.open_marker.clone());
    rec.finish(Some(0), &fx.audit).unwrap();
    std::fs::hard_link(&path, &marker).unwrap();
    assert_eq!(recover_unsealed(&fx.root(), &fx.audit).unwrap().len(), 1);
    // The later (recovered) seal is the one the file must match.
    assert_eq!(fx.verify().unwrap().recordings, 1);
}

#[test]
fn recovery_drops_a_marker_without_a_file() {
    let fx = Fixture::new();
    let day = fx.root().join("2025-01-01");
    std::fs::create_dir_all(&day).unwrap();
    std::fs::write(day.join("x.cast.open"), b"{}").unwrap();
    assert!(recover_unsealed(&fx.root(), &fx.audit).unwrap().is_empty());
    assert!(!day.join("x.cast.open").exists());
    assert_eq!(fx.audit.head().seq, 0);
    // A missing root is not an error.
    assert!(recover_unsealed(&fx.dir.path().join("none"), &fx.audit)
        .unwrap()
        .is_empty());
}

/// Every file under `root`'s day directories.
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for day in std::fs::read_dir(root).unwrap() {
        for f in std::fs::read_dir(day.unwrap().path()).unwrap() {
            files.push(f.unwrap().path());
        }
    }
    files.sort();
    files
}

#[test]
fn a_reservation_dropped_unstarted_leaves_no_files() {
    let fx = Fixture::new();
    let h = header();
    let reservation = Reservation::claim(&fx.root(), &h.name(), None).unwrap();
    let claimed = files_under(&fx.root());
    let names: Vec<_> = claimed
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names[0].ends_with(".cast") && names[1] == format!("{}.open", names[0]));
    drop(reservation);
    assert!(files_under(&fx.root()).is_empty());
}

#[test]
fn a_started_reservation_records_like_a_created_recorder() {
    let fx = Fixture::new();
    let h = header();
    let reservation = Reservation::claim(&fx.root(), &h.name(), None).unwrap();
    let mut rec = reservation.start(&h).unwrap();
    // The header is in the file at once (recovery's copy), under both names.
    let marker = std::fs::read_to_string(&rec.open_marker).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&marker).unwrap()["title"],
        "uname -a"
    );
    assert_eq!(std::fs::read_to_string(rec.path()).unwrap(), marker);
    rec.output(b"Linux\n").unwrap();
    let path = rec.path().to_path_buf();
    rec.finish(Some(0), &fx.audit).unwrap();
    let (header, events) = parse(&path);
    assert_eq!(header["gatehouse"]["session_id"], "sess-1");
    assert_eq!(output_of(&events), "Linux\n");
    assert_eq!(files_under(&fx.root()), vec![path]);
    assert_eq!(fx.verify().unwrap().recordings, 1);
}

#[test]
fn recovery_removes_a_reservation_a_crash_left_unstarted() {
    let fx = Fixture::new();
    let h = header();
    let reservation = Reservation::claim(&fx.root(), &h.name(), None).unwrap();
    std::mem::forget(reservation); // like a kill: the files stay, empty
    assert_eq!(files_under(&fx.root()).len(), 2);
    assert!(recover_unsealed(&fx.root(), &fx.audit).unwrap().is_empty());
    assert!(files_under(&fx.root()).is_empty());
    assert_eq!(fx.audit.head().seq, 0);
}

#[test]
fn recovery_reads_the_session_from_the_file_when_the_marker_lost_its_header() {
    let fx = Fixture::new();
    let mut rec = fx.recorder();
    rec.output(b"partial\n").unwrap();
    let (path, marker) = (rec.path().to_path_buf(), rec.open_marker.clone());
    drop(rec);
    // A marker of its own, as earlier versions made them, whose header copy a power cut lost.
    std::fs::remove_file(&marker).unwrap();
    std::fs::write(&marker, b"").unwrap();
    assert_eq!(
        recover_unsealed(&fx.root(), &fx.audit).unwrap(),
        vec![path.clone()]
    );
    let seal = audit::export(fx.audit.path(), None)
        .unwrap()
        .last()
        .unwrap()
        .unwrap();
    assert_eq!(seal.fields["session_id"], "sess-1");
    assert_eq!(output_of(&parse(&path).1), "partial\n");
    assert!(fx.verify().is_ok());
}

#[test]
fn recovery_writes_a_bare_header_when_no_copy_survived() {
    let fx = Fixture::new();
    let rec = fx.recorder();
    let (path, marker) = (rec.path().to_path_buf(), rec.open_marker.clone());
    drop(rec);
    // A power cut that kept only part of the header (under both names: one file).
    std::fs::write(&path, b"{\"version\": 2, \"wid").unwrap();
    assert_eq!(std::fs::read(&marker).unwrap(), b"{\"version\": 2, \"wid");
    recover_unsealed(&fx.root(), &fx.audit).unwrap();
    let (header, events) = parse(&path);
    assert_eq!(header["version"], 2);
    assert_eq!(events.len(), 1);
    assert!(fx.verify().is_ok());
}
