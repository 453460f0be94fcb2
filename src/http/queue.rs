//! `/q/NAME`: one job at a time (fetch, create, report a failure, purge the queue).

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::input::{
    check_json, due_ms, expires_ms, lease_ms, priority, query, queue_name, read_body, require_json,
    wait, worker_header, NoQuery,
};
use super::AppState;
use crate::http::error::ApiError;
use crate::names::{QueueName, WorkerId};
use crate::queue::directory::FetchRequest;
use crate::queue::job::Job;
use crate::queue::{Arrival, Enqueue, Handout, LeaseRequest, Purge, QueueError};

/// Response header carrying job ids: of leased jobs on a fetch, of the created job on
/// `POST`/`PUT /q/NAME`, of the created jobs on `POST /qb/NAME` (comma-separated in
/// order for batches). `X-presque-jobid` on the wire; a ready-made name, since
/// parsing one from text costs a check and an allocation on every answer.
pub(super) static JOB_ID_NAME: HeaderName = HeaderName::from_static("x-presque-jobid");

/// Header carrying delivery tokens: the response to a lease names each job's (in the
/// order of [`JOB_ID_NAME`]); an ack, failure report or extension shows it back.
pub const LEASE_HEADER: &str = "X-presque-lease";

/// [`LEASE_HEADER`] ready-made (see [`JOB_ID_NAME`]).
static LEASE_NAME: HeaderName = HeaderName::from_static("x-presque-lease");

/// Response header of a lease: each leased job's failed deliveries so far (as lookup's
/// `attempts`), comma-separated in the order of [`JOB_ID_NAME`].
static ATTEMPTS_NAME: HeaderName = HeaderName::from_static("x-presque-attempts");

/// Request header choosing how a fetch that finds no job is answered: `204` or `404`
/// (the default), as the `empty` query parameter does (which wins when both are given).
pub const EMPTY_HEADER: &str = "X-presque-empty";

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct FetchQuery {
    /// Long-poll: wait up to this many seconds (to `max_wait_secs`, default 30;
    /// fractions allowed) for a job when none is ready.
    #[param(value_type = Option<f64>, minimum = 0, example = 1)]
    pub(super) wait: Option<String>,
    /// Lease the job(s) for this many seconds (0.001 to 86400): at-least-once delivery.
    #[param(value_type = Option<f64>, minimum = 0.001, maximum = 86400, example = 60)]
    pub(super) lease: Option<String>,
    /// `GET /qb`: the most jobs to fetch, 1 to 1000 (default 10). Accepted and ignored
    /// on `GET /q`.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000, example = 10)]
    pub(super) batch_size: Option<String>,
    /// `204` or `404` (the default): the answer to a fetch that finds no job; wins
    /// over the `X-presque-empty` header.
    #[param(value_type = Option<String>, pattern = "^(204|404)$", example = "204")]
    pub(super) empty: Option<String>,
}

/// How a fetch that gets no job is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NoJobAnswer {
    /// 404 `{"error":"no job"}`, as the original protocol has it.
    NotFound,
    /// 204 with no body (opt-in): no error to log or parse for the normal case.
    NoContent,
}

/// The fetch's choice of [`NoJobAnswer`]: `empty=` in the query, else the
/// [`EMPTY_HEADER`] header, else the original 404.
fn no_job_answer(req: &HttpRequest, params: &FetchQuery) -> Result<NoJobAnswer, ApiError> {
    let (raw, what) = match &params.empty {
        Some(raw) => (raw.as_str(), "empty"),
        None => match req.headers().get(EMPTY_HEADER) {
            None => return Ok(NoJobAnswer::NotFound),
            Some(value) => (
                value.to_str().map_err(|_| {
                    ApiError::BadHeader(format!("{EMPTY_HEADER} must be 204 or 404"))
                })?,
                EMPTY_HEADER,
            ),
        },
    };
    match raw.trim() {
        "204" => Ok(NoJobAnswer::NoContent),
        "404" => Ok(NoJobAnswer::NotFound),
        _ => {
            let message = format!("{what} must be 204 or 404, not {raw:?}");
            Err(if params.empty.is_some() {
                ApiError::BadQuery(message)
            } else {
                ApiError::BadHeader(message)
            })
        }
    }
}

