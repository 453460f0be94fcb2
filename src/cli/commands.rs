//! The one-shot client commands: each makes a few calls and prints the answer.

use std::io::{BufRead as _, Write as _};
use std::time::Duration;

use presque_client::{JobId, QueueOverview};
use serde_json::value::RawValue;

use super::args::{
    AckArgs, ControlAction, ControlArgs, DeadAction, DeadArgs, FailArgs, PopArgs, PushArgs,
    StatsArgs,
};
use super::{client, table, CliError};

/// Writes `text` and a newline to stdout.
pub(super) fn out(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}

fn json_text(text: &str, what: &str) -> Result<Box<RawValue>, CliError> {
    serde_json::from_str::<Box<RawValue>>(text)
        .map_err(|e| CliError::Usage(format!("{what} is not JSON: {e}")))
}

fn seconds(value: Option<f64>, flag: &str) -> Result<Option<Duration>, CliError> {
    value
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| CliError::Usage(format!("{flag} must be a number of seconds")))
        })
        .transpose()
}

/// `push QUEUE JSON` prints the new id; `push QUEUE -` reads one job per line and
/// prints one id per line. Every line of a batch is checked before it is sent, so a
/// bad line stops the push with the batches before it sent and none after.
pub(super) async fn push(args: &PushArgs) -> Result<(), CliError> {
    let client = client(&args.connection);
    match args.job.as_deref() {
        Some(job) if job != "-" => {
            let job = json_text(job, "the job")?;
            let id = client.push_raw(&args.queue, job.get().to_owned()).await?;
            out(&id.to_string())
        }
        _ => {
            let batch = args.batch as usize;
            let mut jobs: Vec<Box<RawValue>> = Vec::with_capacity(batch);
            let mut stdin = std::io::stdin().lock();
            let mut line = String::new();
            let mut number = 0;
            // The first line of the batch being gathered, and lines pushed so far:
            // a stop part way says exactly which lines went in.
            let (mut first, mut pushed) = (1, 0);
            let stopped = |what: String, first: usize, number: usize, pushed: usize| {
                CliError::Partial(format!(
                    "{what}; lines {first} to {number} were not pushed (the {pushed} jobs of the lines before were)"
                ))
            };
            loop {
                line.clear();
                let end = match stdin.read_line(&mut line) {
                    Ok(read) => read == 0,
                    Err(e) => {
                        return Err(stopped(
                            format!("line {}: {e}", number + 1),
                            first,
                            number + 1,
                            pushed,
                        ))
                    }
                };
                if !end {
                    number += 1;
                    let text = line.trim();
                    if !text.is_empty() {
                        match json_text(text, &format!("line {number}")) {
                            Ok(job) => jobs.push(job),
                            Err(e) => return Err(stopped(e.to_string(), first, number, pushed)),
                        }
                    }
                }
                if jobs.len() == batch || (end && !jobs.is_empty()) {
                    let refs: Vec<&RawValue> = jobs.iter().map(AsRef::as_ref).collect();
                    let ids = match client.push_batch_raw(&args.queue, &refs).await {
                        Ok(ids) => ids,
                        Err(e) => return Err(stopped(e.to_string(), first, number, pushed)),
                    };
                    let text: Vec<String> = ids.iter().map(JobId::to_string).collect();
                    out(&text.join("\n"))?;
                    pushed += jobs.len();
                    first = number + 1;
                    jobs.clear();
                }
                if end {
                    return Ok(());
                }
            }
        }
    }
}

