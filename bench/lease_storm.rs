//! Lease-expiry storm: `cargo bench --bench lease_storm`.
//!
//! Runs the release binary with one HTTP worker (`workers = 1`: every queue actor
//! shares its thread with every request) and:
//! - baseline: `GET /status/` once a millisecond for 3 s on an idle server, and for
//!   300 ms after the same SIGSTOP/SIGCONT as below with nothing leased;
//! - fills queue `storm` with 100,000 jobs (plus one never leased) and leases them all
//!   with a 2 s lease (100 `GET /qb?batch_size=1000&lease=2`);
//! - "at once": stops the server (SIGSTOP) until every deadline has passed, resumes it
//!   (SIGCONT), so one timer finds all 100,000 leases expired, and probes
//!   `GET /status/` once a millisecond until every job is back;
//! - "as they come": the same with the server left running, so leases expire as their
//!   deadlines (spread over the leasing) pass;
//! - replay: SIGKILL after the storm (the expiries are only in the log, no snapshot
//!   since), restart, time from process start to listening.
//!
//! Reports p50/p99/max probe latency, storm against baseline (ratio and added ms).
//! `STORM_JOBS=N` changes the storm's size; `PRESQUE_BIN=PATH` runs another build of
//! the server (to measure an older version the same way); `STORM_TRACE=1` prints the
//! "at once" probe latencies in the order they were taken.

// A benchmark reports on stdout and may stop at the first surprise: the server-only
// rules in Cargo.toml [lints] do not apply.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

#[path = "../tests/harness/mod.rs"]
mod harness;

use harness::{one_connection, ServerProcess};

const LEASE_SECS: f64 = 2.0;

