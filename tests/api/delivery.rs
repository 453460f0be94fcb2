//! Long-poll fetches, leases (ack, fail, extend, expiry, dead letters), job lookup and
//! the worker liveness view.

use std::io::Write;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

pub fn job_id_of(r: &reqwest::Response) -> String {
    r.headers()
        .get("X-presque-jobid")
        .expect("X-presque-jobid header")
        .to_str()
        .unwrap()
        .to_owned()
}

/// The delivery token(s) a lease came with.
pub fn token_of(r: &reqwest::Response) -> String {
    r.headers()
        .get("X-presque-lease")
        .expect("X-presque-lease header")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Leases the head job of `queue`: (job id, delivery token, body).
pub async fn lease_one(
    app: &TestApp,
    queue: &str,
    secs: &str,
    worker: &str,
) -> (String, String, String) {
    let r = app
        .get_as(&format!("/q/{queue}?lease={secs}"), worker)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let (id, token) = (job_id_of(&r), token_of(&r));
    (id, token, r.text().await.unwrap())
}

/// `method` on `path` (a `/q/NAME/ID` route) as the holder of `token`.
pub async fn as_holder(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .header("X-presque-lease", token)
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn a_waiting_get_receives_a_job_posted_after_it() {
    let app = spawn_app().await;
    let started = Instant::now();
    let waiter = app.get("/q/lp?wait=5");
    let poster = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.post_json("/q/lp", "{\"fresh\":1}").await
    };
    let (r, posted) = tokio::join!(waiter, poster);
    assert_eq!(posted.status(), StatusCode::CREATED);
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "{\"fresh\":1}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    // Handed over, not left in the queue.
    let (_, j) = app.get_json("/j/lp").await;
    assert_eq!(
        (j["job_count"].clone(), j["job_processed"].clone()),
        (json!(0), json!(1))
    );
}

#[actix_web::test]
async fn waiters_are_served_oldest_first() {
    let app = spawn_app().await;
    let first = app.get("/q/lp?wait=5");
    let second = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.get("/q/lp?wait=5").await
    };
    let poster = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.post_json("/q/lp", "1").await;
        app.post_json("/q/lp", "2").await;
    };
    let (a, b, ()) = tokio::join!(first, second, poster);
    assert_eq!(a.text().await.unwrap(), "1");
    assert_eq!(b.text().await.unwrap(), "2");
}

#[actix_web::test]
async fn a_waiter_that_disconnects_takes_nothing() {
    let app = spawn_app().await;
    // One waiter hangs up by closing its socket, another by giving up client-side.
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut socket = std::net::TcpStream::connect(&address).unwrap();
    socket
        .write_all(b"GET /q/dc?wait=10 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert!(impatient
        .get(app.url("/q/dc?wait=10"))
        .send()
        .await
        .is_err());
    drop(socket);
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.post_json("/q/dc", "\"kept\"").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = app.get("/q/dc").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "\"kept\"");
}

#[actix_web::test]
async fn a_delayed_job_reaches_a_waiter_when_due() {
    let app = spawn_app().await;
    let due = now_secs_f64() + 0.6;
    app.post_json(&format!("/q/dl?delayed={due}"), "\"due\"")
        .await;
    let r = app.get("/q/dl?wait=5").await;
    let now = now_secs_f64();
    assert_eq!(r.text().await.unwrap(), "\"due\"");
    assert!(now >= due, "{:.3}s early", due - now);
    assert!(now - due < 0.3, "{:.3}s late", now - due);
}