/// `pop QUEUE`: the job on stdout; exit code 3 when there is none.
pub(super) async fn pop(args: &PopArgs) -> Result<(), CliError> {
    let client = client(&args.connection);
    let wait = seconds(args.wait, "--wait")?;
    let Some(lease_secs) = args.lease else {
        let job = client
            .fetch_raw(&args.queue, wait)
            .await?
            .ok_or(CliError::NoJob)?;
        let job = String::from_utf8_lossy(&job);
        return if args.json {
            out(&format!("{{\"job\":{job}}}"))
        } else {
            out(&job)
        };
    };
    let lease = client
        .lease(&args.queue, lease_secs, wait)
        .await?
        .ok_or(CliError::NoJob)?;
    let job = String::from_utf8_lossy(lease.body());
    if args.json {
        let head = serde_json::json!({"id": lease.id(), "lease": lease.token()}).to_string();
        // The job goes in as posted, not re-encoded.
        let head = head.trim_end_matches('}');
        out(&format!("{head},\"job\":{job}}}"))
    } else {
        writeln!(
            std::io::stderr(),
            "id={} lease={}",
            lease.id(),
            lease.token()
        )?;
        out(&job)
    }
}

pub(super) async fn ack(args: &AckArgs) -> Result<(), CliError> {
    client(&args.connection)
        .ack(&args.queue, JobId(args.id), &args.lease)
        .await?;
    Ok(())
}

/// Prints where the job went: `ready`, `delayed` or `dead`, and its attempts.
pub(super) async fn fail(args: &FailArgs) -> Result<(), CliError> {
    let info = client(&args.connection)
        .fail(
            &args.queue,
            JobId(args.id),
            &args.lease,
            args.reason.as_deref(),
        )
        .await?;
    out(&format!(
        "job {} is {} (attempts: {})",
        info.id, info.state, info.attempts
    ))
}

/// A queue that does not exist: all zeros, open.
fn empty_queue(name: &str) -> QueueOverview {
    QueueOverview {
        name: name.to_owned(),
        open: true,
        ready: 0,
        delayed: 0,
        leased: 0,
        dead: 0,
        waiting: 0,
        processed: 0,
        failed: 0,
    }
}

pub(super) async fn stats(args: &StatsArgs) -> Result<(), CliError> {
    let client = client(&args.connection);
    let queues = match &args.queue {
        Some(name) => {
            let queue = client
                .queue_overview(name)
                .await?
                .unwrap_or_else(|| empty_queue(name));
            if args.json {
                return out(&serde_json::to_string(&queue).map_err(presque_client::Error::from)?);
            }
            vec![queue]
        }
        None => client.overview().await?,
    };
    if args.json {
        return out(&serde_json::to_string(&queues).map_err(presque_client::Error::from)?);
    }
    out(table::queues(&queues, None).trim_end())
}

pub(super) async fn dead(args: &DeadArgs) -> Result<(), CliError> {
    let client = client(&args.connection);
    let id = args.id.map(JobId);
    match args.action {
        DeadAction::Retry => {
            let n = client.retry_dead(&args.queue, id).await?;
            out(&if args.json {
                serde_json::json!({ "retried": n }).to_string()
            } else {
                format!("retried {n}")
            })
        }
        DeadAction::Purge => {
            let n = client.purge_dead(&args.queue, id).await?;
            out(&if args.json {
                serde_json::json!({ "purged": n }).to_string()
            } else {
                format!("purged {n}")
            })
        }
        DeadAction::List => {
            let mut jobs = Vec::new();
            let mut after = None;
            loop {
                let page = client.dead(&args.queue, after, 1000).await?;
                jobs.extend(page.jobs);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            if let Some(id) = id {
                jobs.retain(|job| job.id == id);
            }
            if args.json {
                out(&serde_json::to_string(&jobs).map_err(presque_client::Error::from)?)
            } else {
                out(table::dead(&jobs).trim_end())
            }
        }
    }
}

pub(super) async fn control(args: &ControlArgs) -> Result<(), CliError> {
    let client = client(&args.connection);
    match args.action {
        ControlAction::Open => client.open(&args.queue).await?,
        ControlAction::Close => client.close(&args.queue).await?,
        ControlAction::Status => {}
    }
    let open = client.is_open(&args.queue).await?;
    out(&format!(
        "{}: {}",
        args.queue,
        if open { "open" } else { "closed" }
    ))
}
