//! `/q/NAME`: fetch, create, failure reports, purge, delayed and uniq jobs.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn posted_job_comes_back_byte_for_byte() {
    let app = spawn_app().await;
    let body = "{ \"b\" : [1, 2.50, \"é\\u00e9\"],\n  \"a\":null }";
    let r = app.post_json("/q/emails", body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.text().await.unwrap(), "");

    let r = app.get("/q/emails").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get("content-type").unwrap(), "application/json");
    assert_eq!(r.text().await.unwrap(), body);
}

#[actix_web::test]
async fn any_json_value_is_a_job() {
    let app = spawn_app().await;
    for body in ["[1,2]", "\"text\"", "42", "null"] {
        assert_eq!(
            app.post_json("/q/any", body).await.status(),
            StatusCode::CREATED
        );
        assert_eq!(app.get("/q/any").await.text().await.unwrap(), body);
    }
}

#[actix_web::test]
async fn jobs_are_fetched_in_fifo_order() {
    let app = spawn_app().await;
    for i in 0..20 {
        app.post_json("/q/fifo", &format!("{{\"n\":{i}}}")).await;
    }
    for i in 0..20 {
        let r = app.get("/q/fifo").await;
        assert_eq!(r.text().await.unwrap(), format!("{{\"n\":{i}}}"));
    }
    assert_error(app.get("/q/fifo").await, StatusCode::NOT_FOUND, "no job").await;
}

#[actix_web::test]
async fn empty_and_unknown_queues_have_no_job() {
    let app = spawn_app().await;
    assert_error(app.get("/q/nothing").await, StatusCode::NOT_FOUND, "no job").await;
    // Fetching must not create the queue.
    let (_, status) = app.get_json("/status/").await;
    assert_eq!(status, json!({"queues": [], "size": 0}));
}

#[actix_web::test]
async fn content_type_may_carry_a_charset() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/q/cs"))
        .header("Content-Type", "application/json; charset=utf-8")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[actix_web::test]
async fn fetch_counts_processed_for_queue_and_worker() {
    let app = spawn_app().await;
    app.client
        .post(app.url("/w/jobs"))
        .header("X-presque-workerid", "w1")
        .send()
        .await
        .unwrap();
    app.post_json("/q/jobs", "{}").await;
    app.post_json("/q/jobs", "{}").await;
    assert_eq!(app.get_as("/q/jobs", "w1").await.status(), StatusCode::OK);
    assert_eq!(app.get("/q/jobs").await.status(), StatusCode::OK);
    let (_, j) = app.get_json("/j/jobs").await;
    assert_eq!(j["job_processed"], 2);
    let (_, w) = app.get_json("/w/?worker_id=w1").await;
    assert_eq!(w["processed"], 1);
}

#[actix_web::test]
async fn put_counts_a_failure_and_requeues_the_job() {
    let app = spawn_app().await;
    app.client
        .post(app.url("/w/jobs"))
        .header("X-presque-workerid", "w1")
        .send()
        .await
        .unwrap();
    app.post_json("/q/jobs", "{\"first\":1}").await;
    let r = app.put_json_as("/q/jobs", "{\"retry\":1}", "w1").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.text().await.unwrap(), "");
    let (_, j) = app.get_json("/j/jobs").await;
    assert_eq!(
        j,
        json!({"queue_name": "jobs", "job_count": 2, "job_failed": 1, "job_processed": 0})
    );
    // Re-inserted at the tail, exactly as POST does.
    assert_eq!(
        app.get("/q/jobs").await.text().await.unwrap(),
        "{\"first\":1}"
    );
    assert_eq!(
        app.get("/q/jobs").await.text().await.unwrap(),
        "{\"retry\":1}"
    );
    let (_, w) = app.get_json("/w/?worker_id=w1").await;
    assert_eq!(w["failed"], 1);
}

#[actix_web::test]
async fn put_honours_delayed_and_uniq() {
    let app = spawn_app().await;
    let later = now_secs_f64() + 60.0;
    let r = app
        .put_json_as(&format!("/q/p?delayed={later}&uniq=k"), "{}", "w")
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_error(app.get("/q/p").await, StatusCode::NOT_FOUND, "no job").await;
    let r = app.put_json_as("/q/p?uniq=k", "{}", "w").await;
    assert_error(r, StatusCode::BAD_REQUEST, "job already exists").await;
    // The refused report changed nothing: one failure counted, not two.
    let (_, j) = app.get_json("/j/p").await;
    assert_eq!(j["job_failed"], 1);
}

