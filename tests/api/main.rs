//! Integration tests: the real server, started on port 0 with a temporary data
//! directory (or the real binary as a child process), spoken to over HTTP.

mod batch;
mod concurrency;
mod delivery;
mod disk;
mod errors;
// The child-process harness, shared with the benches.
#[path = "../harness/mod.rs"]
mod harness;
mod helpers;
mod model;
mod persistence;
mod process;
mod queue;
mod status;
mod workers;
