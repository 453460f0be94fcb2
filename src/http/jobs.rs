//! `/q/NAME/ID`: one job by id. Look it up (GET), and for a leased job: ack it
//! (DELETE: done, it is gone), report it failed (PUT: back to the queue, or to the
//! dead letters after `max_attempts`), or extend its lease (POST `?lease=S`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::input::{
    delayed_ms, epoch_secs, job_id, lease_ms, path_target, query, queue_name, worker_header,
    NoQuery,
};
use super::AppState;
use crate::http::error::ApiError;
use crate::names::QueueName;
use crate::queue::job::JobId;
use crate::queue::state::JobInfo;
use crate::queue::{Ack, Extend, FailLease, FindJob};

fn target(req: &HttpRequest) -> Result<(QueueName, JobId), ApiError> {
    let name = queue_name(req)?;
    let id = job_id(path_target(req).1.unwrap_or(""))?;
    Ok((name, id))
}

/// A job's whereabouts as JSON.
pub(super) fn job_json(queue: &QueueName, id: JobId, info: &JobInfo) -> Value {
    json!({
        "id": id.0,
        "queue": queue.as_str(),
        "state": info.state.as_str(),
        "attempts": info.attempts,
        "lease_deadline": info.lease_deadline_ms.map(epoch_secs),
        "due_at": info.due_ms.map(epoch_secs),
        "worker_id": info.worker.as_deref(),
    })
}

/// `GET /q/NAME/ID`: state (ready, delayed, leased, dead), attempts, lease deadline.
pub async fn find(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (name, id) = target(&req)?;
    let NoQuery {} = query(&req)?;
    let info = state
        .queues
        .ask(&name, false, || FindJob(id))
        .await?
        .ok_or(ApiError::JobNotFound)?;
    Ok(HttpResponse::Ok().json(job_json(&name, id, &info)))
}

/// `DELETE /q/NAME/ID`: the leased job is done.
pub async fn ack(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (name, id) = target(&req)?;
    let NoQuery {} = query(&req)?;
    state
        .queues
        .ask(&name, false, || Ack(id))
        .await?
        .ok_or(ApiError::JobNotFound)?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
struct FailQuery {
    delayed: Option<String>,
}

/// `PUT /q/NAME/ID[?delayed=EPOCH]`: the leased job failed. Counts a failure for the
/// queue (and the worker in `X-presque-workerid`); answers where the job went.
pub async fn fail(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (name, id) = target(&req)?;
    let params: FailQuery = query(&req)?;
    let due_ms = delayed_ms(params.delayed.as_deref())?;
    let worker = worker_header(&req)?;
    let info = state
        .queues
        .ask(&name, false, || FailLease { id, due_ms })
        .await?
        .ok_or(ApiError::JobNotFound)?;
    state.registry.count_work(worker.as_ref(), 0, 1);
    Ok(HttpResponse::Ok().json(job_json(&name, id, &info)))
}

#[derive(Deserialize)]
struct ExtendQuery {
    lease: Option<String>,
}

/// `POST /q/NAME/ID?lease=S`: the lease now runs S seconds from now.
pub async fn extend(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (name, id) = target(&req)?;
    let params: ExtendQuery = query(&req)?;
    let duration_ms = lease_ms(params.lease.as_deref())?.ok_or_else(|| {
        ApiError::BadQuery("lease is missing: POST /q/NAME/ID?lease=SECONDS".into())
    })?;
    let info = state
        .queues
        .ask(&name, false, || Extend { id, duration_ms })
        .await?
        .ok_or(ApiError::JobNotFound)?;
    Ok(HttpResponse::Ok().json(job_json(&name, id, &info)))
}
