//! Logging: one `tracing` subscriber for the whole process, writing to stderr as text
//! or JSON lines (`[log] format`), filtered by `RUST_LOG` (default `info`, with actix'
//! own start-up chatter turned down).

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        // One object per line, fields flattened beside `message`, for log shippers.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}
