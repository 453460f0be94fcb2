//! Deliveries (the token each lease comes with, and the 409 for a worker whose lease
//! ran out), failure reasons, dead-letter fields and paging, lookups with the job's
//! body, and tokens surviving restarts of the real binary.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use crate::delivery::{as_holder, job_id_of, lease_one, token_of};
use crate::harness::*;
use crate::helpers::*;

const STALE: &str = "lease is no longer held";

#[actix_web::test]
async fn a_worker_whose_lease_ran_out_cannot_touch_the_job_another_now_holds() {
    let app = spawn_app().await;
    app.post_json("/q/race", "\"job\"").await;
    let (id, a, _) = lease_one(&app, "race", "0.2", "A").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (id_b, b, body) = lease_one(&app, "race", "30", "B").await;
    assert_eq!((id_b.as_str(), body.as_str()), (id.as_str(), "\"job\""));
    assert_ne!(a, b, "a new delivery has a new token");
    let (_, before) = app.get_json(&format!("/q/race/{id}")).await;

    // A's late ack, failure report and extension change nothing.
    for (method, path) in [
        (Method::DELETE, format!("/q/race/{id}")),
        (Method::PUT, format!("/q/race/{id}")),
        (Method::POST, format!("/q/race/{id}?lease=600")),
    ] {
        assert_error(
            as_holder(&app, method.clone(), &path, &a).await,
            StatusCode::CONFLICT,
            STALE,
        )
        .await;
        let (_, info) = app.get_json(&format!("/q/race/{id}")).await;
        assert_eq!(info, before, "after A's {method}");
    }
    assert_eq!(before["state"], "leased");
    assert_eq!(before["worker_id"], "B");
    assert_eq!(before["attempts"], 1);
    assert_eq!(before["errors"], json!([]));
    let (_, j) = app.get_json("/j/race").await;
    assert_eq!(j["job_failed"], 0);

    // B, the holder, acks; then A's token meets a job that is gone.
    let r = as_holder(&app, Method::DELETE, &format!("/q/race/{id}"), &b).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_error(
        as_holder(&app, Method::DELETE, &format!("/q/race/{id}"), &a).await,
        StatusCode::NOT_FOUND,
        "job not found",
    )
    .await;
}

#[actix_web::test]
async fn a_late_failure_report_or_extension_does_not_disturb_the_new_holder() {
    let app = spawn_app().await;
    app.post_json("/q/late", "1").await;
    let (id, a, _) = lease_one(&app, "late", "0.2", "A").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, b, _) = lease_one(&app, "late", "0.5", "B").await;
    // A tries to keep the job for ten minutes: refused, so B's short lease runs out.
    assert_error(
        as_holder(&app, Method::POST, &format!("/q/late/{id}?lease=600"), &a).await,
        StatusCode::CONFLICT,
        STALE,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (_, info) = app.get_json(&format!("/q/late/{id}")).await;
    assert_eq!(
        (info["state"].clone(), info["attempts"].clone()),
        (json!("ready"), json!(2))
    );
    // B's token is stale now too.
    assert_error(
        as_holder(&app, Method::PUT, &format!("/q/late/{id}"), &b).await,
        StatusCode::CONFLICT,
        STALE,
    )
    .await;
}

