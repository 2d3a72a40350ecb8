//! Draws the console: tab bar, the current tab's list or the request detail, prompts, help,
//! and the status line. Everything fits 80×24; smaller screens get less, never a panic.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, List, ListItem, ListState, Paragraph, Row, StatefulWidget, Table,
    TableState, Widget, Wrap,
};

use super::{ConsoleApp, Mode, Tab};
use crate::model::PendingItem;

/// Below this the console only says it needs more room.
const MIN_COLS: u16 = 20;
const MIN_ROWS: u16 = 5;
/// From this width on, the sessions table also shows the client address.
const WIDE_SESSIONS: u16 = 100;

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

fn dim() -> Style {
    Style::default().add_modifier(Modifier::DIM)
}

fn selected_style() -> Style {
    Style::default()
        .add_modifier(Modifier::BOLD)
        .bg(Color::Indexed(236))
}

pub(super) fn draw(app: &ConsoleApp, area: Rect, buf: &mut Buffer) {
    if area.width < MIN_COLS || area.height < MIN_ROWS {
        Paragraph::new("gatehouse console: enlarge the window")
            .wrap(Wrap { trim: true })
            .render(area, buf);
        return;
    }
    let tabs = Rect { height: 1, ..area };
    let status = Rect {
        y: area.bottom() - 1,
        height: 1,
        ..area
    };
    let body = Rect {
        y: area.y + 1,
        height: area.height - 2,
        ..area
    };
    draw_tabs(app, tabs, buf);
    match &app.mode {
        Mode::Detail { id }
        | Mode::Comment {
            id,
            from_detail: true,
            ..
        } => match app.pending.iter().find(|p| &p.id == id) {
            Some(item) => draw_detail(app, item, body, buf),
            None => draw_tab(app, body, buf),
        },
        _ => draw_tab(app, body, buf),
    }
    if let Mode::Comment {
        approve, id, text, ..
    } = &app.mode
    {
        draw_comment(app, *approve, id, text, body, buf);
    }
    if app.mode == Mode::Help {
        draw_help(body, buf);
    }
    draw_status(app, status, buf);
}

fn draw_tab(app: &ConsoleApp, body: Rect, buf: &mut Buffer) {
    match app.tab {
        Tab::Pending => draw_pending(app, body, buf),
        Tab::Sessions => draw_sessions(app, body, buf),
        Tab::Recordings => draw_recordings(app, body, buf),
    }
}

fn draw_tabs(app: &ConsoleApp, area: Rect, buf: &mut Buffer) {
    let bar = Style::default().add_modifier(Modifier::REVERSED);
    buf.set_style(area, bar);
    let mut spans = vec![Span::styled(
        " gatehouse ",
        bar.add_modifier(Modifier::BOLD),
    )];
    let counts = [
        ("1 Pending", app.pending.len()),
        ("2 Sessions", app.sessions.len()),
        ("3 Recordings", app.recordings.len()),
    ];
    for (tab, (name, count)) in Tab::ALL.iter().zip(counts) {
        let style = if *tab == app.tab {
            Style::default().add_modifier(Modifier::BOLD)
        } else {
            bar
        };
        spans.push(Span::styled(format!(" {name} ({count}) "), style));
    }
    if let Some(who) = &app.reviewer {
        spans.push(Span::styled(format!("  {who}"), bar));
    }
    buf.set_line(area.x, area.y, &Line::from(spans), area.width);
}

/// "12s", "4m", "3h", "2d".
fn age(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// The command with the part that matched the rule highlighted.
fn command_spans(item: &PendingItem) -> Vec<Span<'static>> {
    let cmd = item.command.as_str();
    let mark = Style::default()
        .fg(Color::Black)
        .bg(Color::Yellow)
        .add_modifier(Modifier::BOLD);
    if let Some((start, end)) = item.highlight {
        if let (Some(before), Some(hit), Some(after)) =
            (cmd.get(..start), cmd.get(start..end), cmd.get(end..))
        {
            return vec![
                Span::raw(before.to_string()),
                Span::styled(hit.to_string(), mark),
                Span::raw(after.to_string()),
            ];
        }
    }
    vec![Span::raw(cmd.to_string())]
}

/// Control characters would move the reviewer's cursor: show them as `^X`/`\n` instead.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' => "⏎".to_string(),
            '\t' => "→".to_string(),
            c if c.is_control() => format!("^{}", char::from(((c as u32) & 0x1f) as u8 + b'@')),
            c => c.to_string(),
        })
        .collect()
}

fn clean(item: &PendingItem) -> PendingItem {
    // The highlight range refers to the original command: keep it only when cleaning did not
    // change any lengths.
    let command = printable(&item.command);
    let highlight = item.highlight.filter(|_| command == item.command);
    PendingItem {
        command,
        highlight,
        ..item.clone()
    }
}

