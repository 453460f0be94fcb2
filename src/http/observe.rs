//! Times every request into `presque_http_request_duration_seconds`, labelled by route
//! group and status (bounded: the groups are `http::auth`'s, the statuses a few).
//!
//! Cheap on purpose, since every request pays it (BENCHMARKS.md, "Metrics"): two clock
//! reads, a few string comparisons to classify the path, and a cached histogram (see
//! `Metrics::observe_request`). Written as a `Transform` rather than with
//! `middleware::from_fn`, whose boxed future (and the copy of the inner future into
//! it) cost more per request than all of that; this one wraps the inner future in
//! place.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use pin_project_lite::pin_project;

use crate::http::access::Access;
use crate::http::auth::{group_of, route_pattern};
use crate::metrics::Metrics;

/// The middleware; wrapped outermost in `startup`, so refused requests count (and
/// are logged) too. With `access`, it also writes each request's access line
/// (`http::access`): one layer, one clock read for both.
pub struct Observe {
    pub metrics: Arc<Metrics>,
    pub access: bool,
}

impl<S, B> Transform<S, ServiceRequest> for Observe
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = ObserveService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ObserveService {
            service,
            metrics: Rc::new(self.metrics.clone()),
            access: self.access,
        }))
    }
}

/// One HTTP worker thread's instance: its `Rc` handle is cloned per request without
/// an atomic, as cloning the `Arc` every thread shares would need.
pub struct ObserveService<S> {
    service: S,
    metrics: Handle,
    access: bool,
}

impl<S, B> Service<ServiceRequest> for ObserveService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = Timed<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let group = route_pattern(req.match_info().as_str()).map_or("other", group_of);
        let access = self.access.then(|| Access::start(&req));
        Timed {
            inner: self.service.call(req),
            started,
            group,
            metrics: self.metrics.clone(),
            access,
        }
    }
}

pin_project! {
    /// A request under way: counted when its response (or error) is ready.
    pub struct Timed<F> {
        #[pin]
        inner: F,
        started: Instant,
        group: &'static str,
        metrics: Handle,
        access: Option<Access>,
    }
}

/// An `Rc` per thread around the shared `Arc`: see [`ObserveService`].
type Handle = Rc<Arc<Metrics>>;

impl<F, B> Future for Timed<F>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Poll::Ready(result) = this.inner.poll(cx) else {
            return Poll::Pending;
        };
        let status = match &result {
            Ok(res) => res.status(),
            Err(e) => e.as_response_error().status_code(),
        };
        this.metrics.observe_request(
            this.group,
            status.as_u16(),
            this.started.elapsed().as_secs_f64(),
        );
        Poll::Ready(match this.access.take() {
            Some(access) => access.finish(result, *this.started),
            None => result,
        })
    }
}
