use std::io::Write;
use std::sync::Arc;

use serde_json::json;

use super::*;

fn log_in(dir: &tempfile::TempDir) -> (PathBuf, AuditLog) {
    let path = dir.path().join("audit/audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    (path, log)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn three_records(dir: &tempfile::TempDir) -> PathBuf {
    let (path, log) = log_in(dir);
    log.append("auth.success", json!({"identity": "alice", "serial": 7}))
        .unwrap();
    log.append("decision", json!({"rule": "deny-rm", "decision": "deny"}))
        .unwrap();
    log.append("session.end", json!({"session_id": "s1"}))
        .unwrap();
    path
}

#[test]
fn chain_links_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (path, log) = log_in(&dir);
    let first = log
        .append("auth.success", json!({"identity": "alice"}))
        .unwrap();
    assert_eq!(first.seq, 1);
    let second = log.append("session.start", Value::Null).unwrap();
    assert_eq!(second.seq, 2);
    let stored = lines(&path);
    let r1: Value = serde_json::from_str(&stored[0]).unwrap();
    let r2: Value = serde_json::from_str(&stored[1]).unwrap();
    assert_eq!(r1["prev"], GENESIS);
    assert_eq!(r2["prev"], r1["hash"]);
    assert_eq!(r2["hash"], second.hash.as_str());
    assert_eq!(r1["identity"], "alice");
    let report = verify(&path, None).unwrap();
    assert_eq!(report.records, 2);
    assert_eq!(report.head, second);
    assert!(!report.incomplete_tail);
    assert_eq!(head(&path).unwrap(), second);
    assert_eq!(log.head(), second);
}

#[test]
fn stored_body_is_canonical_json() {
    let dir = tempfile::tempdir().unwrap();
    let (path, log) = log_in(&dir);
    log.append(
        "x",
        json!({"zeta": {"b": 1, "a": [true, null]}, "alpha": "é\n"}),
    )
    .unwrap();
    let line = &lines(&path)[0];
    let (body, _) = line.split_at(line.find(",\"hash\"").unwrap());
    let mut v: Value = serde_json::from_str(&format!("{body}}}")).unwrap();
    assert_eq!(format!("{body}}}"), canonical_json(&v));
    assert!(body.starts_with("{\"alpha\":\"é\\n\",\"kind\":\"x\",\"prev\":"));
    assert!(body.contains("\"zeta\":{\"a\":[true,null],\"b\":1}"));
    assert!(!body.contains(' '));
    v.as_object_mut().unwrap().remove("alpha");
    assert!(!canonical_json(&v).contains("alpha"));
}

#[test]
fn reopen_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = three_records(&dir);
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.head().seq, 3);
    assert_eq!(log.append("after", json!({})).unwrap().seq, 4);
    assert_eq!(verify(&path, None).unwrap().records, 4);
}

#[test]
fn second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _log) = log_in(&dir);
    assert!(matches!(
        AuditLog::open(&path),
        Err(AuditError::Locked { .. })
    ));
}

#[test]
fn rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, log) = log_in(&dir);
    assert!(matches!(
        log.append("Bad Kind", json!({})),
        Err(AuditError::InvalidKind(_))
    ));
    assert!(matches!(
        log.append("k", json!([1])),
        Err(AuditError::NotAnObject(_))
    ));
    assert!(matches!(
        log.append("k", json!({"hash": "x"})),
        Err(AuditError::ReservedField(_))
    ));
    assert_eq!(log.head().seq, 0);
}

#[test]
fn torn_final_line_is_cut_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = three_records(&dir);
    let good_len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"kind\":\"half")
        .unwrap();
    // A reader beside a writer sees the torn line as in progress, not as tampering.
    let report = verify(&path, None).unwrap();
    assert_eq!(report.records, 3);
    assert!(report.incomplete_tail);
    assert_eq!(head(&path).unwrap().seq, 3);

    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.head().seq, 4);
    let stored = lines(&path);
    assert_eq!(stored.len(), 4);
    let rec: Value = serde_json::from_str(&stored[3]).unwrap();
    assert_eq!(rec["kind"], "audit.recovered");
    assert_eq!(rec["truncated_bytes"], 13);
    assert!(std::fs::metadata(&path).unwrap().len() > good_len);
    assert!(!verify(&path, None).unwrap().incomplete_tail);
}

