//! Long-polls and what modern clients may opt into: 204 for "no job", 503 when the
//! server stops under a parked fetch, waits on queues that do not exist (which never
//! create them), and paging through `/status/NAME?with_desc=1`.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::json;

use crate::harness::{start_binary, ServerProcess, NODE_ARGS};
use crate::helpers::*;

// ---------------------------------------------------------------- 204 on opt-in

#[actix_web::test]
async fn an_empty_fetch_is_204_only_for_clients_that_ask() {
    let app = spawn_app().await;
    // The original answer stays the default.
    assert_error(app.get("/q/e").await, StatusCode::NOT_FOUND, "no job").await;
    assert_error(app.get("/qb/e").await, StatusCode::NOT_FOUND, "no job").await;
    assert_error(
        app.get("/q/e?empty=404").await,
        StatusCode::NOT_FOUND,
        "no job",
    )
    .await;
    for path in [
        "/q/e?empty=204",
        "/qb/e?empty=204&batch_size=5",
        "/q/e?wait=0.2&empty=204",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{path}");
        assert!(r.headers().get("content-type").is_none(), "{path}");
        assert_eq!(r.text().await.unwrap(), "", "{path}");
    }
    // The header does the same; the query wins over it.
    let with_header = |path: &str, value: &str| {
        app.client
            .get(app.url(path))
            .header("X-presque-empty", value)
            .send()
    };
    assert_eq!(
        with_header("/q/e", "204").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        with_header("/qb/e", "204").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        with_header("/q/e?empty=404", "204").await.unwrap(),
        StatusCode::NOT_FOUND,
        "no job",
    )
    .await;
    // A job is a job, whatever was asked.
    app.post_json("/q/e", "{\"a\":1}").await;
    let r = app.get("/q/e?empty=204").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "{\"a\":1}");
    // A long-poll answered by a job posted during its wait.
    let waiter = app.get("/qb/e?wait=5&empty=204");
    let poster = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        app.post_json("/q/e", "2").await;
    };
    let (r, ()) = tokio::join!(waiter, poster);
    assert_eq!(json_of(r).await, (StatusCode::OK, json!(["2"])));
}

#[actix_web::test]
async fn a_closed_queue_stays_404_and_bad_choices_are_refused() {
    let app = spawn_app().await;
    app.post_json("/q/c", "1").await;
    app.post_json("/control/c", "{\"status\":\"stop\"}").await;
    assert_error(
        app.get("/q/c?empty=204").await,
        StatusCode::NOT_FOUND,
        "queue is closed",
    )
    .await;
    assert_error(
        app.get("/qb/c?empty=204&wait=0.1").await,
        StatusCode::NOT_FOUND,
        "queue is closed",
    )
    .await;
    app.post_json("/control/c", "{\"status\":\"start\"}").await;
    for bad in ["200", "", "yes"] {
        assert_error(
            app.get(&format!("/q/c?empty={bad}")).await,
            StatusCode::BAD_REQUEST,
            &format!("empty must be 204 or 404, not {bad:?}"),
        )
        .await;
    }
    let r = app
        .client
        .get(app.url("/qb/c"))
        .header("X-presque-empty", "none")
        .send()
        .await
        .unwrap();
    assert_error(
        r,
        StatusCode::BAD_REQUEST,
        "X-presque-empty must be 204 or 404, not \"none\"",
    )
    .await;
    // Refused requests took nothing.
    let (_, j) = app.get_json("/j/c").await;
    assert_eq!(
        (j["job_count"].clone(), j["job_processed"].clone()),
        (json!(1), json!(0))
    );
}

// ---------------------------------------------------------------- the real binary

/// A server in a temporary directory, which survives its restarts.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("presque.toml"), "").unwrap();
        Node { dir }
    }

    fn start(&self) -> ServerProcess {
        start_binary(self.dir.path(), &NODE_ARGS, &[])
    }
}

async fn get(server: &ServerProcess, path: &str) -> reqwest::Response {
    Client::new().get(server.url(path)).send().await.unwrap()
}

/// A parked long-poll's answer: status, `Retry-After`, body, and how long it took.
type Answer = (StatusCode, Option<String>, String, Duration);

fn park(server: &ServerProcess, path: &str) -> tokio::task::JoinHandle<Answer> {
    let url = server.url(path);
    tokio::spawn(async move {
        let started = Instant::now();
        let r = Client::new().get(url).send().await.unwrap();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (
            r.status(),
            retry,
            r.text().await.unwrap(),
            started.elapsed(),
        )
    })
}

