//! The memory budget (`[limits] max_memory_bytes`) and per-queue `max_jobs`: creates
//! past either are answered 507 and change nothing; everything else goes on.

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use presque::MemoryLimit;

use crate::delivery::{as_holder, lease_one};
use crate::harness::*;
use crate::helpers::*;

const MEMORY_FULL: &str = "queue memory is full";
/// A budget of about 86 jobs of [`body`]'s size (1,000 bytes plus 192 of overhead).
const BUDGET: u64 = 100_000;

/// A JSON job of exactly 1,000 bytes.
fn body(i: usize) -> String {
    let head = format!("{{\"n\":{i},\"pad\":\"");
    format!("{head}{}\"}}", "x".repeat(1000 - head.len() - 2))
}

async fn small_budget_app() -> TestApp {
    spawn_app_with(|s| s.limits.max_memory_bytes = MemoryLimit::Bytes(BUDGET)).await
}

/// Posts jobs until the budget refuses one; returns how many were taken.
async fn fill(app: &TestApp, queue: &str) -> usize {
    for i in 0..10_000 {
        let r = app.post_json(&format!("/q/{queue}"), &body(i)).await;
        if r.status() == StatusCode::INSUFFICIENT_STORAGE {
            assert_error(r, StatusCode::INSUFFICIENT_STORAGE, MEMORY_FULL).await;
            return i;
        }
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    panic!("the budget never refused a job");
}

async fn size(app: &TestApp, queue: &str) -> u64 {
    app.get_json(&format!("/status/{queue}")).await.1["size"]
        .as_u64()
        .unwrap()
}

#[actix_web::test]
async fn a_full_budget_refuses_creates_but_not_fetches_acks_or_deletes() {
    let app = small_budget_app().await;
    let taken = fill(&app, "m").await;
    assert!((80..=86).contains(&taken), "{taken} jobs fit");
    // Every producer route is refused, on any queue: the budget is the server's.
    assert_error(
        app.post_json("/q/other", &body(0)).await,
        StatusCode::INSUFFICIENT_STORAGE,
        MEMORY_FULL,
    )
    .await;
    let r = app
        .post_json("/qb/m", &format!("{{\"jobs\":[{}]}}", body(0)))
        .await;
    assert_error(r, StatusCode::INSUFFICIENT_STORAGE, MEMORY_FULL).await;
    assert_eq!(size(&app, "m").await, taken as u64);

    // Fetching frees room: one job out, one job in.
    assert_eq!(app.get("/q/m").await.status(), StatusCode::OK);
    assert_eq!(
        app.post_json("/q/m", &body(1)).await.status(),
        StatusCode::CREATED
    );
    assert_error(
        app.post_json("/q/m", &body(2)).await,
        StatusCode::INSUFFICIENT_STORAGE,
        MEMORY_FULL,
    )
    .await;

    // A leased job still counts; its ack frees it.
    let (id, token, _) = lease_one(&app, "m", "60", "w").await;
    assert_eq!(
        app.post_json("/q/m", &body(3)).await.status(),
        StatusCode::INSUFFICIENT_STORAGE
    );
    let r = as_holder(&app, Method::DELETE, &format!("/q/m/{id}"), &token).await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        app.post_json("/q/m", &body(4)).await.status(),
        StatusCode::CREATED
    );

    // Deleting the queue frees everything: a full queue's worth fits again.
    assert!(app.delete("/q/m").await.status().is_success());
    assert_eq!(fill(&app, "m2").await, taken);
}

#[actix_web::test]
async fn a_batch_the_budget_cannot_hold_is_refused_whole() {
    let app = small_budget_app().await;
    let jobs: Vec<String> = (0..100).map(body).collect();
    assert_error(
        app.post_json("/qb/b", &format!("{{\"jobs\":[{}]}}", jobs.join(",")))
            .await,
        StatusCode::INSUFFICIENT_STORAGE,
        MEMORY_FULL,
    )
    .await;
    assert_eq!(size(&app, "b").await, 0);
    let r = app
        .post_json("/qb/b", &format!("{{\"jobs\":[{}]}}", jobs[..50].join(",")))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(size(&app, "b").await, 50);
    // 50 more do not fit beside them: none is taken.
    let r = app
        .post_json("/qb/b", &format!("{{\"jobs\":[{}]}}", jobs[50..].join(",")))
        .await;
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(size(&app, "b").await, 50);
}

