//! `/qb/NAME`: jobs in batches. Fetched jobs come back as an array of JSON-text
//! strings, as the original served them.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::input::{
    batch_size, check_json, due_ms, expires_ms, priority, query, queue_name, read_body,
    require_json, NoQuery,
};
use super::queue::{fetch_for, jobs_response, FetchQuery, JOB_ID_NAME};
use super::AppState;
use crate::http::error::ApiError;
use crate::queue::job::Job;
use crate::queue::{Arrival, Enqueue};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CreateQuery {
    /// No job fetchable before this epoch time (seconds, fractions allowed). Not with
    /// `delay`.
    #[param(value_type = Option<f64>, minimum = 0)]
    delayed: Option<String>,
    /// No job fetchable for this many seconds from now (0 to 315360000). Not with
    /// `delayed`.
    #[param(value_type = Option<f64>, minimum = 0, maximum = 315360000, example = 90)]
    delay: Option<String>,
    /// Each job leaves the queue (to the dead letters, or dropped, as the queue's
    /// `on_expiry` says) unless handed out within this many seconds (above 0, to
    /// 315360000, fractions allowed).
    #[param(value_type = Option<f64>, exclusive_minimum = 0, maximum = 315360000, example = 3600)]
    ttl: Option<String>,
    /// Known, to be refused with the original's message (400 `uniq is not supported
    /// in batch mode`).
    uniq: Option<String>,
    /// Every job's priority: 0 (the most urgent) to 255 (the least), default 128. A
    /// fetch takes the most urgent ready job, FIFO among jobs of equal priority.
    #[param(value_type = Option<u8>, minimum = 0, maximum = 255, example = 10)]
    priority: Option<String>,
}

/// Response header carrying a created batch's ids as `FIRST-LAST` (they run
/// consecutively), however long the batch.
pub const JOB_ID_RANGE_HEADER: &str = "X-presque-jobid-range";

/// Longest id list [`JOB_ID_NAME`] carries on `POST /qb`; a longer batch answers
/// only [`JOB_ID_RANGE_HEADER`]. Clients read header lines of limited length (Perl's
/// `Net::HTTP`, under LWP, dies on a line over 8 KiB; older Node refuses 8 KiB of
/// headers in all), and an old client posting a big batch must keep working.
pub const MAX_ID_LIST_BYTES: usize = 4096;

/// `GET /qb/NAME?batch_size=N[&wait=S][&lease=S][&empty=204]`: up to N jobs from the
/// head.
#[utoipa::path(
    get,
    path = "/qb/{name}",
    operation_id = "fetch_batch",
    summary = "Fetch up to batch_size jobs",
    description = "As GET /q/{name}, for up to batch_size jobs; each comes as a JSON-text string.",
    tag = "batches",
    params(
        ("name" = String, Path, description = "Queue name"),
        super::queue::FetchQuery,
        ("X-presque-workerid" = Option<String>, Header, description = "The worker fetching: counts the processed jobs for it, holds the leases", example = "worker-1"),
        ("X-presque-empty" = Option<String>, Header, pattern = "^(204|404)$", description = "204 or 404 (the default): the answer when there is no job; the empty query parameter wins"),
    ),
    responses(
        (status = 200, description = "Up to batch_size jobs from the head, each as JSON text", body = Vec<String>, headers(
            ("X-presque-jobid" = String, description = "With lease: the jobs' ids, comma-separated"),
            ("X-presque-lease" = String, description = "With lease: the delivery tokens, comma-separated in the same order"),
            ("X-presque-attempts" = String, description = "With lease: each job's failed deliveries before this one, comma-separated in the same order"),
        )),
        (status = 204, description = "No job (asked for with empty=204 or X-presque-empty: 204)"),
        (status = 400, description = "A bad parameter or header", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "no job, queue is closed, or queue name is missing", body = crate::http::openapi::ErrorBody),
        (status = 429, description = "Too many requests waiting on this queue", body = crate::http::openapi::ErrorBody),
        (status = 503, description = "server is stopping (a long-poll cut short; Retry-After: 1)", body = crate::http::openapi::ErrorBody),
    ),
)]
#[tracing::instrument(level = "debug", name = "batch_fetch", skip_all, fields(queue = %super::input::path_target(&req).0))]
pub async fn fetch(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let params: FetchQuery = query(&req)?;
    let max = batch_size(params.batch_size.as_deref())?;
    let Some((jobs, leased)) = fetch_for(&req, &state, &name, &params, max).await? else {
        return Ok(HttpResponse::NoContent().finish());
    };
    // Job bodies were checked as UTF-8 JSON on the way in.
    let texts: Vec<&str> = jobs
        .iter()
        .map(|job| std::str::from_utf8(&job.body).unwrap_or_default())
        .collect();
    let body = serde_json::to_vec(&texts).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(jobs_response(&jobs, leased, body))
}