#[actix_web::test]
async fn a_long_poll_parked_at_shutdown_is_told_the_server_is_stopping() {
    let node = Node::new();
    let server = node.start();
    // One at an existing (empty) queue, one at a queue that does not exist, one
    // asking for 204: all are told to come back, none gets "no job".
    assert_eq!(
        post(&Client::new(), &server, "/q/known", "1").await,
        StatusCode::CREATED
    );
    assert_eq!(get(&server, "/q/known").await.status(), StatusCode::OK);
    let parked = [
        park(&server, "/q/known?wait=20"),
        park(&server, "/q/x?wait=20"),
        park(&server, "/qb/x?wait=20&empty=204"),
    ];
    // Two requests pipelined on one connection: the second is read only once the
    // first is answered, so it arrives after shutdown began.
    let address = server.address.trim_start_matches("http://").to_owned();
    let pipelined = std::thread::spawn(move || {
        let mut socket = std::net::TcpStream::connect(address).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        socket
            .write_all(
                b"GET /q/known?wait=20 HTTP/1.1\r\nHost: x\r\n\r\n\
                  GET /q/later?wait=20 HTTP/1.1\r\nHost: x\r\n\r\n",
            )
            .unwrap();
        let mut answer = String::new();
        let _ = socket.read_to_string(&mut answer);
        answer
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stopping = Instant::now();
    server.signal("TERM");
    for waiter in parked {
        let (status, retry, body, waited) = waiter.await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(body, "{\"error\":\"server is stopping\"}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }
    let answer = pipelined.join().unwrap();
    assert_eq!(
        answer.matches("HTTP/1.1 503 Service Unavailable").count(),
        2,
        "{answer}"
    );
    assert_eq!(answer.matches("server is stopping").count(), 2, "{answer}");
    let mut server = server;
    assert_eq!(server.wait_for_exit(), Some(0));
    assert!(stopping.elapsed() < Duration::from_secs(5));
}

// ------------------------------------------------- long-polls on unknown queues

#[actix_web::test]
async fn waiting_on_an_unknown_queue_does_not_create_it() {
    let node = Node::new();
    let server = node.start();
    let started = Instant::now();
    let r = get(&server, "/q/ghost?wait=0.3").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_error(r, StatusCode::NOT_FOUND, "no job").await;
    assert_error(
        get(&server, "/qb/ghost?wait=0.1").await,
        StatusCode::NOT_FOUND,
        "no job",
    )
    .await;
    // Many names at once, some of whose clients give up early.
    let client = Client::new();
    let impatient = Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let waits = (0..200).map(|i| {
        let (client, impatient, url) = (
            &client,
            &impatient,
            server.url(&format!("/q/g{i}?wait=0.3")),
        );
        async move {
            if i % 2 == 0 {
                assert!(impatient.get(url).send().await.is_err());
            } else {
                assert_eq!(
                    client.get(url).send().await.unwrap().status(),
                    StatusCode::NOT_FOUND
                );
            }
        }
    });
    futures_util::future::join_all(waits).await;
    let (status, body) = json_of(get(&server, "/status/").await).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"queues": [], "size": 0}))
    );
    let (_, j) = json_of(get(&server, "/j/ghost").await).await;
    assert_eq!(
        j,
        json!({"queue_name": "ghost", "job_count": 0, "job_failed": 0, "job_processed": 0})
    );
    server.stop();
    let server = node.start();
    let (_, body) = json_of(get(&server, "/status/").await).await;
    assert_eq!(body, json!({"queues": [], "size": 0}));
    server.stop();
}

#[actix_web::test]
async fn a_job_posted_during_the_wait_reaches_the_waiter_on_an_unknown_queue() {
    let app = spawn_app().await;
    for (fetch, post) in [
        ("/q/new?wait=5", "/q/new"),
        ("/qb/newb?wait=5&batch_size=3", "/qb/newb"),
    ] {
        let first = app.get(fetch);
        let second = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            app.get(fetch).await
        };
        let poster = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let body = if post.starts_with("/qb") {
                "{\"jobs\":[1]}"
            } else {
                "1"
            };
            assert_eq!(
                app.post_json(post, body).await.status(),
                StatusCode::CREATED
            );
            assert_eq!(
                app.post_json(&post.replace("/qb/", "/q/"), "2")
                    .await
                    .status(),
                StatusCode::CREATED
            );
        };
        let started = Instant::now();
        let (a, b, ()) = tokio::join!(first, second, poster);
        assert!(started.elapsed() < Duration::from_secs(2), "{fetch}");
        // Oldest waiter first, each handed one job.
        let texts = (a.text().await.unwrap(), b.text().await.unwrap());
        if fetch.starts_with("/qb") {
            assert_eq!(texts, ("[\"1\"]".to_owned(), "[\"2\"]".to_owned()));
        } else {
            assert_eq!(texts, ("1".to_owned(), "2".to_owned()));
        }
    }
    // The posts made the queues, as posts do.
    let (_, s) = app.get_json("/status/").await;
    assert_eq!(s, json!({"queues": ["new", "newb"], "size": 2}));
    let (_, j) = app.get_json("/j/new").await;
    assert_eq!(
        (j["job_count"].clone(), j["job_processed"].clone()),
        (json!(0), json!(2))
    );
}

