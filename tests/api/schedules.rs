//! `/schedules/`: recurring jobs posted by cron schedules, through real HTTP; across
//! a SIGKILL of the real binary, one run for the slots missed while it was down and
//! never two jobs for one slot.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::harness::*;
use crate::helpers::*;

const EVERY_SECOND: &str =
    r#"{"cron": "* * * * * *", "queue": "ticks", "job": {"tick": true, "n": [1, 2]}}"#;

/// A cron that fires once a year: keeps a schedule's figures still while a test
/// reads them.
const YEARLY: &str =
    r#"{"cron": "0 0 0 1 1 *", "queue": "ticks", "job": {"tick": true, "n": [1, 2]}}"#;

/// Polls `check` every 100 ms for up to `secs` seconds.
async fn eventually<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..secs * 10 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[actix_web::test]
async fn a_schedule_posts_its_job_to_its_queue_and_can_be_listed_replaced_and_removed() {
    let app = spawn_app().await;
    let r = app.post_json("/schedules/every-second", EVERY_SECOND).await;
    let (status, created) = json_of(r).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["cron"], "* * * * * *");
    assert_eq!(created["timezone"], "UTC");
    assert_eq!(created["queue"], "ticks");
    assert_eq!(created["runs"], 0);
    assert_eq!(created["last_run"], Value::Null);
    let next = created["next_run"].as_f64().unwrap();
    assert!(
        next > now_secs_f64() - 1.0 && next <= now_secs_f64() + 1.0,
        "{created}"
    );

    // Jobs arrive in the target queue, byte for byte as given.
    assert!(
        eventually(5, || async {
            app.get_json("/j/ticks").await.1["job_count"].as_u64() >= Some(2)
        })
        .await,
        "no jobs arrived"
    );
    let r = app.get("/q/ticks").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), r#"{"tick": true, "n": [1, 2]}"#);

    // Replaced (200), the runs and last run kept; GET shows it, the list too.
    let r = app.post_json("/schedules/every-second", YEARLY).await;
    let (status, replaced) = json_of(r).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    let runs = replaced["runs"].as_u64().unwrap();
    assert!(runs >= 2, "{replaced}");
    let last_run = replaced["last_run"].as_f64().unwrap();
    assert!(replaced["next_run"].as_f64().unwrap() > now_secs_f64() + 3600.0);
    let (status, one) = app.get_json("/schedules/every-second").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one, replaced);
    // Exactly one job per run: the one fetched, and the rest still queued.
    let (_, counters) = app.get_json("/j/ticks").await;
    assert_eq!(counters["job_count"].as_u64(), Some(runs - 1), "{counters}");
    assert!(last_run <= now_secs_f64());

    let r = app.post_json("/schedules/other", YEARLY).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, list) = app.get_json("/schedules/").await;
    assert_eq!(list["size"], 2);
    assert_eq!(list["next"], Value::Null);
    let names: Vec<&str> = list["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["every-second", "other"]);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("\npresque_schedules 2\n"), "{metrics}");
    let counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("presque_schedule_runs_total "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    assert_eq!(counted, runs, "{metrics}");
    let (_, page) = app.get_json("/schedules/?limit=1").await;
    assert_eq!(page["next"], "every-second");
    let (_, page) = app.get_json("/schedules/?limit=1&after=every-second").await;
    assert_eq!(page["schedules"][0]["name"], "other");
    assert_eq!(page["next"], Value::Null);

    let r = app.delete("/schedules/other").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.get("/schedules/other").await,
        StatusCode::NOT_FOUND,
        "schedule not found",
    )
    .await;
    assert_error(
        app.delete("/schedules/other").await,
        StatusCode::NOT_FOUND,
        "schedule not found",
    )
    .await;
    let (_, list) = app.get_json("/schedules/").await;
    assert_eq!(list["size"], 1);
}

#[actix_web::test]
async fn bad_input_is_refused_precisely_and_changes_nothing() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 200).await;
    let r = app.post_json("/schedules/keep", YEARLY).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, before) = app.get_json("/schedules/keep").await;
    for (body, message) in [
        (
            r#"{"cron": "61 * * * * *", "queue": "q", "job": 1}"#,
            "invalid cron expression",
        ),
        (
            r#"{"cron": "* * * * *", "timezone": "Mars/Olympus", "queue": "q", "job": 1}"#,
            "unknown time zone",
        ),
        (
            r#"{"cron": "* * * * *", "queue": "a/b", "job": 1}"#,
            "invalid queue name",
        ),
        (
            r#"{"cron": "* * * * *", "queue": "q", "job": 1, "retry": 3}"#,
            "unknown field `retry`",
        ),
        (
            r#"{"cron": "* * * * *", "queue": "q"}"#,
            "missing field `job`",
        ),
        (
            r#"{"cron": "* * * * *", "queue": "q", "job": 1, "options": {"priority": 300}}"#,
            "options.priority must be an integer from 0 to 255",
        ),
        (
            r#"{"cron": "* * * * *", "queue": "q", "job": 1, "options": {"ttl": -1}}"#,
            "options.ttl must be",
        ),
        (
            r#"{"cron": "0 0 0 30 2 *", "queue": "q", "job": 1}"#,
            "never matches",
        ),
        ("{\"cron\": ", "invalid JSON"),
        ("", "content is missing"),
    ] {
        for name in ["keep", "new"] {
            let r = app.post_json(&format!("/schedules/{name}"), body).await;
            assert_error_contains(r, StatusCode::BAD_REQUEST, message).await;
        }
    }
    let big = format!(
        r#"{{"cron": "* * * * *", "queue": "q", "job": "{}"}}"#,
        "x".repeat(300)
    );
    let r = app.post_json("/schedules/keep", &big).await;
    assert_error_contains(r, StatusCode::PAYLOAD_TOO_LARGE, "larger than the limit").await;
    let r = app.post_json("/schedules/keep?x=1", YEARLY).await;
    assert_error_contains(r, StatusCode::BAD_REQUEST, "unknown query parameter").await;
    assert_error_contains(
        app.get("/schedules/%ff").await,
        StatusCode::BAD_REQUEST,
        "invalid schedule name",
    )
    .await;
    // Nothing changed.
    let (_, after) = app.get_json("/schedules/keep").await;
    assert_eq!(after, before);
    let (_, list) = app.get_json("/schedules/").await;
    assert_eq!(list["size"], 1, "{list}");
}

