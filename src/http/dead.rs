//! `/dead/NAME`: a queue's dead letters, the jobs that ran out of attempts. List them
//! (GET), retry them (POST: back to the queue's tail, attempts reset) or purge them
//! (DELETE); `?id=ID` picks one. Listings come in pages: `?limit=N&after=ID`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::input::{epoch_secs, job_id, page_after, page_limit, query, queue_name, DEFAULT_PAGE};
use super::jobs::failures_json;
use super::AppState;
use crate::http::error::ApiError;
use crate::queue::job::JobId;
use crate::queue::state::DeadLetter;
use crate::queue::{DeadAction, ListDead, ResolveDead};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Pick {
    /// Only this dead job (404 `job not found` if it is not one).
    #[param(value_type = Option<u64>)]
    id: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Page {
    /// Dead letters per page, 1 to 10000 (default 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000, example = 100)]
    limit: Option<String>,
    /// Ids above this one: the `next` of the page before.
    #[param(value_type = Option<u64>, example = 17)]
    after: Option<String>,
}

/// `GET /dead/NAME[?limit=N][&after=ID]`: `{"queue": NAME, "jobs": [{"id",
/// "attempts", "died_at", "reason", "errors", "job"}], "next": ID or null}`, where
/// `job` is the job itself, as posted, and `next` is the `after` of the next page
/// (null on the last page).
///
/// The stored bytes are written into the answer as they are, never parsed again: they
/// were checked as one JSON value on the way in (without a depth limit), and a parser
/// building a tree here would refuse, or recurse through, what the check let in.
#[utoipa::path(
    get,
    path = "/dead/{name}",
    operation_id = "list_dead_letters",
    summary = "A queue's dead letters",
    description = "Jobs that ran out of attempts, oldest id first, each embedded as the exact bytes posted.",
    tag = "dead letters",
    params(("name" = String, Path, description = "Queue name"), Page),
    responses(
        (status = 200, description = "A page of dead letters, oldest id first", body = crate::http::openapi::bodies::DeadList),
        (status = 400, description = "A bad limit or after", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let params: Page = query(&req)?;
    let limit = page_limit(params.limit.as_deref())?.unwrap_or(DEFAULT_PAGE);
    let after = page_after(params.after.as_deref())?;
    let (dead, more) = state
        .queues
        .ask(&name, false, || ListDead { after, limit })
        .await?
        .unwrap_or_default();
    let next = dead.last().filter(|_| more).map(|d| d.dead.job.id);
    let body = dead_listing(name.as_str(), &dead, next)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// The `/dead/NAME` document, with each job's stored bytes embedded verbatim.
fn dead_listing(
    queue: &str,
    dead: &[DeadLetter],
    next: Option<JobId>,
) -> Result<Vec<u8>, ApiError> {
    let internal = |e: serde_json::Error| ApiError::Internal(e.to_string());
    let bodies: usize = dead.iter().map(|d| d.dead.job.body.len() + 128).sum();
    let mut out = Vec::with_capacity(queue.len() + 48 + bodies);
    out.extend_from_slice(b"{\"queue\":");
    serde_json::to_writer(&mut out, queue).map_err(internal)?;
    out.extend_from_slice(b",\"jobs\":[");
    for (i, letter) in dead.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let d = &letter.dead;
        out.extend_from_slice(
            format!("{{\"id\":{},\"attempts\":{},", d.job.id.0, d.attempts).as_bytes(),
        );
        out.extend_from_slice(b"\"died_at\":");
        serde_json::to_writer(&mut out, &d.died_ms.map(epoch_secs)).map_err(internal)?;
        out.extend_from_slice(b",\"reason\":");
        serde_json::to_writer(&mut out, &d.cause.map(|c| c.as_str())).map_err(internal)?;
        out.extend_from_slice(b",\"errors\":");
        serde_json::to_writer(&mut out, &failures_json(&letter.failures)).map_err(internal)?;
        out.extend_from_slice(b",\"job\":");
        out.extend_from_slice(&d.job.body);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"next\":");
    serde_json::to_writer(&mut out, &next.map(|id| id.0)).map_err(internal)?;
    out.push(b'}');
    Ok(out)
}

async fn resolve(
    req: HttpRequest,
    state: web::Data<AppState>,
    action: DeadAction,
) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let params: Pick = query(&req)?;
    let id = params.id.as_deref().map(job_id).transpose()?;
    let count = match state
        .queues
        .ask(&name, false, || ResolveDead { id, action })
        .await?
    {
        Some(count) => count,
        None if id.is_some() => return Err(ApiError::JobNotFound),
        None => 0,
    };
    let key = match action {
        DeadAction::Retry => "retried",
        DeadAction::Purge => "purged",
    };
    Ok(HttpResponse::Ok().json(json!({ "queue": name.as_str(), key: count })))
}

/// `POST /dead/NAME[?id=ID]`: dead jobs go back to the queue.
#[utoipa::path(
    post,
    path = "/dead/{name}",
    operation_id = "retry_dead_letters",
    summary = "Retry dead letters (all, or ?id=)",
    description = "Back to the tail, attempts reset.",
    tag = "dead letters",
    params(("name" = String, Path, description = "Queue name"), Pick),
    responses(
        (status = 200, description = "Back to the queue's tail, attempts reset", body = crate::http::openapi::bodies::DeadRetried),
        (status = 400, description = "invalid job id", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "job not found (with id)", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn retry(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    resolve(req, state, DeadAction::Retry).await
}

/// `DELETE /dead/NAME[?id=ID]`: dead jobs are dropped.
#[utoipa::path(
    delete,
    path = "/dead/{name}",
    operation_id = "purge_dead_letters",
    summary = "Purge dead letters (all, or ?id=)",
    tag = "dead letters",
    params(("name" = String, Path, description = "Queue name"), Pick),
    responses(
        (status = 200, description = "Purged", body = crate::http::openapi::bodies::DeadPurged),
        (status = 400, description = "invalid job id", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "job not found (with id)", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn purge(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    resolve(req, state, DeadAction::Purge).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::job::Job;
    use crate::queue::state::{DeadJob, DeathCause, FailureReport};
    use bytes::Bytes;
    use std::sync::Arc;

    fn dead(id: u64, body: &str, attempts: u32) -> DeadLetter {
        DeadLetter {
            dead: DeadJob {
                job: Job {
                    id: JobId(id),
                    body: Bytes::from(body.to_owned()),
                    uniq: None,
                    priority: crate::queue::job::DEFAULT_PRIORITY,
                },
                attempts,
                died_ms: None,
                cause: None,
            },
            failures: Arc::from([]),
        }
    }

    #[test]
    fn the_listing_has_the_documented_shape() {
        let mut failed = dead(17, "{\"to\":\"a@b.c\"}", 5);
        failed.dead.died_ms = Some(1_795_000_000_500);
        failed.dead.cause = Some(DeathCause::Failed);
        failed.failures = Arc::from([FailureReport {
            at_ms: 1_795_000_000_500,
            worker: Some("w\"1".into()),
            error: Some("smtp \"down\"\n".into()),
        }]);
        let jobs = [failed, dead(18, " [1, 2] ", 1)];
        let out = dead_listing("em\"ails", &jobs, Some(JobId(18))).unwrap_or_default();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(
            value,
            serde_json::json!({"queue": "em\"ails", "jobs": [
                {"id": 17, "attempts": 5, "died_at": 1_795_000_000.5, "reason": "failed",
                 "errors": [{"at": 1_795_000_000.5, "worker_id": "w\"1", "error": "smtp \"down\"\n"}],
                 "job": {"to": "a@b.c"}},
                {"id": 18, "attempts": 1, "died_at": null, "reason": null, "errors": [],
                 "job": [1, 2]},
            ], "next": 18})
        );
        let empty = dead_listing("q", &[], None).unwrap_or_default();
        assert_eq!(empty, b"{\"queue\":\"q\",\"jobs\":[],\"next\":null}");
    }

    #[test]
    fn deep_jobs_are_embedded_byte_for_byte() {
        let depth = 100_000;
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let out = dead_listing("q", &[dead(1, &body, 1)], None).unwrap_or_default();
        let expected = format!(
            "{{\"queue\":\"q\",\"jobs\":[{{\"id\":1,\"attempts\":1,\"died_at\":null,\"reason\":null,\"errors\":[],\"job\":{body}}}],\"next\":null}}"
        );
        assert_eq!(out, expected.as_bytes());
    }
}
