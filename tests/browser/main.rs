//! The dashboard in a real browser: Debian's `chromium`, headless, driven through
//! `chromedriver` (WebDriver) by `fantoccini`, against the real server binary. Needs
//! `apt-get install chromium chromium-driver` (`.ci/run` installs them); without them
//! the test fails, saying so, rather than skipping.

// A failed unwrap is a failed test: the server-only rules in Cargo.toml [lints] do
// not apply.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

#[path = "../harness/mod.rs"]
mod harness;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tempfile::TempDir;

use harness::{start_binary, ServerProcess};

const INSTALL: &str = "install Debian's chromium and chromium-driver \
    (apt-get install chromium chromium-driver; .ci/run does it when they are missing)";

/// How long the page may take to show a change (it polls every 1.5 s).
const SHOW_LIMIT: Duration = Duration::from_secs(15);

/// chromedriver on a free port, killed on drop; and the browser profile it uses.
struct Driver {
    child: Child,
    url: String,
    profile: TempDir,
    log: std::path::PathBuf,
}

/// A test that fails midway never closes its session, and chromedriver's death does
/// not end the browser it started: the browser's processes are found by the profile
/// directory, which is this driver's own, and killed with chromedriver.
impl Drop for Driver {
    fn drop(&mut self) {
        let flag = format!(
            "--user-data-dir={}",
            self.profile.path().join("profile").display()
        );
        let ours = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                cmdline
                    .split(|b| *b == 0)
                    .any(|arg| arg == flag.as_bytes())
                    .then_some(pid)
            });
        for pid in ours {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_driver() -> Driver {
    let profile = tempfile::tempdir().expect("temp dir");
    let log = profile.path().join("chromedriver.log");
    let port = free_port();
    let program = ["/usr/bin/chromedriver", "chromedriver"]
        .into_iter()
        .find(|p| !p.starts_with('/') || std::path::Path::new(p).exists())
        .unwrap();
    let child = Command::new(program)
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start chromedriver ({e}): {INSTALL}"));
    let mut driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        profile,
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = driver.child.try_wait() {
            panic!("chromedriver exited ({status}) before listening: {INSTALL}");
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen within 20 s: {INSTALL}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    driver
}

/// A headless chromium session. The flags keep it off the network: on a machine
/// without one, chromium otherwise waits on its own background connections.
async fn open_browser(driver: &Driver) -> Client {
    // Two rustls backends are linked (ring for the server, aws-lc for fantoccini's
    // connector): name one. An error means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let profile = driver.profile.path().join("profile");
    let caps = json!({
        "goog:chromeOptions": {
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
        "goog:loggingPrefs": { "browser": "ALL" },
    });
    let caps = match caps {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    let connect = ClientBuilder::rustls()
        .expect("rustls connector")
        .capabilities(caps)
        .connect(&driver.url)
        .await;
    connect.unwrap_or_else(|e| {
        let log = std::fs::read_to_string(&driver.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        panic!(
            "chromium did not start through chromedriver ({e}): {INSTALL}\nchromedriver log (last lines, newest first):\n{}",
            tail.join("\n")
        )
    })
}

/// Runs `script` (a function body; `arguments` are `args`) until it returns something
/// `done` accepts; panics naming `what` past [`SHOW_LIMIT`].
async fn wait_until(
    browser: &Client,
    what: &str,
    script: &str,
    args: Vec<Value>,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + SHOW_LIMIT;
    loop {
        let value = browser.execute(script, args.clone()).await.unwrap();
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {SHOW_LIMIT:?}; last seen {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The same check over HTTP.
async fn wait_for_server(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + SHOW_LIMIT;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {SHOW_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The cell `field` of the overview row of `queue`, as text (null: no such row).
const CELL: &str = "const row = [...document.querySelectorAll('[data-testid=queue-row]')]\
    .find(r => r.dataset.queue === arguments[0]);\
    const cell = row && row.querySelector('[data-field=' + arguments[1] + ']');\
    return cell ? cell.textContent : null;";

/// The browser's console: entries at SEVERE level (errors, uncaught exceptions,
/// failed loads), read from chromedriver's log endpoint.
async fn console_errors(browser: &Client, driver: &Driver) -> Vec<Value> {
    let session = browser.session_id().await.unwrap().expect("a session id");
    let http = reqwest::Client::new();
    let mut answer = Value::Null;
    for path in ["se/log", "log"] {
        let r = http
            .post(format!("{}/session/{session}/{path}", driver.url))
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .unwrap();
        if r.status().is_success() {
            answer = r.json().await.unwrap();
            break;
        }
    }
    let entries = answer["value"]
        .as_array()
        .unwrap_or_else(|| panic!("chromedriver gave no browser log: {answer}"));
    entries
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .cloned()
        .collect()
}

struct Api {
    http: reqwest::Client,
    server: ServerProcess,
}

impl Api {
    async fn post(&self, path: &str, body: &str) -> reqwest::Response {
        self.http
            .post(self.server.url(path))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.http.get(self.server.url(path)).send().await.unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// A dead letter in `queue`: one attempt allowed, the job leased and failed.
    async fn dead_letter(&self, queue: &str, body: &str) -> u64 {
        let r = self
            .post(&format!("/settings/{queue}"), "{\"max_attempts\":1}")
            .await;
        assert!(r.status().is_success());
        assert_eq!(self.post(&format!("/q/{queue}"), body).await.status(), 201);
        let r = self
            .http
            .get(self.server.url(&format!("/q/{queue}?lease=60")))
            .header("X-presque-workerid", "worker-7")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let header = |name: &str| r.headers()[name].to_str().unwrap().to_owned();
        let id: u64 = header("x-presque-jobid").parse().unwrap();
        let token = header("x-presque-lease");
        let failed = self
            .http
            .put(self.server.url(&format!("/q/{queue}/{id}")))
            .header("X-presque-lease", token)
            .header("Content-Type", "application/json")
            .body("{\"error\":\"smtp said no\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(failed.status(), 200);
        id
    }
}

/// Clicks the first element `css` finds. Tables are redrawn at every poll, so a row
/// found may be replaced before the click lands (a stale element): then it is found
/// again.
async fn click(browser: &Client, css: &str) {
    let mut tries = 0;
    loop {
        let clicked = match browser.find(Locator::Css(css)).await {
            Ok(element) => element.click().await,
            Err(e) => Err(e),
        };
        match clicked {
            Ok(()) => return,
            Err(e) if tries < 5 => {
                tries += 1;
                eprintln!("click on {css} failed ({e}); again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot click {css}: {e}"),
        }
    }
}

#[tokio::test]
async fn the_dashboard_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_binary(
        dir.path(),
        &["--bind", "127.0.0.1:0", "--data-dir", "data"],
        &[],
    );
    let api = Api {
        http: reqwest::Client::new(),
        server,
    };
    // Queues whose names only sort right naturally, one named like markup, and one
    // holding a dead letter.
    let hostile = "<img src=x onerror=window.__injected=1>";
    let hostile_path = "/q/%3Cimg%20src%3Dx%20onerror%3Dwindow.__injected%3D1%3E";
    for path in ["/q/tenant-10", "/q/tenant-2", "/q/mail", hostile_path] {
        assert_eq!(api.post(path, "{\"n\":1}").await.status(), 201, "{path}");
    }
    let dead_id = api.dead_letter("dlq", "{\"to\":\"a@b.c\"}").await;
    // A worker holding a job.
    let leased = api
        .http
        .get(api.server.url("/q/tenant-2?lease=600"))
        .header("X-presque-workerid", "worker-3")
        .send()
        .await
        .unwrap();
    assert_eq!(leased.status(), 200);
    let leased_id = leased.headers()["x-presque-jobid"]
        .to_str()
        .unwrap()
        .to_owned();

    let driver = start_driver();
    let browser = open_browser(&driver).await;
    browser.goto(&api.server.url("/")).await.unwrap();
    browser
        .execute("window.__marker = 'same page';", vec![])
        .await
        .unwrap();

    // The overview shows the queues, in natural order, names as text.
    let names = wait_until(
        &browser,
        "the overview lists the queues",
        "return [...document.querySelectorAll('[data-testid=queue-row]')].map(r => r.dataset.queue);",
        vec![],
        |v| v.as_array().is_some_and(|a| a.len() == 5),
    )
    .await;
    assert_eq!(
        names,
        json!([
            "<img src=x onerror=window.__injected=1>",
            "dlq",
            "mail",
            "tenant-2",
            "tenant-10"
        ])
    );
    let shown = browser
        .execute(
            "const a = document.querySelector('[data-testid=queue-row] a');\
             return [a.textContent, document.querySelectorAll('#queues-body img').length, window.__injected === undefined];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(shown, json!([hostile, 0, true]));
    let row = browser
        .execute(
            "const r = [...document.querySelectorAll('[data-testid=queue-row]')].find(r => r.dataset.queue === 'dlq');\
             return [...r.querySelectorAll('td')].map(td => td.textContent);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        row,
        json!(["dlq", "open", "0", "0", "0", "1", "0", "1", "1"]),
        "dlq: ready, delayed, leased, dead, waiting, processed, failed"
    );

    let worker = wait_until(
        &browser,
        "the worker holding a job",
        "const r = [...document.querySelectorAll('[data-testid=worker-row]')]\
            .find(r => r.firstChild.textContent === 'worker-3');\
         return r ? r.lastChild.textContent : null;",
        vec![],
        |v| !v.is_null(),
    )
    .await;
    assert_eq!(worker, json!(format!("tenant-2#{leased_id}")));

    // A schedule shows with its cron, time zone and queue; deleting it asks first.
    let r = api
        .post(
            "/schedules/nightly",
            r#"{"cron": "0 0 3 * * *", "timezone": "Europe/Paris", "queue": "reports", "job": {"kind": "nightly"}}"#,
        )
        .await;
    assert_eq!(r.status(), 201);
    let row = wait_until(
        &browser,
        "the schedule row",
        "const r = [...document.querySelectorAll('[data-testid=schedule-row]')]\
            .find(r => r.firstChild.textContent === 'nightly');\
         return r ? [...r.querySelectorAll('td')].slice(0, 3).map(td => td.textContent) : null;",
        vec![],
        |v| !v.is_null(),
    )
    .await;
    assert_eq!(
        row,
        json!(["nightly", "0 0 3 * * * (Europe/Paris)", "reports"])
    );
    click(&browser, "[data-testid=schedule-delete]").await;
    click(&browser, "[data-testid=confirm-yes]").await;
    wait_for_server("the schedule is deleted", async || {
        api.get("/schedules/").await["size"] == 0
    })
    .await;
    // The throughput chart draws a line once it has two samples; the latency chart
    // shows when the server has /metrics and hides when it answers 404.
    wait_until(
        &browser,
        "the throughput chart",
        "return Number(document.querySelector('[data-testid=chart-throughput]').dataset.samples || 0);",
        vec![],
        |v| v.as_u64().is_some_and(|n| n >= 2),
    )
    .await;
    let metrics = api
        .http
        .get(api.server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .status();
    let latency_hidden = metrics == 404;
    wait_until(
        &browser,
        "the latency chart shown exactly when /metrics exists",
        "return document.querySelector('[data-testid=latency-panel]').hidden;",
        vec![],
        |v| v == &json!(latency_hidden),
    )
    .await;

    // A job posted elsewhere shows up without a reload.
    let ready = || browser.execute(CELL, vec![json!("mail"), json!("ready")]);
    assert_eq!(ready().await.unwrap(), json!("1"));
    // Less urgent than the default: listed after {"n":1}, its priority shown.
    assert_eq!(
        api.post("/q/mail?priority=200", "{\"n\":2}").await.status(),
        201
    );
    wait_until(
        &browser,
        "the ready count of mail rises to 2",
        CELL,
        vec![json!("mail"), json!("ready")],
        |v| v == "2",
    )
    .await;
    let marker = browser.execute("return window.__marker;", vec![]).await;
    assert_eq!(marker.unwrap(), json!("same page"), "the page reloaded");

    // The filter keeps the matching queues.
    browser
        .find(Locator::Css("[data-testid=filter]"))
        .await
        .unwrap()
        .send_keys("tenant")
        .await
        .unwrap();
    wait_until(
        &browser,
        "the filter keeps the tenants",
        "return [...document.querySelectorAll('[data-testid=queue-row]')].map(r => r.dataset.queue);",
        vec![],
        |v| v == &json!(["tenant-2", "tenant-10"]),
    )
    .await;
    browser
        .find(Locator::Css("[data-testid=filter]"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();

    // The queue page, by its link: closing the queue takes effect on the server.
    browser
        .execute("location.hash = '#/queue/mail';", vec![])
        .await
        .unwrap();
    wait_until(
        &browser,
        "the queue page of mail",
        "return document.querySelector('[data-testid=count-ready]')?.textContent ?? null;",
        vec![],
        |v| v == "2",
    )
    .await;
    assert_eq!(
        api.get("/control/mail").await["status"],
        1,
        "mail starts open"
    );
    wait_until(
        &browser,
        "the close button",
        "return document.querySelector('[data-testid=btn-open-close]').textContent;",
        vec![],
        |v| v == "Close queue",
    )
    .await;
    click(&browser, "[data-testid=btn-open-close]").await;
    wait_for_server("GET /control/mail says closed", async || {
        api.get("/control/mail").await["status"] == 0
    })
    .await;
    wait_until(
        &browser,
        "the page shows mail closed",
        "return document.querySelector('[data-testid=queue-state]').textContent;",
        vec![],
        |v| v == "closed",
    )
    .await;

    // A job's body, shown as text.
    click(&browser, "[data-testid=tab-ready]").await;
    wait_until(
        &browser,
        "the ready jobs of mail",
        "return document.querySelectorAll('[data-testid=job-row]').length;",
        vec![],
        |v| v == 2,
    )
    .await;
    let priorities = browser
        .execute(
            "return [...document.querySelectorAll('[data-testid=job-row] td.priority')].map(td => td.textContent);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(priorities, json!(["128", "200"]));
    click(&browser, "[data-testid=job-row]").await;
    let body = wait_until(
        &browser,
        "the job's body",
        "return document.querySelector('[data-testid=job-body]').textContent;",
        vec![],
        |v| v.as_str().is_some_and(|s| !s.is_empty()),
    )
    .await;
    let body: Value = serde_json::from_str(body.as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"n": 1}));

    // Retrying a dead letter from the page puts it back in the queue.
    browser
        .execute("location.hash = '#/queue/dlq';", vec![])
        .await
        .unwrap();
    wait_until(
        &browser,
        "the queue page of dlq",
        "return document.querySelector('[data-testid=queue-name]').textContent;",
        vec![],
        |v| v == "dlq",
    )
    .await;
    click(&browser, "[data-testid=tab-dead]").await;
    let dead_row = wait_until(
        &browser,
        "the dead letter of dlq",
        "const r = document.querySelector('[data-testid=job-row]');\
         return r && r.querySelector('[data-testid=retry-dead]') ? [r.dataset.id, r.textContent] : null;",
        vec![],
        |v| !v.is_null(),
    )
    .await;
    assert_eq!(dead_row[0], json!(dead_id.to_string()));
    assert!(
        dead_row[1].as_str().unwrap().contains("smtp said no"),
        "{dead_row}"
    );
    click(&browser, "[data-testid=retry-dead]").await;
    wait_for_server("the dead letter is back in dlq", async || {
        let job = api.get(&format!("/q/dlq/{dead_id}")).await;
        job["state"] == "ready"
    })
    .await;
    assert_eq!(api.get("/status/dlq").await["size"], 1);
    assert_eq!(api.get("/dead/dlq").await["jobs"], json!([]));

    // Purging asks first: cancel keeps the queue, confirming drops it.
    let queues = async || api.get("/status/").await["queues"].clone();
    click(&browser, "[data-testid=btn-purge]").await;
    let dialog = browser
        .find(Locator::Css("[data-testid=confirm]"))
        .await
        .unwrap();
    assert!(
        dialog.is_displayed().await.unwrap(),
        "no confirmation shown"
    );
    click(&browser, "[data-testid=confirm-no]").await;
    assert!(!dialog.is_displayed().await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(queues().await.as_array().unwrap().contains(&json!("dlq")));
    click(&browser, "[data-testid=btn-purge]").await;
    click(&browser, "[data-testid=confirm-yes]").await;
    wait_for_server("dlq is purged", async || {
        !queues().await.as_array().unwrap().contains(&json!("dlq"))
    })
    .await;

    // A phone-sized window: the queue table shows, and nothing is wider than the screen.
    browser.set_window_size(375, 812).await.unwrap();
    browser
        .execute("location.hash = '#/';", vec![])
        .await
        .unwrap();
    let layout = wait_until(
        &browser,
        "the overview at 375 px",
        "const t = document.querySelector('[data-testid=queues-table]');\
         const box = t.parentElement.getBoundingClientRect();\
         return [window.innerWidth, document.documentElement.scrollWidth, document.body.scrollWidth,\
                 t.offsetParent !== null, document.querySelectorAll('[data-testid=queue-row]').length,\
                 box.left >= 0 && box.right <= window.innerWidth];",
        vec![],
        |v| v[4].as_u64().is_some_and(|n| n >= 4),
    )
    .await;
    let width = layout[0].as_u64().unwrap();
    assert!(width <= 375, "the window is not narrow: {layout}");
    assert!(
        layout[1].as_u64().unwrap() <= width,
        "the page overflows: {layout}"
    );
    assert!(
        layout[2].as_u64().unwrap() <= width,
        "the body overflows: {layout}"
    );
    assert_eq!(layout[3], true, "the queue table is hidden: {layout}");
    assert_eq!(
        layout[5], true,
        "the table's box leaves the screen: {layout}"
    );
    let table = browser
        .find(Locator::Css("[data-testid=queues-table]"))
        .await
        .unwrap();
    assert!(table.is_displayed().await.unwrap());
    let marker = browser.execute("return window.__marker;", vec![]).await;
    assert_eq!(marker.unwrap(), json!("same page"), "the page reloaded");

    // No console errors all along. The log is read the same way a probe error is
    // found in it, so the check is known to see errors. `/metrics` may not exist in
    // this build: the page then hides its latency chart, and the browser notes the
    // 404 as a failed load, the one entry allowed.
    let errors = console_errors(&browser, &driver).await;
    browser
        .execute("console.error('presque-probe');", vec![])
        .await
        .unwrap();
    let probe = console_errors(&browser, &driver).await;
    assert!(
        probe.iter().any(|e| e["message"]
            .as_str()
            .unwrap_or("")
            .contains("presque-probe")),
        "the browser log does not show console errors: {probe:?}"
    );
    let unexpected: Vec<&Value> = errors
        .iter()
        .filter(|e| {
            let message = e["message"].as_str().unwrap_or("");
            !(e["source"] == "network" && message.contains("/metrics"))
        })
        .collect();
    assert!(unexpected.is_empty(), "console errors: {unexpected:?}");
    browser.close().await.unwrap();
}

#[tokio::test]
async fn with_tokens_on_the_page_asks_for_one_and_uses_it() {
    const ADMIN: &str = "admin-token-0123456789abc";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("presque.toml"),
        "[auth]\nopen_routes = [\"/\"]\n",
    )
    .unwrap();
    let server = start_binary(
        dir.path(),
        &harness::NODE_ARGS,
        &[("PRESQUE_TOKENS", &format!("admin:{ADMIN}"))],
    );
    let http = reqwest::Client::new();
    let posted = http
        .post(server.url("/q/secret-queue"))
        .bearer_auth(ADMIN)
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201);

    let driver = start_driver();
    let browser = open_browser(&driver).await;
    browser.goto(&server.url("/")).await.unwrap();
    // The page loads; its data needs the token.
    wait_until(
        &browser,
        "the token box",
        "return document.querySelector('[data-testid=auth]').hidden;",
        vec![],
        |v| v == false,
    )
    .await;
    let rows = browser
        .execute(
            "return document.querySelectorAll('[data-testid=queue-row]').length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(rows, 0);
    browser
        .find(Locator::Css("[data-testid=token-input]"))
        .await
        .unwrap()
        .send_keys(ADMIN)
        .await
        .unwrap();
    click(&browser, "[data-testid=token-save]").await;
    wait_until(
        &browser,
        "the queues, once the token is given",
        "return [...document.querySelectorAll('[data-testid=queue-row]')].map(r => r.dataset.queue);",
        vec![],
        |v| v == &json!(["secret-queue"]),
    )
    .await;
    let kept = browser
        .execute(
            "return [sessionStorage.getItem('presque-token') !== null, document.querySelector('[data-testid=auth]').hidden];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(kept, json!([true, true]));
    // The 401s before the token are failed loads the browser notes; nothing else.
    let errors = console_errors(&browser, &driver).await;
    let unexpected: Vec<&Value> = errors
        .iter()
        .filter(|e| {
            let message = e["message"].as_str().unwrap_or("");
            !(e["source"] == "network"
                && (message.contains(" 401 ") || message.contains("/metrics")))
        })
        .collect();
    assert!(unexpected.is_empty(), "console errors: {unexpected:?}");
    browser.close().await.unwrap();
}