#[actix_web::test]
async fn a_wait_that_runs_out_is_the_usual_404() {
    let app = spawn_app().await;
    let started = Instant::now();
    assert_error(
        app.get("/q/none?wait=0.4").await,
        StatusCode::NOT_FOUND,
        "no job",
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_error(
        app.get("/qb/none?wait=0.2").await,
        StatusCode::NOT_FOUND,
        "no job",
    )
    .await;
    // wait=0 does not wait.
    let started = Instant::now();
    assert_error(
        app.get("/q/none?wait=0").await,
        StatusCode::NOT_FOUND,
        "no job",
    )
    .await;
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[actix_web::test]
async fn reopening_a_queue_serves_its_waiters() {
    let app = spawn_app().await;
    app.post_json("/q/c", "\"held\"").await;
    app.post_json("/control/c", "{\"status\":\"stop\"}").await;
    assert_error(
        app.get("/q/c?wait=0.3").await,
        StatusCode::NOT_FOUND,
        "queue is closed",
    )
    .await;
    let waiter = app.get("/q/c?wait=5");
    let opener = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.post_json("/control/c", "{\"status\":\"start\"}").await;
    };
    let (r, ()) = tokio::join!(waiter, opener);
    assert_eq!(r.text().await.unwrap(), "\"held\"");
}

#[actix_web::test]
async fn batch_waiters_get_what_arrives() {
    let app = spawn_app().await;
    let waiter = app.get("/qb/b?wait=5&batch_size=10");
    let poster = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.post_json("/qb/b", "{\"jobs\":[1,2,3]}").await;
    };
    let (r, ()) = tokio::join!(waiter, poster);
    let (status, body) = json_of(r).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!(["1", "2", "3"]));
}

#[actix_web::test]
async fn wait_and_waiters_are_capped() {
    let app = spawn_app_with(|s| {
        s.server.max_wait_secs = 5;
        s.server.max_waiters_per_queue = 2;
    })
    .await;
    assert_error_contains(
        app.get("/q/x?wait=6").await,
        StatusCode::BAD_REQUEST,
        "wait must be a number of seconds from 0 to 5",
    )
    .await;
    assert_error_contains(
        app.get("/q/x?wait=soon").await,
        StatusCode::BAD_REQUEST,
        "wait must be",
    )
    .await;
    let parked = async { tokio::join!(app.get("/q/x?wait=1"), app.get("/q/x?wait=1")) };
    let third = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.get("/q/x?wait=1").await
    };
    let ((a, b), c) = tokio::join!(parked, third);
    assert_error(
        c,
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests are waiting on this queue (limit 2)",
    )
    .await;
    assert_eq!(a.status(), StatusCode::NOT_FOUND);
    assert_eq!(b.status(), StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn a_lease_runs_out_and_the_job_returns_to_the_head() {
    let app = spawn_app().await;
    app.post_json("/q/l", "\"first\"").await;
    app.post_json("/q/l", "\"second\"").await;
    let r = app.get("/q/l?lease=0.4").await;
    assert_eq!(r.status(), StatusCode::OK);
    let id = job_id_of(&r);
    assert_eq!(r.text().await.unwrap(), "\"first\"");
    let (status, info) = app.get_json(&format!("/q/l/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["state"], "leased");
    assert_eq!(info["queue"], "l");
    assert_eq!(info["attempts"], 0);
    assert!(info["lease_deadline"].as_f64().unwrap() > now_secs_f64());
    // Leased jobs are not ready.
    let (_, j) = app.get_json("/j/l").await;
    assert_eq!(j["job_count"], 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, info) = app.get_json(&format!("/q/l/{id}")).await;
    assert_eq!(
        (info["state"].clone(), info["attempts"].clone()),
        (json!("ready"), json!(1))
    );
    // Back at the head, ahead of the job that was behind it.
    assert_eq!(app.get("/q/l").await.text().await.unwrap(), "\"first\"");
}

#[actix_web::test]
async fn ack_fail_and_extend() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.post_json("/q/w", &i.to_string()).await;
    }
    // Ack: the job is gone.
    let (id, token, _) = lease_one(&app, "w", "30", "w1").await;
    let r = as_holder(&app, Method::DELETE, &format!("/q/w/{id}"), &token).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.get(&format!("/q/w/{id}")).await,
        StatusCode::NOT_FOUND,
        "job not found",
    )
    .await;
    assert_error(
        as_holder(&app, Method::DELETE, &format!("/q/w/{id}"), &token).await,
        StatusCode::NOT_FOUND,
        "job not found",
    )
    .await;

    // Fail: counted, and back at the tail.
    let (id, token, body) = lease_one(&app, "w", "30", "w1").await;
    assert_eq!(body, "1");
    let r = app
        .client
        .put(app.url(&format!("/q/w/{id}")))
        .header("X-presque-workerid", "w1")
        .header("X-presque-lease", token)
        .send()
        .await
        .unwrap();
    let (status, info) = json_of(r).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (info["state"].clone(), info["attempts"].clone()),
        (json!("ready"), json!(1))
    );
    let (_, j) = app.get_json("/j/w").await;
    assert_eq!(j["job_failed"], 1);
    assert_eq!(app.get("/q/w").await.text().await.unwrap(), "2");

    // Fail with a delay.
    let (id, token, _) = lease_one(&app, "w", "30", "w1").await;
    let later = now_secs_f64() + 60.0;
    let r = as_holder(
        &app,
        Method::PUT,
        &format!("/q/w/{id}?delayed={later}"),
        &token,
    )
    .await;
    let (_, info) = json_of(r).await;
    assert_eq!(
        (info["state"].clone(), info["attempts"].clone()),
        (json!("delayed"), json!(2))
    );

    // Extend: a short lease made long outlives its first deadline.
    app.post_json("/q/x", "\"x\"").await;
    let (id, token, _) = lease_one(&app, "x", "0.3", "w1").await;
    let r = as_holder(&app, Method::POST, &format!("/q/x/{id}?lease=30"), &token).await;
    let (status, info) = json_of(r).await;
    assert_eq!(status, StatusCode::OK);
    assert!(info["lease_deadline"].as_f64().unwrap() > now_secs_f64() + 20.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, info) = app.get_json(&format!("/q/x/{id}")).await;
    assert_eq!(info["state"], "leased");
    let r = as_holder(&app, Method::POST, &format!("/q/x/{id}"), &token).await;
    assert_error_contains(r, StatusCode::BAD_REQUEST, "lease is missing").await;
    // The token still holds after the extension: the holder acks.
    let r = as_holder(&app, Method::DELETE, &format!("/q/x/{id}"), &token).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[actix_web::test]
