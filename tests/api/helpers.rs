//! `spawn_app()` and the endpoint helpers every test uses. The real binary as a
//! child process is `crate::harness`, shared with the benches.

use presque::{Application, Settings};
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

/// A running in-process server and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: Client,
    /// Held so the directory lives as long as the server.
    #[allow(dead_code)]
    pub data_dir: TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the real server on port 0 with a temporary data dir; `tweak` adjusts the
/// settings first.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        presque::telemetry::init();
    }
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::default();
    settings.server.bind = "127.0.0.1:0".parse().expect("addr");
    settings.server.workers = 2;
    settings.storage.data_dir = data_dir.path().join("data");
    tweak(&mut settings);
    let app = Application::build(settings).await.expect("server builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: Client::new(),
        data_dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn get_as(&self, path: &str, worker: &str) -> Response {
        self.client
            .get(self.url(path))
            .header("X-presque-workerid", worker)
            .send()
            .await
            .expect("GET")
    }

    /// POST with a JSON content type.
    pub async fn post_json(&self, path: &str, body: &str) -> Response {
        self.client
            .post(self.url(path))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("POST")
    }

    pub async fn put_json_as(&self, path: &str, body: &str, worker: &str) -> Response {
        self.client
            .put(self.url(path))
            .header("Content-Type", "application/json")
            .header("X-presque-workerid", worker)
            .body(body.to_owned())
            .send()
            .await
            .expect("PUT")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
    }

    /// GET returning status and parsed JSON body.
    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        json_of(self.get(path).await).await
    }
}

/// Status and JSON body of a response; asserts the JSON content type.
pub async fn json_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.expect("body");
    assert!(
        content_type.starts_with("application/json"),
        "content-type {content_type:?} for body {text}"
    );
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

/// Asserts an error response: status and exact message.
pub async fn assert_error(response: Response, status: StatusCode, message: &str) {
    let (got, body) = json_of(response).await;
    assert_eq!(got, status, "body: {body}");
    assert_eq!(body, serde_json::json!({ "error": message }));
}

/// Asserts an error response whose message contains `part`.
pub async fn assert_error_contains(response: Response, status: StatusCode, part: &str) {
    let (got, body) = json_of(response).await;
    assert_eq!(got, status, "body: {body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains(part), "{message:?} lacks {part:?}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
}

pub fn now_secs_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// `POST`s a JSON body to the binary at `server`; the answer's status.
pub async fn post(
    client: &Client,
    server: &crate::harness::ServerProcess,
    path: &str,
    body: &str,
) -> StatusCode {
    client
        .post(server.url(path))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
}
