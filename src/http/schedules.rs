//! `/schedules/`: recurring jobs. `POST /schedules/NAME` creates or replaces a cron
//! schedule that posts a job to a queue at every slot; `GET` lists them or shows one
//! with its next and last run; `DELETE` removes one.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::input::{epoch_secs, page_limit, query, queue_name, read_body, NoQuery, DEFAULT_PAGE};
use super::AppState;
use crate::http::error::ApiError;
use crate::names::QueueName;
use crate::schedule::actor::{
    GetSchedule, ListSchedules, RemoveSchedule, ScheduleView, SetSchedule,
};
use crate::schedule::state::{ScheduleSpec, Timing};

/// The longest `ttl` a schedule's jobs may be given: ten years, in seconds.
const MAX_TTL_SECS: u64 = 315_360_000;

/// `POST /schedules/NAME`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    cron: String,
    timezone: Option<String>,
    queue: String,
    job: Box<RawValue>,
    options: Option<OptionsBody>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OptionsBody {
    priority: Option<Value>,
    ttl: Option<Value>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Schedules per page, 1 to 10000 (default 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000, example = 100)]
    limit: Option<String>,
    /// The `next` of the page before: names sort after it.
    #[param(example = "nightly")]
    after: Option<String>,
}

/// The schedule's name from the path, held to the queue-name rules.
fn schedule_name(req: &HttpRequest) -> Result<String, ApiError> {
    match queue_name(req) {
        Ok(name) => Ok(name.as_str().to_owned()),
        Err(ApiError::BadQueueName(e)) => {
            Err(ApiError::BadPath(format!("invalid schedule name: {e}")))
        }
        Err(e) => Err(e),
    }
}

/// A schedule as the routes answer it; times in epoch seconds.
fn view_json(view: &ScheduleView) -> Value {
    let s = &view.schedule;
    let job: Value = serde_json::from_str(&s.spec.job).unwrap_or(Value::Null);
    let mut options = serde_json::Map::new();
    if let Some(priority) = s.spec.priority {
        options.insert("priority".into(), json!(priority));
    }
    if let Some(ttl) = s.spec.ttl_secs {
        options.insert("ttl".into(), json!(ttl));
    }
    json!({
        "name": view.name,
        "cron": s.spec.cron,
        "timezone": s.spec.timezone,
        "queue": s.spec.queue,
        "job": job,
        "options": options,
        "since": epoch_secs(s.since_ms),
        "next_run": s.next_run_ms.map(epoch_secs),
        "last_run": s.last_run_ms.map(epoch_secs),
        "last_job": s.last_job,
        "runs": s.runs,
        "missed": s.last_missed.map(|m| json!({"count": m.count, "since": epoch_secs(m.since_ms)})),
        "missed_total": s.missed_total,
        "last_error": s.last_error,
    })
}

/// `GET /schedules/[?limit=N][&after=NAME]`
#[utoipa::path(
    get,
    path = "/schedules/",
    operation_id = "list_schedules",
    summary = "List the schedules",
    description = "Sorted by name, a page at a time; size counts every schedule.",
    tag = "schedules",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of schedules", body = crate::http::openapi::bodies::ScheduleList),
        (status = 400, description = "A bad limit or after", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let params: ListQuery = query(&req)?;
    let limit = page_limit(params.limit.as_deref())?.unwrap_or(DEFAULT_PAGE);
    let after = match params.after {
        None => None,
        Some(raw) => Some(
            QueueName::parse(&raw)
                .map_err(|e| ApiError::BadQuery(format!("invalid after: {e}")))?
                .as_str()
                .to_owned(),
        ),
    };
    let (page, next, size) = state.schedules.send(ListSchedules { after, limit }).await?;
    let schedules: Vec<Value> = page.iter().map(view_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "schedules": schedules, "size": size, "next": next })))
}

/// `GET /schedules/NAME`
#[utoipa::path(
    get,
    path = "/schedules/{name}",
    operation_id = "get_schedule",
    summary = "One schedule",
    tag = "schedules",
    params(("name" = String, Path, description = "Schedule name (queue-name rules)")),
    responses(
        (status = 200, description = "The schedule, with its next and last run", body = crate::http::openapi::bodies::ScheduleView),
        (status = 404, description = "schedule not found", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = schedule_name(&req)?;
    let NoQuery {} = query(&req)?;
    let view = state
        .schedules
        .send(GetSchedule(name))
        .await?
        .ok_or(ApiError::ScheduleNotFound)?;
    Ok(HttpResponse::Ok().json(view_json(&view)))
}

/// The body of `POST /schedules/NAME`, checked whole: a spec, or the first thing
/// wrong with it.
fn spec_of(body: &[u8]) -> Result<ScheduleSpec, ApiError> {
    if body.is_empty() {
        return Err(ApiError::ContentMissing);
    }
    let body: ScheduleBody = serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::BadJson(e.to_string())
        } else {
            ApiError::BadBody(e.to_string())
        }
    })?;
    let timezone = body.timezone.unwrap_or_else(|| "UTC".to_owned());
    Timing::parse(&body.cron, &timezone).map_err(ApiError::BadBody)?;
    QueueName::parse(&body.queue)
        .map_err(|e| ApiError::BadBody(format!("invalid queue name {:?}: {e}", body.queue)))?;
    let options = body.options.unwrap_or_default();
    let priority = match options.priority {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| {
                    ApiError::BadBody(format!(
                        "options.priority must be an integer from 0 to 255, not {v}"
                    ))
                })?,
        ),
    };
    let ttl_secs = match options.ttl {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| (1..=MAX_TTL_SECS).contains(n))
                .ok_or_else(|| {
                    ApiError::BadBody(format!(
                        "options.ttl must be an integer number of seconds from 1 to {MAX_TTL_SECS}, not {v}"
                    ))
                })?,
        ),
    };
    Ok(ScheduleSpec {
        cron: body.cron,
        timezone,
        queue: body.queue,
        job: body.job.get().to_owned(),
        priority,
        ttl_secs,
    })
}

