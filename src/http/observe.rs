//! Times every request into `presque_http_request_duration_seconds`, labelled by route
//! group and status (bounded: the groups are `http::auth`'s, the statuses a few).
//! Cheap on purpose: two clock reads, a few string comparisons to classify the path,
//! and a cached histogram (see `Metrics::observe_request`); nothing allocated.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use crate::http::auth::{group_of, route_pattern};
use crate::metrics::Metrics;

/// The middleware: wrapped outermost in `startup`, with one `metrics` handle per HTTP
/// worker thread.
// The `Rc` is the point: a request clones it without an atomic, as an `Arc` clone
// shared by every thread would cost.
#[expect(
    clippy::redundant_allocation,
    reason = "a per-thread handle, cloned per request"
)]
pub async fn observe(
    metrics: Rc<Arc<Metrics>>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let group = route_pattern(req.match_info().as_str()).map_or("other", group_of);
    let result = next.call(req).await;
    let status = match &result {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    metrics.observe_request(group, status.as_u16(), started.elapsed().as_secs_f64());
    result
}
