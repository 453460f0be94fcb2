//! presque: a local HTTP/JSON job queue server, wire-compatible with the 2010 Perl
//! presque, whose state lives in actors (one per queue, one worker registry).
//!
//! `main.rs` is thin on purpose: everything a test needs to start the real server on
//! port 0 is here, behind [`startup::Application`].

pub mod actors;
pub mod clock;
pub mod directory;
pub mod error;
pub mod job;
pub mod names;
pub mod queue_state;
pub mod registry_state;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod worker_counts;

pub use settings::Settings;
pub use startup::{exit_code, Application};