#[actix_web::test]
async fn max_jobs_is_set_shown_enforced_and_removed_through_settings() {
    let app = spawn_app().await;
    let (status, s) = app.get_json("/settings/j").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (s["max_jobs"].clone(), s["max_jobs_is_default"].clone()),
        (Value::Null, json!(true))
    );
    let (status, s) = json_of(app.post_json("/settings/j", "{\"max_jobs\": 2}").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (s["max_jobs"].clone(), s["max_jobs_is_default"].clone()),
        (json!(2), json!(false))
    );
    // max_attempts is untouched by a body that does not name it.
    assert_eq!(s["max_attempts_is_default"], json!(true));
    assert_error_contains(
        app.post_json("/settings/j", "{\"max_jobs\": 0}").await,
        StatusCode::BAD_REQUEST,
        "max_jobs must be",
    )
    .await;

    let full = "queue is full (max_jobs 2)";
    assert_eq!(
        app.post_json("/q/j", "1").await.status(),
        StatusCode::CREATED
    );
    // A batch that would go past it is refused whole.
    assert_error(
        app.post_json("/qb/j", "{\"jobs\":[2,3]}").await,
        StatusCode::INSUFFICIENT_STORAGE,
        full,
    )
    .await;
    assert_eq!(
        app.post_json("/q/j", "2").await.status(),
        StatusCode::CREATED
    );
    assert_error(
        app.post_json("/q/j?delay=60", "3").await,
        StatusCode::INSUFFICIENT_STORAGE,
        full,
    )
    .await;
    // Leased jobs count; fetched (gone) ones do not.
    let (_, _, _) = lease_one(&app, "j", "60", "w").await;
    assert_error(
        app.post_json("/q/j", "3").await,
        StatusCode::INSUFFICIENT_STORAGE,
        full,
    )
    .await;
    assert_eq!(app.get("/q/j").await.status(), StatusCode::OK);
    assert_eq!(
        app.post_json("/q/j", "3").await.status(),
        StatusCode::CREATED
    );

    let (_, s) = json_of(app.post_json("/settings/j", "{\"max_jobs\": null}").await).await;
    assert_eq!(s["max_jobs"], Value::Null);
    for i in 0..5 {
        let r = app.post_json("/q/j", &i.to_string()).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
}

#[actix_web::test]
async fn the_server_default_max_jobs_applies_to_queues_without_their_own() {
    let app = spawn_app_with(|s| s.limits.default_max_jobs = 1).await;
    assert_eq!(app.get_json("/settings/d").await.1["max_jobs"], json!(1));
    assert_eq!(
        app.post_json("/q/d", "1").await.status(),
        StatusCode::CREATED
    );
    assert_error(
        app.post_json("/q/d", "2").await,
        StatusCode::INSUFFICIENT_STORAGE,
        "queue is full (max_jobs 1)",
    )
    .await;
    app.post_json("/settings/d", "{\"max_jobs\": 3}").await;
    assert_eq!(
        app.post_json("/q/d", "2").await.status(),
        StatusCode::CREATED
    );
}

/// Both limits survive a restart: `max_jobs` from the log (SIGKILL, no snapshot) and
/// then from a snapshot (graceful stop), and the budget counts the recovered jobs.
#[actix_web::test]
async fn max_jobs_and_the_budget_hold_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[storage]\nfsync = \"always\"\nsnapshot_interval_secs = 3600\n\
         [limits]\nmax_memory_bytes = {BUDGET}\n"
    );
    std::fs::write(dir.path().join("presque.toml"), config).unwrap();
    let client = Client::new();
    let full = StatusCode::INSUFFICIENT_STORAGE;

    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    assert_eq!(
        post(&client, &server, "/settings/j", "{\"max_jobs\": 1}").await,
        StatusCode::OK
    );
    assert_eq!(
        post(&client, &server, "/q/j", "1").await,
        StatusCode::CREATED
    );
    let mut taken = 1;
    while post(&client, &server, "/q/big", &body(taken)).await == StatusCode::CREATED {
        taken += 1;
    }
    assert!(taken > 50, "{taken}");
    server.kill9();

    for restart in ["after SIGKILL", "after a graceful stop"] {
        let server = start_binary(dir.path(), &NODE_ARGS, &[]);
        assert_eq!(
            post(&client, &server, "/q/big", &body(0)).await,
            full,
            "{restart}"
        );
        // Room made on another queue lets creates in again.
        let r = client.get(server.url("/q/big")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{restart}");
        let r = post(&client, &server, "/q/other", &body(2)).await;
        assert_eq!(r, StatusCode::CREATED, "{restart}");
        let settings: Value = client
            .get(server.url("/settings/j"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(settings["max_jobs"], json!(1), "{restart}");
        // The budget has room for this job, but the queue has none.
        let r = client.get(server.url("/q/big")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(post(&client, &server, "/q/j", "2").await, full, "{restart}");
        // Refill what was taken out, so the next round starts full again.
        assert_eq!(
            post(&client, &server, "/q/big", &body(1)).await,
            StatusCode::CREATED
        );
        server.stop();
    }
}
