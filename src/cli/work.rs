//! `presque work QUEUE -- COMMAND [ARGS]`: any executable as a worker.
//!
//! The runner registers as a worker on the queue, long-polls for jobs with a lease and
//! runs COMMAND once per job: the job's bytes on its stdin, `PRESQUE_JOB_ID`,
//! `PRESQUE_ATTEMPT` (1 for the first delivery), `PRESQUE_QUEUE` and `PRESQUE_WORKER_ID`
//! in its environment, its stdout and stderr passed through. Exit 0 acks the job; any
//! other exit (or a signal) reports it failed with the end of its stderr as the reason.
//! While the command runs, its lease is extended every third of `--lease`.
//!
//! On SIGTERM or SIGINT the runner stops fetching (a long-poll in flight is dropped; a
//! job the server handed to it at that very instant is not acked and comes back when
//! its lease runs out), waits up to `--grace` seconds for running commands, which are
//! acked or failed as usual, then kills (SIGKILL) those still running and reports
//! their jobs failed with the reason "killed: the worker stopped". It then
//! unregisters and exits 0.

use std::ffi::OsString;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use presque_client::{Client, Error as ClientError, Lease};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::args::WorkArgs;
use super::{client, CliError};

/// How much of a command's stderr is kept for its failure reason.
const STDERR_TAIL_BYTES: usize = 2048;
/// The server keeps a reason's first 1,000 characters: the runner sends at most this
/// many, the end of the tail.
const REASON_CHARS: usize = 1000;
/// Longest pause between fetches after errors.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// What a job killed at the end of the grace period is failed with.
const KILLED_REASON: &str = "killed: the worker stopped";

/// The settings every job's task needs.
struct Runner {
    client: Client,
    queue: String,
    worker_id: String,
    command: Vec<OsString>,
    lease: f64,
    /// Becomes true when running commands must be killed.
    kill: watch::Receiver<bool>,
}

pub(super) async fn work(args: &WorkArgs) -> Result<(), CliError> {
    crate::telemetry::init();
    let lease = Some(args.lease)
        .filter(|l| *l > 0.0 && *l <= 86_400.0)
        .ok_or_else(|| CliError::Usage("--lease must be more than 0, at most 86400".into()))?;
    let wait = Duration::try_from_secs_f64(args.wait)
        .map_err(|_| CliError::Usage("--wait must be a number of seconds".into()))?;
    let grace = Duration::try_from_secs_f64(args.grace)
        .map_err(|_| CliError::Usage("--grace must be a number of seconds".into()))?;
    let mut stop = Box::pin(stop_signal());
    let worker_id = args.worker_id.clone().unwrap_or_else(default_worker_id);
    let client = client(&args.connection).with_worker_id(&worker_id);
    client.register_worker(&args.queue, &worker_id).await?;
    tracing::info!(queue = %args.queue, worker_id = %worker_id, concurrency = args.concurrency, "worker registered");

    let (kill_tx, kill) = watch::channel(false);
    let runner = Arc::new(Runner {
        client: client.clone(),
        queue: args.queue.clone(),
        worker_id: worker_id.clone(),
        command: args.command.clone(),
        lease,
        kill,
    });
    let slots = Arc::new(Semaphore::new(args.concurrency as usize));
    let mut running = JoinSet::new();
    let mut backoff = Duration::ZERO;
    loop {
        // Finished jobs' tasks are reaped as we go.
        while running.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut stop => break,
        };
        let Ok(slot) = slot else { break };
        let leased = tokio::select! {
            leased = client.lease(&args.queue, lease, Some(wait)) => leased,
            () = &mut stop => break,
        };
        match leased {
            Ok(Some(job)) => {
                backoff = Duration::ZERO;
                let runner = runner.clone();
                running.spawn(async move {
                    runner.run(job).await;
                    drop(slot);
                });
            }
            Ok(None) => backoff = Duration::ZERO,
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(250), MAX_BACKOFF);
                tracing::warn!("fetch failed ({e}); retrying in {backoff:?}");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut stop => break,
                }
            }
        }
    }

    tracing::info!(
        running = running.len(),
        "stopping: no new jobs; waiting up to {grace:?} for running commands"
    );
    let finished = tokio::time::timeout(grace, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            running = running.len(),
            "grace period over: killing running commands"
        );
        let _ = kill_tx.send(true);
        while running.join_next().await.is_some() {}
    }
    if let Err(e) = client.unregister_worker(&args.queue, &worker_id).await {
        tracing::warn!("cannot unregister: {e}");
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT, whichever comes first. Listening starts at the
/// call, before the first poll, so a signal during registration is not missed.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                tracing::warn!("cannot listen for SIGTERM/SIGINT; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// HOSTNAME-PID.
fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}

