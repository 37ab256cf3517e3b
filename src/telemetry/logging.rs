//! Logs: `tracing` events written to stderr, one line each, as text or
//! JSON (`--log-format`), filtered by `--log-level`.
//!
//! Every event carries its whole human-readable line as its message, and
//! the same facts as structured fields. The text format prints a timestamp,
//! the level and the message only (the fields would repeat it); the JSON
//! format prints one object per line with the timestamp, the level, the
//! message and every field. So a text line reads as it did before logs went
//! through `tracing`, with a time and a level in front:
//!
//! ```text
//! 2026-05-02T09:14:03.512345Z  INFO sipshard 0.1.0: stateless proxy listening on 127.0.0.1:5060 (udp), ...
//! ```
//!
//! # What is logged
//! Start-up (the banner with every effective setting and the backend
//! chosen, warnings, the registrar and state-directory recovery line, the
//! metrics address), the periodic stats line, bans and dropped datagrams
//! (each at most once a second per shard, see [`crate::shard::drop_log`]),
//! and the exit line with the counters. Nothing is logged per message.
//!
//! # Who writes
//! The thread that logs formats its line (a shard only at most once a
//! second per reason) and hands it to a writer thread through a bounded
//! queue: a shard never makes a system call or waits for stderr to log
//! (ARCHITECTURE.md: logs leave the hot path). When the queue is full
//! (stderr blocked), lines are dropped, not waited for.
//!
//! # Start-up and exit lines are always written
//! The events of target [`LIFECYCLE`] (the banner and the other start-up
//! settings, the metrics address, the exit line) pass whatever
//! `--log-level` says: supervisors and scripts read the bound port from the
//! banner and the final counters from the exit line, and a quieter level
//! must not take those away. `--log-level` filters everything else.

use std::fmt;
use std::io;

use tracing::field::{Field, Visit};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::filter::{FilterFn, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::cli::{LogFormat, LogLevel};

/// The target of the start-up and exit lines, which every level lets
/// through.
pub const LIFECYCLE: &str = "sipshard::lifecycle";

impl LogLevel {
    /// The `tracing` filter for this level.
    pub fn filter(self) -> LevelFilter {
        match self {
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Trace => LevelFilter::TRACE,
        }
    }
}

/// Whether an event or span with `meta` is written at `level`.
pub fn enabled(level: LevelFilter, meta: &Metadata<'_>) -> bool {
    meta.target() == LIFECYCLE || *meta.level() <= level
}

/// Lines waiting for the writer thread at most; beyond that (stderr
/// blocked, a reader that went away) new lines are dropped rather than
/// stalling a shard. 4096 lines of a few hundred bytes: about 1 MiB.
pub const BUFFERED_LINES: usize = 4096;

/// Keeps the writer thread; dropping it writes out what is queued (waiting
/// at most about a second).
pub type LogGuard = tracing_appender::non_blocking::WorkerGuard;

/// Installs the process-wide subscriber: stderr, `format`, `level`. Lines
/// are formatted by the thread that logs and written by a thread of their
/// own, so a shard never waits on stderr. Keep the guard until exit. Fails
/// only if a subscriber is installed already.
pub fn init(
    level: LogLevel,
    format: LogFormat,
) -> Result<LogGuard, tracing::subscriber::SetGlobalDefaultError> {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .lossy(true)
        .thread_name("log")
        .finish(io::stderr());
    let level = level.filter();
    // The lifecycle lines are INFO: the hint must let INFO through even
    // when the level is lower, or their callsites would be switched off.
    let hint = level.max(LevelFilter::INFO);
    let filter = FilterFn::new(move |meta| enabled(level, meta)).with_max_level_hint(hint);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false)
        // A closed stderr (a supervisor that went away) must not turn into
        // a panic: the layer's own report of a failed write would go to
        // stderr through `eprintln!`, which panics when that fails.
        .log_internal_errors(false);
    let layer = match format {
        LogFormat::Text => layer.event_format(Text).boxed(),
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(false)
            .boxed(),
    };
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(filter));
    tracing::subscriber::set_global_default(subscriber)?;
    Ok(guard)
}

/// The text format: `TIMESTAMP LEVEL MESSAGE`, fields left out (the
/// message holds them).
pub struct Text;

impl<S, N> FormatEvent<S, N> for Text
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        SystemTime.format_time(&mut writer)?;
        write!(writer, " {:>5} ", event.metadata().level())?;
        let mut message = MessageOnly {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut message);
        message.result?;
        writeln!(writer)
    }
}

/// A visitor that writes the `message` field and nothing else.
struct MessageOnly<'w, 'o> {
    out: &'w mut Writer<'o>,
    result: fmt::Result,
}

impl Visit for MessageOnly<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.result = self.out.write_str(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `format_args!` messages arrive here; their Debug is their text.
        if field.name() == "message" {
            self.result = write!(self.out, "{value:?}");
        }
    }
}

/// Capturing what the subscriber would write, for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    /// A writer that keeps what it is given.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// What `f` logs on this thread at `level`, as text or JSON lines.
    pub(crate) fn capture(level: LevelFilter, json: bool, f: impl FnOnce()) -> String {
        let out = Captured::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(out.clone())
            .with_ansi(false);
        let layer = if json {
            layer.json().flatten_event(true).with_target(false).boxed()
        } else {
            layer.event_format(Text).boxed()
        };
        let filter = FilterFn::new(move |meta| enabled(level, meta));
        let sub = tracing_subscriber::registry().with(layer.with_filter(filter));
        tracing::subscriber::with_default(sub, f);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::testing::capture;
    use super::*;

    #[test]
    fn text_lines_are_time_level_and_the_message_alone() {
        let text = capture(LevelFilter::INFO, false, || {
            tracing::info!(listen = "127.0.0.1:5060", "sipshard: hello {}", 42);
            tracing::debug!("not at info");
        });
        let line = text.lines().next().unwrap();
        let (time, rest) = line.split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.contains('T'), "{line}");
        assert_eq!(rest, " INFO sipshard: hello 42");
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn json_lines_hold_the_message_and_the_fields() {
        let text = capture(LevelFilter::INFO, true, || {
            tracing::warn!(shards = 2u64, io = "mmsg", "sipshard: x");
        });
        let line = text.lines().next().unwrap();
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
        assert!(line.contains(r#""message":"sipshard: x""#), "{line}");
        assert!(line.contains(r#""shards":2"#), "{line}");
        assert!(line.contains(r#""io":"mmsg""#), "{line}");
        assert!(line.contains(r#""level":"WARN""#), "{line}");
    }

    #[test]
    fn lifecycle_lines_pass_every_level() {
        let text = capture(LevelFilter::ERROR, false, || {
            tracing::info!(target: LIFECYCLE, "sipshard: banner");
            tracing::info!("sipshard: stats");
            tracing::warn!("sipshard: warning");
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("banner"));
    }
}
