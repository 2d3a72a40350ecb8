//! tracing setup: human-readable text by default, one JSON object per line with `--log-format json`.
//! Logs go to stderr; `RUST_LOG` filters them (default `info`).
//!
//! The servers (`serve`, `demo`) hand their lines to a thread of their own through a bounded
//! queue ([`QUEUED_LINES`]). A line is formatted where it is logged, but the write to stderr
//! happens elsewhere: stderr is often a pipe (systemd, a container runtime, `2>&1 | tee`), and a
//! reader that stops reading would otherwise block every task that logs, the data path's
//! included, once the pipe's buffer is full. Lines that find the queue full are dropped and
//! counted: the count is in `/metrics` (`gatehouse_log_lines_dropped_total`) and in a last
//! line at exit (queued like the others). The audit log, not this log, is the record that must
//! not lose anything. One-shot commands write straight to stderr, so their lines and their
//! error stay in order.

use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Log lines waiting for the log thread at most; past this a line is dropped and counted.
/// Lines are short (a few hundred bytes; a command line is cut to 1,024 characters, the
/// audit log has it whole), so a full queue holds a few MiB.
pub const QUEUED_LINES: usize = 4_096;

/// How log lines are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where log lines are written from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogWriter {
    /// From the thread that logs, straight to stderr.
    Direct,
    /// From a log thread of its own, through a bounded queue that drops what overflows.
    Background,
}

/// Lines dropped by the background writer, once there is one.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped so far because stderr was not read fast enough (0 with
/// [`LogWriter::Direct`]).
pub fn dropped_lines() -> usize {
    DROPPED.get().map_or(0, ErrorCounter::dropped_lines)
}

/// Keeps the log thread until dropped, when it reports lines that were dropped and writes
/// what is queued (waiting about a second at most for a stalled reader). Hold it until the
/// process is about to exit.
#[must_use]
pub struct LogGuard(Option<WorkerGuard>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        // Through the queue like every other line: writing to a stderr nobody reads would
        // block the exit for good.
        let dropped = dropped_lines();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "log lines were dropped: stderr was not read fast enough"
            );
        }
        drop(self.0.take());
    }
}

/// Installs the global subscriber; a second call installs nothing (and starts no thread).
pub fn init(format: LogFormat, writer: LogWriter) -> LogGuard {
    if tracing::dispatcher::has_been_set() {
        return LogGuard(None);
    }
    match writer {
        LogWriter::Direct => {
            install(format, std::io::stderr);
            LogGuard(None)
        }
        LogWriter::Background => {
            let (queue, guard) = NonBlockingBuilder::default()
                .buffered_lines_limit(QUEUED_LINES)
                .lossy(true)
                .thread_name("gatehouse-log")
                .finish(std::io::stderr());
            let _ = DROPPED.set(queue.error_counter());
            install(format, queue);
            LogGuard(Some(guard))
        }
    }
}

fn install<W>(format: LogFormat, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
