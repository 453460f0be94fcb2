//! `/qb/NAME`: batches in and out.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn batch_post_then_fetch_returns_json_text_strings() {
    let app = spawn_app().await;
    let r = app
        .post_json(
            "/qb/b",
            "{\"jobs\": [{\"foo\":1}, {\"foo\": 2}, [3], \"four\"]}",
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.text().await.unwrap(), "");
    let r = app.get("/qb/b").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get("content-type").unwrap(), "application/json");
    assert_eq!(
        r.text().await.unwrap(),
        r#"["{\"foo\":1}","{\"foo\": 2}","[3]","\"four\""]"#
    );
    assert_error(app.get("/qb/b").await, StatusCode::NOT_FOUND, "no job").await;
}

#[actix_web::test]
async fn batch_size_defaults_to_10_and_is_respected() {
    let app = spawn_app().await;
    let jobs: Vec<String> = (0..25).map(|i| format!("{{\"n\":{i}}}")).collect();
    app.post_json("/qb/b", &format!("{{\"jobs\":[{}]}}", jobs.join(",")))
        .await;
    let (_, first) = app.get_json("/qb/b").await;
    let expected: Vec<&String> = jobs[..10].iter().collect();
    assert_eq!(first, json!(expected));
    let (_, second) = app.get_json("/qb/b?batch_size=12").await;
    assert_eq!(second.as_array().unwrap().len(), 12);
    assert_eq!(second[0], "{\"n\":10}");
    let (_, rest) = app.get_json("/qb/b?batch_size=1000").await;
    assert_eq!(rest, json!(["{\"n\":22}", "{\"n\":23}", "{\"n\":24}"]));
}

#[actix_web::test]
async fn single_and_batch_routes_share_the_queue_in_order() {
    let app = spawn_app().await;
    app.post_json("/q/s", "1").await;
    app.post_json("/qb/s", "{\"jobs\":[2,3]}").await;
    app.post_json("/q/s", "4").await;
    assert_eq!(app.get("/q/s").await.text().await.unwrap(), "1");
    let (_, batch) = app.get_json("/qb/s?batch_size=10").await;
    assert_eq!(batch, json!(["2", "3", "4"]));
}

#[actix_web::test]
async fn batch_fetch_counts_each_job_processed() {
    let app = spawn_app().await;
    app.client
        .post(app.url("/w/b"))
        .header("X-presque-workerid", "bw")
        .send()
        .await
        .unwrap();
    app.post_json("/qb/b", "{\"jobs\":[1,2,3]}").await;
    assert_eq!(app.get_as("/qb/b", "bw").await.status(), StatusCode::OK);
    let (_, j) = app.get_json("/j/b").await;
    assert_eq!(j["job_processed"], 3);
    let (_, w) = app.get_json("/w/?worker_id=bw").await;
    assert_eq!(w["processed"], 3);
}

#[actix_web::test]
async fn jobs_must_be_an_array() {
    let app = spawn_app().await;
    for body in [
        "{\"jobs\": {\"a\":1}}",
        "{\"jobs\": \"x\"}",
        "{\"other\": []}",
        "[1,2]",
        "{\"jobs\": null}",
    ] {
        assert_error(
            app.post_json("/qb/b", body).await,
            StatusCode::BAD_REQUEST,
            "jobs should be an array of job",
        )
        .await;
    }
    let (_, status) = app.get_json("/status/").await;
    assert_eq!(status["size"], 0);
}

#[actix_web::test]
async fn empty_jobs_array_creates_nothing() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_json("/qb/b", "{\"jobs\":[]}").await.status(),
        StatusCode::CREATED
    );
    assert_error(app.get("/qb/b").await, StatusCode::NOT_FOUND, "no job").await;
}

#[actix_web::test]
async fn put_and_delete_are_not_supported_in_batch_mode() {
    let app = spawn_app().await;
    let r = app.put_json_as("/qb/b", "{\"jobs\":[1]}", "w").await;
    assert_error(
        r,
        StatusCode::BAD_REQUEST,
        "PUT is not supported in batch mode",
    )
    .await;
    assert_error(
        app.delete("/qb/b").await,
        StatusCode::BAD_REQUEST,
        "DELETE is not supported in batch mode",
    )
    .await;
}

#[actix_web::test]
async fn batch_delayed_applies_to_all_and_uniq_is_refused() {
    let app = spawn_app().await;
    let due = now_secs_f64() + 60.0;
    let r = app
        .post_json(&format!("/qb/b?delayed={due}"), "{\"jobs\":[1,2]}")
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_error(app.get("/qb/b").await, StatusCode::NOT_FOUND, "no job").await;
    let (_, s) = app.get_json("/status/b").await;
    assert_eq!(s["size"], 0);
    assert_error(
        app.post_json("/qb/b?uniq=k", "{\"jobs\":[1]}").await,
        StatusCode::BAD_REQUEST,
        "uniq is not supported in batch mode",
    )
    .await;
}