#[actix_web::test]
async fn deleting_a_queue_answers_its_waiters_and_later_waits_start_over() {
    let app = spawn_app().await;
    app.post_json("/q/d", "1").await;
    assert_eq!(app.get("/q/d").await.status(), StatusCode::OK);
    let waiter = app.get("/q/d?wait=5");
    let deleter = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(app.delete("/q/d").await.status(), StatusCode::NO_CONTENT);
    };
    let started = Instant::now();
    let (r, ()) = tokio::join!(waiter, deleter);
    assert_error(r, StatusCode::NOT_FOUND, "no job").await;
    assert!(started.elapsed() < Duration::from_secs(2));
    // Deleted, it is unknown again: a wait does not bring it back, a post does.
    assert_error(
        app.get("/q/d?wait=0.1").await,
        StatusCode::NOT_FOUND,
        "no job",
    )
    .await;
    let (_, s) = app.get_json("/status/").await;
    assert_eq!(s, json!({"queues": [], "size": 0}));
    let waiter = app.get("/q/d?wait=5");
    let poster = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.post_json("/q/d", "\"again\"").await;
    };
    let (r, ()) = tokio::join!(waiter, poster);
    assert_eq!(r.text().await.unwrap(), "\"again\"");
}

/// A wait on an unknown queue that is created closed during the wait ends as a wait
/// on a closed queue does: 404 `queue is closed`, not "no job" (nor 204 on opt-in),
/// whichever of the request's and the queue's clocks notices the end first.
#[actix_web::test]
async fn a_wait_on_a_queue_created_closed_meanwhile_ends_queue_is_closed() {
    let app = spawn_app().await;
    for i in 0..6 {
        let name = format!("shut{i}");
        let path = format!("/q/{name}?wait=0.5&empty=204");
        let waiter = app.get(&path);
        let closer = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let closed = app
                .post_json(&format!("/control/{name}"), "{\"status\":\"stop\"}")
                .await;
            assert_eq!(closed.status(), StatusCode::OK);
        };
        let (r, ()) = tokio::join!(waiter, closer);
        assert_error(r, StatusCode::NOT_FOUND, "queue is closed").await;
    }
}

#[actix_web::test]
async fn waiters_on_an_unknown_queue_are_capped_too() {
    let app = spawn_app_with(|s| s.server.max_waiters_per_queue = 1).await;
    let first = app.get("/q/cap?wait=1");
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.get("/q/cap?wait=1").await
    };
    let (a, b) = tokio::join!(first, second);
    assert_error(
        b,
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests are waiting on this queue (limit 1)",
    )
    .await;
    assert_error(a, StatusCode::NOT_FOUND, "no job").await;
}

// ------------------------------------------------- paging through with_desc

/// Posts jobs `from..to` (their bodies are their numbers) in batches.
async fn post_numbers(app: &TestApp, queue: &str, from: usize, to: usize) {
    let numbers: Vec<usize> = (from..to).collect();
    for chunk in numbers.chunks(1000) {
        let body = json!({ "jobs": chunk }).to_string();
        let r = app.post_json(&format!("/qb/{queue}"), &body).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
}

fn numbers_of(page: &serde_json::Value) -> Vec<usize> {
    page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_str().unwrap().parse().unwrap())
        .collect()
}

