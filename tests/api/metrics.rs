//! `GET /metrics`: the series follow what jobs, requests, the log and snapshots do;
//! `[metrics] max_queues` bounds per-queue series; auth applies; the text parses.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::delivery::{as_holder, lease_one};
use crate::helpers::*;
use presque::{FsyncPolicy, Settings};

/// A scrape: `name{labels}` (labels as written) → value, after checking every line is
/// a comment or `name{labels} value`, and that it ends with `# EOF`.
fn parse(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "no # EOF at the end");
    let mut series = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(
                line == "# EOF"
                    || line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("# UNIT "),
                "bad comment line: {line}"
            );
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in: {line}"));
        let name_end = key.find('{').unwrap_or(key.len());
        let name = &key[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name in: {line}"
        );
        if name_end < key.len() {
            let labels = &key[name_end..];
            assert!(labels.ends_with('}'), "bad labels in: {line}");
            for pair in labels[1..labels.len() - 1].split("\",") {
                let (label, quoted) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                assert!(
                    label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "bad label name in: {line}"
                );
                assert!(quoted.starts_with('"'), "unquoted label value in: {line}");
            }
        }
        assert!(
            series.insert(key.to_owned(), value).is_none(),
            "series twice: {key}"
        );
    }
    series
}

async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let r = app.get("/metrics").await;
    assert_eq!(r.status(), StatusCode::OK);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    parse(&r.text().await.unwrap())
}

fn value(series: &HashMap<String, f64>, key: &str) -> f64 {
    *series.get(key).unwrap_or_else(|| panic!("no series {key}"))
}

