//! `/health/live` and `/health/ready`: for load balancers and orchestrators. Both
//! pass the recovery gate and answer at once, whatever the server is doing.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::input::{query, NoQuery};
use super::AppState;
use crate::http::error::ApiError;

/// `GET /health/live`: 200 whenever the process serves HTTP, with its version.
#[utoipa::path(
    get,
    path = "/health/live",
    operation_id = "health_live",
    summary = "Liveness",
    description = "Answered to anyone, always, even during recovery.",
    tag = "health",
    responses((status = 200, description = "The process serves HTTP", body = crate::http::openapi::bodies::Live)),
)]
pub async fn live(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let NoQuery {} = query(&req)?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "live",
        "version": env!("CARGO_PKG_VERSION"),
    })))
}

/// `GET /health/ready`: 200 when the server takes writes; 503 with `Retry-After: 1`
/// and the reason while recovery still runs or while the log refuses changes (a
/// failed write being retried, or a removed data directory).
#[utoipa::path(
    get,
    path = "/health/ready",
    operation_id = "health_ready",
    summary = "Readiness",
    tag = "health",
    responses(
        (status = 200, description = "The server takes writes", body = crate::http::openapi::bodies::Ready),
        (status = 503, description = "Not ready: recovery runs, or the log refuses changes", body = crate::http::openapi::bodies::Ready, headers(("Retry-After" = u32, description = "1"))),
    ),
)]
pub async fn ready(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let NoQuery {} = query(&req)?;
    let reason = if !state.gate.is_open() {
        Some(ApiError::Recovering.to_string())
    } else {
        state.log.check().err().map(|e| e.to_string())
    };
    Ok(match reason {
        None => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Some(reason) => HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .json(json!({ "status": "not ready", "reason": reason })),
    })
}
