//! `/dead/NAME`: a queue's dead letters, the jobs that ran out of attempts. List them
//! (GET), retry them (POST: back to the queue's tail, attempts reset) or purge them
//! (DELETE); `?id=ID` picks one.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::input::{job_id, query, queue_name};
use super::AppState;
use crate::actors::queue::{ListDead, ResolveDead};
use crate::error::ApiError;

#[derive(Deserialize)]
struct Pick {
    id: Option<String>,
}

/// `GET /dead/NAME`: `{"queue": NAME, "jobs": [{"id", "attempts", "job"}]}`, where
/// `job` is the job itself, as posted.
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let dead = state
        .queues
        .ask(&name, false, || ListDead)
        .await?
        .unwrap_or_default();
    let mut jobs = Vec::with_capacity(dead.len());
    for d in &dead {
        // Bodies were checked as JSON on the way in.
        let text = std::str::from_utf8(&d.job.body).unwrap_or("null");
        let raw = RawValue::from_string(text.to_owned())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        jobs.push(json!({ "id": d.job.id.0, "attempts": d.attempts, "job": raw }));
    }
    Ok(HttpResponse::Ok().json(json!({ "queue": name.as_str(), "jobs": jobs })))
}

async fn resolve(
    req: HttpRequest,
    state: web::Data<AppState>,
    retry: bool,
) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let params: Pick = query(&req)?;
    let id = params.id.as_deref().map(job_id).transpose()?;
    let count = match state
        .queues
        .ask(&name, false, || ResolveDead { id, retry })
        .await?
    {
        Some(count) => count,
        None if id.is_some() => return Err(ApiError::JobNotFound),
        None => 0,
    };
    let key = if retry { "retried" } else { "purged" };
    Ok(HttpResponse::Ok().json(json!({ "queue": name.as_str(), key: count })))
}

/// `POST /dead/NAME[?id=ID]`: dead jobs go back to the queue.
pub async fn retry(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    resolve(req, state, true).await
}

/// `DELETE /dead/NAME[?id=ID]`: dead jobs are dropped.
pub async fn purge(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    resolve(req, state, false).await
}
