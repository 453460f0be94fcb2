//! `/dead/NAME`: a queue's dead letters, the jobs that ran out of attempts. List them
//! (GET), retry them (POST: back to the queue's tail, attempts reset) or purge them
//! (DELETE); `?id=ID` picks one.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::input::{job_id, query, queue_name, NoQuery};
use super::AppState;
use crate::http::error::ApiError;
use crate::queue::state::DeadJob;
use crate::queue::{DeadAction, ListDead, ResolveDead};

#[derive(Deserialize)]
struct Pick {
    id: Option<String>,
}

/// `GET /dead/NAME`: `{"queue": NAME, "jobs": [{"id", "attempts", "job"}]}`, where
/// `job` is the job itself, as posted.
///
/// The stored bytes are written into the answer as they are, never parsed again: they
/// were checked as one JSON value on the way in (without a depth limit), and a parser
/// building a tree here would refuse, or recurse through, what the check let in.
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let NoQuery {} = query(&req)?;
    let dead = state
        .queues
        .ask(&name, false, || ListDead)
        .await?
        .unwrap_or_default();
    let body = dead_listing(name.as_str(), &dead)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// The `/dead/NAME` document, with each job's stored bytes embedded verbatim.
fn dead_listing(queue: &str, dead: &[DeadJob]) -> Result<Vec<u8>, ApiError> {
    let bodies: usize = dead.iter().map(|d| d.job.body.len() + 48).sum();
    let mut out = Vec::with_capacity(queue.len() + 32 + bodies);
    out.extend_from_slice(b"{\"queue\":");
    serde_json::to_writer(&mut out, queue).map_err(|e| ApiError::Internal(e.to_string()))?;
    out.extend_from_slice(b",\"jobs\":[");
    for (i, d) in dead.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(
            format!(
                "{{\"id\":{},\"attempts\":{},\"job\":",
                d.job.id.0, d.attempts
            )
            .as_bytes(),
        );
        out.extend_from_slice(&d.job.body);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
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
pub async fn retry(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    resolve(req, state, DeadAction::Retry).await
}

/// `DELETE /dead/NAME[?id=ID]`: dead jobs are dropped.
pub async fn purge(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    resolve(req, state, DeadAction::Purge).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::job::{Job, JobId};
    use bytes::Bytes;

    fn dead(id: u64, body: &str, attempts: u32) -> DeadJob {
        DeadJob {
            job: Job {
                id: JobId(id),
                body: Bytes::from(body.to_owned()),
                uniq: None,
            },
            attempts,
        }
    }

    #[test]
    fn the_listing_has_the_documented_shape() {
        let jobs = [dead(17, "{\"to\":\"a@b.c\"}", 5), dead(18, " [1, 2] ", 1)];
        let out = dead_listing("em\"ails", &jobs).unwrap_or_default();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(
            value,
            serde_json::json!({"queue": "em\"ails", "jobs": [
                {"id": 17, "attempts": 5, "job": {"to": "a@b.c"}},
                {"id": 18, "attempts": 1, "job": [1, 2]},
            ]})
        );
        let empty = dead_listing("q", &[]).unwrap_or_default();
        assert_eq!(empty, b"{\"queue\":\"q\",\"jobs\":[]}");
    }

    #[test]
    fn deep_jobs_are_embedded_byte_for_byte() {
        let depth = 100_000;
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let out = dead_listing("q", &[dead(1, &body, 1)]).unwrap_or_default();
        let expected =
            format!("{{\"queue\":\"q\",\"jobs\":[{{\"id\":1,\"attempts\":1,\"job\":{body}}}]}}");
        assert_eq!(out, expected.as_bytes());
    }
}
