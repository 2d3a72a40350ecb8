use super::*;
use std::path::Path;

/// A gatehouse exec recording: bare `\n` output, markers, exit status.
const EXEC: &str = concat!(
    r#"{"version":2,"width":80,"height":24,"timestamp":1748772000,"title":"deploy","env":{"TERM":"dumb"},"gatehouse":{"session_id":"s1","identity":"agent-7","serial":3,"target":"web-1","upstream_user":"deploy","client":"127.0.0.1:4000","channel":0,"pty":false}}"#,
    "\n",
    r#"[0.100000,"m","cmd: make build"]"#,
    "\n",
    r#"[0.200000,"m","allow rule build"]"#,
    "\n",
    r#"[0.500000,"o","compiling\nlinking\n"]"#,
    "\n",
    r#"[1.000000,"m","cmd: systemctl restart app"]"#,
    "\n",
    r#"[1.100000,"m","held ABCD1234 rule restart: needs review"]"#,
    "\n",
    r#"[301.000000,"m","approved by alice"]"#,
    "\n",
    r#"[301.500000,"o","restarted app\n"]"#,
    "\n",
    r#"[302.000000,"m","exit 0"]"#,
    "\n",
    r#"[302.000000,"x","0"]"#,
    "\n",
);

fn app(text: &str) -> ReplayApp {
    ReplayApp::from_cast(Cast::parse(Path::new("t.cast"), text.as_bytes()).unwrap())
}

fn rows(app: &ReplayApp) -> Vec<String> {
    app.screen_text().lines().map(str::to_string).collect()
}

#[test]
fn parses_header_events_markers_and_exit() {
    let cast = Cast::parse(Path::new("t.cast"), EXEC.as_bytes()).unwrap();
    assert_eq!(cast.header.width, 80);
    assert_eq!(cast.header.gatehouse.as_ref().unwrap().identity, "agent-7");
    assert!(cast.needs_crlf());
    assert_eq!(cast.exit_status(), Some(0));
    assert!(!cast.truncated);
    let summary = cast.summary();
    assert_eq!(summary.identity, "agent-7");
    assert_eq!(summary.target, "web-1");
    assert_eq!(summary.started, "2025-06-01 10:00:00");
    assert_eq!(summary.decision, "allow,held,approved");
    assert_eq!(summary.exit, Some(0));
}

#[test]
fn idle_gaps_are_compressed_and_markers_jump() {
    let mut app = app(EXEC);
    // 300 s waiting for approval become 2 s.
    assert!(app.duration().as_secs_f64() < 5.0, "{:?}", app.duration());
    assert_eq!(app.markers().len(), 6);
    app.jump_marker(true);
    assert_eq!(app.current_marker().unwrap().label, "cmd: make build");
    assert!(!app.is_playing(), "jumping to a marker pauses");
    app.handle_input(b"nn");
    assert_eq!(
        app.current_marker().unwrap().label,
        "cmd: systemctl restart app"
    );
    // Output before the marker is on screen, each line from column 0.
    assert_eq!(rows(&app).get(..2).unwrap(), ["compiling", "linking"]);
    assert!(!app.screen_text().contains("restarted"));
    app.handle_input(b"nn");
    assert_eq!(app.current_marker().unwrap().label, "approved by alice");
    app.handle_input(b"n");
    assert_eq!(app.current_marker().unwrap().label, "exit 0");
    assert!(app.screen_text().contains("restarted app"));
    // Back to the start of the first command: screen rebuilt from the start.
    app.handle_input(b"ppppp");
    assert_eq!(app.current_marker().unwrap().label, "cmd: make build");
    assert!(!app.screen_text().contains("compiling"));
    let frame = app_frame(&mut app);
    assert!(frame.contains("cmd: make build"), "{frame}");
    assert!(frame.contains("exit 0"), "{frame}");
}

fn app_frame(app: &mut ReplayApp) -> String {
    app.resize(80, 24);
    let mut term = vt100::Parser::new(24, 80, 0);
    term.process(&app.render());
    term.screen().contents()
}

