//! Expiry: `ttl=SECONDS` on create; a job not handed out by then goes to the dead
//! letters (reason `expired`) or is dropped, per the queue's `on_expiry`; it survives
//! a crash and still fires.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use crate::delivery::{as_holder, job_id_of, lease_one};
use crate::harness::*;
use crate::helpers::*;

/// POSTs `body` to `path`; the new job's id.
async fn create(app: &TestApp, path: &str, body: &str) -> String {
    let r = app.post_json(path, body).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{path}");
    job_id_of(&r)
}

/// Looks job `id` up until it is no longer in `state`; its view then (404: `null`).
async fn until_not(app: &TestApp, queue: &str, id: &str, state: &str) -> Value {
    for _ in 0..300 {
        let r = app.get(&format!("/q/{queue}/{id}")).await;
        if r.status() == StatusCode::NOT_FOUND {
            return Value::Null;
        }
        let view: Value = r.json().await.unwrap();
        if view["state"] != state {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id} stayed {state}");
}

#[actix_web::test]
async fn a_job_not_handed_out_in_time_goes_to_the_dead_letters() {
    let app = spawn_app().await;
    let (_, s) = app.get_json("/settings/e").await;
    assert_eq!(s["on_expiry"], "dead");
    let before = now_secs_f64();
    let id = create(&app, "/q/e?ttl=0.2&uniq=k", "{\"n\":1}").await;
    let keep = create(&app, "/q/e", "{\"n\":2}").await;
    let (_, view) = app.get_json(&format!("/q/e/{id}")).await;
    let expires = view["expires_at"].as_f64().unwrap();
    assert!(expires >= before + 0.2 - 0.001 && expires <= now_secs_f64() + 0.202);
    let (_, other) = app.get_json(&format!("/q/e/{keep}")).await;
    assert_eq!(other["expires_at"], Value::Null);
    let (_, listed) = app.get_json("/jobs/e?state=ready").await;
    assert_eq!(listed["jobs"][0]["expires_at"].as_f64(), Some(expires));
    assert_eq!(listed["jobs"][1]["expires_at"], Value::Null);

    let view = until_not(&app, "e", &id, "ready").await;
    assert!(now_secs_f64() >= expires - 0.001);
    assert_eq!(
        (&view["state"], &view["reason"], &view["attempts"]),
        (&json!("dead"), &json!("expired"), &json!(0))
    );
    assert_eq!(view["died_at"].as_f64(), Some(expires));
    let (_, dead) = app.get_json("/dead/e").await;
    assert_eq!(dead["jobs"][0]["reason"], "expired");
    assert_eq!(dead["jobs"][0]["job"], json!({"n": 1}));
    let (_, listed) = app.get_json("/jobs/e?state=dead").await;
    assert_eq!(listed["jobs"][0]["id"].to_string(), id);
    // Counted apart from leases that ran out.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for line in [
        "presque_queue_ttl_expired_total{queue=\"e\"} 1",
        "presque_ttl_expired_total 1",
        "presque_queue_expired_total{queue=\"e\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in\n{metrics}"
        );
    }
    // Its uniq key is free, the other job is still there, and only it is fetched.
    create(&app, "/q/e?uniq=k", "{\"n\":3}").await;
    let (_, j) = app.get_json("/j/e").await;
    assert_eq!(j["job_count"], 2);
    let r = app.get("/q/e").await;
    assert_eq!(r.text().await.unwrap(), "{\"n\":2}");
    // Retried, it is back once, with no ttl.
    assert_eq!(app.post_json("/dead/e", "").await.status(), StatusCode::OK);
    let (_, view) = app.get_json(&format!("/q/e/{id}")).await;
    assert_eq!(
        (&view["state"], &view["expires_at"]),
        (&json!("ready"), &Value::Null)
    );
    let (_, j) = app.get_json("/j/e").await;
    assert_eq!(j["job_count"], 2);
}

#[actix_web::test]
async fn on_expiry_drop_lets_expired_jobs_go_and_batches_expire_too() {
    let app = spawn_app().await;
    let (status, s) = json_of(
        app.post_json("/settings/d", "{\"on_expiry\": \"drop\"}")
            .await,
    )
    .await;
    assert_eq!((status, &s["on_expiry"]), (StatusCode::OK, &json!("drop")));
    let r = app
        .post_json("/qb/d?ttl=0.15", "{\"jobs\": [1, 2, 3]}")
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = create(&app, "/q/d?ttl=0.15&delay=0.05", "4").await;
    let (_, view) = app.get_json(&format!("/q/d/{id}")).await;
    assert_eq!(view["state"], "delayed");
    assert!(view["expires_at"].as_f64().is_some());
    assert_eq!(until_not(&app, "d", &id, "delayed").await["state"], "ready");
    assert_eq!(until_not(&app, "d", &id, "ready").await, Value::Null);
    let (_, j) = app.get_json("/j/d").await;
    assert_eq!(j["job_count"], 0);
    let (_, dead) = app.get_json("/dead/d").await;
    assert_eq!(dead["jobs"], json!([]));
}