/// How a command's run ended.
enum Outcome {
    Exited(std::process::ExitStatus),
    Killed,
    NotStarted(std::io::Error),
}

impl Runner {
    /// Runs the command for `job` and acks or fails it.
    async fn run(&self, job: Lease) {
        let id = job.id();
        // The lease says how many deliveries failed before this one; a server too old
        // to say is asked with a lookup.
        let failed = match job.attempts() {
            Some(failed) => Ok(failed),
            None => self
                .client
                .job(&self.queue, id)
                .await
                .map(|info| info.attempts),
        };
        let attempt = match failed {
            Ok(failed) => (failed + 1).to_string(),
            Err(e) => {
                tracing::warn!(job = %id, "cannot look the job up: {e}");
                String::new()
            }
        };
        tracing::info!(job = %id, attempt = %attempt, "running");
        let (outcome, tail) = self.execute(&job, &attempt).await;
        let reason = match &outcome {
            Outcome::Exited(status) if status.success() => None,
            Outcome::Exited(status) => Some(failure_reason(&describe(status), &tail)),
            Outcome::Killed => Some(failure_reason(KILLED_REASON, &tail)),
            Outcome::NotStarted(e) => Some(format!("cannot run the command: {e}")),
        };
        let reported = match &reason {
            None => job.ack().await.map(|()| "acked".to_owned()),
            Some(reason) => job
                .fail(Some(reason))
                .await
                .map(|info| format!("failed; the job is {}", info.state)),
        };
        match reported {
            Ok(what) => tracing::info!(job = %id, "{what}"),
            Err(ClientError::LeaseLost { .. }) => {
                tracing::warn!(job = %id, "lease lost before the result was reported: the job will be done again")
            }
            Err(e) => tracing::warn!(job = %id, "cannot report the result: {e}"),
        }
    }

