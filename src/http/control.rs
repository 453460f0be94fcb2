//! `/control/NAME`: open or close a queue for fetching.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::input::{json_body, query, queue_name, NoQuery};
use super::AppState;
use crate::http::error::ApiError;
use crate::queue::{Fetching, GetCounters, SetOpen};

/// `GET /control/NAME`: status 1 when open, 0 when closed (a new queue is open).
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let NoQuery {} = query(&req)?;
    let open = state
        .queues
        .ask(&name, false, || GetCounters)
        .await?
        .is_none_or(|c| c.open);
    Ok(HttpResponse::Ok().json(json!({ "queue": name.as_str(), "status": u8::from(open) })))
}

/// `POST /control/NAME` with `{"status":"start"|"stop"}`. No Content-Type check here,
/// as in the original.
pub async fn set(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let NoQuery {} = query(&req)?;
    let value = json_body(
        &req,
        payload,
        state.max_body_bytes,
        ApiError::ContentMissing,
    )
    .await?;
    let status = value.get("status").cloned().unwrap_or(Value::Null);
    let open = match status.as_str() {
        Some("start") => Fetching::Open,
        Some("stop") => Fetching::Closed,
        _ => return Err(ApiError::BadStatus(status.to_string())),
    };
    state.queues.ask(&name, true, || SetOpen(open)).await?;
    Ok(HttpResponse::Ok().json(json!({ "queue": name.as_str(), "response": "updated" })))
}
