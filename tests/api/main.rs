//! Integration tests: the real server, started on port 0 with a temporary data
//! directory (or the real binary as a child process), spoken to over HTTP.

// A failed unwrap is a failed test, SKIPPED notes go to stderr, and the disk and crash
// tests reach the OS directly (rlimits, statvfs, SIGKILL; each block says why it is
// sound): the server-only rules in Cargo.toml [lints] do not apply.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    unsafe_code
)]

mod auth;
mod batch;
mod cli;
mod client;
mod concurrency;
mod connections;
mod dashboard;
mod delivery;
mod disk;
mod errors;
mod expiry;
// The child-process harness, shared with the benches.
#[path = "../harness/mod.rs"]
mod harness;
mod health;
mod helpers;
mod leases;
mod logs;
mod memory;
mod metrics;
mod model;
mod openapi;
mod persistence;
mod polling;
mod priorities;
mod process;
mod producers;
mod queue;
mod retry;
mod schedules;
mod status;
mod strict_input;
mod workers;