/// Scrapes until `done` holds, for up to 10 s (the server's own timers move things).
async fn scrape_until(
    app: &TestApp,
    done: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let series = scrape(app).await;
        if done(&series) || Instant::now() > deadline {
            return series;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn queue_series_follow_what_jobs_do() {
    let app = spawn_app_with(|s| {
        s.storage.fsync = FsyncPolicy::Always;
        s.storage.snapshot_interval_secs = 1;
    })
    .await;
    for n in 0..5 {
        let r = app.post_json("/q/m", &format!("{{\"n\":{n}}}")).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = app.post_json("/q/m?delay=600", "{\"later\":1}").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // Fetched: processed.
    assert_eq!(app.get("/q/m").await.status(), StatusCode::OK);
    // Leased, then failed: back to ready, one failure.
    let (id, token, _) = lease_one(&app, "m", "30", "w1").await;
    let r = as_holder(&app, reqwest::Method::PUT, &format!("/q/m/{id}"), &token).await;
    assert!(r.status().is_success(), "{}", r.status());
    // Leased and left to run out.
    lease_one(&app, "m", "0.2", "w1").await;
    // One held on, one dead letter on another queue.
    lease_one(&app, "m", "30", "w1").await;
    app.post_json("/settings/d", "{\"max_attempts\": 1}").await;
    app.post_json("/q/d", "{\"dies\":1}").await;
    let (id, token, _) = lease_one(&app, "d", "30", "w1").await;
    let r = as_holder(&app, reqwest::Method::PUT, &format!("/q/d/{id}"), &token).await;
    assert!(r.status().is_success(), "{}", r.status());
    // A long-poll parked on an empty queue.
    app.post_json("/q/p", "{\"x\":1}").await;
    assert_eq!(app.get("/q/p").await.status(), StatusCode::OK);
    let parked = app.get("/q/p?wait=20");
    let check = async {
        let s = scrape_until(&app, |s| {
            s.get("presque_queue_expired_total{queue=\"m\"}") == Some(&1.0)
                && s.get("presque_queue_waiters{queue=\"p\"}") == Some(&1.0)
                && s.get("presque_snapshot_duration_seconds_count")
                    .is_some_and(|n| *n >= 1.0)
        })
        .await;
        let m = |state: &str| {
            value(
                &s,
                &format!("presque_queue_jobs{{queue=\"m\",state=\"{state}\"}}"),
            )
        };
        // 5 posted, 1 fetched, 1 leased (held): 3 ready, plus the expired one back.
        assert_eq!(
            (m("ready"), m("delayed"), m("leased"), m("dead")),
            (3.0, 1.0, 1.0, 0.0)
        );
        assert_eq!(value(&s, "presque_queue_enqueued_total{queue=\"m\"}"), 6.0);
        // fetch + 3 leases
        assert_eq!(value(&s, "presque_queue_processed_total{queue=\"m\"}"), 4.0);
        assert_eq!(value(&s, "presque_queue_failed_total{queue=\"m\"}"), 1.0);
        assert_eq!(value(&s, "presque_queue_expired_total{queue=\"m\"}"), 1.0);
        assert_eq!(
            value(&s, "presque_queue_jobs{queue=\"d\",state=\"dead\"}"),
            1.0
        );
        assert_eq!(value(&s, "presque_queue_waiters{queue=\"p\"}"), 1.0);
        assert_eq!(value(&s, "presque_queue_waiters{queue=\"m\"}"), 0.0);
        // Sums over every queue.
        assert_eq!(value(&s, "presque_queues"), 3.0);
        assert_eq!(value(&s, "presque_jobs{state=\"ready\"}"), 3.0);
        assert_eq!(value(&s, "presque_jobs{state=\"delayed\"}"), 1.0);
        assert_eq!(value(&s, "presque_jobs{state=\"leased\"}"), 1.0);
        assert_eq!(value(&s, "presque_jobs{state=\"dead\"}"), 1.0);
        assert_eq!(value(&s, "presque_enqueued_total"), 8.0);
        assert_eq!(value(&s, "presque_processed_total"), 6.0);
        assert_eq!(value(&s, "presque_failed_total"), 2.0);
        assert_eq!(value(&s, "presque_expired_total"), 1.0);
        assert_eq!(value(&s, "presque_waiters"), 1.0);
        // The log, snapshots, recovery, memory and the server itself.
        assert!(value(&s, "presque_log_fsync_seconds_count") >= 1.0);
        assert!(value(&s, "presque_snapshot_duration_seconds_count") >= 1.0);
        assert!(value(&s, "presque_snapshot_bytes") > 0.0);
        assert!(value(&s, "presque_recovery_seconds") >= 0.0);
        assert!(value(&s, "presque_memory_budget_used_bytes") > 0.0);
        assert!(value(&s, "presque_memory_budget_limit_bytes") > 0.0);
        assert_eq!(value(&s, "presque_workers"), 0.0);
        assert_eq!(value(&s, "presque_up"), 1.0);
        let version = format!(
            "presque_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(value(&s, &version), 1.0);
        // Answer the parked fetch so the test ends at once.
        app.post_json("/q/p", "{\"y\":1}").await;
    };
    let (r, ()) = tokio::join!(parked, check);
    assert_eq!(r.status(), StatusCode::OK);
    let s = scrape(&app).await;
    assert_eq!(value(&s, "presque_waiters"), 0.0);
}

#[actix_web::test]
async fn requests_are_counted_by_route_group_and_status() {
    let app = spawn_app().await;
    for _ in 0..3 {
        assert_eq!(app.get("/status/").await.status(), StatusCode::OK);
    }
    assert_eq!(
        app.get("/no/such/route").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/metrics?x=1").await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.post_json("/q/r", "{\"a\":1}").await.status(),
        StatusCode::CREATED
    );
    let s = scrape(&app).await;
    let count = |group: &str, status: u16| {
        value(
            &s,
            &format!(
                "presque_http_request_duration_seconds_count{{group=\"{group}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(count("/status", 200), 3.0);
    assert_eq!(count("other", 404), 1.0);
    assert_eq!(count("/metrics", 400), 1.0);
    assert_eq!(count("/q", 201), 1.0);
    let bucket = "presque_http_request_duration_seconds_bucket{le=\"+Inf\",group=\"/status\",status=\"200\"}";
    let found = s
        .iter()
        .find(|(k, _)| {
            k.starts_with("presque_http_request_duration_seconds_bucket{")
                && k.contains("le=\"+Inf\"")
                && k.contains("group=\"/status\"")
                && k.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no {bucket}"));
    assert_eq!(*found.1, 3.0);
    // The scrape itself is counted once answered: the next one shows it.
    let s = scrape(&app).await;
    assert_eq!(
        value(
            &s,
            "presque_http_request_duration_seconds_count{group=\"/metrics\",status=\"200\"}"
        ),
        1.0
    );
}

#[actix_web::test]
async fn max_queues_bounds_the_per_queue_series_not_the_sums() {
    let app = spawn_app_with(|s| s.metrics.max_queues = 3).await;
    for name in ["e", "a", "d", "b", "c"] {
        app.post_json(&format!("/q/{name}"), "{\"x\":1}").await;
    }
    let s = scrape(&app).await;
    for name in ["a", "b", "c"] {
        let key = format!("presque_queue_jobs{{queue=\"{name}\",state=\"ready\"}}");
        assert_eq!(value(&s, &key), 1.0);
    }
    for name in ["d", "e"] {
        assert!(
            !s.keys().any(|k| k.contains(&format!("queue=\"{name}\""))),
            "queue {name} has series"
        );
    }
    assert_eq!(value(&s, "presque_queues"), 5.0);
    assert_eq!(value(&s, "presque_jobs{state=\"ready\"}"), 5.0);
    assert_eq!(value(&s, "presque_enqueued_total"), 5.0);
}

const READER: &str = "reader-token-0123456789";

async fn spawn_with_auth(open: &str) -> TestApp {
    let toml = format!(
        "[auth]\ntokens = [{{ role = \"consumer\", token = \"{READER}\" }}]\nopen_routes = [{open}]\n"
    );
    let auth = Settings::from_toml(&toml, std::path::Path::new("test.toml"))
        .unwrap()
        .auth;
    spawn_app_with(|s| s.auth = auth).await
}

#[actix_web::test]
async fn metrics_need_a_token_unless_opened() {
    let app = spawn_with_auth("").await;
    let r = app.get("/metrics").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let s = parse(&r.text().await.unwrap());
    // The refused scrape was counted.
    assert_eq!(
        value(
            &s,
            "presque_http_request_duration_seconds_count{group=\"/metrics\",status=\"401\"}"
        ),
        1.0
    );

    let open = spawn_with_auth("\"/metrics\"").await;
    assert_eq!(scrape(&open).await.get("presque_up"), Some(&1.0));
    assert_eq!(
        open.get("/status/").await.status(),
        StatusCode::UNAUTHORIZED
    );
}
