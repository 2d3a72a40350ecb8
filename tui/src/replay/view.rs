//! Draws the replay view: title bar, the recorded terminal, the marker pane, the progress line
//! and the status line; the help overlay on top.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Clear, List, ListItem, ListState, Paragraph, StatefulWidget, Widget, Wrap,
};

use super::ReplayApp;

/// Marker pane width, when the screen is wide enough to spare it.
const MARKER_PANE: u16 = 34;

pub(super) fn draw(app: &ReplayApp, area: Rect, buf: &mut Buffer) {
    if area.height < 3 || area.width < 10 {
        Paragraph::new("replay: screen too small").render(area, buf);
        return;
    }
    let title = Rect { height: 1, ..area };
    let status = Rect {
        y: area.bottom() - 1,
        height: 1,
        ..area
    };
    let progress = Rect {
        y: area.bottom() - 2,
        height: 1,
        ..area
    };
    let mut body = Rect {
        y: area.y + 1,
        height: area.height - 3,
        ..area
    };
    draw_title(app, title, buf);
    if app.show_markers && body.width >= MARKER_PANE + 20 {
        let pane = Rect {
            x: body.right() - MARKER_PANE,
            width: MARKER_PANE,
            ..body
        };
        body.width -= MARKER_PANE;
        draw_markers(app, pane, buf);
    }
    draw_terminal(app.player.screen(), body, buf);
    draw_progress(app, progress, buf);
    draw_status(app, status, buf);
    if app.show_help {
        draw_help(area, buf);
    }
}

fn draw_title(app: &ReplayApp, area: Rect, buf: &mut Buffer) {
    let bar = Style::default().add_modifier(Modifier::REVERSED);
    let mut left = vec![Span::styled(" replay ", bar.add_modifier(Modifier::BOLD))];
    let header = &app.cast.header;
    if let Some(g) = &header.gatehouse {
        left.push(Span::styled(
            format!(" {} → {} ", g.identity, g.target),
            bar,
        ));
    }
    let title = header
        .title
        .clone()
        .unwrap_or_else(|| app.cast.path.display().to_string());
    left.push(Span::styled(format!(" {title}"), bar));
    let mut right = Vec::new();
    if app.cast.truncated {
        let label = match app.cast.read_limit {
            Some(limit) => format!(" truncated: first {} ", size_text(limit)),
            None => " truncated ".to_string(),
        };
        right.push(Span::styled(
            label,
            Style::default().fg(Color::Black).bg(Color::Yellow),
        ));
    }
    if app.cast.skipped > 0 {
        right.push(Span::styled(
            format!(" {} bad lines skipped ", app.cast.skipped),
            bar,
        ));
    }
    right.push(Span::styled(
        match app.exit_status() {
            Some(s) => format!(" exit {s} "),
            None => " exit ? ".to_string(),
        },
        bar.add_modifier(Modifier::BOLD),
    ));
    buf.set_style(area, bar);
    let right_width: u16 = right.iter().map(|s| s.width() as u16).sum();
    let left_area = Rect {
        width: area.width.saturating_sub(right_width),
        ..area
    };
    buf.set_line(left_area.x, left_area.y, &Line::from(left), left_area.width);
    let x = area.right().saturating_sub(right_width);
    buf.set_line(x, area.y, &Line::from(right), right_width);
}

/// `32 MiB`, `512 KiB`, `100 B`.
fn size_text(bytes: u64) -> String {
    match bytes {
        0..=1023 => format!("{bytes} B"),
        1024..=1_048_575 => format!("{} KiB", bytes / 1024),
        _ => format!("{} MiB", bytes / 1_048_576),
    }
}

/// Copies the emulated screen into `area`. When the recording is taller than the area, the
/// rows around the cursor are shown (that is where the action is); wider is cut on the right.
fn draw_terminal(screen: &vt100::Screen, area: Rect, buf: &mut Buffer) {
    let (rows, cols) = screen.size();
    let (cursor_row, _) = screen.cursor_position();
    let offset = if rows > area.height {
        cursor_row
            .saturating_add(1)
            .saturating_sub(area.height)
            .min(rows - area.height)
    } else {
        0
    };
    for dy in 0..area.height.min(rows) {
        for dx in 0..area.width.min(cols) {
            let Some(cell) = screen.cell(dy + offset, dx) else {
                continue;
            };
            if cell.is_wide_continuation() || !cell.has_contents() {
                if let Some(out) = buf.cell_mut((area.x + dx, area.y + dy)) {
                    out.set_style(cell_style(cell));
                }
                continue;
            }
            if cell.is_wide() && dx + 1 >= area.width.min(cols) {
                continue;
            }
            if let Some(out) = buf.cell_mut((area.x + dx, area.y + dy)) {
                out.set_symbol(cell.contents()).set_style(cell_style(cell));
            }
        }
    }
}

