//! `/settings/NAME`: a queue's own settings: `max_attempts` (the failed deliveries of
//! a leased job before it is dead-lettered) and `max_jobs` (the most ready, delayed
//! and leased jobs it holds; creates beyond are answered 507) and `backoff` (how long
//! a leased job that failed or whose lease ran out waits before it is ready again)
//! and `on_expiry` (whether jobs whose ttl runs out become dead letters or go).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::input::{json_body, query, queue_name, NoQuery};
use super::AppState;
use crate::http::error::ApiError;
use crate::names::QueueName;
use crate::queue::backoff::Backoff;
use crate::queue::state::OnExpiry;
use crate::queue::{
    GetSettings, QueueSettings, SetBackoff, SetMaxAttempts, SetMaxJobs, SetOnExpiry,
};
use crate::settings::MAX_ATTEMPTS_LIMIT;

async fn current(state: &AppState, name: &QueueName) -> Result<HttpResponse, ApiError> {
    let defaults = QueueSettings {
        own_max_attempts: None,
        max_attempts: state.default_max_attempts,
        own_max_jobs: None,
        max_jobs: state.queues.config().default_max_jobs,
        own_backoff: None,
        backoff: state.queues.config().default_backoff,
        on_expiry: OnExpiry::Dead,
    };
    let settings = state
        .queues
        .ask(name, false, || GetSettings)
        .await?
        .unwrap_or(defaults);
    Ok(HttpResponse::Ok().json(json!({
        "queue": name.as_str(),
        "max_attempts": settings.max_attempts,
        "max_attempts_is_default": settings.own_max_attempts.is_none(),
        "max_jobs": settings.max_jobs,
        "max_jobs_is_default": settings.own_max_jobs.is_none(),
        "backoff": settings.backoff.to_json(),
        "backoff_is_default": settings.own_backoff.is_none(),
        "on_expiry": settings.on_expiry.as_str(),
    })))
}

/// `GET /settings/NAME`
#[utoipa::path(
    get,
    path = "/settings/{name}",
    operation_id = "queue_settings",
    summary = "A queue's settings",
    tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 200, description = "The queue's settings", body = crate::http::openapi::bodies::QueueSettings),
        (status = 400, description = "invalid queue name, or a query parameter", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let NoQuery {} = query(&req)?;
    current(&state, &name).await
}

/// `max_attempts` from the body: absent, `null` (follow the server's default), or 1
/// to 1000.
fn max_attempts(value: &Value) -> Result<Option<Option<u32>>, ApiError> {
    match value.get("max_attempts") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=u64::from(MAX_ATTEMPTS_LIMIT)).contains(&n) => Ok(Some(Some(n as u32))),
            _ => Err(ApiError::BadBody(format!(
                "max_attempts must be an integer from 1 to {MAX_ATTEMPTS_LIMIT} (or null), not {v}"
            ))),
        },
    }
}

/// `max_jobs` from the body: absent, `null` (follow the server's default), or 1 or
/// more.
fn max_jobs(value: &Value) -> Result<Option<Option<u64>>, ApiError> {
    match value.get("max_jobs") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(Some(Some(n))),
            _ => Err(ApiError::BadBody(format!(
                "max_jobs must be an integer of at least 1 (or null), not {v}"
            ))),
        },
    }
}

/// `backoff` from the body: absent, `null` (follow the server's default), or a policy
/// ([`Backoff::from_json`]).
fn backoff(value: &Value) -> Result<Option<Option<Backoff>>, ApiError> {
    match value.get("backoff") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => Backoff::from_json(v)
            .map(|b| Some(Some(b)))
            .map_err(ApiError::BadBody),
    }
}

/// `on_expiry` from the body: absent, `"dead"` or `"drop"`.
fn on_expiry(value: &Value) -> Result<Option<OnExpiry>, ApiError> {
    match value.get("on_expiry") {
        None => Ok(None),
        Some(v) => match v.as_str() {
            Some("dead") => Ok(Some(OnExpiry::Dead)),
            Some("drop") => Ok(Some(OnExpiry::Drop)),
            _ => Err(ApiError::BadBody(format!(
                "on_expiry must be \"dead\" or \"drop\", not {v}"
            ))),
        },
    }
}

/// `POST /settings/NAME` with `{"max_attempts": N}` (1 to 1000) and/or
/// `{"max_jobs": N}` (1 or more); `null` follows the server's default again. Both are
/// checked before either is set.
#[utoipa::path(
    post,
    path = "/settings/{name}",
    operation_id = "change_queue_settings",
    summary = "Change a queue's settings",
    description = "Every key is checked before any is set; the change is logged and survives restarts. backoff delays leased jobs that fail or whose lease runs out; on_expiry says what becomes of jobs whose ttl runs out.",
    tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    request_body(content = crate::http::openapi::bodies::QueueSettingsChange, description = "No Content-Type needed", example = json!({"max_attempts": 3, "max_jobs": 10000, "backoff": {"kind": "fixed", "delay_secs": 30}, "on_expiry": "dead"})),
    responses(
        (status = 200, description = "The queue's settings now", body = crate::http::openapi::bodies::QueueSettings),
        (status = 400, description = "content is missing, invalid JSON, or a value out of range; nothing set", body = crate::http::openapi::ErrorBody),
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
    // A misspelt key beside good ones is refused too, not quietly left out.
    const KEYS: [&str; 4] = ["max_attempts", "max_jobs", "backoff", "on_expiry"];
    if let Some(unknown) = value
        .as_object()
        .and_then(|o| o.keys().find(|k| !KEYS.contains(&k.as_str())))
    {
        return Err(ApiError::BadBody(format!(
            "unknown setting {unknown:?}: the settings are max_attempts, max_jobs, backoff and on_expiry"
        )));
    }
    let (attempts, jobs) = (max_attempts(&value)?, max_jobs(&value)?);
    let (retry, expiry) = (backoff(&value)?, on_expiry(&value)?);
    if attempts.is_none() && jobs.is_none() && retry.is_none() && expiry.is_none() {
        return Err(ApiError::BadBody(
            "expected any of {\"max_attempts\": N, \"max_jobs\": N, \"backoff\": {...}, \"on_expiry\": \"dead\"}".into(),
        ));
    }
    if let Some(max) = attempts {
        state
            .queues
            .ask(&name, true, || SetMaxAttempts(max))
            .await?;
    }
    if let Some(max) = jobs {
        state.queues.ask(&name, true, || SetMaxJobs(max)).await?;
    }
    if let Some(policy) = retry {
        state.queues.ask(&name, true, || SetBackoff(policy)).await?;
    }
    if let Some(what) = expiry {
        state.queues.ask(&name, true, || SetOnExpiry(what)).await?;
    }
    current(&state, &name).await
}