#[actix_web::test]
async fn the_token_is_required_and_checked() {
    let app = spawn_app().await;
    app.post_json("/q/t", "1").await;
    app.post_json("/q/t", "2").await;
    let (id, token, _) = lease_one(&app, "t", "30", "w").await;
    let (other, other_token, _) = lease_one(&app, "t", "30", "w").await;
    let path = format!("/q/t/{id}");
    for method in [Method::DELETE, Method::PUT, Method::POST] {
        let path = if method == Method::POST {
            format!("{path}?lease=5")
        } else {
            path.clone()
        };
        let r = app
            .client
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        assert_error(
            r,
            StatusCode::BAD_REQUEST,
            "the lease token is missing: send the X-presque-lease header that came with the lease (or ?delivery=TOKEN)",
        )
        .await;
        for bad in ["nonsense", "17", &format!("{token},{other_token}")] {
            assert_error_contains(
                as_holder(&app, method.clone(), &path, bad).await,
                StatusCode::BAD_REQUEST,
                "invalid lease token",
            )
            .await;
        }
        // Another job's token is no proof for this one.
        assert_error_contains(
            as_holder(&app, method.clone(), &path, &other_token).await,
            StatusCode::BAD_REQUEST,
            &format!("is for job {other}, not job {id}"),
        )
        .await;
    }
    // Header and query must agree when both are given.
    let r = app
        .client
        .delete(app.url(&format!("{path}?delivery={other_token}")))
        .header("X-presque-lease", &token)
        .send()
        .await
        .unwrap();
    assert_error_contains(r, StatusCode::BAD_REQUEST, "name different leases").await;
    // Nothing refused changed anything.
    let (_, info) = app.get_json(&path).await;
    assert_eq!(
        (info["state"].clone(), info["attempts"].clone()),
        (json!("leased"), json!(0))
    );
    let (_, j) = app.get_json("/j/t").await;
    assert_eq!(j["job_failed"], 0);
    // The query parameter alone works, for clients that cannot set headers.
    let r = app
        .client
        .post(app.url(&format!("{path}?lease=60&delivery={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .client
        .delete(app.url(&format!("{path}?delivery={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[actix_web::test]
async fn batch_leases_name_a_token_per_job_in_order() {
    let app = spawn_app().await;
    app.post_json("/qb/b", "{\"jobs\":[1,2,3]}").await;
    let r = app.get("/qb/b?lease=30&batch_size=3").await;
    let ids: Vec<String> = job_id_of(&r).split(',').map(str::to_owned).collect();
    let tokens: Vec<String> = token_of(&r).split(',').map(str::to_owned).collect();
    assert_eq!((ids.len(), tokens.len()), (3, 3));
    let distinct: std::collections::HashSet<&String> = tokens.iter().collect();
    assert_eq!(distinct.len(), 3);
    // Each job is acked with its own token; a neighbour's is refused.
    assert_eq!(
        as_holder(
            &app,
            Method::DELETE,
            &format!("/q/b/{}", ids[0]),
            &tokens[1]
        )
        .await
        .status(),
        StatusCode::BAD_REQUEST
    );
    for (id, token) in ids.iter().zip(&tokens) {
        let r = as_holder(&app, Method::DELETE, &format!("/q/b/{id}"), token).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "job {id}");
    }
    // Plain fetches carry no token.
    app.post_json("/q/b", "4").await;
    let r = app.get("/q/b").await;
    assert!(r.headers().get("X-presque-lease").is_none());
}

async fn fail_with(
    app: &TestApp,
    path: &str,
    token: &str,
    worker: Option<&str>,
    body: &str,
) -> reqwest::Response {
    let mut request = app
        .client
        .put(app.url(path))
        .header("X-presque-lease", token)
        .body(body.to_owned());
    if let Some(worker) = worker {
        request = request.header("X-presque-workerid", worker);
    }
    request.send().await.unwrap()
}

#[actix_web::test]
async fn failure_reports_keep_their_reasons_and_dead_letters_say_when_and_why() {
    let app = spawn_app().await;
    app.post_json("/settings/f", "{\"max_attempts\": 7}").await;
    app.post_json("/q/f", "{\"to\":\"a@b.c\"}").await;
    let started = now_secs_f64();
    let mut id = String::new();
    for n in 1..=6 {
        let (leased, token, _) = lease_one(&app, "f", "30", "holder").await;
        id = leased;
        let path = format!("/q/f/{id}");
        let r = match n {
            // No body: a report with no reason, from the lease's holder.
            1 => fail_with(&app, &path, &token, None, "").await,
            _ => {
                let body = json!({ "error": format!("smtp down #{n}") }).to_string();
                fail_with(&app, &path, &token, Some("reporter"), &body).await
            }
        };
        let (status, info) = json_of(r).await;
        assert_eq!(status, StatusCode::OK, "{info}");
        assert_eq!(info["attempts"], n);
    }
    let (_, info) = app.get_json(&format!("/q/f/{id}")).await;
    let errors = info["errors"].as_array().unwrap();
    // The newest five, oldest first.
    let reasons: Vec<&Value> = errors.iter().map(|e| &e["error"]).collect();
    assert_eq!(
        reasons,
        [
            "smtp down #2",
            "smtp down #3",
            "smtp down #4",
            "smtp down #5",
            "smtp down #6"
        ]
    );
    for e in errors {
        assert_eq!(e["worker_id"], "reporter");
        let at = e["at"].as_f64().unwrap();
        assert!(at >= started - 1.0 && at <= now_secs_f64() + 1.0, "{at}");
    }
    assert_eq!(
        (info["died_at"].clone(), info["reason"].clone()),
        (Value::Null, Value::Null)
    );

    // Bad reports are refused and change nothing.
    let (_, token, _) = lease_one(&app, "f", "30", "holder").await;
    let path = format!("/q/f/{id}");
    for (body, part) in [
        (
            "\"just a string\"",
            "a failure report is {\"error\": \"why it failed\"}",
        ),
        ("[\"x\"]", "a failure report is"),
        ("{\"error\": 5}", "error must be a string"),
        (
            "{\"error\": \"x\", \"code\": 5}",
            "takes only \"error\", not \"code\"",
        ),
        ("{\"error\": \"a\\u0000b\"}", "control characters"),
        ("{\"error\": ", "invalid JSON"),
    ] {
        assert_error_contains(
            fail_with(&app, &path, &token, None, body).await,
            StatusCode::BAD_REQUEST,
            part,
        )
        .await;
    }
    assert_error_contains(
        as_holder(
            &app,
            Method::PUT,
            &format!("{path}?delay=1&delayed=1893456000"),
            &token,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "not both",
    )
    .await;
    assert_error_contains(
        as_holder(&app, Method::PUT, &format!("{path}?delay=-1"), &token).await,
        StatusCode::BAD_REQUEST,
        "delay must be a number of seconds from 0 to 315360000",
    )
    .await;
    let (_, still) = app.get_json(&path).await;
    assert_eq!(
        (
            still["state"].clone(),
            still["attempts"].clone(),
            still["errors"].clone()
        ),
        (json!("leased"), json!(6), info["errors"].clone())
    );

    // A long reason is cut to 1,000 characters; the seventh attempt was the last.
    let long = "x".repeat(5000);
    let r = fail_with(
        &app,
        &path,
        &token,
        None,
        &json!({ "error": long }).to_string(),
    )
    .await;
    let (status, dead) = json_of(r).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dead["state"], "dead");
    assert_eq!(dead["reason"], "failed");
    let kept = dead["errors"][4]["error"].as_str().unwrap();
    assert_eq!(kept.len(), 1000);
    assert_eq!(dead["errors"][4]["worker_id"], "holder");
    let died_at = dead["died_at"].as_f64().unwrap();
    assert_eq!(Some(died_at), dead["errors"][4]["at"].as_f64());

    let (_, listing) = app.get_json("/dead/f").await;
    let letter = &listing["jobs"][0];
    assert_eq!(letter["reason"], "failed");
    assert_eq!(letter["died_at"], dead["died_at"]);
    assert_eq!(letter["errors"], dead["errors"]);
    assert_eq!(letter["job"], json!({"to": "a@b.c"}));

    // Death by a lease running out says so, at the lease's deadline.
    app.post_json("/settings/e", "{\"max_attempts\": 1}").await;
    app.post_json("/q/e", "\"e\"").await;
    let r = app.get("/q/e?lease=0.2").await;
    let expired_id = job_id_of(&r);
    let (_, info) = app.get_json(&format!("/q/e/{expired_id}")).await;
    let deadline = info["lease_deadline"].as_f64().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, listing) = app.get_json("/dead/e").await;
    let letter = &listing["jobs"][0];
    assert_eq!(letter["reason"], "lease expired");
    assert_eq!(letter["died_at"].as_f64(), Some(deadline));
    assert_eq!(letter["errors"], json!([]));
}

#[actix_web::test]
async fn a_failure_can_be_retried_after_a_relative_delay() {
    let app = spawn_app().await;
    app.post_json("/q/rd", "\"again\"").await;
    let (id, token, _) = lease_one(&app, "rd", "30", "w").await;
    let before = now_secs_f64();
    let r = as_holder(&app, Method::PUT, &format!("/q/rd/{id}?delay=0.5"), &token).await;
    let (status, info) = json_of(r).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["state"], "delayed");
    let due = info["due_at"].as_f64().unwrap();
    assert!(due >= before + 0.499 && due < now_secs_f64() + 0.6, "{due}");
    assert_error(app.get("/q/rd").await, StatusCode::NOT_FOUND, "no job").await;
    let r = app.get("/q/rd?wait=3").await;
    assert_eq!(r.text().await.unwrap(), "\"again\"");
    assert!(now_secs_f64() >= due);
}

#[actix_web::test]
async fn a_lookup_can_include_the_job_as_posted() {
    let app = spawn_app().await;
    let body = "{ \"to\" : \"a@b.c\",\n  \"n\": [1, 2.50] }";
    app.post_json("/q/lk", body).await;
    let (id, _, _) = lease_one(&app, "lk", "30", "w").await;
    let r = app.get(&format!("/q/lk/{id}?body=1")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(text.ends_with(&format!(",\"job\":{body}}}")), "{text}");
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["state"], "leased");
    assert_eq!(value["job"], json!({"to": "a@b.c", "n": [1, 2.5]}));
    // Without the flag (or with body=0), no job.
    for path in [format!("/q/lk/{id}"), format!("/q/lk/{id}?body=0")] {
        let (_, value) = app.get_json(&path).await;
        assert!(value.get("job").is_none(), "{path}: {value}");
    }
    // Ready, delayed and dead jobs alike.
    app.post_json("/q/lk", "\"ready\"").await;
    app.post_json("/q/lk?delayed=1893456000", "\"later\"").await;
    let (_, status) = app.get_json("/j/lk").await;
    assert_eq!(status["job_count"], 1);
    let ready_id = id.parse::<u64>().unwrap() + 1;
    for (job, expected) in [(ready_id, "ready"), (ready_id + 1, "later")] {
        let (_, value) = app.get_json(&format!("/q/lk/{job}?body=1")).await;
        assert_eq!(value["job"], expected);
    }
}

#[actix_web::test]
async fn dead_letters_come_in_pages() {
    let app = spawn_app().await;
    app.post_json("/settings/p", "{\"max_attempts\": 1}").await;
    let jobs: Vec<usize> = (0..25).collect();
    app.post_json("/qb/p", &json!({ "jobs": jobs }).to_string())
        .await;
    let r = app.get("/qb/p?batch_size=25&lease=0.2").await;
    let ids: Vec<u64> = job_id_of(&r)
        .split(',')
        .map(|id| id.parse().unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The default page holds them all, and says there is no next page.
    let (_, all) = app.get_json("/dead/p").await;
    assert_eq!(all["jobs"].as_array().unwrap().len(), 25);
    assert_eq!(all["next"], Value::Null);

    let mut seen = Vec::new();
    let mut path = "/dead/p?limit=10".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = app.get_json(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        seen.extend(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_u64().unwrap()),
        );
        match page["next"].as_u64() {
            Some(next) => {
                assert_eq!(Some(next), seen.last().copied());
                path = format!("/dead/p?limit=10&after={next}");
            }
            None => break,
        }
    }
    assert_eq!((pages, seen), (3, ids.clone()));
    // A page past the end is empty.
    let (_, page) = app.get_json(&format!("/dead/p?after={}", ids[24])).await;
    assert_eq!(
        (page["jobs"].clone(), page["next"].clone()),
        (json!([]), Value::Null)
    );

    for (query, part) in [
        ("limit=0", "limit must be an integer from 1 to 10000"),
        ("limit=10001", "limit must be an integer from 1 to 10000"),
        ("limit=ten", "limit must be"),
        (
            "after=x",
            "after must be the \"next\" of an earlier page (a job id)",
        ),
    ] {
        assert_error_contains(
            app.get(&format!("/dead/p?{query}")).await,
            StatusCode::BAD_REQUEST,
            part,
        )
        .await;
    }
}

/// Leases one job from the binary: (id, token).
async fn lease_from(client: &Client, server: &ServerProcess, queue: &str) -> (String, String) {
    let r = client
        .get(server.url(&format!("/q/{queue}?lease=600")))
        .header("X-presque-workerid", "w")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    (job_id_of(&r), token_of(&r))
}

async fn ack_on(
    client: &Client,
    server: &ServerProcess,
    queue: &str,
    id: &str,
    token: &str,
) -> StatusCode {
    client
        .delete(server.url(&format!("/q/{queue}/{id}")))
        .header("X-presque-lease", token)
        .send()
        .await
        .unwrap()
        .status()
}

#[actix_web::test]
async fn tokens_survive_a_crash_and_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("presque.toml"),
        "[storage]\nfsync = \"always\"\n",
    )
    .unwrap();
    let client = Client::new();
    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    for i in 0..4 {
        let r = client
            .post(server.url("/q/r"))
            .header("Content-Type", "application/json")
            .body(i.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let (first, first_token) = lease_from(&client, &server, "r").await;
    let (second, second_token) = lease_from(&client, &server, "r").await;
    // A lease grant is answered before its fsync (README, *Durability*); a change
    // answered after it under `always` is on disk, and the log is written in order,
    // so the grants before it are too.
    let r = client
        .post(server.url("/q/other"))
        .header("Content-Type", "application/json")
        .body("0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // SIGKILL: the leases and their tokens come back from the log.
    server.kill9();
    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    assert_eq!(
        ack_on(&client, &server, "r", &first, &first_token).await,
        StatusCode::NO_CONTENT
    );
    let (third, third_token) = lease_from(&client, &server, "r").await;
    assert!(![&first_token, &second_token].contains(&&third_token));

    // A graceful stop: from the snapshot this time.
    server.stop();
    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    for (id, token) in [(&second, &second_token), (&third, &third_token)] {
        assert_eq!(
            ack_on(&client, &server, "r", id, token).await,
            StatusCode::NO_CONTENT,
            "job {id}"
        );
    }
    // The counter went on from where it was: the next token is new too.
    let (_, fourth_token) = lease_from(&client, &server, "r").await;
    assert!(![&first_token, &second_token, &third_token].contains(&&fourth_token));
    server.stop();
}

/// Under `everysec` a crash can lose the record of a lease that was already answered
/// (here: the log's last byte is cut, as a lost page-cache write would). The job is
/// then leased again after the restart, and the new delivery must not get the lost
/// one's token, or the first holder's late ack would take the job from the second.
#[actix_web::test]
async fn a_lease_lost_in_a_crash_never_shares_its_token_with_the_next() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("presque.toml"),
        "[storage]\nfsync = \"everysec\"\n",
    )
    .unwrap();
    let client = Client::new();
    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    let r = client
        .post(server.url("/q/lost"))
        .header("Content-Type", "application/json")
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Written (not fsynced) before the lease, so only the lease's record is cut.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (id, lost_token) = lease_from(&client, &server, "lost").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server.kill9();
    let newest = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("log-") && n.ends_with(".presque"))
        })
        .max()
        .unwrap();
    let len = std::fs::metadata(&newest).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap();
    file.set_len(len - 1).unwrap();
    drop(file);

    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    let (again, new_token) = lease_from(&client, &server, "lost").await;
    assert_eq!(again, id, "the lost lease's job is handed out again");
    assert_ne!(new_token, lost_token);
    assert_eq!(
        ack_on(&client, &server, "lost", &id, &lost_token).await,
        StatusCode::CONFLICT
    );
    assert_eq!(
        ack_on(&client, &server, "lost", &id, &new_token).await,
        StatusCode::NO_CONTENT
    );
    server.stop();
}