/// What both fetch routes (`GET /q`, `GET /qb`) do before shaping their answers:
/// read the options, fetch (or lease) up to `max` jobs, credit the worker named in
/// the request. Answers the jobs and whether they were leased, or `None` when there
/// was no job and the client asked for 204 then.
pub(super) async fn fetch_for(
    req: &HttpRequest,
    state: &AppState,
    name: &QueueName,
    params: &FetchQuery,
    max: usize,
) -> Result<Option<(Handout, bool)>, ApiError> {
    let worker = worker_header(req)?;
    let request = fetch_request(params, state, worker.as_ref(), max)?;
    let no_job = no_job_answer(req, params)?;
    let leased = request.lease.is_some();
    let jobs = match state.queues.fetch(name, request).await {
        Ok(jobs) => jobs,
        Err(QueueError::Empty) if no_job == NoJobAnswer::NoContent => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    state
        .registry
        .count_work(worker.as_ref(), jobs.len() as u64, 0);
    Ok(Some((jobs, leased)))
}

/// Reads a fetch's options: `wait`, `lease`, and the worker taking the lease.
fn fetch_request(
    params: &FetchQuery,
    state: &AppState,
    worker: Option<&WorkerId>,
    max: usize,
) -> Result<FetchRequest, ApiError> {
    let lease = lease_ms(params.lease.as_deref())?.map(|duration_ms| LeaseRequest {
        duration_ms,
        worker: worker.map(|w| w.as_str().into()),
    });
    Ok(FetchRequest {
        max,
        lease,
        wait: wait(params.wait.as_deref(), state.max_wait_secs)?,
    })
}

/// A 200 answer carrying fetched jobs; leased jobs' ids go in [`JOB_ID_NAME`], their
/// delivery tokens in [`LEASE_HEADER`].
pub(super) fn jobs_response(
    jobs: &Handout,
    leased: bool,
    body: impl actix_web::body::MessageBody + 'static,
) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response.content_type("application/json");
    if leased {
        // Written by hand: every lease answer pays for these three headers.
        let mut digits = itoa::Buffer::new();
        let ids = comma_list(jobs.iter(), |out, j| out.push_str(digits.format(j.id.0)));
        response.insert_header((JOB_ID_NAME.clone(), ids));
        let tokens = comma_list(jobs.tokens.iter(), |out, t| t.push_to(out));
        response.insert_header((LEASE_NAME.clone(), tokens));
        let attempts = comma_list(jobs.attempts.iter(), |out, a| {
            out.push_str(digits.format(*a))
        });
        response.insert_header((ATTEMPTS_NAME.clone(), attempts));
    }
    response.body(body)
}

/// A header value listing `items`, comma-separated, each written by `write`.
fn comma_list<T>(
    items: impl Iterator<Item = T>,
    mut write: impl FnMut(&mut String, T),
) -> HeaderValue {
    let mut out = String::new();
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(&mut out, item);
    }
    // Digits, dots and commas only: always a valid header value.
    HeaderValue::try_from(out).unwrap_or(HeaderValue::from_static(""))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CreateQuery {
    /// Not fetchable before this epoch time (seconds, fractions allowed). Not with
    /// `delay`.
    #[param(value_type = Option<f64>, minimum = 0)]
    delayed: Option<String>,
    /// Not fetchable for this many seconds from now (0 to 315360000, fractions
    /// allowed). Not with `delayed`.
    #[param(value_type = Option<f64>, minimum = 0, maximum = 315360000, example = 90)]
    delay: Option<String>,
    /// The job leaves the queue (to the dead letters, or dropped, as the queue's
    /// `on_expiry` says) unless handed out within this many seconds (above 0, to
    /// 315360000, fractions allowed).
    #[param(value_type = Option<f64>, exclusive_minimum = 0, maximum = 315360000, example = 3600)]
    ttl: Option<String>,
    /// Refuse a duplicate (400 `job already exists`) while a job with this key waits.
    #[param(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$", example = "user-42")]
    uniq: Option<String>,
    /// 0 (the most urgent) to 255 (the least), default 128: a fetch takes the most
    /// urgent ready job, FIFO among jobs of equal priority.
    #[param(value_type = Option<u8>, minimum = 0, maximum = 255, example = 10)]
    priority: Option<String>,
}