/// The server on `dir`'s config and data (`$PRESQUE_BIN` if set, else this build).
fn start(dir: &Path) -> ServerProcess {
    let bin = std::env::var_os("PRESQUE_BIN").unwrap_or_else(|| harness::BIN.into());
    harness::start_command(harness::command_for(bin, dir, &harness::NODE_ARGS))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// (p50, p99, max) in ms.
fn summary(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(|a, b| a.total_cmp(b));
    (
        percentile(&xs, 0.5),
        percentile(&xs, 0.99),
        xs.last().copied().unwrap_or(f64::NAN),
    )
}

/// `GET /status/` every millisecond until `done` resolves; latencies in ms. A request
/// the server drops (an older build, stalled past actix-web's 5 s request timeout)
/// counts with the time it took to fail.
async fn probe_until<F: std::future::Future<Output = ()>>(address: &str, done: F) -> Vec<f64> {
    let client = one_connection();
    let mut latencies = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(done);
    loop {
        tokio::select! {
            () = &mut done => return latencies,
            _ = tick.tick() => {
                let started = Instant::now();
                if let Ok(r) = client.get(format!("{address}/status/")).send().await {
                    let _ = r.bytes().await;
                }
                latencies.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
}

/// Resolves once `/j/storm` counts `n` ready jobs (checked every 20 ms on its own
/// connection); returns when that was seen.
async fn all_back(address: String, n: usize) -> Instant {
    let client = one_connection();
    loop {
        if let Ok(r) = client.get(format!("{address}/j/storm")).send().await {
            let j: serde_json::Value = r.json().await.unwrap_or_default();
            if j["job_count"].as_u64() == Some(n as u64) {
                return Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fills `storm` with `n + 1` jobs and leases `n`; returns when the leasing began
/// (the earliest deadline is then `LEASE_SECS` later).
async fn fill_and_lease(address: &str, n: usize) -> Instant {
    let client = one_connection();
    let numbers: Vec<usize> = (0..=n).collect();
    for chunk in numbers.chunks(1000) {
        let r = client
            .post(format!("{address}/qb/storm"))
            .header("Content-Type", "application/json")
            .body(serde_json::json!({ "jobs": chunk }).to_string())
            .send()
            .await
            .expect("POST /qb");
        assert_eq!(r.status(), 201);
    }
    let began = Instant::now();
    let mut leased = 0;
    while leased < n {
        let r = client
            .get(format!(
                "{address}/qb/storm?batch_size={}&lease={LEASE_SECS}",
                (n - leased).min(1000)
            ))
            .send()
            .await
            .expect("GET /qb");
        assert_eq!(r.status(), 200);
        let ids = r.headers()["X-presque-jobid"]
            .to_str()
            .unwrap_or("")
            .to_owned();
        leased += ids.split(',').count();
    }
    began
}

fn row(name: &str, (p50, p99, max): (f64, f64, f64), base: (f64, f64, f64), count: usize) {
    println!(
        "| {name} | {count} | {p50:.2} ms | {p99:.2} ms | {max:.2} ms | {:.1} / {:.1} | +{:.1} ms / +{:.1} ms |",
        p99 / base.1,
        max / base.2,
        p99 - base.1,
        max - base.2,
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("STORM_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("presque.toml"),
        "[server]\nworkers = 1\n[storage]\nsnapshot_interval_secs = 3600\n",
    )
    .expect("config");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = start(dir.path());
    let address = server.address.clone();

    let (baseline, resumed_idle, at_once, at_once_secs, spread, spread_secs) = rt.block_on(async {
        let baseline = probe_until(&address, tokio::time::sleep(Duration::from_secs(3))).await;

        // The same stop and resume with nothing leased: what resuming alone costs.
        server.signal("STOP");
        tokio::time::sleep(Duration::from_secs_f64(LEASE_SECS + 0.2)).await;
        server.signal("CONT");
        let resumed_idle =
            probe_until(&address, tokio::time::sleep(Duration::from_millis(300))).await;

        // At once: every deadline passes while the server is stopped.
        fill_and_lease(&address, n).await;
        server.signal("STOP");
        tokio::time::sleep(Duration::from_secs_f64(LEASE_SECS + 0.2)).await;
        server.signal("CONT");
        let resumed = Instant::now();
        let done = all_back(address.clone(), n + 1);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let watcher = tokio::spawn(async move {
            let at = done.await;
            let _ = tx.send(at);
        });
        let at_once = probe_until(&address, async {
            let _ = rx.await;
        })
        .await;
        let _ = watcher.await;
        let at_once_secs = resumed.elapsed().as_secs_f64();
        drain(&address, n + 1).await;

        // As they come: leases expire while the server runs.
        let began = fill_and_lease(&address, n).await;
        let first_deadline = began + Duration::from_secs_f64(LEASE_SECS);
        tokio::time::sleep_until((first_deadline - Duration::from_millis(200)).into()).await;
        let from = Instant::now();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let done = all_back(address.clone(), n + 1);
        let watcher = tokio::spawn(async move {
            let _ = tx.send(done.await);
        });
        let spread = probe_until(&address, async {
            let _ = rx.await;
        })
        .await;
        let _ = watcher.await;
        let spread_secs = from.elapsed().as_secs_f64();
        (
            baseline,
            resumed_idle,
            at_once,
            at_once_secs,
            spread,
            spread_secs,
        )
    });

    // Replay: the storms are in the log only (no snapshot since the start).
    std::thread::sleep(Duration::from_millis(200));
    server.kill9();
    let server = start(dir.path());
    let replay = server.listening_after;
    server.stop();

    if std::env::var_os("STORM_TRACE").is_some() {
        eprintln!("at once, in order: {at_once:.2?}");
    }
    let (b_count, s_count, p_count) = (baseline.len(), at_once.len(), spread.len());
    let base = summary(baseline);
    println!(
        "presque lease storm ({n} leases on one queue, workers = 1, release build, fsync=everysec)"
    );
    println!();
    println!("| probes of GET /status/ | probes | p50 | p99 | max | p99 / max vs baseline | added p99 / max |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    row("baseline (idle server)", base, base, b_count);
    let r_count = resumed_idle.len();
    row(
        "resumed after the same SIGSTOP, nothing leased (300 ms)",
        summary(resumed_idle),
        base,
        r_count,
    );
    row(
        &format!("{n} leases expiring at once ({at_once_secs:.2} s until all back)"),
        summary(at_once),
        base,
        s_count,
    );
    row(
        &format!("{n} leases expiring as they come ({spread_secs:.2} s until all back)"),
        summary(spread),
        base,
        p_count,
    );
    println!();
    println!(
        "restart replaying both storms from the log: {:.0} ms from process start to listening",
        replay.as_secs_f64() * 1e3
    );
}

/// Takes every job out of `storm` again.
async fn drain(address: &str, n: usize) {
    let client = one_connection();
    let mut taken = 0;
    while taken < n {
        let r = client
            .get(format!("{address}/qb/storm?batch_size=1000"))
            .send()
            .await
            .expect("GET /qb");
        if r.status() != 200 {
            break;
        }
        let jobs: Vec<String> = r.json().await.expect("jobs");
        taken += jobs.len();
    }
}