async fn get_json_of(client: &Client, server: &ServerProcess, path: &str) -> Value {
    let r = client.get(server.url(path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.unwrap()
}

/// Killed with SIGKILL and down for a few seconds, a per-second schedule runs once
/// at the restart for the slots it missed, says so, and never posts two jobs for one
/// slot: the queue holds exactly one job per run, before and after.
#[actix_web::test]
async fn after_a_sigkill_missed_slots_fire_once_and_no_slot_fires_twice() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("presque.toml"),
        "[storage]\nfsync = \"always\"\nsnapshot_interval_secs = 1\n",
    )
    .unwrap();
    let client = Client::new();
    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    let r = client
        .post(server.url("/schedules/tick"))
        .body(EVERY_SECOND)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let before = get_json_of(&client, &server, "/schedules/tick").await;
    let runs_before = before["runs"].as_u64().unwrap();
    assert!(runs_before >= 2, "{before}");
    server.kill9();
    tokio::time::sleep(Duration::from_millis(3500)).await;

    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    // Still: no more runs while the figures are read.
    let r = client
        .post(server.url("/schedules/tick"))
        .body(YEARLY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let after = get_json_of(&client, &server, "/schedules/tick").await;
    let runs_after = after["runs"].as_u64().unwrap();
    let missed = &after["missed"];
    assert!(missed["count"].as_u64() >= Some(2), "{after}");
    assert!(
        missed["since"].as_f64() > before["last_run"].as_f64(),
        "{after} vs {before}"
    );
    assert!(
        after["last_run"].as_f64() > missed["since"].as_f64(),
        "{after}"
    );
    // One run for all the missed slots (plus the runs between the GET and the kill,
    // at most one or two), not one per missed slot.
    assert!(
        runs_after > runs_before && runs_after <= runs_before + 3,
        "{before} -> {after}"
    );
    let counters = get_json_of(&client, &server, "/j/ticks").await;
    assert_eq!(counters["job_count"].as_u64(), Some(runs_after), "{after}");
    assert_eq!(after["missed_total"], missed["count"]);
    server.stop();

    // A graceful restart (from the snapshot this time) changes none of it.
    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    let again = get_json_of(&client, &server, "/schedules/tick").await;
    assert_eq!(again["runs"], after["runs"]);
    assert_eq!(again["last_run"], after["last_run"]);
    assert_eq!(again["missed"], json!(after["missed"]));
    let counters = get_json_of(&client, &server, "/j/ticks").await;
    assert_eq!(counters["job_count"].as_u64(), Some(runs_after));
    server.stop();
}

/// With tokens on, reading schedules takes any token, changing them the admin role.
#[actix_web::test]
async fn changing_schedules_needs_an_admin_token() {
    let auth = presque::Settings::from_toml(
        "[auth]\ntokens = [{ role = \"producer\", token = \"producer-token-0123456789\" }, { role = \"admin\", token = \"admin-token-0123456789ab\" }]\n",
        std::path::Path::new("test.toml"),
    )
    .unwrap()
    .auth;
    let app = spawn_app_with(|s| s.auth = auth).await;
    let send = |method: reqwest::Method, path: &str, token: &str| {
        app.client
            .request(method, app.url(path))
            .bearer_auth(token)
            .body(YEARLY)
    };
    let producer = "producer-token-0123456789";
    let admin = "admin-token-0123456789ab";
    let r = send(reqwest::Method::POST, "/schedules/s", producer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = send(reqwest::Method::POST, "/schedules/s", admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = send(reqwest::Method::GET, "/schedules/s", producer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(reqwest::Method::GET, "/schedules/", producer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(reqwest::Method::DELETE, "/schedules/s", producer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/schedules/").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = send(reqwest::Method::DELETE, "/schedules/s", admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[actix_web::test]
async fn a_schedule_s_priority_and_ttl_reach_the_jobs_it_posts() {
    let app = spawn_app().await;
    let body = r#"{"cron": "* * * * * *", "queue": "opts", "job": {"n": 1},
                   "options": {"priority": 7, "ttl": 600}}"#;
    let r = app.post_json("/schedules/with-options", body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(
        eventually(5, || async {
            app.get_json("/j/opts").await.1["job_count"].as_u64() >= Some(1)
        })
        .await,
        "no job arrived"
    );
    let (status, listed) = app.get_json("/jobs/opts?state=ready").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let job = &listed["jobs"][0];
    assert_eq!(job["priority"], 7, "{listed}");
    assert_eq!(job["job"], json!({"n": 1}));
    let expires = job["expires_at"].as_f64().unwrap_or_default();
    let now = now_secs_f64();
    assert!(
        expires > now + 590.0 && expires <= now + 600.5,
        "expires_at {expires} is not about 600 s from now ({now}): {listed}"
    );
    // A job posted with a more urgent priority is fetched first.
    let r = app
        .post_json("/q/opts?priority=3", r#"{"first": true}"#)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.get("/q/opts").await;
    assert_eq!(r.text().await.unwrap(), r#"{"first": true}"#);
}