#[test]
fn playback_follows_ticks_and_speed() {
    let mut app = app(EXEC);
    let t0 = Instant::now();
    app.tick(t0);
    app.tick(t0 + Duration::from_millis(600));
    assert!(app.screen_text().contains("linking"));
    app.handle_input(b" ");
    app.tick(t0 + Duration::from_secs(10));
    assert!(!app.screen_text().contains("restarted"), "paused");
    app.handle_input(b" ");
    for _ in 0..10 {
        app.handle_input(b"+");
    }
    assert_eq!(app.speed_factor(), 16.0);
    for _ in 0..10 {
        app.handle_input(b"-");
    }
    assert_eq!(app.speed_factor(), 0.25);
    app.set_speed_index(usize::MAX);
    assert_eq!(app.speed_factor(), 16.0);
    app.tick(t0 + Duration::from_secs(11));
    assert!(app.screen_text().contains("restarted app"));
    assert!(!app.is_playing(), "stops at the end");
    assert!(app_frame(&mut app).contains("ended, exit 0"));
}

#[test]
fn seek_keys_move_by_five_and_thirty_seconds() {
    let long = concat!(
        r#"{"version":2,"width":40,"height":10,"idle_time_limit":100}"#,
        "\n",
        r#"[1.0,"o","one\r\n"]"#,
        "\n",
        r#"[40.0,"o","two\r\n"]"#,
        "\n",
        r#"[80.0,"o","three\r\n"]"#,
        "\n",
    );
    let mut app = app(long);
    app.handle_input(b"\x1b[C");
    assert_eq!(app.position().as_secs(), 5);
    assert!(app.screen_text().contains("one") && !app.screen_text().contains("two"));
    app.handle_input(b"\x1b[6~\x1b[B");
    assert_eq!(app.position().as_secs(), 65);
    assert!(app.screen_text().contains("two") && !app.screen_text().contains("three"));
    app.handle_input(b"\x1b[A");
    assert_eq!(app.position().as_secs(), 35);
    assert!(!app.screen_text().contains("two"));
    app.handle_input(b"\x1b[D\x1b[D\x1b[5~");
    assert_eq!(app.position().as_secs(), 0);
    app.handle_input(b"\x1b[F");
    assert!(app.screen_text().contains("three"));
}

#[test]
fn search_finds_output_and_next_match() {
    let text = concat!(
        r#"{"version":2,"width":40,"height":10,"idle_time_limit":100}"#,
        "\n",
        r#"[1.0,"o","\u001b[31mERROR\u001b[0m: disk\r\n"]"#,
        "\n",
        r#"[10.0,"o","ok\r\n"]"#,
        "\n",
        r#"[20.0,"o","error again\r\n"]"#,
        "\n",
    );
    let mut app = app(text);
    app.handle_input(b"/error");
    assert!(app_frame(&mut app).contains("search: error"));
    app.handle_input(b"\r");
    assert_eq!(app.position().as_secs(), 1);
    assert!(app.screen_text().contains("ERROR: disk"));
    app.handle_input(b"N");
    assert_eq!(app.position().as_secs(), 20);
    app.handle_input(b"N");
    assert!(app_frame(&mut app).contains("no more matches"));
}

#[test]
fn truncated_file_plays_to_the_cut_and_says_so() {
    let cut = &EXEC[..EXEC.find("restarted app").unwrap()];
    let mut app = app(cut);
    assert!(app.is_truncated());
    assert_eq!(app.exit_status(), None);
    app.handle_input(b"\x1b[F");
    assert!(app.screen_text().contains("linking"));
    let frame = app_frame(&mut app);
    assert!(frame.contains("truncated"), "{frame}");
    // A recovered file says so with a marker.
    let recovered = format!(
        "{}{}\n",
        &EXEC[..EXEC.find("[301.0").unwrap()],
        r#"[2.0,"m","truncated: gatehouse restarted"]"#
    );
    assert!(app_for(&recovered).is_truncated());
}

fn app_for(text: &str) -> ReplayApp {
    app(text)
}