#[actix_web::test]
async fn delete_purges_the_queue() {
    let app = spawn_app().await;
    app.post_json("/q/gone?uniq=u", "{}").await;
    app.post_json("/q/gone", "{}").await;
    app.post_json(&format!("/q/gone?delayed={}", now_secs_f64() + 60.0), "{}")
        .await;
    app.get("/q/gone").await;
    app.put_json_as("/q/gone", "{}", "w").await;
    app.post_json("/control/gone", "{\"status\":\"stop\"}")
        .await;

    let r = app.delete("/q/gone").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.text().await.unwrap(), "");

    let (_, status) = app.get_json("/status/").await;
    assert_eq!(status, json!({"queues": [], "size": 0}));
    let (_, j) = app.get_json("/j/gone").await;
    assert_eq!(
        j,
        json!({"queue_name": "gone", "job_count": 0, "job_failed": 0, "job_processed": 0})
    );
    let (_, c) = app.get_json("/control/gone").await;
    assert_eq!(c["status"], 1);
    // The uniq key went with it, and the queue comes back fresh on the next POST.
    assert_eq!(
        app.post_json("/q/gone?uniq=u", "{\"again\":1}")
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.get("/q/gone").await.text().await.unwrap(),
        "{\"again\":1}"
    );
    // Deleting a queue that does not exist is fine too.
    assert_eq!(
        app.delete("/q/never").await.status(),
        StatusCode::NO_CONTENT
    );
}

#[actix_web::test]
async fn delete_keeps_worker_registrations() {
    let app = spawn_app().await;
    app.client
        .post(app.url("/w/keep"))
        .header("X-presque-workerid", "w1")
        .send()
        .await
        .unwrap();
    app.post_json("/q/keep", "{}").await;
    app.delete("/q/keep").await;
    let (_, w) = app.get_json("/w/?queue_name=keep").await;
    assert_eq!(w["workers_list"], json!(["w1"]));
}

#[actix_web::test]
async fn uniq_refuses_a_duplicate_while_the_job_waits() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_json("/q/u?uniq=a", "{\"n\":1}").await.status(),
        StatusCode::CREATED
    );
    assert_error(
        app.post_json("/q/u?uniq=a", "{\"n\":2}").await,
        StatusCode::BAD_REQUEST,
        "job already exists",
    )
    .await;
    // Other keys and other queues are independent.
    assert_eq!(
        app.post_json("/q/u?uniq=b", "{}").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.post_json("/q/other?uniq=a", "{}").await.status(),
        StatusCode::CREATED
    );
    let (_, j) = app.get_json("/j/u").await;
    assert_eq!(j["job_count"], 2);
    // Fetching frees the key.
    assert_eq!(app.get("/q/u").await.text().await.unwrap(), "{\"n\":1}");
    assert_eq!(
        app.post_json("/q/u?uniq=a", "{\"n\":3}").await.status(),
        StatusCode::CREATED
    );
}

#[actix_web::test]
async fn uniq_holds_for_a_delayed_job() {
    let app = spawn_app().await;
    let later = now_secs_f64() + 60.0;
    app.post_json(&format!("/q/du?uniq=k&delayed={later}"), "{}")
        .await;
    assert_error(
        app.post_json("/q/du?uniq=k", "{}").await,
        StatusCode::BAD_REQUEST,
        "job already exists",
    )
    .await;
}

