//! Logging: one `tracing` subscriber for the whole process, filtered by `RUST_LOG`
//! (default `info`, with actix' own start-up chatter turned down).

use tracing_subscriber::EnvFilter;

/// The filter used when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,actix_server=warn,actix_web=warn";

/// Installs the global subscriber, writing to stderr. Safe to call more than once
/// (later calls do nothing), which tests rely on.
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
