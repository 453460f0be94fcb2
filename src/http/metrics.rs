//! `GET /metrics`: Prometheus/OpenMetrics text (see [`crate::metrics`]).

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::future::join_all;

use super::input::{query, NoQuery};
use super::AppState;
use crate::http::error::ApiError;
use crate::metrics::{Scrape, CONTENT_TYPE};
use crate::queue::GetFigures;

/// `GET /metrics`
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    summary = "Prometheus metrics (OpenMetrics text)",
    description = "Request latency by route group and status, per-queue job gauges and counters (for the first [metrics] max_queues queues), server-wide totals, log fsync, snapshot, recovery, memory budget and workers. See the README's Metrics section.",
    tag = "meta",
    responses((status = 200, description = "The series, in OpenMetrics text ending with # EOF", content_type = "application/openmetrics-text")),
)]
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let NoQuery {} = query(&req)?;
    let mut names = state.queues.names();
    let queue_count = names.len();
    names.truncate(state.metrics.max_queues());
    // Asked all at once: the actors live on every HTTP worker thread.
    let answers = join_all(
        names
            .iter()
            .map(|name| state.queues.ask(name, false, || GetFigures)),
    )
    .await;
    // A queue deleted meanwhile (or gone) is left out.
    let queues = names
        .into_iter()
        .zip(answers)
        .filter_map(|(name, answer)| Some((name, answer.ok()??)))
        .collect();
    let config = state.queues.config();
    let scrape = Scrape {
        queues,
        queue_count,
        totals: config.totals.read(),
        pending_waiters: state.queues.pending_waiters(),
        memory_used: config.budget.used(),
        memory_limit: Some(config.budget.limit()).filter(|l| *l != u64::MAX),
        workers: state.registry.registered(),
    };
    let body = state
        .metrics
        .render(scrape)
        .map_err(|_| ApiError::Internal("cannot encode the metrics".into()))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(body))
}
