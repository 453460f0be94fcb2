//! `/j/NAME`: a queue's counters.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::input::{query, queue_name, NoQuery};
use super::AppState;
use crate::http::error::ApiError;
use crate::queue::GetCounters;

/// `GET /j/NAME`: ready, failed and processed counts (zeros for an unknown queue).
#[utoipa::path(
    get,
    path = "/j/{name}",
    operation_id = "queue_counters",
    summary = "A queue's counters",
    tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 200, description = "The queue's counters (zeros for an unknown queue)", body = crate::http::openapi::bodies::Counters),
        (status = 400, description = "invalid queue name, or a query parameter", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "queue name is missing", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let NoQuery {} = query(&req)?;
    let c = state
        .queues
        .ask(&name, false, || GetCounters)
        .await?
        .unwrap_or_default();
    Ok(HttpResponse::Ok().json(json!({
        "queue_name": name.as_str(),
        "job_count": c.ready,
        "job_failed": c.failed,
        "job_processed": c.processed,
    })))
}
