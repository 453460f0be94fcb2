//! Many producers and consumers on one queue: every job delivered exactly once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::StatusCode;

use crate::helpers::*;

const PRODUCERS: usize = 4;
const CONSUMERS: usize = 8;
const JOBS: usize = 10_000;

#[actix_web::test]
async fn eight_consumers_four_producers_exactly_once() {
    let app = Arc::new(spawn_app().await);
    let delivered = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(120);

    let producers = (0..PRODUCERS).map(|p| {
        let app = app.clone();
        async move {
            for i in 0..JOBS / PRODUCERS {
                let r = app
                    .post_json("/q/load", &format!("{{\"p\":{p},\"i\":{i}}}"))
                    .await;
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        }
    });
    let consumers = (0..CONSUMERS).map(|_| {
        let app = app.clone();
        let delivered = delivered.clone();
        async move {
            let mut got: Vec<(u64, u64)> = Vec::new();
            while delivered.load(Ordering::SeqCst) < JOBS {
                assert!(Instant::now() < deadline, "jobs were lost");
                let r = app.get("/q/load").await;
                if r.status() == StatusCode::OK {
                    let v: serde_json::Value = r.json().await.unwrap();
                    got.push((v["p"].as_u64().unwrap(), v["i"].as_u64().unwrap()));
                    delivered.fetch_add(1, Ordering::SeqCst);
                } else {
                    assert_eq!(r.status(), StatusCode::NOT_FOUND);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            got
        }
    });
    let (_, results) = tokio::join!(join_all(producers), join_all(consumers));

    let mut seen = HashSet::new();
    for got in &results {
        // Each consumer sees each producer's jobs in the order they were posted.
        for p in 0..PRODUCERS as u64 {
            let mine: Vec<u64> = got
                .iter()
                .filter(|(q, _)| *q == p)
                .map(|(_, i)| *i)
                .collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "out of order: {mine:?}"
            );
        }
        for job in got {
            assert!(seen.insert(*job), "delivered twice: {job:?}");
        }
    }
    assert_eq!(seen.len(), JOBS, "lost jobs");
    let (_, j) = app.get_json("/j/load").await;
    assert_eq!(j["job_count"], 0);
    assert_eq!(j["job_processed"], JOBS as u64);
}

#[actix_web::test]
async fn single_consumer_sees_exact_fifo_under_concurrent_load() {
    let app = Arc::new(spawn_app().await);
    for i in 0..2_000 {
        app.post_json("/q/one", &i.to_string()).await;
    }
    // Noise on other queues while one consumer drains this one.
    let noise = (0..4).map(|n| {
        let app = app.clone();
        async move {
            for i in 0..300 {
                app.post_json(&format!("/q/noise{n}"), &i.to_string()).await;
                app.get(&format!("/q/noise{n}")).await;
            }
        }
    });
    let consumer = async {
        for i in 0..2_000 {
            let r = app.get("/q/one").await;
            assert_eq!(r.text().await.unwrap(), i.to_string());
        }
    };
    tokio::join!(join_all(noise), consumer);
}

#[actix_web::test]
async fn concurrent_deletes_and_posts_never_strand_a_job() {
    // A POST that races a DELETE either lands before the purge or on the new queue:
    // after the dust settles, every 201 since the last DELETE is fetchable.
    let app = Arc::new(spawn_app().await);
    let posts = (0..4).map(|p| {
        let app = app.clone();
        async move {
            for i in 0..200 {
                let r = app.post_json("/q/race", &format!("[{p},{i}]")).await;
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        }
    });
    let deletes = async {
        for _ in 0..50 {
            assert_eq!(app.delete("/q/race").await.status(), StatusCode::NO_CONTENT);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::join!(join_all(posts), deletes);
    app.delete("/q/race").await;
    for i in 0..10 {
        app.post_json("/q/race", &i.to_string()).await;
    }
    let (_, s) = app.get_json("/status/race").await;
    assert_eq!(s["size"], 10);
}
