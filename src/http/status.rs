//! `/status/` and `/status/NAME`: which queues exist and how many jobs are ready.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::input::{flag, query, queue_name, NoQuery};
use super::AppState;
use crate::http::error::ApiError;
use crate::queue::job::JobId;
use crate::queue::{GetCounters, ListReady};

/// Jobs one `with_desc` answer lists when the query does not say (`limit`): an old
/// client's answer stays whole for queues up to this size.
pub const DEFAULT_DESC_LIMIT: usize = 1000;

/// Most jobs one `with_desc` answer lists.
pub const MAX_DESC_LIMIT: usize = 10_000;

#[derive(Deserialize)]
struct StatusQuery {
    with_desc: Option<String>,
    /// With `with_desc`: jobs per page, 1 to [`MAX_DESC_LIMIT`].
    limit: Option<String>,
    /// With `with_desc`: the `next` of the page before.
    cursor: Option<String>,
}

/// `GET /status/`: every queue's name.
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let NoQuery {} = query(&req)?;
    let names: Vec<String> = state
        .queues
        .names()
        .iter()
        .map(|n| n.as_str().to_owned())
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "queues": names, "size": names.len() })))
}

/// `limit=N`: an integer from 1 to [`MAX_DESC_LIMIT`].
fn desc_limit(raw: Option<&str>) -> Result<Option<usize>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    match raw.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_DESC_LIMIT).contains(&n) => Ok(Some(n)),
        _ => Err(ApiError::BadQuery(format!(
            "limit must be an integer from 1 to {MAX_DESC_LIMIT}, not {raw:?}"
        ))),
    }
}

/// `cursor=`: the `next` value of an earlier page (the id of its last job).
fn desc_cursor(raw: Option<&str>) -> Result<Option<JobId>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    raw.parse::<u64>().map(|id| Some(JobId(id))).map_err(|_| {
        ApiError::BadQuery(format!(
            "cursor must be the \"next\" of an earlier page, not {raw:?}"
        ))
    })
}

/// `GET /status/NAME[?with_desc=1[&limit=N][&cursor=C]]`: the number of ready jobs,
/// and with `with_desc` the jobs themselves as JSON-text strings, a page at a time.
/// The answer has a `next` key (the cursor of the next page, `null` after the last)
/// when `limit` or `cursor` was given or when the page is not the whole queue, so an
/// old client's answer for a queue of up to [`DEFAULT_DESC_LIMIT`] jobs is unchanged.
pub async fn one(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let params: StatusQuery = query(&req)?;
    let limit = desc_limit(params.limit.as_deref())?;
    let after = desc_cursor(params.cursor.as_deref())?;
    let paging = limit.is_some() || after.is_some();
    if flag(params.with_desc.as_deref()) {
        let page = state
            .queues
            .ask(&name, false, || ListReady {
                after,
                limit: limit.unwrap_or(DEFAULT_DESC_LIMIT),
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
        if paging || page.next.is_some() {
            answer["next"] = json!(page.next.map(|id| id.0.to_string()));
        }
        return Ok(HttpResponse::Ok().json(answer));
    }
    if paging {
        return Err(ApiError::BadQuery(
            "limit and cursor page through the jobs of with_desc=1; add it".into(),
        ));
    }
    let c = state
        .queues
        .ask(&name, false, || GetCounters)
        .await?
        .unwrap_or_default();
    Ok(HttpResponse::Ok().json(json!({ "queue": name.as_str(), "size": c.ready })))
}