#[actix_web::test]
async fn with_desc_pages_follow_next_to_the_end() {
    let app = spawn_app().await;
    post_numbers(&app, "p", 1, 6).await;
    // Small queue, no paging asked: the original answer, key for key.
    let (_, whole) = app.get_json("/status/p?with_desc=1").await;
    assert_eq!(
        whole,
        json!({"queue": "p", "size": 5, "jobs": ["1", "2", "3", "4", "5"]})
    );
    let mut seen = Vec::new();
    let mut path = "/status/p?with_desc=1&limit=2".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = app.get_json(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["size"], 5);
        assert_eq!(page.as_object().unwrap().len(), 4, "{page}");
        seen.extend(numbers_of(&page));
        pages += 1;
        match page["next"].as_u64() {
            Some(next) => path = format!("/status/p?with_desc=1&limit=2&after={next}"),
            None => {
                assert_eq!(page["next"], json!(null));
                break;
            }
        }
    }
    assert_eq!((seen, pages), ((1..6).collect::<Vec<_>>(), 3));
    // Asked for paging, the key is there even when one page holds everything.
    let (_, page) = app.get_json("/status/p?with_desc=1&limit=10").await;
    assert_eq!(page["next"], json!(null));
    assert_eq!(numbers_of(&page), vec![1, 2, 3, 4, 5]);
}

#[actix_web::test]
async fn a_big_queue_answers_a_first_page_with_next() {
    let app = spawn_app().await;
    post_numbers(&app, "big", 0, 1001).await;
    let (_, page) = app.get_json("/status/big?with_desc=1").await;
    assert_eq!(page["size"], 1001);
    assert_eq!(numbers_of(&page), (0..1000).collect::<Vec<_>>());
    let next = page["next"].as_u64().unwrap().to_owned();
    let (_, rest) = app
        .get_json(&format!("/status/big?with_desc=1&after={next}"))
        .await;
    assert_eq!(numbers_of(&rest), vec![1000]);
    assert_eq!(rest["next"], json!(null));
    let (_, all) = app.get_json("/status/big?with_desc=1&limit=10000").await;
    assert_eq!(numbers_of(&all).len(), 1001);
    assert_eq!(all["next"], json!(null));
}

#[actix_web::test]
async fn paging_goes_on_after_the_last_job_seen_while_workers_take_jobs() {
    let app = spawn_app().await;
    post_numbers(&app, "live", 1, 9).await;
    let (_, first) = app.get_json("/status/live?with_desc=1&limit=3").await;
    assert_eq!(numbers_of(&first), vec![1, 2, 3]);
    let after = first["next"].as_u64().unwrap();
    // A worker takes two jobs from the head: the next page still starts at 4.
    assert_eq!(
        app.get("/qb/live?batch_size=2").await.status(),
        StatusCode::OK
    );
    let (_, second) = app
        .get_json(&format!("/status/live?with_desc=1&limit=3&after={after}"))
        .await;
    assert_eq!(numbers_of(&second), vec![4, 5, 6]);
    assert_eq!(second["size"], 6);
    // The job `after` names is taken too: the next page starts at the head.
    let after = second["next"].as_u64().unwrap();
    assert_eq!(
        app.get("/qb/live?batch_size=4").await.status(),
        StatusCode::OK
    );
    let (_, third) = app
        .get_json(&format!("/status/live?with_desc=1&limit=3&after={after}"))
        .await;
    assert_eq!(numbers_of(&third), vec![7, 8]);
    assert_eq!(third["next"], json!(null));
}

#[actix_web::test]
async fn bad_paging_parameters_are_refused() {
    let app = spawn_app().await;
    post_numbers(&app, "b", 1, 3).await;
    for (query, message) in [
        (
            "with_desc=1&limit=0",
            "limit must be an integer from 1 to 10000, not \"0\"",
        ),
        (
            "with_desc=1&limit=10001",
            "limit must be an integer from 1 to 10000, not \"10001\"",
        ),
        (
            "with_desc=1&limit=ten",
            "limit must be an integer from 1 to 10000, not \"ten\"",
        ),
        (
            "with_desc=1&after=x",
            "after must be the \"next\" of an earlier page (a job id), not \"x\"",
        ),
        (
            "limit=2",
            "limit and after page through the jobs of with_desc=1; add it",
        ),
        (
            "with_desc=0&after=1",
            "limit and after page through the jobs of with_desc=1; add it",
        ),
    ] {
        assert_error(
            app.get(&format!("/status/b?{query}")).await,
            StatusCode::BAD_REQUEST,
            message,
        )
        .await;
    }
    // A queue that does not exist is an empty page.
    let (_, none) = app.get_json("/status/none?with_desc=1&limit=5").await;
    assert_eq!(
        none,
        json!({"queue": "none", "size": 0, "jobs": [], "next": null})
    );
}