/// `POST /qb/NAME[?delayed=EPOCH|delay=S]` with `{"jobs": [...]}`: each job created
/// in order. The ids go in [`JOB_ID_RANGE_HEADER`], and comma-separated in
/// [`JOB_ID_NAME`] when the list fits in [`MAX_ID_LIST_BYTES`].
#[utoipa::path(
    post,
    path = "/qb/{name}",
    operation_id = "create_batch",
    summary = "Create jobs in order",
    description = "An empty jobs array creates nothing. A batch is all or nothing against max_jobs and the memory budget.",
    tag = "batches",
    params(
        ("name" = String, Path, description = "Queue name (created by its first job)"),
        CreateQuery,
    ),
    request_body(content = crate::http::openapi::bodies::Batch, content_type = "application/json", example = json!({"jobs": [{"n": 1}, {"n": 2}]})),
    responses(
        (status = 201, description = "Created, ids consecutive in the order of jobs (no header for an empty array)", headers(
            ("X-presque-jobid" = String, description = "The ids, comma-separated, when the list fits in 4096 bytes"),
            ("X-presque-jobid-range" = String, description = "FIRST-LAST"),
        )),
        (status = 400, description = "Not JSON, no application/json Content-Type, jobs should be an array of job, uniq is not supported in batch mode, a bad parameter", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "queue name is missing", body = crate::http::openapi::ErrorBody),
        (status = 413, description = "The body is larger than max_body_bytes", body = crate::http::openapi::ErrorBody),
        (status = 415, description = "A Content-Encoding other than identity", body = crate::http::openapi::ErrorBody),
        (status = 507, description = "queue memory is full, or queue is full (max_jobs N); nothing created", body = crate::http::openapi::ErrorBody),
    ),
)]
#[tracing::instrument(level = "debug", name = "batch_create", skip_all, fields(queue = %super::input::path_target(&req).0))]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let params: CreateQuery = query(&req)?;
    if params.uniq.is_some() {
        return Err(ApiError::NotInBatchMode("uniq"));
    }
    let due_ms = due_ms(params.delayed.as_deref(), params.delay.as_deref())?;
    let priority = priority(params.priority.as_deref())?;
    let expires_ms = expires_ms(params.ttl.as_deref())?;
    require_json(&req)?;
    let body = read_body(&req, payload, state.max_body_bytes).await?;
    if body.is_empty() {
        return Err(ApiError::JobMissing);
    }
    check_json(&body)?;
    // A map, not a derived struct: serde would also accept `[[...]]` for a struct.
    let fields: HashMap<String, &RawValue> =
        serde_json::from_slice(&body).map_err(|_| ApiError::JobsNotArray)?;
    let raw_jobs: Vec<&RawValue> = fields
        .get("jobs")
        .and_then(|jobs| serde_json::from_str(jobs.get()).ok())
        .ok_or(ApiError::JobsNotArray)?;
    if raw_jobs.is_empty() {
        return Ok(HttpResponse::Created().finish());
    }
    let ids = state.job_ids.mint_block(raw_jobs.len() as u64);
    let jobs: Vec<Job> = raw_jobs
        .into_iter()
        .zip(ids)
        .map(|(raw, id)| Job {
            id,
            body: subslice(&body, raw.get().as_bytes()),
            uniq: None,
            priority,
        })
        .collect();
    state
        .queues
        .ask(&name, true, || Enqueue {
            jobs: jobs.clone(),
            due_ms,
            expires_ms,
            arrival: Arrival::Posted,
        })
        .await?;
    let mut response = HttpResponse::Created();
    if let (Some(first), Some(last)) = (jobs.first(), jobs.last()) {
        response.insert_header((JOB_ID_RANGE_HEADER, format!("{}-{}", first.id.0, last.id.0)));
    }
    if let Some(list) = id_list(&jobs, MAX_ID_LIST_BYTES) {
        response.insert_header((JOB_ID_NAME.clone(), list));
    }
    Ok(response.finish())
}

/// The jobs' ids comma-separated, or `None` if that is longer than `limit` bytes.
fn id_list(jobs: &[Job], limit: usize) -> Option<String> {
    let mut list = String::new();
    for job in jobs {
        if !list.is_empty() {
            list.push(',');
        }
        list.push_str(&job.id.0.to_string());
        if list.len() > limit {
            return None;
        }
    }
    Some(list)
}

/// `part` as a zero-copy view of `whole` when it lies inside it (it always does for a
/// borrowed `RawValue`), else as a copy: `Bytes::slice_ref` would panic.
fn subslice(whole: &bytes::Bytes, part: &[u8]) -> bytes::Bytes {
    let start = whole.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    if at >= start && at + part.len() <= start + whole.len() {
        whole.slice_ref(part)
    } else {
        bytes::Bytes::copy_from_slice(part)
    }
}

/// `PUT /qb/NAME`: refused, as in the original.
#[utoipa::path(
    put,
    path = "/qb/{name}",
    operation_id = "put_batch_refused",
    summary = "Refused, as in the original",
    tag = "batches",
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 400, description = "PUT is not supported in batch mode", body = crate::http::openapi::ErrorBody)),
)]
pub async fn put_refused(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let NoQuery {} = query(&req)?;
    Err(ApiError::NotInBatchMode("PUT"))
}

/// `DELETE /qb/NAME`: refused, as in the original.
#[utoipa::path(
    delete,
    path = "/qb/{name}",
    operation_id = "delete_batch_refused",
    summary = "Refused, as in the original",
    tag = "batches",
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 400, description = "DELETE is not supported in batch mode", body = crate::http::openapi::ErrorBody)),
)]
pub async fn delete_refused(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let NoQuery {} = query(&req)?;
    Err(ApiError::NotInBatchMode("DELETE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_list_stops_at_its_limit() {
        let jobs: Vec<Job> = (8..=12)
            .map(|id| Job {
                id: crate::queue::job::JobId(id),
                body: bytes::Bytes::new(),
                uniq: None,
                priority: crate::queue::job::DEFAULT_PRIORITY,
            })
            .collect();
        assert_eq!(id_list(&jobs, 100).as_deref(), Some("8,9,10,11,12"));
        assert_eq!(id_list(&jobs, 12).as_deref(), Some("8,9,10,11,12"));
        assert_eq!(id_list(&jobs, 11), None);
    }
}