async fn acting_on_a_job_that_is_not_leased_is_a_conflict() {
    let app = spawn_app().await;
    app.post_json("/q/n", "1").await;
    let (id, token, _) = lease_one(&app, "n", "0.2", "w1").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The lease ran out: the job is back in the queue, and the late ack is refused.
    for (method, path) in [
        (Method::DELETE, format!("/q/n/{id}")),
        (Method::PUT, format!("/q/n/{id}")),
        (Method::POST, format!("/q/n/{id}?lease=5")),
    ] {
        let r = as_holder(&app, method, &path, &token).await;
        assert_error(r, StatusCode::CONFLICT, "lease is no longer held").await;
    }
    let (_, info) = app.get_json(&format!("/q/n/{id}")).await;
    assert_eq!(
        (info["state"].clone(), info["attempts"].clone()),
        (json!("ready"), json!(1))
    );
    assert_error(
        app.get("/q/n/999999").await,
        StatusCode::NOT_FOUND,
        "job not found",
    )
    .await;
    assert_error(
        app.get("/q/nope/1").await,
        StatusCode::NOT_FOUND,
        "job not found",
    )
    .await;
    assert_error_contains(
        app.get("/q/n?lease=0").await,
        StatusCode::BAD_REQUEST,
        "lease must be",
    )
    .await;
    assert_error_contains(
        app.get("/q/n?lease=90000").await,
        StatusCode::BAD_REQUEST,
        "lease must be",
    )
    .await;
}