fn cell_style(cell: &vt100::Cell) -> Style {
    let mut style = Style::default()
        .fg(color(cell.fgcolor()))
        .bg(color(cell.bgcolor()));
    for (on, m) in [
        (cell.bold(), Modifier::BOLD),
        (cell.dim(), Modifier::DIM),
        (cell.italic(), Modifier::ITALIC),
        (cell.underline(), Modifier::UNDERLINED),
        (cell.inverse(), Modifier::REVERSED),
    ] {
        if on {
            style = style.add_modifier(m);
        }
    }
    style
}

fn color(c: vt100::Color) -> Color {
    match c {
        vt100::Color::Default => Color::Reset,
        vt100::Color::Idx(i) => Color::Indexed(i),
        vt100::Color::Rgb(r, g, b) => Color::Rgb(r, g, b),
    }
}

fn draw_markers(app: &ReplayApp, area: Rect, buf: &mut Buffer) {
    let items: Vec<ListItem> = app
        .player
        .markers
        .iter()
        .map(|m| ListItem::new(format!("{} {}", clock(m.time), m.label)))
        .collect();
    let mut state = ListState::default().with_selected(app.player.current_marker());
    let list = List::new(items)
        .block(
            Block::default()
                .borders(Borders::LEFT)
                .title(" markers (n/p) "),
        )
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    Clear.render(area, buf);
    StatefulWidget::render(list, area, buf, &mut state);
}

fn draw_progress(app: &ReplayApp, area: Rect, buf: &mut Buffer) {
    let state = if app.playing { "▶" } else { "⏸" };
    let speed = app.speed_factor();
    let speed = if speed < 1.0 {
        format!("{speed}×")
    } else {
        format!("{speed:.0}×")
    };
    let text = format!(
        " {state} {} / {}  {speed} ",
        clock(app.player.pos),
        clock(app.player.duration)
    );
    let width = text.chars().count() as u16;
    buf.set_string(
        area.x,
        area.y,
        &text,
        Style::default().add_modifier(Modifier::BOLD),
    );
    let bar_width = area.width.saturating_sub(width + 1);
    if bar_width > 0 {
        let ratio = if app.player.duration > 0.0 {
            (app.player.pos / app.player.duration).clamp(0.0, 1.0)
        } else {
            1.0
        };
        let filled = (f64::from(bar_width) * ratio).round() as u16;
        let bar: String = (0..bar_width)
            .map(|i| if i < filled { '━' } else { '─' })
            .collect();
        buf.set_string(
            area.x + width,
            area.y,
            bar,
            Style::default().fg(Color::Cyan),
        );
    }
}

fn draw_status(app: &ReplayApp, area: Rect, buf: &mut Buffer) {
    let line = if let Some(text) = &app.prompt {
        Line::from(vec![
            Span::styled("search: ", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(format!("{text}▏")),
            Span::styled(
                "  Enter find · Esc cancel",
                Style::default().add_modifier(Modifier::DIM),
            ),
        ])
    } else {
        let mut spans = Vec::new();
        if let Some(msg) = &app.message {
            spans.push(Span::styled(
                format!("{msg}  "),
                Style::default().fg(Color::Yellow),
            ));
        }
        if let Some(m) = app.current_marker() {
            spans.push(Span::styled(
                format!("▸ {}  ", m.label),
                Style::default().add_modifier(Modifier::BOLD),
            ));
        }
        if app.player.at_end() && !app.playing {
            spans.push(Span::raw(match app.exit_status() {
                Some(s) => format!("ended, exit {s}  "),
                None => "ended  ".to_string(),
            }));
        }
        spans.push(Span::styled(
            "space ←→ ↑↓ n/p m / ? q",
            Style::default().add_modifier(Modifier::DIM),
        ));
        Line::from(spans)
    };
    buf.set_line(area.x, area.y, &line, area.width);
}

fn draw_help(area: Rect, buf: &mut Buffer) {
    let lines = [
        "space      play / pause",
        "+ -        speed 0.25× … 16×",
        "← →        back / forward 5 s",
        "↑ ↓ PgUp PgDn  back / forward 30 s",
        "Home End   start / end",
        "n p        next / previous marker",
        "m          marker list",
        "/ text     search the output; N next match",
        "q Esc      close",
        "",
        "Pauses longer than 2 s are shortened.",
    ];
    let width = 46.min(area.width);
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    Clear.render(popup, buf);
    Paragraph::new(lines.iter().map(|l| Line::from(*l)).collect::<Vec<_>>())
        .wrap(Wrap { trim: false })
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" replay help (any key) "),
        )
        .render(popup, buf);
}

/// `m:ss.d`, or `h:mm:ss` past an hour.
pub(crate) fn clock(secs: f64) -> String {
    let secs = secs.max(0.0);
    let whole = secs as u64;
    if whole >= 3600 {
        format!(
            "{}:{:02}:{:02}",
            whole / 3600,
            whole % 3600 / 60,
            whole % 60
        )
    } else {
        let tenths = ((secs - whole as f64) * 10.0) as u64 % 10;
        format!("{}:{:02}.{tenths}", whole / 60, whole % 60)
    }
}
