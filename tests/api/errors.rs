//! Bad input: a precise JSON error with the right status, and nothing changed.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

async fn assert_nothing_queued(app: &TestApp) {
    let (_, status) = app.get_json("/status/").await;
    assert_eq!(status, json!({"queues": [], "size": 0}));
}

#[actix_web::test]
async fn missing_content_type_is_refused() {
    let app = spawn_app().await;
    for path in ["/q/x", "/qb/x"] {
        let r = app
            .client
            .post(app.url(path))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_error(
            r,
            StatusCode::BAD_REQUEST,
            "content-type must be set to application/json",
        )
        .await;
        let r = app
            .client
            .post(app.url(path))
            .header("Content-Type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_error(
            r,
            StatusCode::BAD_REQUEST,
            "content-type must be set to application/json",
        )
        .await;
    }
    let r = app
        .client
        .put(app.url("/q/x"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_error(
        r,
        StatusCode::BAD_REQUEST,
        "content-type must be set to application/json",
    )
    .await;
    assert_nothing_queued(&app).await;
}

#[actix_web::test]
async fn empty_body_is_job_missing() {
    let app = spawn_app().await;
    for path in ["/q/x", "/qb/x"] {
        assert_error(
            app.post_json(path, "").await,
            StatusCode::BAD_REQUEST,
            "job is missing",
        )
        .await;
    }
    assert_nothing_queued(&app).await;
}

#[actix_web::test]
async fn malformed_json_is_refused() {
    let app = spawn_app().await;
    for body in ["{\"a\":", "not json", "{} {}", "{\"a\":1,}"] {
        assert_error_contains(
            app.post_json("/q/x", body).await,
            StatusCode::BAD_REQUEST,
            "invalid JSON",
        )
        .await;
        assert_error_contains(
            app.post_json("/qb/x", body).await,
            StatusCode::BAD_REQUEST,
            "invalid JSON",
        )
        .await;
    }
    // Invalid UTF-8 inside a string.
    let r = app
        .client
        .post(app.url("/q/x"))
        .header("Content-Type", "application/json")
        .body(vec![b'"', 0xff, b'"'])
        .send()
        .await
        .unwrap();
    assert_error_contains(r, StatusCode::BAD_REQUEST, "invalid JSON").await;
    assert_nothing_queued(&app).await;
}

#[actix_web::test]
async fn oversized_body_is_413_and_changes_nothing() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 64).await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(100));
    for path in ["/q/x", "/qb/x", "/control/x"] {
        let r = app.post_json(path, &big).await;
        assert_error_contains(r, StatusCode::PAYLOAD_TOO_LARGE, "64 bytes").await;
    }
    // Exactly at the limit is fine.
    let fits = format!("{{\"pad\":\"{}\"}}", "x".repeat(64 - 10));
    assert_eq!(fits.len(), 64);
    app.client.delete(app.url("/q/x")).send().await.unwrap();
    let (_, status) = app.get_json("/status/").await;
    assert_eq!(status["size"], 0);
    assert_eq!(
        app.post_json("/q/x", &fits).await.status(),
        StatusCode::CREATED
    );
}

#[actix_web::test]
async fn oversized_chunked_body_is_413() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 1024).await;
    let chunks: Vec<Result<String, std::io::Error>> = (0..64)
        .map(|_| Ok(format!("[{}]", "1,".repeat(20) + "1")))
        .collect();
    let r = app
        .client
        .post(app.url("/q/x"))
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_error_contains(r, StatusCode::PAYLOAD_TOO_LARGE, "1024 bytes").await;
    assert_nothing_queued(&app).await;
}

#[actix_web::test]
async fn bad_queue_names_are_refused() {
    let app = spawn_app().await;
    let long = "n".repeat(256);
    let cases = [
        (
            format!("/q/{long}"),
            "invalid queue name: is longer than 255 bytes",
        ),
        (
            "/q/a%2Fb".to_owned(),
            "invalid queue name: must not contain '/'",
        ),
        (
            "/q/a%01b".to_owned(),
            "invalid queue name: must not contain control characters",
        ),
        (
            "/q/a%0Ab".to_owned(),
            "invalid queue name: must not contain control characters",
        ),
    ];
    for (path, message) in &cases {
        assert_error(
            app.post_json(path, "{}").await,
            StatusCode::BAD_REQUEST,
            message,
        )
        .await;
        assert_error(app.get(path).await, StatusCode::BAD_REQUEST, message).await;
    }
    // A second segment names a job in the queue.
    assert_error(
        app.get("/q/a/b").await,
        StatusCode::BAD_REQUEST,
        "invalid job id: \"b\"",
    )
    .await;
    assert_error(
        app.get("/qb/a/b").await,
        StatusCode::BAD_REQUEST,
        "invalid queue name: must not contain '/'",
    )
    .await;
    let ok = "n".repeat(255);
    assert_eq!(
        app.post_json(&format!("/q/{ok}"), "{}").await.status(),
        StatusCode::CREATED
    );
    let (_, status) = app.get_json("/status/").await;
    assert_eq!(status["queues"], json!([ok]));
}

