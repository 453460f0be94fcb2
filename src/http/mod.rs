//! HTTP routes, one module per route group, wired in [`configure`]. Handlers stay
//! thin: parse the request, send one message, map the reply.

use std::sync::Arc;

use actix_web::{web, HttpRequest};

use crate::http::error::ApiError;
use crate::queue::directory::QueueDirectory;
use crate::queue::job::JobIds;
use crate::registry::Registry;
use crate::storage::log::Log;

pub(crate) mod access;
mod admit;
pub(crate) mod auth;
mod batch;
mod control;
mod counters;
mod dashboard;
mod dead;
pub(crate) mod error;
mod health;
mod info;
mod input;
mod job_lists;
mod jobs;
mod metrics;
mod observe;
pub mod openapi;
mod overview;
mod queue;
mod queue_settings;
mod schedules;
mod status;
mod workers;

pub use admit::{Admit, RecoveryGate};
pub use auth::{authenticate, Auth};
pub use info::ServerFacts;
pub use input::BodyTimeout;
pub use observe::Observe;

/// What every handler can reach: the actors' addresses and request limits.
pub struct AppState {
    pub gate: Arc<RecoveryGate>,
    pub queues: Arc<QueueDirectory>,
    pub job_ids: JobIds,
    pub registry: Registry,
    /// The schedules (recurring jobs).
    pub schedules: actix::Addr<crate::schedule::actor::ScheduleActor>,
    /// Read by `/health/ready`: whether the log takes changes.
    pub log: Log,
    pub max_body_bytes: usize,
    pub max_wait_secs: u64,
    pub worker_timeout_secs: u64,
    pub default_max_attempts: u32,
    /// What `/info` reports of the server.
    pub facts: ServerFacts,
    /// The series `/metrics` shows that are recorded as things happen.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Adds every route to an app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // `/q/...` carries nearly all the traffic: routed by hand under a static prefix,
    // because every `{name}` pattern actix tries is a regex match (about 8% of a
    // minimal actix-web handler's CPU in the benchmark's profile).
    cfg.service(web::scope("/q").default_service(web::to(queue_route)))
        .service(
            web::resource("/qb/{name:.*}")
                .route(web::get().to(batch::fetch))
                .route(web::post().to(batch::create))
                .route(web::put().to(batch::put_refused))
                .route(web::delete().to(batch::delete_refused))
                .default_service(web::to(not_allowed("GET, POST, PUT, DELETE"))),
        )
        .service(
            web::resource("/j/{name:.*}")
                .route(web::get().to(counters::get))
                .default_service(web::to(not_allowed("GET"))),
        )
        .service(
            web::resource(["/status", "/status/"])
                .route(web::get().to(status::list))
                .default_service(web::to(not_allowed("GET"))),
        )
        .service(
            web::resource("/status/{name:.*}")
                .route(web::get().to(status::one))
                .default_service(web::to(not_allowed("GET"))),
        )
        .service(
            web::resource("/control/{name:.*}")
                .route(web::get().to(control::get))
                .route(web::post().to(control::set))
                .default_service(web::to(not_allowed("GET, POST"))),
        )
        .service(
            web::resource(["/w", "/w/{name:.*}"])
                .route(web::get().to(workers::stats))
                .route(web::post().to(workers::register))
                .route(web::delete().to(workers::unregister))
                .default_service(web::to(not_allowed("GET, POST, DELETE"))),
        )
        .service(web::resource("/dead/").to(queue::name_missing))
        .service(
            web::resource("/dead/{name}")
                .route(web::get().to(dead::list))
                .route(web::post().to(dead::retry))
                .route(web::delete().to(dead::purge))
                .default_service(web::to(not_allowed("GET, POST, DELETE"))),
        )
        .service(web::resource("/settings/").to(queue::name_missing))
        .service(
            web::resource("/settings/{name}")
                .route(web::get().to(queue_settings::get))
                .route(web::post().to(queue_settings::set))
                .default_service(web::to(not_allowed("GET, POST"))),
        )
        .service(
            web::resource(["/workers", "/workers/"])
                .route(web::get().to(workers::liveness))
                .default_service(web::to(not_allowed("GET"))),
        )
        .service(
            web::resource("/health/live")
                .route(web::get().to(health::live))
                .default_service(web::to(not_allowed("GET"))),
        )
        .service(
            web::resource("/health/ready")
                .route(web::get().to(health::ready))
                .default_service(web::to(not_allowed("GET"))),
        )
        .service(
            web::resource("/openapi.json")
                .route(web::get().to(openapi::document))
                .default_service(web::to(not_allowed("GET"))),
        )
        .service(
            web::resource("/metrics")
                .route(web::get().to(metrics::get))
                .default_service(web::to(not_allowed("GET"))),
        )
        .service(
            web::resource("/")
                .route(web::get().to(dashboard::page))
                .default_service(web::to(not_allowed("GET"))),
        )
        .service(
            web::resource("/dashboard/{file}")
                .route(web::get().to(dashboard::file))
                .default_service(web::to(not_allowed("GET"))),
        )
        .service(
            web::resource("/overview")
                .route(web::get().to(overview::list))
                .default_service(web::to(not_allowed("GET"))),
        )
        .service(
            web::resource("/info")
                .route(web::get().to(info::get))
                .default_service(web::to(not_allowed("GET"))),
        )
        .service(
            web::resource("/schedules/")
                .route(web::get().to(schedules::list))
                .default_service(web::to(not_allowed("GET"))),
        )
        .service(
            web::resource("/schedules/{name}")
                .route(web::get().to(schedules::get))
                .route(web::post().to(schedules::set))
                .route(web::delete().to(schedules::remove))
                .default_service(web::to(not_allowed("GET, POST, DELETE"))),
        )
        .service(web::resource("/jobs/").to(queue::name_missing))
        .service(
            web::resource("/jobs/{name}")
                .route(web::get().to(job_lists::list))
                .default_service(web::to(not_allowed("GET"))),
        );
}

/// Routes `/q/NAME` (queue) and `/q/NAME/ID` (one job) by method.
async fn queue_route(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<actix_web::HttpResponse, ApiError> {
    use actix_web::http::Method;
    const ALLOW: &str = "GET, POST, PUT, DELETE";
    let rest = req.match_info().unprocessed();
    if !rest.starts_with('/') {
        return Err(ApiError::NotFound);
    }
    let (name, id) = input::path_target(&req);
    if name.is_empty() {
        return Err(ApiError::QueueNameMissing);
    }
    let method = req.method().clone();
    match (id.is_some(), method) {
        (false, Method::GET) => queue::fetch(req, state).await,
        (false, Method::POST) => queue::create(req, payload, state).await,
        (false, Method::PUT) => queue::fail(req, payload, state).await,
        (false, Method::DELETE) => queue::purge(req, state).await,
        (true, Method::GET) => jobs::find(req, state).await,
        (true, Method::DELETE) => jobs::ack(req, state).await,
        (true, Method::PUT) => jobs::fail(req, payload, state).await,
        (true, Method::POST) => jobs::extend(req, state).await,
        (_, method) => Err(ApiError::MethodNotAllowed {
            method: method.to_string(),
            allow: ALLOW,
        }),
    }
}

/// A handler answering 405 with the route's allowed methods.
fn not_allowed(
    allow: &'static str,
) -> impl Fn(HttpRequest) -> std::future::Ready<Result<actix_web::HttpResponse, ApiError>> + Clone {
    move |req: HttpRequest| {
        std::future::ready(Err(ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            allow,
        }))
    }
}

/// The answer for paths no route knows.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
