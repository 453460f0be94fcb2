//! `/w/...`: the worker registry (register, unregister, stats).

use std::collections::{BTreeMap, HashSet};

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::future::join_all;
use serde::Deserialize;
use serde_json::{json, Value};

use super::input::{
    epoch_secs, json_body, page_limit, query, queue_name, worker_header, worker_json, worker_param,
    NoQuery, DEFAULT_PAGE,
};
use super::AppState;
use crate::clock::{now_ms, now_secs};
use crate::http::error::ApiError;
use crate::names::{QueueName, WorkerId};
use crate::queue::{GetCounters, ListLeases};
use crate::registry::actor::{
    AllWorkers, GetWorker, ListWorkers, QueueWorkers, Register, Unregister, WorkerView,
};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct WorkerQuery {
    /// One worker's counters (404 `worker not found` if it is not registered).
    worker_id: Option<String>,
    /// A queue's workers and counters (wins over `worker_id`).
    #[param(example = "emails")]
    queue_name: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UnregisterQuery {
    /// The worker, when the `X-presque-workerid` header is not sent.
    #[param(example = "worker-1")]
    worker_id: Option<String>,
}

/// `POST /w/NAME`: registers the worker named by the header or by the body's
/// `worker_id` (the seed's form).
#[utoipa::path(
    post,
    path = "/w/{name}",
    operation_id = "register_worker",
    summary = "Register a worker on a queue",
    tag = "workers",
    params(("name" = String, Path, description = "Queue name"), ("X-presque-workerid" = Option<String>, Header, description = "The worker's id", example = "worker-1")),
    request_body(content = Option<crate::http::openapi::bodies::WorkerRegistration>, description = "Without the header: the id in the body", example = json!({"worker_id": "worker-1"})),
    responses(
        (status = 201, description = "Registered (again: counters and started_at reset)"),
        (status = 400, description = "worker_id is missing, or invalid worker_id", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "queue name is missing", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn register(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let queue = queue_name(&req)?;
    // `worker_id` is tolerated (and ignored) here: the id comes from the header or body.
    let NoQuery {} = query(&req)?;
    let worker = match worker_header(&req)? {
        Some(worker) => worker,
        None => {
            let value = json_body(
                &req,
                payload,
                state.max_body_bytes,
                ApiError::WorkerIdMissing,
            )
            .await?;
            worker_json(value.get("worker_id"))?.ok_or(ApiError::WorkerIdMissing)?
        }
    };
    state
        .registry
        .actor
        .send(Register {
            worker,
            queue,
            now_secs: now_secs(),
        })
        .await??;
    Ok(HttpResponse::Created().finish())
}

/// `DELETE /w/NAME`: unregisters the worker named by the header or `?worker_id=`.
#[utoipa::path(
    delete,
    path = "/w/{name}",
    operation_id = "unregister_worker",
    summary = "Unregister a worker from a queue",
    description = "A worker unregistered from its last queue is forgotten.",
    tag = "workers",
    params(("name" = String, Path, description = "Queue name"), UnregisterQuery, ("X-presque-workerid" = Option<String>, Header, description = "The worker's id", example = "worker-1")),
    responses(
        (status = 204, description = "Unregistered from the queue"),
        (status = 400, description = "worker_id is missing, or invalid worker_id", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "queue name is missing", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn unregister(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let queue = queue_name(&req)?;
    let params: UnregisterQuery = query(&req)?;
    let worker = match worker_header(&req)? {
        Some(worker) => worker,
        None => worker_param(params.worker_id.as_deref())?.ok_or(ApiError::WorkerIdMissing)?,
    };
    state
        .registry
        .actor
        .send(Unregister { worker, queue })
        .await??;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /w/?queue_name=NAME`, `GET /w/?worker_id=ID`, `GET /w/`.
#[utoipa::path(
    get,
    path = "/w",
    operation_id = "worker_stats",
    summary = "Workers: one, a queue's, or all",
    tag = "workers",
    params(WorkerQuery),
    responses(
        (status = 200, description = "With queue_name: the queue's workers; with worker_id: one worker; else every registered worker's id", body = crate::http::openapi::bodies::WorkersAnswer),
        (status = 400, description = "invalid queue name or worker_id", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "worker not found, or queue name is missing (queue_name=)", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn stats(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let params: WorkerQuery = query(&req)?;
    if let Some(raw) = params.queue_name.as_deref() {
        let queue = match raw {
            "" => return Err(ApiError::QueueNameMissing),
            raw => QueueName::parse(raw).map_err(ApiError::BadQueueName)?,
        };
        let workers = state
            .registry
            .actor
            .send(QueueWorkers(queue.clone()))
            .await?;
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
    if let Some(worker) = worker_param(params.worker_id.as_deref())? {
        let record = state
            .registry
            .actor
            .send(GetWorker(worker.clone()))
            .await?
            .ok_or(ApiError::WorkerNotFound)?;
        let (processed, failed) = state.registry.counters(&worker);
        return Ok(HttpResponse::Ok().json(json!({
            "worker_id": worker.as_str(),
            "started_at": record.started_at,
            "processed": processed,
            "failed": failed,
        })));
    }
    let all = state.registry.actor.send(AllWorkers).await?;
    let ids: Vec<&str> = all.iter().map(WorkerId::as_str).collect();
    Ok(HttpResponse::Ok().json(ids))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LivenessQuery {
    /// Workers per page, 1 to 10000 (default 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000, example = 100)]
    limit: Option<String>,
    /// The `next` of the page before: ids sort after it.
    #[param(example = "worker-0")]
    after: Option<String>,
}

/// `GET /workers[?limit=N][&after=ID]`: a page of the workers registered or seen
/// (through a request that fetched, acked, failed, posted or registered with its id),
/// sorted by id, with their queues, counters, when each was last seen, whether it is
/// gone (silent for `worker_timeout_secs`) and the jobs it holds on lease; `next` is
/// the `after` of the next page (null on the last).
#[utoipa::path(
    get,
    path = "/workers",
    operation_id = "worker_liveness",
    summary = "Workers with liveness and held leases",
    description = "Every worker registered or seen, sorted by id, a page at a time.",
    tag = "workers",
    params(LivenessQuery),
    responses(
        (status = 200, description = "A page of workers, by id", body = crate::http::openapi::bodies::WorkerList),
        (status = 400, description = "A bad limit or after", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn liveness(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params: LivenessQuery = query(&req)?;
    let limit = page_limit(params.limit.as_deref())?.unwrap_or(DEFAULT_PAGE);
    let after = worker_param(params.after.as_deref())?;
    let (views, next) = state
        .registry
        .actor
        .send(ListWorkers { after, limit })
        .await?;
    let held = leases_by_worker(&state, &views).await?;
    let mut held = held;
    let now = now_ms();
    let timeout_ms = state.worker_timeout_secs.saturating_mul(1000);
    let workers: Vec<Value> = views
        .into_iter()
        .map(|view| {
            let gone = view
                .last_seen_ms
                .is_none_or(|seen| now.saturating_sub(seen) > timeout_ms);
            let record = view.record.as_ref();
            let (processed, failed) = state.registry.counters(&view.id);
            json!({
                "worker_id": view.id.as_str(),
                "registered": record.is_some(),
                "queues": record.map(|r| r.queues.iter().map(|q| q.as_str()).collect::<Vec<_>>()).unwrap_or_default(),
                "started_at": record.map(|r| r.started_at),
                "processed": processed,
                "failed": failed,
                "last_seen": view.last_seen_ms.map(epoch_secs),
                "state": if gone { "gone" } else { "active" },
                "jobs": held.remove(view.id.as_str()).unwrap_or_default(),
            })
        })
        .collect();
    let next = next.as_ref().map(WorkerId::as_str);
    Ok(HttpResponse::Ok().json(json!({ "workers": workers, "next": next })))
}

/// The leases held by the workers of one page, by worker id. Leases live with their
/// queues: the queues holding any are asked, all at once rather than one after
/// another.
async fn leases_by_worker(
    state: &AppState,
    views: &[WorkerView],
) -> Result<BTreeMap<String, Vec<Value>>, ApiError> {
    let mut held: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    if views.is_empty() {
        return Ok(held);
    }
    let wanted: HashSet<&str> = views.iter().map(|v| v.id.as_str()).collect();
    let queues = state.queues.config().leasing.names();
    let answers = join_all(
        queues
            .iter()
            .map(|queue| state.queues.ask(queue, false, || ListLeases)),
    )
    .await;
    for (queue, leases) in queues.iter().zip(answers) {
        for (id, deadline_ms, worker) in leases?.unwrap_or_default() {
            let Some(worker) = worker.filter(|w| wanted.contains(&**w)) else {
                continue;
            };
            held.entry(worker.to_string()).or_default().push(json!({
                "queue": queue.as_str(),
                "id": id.0,
                "lease_deadline": epoch_secs(deadline_ms),
            }));
        }
    }
    Ok(held)
}