/// README: "A lease that ran out while the server was down is expired at start (its
/// token then gets 409)". The start expires such leases in steps of 1,024, so a
/// holder's ack can reach the queue before the step that expires its lease: it must
/// still be refused, since the lease has run out whether or not its expiry has been
/// processed yet.
#[actix_web::test]
async fn a_lease_that_ran_out_while_the_server_was_down_is_refused_from_the_first_request() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("presque.toml"),
        "[server]\nworkers = 1\n[storage]\nfsync = \"everysec\"\nsnapshot_interval_secs = 3600\n",
    )
    .unwrap();
    let client = Client::new();
    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    let n = 30_000usize;
    let numbers: Vec<usize> = (0..n).collect();
    for chunk in numbers.chunks(1000) {
        let r = client
            .post(server.url("/qb/down"))
            .header("Content-Type", "application/json")
            .body(json!({ "jobs": chunk }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let mut held: Vec<(String, String)> = Vec::new();
    while held.len() < n {
        let r = client
            .get(server.url("/qb/down?batch_size=1000&lease=1"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let (ids, tokens) = (job_id_of(&r), token_of(&r));
        held.extend(
            ids.split(',')
                .map(str::to_owned)
                .zip(tokens.split(',').map(str::to_owned)),
        );
    }
    server.stop();
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // Expiry goes by (deadline, id): the last ids are expired last, so their holders
    // ask first, from several connections at once.
    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    let late: Vec<(String, String)> = held.iter().rev().take(4_000).cloned().collect();
    let mut tasks = Vec::new();
    for part in late.chunks(1_000) {
        let (client, part) = (client.clone(), part.to_vec());
        let url = server.url("");
        tasks.push(actix_web::rt::spawn(async move {
            let mut acked = Vec::new();
            for (id, token) in part {
                let status = client
                    .delete(format!("{url}/q/down/{id}"))
                    .header("X-presque-lease", &token)
                    .send()
                    .await
                    .unwrap()
                    .status();
                if status != StatusCode::CONFLICT {
                    acked.push((id, status));
                }
            }
            acked
        }));
    }
    let mut wrong = Vec::new();
    for task in tasks {
        wrong.extend(task.await.unwrap());
    }
    assert!(
        wrong.is_empty(),
        "{} acks of leases that ran out were not refused, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(3)]
    );
    server.stop();
}

/// "Both may be given if they are the same token": the same token, spelt with a
/// leading zero or in capitals, is the same token; an empty header is no token.
#[actix_web::test]
async fn header_and_query_agree_as_tokens_not_as_text() {
    let app = spawn_app().await;
    app.post_json("/q/spell", "1").await;
    let (id, token, _) = lease_one(&app, "spell", "30", "w").await;
    let respelt = format!("0{}", token.to_uppercase());
    let r = app
        .client
        .post(app.url(&format!("/q/spell/{id}?lease=60&delivery={respelt}")))
        .header("X-presque-lease", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{token} and {respelt}");
    let r = app
        .client
        .delete(app.url(&format!("/q/spell/{id}?delivery={token}")))
        .header("X-presque-lease", "")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[actix_web::test]
async fn a_lease_says_how_many_deliveries_failed_before_it() {
    let app = spawn_app().await;
    let attempts_of = |r: &reqwest::Response| {
        r.headers()
            .get("X-presque-attempts")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    app.post_json("/q/att", "{\"n\":1}").await;
    let r = app.get("/q/att?lease=30").await;
    assert_eq!(attempts_of(&r).as_deref(), Some("0"));
    let (id, token) = (job_id_of(&r), token_of(&r));
    let r = fail_with(&app, &format!("/q/att/{id}"), &token, None, "").await;
    assert!(r.status().is_success(), "{}", r.status());
    let r = app.get("/q/att?lease=30").await;
    assert_eq!(attempts_of(&r).as_deref(), Some("1"));
    let (_, lookup) = app.get_json(&format!("/q/att/{id}")).await;
    assert_eq!(lookup["attempts"], 1, "{lookup}");
    // In a batch, in the order of the ids; a second job fresh beside the retried one.
    let token = token_of(&r);
    let r = fail_with(&app, &format!("/q/att/{id}"), &token, None, "").await;
    assert!(r.status().is_success(), "{}", r.status());
    app.post_json("/q/att", "{\"n\":2}").await;
    let r = app.get("/qb/att?lease=30&batch_size=2").await;
    assert_eq!(job_id_of(&r).split(',').next(), Some(id.as_str()));
    assert_eq!(attempts_of(&r).as_deref(), Some("2,0"));
    // Plain fetches carry none.
    app.post_json("/q/att", "3").await;
    let r = app.get("/q/att").await;
    assert!(attempts_of(&r).is_none());
}
