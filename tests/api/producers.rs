//! What producers get beyond the original protocol: the new job's id in a response
//! header, relative `delay=`, and query parameters a route does not know refused
//! (the ones the original clients send still accepted).

use std::time::{Duration, Instant};

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

fn header(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// A 201 with an empty body (as the original answered), and its `X-presque-jobid`.
async fn created_id(r: Response) -> String {
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = header(&r, "X-presque-jobid").expect("X-presque-jobid header");
    assert_eq!(r.text().await.unwrap(), "");
    id
}

async fn lookup(app: &TestApp, queue: &str, id: &str) -> (StatusCode, Value) {
    app.get_json(&format!("/q/{queue}/{id}")).await
}

async fn put_json(app: &TestApp, path: &str, body: &str) -> Response {
    app.client
        .put(app.url(path))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn assert_nothing_queued(app: &TestApp) {
    let (_, status) = app.get_json("/status/").await;
    assert_eq!(status, json!({"queues": [], "size": 0}));
}

#[actix_web::test]
async fn post_and_put_answer_the_new_jobs_id() {
    let app = spawn_app().await;
    let posted = created_id(app.post_json("/q/p", "{\"n\":1}").await).await;
    let (status, info) = lookup(&app, "p", &posted).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["id"].to_string(), posted);
    assert_eq!(info["state"], "ready");

    let reported = created_id(put_json(&app, "/q/p", "{\"n\":1}").await).await;
    assert_ne!(reported, posted);
    let (status, info) = lookup(&app, "p", &reported).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["id"].to_string(), reported);

    // The ids are the jobs': fetched with a lease, the first posted comes first.
    let r = app.get("/q/p?lease=30").await;
    assert_eq!(header(&r, "X-presque-jobid"), Some(posted));
}

#[actix_web::test]
async fn a_batch_answers_its_ids_in_order() {
    let app = spawn_app().await;
    app.post_json("/q/b", "0").await;
    let r = app
        .post_json("/qb/b", "{\"jobs\":[\"a\",\"b\",\"c\"]}")
        .await;
    let range = header(&r, "X-presque-jobid-range").expect("range header");
    let list = created_id(r).await;
    let ids: Vec<u64> = list.split(',').map(|id| id.parse().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[1], ids[0] + 1);
    assert_eq!(ids[2], ids[0] + 2);
    assert_eq!(range, format!("{}-{}", ids[0], ids[2]));
    for id in &ids {
        let (status, info) = lookup(&app, "b", &id.to_string()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(info["state"], "ready");
    }
    assert_eq!(app.get("/q/b").await.text().await.unwrap(), "0");
    let r = app.get("/qb/b?batch_size=3&lease=30").await;
    assert_eq!(header(&r, "X-presque-jobid"), Some(list));
    assert_eq!(
        r.text().await.unwrap(),
        "[\"\\\"a\\\"\",\"\\\"b\\\"\",\"\\\"c\\\"\"]"
    );
}

#[actix_web::test]
async fn an_empty_batch_has_no_ids_and_a_big_one_only_its_range() {
    let app = spawn_app().await;
    let r = app.post_json("/qb/e", "{\"jobs\":[]}").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "X-presque-jobid"), None);
    assert_eq!(header(&r, "X-presque-jobid-range"), None);

    // 2,000 ids would make a header line old clients cannot read.
    let jobs = vec!["1"; 2000].join(",");
    let r = app
        .post_json("/qb/e", &format!("{{\"jobs\":[{jobs}]}}"))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "X-presque-jobid"), None);
    let range = header(&r, "X-presque-jobid-range").expect("range header");
    let (first, last) = range.split_once('-').unwrap();
    let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
    assert_eq!(last - first, 1999);
    for id in [first, last] {
        assert_eq!(lookup(&app, "e", &id.to_string()).await.0, StatusCode::OK);
    }
    let (_, j) = app.get_json("/j/e").await;
    assert_eq!(j["job_count"], 2000);
}