fn draw_pending(app: &ConsoleApp, area: Rect, buf: &mut Buffer) {
    if app.pending.is_empty() {
        Paragraph::new(vec![
            Line::from(""),
            Line::styled("  No requests waiting for review.", bold()),
            Line::styled(
                "  New requests appear here as soon as they are held.",
                dim(),
            ),
        ])
        .render(area, buf);
        return;
    }
    let elapsed = app.elapsed(true);
    let items: Vec<ListItem> = app
        .pending
        .iter()
        .map(|item| {
            let item = clean(item);
            let head = Line::from(vec![
                Span::styled(format!("{} ", item.id), bold().fg(Color::Cyan)),
                Span::raw(format!("{} → {}", item.requester, item.target)),
                Span::styled(
                    format!(
                        "  {} ago  approvals {}/{}",
                        age(item.age_secs.saturating_add(elapsed)),
                        item.approvals,
                        item.approvals_required.max(1)
                    ),
                    dim(),
                ),
            ]);
            let mut cmd = vec![Span::styled("  $ ", dim())];
            cmd.extend(command_spans(&item));
            let rule = Line::from(vec![
                Span::styled(
                    format!("  rule {}: ", item.rule),
                    Style::default().fg(Color::Magenta),
                ),
                Span::raw(printable(&item.reason)),
            ]);
            ListItem::new(Text::from(vec![head, Line::from(cmd), rule]))
        })
        .collect();
    let mut state = ListState::default().with_selected(Some(app.selection(Tab::Pending)));
    let list = List::new(items)
        .highlight_symbol("▌")
        // Bold only: a background here would hide the highlighted part of the command.
        .highlight_style(bold());
    StatefulWidget::render(list, area, buf, &mut state);
}

fn draw_detail(app: &ConsoleApp, item: &PendingItem, area: Rect, buf: &mut Buffer) {
    let item = clean(item);
    let label = |s: &str| Span::styled(format!("{s:<11}"), bold());
    let mut lines = vec![
        Line::from(vec![
            label("request"),
            Span::styled(item.id.clone(), bold().fg(Color::Cyan)),
        ]),
        Line::from(vec![label("requester"), Span::raw(item.requester.clone())]),
        Line::from(vec![label("target"), Span::raw(item.target.clone())]),
        Line::from(vec![
            label("rule"),
            Span::styled(item.rule.clone(), Style::default().fg(Color::Magenta)),
        ]),
        Line::from(vec![label("reason"), Span::raw(printable(&item.reason))]),
        Line::from(vec![
            label("age"),
            Span::raw(format!(
                "{}   approvals {} of {}",
                age(item.age_secs.saturating_add(app.elapsed(true))),
                item.approvals,
                item.approvals_required.max(1)
            )),
        ]),
        Line::from(""),
        Line::styled("Command line", bold()),
        Line::from(command_spans(&item)),
        Line::from(""),
        Line::styled("Commands that will run", bold()),
    ];
    if item.normalized.is_empty() {
        lines.push(Line::styled("  (none found)", dim()));
    }
    for (i, cmd) in item.normalized.iter().enumerate() {
        lines.push(Line::from(format!("  {}. {}", i + 1, printable(cmd))));
    }
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(
            Block::default()
                .borders(Borders::TOP)
                .title(" request detail "),
        )
        .render(area, buf);
}

fn draw_comment(
    app: &ConsoleApp,
    approve: bool,
    id: &str,
    text: &str,
    body: Rect,
    buf: &mut Buffer,
) {
    let height = 6.min(body.height);
    let area = Rect {
        y: body.bottom() - height,
        height,
        ..body
    };
    let verb = if approve { "Approve" } else { "Deny" };
    let command = app
        .pending
        .iter()
        .find(|p| p.id == id)
        .map(|p| printable(&p.command))
        .unwrap_or_default();
    let color = if approve { Color::Green } else { Color::Red };
    Clear.render(area, buf);
    Paragraph::new(vec![
        Line::from(vec![Span::styled("$ ", dim()), Span::raw(command)]),
        Line::from(vec![
            Span::styled("comment: ", bold()),
            Span::raw(format!("{text}▏")),
        ]),
        Line::styled(
            format!(
                "Enter {} · Esc cancel · the comment is optional",
                verb.to_lowercase()
            ),
            dim(),
        ),
    ])
    .block(
        Block::default()
            .borders(Borders::ALL)
            .border_style(Style::default().fg(color))
            .title(format!(" {verb} {id} ")),
    )
    .render(area, buf);
}

fn filter_line(app: &ConsoleApp, shown: usize, total: usize) -> Line<'static> {
    if let Mode::Filter { text } = &app.mode {
        return Line::from(vec![
            Span::styled("filter: ", bold()),
            Span::raw(format!("{text}▏")),
            Span::styled("  identity: target: date: decision:", dim()),
        ]);
    }
    if app.filter.is_active() {
        Line::from(vec![
            Span::styled("filter: ", bold()),
            Span::raw(app.filter.text().to_string()),
            Span::styled(format!("  {shown} of {total} · f edit · c clear"), dim()),
        ])
    } else {
        Line::styled(
            format!("{total} · f filter (identity: target: date: decision:)"),
            dim(),
        )
    }
}

