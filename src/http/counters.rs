//! `/j/NAME`: a queue's counters.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::input::{query, queue_name, NoQuery};
use super::AppState;
use crate::http::error::ApiError;
use crate::queue::GetCounters;

/// `GET /j/NAME`: ready, failed and processed counts (zeros for an unknown queue).
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
