use super::*;
use crate::model::{LiveSession, RecordingItem};
use std::path::PathBuf;
use std::time::Duration;

fn item(id: &str, command: &str) -> PendingItem {
    PendingItem {
        id: id.to_string(),
        requester: "agent-7".to_string(),
        target: "web-1".to_string(),
        command: command.to_string(),
        highlight: Some((0, 9)),
        rule: "restart-services".to_string(),
        reason: "restarts need a reviewer".to_string(),
        age_secs: 5,
        approvals: 0,
        approvals_required: 1,
        normalized: vec![
            "systemctl restart nginx".to_string(),
            "echo done".to_string(),
        ],
    }
}

/// What a real terminal shows after the console's bytes: checks the ANSI path too.
fn terminal_text(app: &mut ConsoleApp) -> String {
    let (cols, rows) = app.size;
    let mut term = vt100::Parser::new(rows, cols, 0);
    term.process(crate::enter_screen());
    term.process(&app.render());
    term.screen().contents()
}

fn recordings() -> Vec<RecordingItem> {
    vec![
        RecordingItem {
            path: PathBuf::from("/r/2025-06-01/a.cast"),
            identity: "agent-7".into(),
            target: "web-1".into(),
            started: "2025-06-01 10:00:00".into(),
            decision: "allow".into(),
            exit: Some(0),
        },
        RecordingItem {
            path: PathBuf::from("/r/2025-06-02/b.cast"),
            identity: "ci-bot".into(),
            target: "db-1".into(),
            started: "2025-06-02 11:00:00".into(),
            decision: "held,denied".into(),
            exit: Some(126),
        },
    ]
}

#[test]
fn pending_list_shows_id_command_rule_and_approvals() {
    let mut app = ConsoleApp::new((80, 24));
    app.set_pending(vec![item(
        "ABCD1234",
        "systemctl restart nginx && echo done",
    )]);
    let text = terminal_text(&mut app);
    assert!(text.contains("1 Pending (1)"), "{text}");
    assert!(text.contains("ABCD1234 agent-7 → web-1"), "{text}");
    assert!(
        text.contains("$ systemctl restart nginx && echo done"),
        "{text}"
    );
    assert!(
        text.contains("rule restart-services: restarts need a reviewer"),
        "{text}"
    );
    assert!(text.contains("approvals 0/1"), "{text}");
    assert!(text.contains("5s ago"), "{text}");
}

#[test]
fn highlight_is_drawn_in_its_own_style() {
    let mut app = ConsoleApp::new((80, 24));
    app.set_pending(vec![item("ABCD1234", "systemctl restart nginx")]);
    let bytes = app.render();
    let mut term = vt100::Parser::new(24, 80, 0);
    term.process(&bytes);
    let screen = term.screen();
    let row = (0..24)
        .find(|&r| screen.contents_between(r, 0, r, 80).contains("$ systemctl"))
        .unwrap();
    let col = screen
        .contents_between(row, 0, row, 80)
        .find("systemctl")
        .unwrap() as u16;
    let hit = screen.cell(row, col).unwrap();
    let after = screen.cell(row, col + 10).unwrap();
    assert_ne!(
        hit.bgcolor(),
        after.bgcolor(),
        "the matched part stands out"
    );
}

#[test]
fn new_requests_show_without_a_keypress_and_ages_follow_ticks() {
    let mut app = ConsoleApp::new((80, 24));
    let t0 = Instant::now();
    app.tick(t0);
    let _ = app.render();
    app.set_pending(vec![item("QWER5678", "reboot")]);
    app.tick(t0 + Duration::from_secs(65));
    let text = terminal_text(&mut app);
    assert!(text.contains("QWER5678"), "{text}");
    assert!(text.contains("1m ago"), "{text}");
    // Nothing changed: nothing to write.
    assert!(app.render().is_empty());
}

#[test]
fn detail_shows_full_command_and_normalized_commands() {
    let mut app = ConsoleApp::new((80, 24));
    app.set_pending(vec![item(
        "ABCD1234",
        "sh -c 'systemctl restart nginx; echo done'",
    )]);
    assert!(app.handle_input(b"\r").is_empty());
    let text = app.screen_text();
    assert!(text.contains("request detail"), "{text}");
    assert!(
        text.contains("sh -c 'systemctl restart nginx; echo done'"),
        "{text}"
    );
    assert!(text.contains("Commands that will run"), "{text}");
    assert!(text.contains("1. systemctl restart nginx"), "{text}");
    assert!(text.contains("2. echo done"), "{text}");
    // Esc goes back to the list.
    app.handle_input(b"\x1b");
    assert!(!app.screen_text().contains("request detail"));
}

