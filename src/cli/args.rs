//! The client subcommands' flags (`presque push`, `pop`, ..., `work`), parsed by clap as
//! part of [`crate::Cli`], so completions and the man page include them.

use std::ffi::OsString;

/// Where the server is, and the token to show it.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The server's address.
    #[arg(
        long,
        value_name = "URL",
        env = "PRESQUE_URL",
        default_value = "http://127.0.0.1:5000"
    )]
    pub url: String,
    /// Bearer token, when the server has auth on (better in PRESQUE_TOKEN: a command
    /// line is visible to every user of the machine).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PRESQUE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// `presque push QUEUE [JSON|-]`.
#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The queue.
    pub queue: String,
    /// The job, as JSON text; `-` or nothing: one job per line of stdin, sent in
    /// batches (blank lines are skipped).
    #[arg(value_name = "JSON|-")]
    pub job: Option<String>,
    /// Jobs per request when reading stdin.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
}

/// `presque pop QUEUE`.
#[derive(Debug, Clone, clap::Args)]
pub struct PopArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The queue.
    pub queue: String,
    /// Seconds to wait for a job when none is ready (a long-poll).
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<f64>,
    /// Lease the job for this many seconds instead of taking it for good; its id and
    /// delivery token are printed on stderr (or in the JSON with --json), for ack/fail.
    #[arg(long, value_name = "SECONDS")]
    pub lease: Option<f64>,
    /// Print {"id":..,"lease":..,"job":..} (id and lease with --lease) instead of the
    /// job alone.
    #[arg(long)]
    pub json: bool,
}

/// `presque ack QUEUE ID --lease TOKEN`.
#[derive(Debug, Clone, clap::Args)]
pub struct AckArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The queue.
    pub queue: String,
    /// The job's id.
    pub id: u64,
    /// The delivery token `pop --lease` printed.
    #[arg(long, value_name = "TOKEN")]
    pub lease: String,
}

/// `presque fail QUEUE ID --lease TOKEN [--reason TEXT]`.
#[derive(Debug, Clone, clap::Args)]
pub struct FailArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The queue.
    pub queue: String,
    /// The job's id.
    pub id: u64,
    /// The delivery token `pop --lease` printed.
    #[arg(long, value_name = "TOKEN")]
    pub lease: String,
    /// Why it failed (kept with the job; the server keeps the first 1,000 characters).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// `presque stats [QUEUE]`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// One queue; without it, every queue.
    pub queue: Option<String>,
    /// JSON for scripts: one object for a queue, an array for all of them.
    #[arg(long)]
    pub json: bool,
}

/// What `presque dead QUEUE` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DeadAction {
    /// Show the dead letters.
    #[default]
    List,
    /// Put them back at the tail, attempts reset.
    Retry,
    /// Delete them.
    Purge,
}

/// `presque dead QUEUE [list|retry|purge]`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeadArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The queue.
    pub queue: String,
    /// What to do with its dead letters.
    #[arg(value_enum, default_value_t = DeadAction::List)]
    pub action: DeadAction,
    /// Only this job.
    #[arg(long, value_name = "ID")]
    pub id: Option<u64>,
    /// JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Open or close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ControlAction {
    /// Fetches are allowed again.
    Open,
    /// Fetches are refused (404 queue is closed); pushes are still accepted.
    Close,
    /// Say whether the queue is open.
    Status,
}

/// `presque control QUEUE open|close|status`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControlArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The queue.
    pub queue: String,
    /// What to do.
    #[arg(value_enum)]
    pub action: ControlAction,
}

/// `presque watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Seconds between refreshes.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub interval: f64,
    /// Print one view, without clearing the screen, and exit.
    #[arg(long)]
    pub once: bool,
}

/// `presque work QUEUE -- COMMAND [ARGS]`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The queue to take jobs from.
    pub queue: String,
    /// The worker's id (registered on the queue); default HOSTNAME-PID.
    #[arg(long, value_name = "ID")]
    pub worker_id: Option<String>,
    /// Seconds each job is leased for; extended every third of it while the command
    /// runs.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub lease: f64,
    /// Seconds a fetch waits for a job (at most the server's max_wait_secs).
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0)]
    pub wait: f64,
    /// Commands run at once.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Seconds running commands get to finish after SIGTERM or SIGINT; then they are
    /// killed and their jobs reported failed.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub grace: f64,
    /// The command and its arguments: run once per job, the job on its stdin.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}
