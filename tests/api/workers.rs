//! `/w/...`: the worker registry, both ways of naming a worker.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

async fn register_header(app: &TestApp, queue: &str, worker: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/w/{queue}")))
        .header("X-presque-workerid", worker)
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn register_with_header_and_read_stats() {
    let app = spawn_app().await;
    let before = now_secs_f64().floor() as u64;
    let r = register_header(&app, "jobs", "w1").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.text().await.unwrap(), "");
    let (status, w) = app.get_json("/w/?worker_id=w1").await;
    assert_eq!(status, StatusCode::OK);
    let started = w["started_at"].as_u64().unwrap();
    assert!(started >= before && started <= before + 2);
    assert_eq!(
        w,
        json!({"worker_id": "w1", "started_at": started, "processed": 0, "failed": 0})
    );
}

#[actix_web::test]
async fn register_with_seed_body_form() {
    let app = spawn_app().await;
    // The seed's curl sends a misspelt content type: none is required here.
    let r = app
        .client
        .post(app.url("/w/queuename"))
        .header("Content-Type", "appplication/json")
        .body("{\"worker_id\":\"worker_1\",\"other\":true}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, all) = app.get_json("/w/").await;
    assert_eq!(all, json!(["worker_1"]));
}

#[actix_web::test]
async fn register_without_id_is_refused() {
    let app = spawn_app().await;
    for body in ["", "{}", "{\"worker_id\":\"\"}", "{\"worker_id\":null}"] {
        let r = app
            .client
            .post(app.url("/w/q"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, "worker_id is missing").await;
    }
    let r = app
        .client
        .post(app.url("/w/q"))
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_error_contains(r, StatusCode::BAD_REQUEST, "invalid JSON").await;
    let (_, all) = app.get_json("/w/").await;
    assert_eq!(all, json!([]));
}

#[actix_web::test]
async fn queue_view_lists_workers_and_queue_counters() {
    let app = spawn_app().await;
    register_header(&app, "jobs", "b").await;
    register_header(&app, "jobs", "a").await;
    register_header(&app, "other", "c").await;
    app.post_json("/q/jobs", "{}").await;
    app.post_json("/q/jobs", "{}").await;
    app.get("/q/jobs").await;
    app.put_json_as("/q/jobs", "{}", "a").await;
    let (status, w) = app.get_json("/w/?queue_name=jobs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        w,
        json!({"queue_name": "jobs", "workers_list": ["a", "b"], "processed": 1, "failed": 1})
    );
    // queue_name wins over worker_id.
    let (_, w) = app.get_json("/w/?worker_id=a&queue_name=other").await;
    assert_eq!(w["workers_list"], json!(["c"]));
    let (_, w) = app.get_json("/w/?queue_name=empty").await;
    assert_eq!(
        w,
        json!({"queue_name": "empty", "workers_list": [], "processed": 0, "failed": 0})
    );
    let (_, all) = app.get_json("/w/").await;
    assert_eq!(all, json!(["a", "b", "c"]));
}

#[actix_web::test]
async fn worker_counters_follow_its_requests() {
    let app = spawn_app().await;
    register_header(&app, "jobs", "w").await;
    for _ in 0..3 {
        app.post_json("/q/jobs", "{}").await;
    }
    app.get_as("/q/jobs", "w").await;
    app.get_as("/q/jobs", "w").await;
    app.get_as("/q/jobs", "someone-else").await;
    app.put_json_as("/q/jobs", "{}", "w").await;
    let (_, w) = app.get_json("/w/?worker_id=w").await;
    assert_eq!(w["processed"], 2);
    assert_eq!(w["failed"], 1);
    // A 404 fetch counts nothing.
    app.get_as("/q/empty", "w").await;
    let (_, w) = app.get_json("/w/?worker_id=w").await;
    assert_eq!(w["processed"], 2);
    // Registering again resets the counters.
    register_header(&app, "jobs", "w").await;
    let (_, w) = app.get_json("/w/?worker_id=w").await;
    assert_eq!(
        (w["processed"].clone(), w["failed"].clone()),
        (json!(0), json!(0))
    );
}

#[actix_web::test]
async fn unregister_with_header_or_query() {
    let app = spawn_app().await;
    register_header(&app, "q", "h").await;
    register_header(&app, "q", "s").await;
    let r = app
        .client
        .delete(app.url("/w/q"))
        .header("X-presque-workerid", "h")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.text().await.unwrap(), "");
    let r = app.delete("/w/q?worker_id=s").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, all) = app.get_json("/w/").await;
    assert_eq!(all, json!([]));
    let (_, w) = app.get_json("/w/?queue_name=q").await;
    assert_eq!(w["workers_list"], json!([]));
    assert_error(
        app.get("/w/?worker_id=h").await,
        StatusCode::NOT_FOUND,
        "worker not found",
    )
    .await;
}

#[actix_web::test]
async fn unregister_from_one_queue_keeps_the_others() {
    let app = spawn_app().await;
    register_header(&app, "q1", "w").await;
    register_header(&app, "q2", "w").await;
    app.delete("/w/q1?worker_id=w").await;
    let (_, all) = app.get_json("/w/").await;
    assert_eq!(all, json!(["w"]));
    let (_, w) = app.get_json("/w/?queue_name=q1").await;
    assert_eq!(w["workers_list"], json!([]));
    let (_, w) = app.get_json("/w/?queue_name=q2").await;
    assert_eq!(w["workers_list"], json!(["w"]));
}

#[actix_web::test]
async fn unregister_without_id_is_refused() {
    let app = spawn_app().await;
    assert_error(
        app.delete("/w/q").await,
        StatusCode::BAD_REQUEST,
        "worker_id is missing",
    )
    .await;
    assert_error(
        app.delete("/w/q?worker_id=").await,
        StatusCode::BAD_REQUEST,
        "worker_id is missing",
    )
    .await;
}

#[actix_web::test]
async fn unknown_worker_is_404() {
    let app = spawn_app().await;
    assert_error(
        app.get("/w/?worker_id=ghost").await,
        StatusCode::NOT_FOUND,
        "worker not found",
    )
    .await;
}
