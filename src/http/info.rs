//! `/info`: what the server is and how it runs, for the dashboard's server panel and
//! for an operator: version, uptime, fsync policy, data directory, memory budget, the
//! newest snapshot, how many queues and the next job id (its rise is the rate jobs
//! are created at).

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::input::{epoch_secs, query, NoQuery};
use super::AppState;
use crate::clock::now_ms;
use crate::http::error::ApiError;
use crate::storage::snapshot::parse_snapshot_file_name;

/// Facts fixed at start that `/info` reports.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    /// Epoch milliseconds when the server started.
    pub started_ms: u64,
    pub data_dir: PathBuf,
    /// The fsync policy as the config file spells it.
    pub fsync: String,
}

/// The newest snapshot file in `dir`: its generation, size and when it was written.
fn newest_snapshot(dir: &Path) -> Value {
    let newest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let generation = parse_snapshot_file_name(entry.file_name().to_str()?)?;
            Some((generation, entry))
        })
        .max_by_key(|(generation, _)| *generation);
    let Some((generation, entry)) = newest else {
        return Value::Null;
    };
    let meta = entry.metadata().ok();
    let written_ms = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    json!({
        "generation": generation,
        "bytes": meta.map(|m| m.len()),
        "written_at": written_ms.map(epoch_secs),
    })
}

/// `GET /info`: `{"version", "started_at", "uptime_secs", "fsync", "data_dir",
/// "memory": {"used_bytes", "limit_bytes" (null: unlimited)}, "snapshot":
/// {"generation", "bytes", "written_at"} or null, "queues", "next_job_id"}`.
#[utoipa::path(
    get,
    path = "/info",
    operation_id = "server_info",
    summary = "The server: version, uptime, policies, memory, newest snapshot",
    tag = "dashboard",
    responses((status = 200, description = "Facts about this server", body = crate::http::openapi::bodies::ServerInfo)),
)]
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let NoQuery {} = query(&req)?;
    let facts = &state.facts;
    let budget = &state.queues.config().budget;
    let dir = facts.data_dir.clone();
    let snapshot = web::block(move || newest_snapshot(&dir))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let now = now_ms();
    Ok(HttpResponse::Ok().json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": epoch_secs(facts.started_ms),
        "uptime_secs": now.saturating_sub(facts.started_ms) / 1000,
        "fsync": facts.fsync,
        "data_dir": facts.data_dir.display().to_string(),
        "memory": {
            "used_bytes": budget.used(),
            "limit_bytes": Some(budget.limit()).filter(|l| *l != u64::MAX),
        },
        "snapshot": snapshot,
        "queues": state.queues.count(),
        "next_job_id": state.job_ids.peek(),
    })))
}