fn split_filter(area: Rect) -> (Rect, Rect) {
    let top = Rect { height: 1, ..area };
    let rest = Rect {
        y: area.y + 1,
        height: area.height.saturating_sub(1),
        ..area
    };
    (top, rest)
}

fn draw_sessions(app: &ConsoleApp, area: Rect, buf: &mut Buffer) {
    let visible = app.visible_sessions();
    let (top, rest) = split_filter(area);
    buf.set_line(
        top.x,
        top.y,
        &filter_line(app, visible.len(), app.sessions.len()),
        top.width,
    );
    if visible.is_empty() {
        Paragraph::new(Line::styled("  No live sessions.", dim())).render(rest, buf);
        return;
    }
    let elapsed = app.elapsed(false);
    let rows = visible.iter().map(|s| {
        Row::new(vec![
            Cell::from(s.identity.clone()),
            Cell::from(s.target.clone()),
            Cell::from(age(s.age_secs.saturating_add(elapsed))),
            Cell::from(s.decision.clone()),
            Cell::from(printable(&s.command)),
            Cell::from(s.client.clone()),
        ])
    });
    // The client address only when there is room: the command matters more.
    let client_width = if rest.width >= WIDE_SESSIONS { 15 } else { 0 };
    let table = Table::new(
        rows,
        [
            Constraint::Length(14),
            Constraint::Length(12),
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Fill(1),
            Constraint::Length(client_width),
        ],
    )
    .header(Row::new(["identity", "target", "age", "decision", "command", "client"]).style(bold()))
    .row_highlight_style(selected_style());
    let mut state = TableState::default().with_selected(Some(app.selection(Tab::Sessions)));
    StatefulWidget::render(table, rest, buf, &mut state);
}

fn draw_recordings(app: &ConsoleApp, area: Rect, buf: &mut Buffer) {
    let visible = app.visible_recordings();
    let (top, rest) = split_filter(area);
    buf.set_line(
        top.x,
        top.y,
        &filter_line(app, visible.len(), app.recordings.len()),
        top.width,
    );
    if visible.is_empty() {
        Paragraph::new(Line::styled("  No recordings match.", dim())).render(rest, buf);
        return;
    }
    let rows = visible.iter().map(|r| {
        Row::new(vec![
            Cell::from(r.started.clone()),
            Cell::from(r.identity.clone()),
            Cell::from(r.target.clone()),
            Cell::from(r.decision.clone()),
            Cell::from(r.exit.map(|e| e.to_string()).unwrap_or_else(|| "-".into())),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(19),
            Constraint::Fill(2),
            Constraint::Fill(1),
            Constraint::Fill(2),
            Constraint::Length(4),
        ],
    )
    .header(Row::new(["started (UTC)", "identity", "target", "decision", "exit"]).style(bold()))
    .row_highlight_style(selected_style());
    let mut state = TableState::default().with_selected(Some(app.selection(Tab::Recordings)));
    StatefulWidget::render(table, rest, buf, &mut state);
}

fn draw_help(body: Rect, buf: &mut Buffer) {
    let lines = [
        "Tab ← →     switch screen (1 2 3)",
        "↑ ↓ j k     move   PgUp PgDn Home End",
        "Enter       pending: details · recordings: replay",
        "a / d       approve / deny (asks for a comment)",
        "f  c        filter / clear (sessions, recordings)",
        "            identity:X target:X date:2025-06-01",
        "            decision:denied, or any word",
        "r           refresh      Ctrl-L redraw",
        "q           quit (Esc: back)",
    ];
    let width = 56.min(body.width);
    let height = (lines.len() as u16 + 2).min(body.height);
    let area = Rect {
        x: body.x + (body.width - width) / 2,
        y: body.y + (body.height - height) / 2,
        width,
        height,
    };
    Clear.render(area, buf);
    Paragraph::new(lines.iter().map(|l| Line::from(*l)).collect::<Vec<_>>())
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" help (any key closes) "),
        )
        .render(area, buf);
}

fn draw_status(app: &ConsoleApp, area: Rect, buf: &mut Buffer) {
    let hint = match (&app.mode, app.tab) {
        (Mode::Detail { .. }, _) => "a approve · d deny · Esc back · ? help",
        (Mode::Comment { .. }, _) => "type a comment · Enter confirm · Esc cancel",
        (Mode::Filter { .. }, _) => "type to filter · Enter keep · Esc clear",
        (Mode::Help, _) => "any key closes help",
        (_, Tab::Pending) => "Enter detail · a approve · d deny · Tab screens · ? help · q quit",
        (_, Tab::Sessions) => "f filter · Tab screens · ? help · q quit",
        (_, Tab::Recordings) => "Enter replay · f filter · Tab screens · ? help · q quit",
    };
    let line = match &app.notice {
        Some(msg) => Line::from(vec![
            Span::styled(
                format!("{msg}  "),
                Style::default()
                    .fg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
            ),
            Span::styled(hint, dim()),
        ]),
        None => Line::styled(hint, dim()),
    };
    buf.set_line(area.x, area.y, &line, area.width);
}
