//! `/health/live` and `/health/ready` over HTTP: answered on a running server, ready
//! refused while the log refuses writes, and how they meet authentication. (The
//! recovery window is too short to hit from outside: the gate's 503 is unit-tested in
//! `src/http/admit.rs`.)

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use presque::Settings;

#[actix_web::test]
async fn live_and_ready_on_a_running_server() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/health/live").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "live", "version": env!("CARGO_PKG_VERSION")})
    );
    let (status, body) = app.get_json("/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ready"}));
    // No query parameters, GET only.
    let r = app.get("/health/ready?x=1").await;
    assert_error_contains(r, StatusCode::BAD_REQUEST, "unknown query parameter").await;
    let r = app.post_json("/health/live", "{}").await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[actix_web::test]
async fn ready_is_503_while_the_log_refuses_writes() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_json("/q/jobs", "{\"n\":1}").await.status(),
        StatusCode::CREATED
    );
    std::fs::remove_dir_all(app.data_dir.path().join("data")).unwrap();
    // The log notices on its next write or its idle check of the directory.
    let _ = app.post_json("/q/jobs", "{\"n\":2}").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (response, body) = loop {
        let r = app.get("/health/ready").await;
        if r.status() != StatusCode::OK || Instant::now() > deadline {
            let retry = r
                .headers()
                .get("Retry-After")
                .map(|v| v.to_str().unwrap().to_owned());
            let (status, body) = json_of(r).await;
            break ((status, retry), body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        response,
        (StatusCode::SERVICE_UNAVAILABLE, Some("1".to_owned()))
    );
    assert_eq!(body["status"], "not ready");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("was removed"), "{reason}");
    // Still alive: the process serves HTTP.
    let (status, body) = app.get_json("/health/live").await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &Value::from("live"))
    );
}

const TOKEN: &str = "producer-token-0123456789";

async fn spawn_with_auth(open: &str) -> TestApp {
    let toml = format!(
        "[auth]\ntokens = [{{ role = \"producer\", token = \"{TOKEN}\" }}]\nopen_routes = [{open}]\n"
    );
    let auth = Settings::from_toml(&toml, std::path::Path::new("test.toml"))
        .unwrap()
        .auth;
    spawn_app_with(|s| s.auth = auth).await
}

#[actix_web::test]
async fn with_auth_live_is_always_open_and_ready_needs_a_token_or_open_routes() {
    let app = spawn_with_auth("").await;
    // Liveness: no token, or even a wrong one.
    assert_eq!(app.get("/health/live").await.status(), StatusCode::OK);
    let wrong = app
        .client
        .get(app.url("/health/live"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::OK);
    assert_eq!(
        app.get("/health/ready").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let with_token = app
        .client
        .get(app.url("/health/ready"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), StatusCode::OK);

    let open = spawn_with_auth("\"/health\"").await;
    assert_eq!(open.get("/health/ready").await.status(), StatusCode::OK);
    assert_eq!(open.get("/status").await.status(), StatusCode::UNAUTHORIZED);
}
