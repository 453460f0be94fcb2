//! `/status/` and `/status/NAME`: which queues exist and how many jobs are ready.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::input::{flag, page_after, page_limit, query, queue_name, NoQuery, DEFAULT_PAGE};
use super::AppState;
use crate::http::error::ApiError;
use crate::queue::{GetCounters, ListReady};

#[derive(Deserialize)]
struct StatusQuery {
    with_desc: Option<String>,
    /// With `with_desc`: jobs per page, 1 to [`MAX_PAGE`](super::input::MAX_PAGE).
    limit: Option<String>,
    /// With `with_desc`: the `next` of the page before.
    after: Option<String>,
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

/// `GET /status/NAME[?with_desc=1[&limit=N][&after=ID]]`: the number of ready jobs,
/// and with `with_desc` the jobs themselves as JSON-text strings, a page at a time.
/// The answer has a `next` key (the `after` of the next page, `null` after the last)
/// when `limit` or `after` was given or when the page is not the whole queue, so an
/// old client's answer for a queue of up to [`DEFAULT_PAGE`] jobs is unchanged.
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
