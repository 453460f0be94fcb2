//! `presque watch`: the queues' counters and processing rates, redrawn in place every
//! interval with plain ANSI escapes, until Ctrl-C.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use super::args::WatchArgs;
use super::{client, table, CliError};

/// Home the cursor and clear the screen.
const CLEAR: &str = "\x1b[H\x1b[2J";
/// Hide and show the cursor while redrawing.
const HIDE_CURSOR: &str = "\x1b[?25l";
const SHOW_CURSOR: &str = "\x1b[?25h";

pub(super) async fn watch(args: &WatchArgs) -> Result<(), CliError> {
    let client = client(&args.connection);
    let interval = Duration::try_from_secs_f64(args.interval)
        .ok()
        .filter(|i| !i.is_zero())
        .ok_or_else(|| CliError::Usage("--interval must be more than 0 seconds".into()))?;
    if args.once {
        let queues = client.overview().await?;
        return super::commands::out(table::queues(&queues, None).trim_end());
    }
    let mut stdout = std::io::stdout();
    write!(stdout, "{HIDE_CURSOR}")?;
    let shown = tokio::select! {
        shown = redraw(&client, interval, &args.connection.url) => shown,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    write!(stdout, "{SHOW_CURSOR}")?;
    stdout.flush()?;
    shown
}

/// Redraws forever (or until an error): processed jobs per second since the last
/// view, per queue.
async fn redraw(
    client: &presque_client::Client,
    interval: Duration,
    url: &str,
) -> Result<(), CliError> {
    let mut before: Option<(Instant, HashMap<String, u64>)> = None;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let queues = client.overview().await?;
        let now = Instant::now();
        let processed: HashMap<String, u64> = queues
            .iter()
            .map(|q| (q.name.clone(), q.processed))
            .collect();
        let rates = before.as_ref().map(|(at, earlier)| {
            let secs = now.duration_since(*at).as_secs_f64().max(1e-3);
            processed
                .iter()
                .filter_map(|(name, n)| {
                    let was = earlier.get(name)?;
                    Some((name.clone(), n.saturating_sub(*was) as f64 / secs))
                })
                .collect::<HashMap<_, _>>()
        });
        let total_ready: u64 = queues.iter().map(|q| q.ready).sum();
        let total_leased: u64 = queues.iter().map(|q| q.leased).sum();
        let total_rate: f64 = rates.as_ref().map_or(0.0, |r| r.values().sum());
        let mut stdout = std::io::stdout().lock();
        write!(
            stdout,
            "{CLEAR}presque at {url}: {} queues, {total_ready} ready, {total_leased} leased, {total_rate:.1} jobs/s (Ctrl-C stops)\n\n{}",
            queues.len(),
            table::queues(&queues, Some(&rates.unwrap_or_default())),
        )?;
        stdout.flush()?;
        before = Some((now, processed));
    }
}
