//! An async client for presque, a local HTTP/JSON job queue
//! server: push jobs, lease them, ack or fail them, read counters and dead letters.
//!
//! Every call is one HTTP request (long-polls included); errors are typed
//! ([`Error`]), carrying the server's status and `{"error"}` message. "No job" is not
//! an error: fetches and leases answer `None` (the client asks for the protocol's
//! `204` answer instead of `404 no job`).
//!
//! A producer and a worker, end to end (this is `examples/tour.rs`, which the
//! project's tests run against a real server):
//!
#![doc = concat!("```no_run\n", include_str!("../examples/tour.rs"), "\n```")]

mod error;
mod types;

use std::time::Duration;

use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::value::RawValue;

pub use error::Error;
pub use types::{DeadJob, FailureReport, JobId, JobInfo, QueueOverview, QueueStats};

/// What a call answers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

const JOB_ID_HEADER: &str = "X-presque-jobid";
const JOB_ID_RANGE_HEADER: &str = "X-presque-jobid-range";
const LEASE_HEADER: &str = "X-presque-lease";
const ATTEMPTS_HEADER: &str = "X-presque-attempts";
const WORKER_HEADER: &str = "X-presque-workerid";
const EMPTY_HEADER: &str = "X-presque-empty";

/// Characters a queue name keeps as they are in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A connection to one presque server. Cheap to clone (clones share connections).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    worker_id: Option<String>,
}

/// A leased job: its body, id and delivery token. Finish it with [`Lease::ack`] or
/// [`Lease::fail`]; keep it with [`Lease::extend`] while the work takes longer than
/// the lease.
///
/// ```no_run
/// # async fn worker() -> Result<(), presque_client::Error> {
/// use std::time::Duration;
/// let client = presque_client::Client::new("http://127.0.0.1:5000").with_worker_id("w-1");
/// loop {
///     // Wait up to 20 s for a job, leased for 60 s.
///     let Some(lease) = client.lease("emails", 60.0, Some(Duration::from_secs(20))).await? else {
///         continue;
///     };
///     let job: serde_json::Value = lease.json()?;
///     match send(&job) {
///         Ok(()) => lease.ack().await?,
///         Err(why) => drop(lease.fail(Some(&why)).await?),
///     }
/// }
/// # }
/// # fn send(_: &serde_json::Value) -> Result<(), String> { Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Lease {
    client: Client,
    queue: String,
    id: JobId,
    token: String,
    attempts: Option<u32>,
    body: Bytes,
}

/// One page of dead letters, oldest id first.
#[derive(Debug, Clone, serde::Deserialize, Serialize)]
pub struct DeadPage {
    /// The dead letters on this page.
    pub jobs: Vec<DeadJob>,
    /// The `after` of the next page (`None` on the last).
    pub next: Option<JobId>,
}

impl Client {
    /// A client for the server at `url` (e.g. `http://127.0.0.1:5000`).
    pub fn new(url: impl Into<String>) -> Client {
        let mut base = url.into();
        while base.ends_with('/') {
            base.pop();
        }
        Client {
            http: reqwest::Client::new(),
            base,
            token: None,
            worker_id: None,
        }
    }

