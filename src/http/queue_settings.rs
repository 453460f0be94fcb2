//! `/settings/NAME`: a queue's own settings (today: `max_attempts`, the failed
//! deliveries of a leased job before it is dead-lettered).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::input::{json_body, query, queue_name, NoQuery};
use super::AppState;
use crate::http::error::ApiError;
use crate::names::QueueName;
use crate::queue::{GetSettings, SetMaxAttempts};
use crate::settings::MAX_ATTEMPTS_LIMIT;

async fn current(
    state: &AppState,
    name: &QueueName,
    default: u32,
) -> Result<HttpResponse, ApiError> {
    let (own, effective) = state
        .queues
        .ask(name, false, || GetSettings)
        .await?
        .unwrap_or((None, default));
    Ok(HttpResponse::Ok().json(json!({
        "queue": name.as_str(),
        "max_attempts": effective,
        "max_attempts_is_default": own.is_none(),
    })))
}

/// `GET /settings/NAME`
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let NoQuery {} = query(&req)?;
    current(&state, &name, state.default_max_attempts).await
}

/// `POST /settings/NAME` with `{"max_attempts": N}` (1 to 1000), or `null` to follow
/// the server's default again.
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
    let max = match value.get("max_attempts") {
        Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=u64::from(MAX_ATTEMPTS_LIMIT)).contains(&n) => Some(n as u32),
            _ => {
                return Err(ApiError::BadBody(format!(
                "max_attempts must be an integer from 1 to {MAX_ATTEMPTS_LIMIT} (or null), not {v}"
            )))
            }
        },
        None => return Err(ApiError::BadBody("expected {\"max_attempts\": N}".into())),
    };
    state
        .queues
        .ask(&name, true, || SetMaxAttempts(max))
        .await?;
    current(&state, &name, state.default_max_attempts).await
}