#[actix_web::test]
async fn jobs_dead_letter_after_max_attempts_and_can_be_retried_or_purged() {
    let app = spawn_app().await;
    let (_, s) = app.get_json("/settings/d").await;
    assert_eq!(
        s,
        json!({"queue": "d", "max_attempts": 5, "max_attempts_is_default": true,
            "max_jobs": null, "max_jobs_is_default": true,
            "backoff": {"kind": "none"}, "backoff_is_default": true, "on_expiry": "dead"})
    );
    let (status, s) = json_of(app.post_json("/settings/d", "{\"max_attempts\": 2}").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        s,
        json!({"queue": "d", "max_attempts": 2, "max_attempts_is_default": false,
            "max_jobs": null, "max_jobs_is_default": true,
            "backoff": {"kind": "none"}, "backoff_is_default": true, "on_expiry": "dead"})
    );
    assert_error_contains(
        app.post_json("/settings/d", "{\"max_attempts\": 0}").await,
        StatusCode::BAD_REQUEST,
        "max_attempts must be",
    )
    .await;

    app.post_json("/q/d", "{\"doomed\":true}").await;
    let mut id = String::new();
    for _ in 0..2 {
        let (leased, token, _) = lease_one(&app, "d", "30", "w1").await;
        id = leased;
        as_holder(&app, Method::PUT, &format!("/q/d/{id}"), &token).await;
    }
    let (_, info) = app.get_json(&format!("/q/d/{id}")).await;
    assert_eq!(
        (info["state"].clone(), info["attempts"].clone()),
        (json!("dead"), json!(2))
    );
    app.post_json("/q/d", "{\"doomed\":false}").await;
    let (status, mut dead) = app.get_json("/dead/d").await;
    assert_eq!(status, StatusCode::OK);
    let died_at = dead["jobs"][0]["died_at"].take().as_f64().unwrap();
    assert!((died_at - now_secs_f64()).abs() < 5.0, "{died_at}");
    for error in dead["jobs"][0]["errors"].as_array_mut().unwrap() {
        error["at"] = json!(0);
    }
    assert_eq!(
        dead,
        json!({"queue": "d", "jobs": [{
            "id": id.parse::<u64>().unwrap(), "attempts": 2, "died_at": null, "reason": "failed",
            "errors": [{"at": 0, "worker_id": "w1", "error": null}, {"at": 0, "worker_id": "w1", "error": null}],
            "job": {"doomed": true}
        }], "next": null})
    );
    // Retry: back at the tail with a clean slate.
    let (_, r) = json_of(app.client.post(app.url("/dead/d")).send().await.unwrap()).await;
    assert_eq!(r, json!({"queue": "d", "retried": 1}));
    let (_, info) = app.get_json(&format!("/q/d/{id}")).await;
    assert_eq!(
        (info["state"].clone(), info["attempts"].clone()),
        (json!("ready"), json!(0))
    );
    assert_eq!(
        app.get("/q/d").await.text().await.unwrap(),
        "{\"doomed\":false}"
    );
    // Kill it again by lease expiry, then purge it by id.
    app.post_json("/settings/d", "{\"max_attempts\": 1}").await;
    app.get("/q/d?lease=0.1").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, info) = app.get_json(&format!("/q/d/{id}")).await;
    assert_eq!(info["state"], "dead");
    assert_error(
        app.delete("/dead/d?id=424242").await,
        StatusCode::NOT_FOUND,
        "job not found",
    )
    .await;
    let (_, r) = json_of(app.delete(&format!("/dead/d?id={id}")).await).await;
    assert_eq!(r, json!({"queue": "d", "purged": 1}));
    let (_, dead) = app.get_json("/dead/d").await;
    assert_eq!(dead, json!({"queue": "d", "jobs": [], "next": null}));
}

#[actix_web::test]
async fn batch_leases_name_every_job() {
    let app = spawn_app().await;
    app.post_json("/qb/b", "{\"jobs\":[1,2,3]}").await;
    let r = app.get("/qb/b?lease=30&batch_size=2").await;
    let ids: Vec<String> = job_id_of(&r).split(',').map(str::to_owned).collect();
    assert_eq!(ids.len(), 2);
    let (_, body) = json_of(r).await;
    assert_eq!(body, json!(["1", "2"]));
    for id in &ids {
        let (_, info) = app.get_json(&format!("/q/b/{id}")).await;
        assert_eq!(info["state"], "leased");
    }
}

