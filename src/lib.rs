//! presque: a local HTTP/JSON job queue server, wire-compatible with the 2010 Perl
//! presque, whose state lives in actors (one per queue, one worker registry).
//!
//! `main.rs` is thin on purpose: everything a test needs to start the real server on
//! port 0 is here, behind [`Application`]. ARCHITECTURE.md says where each part lives.

pub mod cli;
mod clock;
mod hex;
mod http;
mod metrics;
mod names;
mod queue;
mod registry;
mod schedule;
mod settings;
mod startup;
mod storage;
pub mod telemetry;

/// A retry backoff policy, as `[retry] backoff` and `/settings/NAME` set it.
pub use queue::backoff::Backoff;
pub use settings::{Cli, Command, FsyncPolicy, LogFormat, MemoryLimit, Settings};
pub use startup::{exit_code, Application};
/// The on-disk format (log segments and snapshots), for tools and tests that read or
/// damage the files on purpose.
pub use storage::format;
