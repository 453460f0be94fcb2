//! `/control/NAME`: open or close a queue for fetching.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::input::{json_body, query, queue_name, NoQuery};
use super::AppState;
use crate::http::error::ApiError;
use crate::queue::{Fetching, GetCounters, SetOpen};

/// `GET /control/NAME`: status 1 when open, 0 when closed (a new queue is open).
#[utoipa::path(
    get,
    path = "/control/{name}",
    operation_id = "queue_control",
    summary = "Is the queue open?",
    tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 200, description = "Open (1) or closed (0)", body = crate::http::openapi::bodies::ControlStatus),
        (status = 404, description = "queue name is missing", body = crate::http::openapi::ErrorBody),
    ),
)]
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
#[utoipa::path(
    post,
    path = "/control/{name}",
    operation_id = "open_or_close_queue",
    summary = "Open or close a queue for fetching",
    description = "A closed queue still takes jobs; only fetches are refused (404 queue is closed).",
    tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    request_body(content = crate::http::openapi::bodies::ControlChange, description = "No Content-Type needed", example = json!({"status": "stop"})),
    responses(
        (status = 200, description = "Updated", body = crate::http::openapi::bodies::ControlUpdated),
        (status = 400, description = "content is missing, invalid JSON, or a status other than start or stop", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "queue name is missing", body = crate::http::openapi::ErrorBody),
    ),
)]
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