    /// Runs the command with the job on stdin, extending the lease while it runs;
    /// answers how it ended and the last [`STDERR_TAIL_BYTES`] of its stderr.
    async fn execute(&self, job: &Lease, attempt: &str) -> (Outcome, Vec<u8>) {
        let Some((program, args)) = self.command.split_first() else {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command");
            return (Outcome::NotStarted(e), Vec::new());
        };
        let spawned = tokio::process::Command::new(program)
            .args(args)
            .env("PRESQUE_JOB_ID", job.id().to_string())
            .env("PRESQUE_ATTEMPT", attempt)
            .env("PRESQUE_QUEUE", &self.queue)
            .env("PRESQUE_WORKER_ID", &self.worker_id)
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C (or a signal to the worker's group)
            // is for the worker, which then lets running commands finish within the
            // grace period; and a kill at its end reaches what the command started.
            .process_group(0)
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => return (Outcome::NotStarted(e), Vec::new()),
        };
        // The job goes in while the command runs; one that never reads its stdin (or
        // exits early) is not an error.
        if let Some(mut stdin) = child.stdin.take() {
            let body = job.body().clone();
            tokio::spawn(async move {
                let _ = stdin.write_all(&body).await;
            });
        }
        let tail = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut reader = tokio::spawn(read_tail(child.stderr.take(), tail.clone()));

        let every = Duration::from_secs_f64(self.lease / 3.0);
        let mut extend = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut kill = std::pin::pin!(killed(self.kill.clone()));
        let outcome = loop {
            tokio::select! {
                status = child.wait() => break match status {
                    Ok(status) => Outcome::Exited(status),
                    Err(e) => Outcome::NotStarted(e),
                },
                _ = extend.tick() => {
                    if let Err(e) = job.extend(self.lease).await {
                        tracing::warn!(job = %job.id(), "cannot extend the lease: {e}");
                    }
                }
                () = &mut kill => {
                    if let Some(pid) = child.id() {
                        kill_group(pid);
                    }
                    let _ = child.kill().await;
                    break Outcome::Killed;
                }
            }
        };
        // What the command started may live on holding its stderr open (`cmd &`):
        // the result is not kept waiting for it (nor the lease left to run out).
        if tokio::time::timeout(STDERR_AFTER_EXIT, &mut reader)
            .await
            .is_err()
        {
            reader.abort();
        }
        let tail = tail
            .lock()
            .map(|tail| tail.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
        (outcome, tail)
    }
}

/// Returns once running commands must be killed.
async fn killed(mut kill: watch::Receiver<bool>) {
    if kill.wait_for(|kill| *kill).await.is_err() {
        // The sender outlives every job's task: never.
        std::future::pending::<()>().await;
    }
}

/// How long the command's stderr is still read once the command has ended.
const STDERR_AFTER_EXIT: Duration = Duration::from_millis(250);

/// Kills the command's whole process group (it leads one: `process_group(0)`), so
/// what it started dies with it.
#[allow(unsafe_code)] // kill(2) on a process group has no safe wrapper in std
fn kill_group(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes two integers and touches no memory of this process; a
    // negative pid names the process group, which the command leads.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

/// Copies the command's stderr to ours, keeping its last [`STDERR_TAIL_BYTES`] in
/// `kept` as it goes (read from there even if this is cut short).
async fn read_tail(
    stderr: Option<tokio::process::ChildStderr>,
    kept: Arc<std::sync::Mutex<Vec<u8>>>,
) {
    let Some(mut stderr) = stderr else {
        return;
    };
    let mut buf = [0u8; 8192];
    let mut ours = tokio::io::stderr();
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let chunk = buf.get(..n).unwrap_or_default();
                let _ = ours.write_all(chunk).await;
                let mut tail = kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                tail.extend_from_slice(chunk);
                if tail.len() > STDERR_TAIL_BYTES {
                    let cut = tail.len() - STDERR_TAIL_BYTES;
                    tail.drain(..cut);
                }
            }
        }
    }
}

fn describe(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "failed".to_owned(),
    }
}

/// `what` and the end of the stderr tail, as a reason the server keeps whole: at most
/// [`REASON_CHARS`] characters, no control characters but tab, CR and LF.
fn failure_reason(what: &str, tail: &[u8]) -> String {
    let text = String::from_utf8_lossy(tail);
    let clean: String = text
        .trim_end()
        .chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\t' | '\n' | '\r') {
                '?'
            } else {
                c
            }
        })
        .collect();
    if clean.is_empty() {
        return what.to_owned();
    }
    let head = format!("{what}: ");
    let room = REASON_CHARS.saturating_sub(head.chars().count());
    let count = clean.chars().count();
    let kept: String = clean.chars().skip(count.saturating_sub(room)).collect();
    format!("{head}{kept}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_keeps_the_end_of_stderr_and_fits_the_server() {
        let tail = format!("{}\x1b[31mboom\n", "x".repeat(3000));
        let reason = failure_reason("exit code 1", tail.as_bytes());
        assert!(reason.starts_with("exit code 1: "));
        assert!(reason.ends_with("?[31mboom"));
        assert_eq!(reason.chars().count(), REASON_CHARS);
        assert_eq!(failure_reason("exit code 2", b"  \n"), "exit code 2");
    }
}
