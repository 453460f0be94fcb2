//! The dashboard's assets (`/`, `/dashboard/FILE`) and the JSON routes it reads that
//! no other client needed before: `/overview`, `/jobs/NAME` and `/info`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;
use presque::Settings;

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[actix_web::test]
async fn the_page_and_its_files_are_served_with_validators() {
    let app = spawn_app().await;
    // A hostile name: the page is the same static file whatever the queues hold.
    app.post_json("/q/%3Cb%3Eshout", "{}").await;
    for (path, media) in [
        ("/", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(header(&r, "content-type").starts_with(media), "{path}");
        assert_eq!(header(&r, "cache-control"), "no-cache", "{path}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        let etag = header(&r, "etag");
        assert!(etag.starts_with('"') && etag.len() == 18, "{path}: {etag}");
        let text = r.text().await.unwrap();
        assert!(!text.contains("shout"), "{path}");
        // The validator: the same file answers 304, with no body.
        let again = app
            .client
            .get(app.url(path))
            .header("If-None-Match", etag.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(header(&again, "etag"), etag);
        assert!(again.bytes().await.unwrap().is_empty());
        let other = app
            .client
            .get(app.url(path))
            .header("If-None-Match", "\"something-else\"")
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), StatusCode::OK, "{path}");
    }
    let page = app.get("/").await.text().await.unwrap();
    assert!(page.contains("src=\"/dashboard/app.js\""));
    assert!(page.contains("href=\"/dashboard/app.css\""));
    // No CDN, nothing from elsewhere.
    assert!(!page.contains("http://") && !page.contains("https://"));
    let csp = header(&app.get("/").await, "content-security-policy");
    assert!(csp.contains("default-src 'self'"), "{csp}");
}

#[actix_web::test]
async fn asset_routes_are_strict() {
    let app = spawn_app().await;
    assert_error(
        app.get("/dashboard/nope.js").await,
        StatusCode::NOT_FOUND,
        "not found",
    )
    .await;
    assert_error_contains(
        app.get("/dashboard/app.js?v=2").await,
        StatusCode::BAD_REQUEST,
        "unknown query parameter",
    )
    .await;
    assert_error_contains(app.get("/?x=1").await, StatusCode::BAD_REQUEST, "unknown").await;
    let r = app.post_json("/dashboard/app.js", "{}").await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&r, "allow"), "GET");
    // Nothing below a file.
    assert_eq!(
        app.get("/dashboard/app.js/x").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// Makes job `id` of `queue` dead: leases it and reports it failed once, the queue
/// allowing one attempt.
async fn make_dead(app: &TestApp, queue: &str) -> u64 {
    let r = app
        .post_json(&format!("/settings/{queue}"), "{\"max_attempts\":1}")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.get_as(&format!("/q/{queue}?lease=60"), "w-1").await;
    assert_eq!(r.status(), StatusCode::OK);
    let id: u64 = header(&r, "x-presque-jobid").parse().unwrap();
    let token = header(&r, "x-presque-lease");
    let r = app
        .client
        .put(app.url(&format!("/q/{queue}/{id}")))
        .header("X-presque-lease", token)
        .header("Content-Type", "application/json")
        .body("{\"error\":\"smtp <down>\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    id
}

#[actix_web::test]
async fn the_overview_counts_every_state_in_natural_order() {
    let app = spawn_app().await;
    for name in ["tenant-10", "tenant-2", "tenant-1", "other"] {
        assert_eq!(
            app.post_json(&format!("/q/{name}"), "{\"n\":1}")
                .await
                .status(),
            StatusCode::CREATED
        );
    }
    app.post_json("/q/tenant-2?delay=600", "{\"n\":2}").await;
    app.post_json("/q/tenant-2", "{\"n\":3}").await;
    app.post_json("/q/tenant-2", "{\"n\":4}").await;
    // tenant-2: one dead (the first job), one leased, one delayed, one ready; both
    // hand-outs counted as processed.
    make_dead(&app, "tenant-2").await;
    assert_eq!(
        app.get_as("/q/tenant-2?lease=60", "w-2").await.status(),
        StatusCode::OK
    );
    // A parked consumer on tenant-10, once it is empty.
    app.get("/q/tenant-10").await;
    let parked = {
        let client = app.client.clone();
        let url = app.url("/q/tenant-10?wait=5");
        actix_web::rt::spawn(async move { client.get(url).send().await })
    };
    let mut waiting = json!(0);
    for _ in 0..100 {
        let (_, ov) = app.get_json("/overview?filter=tenant-10").await;
        waiting = ov["queues"][0]["waiting"].clone();
        if waiting == 1 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(waiting, 1);
    let (status, ov) = app.get_json("/overview").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = ov["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["other", "tenant-1", "tenant-2", "tenant-10"]);
    assert_eq!(
        (ov["size"].clone(), ov["matched"].clone()),
        (json!(4), json!(4))
    );
    assert_eq!(ov["next"], Value::Null);
    assert_eq!(
        ov["queues"][2],
        json!({"name": "tenant-2", "open": true, "ready": 1, "delayed": 1, "leased": 1,
               "dead": 1, "waiting": 0, "processed": 2, "failed": 1})
    );
    // One queue by name; an unknown one is no queue, not an error.
    let (_, one) = app.get_json("/overview?name=tenant-2").await;
    assert_eq!(one["queues"].as_array().unwrap().len(), 1);
    assert_eq!(one["queues"][0]["dead"], 1);
    let (_, none) = app.get_json("/overview?name=nope").await;
    assert_eq!(none["queues"], json!([]));
    app.client
        .post(app.url("/control/other"))
        .body("{\"status\":\"stop\"}")
        .send()
        .await
        .unwrap();
    let (_, other) = app.get_json("/overview?name=other").await;
    assert_eq!(other["queues"][0]["open"], false);
    app.post_json("/q/tenant-10", "{}").await;
    let _ = parked.await;
}

#[actix_web::test]
async fn the_overview_pages_and_filters() {
    let app = spawn_app().await;
    for i in 1..=12 {
        app.post_json(&format!("/q/job-{i}"), "1").await;
    }
    app.post_json("/q/Other-JOB", "1").await;
    let mut seen = Vec::new();
    let mut path = "/overview?limit=5&filter=job-".to_owned();
    loop {
        let (status, page) = app.get_json(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["size"], 13);
        assert_eq!(page["matched"], 12);
        for q in page["queues"].as_array().unwrap() {
            seen.push(q["name"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/overview?limit=5&filter=job-&after={next}"),
            None => break,
        }
    }
    let expected: Vec<String> = (1..=12).map(|i| format!("job-{i}")).collect();
    assert_eq!(seen, expected);
    // The filter ignores ASCII case.
    let (_, upper) = app.get_json("/overview?filter=OTHER-j").await;
    assert_eq!(upper["queues"][0]["name"], "Other-JOB");
    assert_eq!(upper["matched"], 1);
}

#[actix_web::test]
async fn the_overview_refuses_bad_parameters() {
    let app = spawn_app().await;
    for (path, part) in [
        ("/overview?limit=0", "limit"),
        ("/overview?limit=10001", "limit"),
        ("/overview?limit=x", "limit"),
        ("/overview?sort=name", "unknown query parameter"),
        ("/overview?after=a%2Fb", "queue name"),
        ("/overview?name=a&limit=2", "name picks one queue"),
        ("/overview?name=", "queue name"),
    ] {
        assert_error_contains(app.get(path).await, StatusCode::BAD_REQUEST, part).await;
    }
    let long = "x".repeat(1025);
    assert_error_contains(
        app.get(&format!("/overview?filter={long}")).await,
        StatusCode::BAD_REQUEST,
        "filter",
    )
    .await;
    let r = app.post_json("/overview", "{}").await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// The jobs of a listing, as (id, body).
fn jobs_of(page: &Value) -> Vec<(u64, Value)> {
    page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["id"].as_u64().unwrap(), j["job"].clone()))
        .collect()
}

#[actix_web::test]
async fn jobs_are_listed_by_state_with_what_the_queue_knows() {
    let app = spawn_app().await;
    let hostile = "{\"html\":\"<img src=x onerror=alert(1)>\",\"n\":1}";
    for body in [hostile, "2", "[3]", "\"4\""] {
        app.post_json("/q/mail", body).await;
    }
    app.post_json("/q/mail?delay=600", "{\"later\":true}").await;
    let dead = make_dead(&app, "mail").await;
    let r = app.get_as("/q/mail?lease=60", "w-9").await;
    let leased: u64 = header(&r, "x-presque-jobid").parse().unwrap();

    // The stored bytes come back byte for byte: the raw text holds the hostile body.
    let r = app.get("/jobs/mail?state=dead").await;
    assert_eq!(header(&r, "content-type"), "application/json");
    let raw = r.text().await.unwrap();
    assert!(raw.contains(hostile), "{raw}");
    let page: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(page["state"], "dead");
    assert_eq!(page["size"], 1);
    let job = &page["jobs"][0];
    assert_eq!(job["id"], dead);
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["reason"], "failed");
    assert_eq!(job["errors"][0]["error"], "smtp <down>");
    assert_eq!(job["errors"][0]["worker_id"], "w-1");

    let (_, page) = app.get_json("/jobs/mail?state=leased").await;
    assert_eq!(page["size"], 1);
    let job = &page["jobs"][0];
    assert_eq!(job["id"], leased);
    assert_eq!(job["job"], json!(2));
    assert_eq!(job["worker_id"], "w-9");
    let deadline = job["lease_deadline"].as_f64().unwrap();
    assert!(deadline > now_secs_f64() + 30.0, "{deadline}");

    let (_, page) = app.get_json("/jobs/mail?state=delayed").await;
    assert_eq!(page["jobs"][0]["job"], json!({"later": true}));
    assert!(page["jobs"][0]["due_at"].as_f64().unwrap() > now_secs_f64() + 500.0);

    let (_, page) = app.get_json("/jobs/mail?state=ready").await;
    assert_eq!(page["size"], 2);
    let bodies: Vec<Value> = jobs_of(&page).into_iter().map(|(_, b)| b).collect();
    assert_eq!(bodies, [json!([3]), json!("4")]);
    assert_eq!(page["jobs"][0]["lease_deadline"], Value::Null);
    assert_eq!(page["next"], Value::Null);

    // An unknown queue lists nothing.
    let (status, page) = app.get_json("/jobs/nope?state=ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (page["size"].clone(), page["jobs"].clone()),
        (json!(0), json!([]))
    );
}

#[actix_web::test]
async fn job_listings_page_without_gaps_in_every_state() {
    let app = spawn_app().await;
    for i in 0..7 {
        app.post_json("/q/p", &i.to_string()).await;
        app.post_json(&format!("/q/p?delay={}", 600 + i), &(100 + i).to_string())
            .await;
    }
    for (state, expected) in [
        ("ready", (0..7).collect::<Vec<i64>>()),
        ("delayed", (100..107).collect()),
    ] {
        let mut seen = Vec::new();
        let mut path = format!("/jobs/p?state={state}&limit=3");
        loop {
            let (status, page) = app.get_json(&path).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            assert_eq!(page["size"], 7);
            assert!(page["jobs"].as_array().unwrap().len() <= 3);
            seen.extend(jobs_of(&page).into_iter().map(|(_, b)| b.as_i64().unwrap()));
            match page["next"].as_u64() {
                Some(next) => path = format!("/jobs/p?state={state}&limit=3&after={next}"),
                None => break,
            }
        }
        assert_eq!(seen, expected, "{state}");
    }
    for path in [
        "/jobs/p",
        "/jobs/p?state=gone",
        "/jobs/p?state=ready&limit=0",
        "/jobs/p?state=ready&after=x",
        "/jobs/p?state=ready&body=1",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
    }
    assert_error(
        app.get("/jobs/?state=ready").await,
        StatusCode::NOT_FOUND,
        "queue name is missing",
    )
    .await;
}

#[actix_web::test]
async fn info_reports_the_server() {
    let app = spawn_app_with(|s| {
        s.storage.snapshot_interval_secs = 1;
    })
    .await;
    let (status, info) = app.get_json("/info").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["fsync"], "everysec");
    assert!(info["data_dir"].as_str().unwrap().ends_with("data"));
    assert!(info["memory"]["used_bytes"].is_u64());
    assert!(info["uptime_secs"].is_u64());
    assert!((info["started_at"].as_f64().unwrap() - now_secs_f64()).abs() < 60.0);
    let before = info["next_job_id"].as_u64().unwrap();
    app.post_json("/q/a", "1").await;
    app.post_json("/q/b", "2").await;
    // The next snapshot shows up with its size.
    let mut info = Value::Null;
    for _ in 0..100 {
        info = app.get_json("/info").await.1;
        if info["snapshot"].is_object() {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(info["snapshot"]["bytes"].as_u64().unwrap() > 0, "{info}");
    assert!(info["snapshot"]["written_at"].as_f64().is_some(), "{info}");
    assert_eq!(info["queues"], 2);
    assert_eq!(info["next_job_id"].as_u64().unwrap(), before + 2);
    assert_error_contains(
        app.get("/info?x=1").await,
        StatusCode::BAD_REQUEST,
        "unknown",
    )
    .await;
}

#[actix_web::test]
async fn the_dashboard_routes_follow_the_auth_rules() {
    const CONSUMER: &str = "consumer-token-0123456789";
    const ADMIN: &str = "admin-token-0123456789abc";
    let toml = format!(
        "[auth]\ntokens = [\n  {{ role = \"consumer\", token = \"{CONSUMER}\" }},\n  \
         {{ role = \"admin\", token = \"{ADMIN}\" }},\n]\nopen_routes = [\"/\"]\n"
    );
    let auth = Settings::from_toml(&toml, std::path::Path::new("test.toml"))
        .unwrap()
        .auth;
    let app = spawn_app_with(|s| s.auth = auth).await;
    let call = |method: Method, path: &str, token: Option<&str>| {
        let mut request = app.client.request(method, app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    // The page (opened here) and its files (always: no data in them) load without a
    // token; every route with data still needs one.
    for path in ["/", "/dashboard/app.js", "/dashboard/app.css"] {
        assert_eq!(
            call(Method::GET, path, None).await.unwrap().status(),
            200,
            "{path}"
        );
    }
    for path in ["/overview", "/info", "/jobs/q?state=ready"] {
        let r = call(Method::GET, path, None).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    for path in ["/overview", "/info"] {
        let r = call(Method::GET, path, Some(CONSUMER)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    // Job bodies: admin only, as for the dead letters.
    let r = call(Method::GET, "/jobs/q?state=ready", Some(CONSUMER))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = call(Method::GET, "/jobs/q?state=ready", Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[actix_web::test]
async fn a_consumer_that_left_is_no_longer_counted_as_waiting() {
    let app = spawn_app().await;
    app.post_json("/q/gone", "{}").await;
    app.get("/q/gone").await;
    // Its own client, so that dropping the request closes its connection.
    let parked = {
        let url = app.url("/q/gone?wait=20");
        actix_web::rt::spawn(async move { reqwest::Client::new().get(url).send().await })
    };
    let mut seen = None;
    for _ in 0..100 {
        seen = waiting_on(&app, "gone").await;
        if seen == Some(1) {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, Some(1));
    parked.abort();
    for _ in 0..100 {
        seen = waiting_on(&app, "gone").await;
        if seen == Some(0) {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, Some(0), "a departed consumer still counts as waiting");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("\npresque_waiters 0\n"),
        "the server-wide waiters still count it: {metrics}"
    );
}

/// The `waiting` count `/overview` shows for `queue`.
async fn waiting_on(app: &TestApp, queue: &str) -> Option<u64> {
    let (_, ov) = app.get_json(&format!("/overview?name={queue}")).await;
    ov["queues"][0]["waiting"].as_u64()
}
