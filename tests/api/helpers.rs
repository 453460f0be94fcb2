//! `spawn_app()` and the endpoint helpers every test uses.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

/// The real binary as a child process.
pub struct ServerProcess {
    pub child: Child,
    pub address: String,
    /// What the server printed up to its "listening" line (recovery reports).
    pub startup_lines: Vec<String>,
    /// Keeps the stderr reader thread alive: were it to stop reading, the server
    /// would block or die writing its logs.
    #[allow(dead_code)]
    pub stderr_lines: std::sync::mpsc::Receiver<String>,
}

/// Starts the built binary with `args` in `cwd`, waits for its "listening" line.
pub fn start_binary(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> ServerProcess {
    start_binary_with(cwd, args, envs, |_| {})
}

/// [`start_binary`], with a last say over the command (limits, signals).
pub fn start_binary_with(
    cwd: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    configure: impl FnOnce(&mut Command),
) -> ServerProcess {
    try_start_binary(cwd, args, envs, configure).unwrap_or_else(|(code, said)| {
        panic!("presque did not report its address (exit code {code:?}); it said:\n{said}")
    })
}

/// Starts the built binary and waits for its "listening" line: the server, or, if it
/// exits first, its exit code and everything it printed.
pub fn try_start_binary(
    cwd: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    configure: impl FnOnce(&mut Command),
) -> Result<ServerProcess, (Option<i32>, String)> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_presque"));
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("PRESQUE_BIND")
        .env_remove("PRESQUE_DATA_DIR")
        .env_remove("PRESQUE_FSYNC")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    configure(&mut command);
    let mut child = command.spawn().expect("spawn presque");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut startup_lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let address = line.find("listening on http://").map(|at| {
                    let rest = &line[at + "listening on ".len()..];
                    rest.split_whitespace().next().unwrap_or("").to_owned()
                });
                startup_lines.push(line);
                if let Some(address) = address {
                    return Ok(ServerProcess {
                        child,
                        address,
                        startup_lines,
                        stderr_lines: rx,
                    });
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let code = wait_for_exit(&mut child, Duration::from_secs(60));
                return Err((code, startup_lines.join("\n")));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "presque neither started nor exited within a minute; it said:\n{}",
                    startup_lines.join("\n")
                );
            }
        }
    }
}

/// Runs the binary expecting it to fail at start; returns (exit code, stderr).
pub fn run_binary_expect_exit(cwd: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_presque"))
        .args(args)
        .current_dir(cwd)
        .env_remove("PRESQUE_BIND")
        .env_remove("PRESQUE_DATA_DIR")
        .env_remove("PRESQUE_FSYNC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run presque");
    // A server that unexpectedly starts would never exit: bound the wait.
    let code = wait_for_exit(&mut child, Duration::from_secs(30));
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    (code, stderr)
}

/// Sends a signal to a child process with the system's `kill`.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}

/// A test that fails midway must not leave its server running.
impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl ServerProcess {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// SIGTERM, then waits for a clean exit; returns what it printed after starting.
    pub fn stop(mut self) -> Vec<String> {
        signal(&self.child, "TERM");
        let code = wait_for_exit(&mut self.child, Duration::from_secs(60));
        let lines = self.rest_of_stderr();
        assert_eq!(code, Some(0), "graceful stop failed:\n{}", lines.join("\n"));
        lines
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    pub fn rest_of_stderr(&self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.stderr_lines.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        lines
    }
}

/// Waits for a child to exit; kills it and panics past `limit`.
pub fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("server did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
