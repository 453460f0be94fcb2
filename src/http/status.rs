//! `/status/` and `/status/NAME`: which queues exist and how many jobs are ready.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::input::{flag, page_after, page_limit, query, queue_name, DEFAULT_PAGE};
use super::AppState;
use crate::http::error::ApiError;
use crate::names::QueueName;
use crate::queue::job::DEFAULT_PRIORITY;
use crate::queue::{GetCounters, ListReady};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StatusQuery {
    /// `1`: list the ready jobs, a page at a time.
    #[param(example = "1")]
    with_desc: Option<String>,
    /// With `with_desc`: jobs per page, 1 to 10000 (default 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000, example = 2)]
    limit: Option<String>,
    /// With `with_desc`: the `next` of the page before (a job id).
    #[param(value_type = Option<u64>, example = 18)]
    after: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Queue names per page, 1 to 10000 (default 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000, example = 100)]
    limit: Option<String>,
    /// The `next` of the page before: names sort after it.
    #[param(example = "emails")]
    after: Option<String>,
}

/// `GET /status/[?limit=N][&after=NAME]`: the queues' names, sorted, a page at a time,
/// and how many queues there are (`size`). As with `with_desc`, the answer has a
/// `next` key (the `after` of the next page, `null` after the last) only when `limit`
/// or `after` was given or when there are more queues than one page holds, so an old
/// client's answer for up to [`DEFAULT_PAGE`] queues is unchanged.
#[utoipa::path(
    get,
    path = "/status/",
    operation_id = "list_queues",
    summary = "List the queues",
    description = "Names sorted, a page at a time; size counts every queue.",
    tag = "queues",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of queue names, sorted", body = crate::http::openapi::bodies::QueueList),
        (status = 400, description = "A bad limit or after", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let params: ListQuery = query(&req)?;
    let limit = page_limit(params.limit.as_deref())?;
    let after = match params.after.as_deref() {
        None => None,
        Some(raw) => Some(QueueName::parse(raw).map_err(ApiError::BadQueueName)?),
    };
    let paging = limit.is_some() || after.is_some();
    let all = state.queues.names();
    let size = all.len();
    let start = after.map_or(0, |after| all.partition_point(|name| *name <= after));
    let page: Vec<&str> = all[start..]
        .iter()
        .take(limit.unwrap_or(DEFAULT_PAGE))
        .map(QueueName::as_str)
        .collect();
    let more = start + page.len() < size;
    let mut answer = json!({ "queues": page, "size": size });
    if paging || more {
        answer["next"] = json!(if more { page.last().copied() } else { None });
    }
    Ok(HttpResponse::Ok().json(answer))
}

/// `GET /status/NAME[?with_desc=1[&limit=N][&after=ID]]`: the number of ready jobs,
/// and with `with_desc` the jobs themselves as JSON-text strings, a page at a time.
/// The answer has a `next` key (the `after` of the next page, `null` after the last)
/// when `limit` or `after` was given or when the page is not the whole queue, so an
/// old client's answer for a queue of up to [`DEFAULT_PAGE`] jobs is unchanged.
#[utoipa::path(
    get,
    path = "/status/{name}",
    operation_id = "queue_status",
    summary = "A queue's ready jobs",
    description = "The number of ready jobs; with with_desc=1, a page of them (head first) as JSON-text strings.",
    tag = "queues",
    params(("name" = String, Path, description = "Queue name"), StatusQuery),
    responses(
        (status = 200, description = "The number of ready jobs; with with_desc=1, a page of them", body = crate::http::openapi::bodies::QueueStatus),
        (status = 400, description = "A bad limit or after, or either without with_desc=1", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "queue name is missing", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn one(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let params: StatusQuery = query(&req)?;
    let limit = page_limit(params.limit.as_deref())?;
    let after = page_after(params.after.as_deref())?;
    let paging = limit.is_some() || after.is_some();
    if flag(params.with_desc.as_deref()) {
        let page = state
            .queues
            .ask(&name, false, || ListReady {
                after,
                limit: limit.unwrap_or(DEFAULT_PAGE),
            })
            .await?
            .unwrap_or_default();
        let jobs: Vec<&str> = page
            .bodies
            .iter()
            .map(|b| std::str::from_utf8(b).unwrap_or_default())
            .collect();
        let mut answer = json!({
            "queue": name.as_str(),
            "size": page.size,
            "jobs": jobs,
        });
        // Only when some job has one: the answer an original client gets (whose jobs
        // all have the default) stays the original's, byte for byte.
        if page.priorities.iter().any(|&p| p != DEFAULT_PRIORITY) {
            answer["priorities"] = json!(page.priorities);
        }
        if paging || page.next.is_some() {
            answer["next"] = json!(page.next.map(|id| id.0));
        }
        return Ok(HttpResponse::Ok().json(answer));
    }
    if paging {
        return Err(ApiError::BadQuery(
            "limit and after page through the jobs of with_desc=1; add it".into(),
        ));
    }
    let c = state
        .queues
        .ask(&name, false, || GetCounters)
        .await?
        .unwrap_or_default();
    Ok(HttpResponse::Ok().json(json!({ "queue": name.as_str(), "size": c.ready })))
}