#[test]
fn approve_flow_returns_the_action_with_the_comment() {
    let mut app = ConsoleApp::new((80, 24));
    app.set_pending(vec![
        item("AAAA1111", "ls"),
        item("BBBB2222", "systemctl restart x"),
    ]);
    app.handle_input(b"\x1b[B");
    assert!(app.handle_input(b"a").is_empty());
    let text = app.screen_text();
    assert!(text.contains("Approve BBBB2222"), "{text}");
    assert!(app.handle_input(b"looks fine").is_empty());
    assert!(app.screen_text().contains("comment: looks fine"));
    let actions = app.handle_input(b"\r");
    assert_eq!(
        actions,
        vec![Action::Approve {
            id: "BBBB2222".into(),
            comment: Some("looks fine".into())
        }]
    );
    app.notice("approved BBBB2222");
    assert!(app.screen_text().contains("approved BBBB2222"));
}

#[test]
fn deny_from_detail_without_comment_and_cancel() {
    let mut app = ConsoleApp::new((80, 24));
    app.set_pending(vec![item("AAAA1111", "rm -rf /tmp/x")]);
    app.handle_input(b"\rd");
    assert!(app.screen_text().contains("Deny AAAA1111"));
    // Esc returns to the detail view, not the list.
    app.handle_input(b"\x1b");
    assert!(app.screen_text().contains("request detail"));
    let actions = app.handle_input(b"d\r");
    assert_eq!(
        actions,
        vec![Action::Deny {
            id: "AAAA1111".into(),
            comment: None
        }]
    );
}

#[test]
fn selection_follows_the_request_and_detail_closes_when_it_is_gone() {
    let mut app = ConsoleApp::new((80, 24));
    app.set_pending(vec![item("AAAA1111", "a"), item("BBBB2222", "b")]);
    app.handle_input(b"j");
    // A new request arrives at the front: BBBB2222 stays selected.
    app.set_pending(vec![
        item("CCCC3333", "c"),
        item("AAAA1111", "a"),
        item("BBBB2222", "b"),
    ]);
    app.handle_input(b"\r");
    assert!(
        app.screen_text().contains("request      BBBB2222")
            || app.screen_text().contains("BBBB2222")
    );
    assert!(matches!(&app.mode, Mode::Detail { id } if id == "BBBB2222"));
    app.set_pending(vec![item("CCCC3333", "c")]);
    let text = app.screen_text();
    assert!(text.contains("BBBB2222 is no longer pending"), "{text}");
    assert_eq!(app.mode, Mode::List);
}

#[test]
fn help_screen_and_quit() {
    let mut app = ConsoleApp::new((80, 24));
    app.handle_input(b"?");
    let text = app.screen_text();
    assert!(text.contains("help"), "{text}");
    assert!(text.contains("approve / deny"), "{text}");
    app.handle_input(b"x");
    assert!(!app.screen_text().contains("approve / deny"));
    assert_eq!(app.handle_input(b"q"), vec![Action::Quit]);
    assert_eq!(app.handle_input(b"\x03"), vec![Action::Quit]);
    assert_eq!(app.handle_input(b"r"), vec![Action::Refresh]);
}

#[test]
fn sessions_and_recordings_with_filters() {
    let mut app = ConsoleApp::new((80, 24));
    app.set_sessions(vec![LiveSession {
        session_id: "s-1".into(),
        identity: "agent-7".into(),
        target: "web-1".into(),
        client: "10.0.0.5:5555".into(),
        command: "tail -f /var/log/syslog".into(),
        age_secs: 30,
        started: "2025-06-01 09:59:30".into(),
        decision: "allow".into(),
    }]);
    app.set_recordings(recordings());
    app.handle_input(b"\t");
    let text = app.screen_text();
    assert!(text.contains("tail -f /var/log/syslog"), "{text}");
    assert!(text.contains("agent-7"), "{text}");

    app.handle_input(b"\t");
    let text = app.screen_text();
    assert!(text.contains("2025-06-01 10:00:00"), "{text}");
    assert!(text.contains("ci-bot"), "{text}");

    app.handle_input(b"fdecision:denied\r");
    let text = app.screen_text();
    assert!(text.contains("ci-bot"), "{text}");
    assert!(!text.contains("2025-06-01 10:00:00"), "{text}");
    assert!(text.contains("1 of 2"), "{text}");
    assert_eq!(
        app.handle_input(b"\r"),
        vec![Action::OpenRecording(PathBuf::from("/r/2025-06-02/b.cast"))]
    );

    app.handle_input(b"c");
    app.handle_input(b"fdate:2025-06-01 target:web\r");
    let text = app.screen_text();
    assert!(text.contains("agent-7"), "{text}");
    assert!(!text.contains("ci-bot"), "{text}");
    app.handle_input(b"fidentity:nobody\r");
    assert!(app.screen_text().contains("No recordings match"));
    assert!(app.handle_input(b"\r").is_empty());
}

