//! Push a job, lease it, ack it; fail another until it is dead, then retry it.
//! Run against a server: `PRESQUE_URL=http://127.0.0.1:5000 cargo run --example tour`.

use presque_client::{Client, Error};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Email {
    to: String,
}

pub async fn tour(url: &str) -> Result<(), Error> {
    let client = Client::new(url);
    let queue = "tour-emails";

    // A producer pushes a job; the server numbers it.
    let id = client.push(queue, &Email { to: "a@b.c".into() }).await?;

    // A worker leases it for 30 seconds (waiting up to 1 s for one), does the work,
    // and acks it.
    let lease = client
        .lease(queue, 30.0, Some(std::time::Duration::from_secs(1)))
        .await?;
    let lease = lease.expect("the job just pushed");
    assert_eq!(lease.id(), id);
    assert_eq!(lease.json::<Email>()?, Email { to: "a@b.c".into() });
    lease.ack().await?;

    // An empty queue is not an error: `None`.
    assert!(client.lease(queue, 30.0, None).await?.is_none());

    // Failures carry a reason; after the queue's last attempt the job is dead.
    client.push(queue, &Email { to: "x@y.z".into() }).await?;
    while let Some(lease) = client.lease(queue, 30.0, None).await? {
        lease.fail(Some("smtp timeout")).await?;
    }
    let dead = client.dead(queue, None, 100).await?;
    assert_eq!(dead.jobs.len(), 1);
    assert_eq!(
        dead.jobs[0].errors.last().and_then(|e| e.error.as_deref()),
        Some("smtp timeout")
    );

    // Put it back, and read the counters.
    assert_eq!(client.retry_dead(queue, None).await?, 1);
    let stats = client.stats(queue).await?;
    assert_eq!(stats.job_count, 1);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let url = std::env::var("PRESQUE_URL").unwrap_or_else(|_| "http://127.0.0.1:5000".into());
    tour(&url).await
}
