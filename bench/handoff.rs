//! Long-poll hand-off latency: `cargo bench --bench handoff`.
//!
//! Runs the release binary and, 10,000 times: parks `GET /q/h?wait=5` on one
//! keep-alive connection, waits 2 ms so it is surely parked, then `POST`s a job on a
//! second connection. Reports, as p50/p99:
//! - the round trip of a plain `GET` (a ready job) on the waiter's connection, and of
//!   a plain `POST` on the poster's, each after the same 2 ms pause: the baselines,
//!   measured in the same run (and, for reference, plain GETs back to back, where no
//!   server thread has time to fall asleep);
//! - the time from the `POST` being answered to the parked `GET` being answered
//!   (negative when the waiter's answer lands first: the queue hands the job over
//!   before it answers the `POST`);
//! - the time from the `POST` being sent to the parked `GET` being answered: the whole
//!   hand-off as a producer and consumer see it.

// A benchmark reports on stdout and may stop at the first surprise: the server-only
// rules in Cargo.toml [lints] do not apply.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::time::{Duration, Instant};

#[path = "../tests/harness/mod.rs"]
mod harness;

use harness::one_connection;

const HANDOFFS: usize = 10_000;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(mut xs: Vec<f64>) -> (f64, f64) {
    xs.sort_by(|a, b| a.total_cmp(b));
    (percentile(&xs, 0.5), percentile(&xs, 0.99))
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let server = harness::start_binary(
        dir.path(),
        &["--bind", "127.0.0.1:0", "--data-dir", "."],
        &[],
    );
    let address = server.address.clone();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (waiter, poster) = (one_connection(), one_connection());
        let post = |body: String| {
            poster
                .post(format!("{address}/q/h"))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
        };

        // Baselines: plain GETs of a ready job on the waiter's connection, and POSTs on
        // the poster's, each after the same 2 ms pause the hand-offs have (an idle
        // server thread takes longer to wake than a busy one: same conditions, same
        // costs).
        let mut post_rtt = Vec::with_capacity(HANDOFFS);
        for i in 0..HANDOFFS {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let started = Instant::now();
            post(i.to_string()).await.expect("POST");
            post_rtt.push(started.elapsed().as_secs_f64() * 1e6);
        }
        for i in 0..HANDOFFS {
            post(i.to_string()).await.expect("POST");
        }
        let mut hot_rtt = Vec::with_capacity(HANDOFFS);
        for _ in 0..HANDOFFS {
            let started = Instant::now();
            let r = waiter.get(format!("{address}/q/h")).send().await.expect("GET");
            let _ = r.bytes().await;
            hot_rtt.push(started.elapsed().as_secs_f64() * 1e6);
        }
        let mut rtt = Vec::with_capacity(HANDOFFS);
        for _ in 0..HANDOFFS {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let started = Instant::now();
            let r = waiter.get(format!("{address}/q/h")).send().await.expect("GET");
            let _ = r.bytes().await;
            rtt.push(started.elapsed().as_secs_f64() * 1e6);
        }

        let mut after_answer = Vec::with_capacity(HANDOFFS);
        let mut after_send = Vec::with_capacity(HANDOFFS);
        for i in 0..HANDOFFS {
            let get = waiter.get(format!("{address}/q/h?wait=5")).send();
            let parked = tokio::spawn(async move {
                let r = get.await.expect("parked GET");
                let answered = Instant::now();
                let body = r.bytes().await.expect("body");
                (answered, body)
            });
            tokio::time::sleep(Duration::from_millis(2)).await;
            let sent = Instant::now();
            let r = post(format!("\"h{i}\"")).await.expect("POST");
            let posted = Instant::now();
            assert_eq!(r.status(), 201);
            let (answered, body) = parked.await.expect("task");
            assert_eq!(&body[..], format!("\"h{i}\"").as_bytes());
            let signed = if answered >= posted {
                (answered - posted).as_secs_f64()
            } else {
                -(posted - answered).as_secs_f64()
            };
            after_answer.push(signed * 1e6);
            after_send.push((answered - sent).as_secs_f64() * 1e6);
        }
        let (rtt50, rtt99) = summary(rtt);
        let (p50, p99) = summary(post_rtt);
        let (h50, h99) = summary(hot_rtt);
        let (a50, a99) = summary(after_answer);
        let (s50, s99) = summary(after_send);
        println!("presque long-poll hand-off ({HANDOFFS} hand-offs, release build, fsync=everysec)");
        println!();
        println!("| measure | p50 | p99 | p50 / GET round trip |");
        println!("| --- | ---: | ---: | ---: |");
        println!("| plain GET round trip (same connection, after a 2 ms pause) | {rtt50:.0} µs | {rtt99:.0} µs | 1.00 |");
        println!("| plain GET round trip (same connection, back to back) | {h50:.0} µs | {h99:.0} µs | {:.2} |", h50 / rtt50);
        println!("| plain POST round trip (other connection) | {p50:.0} µs | {p99:.0} µs | {:.2} |", p50 / rtt50);
        println!("| POST answered → parked GET answered | {a50:.0} µs | {a99:.0} µs | {:.2} |", a50 / rtt50);
        println!("| POST sent → parked GET answered | {s50:.0} µs | {s99:.0} µs | {:.2} |", s50 / rtt50);
    });
    server.stop();
}