#[actix_web::test]
async fn the_worker_view_shows_liveness_and_jobs_in_hand() {
    let app = spawn_app_with(|s| s.server.worker_timeout_secs = 1).await;
    app.client
        .post(app.url("/w/jobs"))
        .header("X-presque-workerid", "reg")
        .send()
        .await
        .unwrap();
    app.post_json("/q/jobs", "1").await;
    let r = app.get_as("/q/jobs?lease=60", "reg").await;
    let id: u64 = job_id_of(&r).parse().unwrap();
    // A worker that never registered is seen too, when it does a worker's work (an
    // empty fetch counts); a read carrying an id is no sighting.
    app.get_as("/q/jobs", "drifter").await;
    app.get_as("/status/", "reader").await;
    app.get_as("/workers", "reader").await;
    let (status, view) = app.get_json("/workers").await;
    assert_eq!(status, StatusCode::OK);
    let workers = view["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    let reg = &workers[1];
    assert_eq!(reg["worker_id"], "reg");
    assert_eq!(reg["registered"], true);
    assert_eq!(reg["queues"], json!(["jobs"]));
    assert_eq!(reg["processed"], 1);
    assert_eq!(reg["state"], "active");
    assert!((reg["last_seen"].as_f64().unwrap() - now_secs_f64()).abs() < 5.0);
    assert_eq!(reg["jobs"][0]["id"], id);
    assert_eq!(reg["jobs"][0]["queue"], "jobs");
    let drifter = &workers[0];
    assert_eq!(drifter["worker_id"], "drifter");
    assert_eq!(drifter["registered"], false);
    assert_eq!(drifter["jobs"], json!([]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.get_as("/q/jobs", "drifter").await;
    let (_, view) = app.get_json("/workers").await;
    let states: Vec<Value> = view["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["state"].clone())
        .collect();
    assert_eq!(states, vec![json!("active"), json!("gone")]);
}

/// Fills `queue` with jobs `0..n` (bodies are their numbers) through `/qb`.
async fn fill(app: &TestApp, queue: &str, range: std::ops::Range<usize>) {
    let numbers: Vec<usize> = range.collect();
    for chunk in numbers.chunks(1000) {
        let r = app
            .post_json(
                &format!("/qb/{queue}"),
                &json!({ "jobs": chunk }).to_string(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
}

/// Leases `n` jobs in batches of 1000; returns their ids in the order handed out.
async fn lease_all(app: &TestApp, queue: &str, n: usize, lease: &str) -> Vec<u64> {
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let r = app
            .get(&format!("/qb/{queue}?batch_size=1000&lease={lease}"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        ids.extend(
            job_id_of(&r)
                .split(',')
                .map(|id| id.parse::<u64>().unwrap()),
        );
    }
    ids
}

#[actix_web::test]
async fn a_storm_of_expiring_leases_comes_back_in_order_while_the_server_answers() {
    // One HTTP thread: the queue actor shares it with every request below.
    let app = spawn_app_with(|s| s.server.workers = 1).await;
    let n = 10_000;
    fill(&app, "storm", 0..n + 1).await;
    let ids = lease_all(&app, "storm", n, "0.5").await;
    let (_, j) = app.get_json("/j/storm").await;
    assert_eq!(j["job_count"], 1);

    // Everything comes back; meanwhile the server keeps answering other requests.
    let started = Instant::now();
    let mut answered = 0;
    loop {
        let (status, s) = app.get_json("/status/").await;
        assert_eq!((status, s["size"].clone()), (StatusCode::OK, json!(1)));
        answered += 1;
        let (_, j) = app.get_json("/j/storm").await;
        if j["job_count"] == json!(n + 1) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{j}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(answered > 1);
    for id in [ids[0], ids[n / 2], ids[n - 1]] {
        let (_, info) = app.get_json(&format!("/q/storm/{id}")).await;
        assert_eq!(
            (info["state"].clone(), info["attempts"].clone()),
            (json!("ready"), json!(1)),
            "job {id}"
        );
    }
    // Back at the head in their original order, ahead of the job never leased.
    let mut bodies = Vec::with_capacity(n + 1);
    while bodies.len() < n + 1 {
        let (status, batch) = json_of(app.get("/qb/storm?batch_size=1000").await).await;
        assert_eq!(status, StatusCode::OK);
        bodies.extend(
            batch
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_str().unwrap().to_owned()),
        );
    }
    let expected: Vec<String> = (0..n + 1).map(|i| i.to_string()).collect();
    assert_eq!(bodies, expected);
}

/// `text` with the number after every `"key":` replaced by 0 (times vary run to run).
fn zero_numbers_after(text: &str, key: &str) -> String {
    let marker = format!("\"{key}\":");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&marker) {
        let (before, after) = rest.split_at(at + marker.len());
        out.push_str(before);
        let number_len = after
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(after.len());
        out.push('0');
        rest = &after[number_len..];
    }
    out.push_str(rest);
    out
}

/// `depth` nested arrays around a number.
fn nested(depth: usize) -> String {
    format!("{}7{}", "[".repeat(depth), "]".repeat(depth))
}

#[actix_web::test]
async fn deeply_nested_jobs_are_accepted_and_handed_back_verbatim_by_every_route() {
    let app = spawn_app().await;
    let deep = [
        nested(200),
        nested(100_000),
        format!("{{\"a\":{}}}", nested(5_000)),
    ];
    let r = app
        .post_json("/settings/deep", "{\"max_attempts\": 1}")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    for body in &deep {
        let r = app.post_json("/q/deep", body).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // Ready jobs, as JSON-text strings.
    let (status, listed) = app.get_json("/status/deep?with_desc=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["jobs"], json!(deep));

    // Each is fetched byte for byte, fails its only attempt, and dies.
    let mut ids = Vec::new();
    for body in &deep {
        let (id, token, fetched) = lease_one(&app, "deep", "30", "w1").await;
        assert_eq!(&fetched, body);
        let r = as_holder(&app, Method::PUT, &format!("/q/deep/{id}"), &token).await;
        let (status, info) = json_of(r).await;
        assert_eq!(
            (status, info["state"].clone()),
            (StatusCode::OK, json!("dead"))
        );
        ids.push(id);
    }
    let r = app.get("/dead/deep").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let jobs: Vec<String> = ids
        .iter()
        .zip(&deep)
        .map(|(id, body)| {
            format!(
                "{{\"id\":{id},\"attempts\":1,\"died_at\":0,\"reason\":\"failed\",\
                 \"errors\":[{{\"at\":0,\"error\":null,\"worker_id\":\"w1\"}}],\"job\":{body}}}"
            )
        })
        .collect();
    let expected = format!(
        "{{\"queue\":\"deep\",\"jobs\":[{}],\"next\":null}}",
        jobs.join(",")
    );
    let text = r.text().await.unwrap();
    assert_eq!(
        zero_numbers_after(&zero_numbers_after(&text, "died_at"), "at"),
        expected
    );

    // Retried, they come back through /qb as strings, still verbatim.
    let (_, r) = json_of(app.client.post(app.url("/dead/deep")).send().await.unwrap()).await;
    assert_eq!(r, json!({"queue": "deep", "retried": 3}));
    let (status, batch) = json_of(app.get("/qb/deep?batch_size=10").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(batch, json!(deep));

    // Inside a batch, deep jobs are taken as they are too.
    let batch = format!("{{\"jobs\":[{},{}]}}", deep[1], deep[0]);
    let r = app.post_json("/qb/deep", &batch).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, batch) = json_of(app.get("/qb/deep?batch_size=10").await).await;
    assert_eq!(batch, json!([deep[1], deep[0]]));
    // Bodies the server reads itself (settings, control, a worker, a batch's
    // envelope) are refused as the bad JSON they are for those routes, not a crash.
    for path in ["/settings/deep", "/control/deep", "/qb/deep", "/w/deep"] {
        let r = app.post_json(path, &deep[1]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
    }

    // The server kept answering throughout.
    let (status, _) = app.get_json("/status/").await;
    assert_eq!(status, StatusCode::OK);
}