/// `GET /q/NAME[?wait=S][&lease=S][&empty=204]`: the job at the head, as posted.
#[utoipa::path(
    get,
    path = "/q/{name}",
    operation_id = "fetch_job",
    summary = "Fetch the head job",
    description = "Counts one processed job (for the queue, and for the worker in X-presque-workerid if registered) and frees its uniq key. With lease, the job stays in flight until acked, failed or the lease runs out. With wait, waits at the queue for a job (a long-poll).",
    tag = "jobs",
    params(
        ("name" = String, Path, description = "Queue name"),
        FetchQuery,
        ("X-presque-workerid" = Option<String>, Header, description = "The worker fetching: counts a processed job for it, holds the lease", example = "worker-1"),
        ("X-presque-empty" = Option<String>, Header, pattern = "^(204|404)$", description = "204 or 404 (the default): the answer when there is no job; the empty query parameter wins"),
    ),
    responses(
        (status = 200, description = "The head job, its bytes exactly as posted", body = serde_json::Value, headers(
            ("X-presque-jobid" = String, description = "With lease: the job's id"),
            ("X-presque-lease" = String, description = "With lease: the delivery token, for ack, fail and extend"),
            ("X-presque-attempts" = String, description = "With lease: the job's failed deliveries before this one (0 on the first)"),
        )),
        (status = 204, description = "No job (asked for with empty=204 or X-presque-empty: 204)"),
        (status = 400, description = "A bad parameter or header", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "no job, queue is closed, or queue name is missing", body = crate::http::openapi::ErrorBody),
        (status = 429, description = "Too many requests waiting on this queue", body = crate::http::openapi::ErrorBody),
        (status = 503, description = "server is stopping (a long-poll cut short; Retry-After: 1)", body = crate::http::openapi::ErrorBody),
    ),
)]
#[tracing::instrument(level = "debug", name = "fetch", skip_all, fields(queue = %super::input::path_target(&req).0))]
pub async fn fetch(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let params: FetchQuery = query(&req)?;
    let Some((jobs, leased)) = fetch_for(&req, &state, &name, &params, 1).await? else {
        return Ok(HttpResponse::NoContent().finish());
    };
    let body = jobs
        .first()
        .map(|job| job.body.clone())
        .ok_or(ApiError::NoJob)?;
    Ok(jobs_response(&jobs, leased, body))
}

/// `GET /q/` and friends: no queue named.
pub async fn name_missing() -> Result<HttpResponse, ApiError> {
    Err(ApiError::QueueNameMissing)
}

/// `POST /q/NAME[?delayed=EPOCH|delay=S][&uniq=KEY][&priority=N]`: a new job; its id is answered
/// in [`JOB_ID_NAME`].
#[utoipa::path(
    post,
    path = "/q/{name}",
    operation_id = "create_job",
    summary = "Create a job",
    description = "The body is the job, any JSON value, answered byte for byte when fetched. Creating a job creates its queue.",
    tag = "jobs",
    params(
        ("name" = String, Path, description = "Queue name (created by its first job)"),
        CreateQuery,
        ("X-presque-workerid" = Option<String>, Header, description = "The worker posting", example = "worker-1"),
    ),
    request_body(content = serde_json::Value, content_type = "application/json", description = "The job: any JSON value, kept and answered byte for byte", example = json!({"to": "a@b.c"})),
    responses(
        (status = 201, description = "Created (empty body)", headers(
            ("X-presque-jobid" = u64, description = "The new job's id"),
        )),
        (status = 400, description = "Not JSON, no application/json Content-Type, job is missing, a bad parameter, or job already exists (uniq)", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "queue name is missing", body = crate::http::openapi::ErrorBody),
        (status = 413, description = "The body is larger than max_body_bytes", body = crate::http::openapi::ErrorBody),
        (status = 415, description = "A Content-Encoding other than identity", body = crate::http::openapi::ErrorBody),
        (status = 507, description = "queue memory is full, or queue is full (max_jobs N)", body = crate::http::openapi::ErrorBody),
    ),
)]
#[tracing::instrument(level = "debug", name = "create", skip_all, fields(queue = %super::input::path_target(&req).0))]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    enqueue(req, payload, state, Arrival::Posted).await
}

