//! `/qb/NAME`: jobs in batches. Fetched jobs come back as an array of JSON-text
//! strings, as the original served them.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::input::{
    batch_size, check_json, delayed_ms, query, queue_name, read_body, require_json, worker_header,
};
use super::queue::{fetch_jobs, fetch_request, jobs_response, no_job_answer, FetchQuery};
use super::AppState;
use crate::http::error::ApiError;
use crate::queue::job::Job;
use crate::queue::{Arrival, Enqueue};

#[derive(Deserialize)]
struct CreateQuery {
    delayed: Option<String>,
    uniq: Option<String>,
}

/// `GET /qb/NAME?batch_size=N[&wait=S][&lease=S][&empty=204]`: up to N jobs from the
/// head.
#[tracing::instrument(level = "debug", name = "batch_fetch", skip_all, fields(queue = %super::input::path_target(&req).0))]
pub async fn fetch(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let params: FetchQuery = query(&req)?;
    let max = batch_size(params.batch_size.as_deref())?;
    let worker = worker_header(&req)?;
    let request = fetch_request(&params, &state, worker.as_ref(), max)?;
    let no_job = no_job_answer(&req, &params)?;
    let leased = request.lease.is_some();
    let Some(jobs) = fetch_jobs(&state, &name, request, no_job).await? else {
        return Ok(HttpResponse::NoContent().finish());
    };
    state
        .registry
        .count_work(worker.as_ref(), jobs.len() as u64, 0);
    // Job bodies were checked as UTF-8 JSON on the way in.
    let texts: Vec<&str> = jobs
        .iter()
        .map(|job| std::str::from_utf8(&job.body).unwrap_or_default())
        .collect();
    let body = serde_json::to_vec(&texts).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(jobs_response(&jobs, leased, body))
}

/// `POST /qb/NAME` with `{"jobs": [...]}`: each job created in order.
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
    let due_ms = delayed_ms(params.delayed.as_deref())?;
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
    let jobs: Vec<Job> = raw_jobs
        .into_iter()
        .map(|raw| Job {
            id: state.job_ids.mint(),
            body: subslice(&body, raw.get().as_bytes()),
            uniq: None,
        })
        .collect();
    if !jobs.is_empty() {
        state
            .queues
            .ask(&name, true, || Enqueue {
                jobs: jobs.clone(),
                due_ms,
                arrival: Arrival::Posted,
            })
            .await?;
    }
    Ok(HttpResponse::Created().finish())
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
pub async fn put_refused() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotInBatchMode("PUT"))
}

/// `DELETE /qb/NAME`: refused, as in the original.
pub async fn delete_refused() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotInBatchMode("DELETE"))
}