#[actix_web::test]
async fn delayed_job_is_never_early_and_is_fetchable_on_time() {
    let app = spawn_app().await;
    app.post_json("/q/d", "{\"ready\":1}").await;
    let due = now_secs_f64() + 1.2;
    let r = app
        .post_json(&format!("/q/d?delayed={due}"), "{\"late\":1}")
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // Delayed jobs do not count as ready.
    let (_, j) = app.get_json("/j/d").await;
    assert_eq!(j["job_count"], 1);
    assert_eq!(app.get("/q/d").await.text().await.unwrap(), "{\"ready\":1}");

    let fetched_at = loop {
        let r = app.get("/q/d").await;
        let now = now_secs_f64();
        if r.status() == StatusCode::OK {
            assert_eq!(r.text().await.unwrap(), "{\"late\":1}");
            break now;
        }
        assert!(now < due + 5.0, "delayed job never became fetchable");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(fetched_at >= due, "fetched {:.3}s early", due - fetched_at);
    assert!(
        fetched_at - due < 0.5,
        "fetched {:.3}s late",
        fetched_at - due
    );
}

#[actix_web::test]
async fn due_delayed_jobs_go_to_the_head_in_due_order() {
    let app = spawn_app().await;
    let base = now_secs_f64();
    app.post_json(&format!("/q/h?delayed={}", base + 0.6), "\"second\"")
        .await;
    app.post_json(&format!("/q/h?delayed={}", base + 0.3), "\"first\"")
        .await;
    app.post_json("/q/h", "\"plain\"").await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    for expected in ["\"first\"", "\"second\"", "\"plain\""] {
        assert_eq!(app.get("/q/h").await.text().await.unwrap(), expected);
    }
}

#[actix_web::test]
async fn delayed_in_the_past_is_ready_at_once() {
    let app = spawn_app().await;
    app.post_json("/q/past?delayed=1000", "{}").await;
    assert_eq!(app.get("/q/past").await.status(), StatusCode::OK);
}

#[actix_web::test]
async fn delayed_timer_promotes_without_a_request() {
    // The queue actor's own timer moves the due job: /status/NAME must show it ready
    // shortly after its time even though no fetch touched the queue.
    let app = spawn_app().await;
    let due = now_secs_f64() + 0.3;
    app.post_json(&format!("/q/t?delayed={due}"), "{}").await;
    let (_, s) = app.get_json("/status/t").await;
    assert_eq!(s["size"], 0);
    let start = Instant::now();
    loop {
        let (_, s) = app.get_json("/status/t").await;
        let now = now_secs_f64();
        if s["size"] == 1 {
            assert!(now >= due, "ready {:.3}s early", due - now);
            // 50 ms is the promise; the slack absorbs a loaded CI machine.
            assert!(now - due < 0.25, "ready {:.3}s late", now - due);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[actix_web::test]
async fn closed_queue_refuses_fetches_but_accepts_jobs() {
    let app = spawn_app().await;
    app.post_json("/q/c", "{}").await;
    let (status, body) = json_of(app.post_json("/control/c", "{\"status\":\"stop\"}").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"queue": "c", "response": "updated"}));
    assert_error(
        app.get("/q/c").await,
        StatusCode::NOT_FOUND,
        "queue is closed",
    )
    .await;
    assert_error(
        app.get("/qb/c").await,
        StatusCode::NOT_FOUND,
        "queue is closed",
    )
    .await;
    assert_eq!(
        app.post_json("/q/c", "{}").await.status(),
        StatusCode::CREATED
    );
    app.post_json("/control/c", "{\"status\":\"start\"}").await;
    assert_eq!(app.get("/q/c").await.status(), StatusCode::OK);
    assert_eq!(app.get("/q/c").await.status(), StatusCode::OK);
}

#[actix_web::test]
async fn fetches_abandoned_by_their_clients_put_jobs_back_in_order() {
    use std::io::Write;
    // Under fsync=always a fetch is answered only after its removal is on disk; a
    // client that hangs up in that window must not take the job with it.
    let app = spawn_app_with(|s| s.storage.fsync = presque::FsyncPolicy::Always).await;
    for i in 0..100 {
        app.post_json("/q/a", &i.to_string()).await;
    }
    let address = app.address.trim_start_matches("http://").to_owned();
    for _ in 0..50 {
        let mut socket = std::net::TcpStream::connect(&address).unwrap();
        socket
            .write_all(b"GET /q/a HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        drop(socket);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, j) = app.get_json("/j/a").await;
    let (ready, processed) = (
        j["job_count"].as_u64().unwrap(),
        j["job_processed"].as_u64().unwrap(),
    );
    assert_eq!(ready + processed, 100, "{j}");
    assert!(processed < 50, "no abandoned fetch gave its job back: {j}");
    // What is left is still in posting order.
    let mut last = -1;
    loop {
        let r = app.get("/q/a").await;
        if r.status() != StatusCode::OK {
            break;
        }
        let n: i64 = r.text().await.unwrap().parse().unwrap();
        assert!(n > last, "{n} after {last}");
        last = n;
    }
}
