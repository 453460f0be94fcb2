//! The Rust client library (`clients/rust`, `presque-client`) against a real server:
//! its crate-level example, each typed call, and how error answers map to [`Error`].

use std::time::Duration;

use presque_client::{Client, Error, JobId};
use serde::{Deserialize, Serialize};

use crate::helpers::{spawn_app, spawn_app_with};

// The example the crate's docs show, run here against a real server.
#[allow(dead_code)]
#[path = "../../clients/rust/examples/tour.rs"]
mod tour;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Job {
    n: u32,
}

#[actix_web::test]
async fn the_documented_tour_runs() {
    let app = spawn_app().await;
    tour::tour(&app.address).await.unwrap();
}

#[actix_web::test]
async fn push_fetch_and_batches_are_typed() {
    let app = spawn_app().await;
    let client = Client::new(format!("{}/", app.address));
    let first = client.push("q", &Job { n: 1 }).await.unwrap();
    let batch = client
        .push_batch("q", &[Job { n: 2 }, Job { n: 3 }])
        .await
        .unwrap();
    assert_eq!(batch, vec![JobId(first.0 + 1), JobId(first.0 + 2)]);
    assert_eq!(client.push_batch::<Job>("q", &[]).await.unwrap(), vec![]);
    let raw = client.push_raw("q", "{ \"n\" : 4 }").await.unwrap();
    assert_eq!(raw, JobId(first.0 + 3));

    for n in 1..=3 {
        let job: Option<Job> = client.fetch("q", None).await.unwrap();
        assert_eq!(job, Some(Job { n }));
    }
    // The bytes as posted.
    let bytes = client.fetch_raw("q", None).await.unwrap().unwrap();
    assert_eq!(&bytes[..], b"{ \"n\" : 4 }");
    // No job is None, also after a wait; a body of another shape is a Json error.
    let waited = client
        .pop::<Job>("q", Some(Duration::from_millis(200)))
        .await;
    assert!(waited.unwrap().is_none());
    client.push("q", &"text").await.unwrap();
    assert!(matches!(
        client.fetch::<Job>("q", None).await,
        Err(Error::Json(_))
    ));

    let stats = client.stats("q").await.unwrap();
    assert_eq!((stats.job_count, stats.job_processed), (0, 5));
    let all = client.overview().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].processed, 5);
    assert!(client.queue_overview("none").await.unwrap().is_none());
}

#[actix_web::test]
async fn leases_ack_fail_and_extend() {
    let app = spawn_app_with(|s| s.server.default_max_attempts = 2).await;
    let client = Client::new(&app.address).with_worker_id("w-1");
    client.register_worker("q", "w-1").await.unwrap();
    assert!(client.worker_registered("w-1").await.unwrap());
    let id = client.push("q", &Job { n: 1 }).await.unwrap();

    let lease = client.lease("q", 30.0, None).await.unwrap().unwrap();
    assert_eq!((lease.id(), lease.queue()), (id, "q"));
    assert_eq!(lease.json::<Job>().unwrap(), Job { n: 1 });
    assert_eq!(lease.attempts(), Some(0));
    let info = client.job("q", id).await.unwrap();
    assert_eq!(
        (info.state.as_str(), info.worker_id.as_deref()),
        ("leased", Some("w-1"))
    );
    let deadline = info.lease_deadline.unwrap();
    let extended = lease.extend(600.0).await.unwrap();
    assert!(extended.lease_deadline.unwrap() > deadline + 500.0);

    let failed = lease.fail(Some("smtp timeout")).await.unwrap();
    assert_eq!((failed.state.as_str(), failed.attempts), ("ready", 1));
    assert_eq!(failed.errors[0].error.as_deref(), Some("smtp timeout"));
    assert_eq!(failed.errors[0].worker_id.as_deref(), Some("w-1"));
    // The spent token: 409, LeaseLost.
    assert!(matches!(lease.ack().await, Err(Error::LeaseLost { .. })));

    let again = client.lease("q", 30.0, None).await.unwrap().unwrap();
    assert_eq!(again.attempts(), Some(1));
    again.ack().await.unwrap();
    // Acked: the job is gone, 404 with the server's message.
    match again.ack().await {
        Err(Error::Server { status, message }) => {
            assert_eq!((status, message.as_str()), (404, "job not found"));
        }
        other => panic!("{other:?}"),
    }
    assert!(client.lease("q", 30.0, None).await.unwrap().is_none());

    client.unregister_worker("q", "w-1").await.unwrap();
    assert!(!client.worker_registered("w-1").await.unwrap());
}