    /// Sends `Authorization: Bearer TOKEN` with every request.
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        self.token = Some(token.into());
        self
    }

    /// Names this client as worker `worker_id` (`X-presque-workerid`) on fetches,
    /// leases and failure reports, so they count for it.
    pub fn with_worker_id(mut self, worker_id: impl Into<String>) -> Client {
        self.worker_id = Some(worker_id.into());
        self
    }

    /// The server's address, as given.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(worker) = &self.worker_id {
            request = request.header(WORKER_HEADER, worker);
        }
        request
    }

    /// Sends `request`; an error answer becomes an [`Error`].
    async fn send(request: RequestBuilder) -> Result<Response> {
        let response = request.send().await?;
        let status = response.status();
        if status.is_client_error() || status.is_server_error() {
            let body = response.bytes().await?;
            return Err(Error::from_answer(status.as_u16(), &body));
        }
        Ok(response)
    }

    async fn json<T: DeserializeOwned>(request: RequestBuilder) -> Result<T> {
        let body = Self::send(request).await?.bytes().await?;
        Ok(serde_json::from_slice(&body)?)
    }

    /// Pushes one job (any serializable value) on `queue`; answers its id.
    pub async fn push<T: Serialize + ?Sized>(&self, queue: &str, job: &T) -> Result<JobId> {
        self.push_raw(queue, serde_json::to_vec(job)?).await
    }

    /// Pushes one job given as JSON text, kept byte for byte.
    pub async fn push_raw(&self, queue: &str, json: impl Into<Bytes>) -> Result<JobId> {
        let request = self
            .request(Method::POST, &format!("/q/{}", segment(queue)))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json.into());
        let response = Self::send(request).await?;
        header(&response, JOB_ID_HEADER)?
            .parse()
            .map_err(|_| Error::Protocol(format!("{JOB_ID_HEADER} is not a job id")))
    }

    /// Pushes several jobs in one request (`POST /qb`), in order; answers their ids.
    pub async fn push_batch<T: Serialize>(&self, queue: &str, jobs: &[T]) -> Result<Vec<JobId>> {
        #[derive(Serialize)]
        struct Batch<'a, T> {
            jobs: &'a [T],
        }
        self.push_batch_body(queue, serde_json::to_vec(&Batch { jobs })?, jobs.len())
            .await
    }

    /// [`Client::push_batch`] with jobs given as JSON text, kept byte for byte.
    pub async fn push_batch_raw(&self, queue: &str, jobs: &[&RawValue]) -> Result<Vec<JobId>> {
        self.push_batch(queue, jobs).await
    }

    async fn push_batch_body(&self, queue: &str, body: Vec<u8>, n: usize) -> Result<Vec<JobId>> {
        let request = self
            .request(Method::POST, &format!("/qb/{}", segment(queue)))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let response = Self::send(request).await?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let range = header(&response, JOB_ID_RANGE_HEADER)?;
        let bad = || Error::Protocol(format!("{JOB_ID_RANGE_HEADER} is not FIRST-LAST"));
        let (first, last) = range.split_once('-').ok_or_else(bad)?;
        let first: u64 = first.trim().parse().map_err(|_| bad())?;
        let last: u64 = last.trim().parse().map_err(|_| bad())?;
        let ids: Vec<JobId> = (first..=last).map(JobId).collect();
        if ids.len() != n {
            return Err(Error::Protocol(format!(
                "{n} jobs pushed, but {JOB_ID_RANGE_HEADER} names {}",
                ids.len()
            )));
        }
        Ok(ids)
    }

    /// Takes the job at the head of `queue` for good (no lease), read as `T`;
    /// `None` if there is none, after waiting up to `wait` for one.
    pub async fn fetch<T: DeserializeOwned>(
        &self,
        queue: &str,
        wait: Option<Duration>,
    ) -> Result<Option<T>> {
        match self.fetch_raw(queue, wait).await? {
            Some(body) => Ok(Some(serde_json::from_slice(&body)?)),
            None => Ok(None),
        }
    }

    /// [`Client::fetch`], answering the job's bytes as posted.
    pub async fn fetch_raw(&self, queue: &str, wait: Option<Duration>) -> Result<Option<Bytes>> {
        let response = self.get_job(queue, wait, None).await?;
        match response {
            Some(response) => Ok(Some(response.bytes().await?)),
            None => Ok(None),
        }
    }

    /// Alias of [`Client::fetch`], the protocol's word for a fetch.
    pub async fn pop<T: DeserializeOwned>(
        &self,
        queue: &str,
        wait: Option<Duration>,
    ) -> Result<Option<T>> {
        self.fetch(queue, wait).await
    }

    /// Leases the job at the head of `queue` for `lease_secs` seconds; `None` if there
    /// is none, after waiting up to `wait` for one.
    pub async fn lease(
        &self,
        queue: &str,
        lease_secs: f64,
        wait: Option<Duration>,
    ) -> Result<Option<Lease>> {
        let Some(response) = self.get_job(queue, wait, Some(lease_secs)).await? else {
            return Ok(None);
        };
        let id = header(&response, JOB_ID_HEADER)?
            .parse()
            .map_err(|_| Error::Protocol(format!("{JOB_ID_HEADER} is not a job id")))?;
        let token = header(&response, LEASE_HEADER)?.to_owned();
        // Servers before `X-presque-attempts` do not send it.
        let attempts = header(&response, ATTEMPTS_HEADER)
            .ok()
            .and_then(|text| text.parse().ok());
        Ok(Some(Lease {
            client: self.clone(),
            queue: queue.to_owned(),
            id,
            token,
            attempts,
            body: response.bytes().await?,
        }))
    }

    async fn get_job(
        &self,
        queue: &str,
        wait: Option<Duration>,
        lease_secs: Option<f64>,
    ) -> Result<Option<Response>> {
        let mut query = Vec::new();
        if let Some(wait) = wait {
            query.push(("wait", wait.as_secs_f64().to_string()));
        }
        if let Some(lease) = lease_secs {
            query.push(("lease", lease.to_string()));
        }
        let request = self
            .request(Method::GET, &format!("/q/{}", segment(queue)))
            .header(EMPTY_HEADER, "204")
            .query(&query);
        let response = Self::send(request).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Ok(Some(response))
    }

    /// Acks job `id` of `queue`, leased with delivery token `token`: done, it is gone.
    pub async fn ack(&self, queue: &str, id: JobId, token: &str) -> Result<()> {
        let request = self
            .request(Method::DELETE, &format!("/q/{}/{id}", segment(queue)))
            .header(LEASE_HEADER, token);
        Self::send(request).await.map(drop)
    }

    /// Reports leased job `id` failed, with an optional reason (kept with the job, cut
    /// to 1,000 characters by the server): it goes back to the queue, or to the dead
    /// letters after its last attempt. Answers where it went.
    pub async fn fail(
        &self,
        queue: &str,
        id: JobId,
        token: &str,
        reason: Option<&str>,
    ) -> Result<JobInfo> {
        let mut request = self
            .request(Method::PUT, &format!("/q/{}/{id}", segment(queue)))
            .header(LEASE_HEADER, token);
        if let Some(reason) = reason {
            request = request.json(&serde_json::json!({ "error": reason }));
        }
        Self::json(request).await
    }

    /// Extends leased job `id`'s lease to end `lease_secs` seconds from now.
    pub async fn extend(
        &self,
        queue: &str,
        id: JobId,
        token: &str,
        lease_secs: f64,
    ) -> Result<JobInfo> {
        let request = self
            .request(Method::POST, &format!("/q/{}/{id}", segment(queue)))
            .header(LEASE_HEADER, token)
            .query(&[("lease", lease_secs.to_string())]);
        Self::json(request).await
    }

    /// Where job `id` of `queue` is (`GET /q/NAME/ID`).
    pub async fn job(&self, queue: &str, id: JobId) -> Result<JobInfo> {
        Self::json(self.request(Method::GET, &format!("/q/{}/{id}", segment(queue)))).await
    }

    /// A queue's counters (`GET /j/NAME`).
    pub async fn stats(&self, queue: &str) -> Result<QueueStats> {
        Self::json(self.request(Method::GET, &format!("/j/{}", segment(queue)))).await
    }

    /// Every queue with all its counters, in the server's natural order
    /// (`GET /overview`, every page).
    pub async fn overview(&self) -> Result<Vec<QueueOverview>> {
        #[derive(serde::Deserialize)]
        struct Page {
            queues: Vec<QueueOverview>,
            next: Option<String>,
        }
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut request = self
                .request(Method::GET, "/overview")
                .query(&[("limit", "10000")]);
            if let Some(after) = &after {
                request = request.query(&[("after", after)]);
            }
            let page: Page = Self::json(request).await?;
            all.extend(page.queues);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// One queue's counters from `GET /overview`; `None` if it does not exist.
    pub async fn queue_overview(&self, queue: &str) -> Result<Option<QueueOverview>> {
        #[derive(serde::Deserialize)]
        struct Page {
            queues: Vec<QueueOverview>,
        }
        let request = self
            .request(Method::GET, "/overview")
            .query(&[("name", queue)]);
        let page: Page = Self::json(request).await?;
        Ok(page.queues.into_iter().next())
    }

    /// A page of `queue`'s dead letters: up to `limit` with ids above `after`.
    pub async fn dead(&self, queue: &str, after: Option<JobId>, limit: u32) -> Result<DeadPage> {
        let mut request = self
            .request(Method::GET, &format!("/dead/{}", segment(queue)))
            .query(&[("limit", limit.to_string())]);
        if let Some(after) = after {
            request = request.query(&[("after", after.to_string())]);
        }
        Self::json(request).await
    }

    /// Puts `queue`'s dead letters (or only job `id`) back at the tail, attempts
    /// reset; answers how many.
    pub async fn retry_dead(&self, queue: &str, id: Option<JobId>) -> Result<u64> {
        #[derive(serde::Deserialize)]
        struct Retried {
            retried: u64,
        }
        let request = self.dead_request(Method::POST, queue, id);
        Ok(Self::json::<Retried>(request).await?.retried)
    }

    /// Deletes `queue`'s dead letters (or only job `id`); answers how many.
    pub async fn purge_dead(&self, queue: &str, id: Option<JobId>) -> Result<u64> {
        #[derive(serde::Deserialize)]
        struct Purged {
            purged: u64,
        }
        let request = self.dead_request(Method::DELETE, queue, id);
        Ok(Self::json::<Purged>(request).await?.purged)
    }

    fn dead_request(&self, method: Method, queue: &str, id: Option<JobId>) -> RequestBuilder {
        let request = self.request(method, &format!("/dead/{}", segment(queue)));
        match id {
            Some(id) => request.query(&[("id", id.to_string())]),
            None => request,
        }
    }

    /// Whether `queue` is open for fetches.
    pub async fn is_open(&self, queue: &str) -> Result<bool> {
        #[derive(serde::Deserialize)]
        struct Control {
            status: u8,
        }
        let request = self.request(Method::GET, &format!("/control/{}", segment(queue)));
        Ok(Self::json::<Control>(request).await?.status == 1)
    }

    /// Opens `queue` for fetches again.
    pub async fn open(&self, queue: &str) -> Result<()> {
        self.control(queue, "start").await
    }

    /// Closes `queue` for fetches (`404 queue is closed`, [`Error::QueueClosed`]);
    /// pushes are still accepted.
    pub async fn close(&self, queue: &str) -> Result<()> {
        self.control(queue, "stop").await
    }

    async fn control(&self, queue: &str, status: &str) -> Result<()> {
        let request = self
            .request(Method::POST, &format!("/control/{}", segment(queue)))
            .json(&serde_json::json!({ "status": status }));
        Self::send(request).await.map(drop)
    }

    /// Registers `worker_id` as a worker on `queue` (resets its counters).
    pub async fn register_worker(&self, queue: &str, worker_id: &str) -> Result<()> {
        let request = self
            .request(Method::POST, &format!("/w/{}", segment(queue)))
            .header(WORKER_HEADER, worker_id);
        Self::send(request).await.map(drop)
    }

    /// Unregisters `worker_id` from `queue`.
    pub async fn unregister_worker(&self, queue: &str, worker_id: &str) -> Result<()> {
        let request = self
            .request(Method::DELETE, &format!("/w/{}", segment(queue)))
            .header(WORKER_HEADER, worker_id);
        Self::send(request).await.map(drop)
    }

    /// Whether `worker_id` is registered (`GET /w/?worker_id=`).
    pub async fn worker_registered(&self, worker_id: &str) -> Result<bool> {
        let request = self
            .request(Method::GET, "/w/")
            .query(&[("worker_id", worker_id)]);
        match Self::send(request).await {
            Ok(_) => Ok(true),
            Err(Error::Server { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Lease {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// The queue it came from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The delivery token of this lease (`X-presque-lease`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The job's failed deliveries before this one (`X-presque-attempts`: 0 on the
    /// first delivery); `None` from a server that does not say.
    pub fn attempts(&self) -> Option<u32> {
        self.attempts
    }

    /// The job's bytes, as posted.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The job read as `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// Done: the job is gone.
    pub async fn ack(&self) -> Result<()> {
        self.client.ack(&self.queue, self.id, &self.token).await
    }

    /// Failed, with an optional reason; answers where the job went.
    pub async fn fail(&self, reason: Option<&str>) -> Result<JobInfo> {
        self.client
            .fail(&self.queue, self.id, &self.token, reason)
            .await
    }

    /// The lease now ends `lease_secs` seconds from now.
    pub async fn extend(&self, lease_secs: f64) -> Result<JobInfo> {
        self.client
            .extend(&self.queue, self.id, &self.token, lease_secs)
            .await
    }
}

/// A queue name as one path segment.
fn segment(queue: &str) -> String {
    utf8_percent_encode(queue, SEGMENT).to_string()
}

fn header<'r>(response: &'r Response, name: &str) -> Result<&'r str> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Protocol(format!("no {name} header in the answer")))
}
