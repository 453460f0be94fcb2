//! `/jobs/NAME`: a page of a queue's jobs in one state (ready, delayed, leased or
//! dead) with everything the queue knows of each: attempts, failure reports, due time,
//! lease holder and deadline, and the job itself. Job bodies are shown, so it needs
//! what `/dead/NAME` needs (admin, once tokens are on).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::input::{epoch_secs, page_after, page_limit, query, queue_name, DEFAULT_PAGE};
use super::jobs::{failures_json, with_job};
use super::AppState;
use crate::http::error::ApiError;
use crate::queue::job::JobId;
use crate::queue::{JobsPage, ListDead, ListJobs, Waiting};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct JobsQuery {
    /// Which jobs: `ready`, `delayed`, `leased` or `dead` (required).
    #[param(value_type = String, example = "ready")]
    state: Option<String>,
    /// Jobs per page, 1 to 10000 (default 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000, example = 20)]
    limit: Option<String>,
    /// Ids above this one: the `next` of the page before.
    #[param(value_type = Option<u64>, example = 0)]
    after: Option<String>,
}

/// `GET /jobs/NAME?state=ready|delayed|leased|dead[&limit=N][&after=ID]`:
/// `{"queue", "state", "size", "jobs": [{"id", "attempts", "priority", "due_at",
/// "lease_deadline", "worker_id", "errors", "died_at", "reason", "expires_at", "job"}],
/// "next": ID or null}`, each job embedded as the bytes posted. An unknown queue lists
/// nothing.
#[utoipa::path(
    get,
    path = "/jobs/{name}",
    operation_id = "list_jobs",
    summary = "A queue's jobs in one state, a page at a time",
    description = "Ready jobs head first; delayed, leased and dead ones by id. Each job is embedded as the exact bytes posted, with its attempts, priority, failure reports, due time, lease holder and deadline. An unknown queue lists nothing.",
    tag = "dashboard",
    params(("name" = String, Path, description = "Queue name"), JobsQuery),
    responses(
        (status = 200, description = "A page of jobs", body = crate::http::openapi::bodies::JobList),
        (status = 400, description = "A missing or unknown state, a bad limit or after", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let params: JobsQuery = query(&req)?;
    let listed = params.state.as_deref().ok_or_else(|| {
        ApiError::BadQuery("state is required: ready, delayed, leased or dead".into())
    })?;
    let limit = page_limit(params.limit.as_deref())?.unwrap_or(DEFAULT_PAGE);
    let after = page_after(params.after.as_deref())?;
    let which = match listed {
        "ready" => Waiting::Ready,
        "delayed" => Waiting::Delayed,
        "leased" => Waiting::Leased,
        "dead" => return dead(req, state, after, limit).await,
        other => {
            return Err(ApiError::BadQuery(format!(
                "invalid state {other:?}: ready, delayed, leased or dead"
            )))
        }
    };
    let page: JobsPage = state
        .queues
        .ask(&name, false, || ListJobs {
            which,
            after,
            limit,
        })
        .await?
        .unwrap_or_default();
    let mut entries = Vec::with_capacity(page.jobs.len());
    for job in &page.jobs {
        let meta = json!({
            "id": job.id.0,
            "attempts": job.attempts,
            "priority": job.priority,
            "due_at": job.due_ms.map(epoch_secs),
            "lease_deadline": job.lease_deadline_ms.map(epoch_secs),
            "worker_id": job.worker.as_deref(),
            "errors": failures_json(&job.failures),
            "died_at": None::<f64>,
            "reason": None::<&str>,
            "expires_at": job.expires_ms.map(epoch_secs),
        });
        entries.push(with_job(&meta, &job.body)?);
    }
    let body = listing(name.as_str(), listed, page.size, &entries, page.next)?;
    Ok(json_answer(body))
}

/// The dead letters, in the same shape.
async fn dead(
    req: HttpRequest,
    state: web::Data<AppState>,
    after: Option<JobId>,
    limit: usize,
) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let (letters, more) = state
        .queues
        .ask(&name, false, || ListDead { after, limit })
        .await?
        .unwrap_or_default();
    let size = state
        .queues
        .ask(&name, false, || crate::queue::GetCounters)
        .await?
        .map_or(0, |c| c.dead);
    let mut entries = Vec::with_capacity(letters.len());
    for letter in &letters {
        let d = &letter.dead;
        let meta = json!({
            "id": d.job.id.0,
            "attempts": d.attempts,
            "priority": d.job.priority,
            "due_at": None::<f64>,
            "lease_deadline": None::<f64>,
            "worker_id": None::<&str>,
            "errors": failures_json(&letter.failures),
            "died_at": d.died_ms.map(epoch_secs),
            "reason": d.cause.map(|c| c.as_str()),
            "expires_at": None::<f64>,
        });
        entries.push(with_job(&meta, &d.job.body)?);
    }
    let next = letters.last().filter(|_| more).map(|d| d.dead.job.id);
    let body = listing(name.as_str(), "dead", size, &entries, next)?;
    Ok(json_answer(body))
}

fn json_answer(body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

/// The document around the jobs, each already written with its body verbatim.
fn listing(
    queue: &str,
    listed: &str,
    size: usize,
    entries: &[Vec<u8>],
    next: Option<JobId>,
) -> Result<Vec<u8>, ApiError> {
    let head = json!({ "queue": queue, "state": listed, "size": size });
    let mut out = serde_json::to_vec(&head).map_err(|e| ApiError::Internal(e.to_string()))?;
    out.pop();
    out.extend_from_slice(b",\"jobs\":[");
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(entry);
    }
    out.extend_from_slice(b"],\"next\":");
    out.extend_from_slice(
        next.map_or("null".to_owned(), |id| id.0.to_string())
            .as_bytes(),
    );
    out.push(b'}');
    Ok(out)
}