#[actix_web::test]
async fn dead_letters_and_control() {
    let app = spawn_app_with(|s| s.server.default_max_attempts = 1).await;
    let client = Client::new(&app.address);
    let ids = client
        .push_batch("q", &[Job { n: 1 }, Job { n: 2 }])
        .await
        .unwrap();
    while let Some(lease) = client.lease("q", 30.0, None).await.unwrap() {
        assert_eq!(lease.fail(None).await.unwrap().state, "dead");
    }
    let page = client.dead("q", None, 1).await.unwrap();
    assert_eq!(page.jobs.len(), 1);
    assert_eq!((page.jobs[0].id, page.next), (ids[0], Some(ids[0])));
    assert_eq!(page.jobs[0].job.get(), "{\"n\":1}");
    let rest = client.dead("q", page.next, 10).await.unwrap();
    assert_eq!((rest.jobs[0].id, rest.next), (ids[1], None));
    assert_eq!(client.retry_dead("q", Some(ids[0])).await.unwrap(), 1);
    assert_eq!(client.purge_dead("q", None).await.unwrap(), 1);

    client.close("q").await.unwrap();
    assert!(!client.is_open("q").await.unwrap());
    assert!(matches!(
        client.fetch_raw("q", None).await,
        Err(Error::QueueClosed)
    ));
    client.open("q").await.unwrap();
    assert!(client.is_open("q").await.unwrap());
    assert_eq!(
        client.fetch::<Job>("q", None).await.unwrap(),
        Some(Job { n: 1 })
    );
}

#[actix_web::test]
async fn error_answers_keep_status_and_message() {
    const ADMIN: &str = "admin-token-0123456789";
    const PRODUCER: &str = "producer-token-0123456789";
    let app = spawn_app_with(|s| {
        s.auth.tokens = ["admin", "producer"]
            .into_iter()
            .zip([ADMIN, PRODUCER])
            .map(|(role, token)| {
                toml::from_str(&format!("role = \"{role}\"\ntoken = \"{token}\"")).unwrap()
            })
            .collect();
    })
    .await;
    let anonymous = Client::new(&app.address);
    match anonymous.push("q", &Job { n: 1 }).await {
        Err(Error::Unauthorized {
            status: 401,
            message,
        }) => {
            assert!(message.starts_with("authentication required"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let producer = Client::new(&app.address).with_token(PRODUCER);
    producer.push("q", &Job { n: 1 }).await.unwrap();
    let refused = producer.purge_dead("q", None).await.unwrap_err();
    assert!(matches!(refused, Error::Unauthorized { status: 403, .. }));
    assert_eq!(refused.status(), Some(403));

    let admin = Client::new(&app.address).with_token(ADMIN);
    // Bad input: 400 with the server's message.
    match admin.push_raw("q", "not json").await {
        Err(e @ Error::Server { status: 400, .. }) => assert_eq!(e.status(), Some(400)),
        other => panic!("{other:?}"),
    }
    match admin.lease("q", 0.0, None).await {
        Err(Error::Server { status, message }) => {
            assert_eq!(status, 400);
            assert!(message.contains("lease"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Nobody listening: an Http error, no status.
    let nowhere = Client::new("http://127.0.0.1:9");
    let down = nowhere.stats("q").await.unwrap_err();
    assert!(matches!(down, Error::Http(_)), "{down:?}");
    assert_eq!(down.status(), None);
}
