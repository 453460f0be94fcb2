//! `/health/live` and `/health/ready`: for load balancers and orchestrators. Both
//! pass the recovery gate and answer at once, whatever the server is doing.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::input::{query, NoQuery};
use super::AppState;
use crate::http::error::ApiError;

/// `GET /health/live`: 200 whenever the process serves HTTP, with its version.
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
