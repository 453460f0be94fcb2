//! Durability benchmark: `cargo bench --bench durability`.
//!
//! Runs the release binary as a child process and measures, in one run:
//! - enqueue throughput (32 keep-alive connections, 100-byte jobs) under each fsync
//!   policy, interleaved over several rounds, reported as medians and as ratios of
//!   each other (the machine is shared: only same-run ratios mean much);
//! - with 1,000,000 jobs of 100 bytes: snapshot write time, the longest stall of a
//!   queue actor while its image is taken, recovery time from that snapshot, and
//!   recovery time from the log alone (SIGKILL before any snapshot).
//!
//! Figures come from the server's own log lines where they are internal
//! ("snapshot written", "recovered"), and from wall clock otherwise.

// A benchmark reports on stdout and may stop at the first surprise: the server-only
// rules in Cargo.toml [lints] do not apply.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/harness/mod.rs"]
mod harness;

use harness::ServerProcess;

const CONNECTIONS: usize = 32;
const ROUND_SECS: f64 = 3.0;
const ROUNDS: usize = 3;
const BIG_JOBS: usize = 1_000_000;
const BATCH: usize = 1_000;

/// The server on `data_dir` with `fsync`.
fn start(data_dir: &Path, fsync: &str) -> ServerProcess {
    let args = ["--bind", "127.0.0.1:0", "--fsync", fsync, "--data-dir", "."];
    harness::start_binary(data_dir, &args, &[])
}

/// SIGTERM: how long the server took to exit, and what it printed since starting.
fn stop(mut server: ServerProcess) -> (Duration, Vec<String>) {
    let started = Instant::now();
    server.terminate();
    let elapsed = started.elapsed();
    (elapsed, server.rest_of_stderr())
}

/// The value of `key=NUMBER` in the last of `lines` containing `marker`.
fn field(lines: &[String], marker: &str, key: &str) -> Option<f64> {
    let line = lines.iter().rev().find(|l| l.contains(marker))?;
    let at = line.find(&format!("{key}="))?;
    line[at + key.len() + 1..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn job(n: usize) -> String {
    let head = format!("{{\"n\":{n},\"pad\":\"");
    let pad = 100 - head.len() - 2;
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// Enqueue requests per second over `CONNECTIONS` connections for `ROUND_SECS`.
async fn enqueue_rate(address: &str) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(ROUND_SECS);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .expect("client");
    let url = format!("{address}/q/bench");
    let workers = (0..CONNECTIONS).map(|c| {
        let (client, url, done) = (client.clone(), url.clone(), done.clone());
        async move {
            let mut n = c;
            while Instant::now() < deadline {
                let r = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(job(n))
                    .send()
                    .await
                    .expect("POST");
                assert_eq!(r.status(), 201);
                done.fetch_add(1, Ordering::Relaxed);
                n += CONNECTIONS;
            }
        }
    });
    let started = Instant::now();
    futures_util::future::join_all(workers).await;
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn fill_big_queue(address: &str) {
    let client = reqwest::Client::new();
    for b in 0..BIG_JOBS / BATCH {
        let jobs: Vec<String> = (0..BATCH).map(|i| job(b * BATCH + i)).collect();
        let body = format!("{{\"jobs\":[{}]}}", jobs.join(","));
        let r = client
            .post(format!("{address}/qb/big"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST /qb");
        assert_eq!(r.status(), 201);
    }
}

async fn ready_count(address: &str) -> u64 {
    let v: serde_json::Value = reqwest::get(format!("{address}/j/big"))
        .await
        .expect("GET /j")
        .json()
        .await
        .expect("JSON");
    v["job_count"].as_u64().unwrap_or(0)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would too: only run on bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("presque durability benchmark ({CONNECTIONS} connections, 100-byte jobs)");
        let policies = ["always", "everysec", "no"];
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); policies.len()];
        for round in 0..ROUNDS {
            for (i, policy) in policies.iter().enumerate() {
                let dir = tempfile::tempdir().expect("temp dir");
                let server = start(dir.path(), policy);
                let rate = enqueue_rate(&server.address).await;
                stop(server);
                println!("  round {round}: fsync={policy:<8} {rate:>9.0} enqueues/s");
                rates[i].push(rate);
            }
        }
        let medians: Vec<f64> = rates.into_iter().map(median).collect();
        let no = medians[2];
        println!();
        println!("| fsync | enqueues/s (median of {ROUNDS}) | ratio to `no` |");
        println!("| --- | ---: | ---: |");
        for (policy, rate) in policies.iter().zip(&medians) {
            println!("| {policy} | {rate:.0} | {:.2} |", rate / no);
        }

        println!();
        println!("1,000,000 jobs of 100 bytes (fsync=no while filling):");
        let dir = tempfile::tempdir().expect("temp dir");
        let server = start(dir.path(), "no");
        let fill = Instant::now();
        fill_big_queue(&server.address).await;
        let fill_time = fill.elapsed();
        let (shutdown, said) = stop(server);
        let write_ms = field(&said, "snapshot written", "write_ms").unwrap_or(f64::NAN);
        let stall_us = field(&said, "snapshot written", "longest_stall_us").unwrap_or(f64::NAN);
        let bytes = field(&said, "snapshot written", "bytes").unwrap_or(f64::NAN);
        let server = start(dir.path(), "no");
        let start_time = server.listening_after;
        let recovered_ms = field(&server.startup_lines, "recovered", "elapsed_ms").unwrap_or(f64::NAN);
        let count = ready_count(&server.address).await;
        assert_eq!(count, BIG_JOBS as u64, "jobs lost across the restart");
        server.kill9();

        // Log only: fill a fresh directory, SIGKILL before any snapshot.
        let log_dir = tempfile::tempdir().expect("temp dir");
        let server = start(log_dir.path(), "no");
        fill_big_queue(&server.address).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.kill9();
        let server = start(log_dir.path(), "no");
        let log_start_time = server.listening_after;
        let log_recovered_ms =
            field(&server.startup_lines, "recovered", "elapsed_ms").unwrap_or(f64::NAN);
        let count = ready_count(&server.address).await;
        assert_eq!(count, BIG_JOBS as u64, "jobs lost across the SIGKILL");
        stop(server);

        println!("| measure | value |");
        println!("| --- | ---: |");
        println!("| fill via /qb (1,000 jobs per request) | {:.2} s |", fill_time.as_secs_f64());
        println!("| snapshot size | {:.1} MB |", bytes / 1e6);
        println!("| snapshot encode + write + fsync | {write_ms:.0} ms |");
        println!("| longest queue stall while its image is taken | {stall_us:.0} µs |");
        println!("| graceful shutdown (final snapshot included) | {:.2} s |", shutdown.as_secs_f64());
        println!("| recovery from the snapshot | {recovered_ms:.0} ms (process start to listening: {:.2} s) |", start_time.as_secs_f64());
        println!("| recovery from the log alone | {log_recovered_ms:.0} ms (process start to listening: {:.2} s) |", log_start_time.as_secs_f64());
    });
}