/// Waits until `GET path` hands out a job; checks it was not before `not_before`.
async fn fetched_after(app: &TestApp, path: &str, started: Instant, not_before: Duration) {
    loop {
        let r = app.get(path).await;
        let elapsed = started.elapsed();
        if r.status() == StatusCode::OK {
            assert!(elapsed >= not_before, "fetched after {elapsed:?}");
            return;
        }
        assert!(elapsed < Duration::from_secs(3), "never came due");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn delay_holds_a_job_for_that_many_seconds() {
    let app = spawn_app().await;
    let started = Instant::now();
    let before = now_secs_f64();
    let id = created_id(app.post_json("/q/d?delay=0.3", "\"later\"").await).await;
    let put = created_id(put_json(&app, "/q/p?delay=0.3", "\"later\"").await).await;
    let r = app.post_json("/qb/b?delay=0.3", "{\"jobs\":[1,2]}").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let after = now_secs_f64();
    for (queue, id) in [("d", &id), ("p", &put)] {
        let (_, info) = lookup(&app, queue, id).await;
        let due = info["due_at"].as_f64().unwrap_or(0.0);
        assert!(
            due >= before + 0.3 - 1e-6 && due <= after + 0.302,
            "{info} not due 0.3 s after {before}..{after}"
        );
    }
    // Not fetchable before its time (checked only while that is plainly so).
    for path in ["/q/d", "/q/p", "/qb/b"] {
        let r = app.get(path).await;
        if started.elapsed() < Duration::from_millis(250) {
            assert_error(r, StatusCode::NOT_FOUND, "no job").await;
        }
    }
    let soon = Duration::from_millis(300);
    fetched_after(&app, "/q/d", started, soon).await;
    fetched_after(&app, "/q/p", started, soon).await;
    fetched_after(&app, "/qb/b", started, soon).await;
}

#[actix_web::test]
async fn delay_zero_is_no_delay() {
    let app = spawn_app().await;
    app.post_json("/q/z", "1").await;
    created_id(app.post_json("/q/z?delay=0", "2").await).await;
    assert_eq!(app.get("/q/z").await.text().await.unwrap(), "1");
    assert_eq!(app.get("/q/z").await.text().await.unwrap(), "2");
}

#[actix_web::test]
async fn delay_and_delayed_together_are_refused() {
    let app = spawn_app().await;
    let later = now_secs_f64() + 60.0;
    let message = "give delayed (epoch seconds) or delay (seconds from now), not both";
    let path = format!("/q/x?delayed={later}&delay=5");
    assert_error(
        app.post_json(&path, "{}").await,
        StatusCode::BAD_REQUEST,
        message,
    )
    .await;
    assert_error(
        put_json(&app, &path, "{}").await,
        StatusCode::BAD_REQUEST,
        message,
    )
    .await;
    let path = format!("/qb/x?delay=5&delayed={later}");
    assert_error(
        app.post_json(&path, "{\"jobs\":[1]}").await,
        StatusCode::BAD_REQUEST,
        message,
    )
    .await;
    assert_nothing_queued(&app).await;
}

#[actix_web::test]
async fn delay_must_be_seconds_from_0_to_ten_years() {
    let app = spawn_app().await;
    for value in ["-1", "abc", "", "NaN", "inf", "315360001"] {
        let message =
            format!("delay must be a number of seconds from 0 to 315360000, not {value:?}");
        let path = format!("/q/x?delay={value}");
        assert_error(
            app.post_json(&path, "{}").await,
            StatusCode::BAD_REQUEST,
            &message,
        )
        .await;
        assert_error(
            put_json(&app, &path, "{}").await,
            StatusCode::BAD_REQUEST,
            &message,
        )
        .await;
        let path = format!("/qb/x?delay={value}");
        assert_error(
            app.post_json(&path, "{\"jobs\":[1]}").await,
            StatusCode::BAD_REQUEST,
            &message,
        )
        .await;
    }
    let r = app.post_json("/q/x?delay=315360000", "{}").await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

async fn send(app: &TestApp, method: Method, path: &str, body: &str) -> Response {
    app.client
        .request(method, app.url(path))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn unknown_query_parameters_are_refused_naming_what_the_route_takes() {
    let app = spawn_app().await;
    assert_error(
        app.post_json("/q/x?delay_s=5", "{}").await,
        StatusCode::BAD_REQUEST,
        "unknown query parameter \"delay_s\"; this route takes: delayed, delay, ttl, uniq, priority",
    )
    .await;
    assert_nothing_queued(&app).await;

    // Routes this branch owns: the exact list.
    let none = "this route takes no query parameters";
    let exact: [(Method, &str, &str, &str); 16] = [
        (
            Method::POST,
            "/q/x",
            "{}",
            "this route takes: delayed, delay, ttl, uniq, priority",
        ),
        (
            Method::PUT,
            "/q/x",
            "{}",
            "this route takes: delayed, delay, ttl, uniq, priority",
        ),
        (Method::DELETE, "/q/x", "", none),
        (
            Method::POST,
            "/qb/x",
            "{\"jobs\":[1]}",
            "this route takes: delayed, delay, ttl, uniq, priority",
        ),
        (Method::PUT, "/qb/x", "{}", none),
        (Method::DELETE, "/qb/x", "", none),
        (Method::GET, "/j/x", "", none),
        (Method::GET, "/control/x", "", none),
        (Method::POST, "/control/x", "{\"status\":\"stop\"}", none),
        (
            Method::GET,
            "/w/",
            "",
            "this route takes: worker_id, queue_name",
        ),
        (Method::POST, "/w/x", "{\"worker_id\":\"w\"}", none),
        (Method::DELETE, "/w/x", "", "this route takes: worker_id"),
        (Method::GET, "/settings/x", "", none),
        (Method::POST, "/settings/x", "{\"max_attempts\":3}", none),
        (
            Method::GET,
            "/workers",
            "",
            "this route takes: limit, after",
        ),
        (Method::GET, "/", "", none),
    ];
    for (method, path, body, takes) in exact {
        let url = format!("{path}?bogus=1&worker_id=w");
        assert_error(
            send(&app, method.clone(), &url, body).await,
            StatusCode::BAD_REQUEST,
            &format!("unknown query parameter \"bogus\"; {takes}"),
        )
        .await;
    }
    // Routes other work extends: the parameters they take today are named.
    let named: [(Method, &str, &[&str]); 10] = [
        (Method::GET, "/q/x", &["wait", "lease"]),
        (Method::GET, "/qb/x", &["batch_size", "wait", "lease"]),
        (Method::GET, "/q/x/1", &[]),
        (Method::DELETE, "/q/x/1", &[]),
        (Method::PUT, "/q/x/1", &["delayed"]),
        (Method::POST, "/q/x/1", &["lease"]),
        (Method::GET, "/status/", &[]),
        (Method::GET, "/status/x", &["with_desc"]),
        (Method::GET, "/dead/x", &[]),
        (Method::POST, "/dead/x", &["id"]),
    ];
    for (method, path, params) in named {
        let (status, body) =
            json_of(send(&app, method.clone(), &format!("{path}?bogus"), "").await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(
            message.starts_with("unknown query parameter \"bogus\"; this route takes"),
            "{method} {path}: {message}"
        );
        for param in params {
            assert!(message.contains(param), "{method} {path}: {message}");
        }
    }
    // Several at once are all named.
    assert_error(
        app.get("/j/x?a=1&b=2&a=3").await,
        StatusCode::BAD_REQUEST,
        "unknown query parameters \"a\", \"b\"; this route takes no query parameters",
    )
    .await;
    // Nothing changed: no queue, no worker, no job.
    assert_nothing_queued(&app).await;
    assert_eq!(app.get_json("/w/").await.1, json!([]));
}

#[actix_web::test]
async fn the_original_clients_parameters_are_still_accepted_everywhere() {
    let app = spawn_app().await;
    let originals = "worker_id=w&queue_name=q&batch_size=5&delayed=1&uniq=u&with_desc=1";
    // A fetch ignores what it does not use.
    assert_error(
        app.get("/q/x?worker_id=w").await,
        StatusCode::NOT_FOUND,
        "no job",
    )
    .await;
    let r = app
        .client
        .post(app.url("/w/x?worker_id=w"))
        .header("X-presque-workerid", "w")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    created_id(
        app.post_json("/q/x?worker_id=w&with_desc=1&batch_size=3", "1")
            .await,
    )
    .await;
    let ok: [(Method, &str); 10] = [
        (Method::GET, "/j/x"),
        (Method::GET, "/status/"),
        (Method::GET, "/status/x"),
        (Method::GET, "/control/x"),
        (Method::GET, "/dead/x"),
        (Method::GET, "/settings/x"),
        (Method::GET, "/workers"),
        (Method::GET, "/"),
        (Method::GET, "/w/"),
        (Method::GET, "/q/x/999999"),
    ];
    for (method, path) in ok {
        let r = send(&app, method.clone(), &format!("{path}?{originals}"), "").await;
        assert_ne!(r.status(), StatusCode::BAD_REQUEST, "{method} {path}");
    }
    // The answers are the original ones, unchanged by the extra parameters.
    assert_eq!(
        app.get_json(&format!("/j/x?{originals}")).await.1,
        json!({"queue_name": "x", "job_count": 1, "job_failed": 0, "job_processed": 0})
    );
    assert_eq!(
        app.get_json("/status/?worker_id=w").await.1,
        json!({"queues": ["x"], "size": 1})
    );
    assert_eq!(
        app.get(&format!("/qb/x?{originals}"))
            .await
            .text()
            .await
            .unwrap(),
        "[\"1\"]"
    );
    let r = app.delete("/w/x?worker_id=w&queue_name=x").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.delete("/q/x?worker_id=w&uniq=u").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_nothing_queued(&app).await;
}
