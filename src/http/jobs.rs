//! `/q/NAME/ID`: one job by id. Look it up (GET, `?body=1` to include the job), and
//! for a leased job, as the holder of its delivery: ack it (DELETE: done, it is gone),
//! report it failed (PUT, with an optional reason: back to the queue, or to the dead
//! letters after `max_attempts`), or extend its lease (POST `?lease=S`).
//!
//! The holder proves itself with the delivery token its lease came with, in the
//! `X-presque-lease` header or as `?delivery=TOKEN`: without one the request is
//! refused (400); with a token whose lease ran out it changes nothing (409).

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::input::{
    check_json, due_ms, epoch_secs, flag, job_id, lease_ms, path_target, query, queue_name,
    read_body, worker_header,
};
use super::queue::LEASE_HEADER;
use super::AppState;
use crate::http::error::ApiError;
use crate::names::QueueName;
use crate::queue::job::JobId;
use crate::queue::state::{DeliveryToken, FailureReport, JobInfo};
use crate::queue::{Ack, Extend, FailLease, FindJob};

/// Longest failure reason kept, in characters; longer ones are cut to this.
pub const MAX_ERROR_CHARS: usize = 1000;

fn target(req: &HttpRequest) -> Result<(QueueName, JobId), ApiError> {
    let name = queue_name(req)?;
    let id = job_id(path_target(req).1.unwrap_or(""))?;
    Ok((name, id))
}

/// The delivery token a request shows for job `id`: from the `X-presque-lease` header
/// or the `delivery` query parameter (both may be given if they agree).
fn delivery_token<'a>(
    req: &'a HttpRequest,
    from_query: Option<&'a str>,
    id: JobId,
) -> Result<DeliveryToken, ApiError> {
    let from_header =
        match req.headers().get(LEASE_HEADER) {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| {
                ApiError::BadHeader(format!("{LEASE_HEADER} must be visible ASCII"))
            })?),
        };
    let given = |raw: Option<&'a str>| raw.map(str::trim).filter(|raw| !raw.is_empty());
    let parse = |raw: &str| {
        raw.parse::<DeliveryToken>().map_err(|_| {
            ApiError::BadLeaseToken(format!(
                "invalid lease token {raw:?}: send the one {LEASE_HEADER} value the lease came with"
            ))
        })
    };
    let (raw, token) = match (given(from_header), given(from_query)) {
        (Some(h), Some(q)) => {
            // Compared as tokens, not as text: `0b.3` and `B.3` name the same lease.
            let token = parse(h)?;
            if parse(q)? != token {
                return Err(ApiError::BadLeaseToken(format!(
                    "the {LEASE_HEADER} header ({h:?}) and ?delivery= ({q:?}) name different leases"
                )));
            }
            (h, token)
        }
        (Some(raw), None) | (None, Some(raw)) => (raw, parse(raw)?),
        (None, None) => {
            return Err(ApiError::LeaseTokenMissing {
                header: LEASE_HEADER,
            })
        }
    };
    if token.job != id {
        return Err(ApiError::BadLeaseToken(format!(
            "lease token {raw:?} is for job {}, not job {}",
            token.job.0, id.0
        )));
    }
    Ok(token)
}

/// One failure report as JSON.
fn failure_json(report: &FailureReport) -> Value {
    json!({
        "at": epoch_secs(report.at_ms),
        "worker_id": report.worker.as_deref(),
        "error": report.error.as_deref(),
    })
}

/// A job's failure reports as JSON, oldest first.
pub(super) fn failures_json(reports: &[FailureReport]) -> Value {
    Value::Array(reports.iter().map(failure_json).collect())
}

/// A job's whereabouts as JSON.
pub(super) fn job_json(queue: &QueueName, id: JobId, info: &JobInfo) -> Value {
    json!({
        "id": id.0,
        "queue": queue.as_str(),
        "state": info.state.as_str(),
        "attempts": info.attempts,
        "priority": info.priority,
        "lease_deadline": info.lease_deadline_ms.map(epoch_secs),
        "due_at": info.due_ms.map(epoch_secs),
        "worker_id": info.worker.as_deref(),
        "errors": failures_json(&info.failures),
        "died_at": info.died_ms.map(epoch_secs),
        "reason": info.cause.map(|c| c.as_str()),
        "expires_at": info.expires_ms.map(epoch_secs),
    })
}