#[test]
fn damaged_last_complete_record_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = three_records(&dir);
    let mut stored = lines(&path);
    stored[2] = stored[2].replace("s1", "s2");
    write_lines(&path, &stored);
    assert!(matches!(
        AuditLog::open(&path),
        Err(AuditError::CorruptTail { .. })
    ));
}

fn broken_seq(path: &Path) -> u64 {
    match verify(path, None) {
        Err(VerifyError::Record { seq, .. }) => seq,
        other => panic!("expected a broken record, got {other:?}"),
    }
}

#[test]
fn verify_detects_an_edited_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = three_records(&dir);
    let mut stored = lines(&path);
    stored[1] = stored[1].replace("deny-rm", "deny-rn");
    write_lines(&path, &stored);
    assert_eq!(broken_seq(&path), 2);
    let err = verify(&path, None).unwrap_err().to_string();
    assert!(err.contains("edited"), "{err}");
}

#[test]
fn verify_detects_a_rehashed_edit() {
    // An editor who recomputes the edited record's own hash still breaks the next link.
    let dir = tempfile::tempdir().unwrap();
    let path = three_records(&dir);
    let mut stored = lines(&path);
    let mut v: Value = serde_json::from_str(&stored[0]).unwrap();
    let obj = v.as_object_mut().unwrap();
    obj.remove("hash");
    obj.insert("identity".into(), json!("mallory"));
    let body = canonical_json(&v);
    stored[0] = seal_line(&body, &record_hash(1, GENESIS, body.as_bytes()))
        .trim_end()
        .to_string();
    write_lines(&path, &stored);
    assert_eq!(broken_seq(&path), 2);
}

#[test]
fn verify_detects_a_deleted_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = three_records(&dir);
    let mut stored = lines(&path);
    stored.remove(1);
    write_lines(&path, &stored);
    assert_eq!(broken_seq(&path), 2);
}

#[test]
fn verify_detects_reordered_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = three_records(&dir);
    let mut stored = lines(&path);
    stored.swap(1, 2);
    write_lines(&path, &stored);
    assert_eq!(broken_seq(&path), 2);
}

#[test]
fn verify_checks_sealed_recordings() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rec");
    std::fs::create_dir_all(root.join("2025-01-01")).unwrap();
    let file = root.join("2025-01-01/a.cast");
    std::fs::write(&file, b"{\"version\":2}\n").unwrap();
    let (size, sha256) = read::hash_file(&file).unwrap();
    let (path, log) = log_in(&dir);
    log.append(
        "recording.sealed",
        json!({"path": "2025-01-01/a.cast", "size": size, "sha256": sha256}),
    )
    .unwrap();
    assert_eq!(verify(&path, Some(&root)).unwrap().recordings, 1);

    std::fs::write(&file, b"{\"version\":3}\n").unwrap();
    let err = verify(&path, Some(&root)).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Recording { seq: 1, path, .. } if path == "2025-01-01/a.cast"),
        "{err}"
    );
    std::fs::remove_file(&file).unwrap();
    assert!(matches!(
        verify(&path, Some(&root)),
        Err(VerifyError::Recording { .. })
    ));
    // Without a root only the chain is checked.
    assert!(verify(&path, None).is_ok());
}

#[test]
fn seal_paths_must_stay_under_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let (path, log) = log_in(&dir);
    log.append(
        "recording.sealed",
        json!({"path": "../etc/passwd", "size": 1, "sha256": GENESIS}),
    )
    .unwrap();
    assert!(matches!(
        verify(&path, Some(dir.path())),
        Err(VerifyError::Recording { .. })
    ));
}

