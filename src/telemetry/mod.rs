//! Logging: one `tracing` subscriber for the whole process, writing to stderr as text
//! or JSON lines (`[log] format`), filtered by `RUST_LOG` (default `info`, with actix'
//! own start-up chatter turned down).

mod access_lines;

use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::http::access::TARGET as ACCESS_TARGET;
use crate::settings::LogFormat;
use access_lines::AccessLines;

/// The filter used when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,actix_server=warn,actix_web=warn";

/// Installs the global subscriber writing text. Safe to call more than once (later
/// calls do nothing), which tests rely on.
pub fn init() {
    init_as(LogFormat::Text);
}

/// Installs the global subscriber writing `format`. The first call in a process wins;
/// later ones do nothing.
pub fn init_as(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let general = fmt::layer().with_writer(std::io::stderr);
    let general = match format {
        LogFormat::Text => general
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        // One object per line, fields flattened beside `message`, for log shippers.
        LogFormat::Json => general
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed(),
    };
    // Access lines have a writer of their own (`access_lines`): one per request is
    // too many for the general formatter.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(general.with_filter(filter_fn(|m| m.target() != ACCESS_TARGET)))
        .with(AccessLines::new(format).with_filter(filter_fn(|m| m.target() == ACCESS_TARGET)))
        .try_init();
}

/// Writes out what the logging still buffers (access lines): before the process
/// exits.
pub fn flush() {
    access_lines::flush();
}