/// `object` (a JSON object) with `"job": BODY` added last, the stored bytes embedded
/// as they are, never parsed again (see `dead.rs`).
pub(super) fn with_job(object: &Value, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let mut out = serde_json::to_vec(object).map_err(|e| ApiError::Internal(e.to_string()))?;
    if out.pop() != Some(b'}') {
        return Err(ApiError::Internal("a job's JSON is not an object".into()));
    }
    out.extend_from_slice(b",\"job\":");
    out.extend_from_slice(body);
    out.push(b'}');
    Ok(out)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct FindQuery {
    /// `1`: add the job itself as `"job"`, the bytes as posted.
    #[param(example = "1")]
    body: Option<String>,
}

/// `GET /q/NAME/ID[?body=1]`: state (ready, delayed, leased, dead), attempts, lease
/// deadline, failure reports; with `body=1`, the job itself as `"job"`.
#[utoipa::path(
    get,
    path = "/q/{name}/{id}",
    operation_id = "find_job",
    summary = "Look a job up",
    description = "Its state, attempts, lease deadline and failure reports; no token needed.",
    tag = "leases",
    params(
        ("name" = String, Path, description = "Queue name"),
        ("id" = u64, Path, description = "Job id (X-presque-jobid)"),
        FindQuery,
    ),
    responses(
        (status = 200, description = "Where the job is", body = crate::http::openapi::bodies::JobView),
        (status = 400, description = "invalid job id, or a bad parameter", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "job not found, or queue name is missing", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn find(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (name, id) = target(&req)?;
    let params: FindQuery = query(&req)?;
    let info = state
        .queues
        .ask(&name, false, || FindJob(id))
        .await?
        .ok_or(ApiError::JobNotFound)?;
    let found = job_json(&name, id, &info);
    if flag(params.body.as_deref()) {
        Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(with_job(&found, &info.body)?))
    } else {
        Ok(HttpResponse::Ok().json(found))
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AckQuery {
    /// The delivery token, for clients that cannot set the `X-presque-lease` header.
    delivery: Option<String>,
}

/// `DELETE /q/NAME/ID`: the leased job is done.
#[utoipa::path(
    delete,
    path = "/q/{name}/{id}",
    operation_id = "ack_job",
    summary = "Ack a leased job: done, it is gone",
    tag = "leases",
    params(
        ("name" = String, Path, description = "Queue name"),
        ("id" = u64, Path, description = "Job id (X-presque-jobid)"),
        AckQuery,
        ("X-presque-lease" = Option<String>, Header, description = "The delivery token the lease came with (or ?delivery=)", example = "11.64a1b2c3d4e5f"),
    ),
    responses(
        (status = 204, description = "Acked: the job is gone"),
        (status = 400, description = "the lease token is missing, invalid lease token, or it is another job's; invalid job id", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "job not found (acked, fetched without a lease, purged), or queue name is missing", body = crate::http::openapi::ErrorBody),
        (status = 409, description = "lease is no longer held: the lease ran out; nothing changed", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn ack(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (name, id) = target(&req)?;
    let params: AckQuery = query(&req)?;
    let token = delivery_token(&req, params.delivery.as_deref(), id)?;
    state
        .queues
        .ask(&name, false, || Ack(token))
        .await?
        .ok_or(ApiError::JobNotFound)?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct FailQuery {
    /// Retry after this epoch time (seconds). Not with `delay`. Either one overrides
    /// the queue's retry backoff.
    #[param(value_type = Option<f64>, minimum = 0)]
    delayed: Option<String>,
    /// Retry this many seconds from now. Not with `delayed`.
    #[param(value_type = Option<f64>, minimum = 0, maximum = 315360000, example = 30)]
    delay: Option<String>,
    /// The delivery token, for clients that cannot set the `X-presque-lease` header.
    delivery: Option<String>,
}

/// The reason in a failure report's body: empty, or `{"error": "..."}` (`null` or no
/// key: no reason). Cut to [`MAX_ERROR_CHARS`] characters.
fn failure_reason(body: &[u8]) -> Result<Option<Arc<str>>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    check_json(body)?;
    let shape = || {
        ApiError::BadBody(
            "a failure report is {\"error\": \"why it failed\"}, or an empty body".into(),
        )
    };
    let fields: serde_json::Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| shape())?;
    if let Some(other) = fields.keys().find(|key| *key != "error") {
        return Err(ApiError::BadBody(format!(
            "a failure report takes only \"error\", not {other:?}"
        )));
    }
    let reason = match fields.get("error") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(reason)) => reason,
        Some(_) => return Err(ApiError::BadBody("error must be a string".into())),
    };
    // Records never hold runs of NUL bytes: recovery reads such a run as a block the
    // disk never wrote.
    if reason
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(ApiError::BadBody(
            "error must not contain control characters other than tab, CR and LF".into(),
        ));
    }
    Ok(Some(
        reason
            .chars()
            .take(MAX_ERROR_CHARS)
            .collect::<String>()
            .into(),
    ))
}

/// `PUT /q/NAME/ID[?delayed=EPOCH | ?delay=SECONDS]` with an optional body
/// `{"error": "..."}`: the leased job failed. Counts a failure for the queue (and the
/// worker in `X-presque-workerid`), keeps the report with the job; answers where the
/// job went.
#[utoipa::path(
    put,
    path = "/q/{name}/{id}",
    operation_id = "fail_leased_job",
    summary = "Report a leased job failed",
    description = "Counts an attempt and a failed job; keeps the reason with the job (its newest 5). The job goes back to the tail (or is delayed), or to the dead letters after max_attempts.",
    tag = "leases",
    params(
        ("name" = String, Path, description = "Queue name"),
        ("id" = u64, Path, description = "Job id (X-presque-jobid)"),
        FailQuery,
        ("X-presque-lease" = Option<String>, Header, description = "The delivery token the lease came with (or ?delivery=)", example = "11.64a1b2c3d4e5f"),
        ("X-presque-workerid" = Option<String>, Header, description = "The worker reporting: counts a failed job for it", example = "worker-1"),
    ),
    request_body(content = Option<crate::http::openapi::bodies::FailureBody>, content_type = "application/json", description = "Why it failed, or an empty body (no Content-Type needed)", example = json!({"error": "smtp timeout"})),
    responses(
        (status = 200, description = "Where the job went: back to the tail (or delayed), or dead after max_attempts", body = crate::http::openapi::bodies::JobView),
        (status = 400, description = "the lease token is missing, invalid lease token, or it is another job's; invalid job id", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "job not found (acked, fetched without a lease, purged), or queue name is missing", body = crate::http::openapi::ErrorBody),
        (status = 409, description = "lease is no longer held: the lease ran out; nothing changed", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn fail(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (name, id) = target(&req)?;
    let params: FailQuery = query(&req)?;
    let token = delivery_token(&req, params.delivery.as_deref(), id)?;
    let due_ms = due_ms(params.delayed.as_deref(), params.delay.as_deref())?;
    // Even `delay=0` names a delay: it overrides the queue's backoff.
    let delay_named = params.delayed.is_some() || params.delay.is_some();
    let worker = worker_header(&req)?;
    let body = read_body(&req, payload, state.max_body_bytes).await?;
    let error = failure_reason(&body)?;
    let info = state
        .queues
        .ask(&name, false, || FailLease {
            token,
            due_ms,
            delay_named,
            worker: worker.as_ref().map(|w| w.as_str().into()),
            error: error.clone(),
        })
        .await?
        .ok_or(ApiError::JobNotFound)?;
    state.registry.count_work(worker.as_ref(), 0, 1);
    Ok(HttpResponse::Ok().json(job_json(&name, id, &info)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ExtendQuery {
    /// The lease now ends this many seconds from now (0.001 to 86400).
    #[param(value_type = f64, required = true, minimum = 0.001, maximum = 86400, example = 60)]
    lease: Option<String>,
    /// The delivery token, for clients that cannot set the `X-presque-lease` header.
    delivery: Option<String>,
}

/// `POST /q/NAME/ID?lease=S`: the lease now runs S seconds from now.
#[utoipa::path(
    post,
    path = "/q/{name}/{id}",
    operation_id = "extend_lease",
    summary = "Extend a lease",
    tag = "leases",
    params(
        ("name" = String, Path, description = "Queue name"),
        ("id" = u64, Path, description = "Job id (X-presque-jobid)"),
        ExtendQuery,
        ("X-presque-lease" = Option<String>, Header, description = "The delivery token the lease came with (or ?delivery=)", example = "11.64a1b2c3d4e5f"),
    ),
    responses(
        (status = 200, description = "Extended; the token stays the same", body = crate::http::openapi::bodies::JobView),
        (status = 400, description = "the lease token is missing, invalid lease token, or it is another job's; invalid job id", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "job not found (acked, fetched without a lease, purged), or queue name is missing", body = crate::http::openapi::ErrorBody),
        (status = 409, description = "lease is no longer held: the lease ran out; nothing changed", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn extend(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (name, id) = target(&req)?;
    let params: ExtendQuery = query(&req)?;
    let duration_ms = lease_ms(params.lease.as_deref())?.ok_or_else(|| {
        ApiError::BadQuery("lease is missing: POST /q/NAME/ID?lease=SECONDS".into())
    })?;
    let token = delivery_token(&req, params.delivery.as_deref(), id)?;
    let info = state
        .queues
        .ask(&name, false, || Extend { token, duration_ms })
        .await?
        .ok_or(ApiError::JobNotFound)?;
    Ok(HttpResponse::Ok().json(job_json(&name, id, &info)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_take_one_shape() {
        assert_eq!(failure_reason(b"").ok(), Some(None));
        assert_eq!(failure_reason(b" \n").ok(), Some(None));
        assert_eq!(failure_reason(b"{}").ok(), Some(None));
        assert_eq!(failure_reason(b"{\"error\":null}").ok(), Some(None));
        assert_eq!(
            failure_reason(b"{\"error\":\"boom\\nat line 2\"}").ok(),
            Some(Some("boom\nat line 2".into()))
        );
        for bad in [
            &b"\"boom\""[..],
            b"[\"boom\"]",
            b"{\"error\":1}",
            b"{\"error\":\"x\",\"code\":2}",
            b"{\"error\":\"a\\u0000b\"}",
            b"{\"error\":",
        ] {
            assert!(
                failure_reason(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("{{\"error\":\"{}\"}}", "é".repeat(MAX_ERROR_CHARS + 5));
        let cut = failure_reason(long.as_bytes()).ok().flatten();
        assert_eq!(cut.map(|r| r.chars().count()), Some(MAX_ERROR_CHARS));
    }

    #[test]
    fn a_lookup_embeds_the_job_verbatim() {
        let out = with_job(&json!({"id": 1}), b" [1, 2] ").unwrap_or_default();
        assert_eq!(out, b"{\"id\":1,\"job\": [1, 2] }");
    }
}
