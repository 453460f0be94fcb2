//! `/w/...`: the worker registry (register, unregister, stats).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::input::{query, queue_name, read_body, worker_header};
use super::AppState;
use crate::actors::queue::GetCounters;
use crate::actors::registry::{AllWorkers, GetWorker, QueueWorkers, Register, Unregister};
use crate::clock::now_secs;
use crate::error::ApiError;
use crate::names::{QueueName, WorkerId};

#[derive(Deserialize)]
struct WorkerQuery {
    worker_id: Option<String>,
    queue_name: Option<String>,
}

fn parse_worker(raw: &str) -> Result<WorkerId, ApiError> {
    WorkerId::parse(raw).map_err(ApiError::BadWorkerId)
}

/// `POST /w/NAME`: registers the worker named by the header or by the body's
/// `worker_id` (the seed's form).
pub async fn register(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let queue = queue_name(&req)?;
    let worker = match worker_header(&req)? {
        Some(worker) => worker,
        None => {
            let body = read_body(&req, payload, state.max_body_bytes).await?;
            if body.is_empty() {
                return Err(ApiError::WorkerIdMissing);
            }
            let value: Value =
                serde_json::from_slice(&body).map_err(|e| ApiError::BadJson(e.to_string()))?;
            match value.get("worker_id") {
                Some(Value::String(s)) if !s.is_empty() => parse_worker(s)?,
                Some(Value::Number(n)) => parse_worker(&n.to_string())?,
                _ => return Err(ApiError::WorkerIdMissing),
            }
        }
    };
    state
        .registry
        .send(Register {
            worker,
            queue,
            now_secs: now_secs(),
        })
        .await??;
    Ok(HttpResponse::Created().finish())
}

/// `DELETE /w/NAME`: unregisters the worker named by the header or `?worker_id=`.
pub async fn unregister(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let queue = queue_name(&req)?;
    let worker = match worker_header(&req)? {
        Some(worker) => worker,
        None => {
            let params: WorkerQuery = query(&req)?;
            match params.worker_id.as_deref() {
                Some(raw) if !raw.is_empty() => parse_worker(raw)?,
                _ => return Err(ApiError::WorkerIdMissing),
            }
        }
    };
    state.registry.send(Unregister { worker, queue }).await??;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /w/?queue_name=NAME`, `GET /w/?worker_id=ID`, `GET /w/`.
pub async fn stats(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let params: WorkerQuery = query(&req)?;
    if let Some(raw) = params.queue_name.as_deref() {
        let queue = match raw {
            "" => return Err(ApiError::QueueNameMissing),
            raw => QueueName::parse(raw).map_err(ApiError::BadQueueName)?,
        };
        let workers = state.registry.send(QueueWorkers(queue.clone())).await?;
        let counters = state
            .queues
            .ask(&queue, false, || GetCounters)
            .await?
            .unwrap_or_default();
        let ids: Vec<&str> = workers.iter().map(WorkerId::as_str).collect();
        return Ok(HttpResponse::Ok().json(json!({
            "queue_name": queue.as_str(),
            "workers_list": ids,
            "processed": counters.processed,
            "failed": counters.failed,
        })));
    }
    if let Some(raw) = params.worker_id.as_deref().filter(|r| !r.is_empty()) {
        let worker = parse_worker(raw)?;
        let record = state
            .registry
            .send(GetWorker(worker.clone()))
            .await?
            .ok_or(ApiError::WorkerNotFound)?;
        return Ok(HttpResponse::Ok().json(json!({
            "worker_id": worker.as_str(),
            "started_at": record.started_at,
            "processed": record.processed,
            "failed": record.failed,
        })));
    }
    let all = state.registry.send(AllWorkers).await?;
    let ids: Vec<&str> = all.iter().map(WorkerId::as_str).collect();
    Ok(HttpResponse::Ok().json(ids))
}