#[actix_web::test]
async fn a_job_handed_out_no_longer_expires() {
    let app = spawn_app().await;
    let id = create(&app, "/q/h?ttl=0.2", "{\"n\":1}").await;
    let (leased, token, _) = lease_one(&app, "h", "30", "w").await;
    assert_eq!(leased, id);
    let (_, view) = app.get_json(&format!("/q/h/{id}")).await;
    assert_eq!(view["expires_at"], Value::Null);
    // Failed back to the queue, then well past its ttl: still there.
    let r = as_holder(&app, Method::PUT, &format!("/q/h/{id}"), &token).await;
    assert_eq!(r.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, view) = app.get_json(&format!("/q/h/{id}")).await;
    assert_eq!(view["state"], "ready");
    // PUT /q (the original failure report) takes a ttl too: a new job.
    let r = app.put_json_as("/q/h?ttl=0.1", "{\"again\":1}", "w").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let again = job_id_of(&r);
    assert_eq!(
        until_not(&app, "h", &again, "ready").await["reason"],
        "expired"
    );
}

#[actix_web::test]
async fn bad_ttls_are_refused_and_create_nothing() {
    let app = spawn_app().await;
    for ttl in ["0", "-1", "abc", "", "400000000", "inf", "NaN"] {
        let says =
            format!("ttl must be a number of seconds above 0 and at most 315360000, not {ttl:?}");
        for (method, path) in [
            (Method::POST, format!("/q/b?ttl={ttl}")),
            (Method::PUT, format!("/q/b?ttl={ttl}")),
            (Method::POST, format!("/qb/b?ttl={ttl}")),
        ] {
            let body = if path.starts_with("/qb") {
                "{\"jobs\":[1]}"
            } else {
                "1"
            };
            let r = app
                .client
                .request(method, app.url(&path))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_error(r, StatusCode::BAD_REQUEST, &says).await;
        }
    }
    assert_error(
        app.post_json("/settings/b", "{\"on_expiry\": \"keep\"}")
            .await,
        StatusCode::BAD_REQUEST,
        "on_expiry must be \"dead\" or \"drop\", not \"keep\"",
    )
    .await;
    let (_, s) = app.get_json("/settings/b").await;
    assert_eq!(s["on_expiry"], "dead");
    let (_, j) = app.get_json("/j/b").await;
    assert_eq!(j["job_count"], 0);
}

/// Pending expiries come back from the log after a SIGKILL and still fire; one that
/// ran out while the server was down fires at the start.
#[actix_web::test]
async fn expiries_survive_a_crash_and_still_fire() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("presque.toml"),
        "[storage]\nfsync = \"always\"\n",
    )
    .unwrap();
    let client = Client::new();
    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    let create = |path: &str| {
        let r = client
            .post(server.url(path))
            .header("Content-Type", "application/json")
            .body("{\"n\":1}")
            .send();
        async move {
            let r = r.await.unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            job_id_of(&r)
        }
    };
    let soon = create("/q/s?ttl=0.3").await;
    let later = create("/q/s?ttl=3").await;
    let kept = create("/q/s").await;
    assert_eq!(
        post(&client, &server, "/settings/t", "{\"on_expiry\": \"drop\"}").await,
        StatusCode::OK
    );
    let view = |server: &ServerProcess, id: &str| {
        let r = client.get(server.url(&format!("/q/s/{id}"))).send();
        async move { r.await.unwrap().json::<Value>().await.unwrap() }
    };
    let later_view = view(&server, &later).await;
    server.kill9();
    tokio::time::sleep(Duration::from_millis(400)).await;

    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    // Ran out while the server was down: dead at the start.
    let soon_view = view(&server, &soon).await;
    assert_eq!(
        (&soon_view["state"], &soon_view["reason"]),
        (&json!("dead"), &json!("expired"))
    );
    assert_eq!(view(&server, &later).await, later_view);
    let (_, s) = {
        let r = client.get(server.url("/settings/t")).send().await.unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(s["on_expiry"], "drop");
    loop {
        let v = view(&server, &later).await;
        if v["state"] == "dead" {
            assert_eq!(v["reason"], "expired");
            assert!(now_secs_f64() >= later_view["expires_at"].as_f64().unwrap() - 0.001);
            break;
        }
        assert_eq!(v["state"], "ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(view(&server, &kept).await["state"], "ready");
    server.stop();
}
