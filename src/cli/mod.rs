//! The client side of the binary: `presque push`, `pop`, `ack`, `fail`, `stats`,
//! `dead`, `control`, `watch` and `work`, each a few calls of the `presque-client`
//! library against `--url`.
//!
//! Exit codes a script can rely on: [`EXIT_OK`], [`EXIT_ERROR`], 2 for bad usage
//! (clap's), [`EXIT_NO_JOB`].

mod args;
mod commands;
mod table;
mod watch;
mod work;

use std::io::Write as _;
use std::process::ExitCode;

pub use args::{
    AckArgs, Connection, ControlAction, ControlArgs, DeadAction, DeadArgs, FailArgs, PopArgs,
    PushArgs, StatsArgs, WatchArgs, WorkArgs,
};

use crate::settings::Command;

/// Done.
pub const EXIT_OK: u8 = 0;
/// The server refused, could not be reached, or the output could not be written.
pub const EXIT_ERROR: u8 = 1;
/// `pop` found no job (after its `--wait`).
pub const EXIT_NO_JOB: u8 = 3;

/// What a client command ends with, other than success.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Client(#[from] presque_client::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Usage(String),
    /// A bulk push stopped part way: says which lines went in and which did not.
    #[error("{0}")]
    Partial(String),
    /// Not an error to print: `pop` found nothing.
    #[error("no job")]
    NoJob,
}

/// Runs a client subcommand; `None` if `command` is not one (the server, completions,
/// the man page).
pub async fn run(command: &Command) -> Option<ExitCode> {
    let done = match command {
        Command::Push(args) => commands::push(args).await,
        Command::Pop(args) => commands::pop(args).await,
        Command::Ack(args) => commands::ack(args).await,
        Command::Fail(args) => commands::fail(args).await,
        Command::Stats(args) => commands::stats(args).await,
        Command::Dead(args) => commands::dead(args).await,
        Command::Control(args) => commands::control(args).await,
        Command::Watch(args) => watch::watch(args).await,
        Command::Work(args) => work::work(args).await,
        Command::Serve | Command::Completions { .. } | Command::Man => return None,
    };
    Some(ExitCode::from(match done {
        Ok(()) => EXIT_OK,
        Err(CliError::NoJob) => EXIT_NO_JOB,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "presque: {e}");
            EXIT_ERROR
        }
    }))
}

/// The client for `--url` and `--token`.
fn client(connection: &Connection) -> presque_client::Client {
    let client = presque_client::Client::new(&connection.url);
    match &connection.token {
        Some(token) => client.with_token(token),
        None => client,
    }
}