#[test]
fn bad_headers_are_errors_and_bad_lines_are_skipped() {
    let err = Cast::parse(Path::new("x.cast"), b"").unwrap_err();
    assert!(matches!(err, ReplayError::Empty { .. }));
    let err = Cast::parse(Path::new("x.cast"), b"{\"version\":3}\n").unwrap_err();
    assert!(err.to_string().contains("version 3"), "{err}");
    let err = Cast::parse(Path::new("x.cast"), b"not json\n").unwrap_err();
    assert!(matches!(err, ReplayError::Header { .. }));
    let cast = Cast::parse(
        Path::new("x.cast"),
        b"{\"version\":2,\"width\":10,\"height\":5}\n[1,\"o\",\"a\"]\ngarbage\n[2,\"q\",\"?\"]\n[3,\"r\",\"20x6\"]\n",
    )
    .unwrap();
    assert_eq!(cast.skipped, 1);
    assert!(!cast.truncated);
    assert_eq!(cast.events.len(), 2);
    let mut app = ReplayApp::from_cast(cast);
    app.seek(10.0);
    assert_eq!(app.player.screen().size(), (6, 20));
    assert!(matches!(
        ReplayApp::open(Path::new("/nonexistent/x.cast")),
        Err(ReplayError::Io { .. })
    ));
}

#[test]
fn marker_pane_help_and_small_screens() {
    let mut app = app(EXEC);
    app.handle_input(b"m");
    let frame = app_frame(&mut app);
    assert!(frame.contains("markers (n/p)"), "{frame}");
    assert!(frame.contains("held ABCD1234"), "{frame}");
    app.handle_input(b"?");
    assert!(app_frame(&mut app).contains("next / previous marker"));
    for (c, r) in [(120, 40), (40, 10), (10, 3), (1, 1), (9, 2)] {
        app.resize(c, r);
        let _ = app.render();
    }
    assert_eq!(app.handle_input(b"x"), vec![]);
    assert_eq!(app.handle_input(b"q"), vec![Action::Quit]);
}

#[test]
fn tall_recording_shows_the_rows_around_the_cursor() {
    let mut text = String::from(r#"{"version":2,"width":80,"height":50}"#);
    text.push('\n');
    for i in 0..45 {
        text.push_str(&format!("[{}.0,\"o\",\"line {i}\\r\\n\"]\n", i / 10));
    }
    let mut app = app(&text);
    app.seek(100.0);
    let frame = app_frame(&mut app);
    assert!(frame.contains("line 44"), "{frame}");
    assert!(!frame.contains("line 3\n"), "{frame}");
}

#[test]
fn open_limited_cuts_a_long_file_and_says_where() {
    let dir = std::env::temp_dir().join(format!("gatehouse-tui-limit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("long.cast");
    std::fs::write(&file, EXEC).unwrap();
    let limit = EXEC.find("restarted app").unwrap() as u64;
    let cast = Cast::open_limited(&file, limit).unwrap();
    assert!(cast.truncated);
    assert_eq!(cast.read_limit, Some(limit));
    assert_eq!(cast.exit_status(), None);
    let mut app = ReplayApp::from_cast(cast);
    app.resize(100, 24);
    let frame = app_frame(&mut app);
    assert!(frame.contains("truncated: first"), "{frame}");
    // Within the bound the file is read whole.
    let whole = Cast::open_limited(&file, EXEC.len() as u64).unwrap();
    assert!(!whole.truncated);
    assert_eq!(whole.read_limit, None);
    assert_eq!(whole.exit_status(), Some(0));

    // The list row reads the head for decisions and the tail for the exit status.
    let item = summarize_limited(&file, 700, 200).unwrap();
    assert_eq!(item.identity, "agent-7");
    assert!(item.decision.starts_with("allow"), "{item:?}");
    assert_eq!(item.exit, Some(0));
    let cut = dir.join("cut.cast");
    std::fs::write(&cut, &EXEC[..EXEC.find("[302.0").unwrap()]).unwrap();
    assert_eq!(summarize_limited(&cut, 700, 200).unwrap().exit, None);
    std::fs::remove_dir_all(&dir).unwrap();
}