#[actix_web::test]
async fn empty_queue_name_is_missing_on_every_route() {
    let app = spawn_app().await;
    for path in ["/q/", "/qb/", "/j/", "/control/"] {
        assert_error(
            app.get(path).await,
            StatusCode::NOT_FOUND,
            "queue name is missing",
        )
        .await;
    }
    assert_error(
        app.post_json("/q/", "{}").await,
        StatusCode::NOT_FOUND,
        "queue name is missing",
    )
    .await;
    assert_error(
        app.delete("/q/").await,
        StatusCode::NOT_FOUND,
        "queue name is missing",
    )
    .await;
    let r = app
        .client
        .post(app.url("/w/"))
        .header("X-presque-workerid", "w")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "queue name is missing").await;
    let r = app
        .client
        .delete(app.url("/w/"))
        .header("X-presque-workerid", "w")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "queue name is missing").await;
}

#[actix_web::test]
async fn delayed_must_be_a_number() {
    let app = spawn_app().await;
    for value in ["tomorrow", "", "-5", "NaN"] {
        let path = format!("/q/x?delayed={value}");
        assert_error_contains(
            app.post_json(&path, "{}").await,
            StatusCode::BAD_REQUEST,
            "delayed must be",
        )
        .await;
        let path = format!("/qb/x?delayed={value}");
        assert_error_contains(
            app.post_json(&path, "{\"jobs\":[{}]}").await,
            StatusCode::BAD_REQUEST,
            "delayed must be",
        )
        .await;
    }
    assert_nothing_queued(&app).await;
}

#[actix_web::test]
async fn batch_size_must_be_1_to_1000() {
    let app = spawn_app().await;
    app.post_json("/q/x", "{}").await;
    for value in ["0", "1001", "-1", "2.5", "ten", ""] {
        assert_error_contains(
            app.get(&format!("/qb/x?batch_size={value}")).await,
            StatusCode::BAD_REQUEST,
            "batch_size must be an integer from 1 to 1000",
        )
        .await;
    }
    // Nothing was taken by the refused requests.
    let (_, j) = app.get_json("/j/x").await;
    assert_eq!(j["job_count"], 1);
}

#[actix_web::test]
async fn unknown_methods_get_405_with_allow() {
    let app = spawn_app().await;
    let cases = [
        ("/q/x", "GET, POST, PUT, DELETE"),
        ("/qb/x", "GET, POST, PUT, DELETE"),
        ("/j/x", "GET"),
        ("/status/", "GET"),
        ("/status/x", "GET"),
        ("/control/x", "GET, POST"),
        ("/w/", "GET, POST, DELETE"),
        ("/w/x", "GET, POST, DELETE"),
        ("/", "GET"),
    ];
    for (path, allow) in cases {
        let r = app
            .client
            .request(reqwest::Method::PATCH, app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers().get("allow").unwrap(), allow, "{path}");
        assert_error(
            r,
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("method PATCH is not allowed here; allowed: {allow}"),
        )
        .await;
    }
    let r = app.client.put(app.url("/j/x")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[actix_web::test]
async fn unknown_paths_are_json_404() {
    let app = spawn_app().await;
    assert_error(app.get("/nope").await, StatusCode::NOT_FOUND, "not found").await;
    assert_error(app.get("/q").await, StatusCode::NOT_FOUND, "not found").await;
}

#[actix_web::test]
async fn bad_worker_header_is_refused() {
    let app = spawn_app().await;
    app.post_json("/q/x", "{}").await;
    let r = app.get_as("/q/x", &"w".repeat(300)).await;
    assert_error(
        r,
        StatusCode::BAD_REQUEST,
        "invalid worker_id: is longer than 255 bytes",
    )
    .await;
    // The job is still there.
    assert_eq!(app.get("/q/x").await.status(), StatusCode::OK);
}

#[actix_web::test]
async fn uniq_with_control_characters_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    for value in ["%00", "a%0Ab", &"%00".repeat(64)] {
        let path = format!("/q/x?uniq={value}");
        assert_error(
            app.post_json(&path, "{}").await,
            StatusCode::BAD_REQUEST,
            "invalid uniq: must not contain control characters",
        )
        .await;
    }
    let (_, status) = app.get_json("/status/x").await;
    assert_eq!(status["size"], 0);
    let ok = app.post_json("/q/x?uniq=user-42", "{}").await;
    assert_eq!(ok.status(), StatusCode::CREATED);
}
