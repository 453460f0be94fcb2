//! What every request passes before its handler: the recovery gate, and noting the
//! worker that sent it.

use std::future::{ready, Ready};
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::web;
use futures_util::future::Either;

use super::error::ApiError;
use super::input::WORKER_HEADER;
use super::AppState;

/// Closed until recovery has put back every recovered queue, so no request can create
/// an empty twin of a queue that is still being restored. The port opens once the
/// files are read, before the queues are put back; while the gate is closed, requests are
/// answered 503 at once ([`ApiError::Recovering`], `Retry-After: 1`) instead of
/// waiting, except the health routes, which say so themselves.
#[derive(Default)]
pub struct RecoveryGate {
    open: AtomicBool,
}

impl RecoveryGate {
    /// Lets requests in (recovery is complete). It never closes again.
    pub fn open(&self) {
        self.open.store(true, Ordering::Release);
    }

    /// Whether recovery is complete.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Whether a request for `path` may pass: any once open; before, only the health
    /// routes (`/health/...`), which must answer at once.
    pub fn admits(&self, path: &str) -> bool {
        self.is_open() || path.starts_with(HEALTH_PREFIX)
    }
}

/// The health routes' prefix: they pass the gate while recovery runs.
const HEALTH_PREFIX: &str = "/health/";

/// Runs before every request: refuses it while recovery runs (see [`RecoveryGate`]),
/// and tells the registry a worker was seen when a work request carries its id. A
/// `Transform` rather than `middleware::from_fn`, whose boxed future every request
/// would pay for; the inner future is passed through as it is.
pub struct Admit;

impl<S, B> Transform<S, ServiceRequest> for Admit
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = AdmitService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AdmitService { service }))
    }
}

pub struct AdmitService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for AdmitService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = Either<Ready<Result<ServiceResponse<B>, actix_web::Error>>, S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        if let Some(state) = req.app_data::<web::Data<AppState>>() {
            if !state.gate.admits(req.path()) {
                return Either::Left(ready(Err(ApiError::Recovering.into())));
            }
            let raw = req
                .headers()
                .get(WORKER_HEADER)
                .and_then(|v| v.to_str().ok())
                .filter(|_| crate::registry::is_sighting(req.method(), req.path()));
            if let Some(raw) = raw {
                state.registry.saw(raw);
            }
        }
        Either::Right(self.service.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::{header, StatusCode};
    use actix_web::ResponseError;

    #[test]
    fn a_closed_gate_admits_only_health_routes() {
        let gate = RecoveryGate::default();
        assert!(!gate.is_open());
        for path in ["/health/live", "/health/ready"] {
            assert!(gate.admits(path), "{path}");
        }
        for path in ["/", "/q/a", "/status", "/health", "/healthz"] {
            assert!(!gate.admits(path), "{path}");
        }
        gate.open();
        for path in ["/", "/q/a", "/status", "/health/live"] {
            assert!(gate.admits(path), "{path}");
        }
    }

    #[test]
    fn the_recovering_answer() {
        let e = ApiError::Recovering;
        assert_eq!(e.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        let response = e.error_response();
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        assert_eq!(e.to_string(), "server is recovering");
    }
}