#[test]
fn resize_to_large_and_tiny_screens_does_not_panic() {
    let mut app = ConsoleApp::new((80, 24));
    app.set_pending(vec![item("ABCD1234", &"x".repeat(300))]);
    app.set_recordings(recordings());
    for (cols, rows) in [(120, 40), (40, 10), (1, 1), (19, 4), (20, 5), (80, 24)] {
        app.resize(cols, rows);
        for keys in [
            &b""[..],
            b"\r",
            b"a",
            b"\x1b\x1b",
            b"?",
            b"x",
            b"\t\t",
            b"f",
            b"zz",
            b"\r",
            b"\t",
        ] {
            app.handle_input(keys);
            let _ = app.render();
            let _ = app.screen_text();
        }
    }
    app.resize(120, 40);
    app.mode = Mode::List;
    app.tab = Tab::Pending;
    let text = terminal_text(&mut app);
    assert!(text.contains("ABCD1234"), "{text}");
}

#[test]
fn bad_highlight_and_control_characters_are_harmless() {
    let mut app = ConsoleApp::new((80, 24));
    let mut it = item("ABCD1234", "echo é\x1b[2J; ls");
    it.highlight = Some((6, 7)); // inside the two-byte é
    app.set_pending(vec![it]);
    let text = terminal_text(&mut app);
    assert!(text.contains("echo é^[[2J; ls"), "{text}");
}

#[test]
fn replay_inside_the_console_closes_back_to_the_list() {
    let cast = crate::replay::Cast::parse(
        std::path::Path::new("x.cast"),
        b"{\"version\":2,\"width\":80,\"height\":24}\n[0.5,\"o\",\"hello from replay\\r\\n\"]\n",
    )
    .unwrap();
    let mut app = ConsoleApp::new((80, 24));
    app.show_replay(crate::ReplayApp::from_cast(cast));
    assert!(app.wants_fast_ticks());
    let t0 = Instant::now();
    app.tick(t0);
    app.tick(t0 + Duration::from_secs(1));
    assert!(terminal_text(&mut app).contains("hello from replay"));
    assert!(
        app.handle_input(b"q").is_empty(),
        "q closes the replay, not the console"
    );
    assert!(!app.replay_open());
    assert!(terminal_text(&mut app).contains("1 Pending"));
}

#[test]
fn ctrl_c_in_the_replay_quits_the_console() {
    let cast = crate::replay::Cast::parse(
        std::path::Path::new("x.cast"),
        b"{\"version\":2,\"width\":80,\"height\":24}\n[0.5,\"o\",\"hi\\r\\n\"]\n",
    )
    .unwrap();
    let mut app = ConsoleApp::new((80, 24));
    app.show_replay(crate::ReplayApp::from_cast(cast));
    assert_eq!(app.handle_input(b"\x03"), vec![Action::Quit]);
}

#[test]
fn sessions_filter_by_date_and_decision() {
    let session = |id: &str, started: &str, decision: &str| LiveSession {
        session_id: id.into(),
        identity: "agent-7".into(),
        target: "web-1".into(),
        client: "127.0.0.1:1".into(),
        command: format!("run-{id}"),
        age_secs: 1,
        started: started.into(),
        decision: decision.into(),
    };
    let mut app = ConsoleApp::new((100, 24));
    app.set_sessions(vec![
        session("s1", "2025-06-01 10:00:00", "held"),
        session("s2", "2025-06-02 10:00:00", "allow"),
    ]);
    app.handle_input(b"2");
    let text = app.screen_text();
    assert!(text.contains("run-s1") && text.contains("run-s2"), "{text}");
    assert!(text.contains("decision"), "{text}");
    app.handle_input(b"fdecision:held\r");
    let text = app.screen_text();
    assert!(
        text.contains("run-s1") && !text.contains("run-s2"),
        "{text}"
    );
    assert!(text.contains("1 of 2"), "{text}");
    app.handle_input(b"c");
    app.handle_input(b"fdate:2025-06-02\r");
    let text = app.screen_text();
    assert!(
        !text.contains("run-s1") && text.contains("run-s2"),
        "{text}"
    );
}