#[test]
fn export_filters_by_time_and_stops_at_a_break() {
    let dir = tempfile::tempdir().unwrap();
    let path = three_records(&dir);
    let all: Vec<AuditRecord> = export(&path, None).unwrap().map(Result::unwrap).collect();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].kind, "auth.success");
    assert_eq!(all[0].fields["identity"], "alice");
    assert!(!all[0].fields.contains_key("seq"));
    let future = Utc::now() + chrono::Duration::hours(1);
    assert_eq!(export(&path, Some(future)).unwrap().count(), 0);
    let since = all[1].ts;
    assert!(export(&path, Some(since))
        .unwrap()
        .all(|r| r.unwrap().ts >= since));

    let mut stored = lines(&path);
    stored.remove(0);
    write_lines(&path, &stored);
    let results: Vec<_> = export(&path, None).unwrap().collect();
    assert_eq!(results.len(), 1);
    assert!(results[0].is_err());
}

#[test]
fn concurrent_appends_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (path, log) = log_in(&dir);
    let log = Arc::new(log);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..25 {
                    log.append("test.event", json!({"thread": t, "i": i}))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = verify(&path, None).unwrap();
    assert_eq!(report.records, 200);
    assert_eq!(report.head, log.head());
}

#[test]
fn tail_reader_handles_long_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (path, log) = log_in(&dir);
    log.append("big", json!({"reason": "x".repeat(300_000)}))
        .unwrap();
    let last = log
        .append("big", json!({"reason": "y".repeat(200_000)}))
        .unwrap();
    drop(log);
    assert_eq!(head(&path).unwrap(), last);
    assert_eq!(AuditLog::open(&path).unwrap().head(), last);
}

#[test]
fn empty_log_head_is_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _log) = log_in(&dir);
    assert_eq!(head(&path).unwrap(), AuditHead::genesis());
    assert_eq!(verify(&path, None).unwrap().records, 0);
}

#[test]
fn a_written_record_is_in_the_chain_before_its_flush_and_one_flush_serves_many() {
    let dir = tempfile::tempdir().unwrap();
    let (path, log) = log_in(&dir);
    let first = log
        .write("command.decision", json!({"decision": "allow"}))
        .unwrap();
    let second = log
        .write("command.decision", json!({"decision": "deny"}))
        .unwrap();
    // Both are in the file and chained, as a reader sees them, before any flush.
    assert_eq!(lines(&path).len(), 2);
    assert_eq!(verify(&path, None).unwrap().head, second.head);
    assert_eq!(log.flusher.lock().unwrap().synced, 0);
    // Flushing the later one covers the earlier: its own flush finds nothing left to do.
    log.sync_through(&second).unwrap();
    let file_len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(log.flusher.lock().unwrap().synced, file_len);
    assert!(first.end < second.end);
    log.sync_through(&first).unwrap();
    // `append` still returns a record only once it is flushed.
    let third = log.append("session.end", Value::Null).unwrap();
    assert_eq!(third.seq, 3);
    assert_eq!(
        log.flusher.lock().unwrap().synced,
        std::fs::metadata(&path).unwrap().len()
    );
}

#[test]
fn a_poisoned_log_refuses_unflushed_records_but_not_flushed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, log) = log_in(&dir);
    let flushed = log
        .append("auth.success", json!({"identity": "a"}))
        .unwrap();
    let flushed = WrittenRecord {
        end: log.lock().len,
        head: flushed,
    };
    let pending = log.write("command.decision", Value::Null).unwrap();
    log.poison();
    assert!(matches!(
        log.sync_through(&pending),
        Err(AuditError::Poisoned { .. })
    ));
    assert!(log.sync_through(&flushed).is_ok());
    assert!(matches!(
        log.write("session.end", Value::Null),
        Err(AuditError::Poisoned { .. })
    ));
}