/// `POST /schedules/NAME`: creates or replaces the schedule.
#[utoipa::path(
    post,
    path = "/schedules/{name}",
    operation_id = "set_schedule",
    summary = "Create or replace a schedule",
    description = "At every slot of the cron expression (5 fields, or 6 with seconds first; in timezone, UTC by default) the job is posted to the queue as POST /q/NAME would. Replacing keeps the last run: no slot fires twice. After downtime a schedule runs once for the slots it missed, and says so in missed. No Content-Type needed; the body is checked whole and nothing changes when it is refused.",
    tag = "schedules",
    params(("name" = String, Path, description = "Schedule name (queue-name rules)")),
    request_body(content = crate::http::openapi::bodies::ScheduleChange, description = "The schedule", example = json!({"cron": "0 */5 * * * *", "timezone": "Europe/Paris", "queue": "emails", "job": {"to": "a@b.c"}, "options": {"priority": 10, "ttl": 3600}})),
    responses(
        (status = 201, description = "Created", body = crate::http::openapi::bodies::ScheduleView),
        (status = 200, description = "Replaced", body = crate::http::openapi::bodies::ScheduleView),
        (status = 400, description = "content is missing, invalid JSON, an unknown key, a bad cron expression, time zone, queue name or option; nothing changed", body = crate::http::openapi::ErrorBody),
        (status = 413, description = "The body is larger than max_body_bytes", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn set(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = schedule_name(&req)?;
    let NoQuery {} = query(&req)?;
    let body = read_body(&req, payload, state.max_body_bytes).await?;
    let spec = spec_of(&body)?;
    let (view, replaced) = state.schedules.send(SetSchedule { name, spec }).await??;
    let mut answer = if replaced {
        HttpResponse::Ok()
    } else {
        HttpResponse::Created()
    };
    Ok(answer.json(view_json(&view)))
}

/// `DELETE /schedules/NAME`
#[utoipa::path(
    delete,
    path = "/schedules/{name}",
    operation_id = "delete_schedule",
    summary = "Remove a schedule",
    description = "Jobs it already posted stay in their queue.",
    tag = "schedules",
    params(("name" = String, Path, description = "Schedule name (queue-name rules)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "schedule not found", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn remove(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = schedule_name(&req)?;
    let NoQuery {} = query(&req)?;
    if state.schedules.send(RemoveSchedule(name)).await?? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::ScheduleNotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(body: &str) -> String {
        spec_of(body.as_bytes())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn the_body_is_checked_whole_with_precise_errors() {
        let ok = spec_of(br#"{"cron":"* * * * * *","queue":"q","job":{"a": [1, 2]},"options":{"priority":0,"ttl":60}}"#);
        let ok = ok.map_err(|e| e.to_string());
        assert_eq!(
            ok.as_ref()
                .map(|s| (s.job.as_str(), s.timezone.as_str(), s.priority, s.ttl_secs)),
            Ok((r#"{"a": [1, 2]}"#, "UTC", Some(0), Some(60)))
        );
        assert!(error(r#"{"cron":"* * * * * *","queue":"q","job":1,"x":1}"#)
            .contains("unknown field `x`"));
        assert!(error(r#"{"cron":"* * * * * *","queue":"q"}"#).contains("missing field `job`"));
        assert!(error(r#"{"cron":"nope","queue":"q","job":1}"#).contains("invalid cron expression"));
        assert!(
            error(r#"{"cron":"* * * * *","timezone":"Nowhere/X","queue":"q","job":1}"#)
                .contains("unknown time zone")
        );
        assert!(
            error(r#"{"cron":"* * * * *","queue":"a/b","job":1}"#).contains("invalid queue name")
        );
        assert!(
            error(r#"{"cron":"* * * * *","queue":"q","job":1,"options":{"priority":256}}"#)
                .contains("options.priority")
        );
        assert!(
            error(r#"{"cron":"* * * * *","queue":"q","job":1,"options":{"ttl":0}}"#)
                .contains("options.ttl")
        );
        assert!(
            error(r#"{"cron":"* * * * *","queue":"q","job":1,"options":{"ttl":315360001}}"#)
                .contains("options.ttl")
        );
        assert!(
            error(r#"{"cron":"* * * * *","queue":"q","job":1,"options":{"prio":1}}"#)
                .contains("unknown field `prio`")
        );
        assert!(error(r#"{"cron":"#).contains("invalid JSON"));
        assert_eq!(error(""), "content is missing");
    }
}
