//! Retry backoff per queue (`/settings/NAME` `backoff`, `[retry] backoff`): a leased
//! job that fails or whose lease runs out is delayed by the policy, unless the
//! failure names its own delay; the due time shows in lookup and survives a crash.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use crate::delivery::{as_holder, lease_one};
use crate::harness::*;
use crate::helpers::*;

/// `PUT /q/QUEUE/ID{query}` as the holder of `token`: the job's view afterwards.
async fn fail(app: &TestApp, queue: &str, id: &str, token: &str, query: &str) -> Value {
    let path = format!("/q/{queue}/{id}{query}");
    let (status, view) = json_of(as_holder(app, Method::PUT, &path, token).await).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    view
}

/// Asserts the view says delayed, due `secs` after a moment between `before` and now
/// (the server's clock reads in between; due times are rounded up to the ms).
fn assert_due(view: &Value, before: f64, secs: f64) {
    assert_eq!(view["state"], "delayed", "{view}");
    let due = view["due_at"].as_f64().unwrap();
    let after = now_secs_f64();
    assert!(
        due >= before + secs - 0.001 && due <= after + secs + 0.002,
        "due {due}, expected {secs} s after {before}..{after}: {view}"
    );
}

async fn set(app: &TestApp, queue: &str, body: Value) -> Value {
    let (status, s) = json_of(
        app.post_json(&format!("/settings/{queue}"), &body.to_string())
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    s
}

/// Leases until a job comes (the backoff still running answers 404 no job).
async fn lease_when_due(app: &TestApp, queue: &str) -> (String, String) {
    for _ in 0..500 {
        let r = app.get_as(&format!("/q/{queue}?lease=30"), "w").await;
        if r.status() == StatusCode::OK {
            return (
                crate::delivery::job_id_of(&r),
                crate::delivery::token_of(&r),
            );
        }
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never due");
}

#[actix_web::test]
async fn a_fixed_backoff_delays_a_failed_job_and_fetch_respects_it() {
    let app = spawn_app().await;
    let (_, s) = app.get_json("/settings/r").await;
    assert_eq!(
        (&s["backoff"], &s["backoff_is_default"]),
        (&json!({"kind": "none"}), &json!(true))
    );
    let s = set(
        &app,
        "r",
        json!({"backoff": {"kind": "fixed", "delay_secs": 0.4}}),
    )
    .await;
    assert_eq!(
        (&s["backoff"], &s["backoff_is_default"]),
        (&json!({"kind": "fixed", "delay_secs": 0.4}), &json!(false))
    );

    app.post_json("/q/r", "{\"n\":1}").await;
    let (id, token, _) = lease_one(&app, "r", "30", "w").await;
    let before = now_secs_f64();
    let view = fail(&app, "r", &id, &token, "").await;
    assert_due(&view, before, 0.4);
    assert_eq!(view["attempts"], 1);
    let (_, found) = app.get_json(&format!("/q/r/{id}")).await;
    assert_eq!(found["due_at"], view["due_at"]);
    let (_, listed) = app.get_json("/jobs/r?state=delayed").await;
    assert_eq!(listed["jobs"][0]["id"].to_string(), id);
    assert_eq!(listed["jobs"][0]["due_at"], view["due_at"]);
    // Not before it is due.
    assert_eq!(app.get("/q/r").await.status(), StatusCode::NOT_FOUND);
    let (again, _) = lease_when_due(&app, "r").await;
    assert_eq!(again, id);
    assert!(now_secs_f64() >= view["due_at"].as_f64().unwrap() - 0.001);

    // Back to the server's default: ready at once again.
    let s = set(&app, "r", json!({"backoff": null})).await;
    assert_eq!(s["backoff_is_default"], true);
}

#[actix_web::test]
async fn an_exponential_backoff_grows_per_attempt_up_to_its_cap() {
    let app = spawn_app().await;
    set(
        &app,
        "x",
        json!({"max_attempts": 10, "backoff": {"kind": "exponential", "base_secs": 0.1, "factor": 3, "max_secs": 0.5}}),
    )
    .await;
    app.post_json("/q/x", "{\"n\":1}").await;
    let (id, mut token, _) = lease_one(&app, "x", "30", "w").await;
    for (attempt, secs) in [(1, 0.1), (2, 0.3), (3, 0.5), (4, 0.5)] {
        let before = now_secs_f64();
        let view = fail(&app, "x", &id, &token, "").await;
        assert_eq!(view["attempts"], attempt);
        assert_due(&view, before, secs);
        let (again, next) = lease_when_due(&app, "x").await;
        assert_eq!(again, id);
        token = next;
    }
}

#[actix_web::test]
async fn jitter_stays_within_its_fraction() {
    let app = spawn_app().await;
    set(
        &app,
        "j",
        json!({"max_attempts": 1000, "backoff": {"kind": "exponential", "base_secs": 100, "max_secs": 100, "jitter": 0.5}}),
    )
    .await;
    for n in 0..20 {
        app.post_json("/q/j", &n.to_string()).await;
    }
    let mut dues = Vec::new();
    for _ in 0..20 {
        let (id, token, _) = lease_one(&app, "j", "30", "w").await;
        let before = now_secs_f64();
        let view = fail(&app, "j", &id, &token, "").await;
        let after = now_secs_f64();
        let delay = view["due_at"].as_f64().unwrap() - before;
        assert!(
            (50.0 - 0.001..=100.0 + (after - before) + 0.002).contains(&delay),
            "{delay}"
        );
        dues.push(delay);
    }
    dues.sort_by(f64::total_cmp);
    assert!(dues[19] - dues[0] > 1.0, "no spread: {dues:?}");
}

#[actix_web::test]
async fn a_failure_naming_its_own_delay_wins_over_the_backoff() {
    let app = spawn_app().await;
    set(
        &app,
        "o",
        json!({"backoff": {"kind": "fixed", "delay_secs": 60}}),
    )
    .await;
    app.post_json("/q/o", "{\"n\":1}").await;
    let (id, token, _) = lease_one(&app, "o", "30", "w").await;
    let view = fail(&app, "o", &id, &token, "?delay=0").await;
    assert_eq!(view["state"], "ready", "{view}");
    assert_eq!(view["due_at"], Value::Null);
    let (_, token, _) = lease_one(&app, "o", "30", "w").await;
    let before = now_secs_f64();
    let view = fail(&app, "o", &id, &token, "?delay=0.2").await;
    assert_due(&view, before, 0.2);
    let (_, token) = lease_when_due(&app, "o").await;
    let at = (now_secs_f64() + 5.0).to_string();
    let view = fail(&app, "o", &id, &token, &format!("?delayed={at}")).await;
    assert_eq!(view["state"], "delayed");
    assert!((view["due_at"].as_f64().unwrap() - at.parse::<f64>().unwrap()).abs() < 0.002);
}

#[actix_web::test]
async fn a_lease_that_runs_out_is_delayed_by_the_backoff() {
    let app = spawn_app().await;
    set(
        &app,
        "l",
        json!({"backoff": {"kind": "fixed", "delay_secs": 0.5}}),
    )
    .await;
    app.post_json("/q/l", "{\"n\":1}").await;
    let before = now_secs_f64();
    let (id, _, _) = lease_one(&app, "l", "0.1", "w").await;
    let view = loop {
        let (_, view) = app.get_json(&format!("/q/l/{id}")).await;
        if view["state"] != "leased" {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(view["attempts"], 1);
    // Run out at 0.1 s, then 0.5 s of backoff.
    assert_due(&view, before + 0.1, 0.5);
    assert_eq!(app.get("/q/l").await.status(), StatusCode::NOT_FOUND);
    let (again, _) = lease_when_due(&app, "l").await;
    assert_eq!(again, id);
}

#[actix_web::test]
async fn bad_backoffs_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    set(
        &app,
        "b",
        json!({"max_attempts": 3, "backoff": {"kind": "fixed", "delay_secs": 1}}),
    )
    .await;
    let (_, before) = app.get_json("/settings/b").await;
    for (body, says) in [
        (
            json!({"backoff": {"kind": "fixed", "delay_secs": 0}}),
            "backoff delay_secs must be a number of seconds above 0 and at most 315360000, not 0",
        ),
        (
            json!({"backoff": {"kind": "later"}}),
            "backoff: unknown variant `later`",
        ),
        (
            json!({"backoff": {"kind": "fixed"}}),
            "missing field `delay_secs`",
        ),
        (
            json!({"backoff": {"kind": "exponential", "base_secs": 2, "max_secs": 1}}),
            "backoff max_secs (1) must be at least base_secs (2)",
        ),
        (
            json!({"backoff": {"kind": "exponential", "base_secs": 1, "max_secs": 9, "factor": 0}}),
            "backoff factor must be a number from 1 to 100, not 0",
        ),
        (
            json!({"backoff": {"kind": "exponential", "base_secs": 1, "max_secs": 9, "jitter": -0.1}}),
            "backoff jitter must be a fraction from 0 to 1, not -0.1",
        ),
        (
            json!({"backoff": {"kind": "none", "delay_secs": 1}}),
            "unknown field `delay_secs`",
        ),
        // One bad key refuses the whole body: max_attempts is not set either.
        (json!({"max_attempts": 7, "backoff": "fixed"}), "backoff:"),
        // A misspelt key beside a good one: refused, not quietly left out.
        (
            json!({"max_attempts": 7, "on_expirey": "drop"}),
            "unknown setting \"on_expirey\": the settings are max_attempts, max_jobs, backoff and on_expiry",
        ),
    ] {
        assert_error_contains(
            app.post_json("/settings/b", &body.to_string()).await,
            StatusCode::BAD_REQUEST,
            says,
        )
        .await;
    }
    let (_, after) = app.get_json("/settings/b").await;
    assert_eq!(before, after);
}

#[actix_web::test]
async fn the_server_default_applies_to_queues_without_their_own() {
    let app = spawn_app_with(|s| {
        s.retry.backoff = presque::Backoff::Fixed { delay_ms: 300 };
    })
    .await;
    let (_, s) = app.get_json("/settings/d").await;
    assert_eq!(
        (&s["backoff"], &s["backoff_is_default"]),
        (&json!({"kind": "fixed", "delay_secs": 0.3}), &json!(true))
    );
    app.post_json("/q/d", "{\"n\":1}").await;
    let (id, token, _) = lease_one(&app, "d", "30", "w").await;
    let before = now_secs_f64();
    assert_due(&fail(&app, "d", &id, &token, "").await, before, 0.3);
    // A queue's own "none" turns it off.
    set(&app, "d", json!({"backoff": {"kind": "none"}})).await;
    let (id, token) = lease_when_due(&app, "d").await;
    assert_eq!(fail(&app, "d", &id, &token, "").await["state"], "ready");
}

/// The due times a backoff set (one after a failure, one after a lease ran out) come
/// back from the log after a SIGKILL, the same to the millisecond, and still hold.
#[actix_web::test]
async fn backoff_due_times_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("presque.toml"),
        "[storage]\nfsync = \"always\"\n",
    )
    .unwrap();
    let client = Client::new();
    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    let req = |method: Method, path: &str| client.request(method, server.url(path));
    let r = req(Method::POST, "/settings/c")
        .body(json!({"backoff": {"kind": "exponential", "base_secs": 1.5, "max_secs": 9, "jitter": 0.5}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for n in 0..2 {
        assert_eq!(
            post(&client, &server, "/q/c", &n.to_string()).await,
            StatusCode::CREATED
        );
    }
    let lease = |secs: &'static str| {
        let r = req(Method::GET, &format!("/q/c?lease={secs}")).send();
        async move {
            let r = r.await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            (
                crate::delivery::job_id_of(&r),
                crate::delivery::token_of(&r),
            )
        }
    };
    let (failed, token) = lease("30").await;
    let r = req(Method::PUT, &format!("/q/c/{failed}"))
        .header("X-presque-lease", token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (ran_out, _) = lease("0.05").await;
    let view = |id: String| {
        let r = req(Method::GET, &format!("/q/c/{id}")).send();
        async move { r.await.unwrap().json::<Value>().await.unwrap() }
    };
    let ran_out_view = loop {
        let v = view(ran_out.clone()).await;
        if v["state"] == "delayed" {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let failed_view = view(failed.clone()).await;
    assert_eq!(failed_view["state"], "delayed");

    server.kill9();
    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    let view = |id: String| {
        let r = client.get(server.url(&format!("/q/c/{id}"))).send();
        async move { r.await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(view(failed.clone()).await, failed_view);
    assert_eq!(view(ran_out.clone()).await, ran_out_view);
    // And they still fire, neither before its due time.
    let mut dues: Vec<f64> = [&failed_view, &ran_out_view]
        .map(|v| v["due_at"].as_f64().unwrap())
        .to_vec();
    dues.sort_by(f64::total_cmp);
    for due in dues {
        loop {
            let r = client.get(server.url("/q/c")).send().await.unwrap();
            if r.status() == StatusCode::OK {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(now_secs_f64() >= due - 0.001);
    }
    server.stop();
}