/// `PUT /q/NAME`: a worker reports a failed job; it is counted and queued again, as a
/// new job whose id is answered in [`JOB_ID_NAME`].
#[utoipa::path(
    put,
    path = "/q/{name}",
    operation_id = "report_failed_job",
    summary = "Report a failed job (the original protocol)",
    description = "Counts a failed job (for the queue and the worker in X-presque-workerid) and queues the body again as a new job, as POST would.",
    tag = "jobs",
    params(
        ("name" = String, Path, description = "Queue name (created by its first job)"),
        CreateQuery,
        ("X-presque-workerid" = Option<String>, Header, description = "The worker posting: counts a failed job for it", example = "worker-1"),
    ),
    request_body(content = serde_json::Value, content_type = "application/json", description = "The job: any JSON value, kept and answered byte for byte", example = json!({"to": "a@b.c"})),
    responses(
        (status = 201, description = "Counted as failed and queued again as a new job (empty body)", headers(
            ("X-presque-jobid" = u64, description = "The new job's id"),
        )),
        (status = 400, description = "Not JSON, no application/json Content-Type, job is missing, a bad parameter, or job already exists (uniq)", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "queue name is missing", body = crate::http::openapi::ErrorBody),
        (status = 413, description = "The body is larger than max_body_bytes", body = crate::http::openapi::ErrorBody),
        (status = 415, description = "A Content-Encoding other than identity", body = crate::http::openapi::ErrorBody),
        (status = 507, description = "queue memory is full, or queue is full (max_jobs N)", body = crate::http::openapi::ErrorBody),
    ),
)]
#[tracing::instrument(level = "debug", name = "fail", skip_all, fields(queue = %super::input::path_target(&req).0))]
pub async fn fail(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    enqueue(req, payload, state, Arrival::ReportedFailed).await
}

async fn enqueue(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    arrival: Arrival,
) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let params: CreateQuery = query(&req)?;
    let due_ms = due_ms(params.delayed.as_deref(), params.delay.as_deref())?;
    let priority = priority(params.priority.as_deref())?;
    let expires_ms = expires_ms(params.ttl.as_deref())?;
    let worker = worker_header(&req)?;
    require_json(&req)?;
    let body = read_body(&req, payload, state.max_body_bytes).await?;
    if body.is_empty() {
        return Err(ApiError::JobMissing);
    }
    check_json(&body)?;
    // Stored in the log beside the job: what no record holds (NUL runs among them)
    // is what tells recovery an unwritten stretch from damage.
    if params
        .uniq
        .as_deref()
        .is_some_and(|k| k.chars().any(char::is_control))
    {
        return Err(ApiError::BadUniq);
    }
    let id = state.job_ids.mint();
    let job = Job {
        id,
        body,
        uniq: params.uniq.filter(|k| !k.is_empty()).map(Into::into),
        priority,
    };
    state
        .queues
        .ask(&name, true, || Enqueue {
            jobs: vec![job.clone()],
            due_ms,
            expires_ms,
            arrival,
        })
        .await?;
    if arrival == Arrival::ReportedFailed {
        state.registry.count_work(worker.as_ref(), 0, 1);
    }
    Ok(HttpResponse::Created()
        .insert_header((JOB_ID_NAME.clone(), HeaderValue::from(id.0)))
        .finish())
}

/// `DELETE /q/NAME`: the queue and everything in it goes.
#[utoipa::path(
    delete,
    path = "/q/{name}",
    operation_id = "delete_queue",
    summary = "Delete a queue",
    description = "Its jobs, uniq keys, counters and open/closed state. Waiting long-polls are answered 404 no job.",
    tag = "jobs",
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 204, description = "The queue is gone: jobs, uniq keys, counters, open/closed state (also when it did not exist)"),
        (status = 404, description = "queue name is missing", body = crate::http::openapi::ErrorBody),
    ),
)]
#[tracing::instrument(level = "debug", name = "purge", skip_all, fields(queue = %super::input::path_target(&req).0))]
pub async fn purge(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let NoQuery {} = query(&req)?;
    if let Some(addr) = state.queues.remove(&name) {
        // Gone means a concurrent DELETE purged it first: the outcome is the same.
        let _ = addr.send(Purge).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}
