//! Per-job priorities (`priority=N` on create): fetched most urgent first, FIFO among
//! equals, through every route that creates, fetches and lists jobs, and across a
//! crash.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::harness::*;
use crate::helpers::*;

/// The created job's id (the first, for a batch).
async fn create(app: &TestApp, path: &str, body: &str) -> u64 {
    let r = app.post_json(path, body).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{path}");
    let ids = r.headers()["X-presque-jobid"].to_str().unwrap();
    ids.split(',').next().unwrap().parse().unwrap()
}

async fn fetch(app: &TestApp, path: &str) -> (StatusCode, String) {
    let r = app.get(path).await;
    (r.status(), r.text().await.unwrap())
}

async fn drain(app: &TestApp, queue: &str) -> Vec<String> {
    let mut jobs = Vec::new();
    loop {
        let (status, body) = fetch(app, &format!("/q/{queue}")).await;
        if status != StatusCode::OK {
            return jobs;
        }
        jobs.push(body);
    }
}

#[actix_web::test]
async fn the_most_urgent_job_comes_first_fifo_among_equals() {
    let app = spawn_app().await;
    for (n, priority) in [
        (1, None),
        (2, Some(200)),
        (3, Some(5)),
        (4, None),
        (5, Some(5)),
    ]
    .into_iter()
    .chain([(6, Some(0)), (7, Some(128)), (8, Some(255))])
    {
        let path = match priority {
            Some(p) => format!("/q/p?priority={p}"),
            None => "/q/p".to_owned(),
        };
        create(&app, &path, &n.to_string()).await;
    }
    assert_eq!(
        drain(&app, "p").await,
        ["6", "3", "5", "1", "4", "7", "2", "8"]
    );

    // Batches: every job of a batch has its priority, and a batch fetch takes across
    // priorities in the same order.
    create(&app, "/qb/b", r#"{"jobs":["late1","late2"]}"#).await;
    create(
        &app,
        "/qb/b?priority=1",
        r#"{"jobs":["urgent1","urgent2"]}"#,
    )
    .await;
    create(&app, "/q/b?priority=1", r#""urgent3""#).await;
    create(&app, "/qb/b?priority=250", r#"{"jobs":["last"]}"#).await;
    let (status, body) = fetch(&app, "/qb/b?batch_size=4").await;
    assert_eq!(status, StatusCode::OK);
    let got: Vec<String> = serde_json::from_str(&body).unwrap();
    assert_eq!(
        got,
        ["\"urgent1\"", "\"urgent2\"", "\"urgent3\"", "\"late1\""]
    );
    // Leased fetches too.
    let (status, body) = fetch(&app, "/qb/b?batch_size=10&lease=60").await;
    assert_eq!(status, StatusCode::OK);
    let got: Vec<String> = serde_json::from_str(&body).unwrap();
    assert_eq!(got, ["\"late2\"", "\"last\""]);
}

#[actix_web::test]
async fn bad_priorities_are_refused_and_create_nothing() {
    let app = spawn_app().await;
    // The last three percent-encoded: `+5`, ` 5`, `5 ` (a plain `+` is a space).
    for raw in [
        "-1", "256", "1000", "abc", "1.5", "", "0x10", "1e2", "%2B5", "%205", "5%20",
    ] {
        let shown = raw.replace("%2B", "+").replace("%20", " ");
        let message = format!(
            "priority must be an integer from 0 (most urgent) to 255 (least urgent), not {shown:?}"
        );
        let path = format!("/q/bad?priority={raw}");
        assert_error(
            app.post_json(&path, "{}").await,
            StatusCode::BAD_REQUEST,
            &message,
        )
        .await;
        assert_error(
            app.put_json_as(&path, "{}", "w").await,
            StatusCode::BAD_REQUEST,
            &message,
        )
        .await;
        let path = format!("/qb/bad?priority={raw}");
        assert_error(
            app.post_json(&path, r#"{"jobs":[1,2]}"#).await,
            StatusCode::BAD_REQUEST,
            &message,
        )
        .await;
    }
    let (status, listed) = app.get_json("/status/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["size"], 0, "{listed}");
    assert_eq!(app.get_json("/status/bad").await.1["size"], 0);
    // The ends of the range are fine.
    create(&app, "/q/ok?priority=255", "1").await;
    create(&app, "/q/ok?priority=0", "2").await;
    assert_eq!(drain(&app, "ok").await, ["2", "1"]);
}

#[actix_web::test]
async fn lookup_and_listings_show_priorities_in_fetch_order() {
    let app = spawn_app().await;
    let plain = create(&app, "/q/l", r#"{"n":1}"#).await;
    let urgent = create(&app, "/q/l?priority=3", r#"{"n":2}"#).await;
    let later = create(&app, "/q/l?priority=129&delay=3600", r#"{"n":3}"#).await;

    let (status, found) = app.get_json(&format!("/q/l/{urgent}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (found["state"].clone(), found["priority"].clone()),
        (json!("ready"), json!(3))
    );
    assert_eq!(
        app.get_json(&format!("/q/l/{plain}")).await.1["priority"],
        128
    );
    let (_, delayed) = app.get_json(&format!("/q/l/{later}")).await;
    assert_eq!(
        (delayed["state"].clone(), delayed["priority"].clone()),
        (json!("delayed"), json!(129))
    );

    let (_, status) = app.get_json("/status/l?with_desc=1").await;
    assert_eq!(
        status,
        json!({"queue": "l", "size": 2, "jobs": [r#"{"n":2}"#, r#"{"n":1}"#], "priorities": [3, 128]})
    );
    let (_, jobs) = app.get_json("/jobs/l?state=ready").await;
    let listed: Vec<(Value, Value)> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["id"].clone(), j["priority"].clone()))
        .collect();
    assert_eq!(
        listed,
        [(json!(urgent), json!(3)), (json!(plain), json!(128))]
    );
    let (_, jobs) = app.get_json("/jobs/l?state=delayed").await;
    assert_eq!(jobs["jobs"][0]["priority"], 129);

    // A queue of default priorities answers exactly as before priorities existed.
    create(&app, "/q/plain", "1").await;
    let (_, status) = app.get_json("/status/plain?with_desc=1").await;
    assert_eq!(status, json!({"queue": "plain", "size": 1, "jobs": ["1"]}));
}

#[actix_web::test]
async fn a_failed_or_expired_job_keeps_its_priority() {
    let app = spawn_app().await;
    create(&app, "/q/f?priority=9", r#""a""#).await;
    create(&app, "/q/f", r#""b""#).await;
    create(&app, "/q/f?priority=9", r#""c""#).await;

    // "a" leased and failed: back behind "c", still ahead of "b".
    let r = app.get("/q/f?lease=60").await;
    assert_eq!(r.status(), StatusCode::OK);
    let id = r.headers()["X-presque-jobid"].to_str().unwrap().to_owned();
    let token = r.headers()["X-presque-lease"].to_str().unwrap().to_owned();
    let failed = app
        .client
        .put(app.url(&format!("/q/f/{id}")))
        .header("X-presque-lease", token)
        .send()
        .await
        .unwrap();
    let (status, found) = json_of(failed).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(
        (found["attempts"].clone(), found["priority"].clone()),
        (json!(1), json!(9))
    );

    // "c" leased and run out: back to the head of its priority.
    let (status, body) = fetch(&app, "/q/f?lease=0.05").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, r#""c""#));
    let mut back = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if app.get_json("/status/f").await.1["size"] == 3 {
            back = true;
            break;
        }
    }
    assert!(back, "the lease never ran out");
    assert_eq!(drain(&app, "f").await, [r#""c""#, r#""a""#, r#""b""#]);
}

/// What the order across levels looks like after a crash, a graceful stop (which
/// writes a snapshot) and a restart on the same data: the same as before.
#[actix_web::test]
async fn the_order_survives_a_crash_and_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("presque.toml"),
        "[storage]\nfsync = \"always\"\nsnapshot_interval_secs = 3600\n",
    )
    .unwrap();
    let client = Client::new();
    let post_to = |server: &ServerProcess, path: &str, body: &str| {
        let request = client
            .post(server.url(path))
            .header("Content-Type", "application/json")
            .body(body.to_owned());
        async move { request.send().await.unwrap().status() }
    };
    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    for (path, body) in [
        ("/q/c", "1"),
        ("/q/c?priority=200", "2"),
        ("/qb/c?priority=7", r#"{"jobs":[3,4]}"#),
        ("/q/c", "5"),
        ("/q/c?priority=0", "6"),
        ("/q/c?priority=7", "7"),
    ] {
        assert_eq!(post_to(&server, path, body).await, StatusCode::CREATED);
    }
    let r = client.get(server.url("/q/c")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "6");
    // "3" leased and run out: at the head of priority 7, where images keep it.
    let r = client
        .get(server.url("/q/c?lease=0.05"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "3");
    let mut back = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = client.get(server.url("/status/c")).send().await.unwrap();
        if r.json::<Value>().await.unwrap()["size"] == 6 {
            back = true;
            break;
        }
    }
    assert!(back, "the lease never ran out");
    let before = client
        .get(server.url("/status/c?with_desc=1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        before.contains(r#""priorities":[7,7,7,128,128,200]"#),
        "{before}"
    );
    server.kill9();

    // Replayed from the log alone.
    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    let after = client
        .get(server.url("/status/c?with_desc=1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(after, before);
    let lines = server.stop();
    assert!(
        lines.iter().any(|l| l.contains("snapshot written")),
        "{lines:?}"
    );

    // Read back from the snapshot.
    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    let mut order = Vec::new();
    loop {
        let r = client.get(server.url("/q/c")).send().await.unwrap();
        if r.status() != StatusCode::OK {
            break;
        }
        order.push(r.text().await.unwrap());
    }
    assert_eq!(order, ["3", "4", "7", "1", "5", "2"]);
    server.stop();
}
