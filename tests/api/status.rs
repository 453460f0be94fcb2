//! `/j/NAME`, `/status/`, `/status/NAME` and `/control/NAME`.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn counters_have_exactly_the_protocol_keys() {
    let app = spawn_app().await;
    let (status, j) = app.get_json("/j/none").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        j,
        json!({"queue_name": "none", "job_count": 0, "job_failed": 0, "job_processed": 0})
    );
    app.post_json("/q/c", "{}").await;
    app.post_json("/q/c", "{}").await;
    app.post_json(&format!("/q/c?delayed={}", now_secs_f64() + 60.0), "{}")
        .await;
    app.get("/q/c").await;
    let (_, j) = app.get_json("/j/c").await;
    assert_eq!(
        j,
        json!({"queue_name": "c", "job_count": 1, "job_failed": 0, "job_processed": 1})
    );
}

#[actix_web::test]
async fn status_lists_queues_and_sizes() {
    let app = spawn_app().await;
    let (_, s) = app.get_json("/status/").await;
    assert_eq!(s, json!({"queues": [], "size": 0}));
    app.post_json("/q/b", "{}").await;
    app.post_json("/q/a", "{}").await;
    app.post_json("/q/a", "{}").await;
    app.post_json(&format!("/q/a?delayed={}", now_secs_f64() + 60.0), "{}")
        .await;
    let (_, s) = app.get_json("/status/").await;
    assert_eq!(s, json!({"queues": ["a", "b"], "size": 2}));
    let (_, s) = app.get_json("/status").await;
    assert_eq!(s["size"], 2);
    let (status, s) = app.get_json("/status/a").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s, json!({"queue": "a", "size": 2}));
    let (_, s) = app.get_json("/status/unknown").await;
    assert_eq!(s, json!({"queue": "unknown", "size": 0}));
}

#[actix_web::test]
async fn status_with_desc_lists_ready_jobs_as_text() {
    let app = spawn_app().await;
    app.post_json("/q/d", "{\"foo\":1}").await;
    app.post_json("/q/d", "{\"foo\": 2}").await;
    app.post_json(
        &format!("/q/d?delayed={}", now_secs_f64() + 60.0),
        "{\"later\":1}",
    )
    .await;
    let (_, s) = app.get_json("/status/d?with_desc=1").await;
    assert_eq!(
        s,
        json!({"queue": "d", "size": 2, "jobs": ["{\"foo\":1}", "{\"foo\": 2}"]})
    );
    // Looking does not take.
    let (_, j) = app.get_json("/j/d").await;
    assert_eq!(j["job_count"], 2);
    let (_, s) = app.get_json("/status/d?with_desc=0").await;
    assert_eq!(s, json!({"queue": "d", "size": 2}));
    let (_, s) = app.get_json("/status/none?with_desc=1").await;
    assert_eq!(s, json!({"queue": "none", "size": 0, "jobs": []}));
}

#[actix_web::test]
async fn control_reports_and_changes_the_state() {
    let app = spawn_app().await;
    let (status, c) = app.get_json("/control/q1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(c, json!({"queue": "q1", "status": 1}));
    // No content type needed on this route.
    let r = app
        .client
        .post(app.url("/control/q1"))
        .body("{\"status\":\"stop\"}")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(r).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"queue": "q1", "response": "updated"}));
    let (_, c) = app.get_json("/control/q1").await;
    assert_eq!(c, json!({"queue": "q1", "status": 0}));
    app.post_json("/control/q1", "{\"status\":\"start\"}").await;
    let (_, c) = app.get_json("/control/q1").await;
    assert_eq!(c, json!({"queue": "q1", "status": 1}));
}

#[actix_web::test]
async fn control_refuses_bad_bodies() {
    let app = spawn_app().await;
    assert_error(
        app.post_json("/control/q", "").await,
        StatusCode::BAD_REQUEST,
        "content is missing",
    )
    .await;
    assert_error(
        app.post_json("/control/q", "{\"status\":\"pause\"}").await,
        StatusCode::BAD_REQUEST,
        "status must be \"start\" or \"stop\", not \"pause\"",
    )
    .await;
    assert_error(
        app.post_json("/control/q", "{\"status\":1}").await,
        StatusCode::BAD_REQUEST,
        "status must be \"start\" or \"stop\", not 1",
    )
    .await;
    assert_error(
        app.post_json("/control/q", "{}").await,
        StatusCode::BAD_REQUEST,
        "status must be \"start\" or \"stop\", not null",
    )
    .await;
    assert_error_contains(
        app.post_json("/control/q", "{\"status\":").await,
        StatusCode::BAD_REQUEST,
        "invalid JSON",
    )
    .await;
    let (_, c) = app.get_json("/control/q").await;
    assert_eq!(c["status"], 1);
}

#[actix_web::test]
async fn the_queue_list_pages_by_name_once_asked_or_once_long() {
    let app = spawn_app().await;
    for name in ["d", "a", "c", "b", "e"] {
        app.post_json(&format!("/q/{name}"), "1").await;
    }
    // Not asked, and short: the original answer, key for key.
    let (_, whole) = app.get_json("/status/").await;
    assert_eq!(
        whole,
        json!({"queues": ["a", "b", "c", "d", "e"], "size": 5})
    );
    let mut seen = Vec::new();
    let mut path = "/status/?limit=2".to_owned();
    loop {
        let (status, page) = app.get_json(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["size"], 5);
        for name in page["queues"].as_array().unwrap() {
            seen.push(name.as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/status/?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    // A name that is not a queue (deleted meanwhile) still places the page.
    let (_, rest) = app.get_json("/status/?after=bb").await;
    assert_eq!(rest["queues"], json!(["c", "d", "e"]));
    assert_eq!(rest["next"], json!(null));
    let (status, body) = app.get_json("/status/?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[actix_web::test]
async fn the_worker_view_pages_by_worker_id() {
    let app = spawn_app().await;
    for w in ["w3", "w1", "w5", "w2", "w4"] {
        let r = app
            .client
            .post(app.url("/w/jobs"))
            .header("X-presque-workerid", w)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut path = "/workers?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = app.get_json(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for w in page["workers"].as_array().unwrap() {
            seen.push(w["worker_id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/workers?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(
        (seen, pages),
        (
            vec!["w1", "w2", "w3", "w4", "w5"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>(),
            3
        )
    );
}
