//! `/status/` and `/status/NAME`: which queues exist and how many jobs are ready.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::input::{flag, query, queue_name, NoQuery};
use super::AppState;
use crate::http::error::ApiError;
use crate::queue::{GetCounters, ListReady};

#[derive(Deserialize)]
struct StatusQuery {
    with_desc: Option<String>,
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

/// `GET /status/NAME[?with_desc=1]`: the number of ready jobs, and with `with_desc`
/// the jobs themselves as JSON-text strings.
pub async fn one(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&req)?;
    let params: StatusQuery = query(&req)?;
    if flag(params.with_desc.as_deref()) {
        let bodies = state
            .queues
            .ask(&name, false, || ListReady)
            .await?
            .unwrap_or_default();
        let jobs: Vec<&str> = bodies
            .iter()
            .map(|b| std::str::from_utf8(b).unwrap_or_default())
            .collect();
        return Ok(HttpResponse::Ok().json(json!({
            "queue": name.as_str(),
            "size": jobs.len(),
            "jobs": jobs,
        })));
    }
    let c = state
        .queues
        .ask(&name, false, || GetCounters)
        .await?
        .unwrap_or_default();
    Ok(HttpResponse::Ok().json(json!({ "queue": name.as_str(), "size": c.ready })))
}
