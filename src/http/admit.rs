//! What every request passes before its handler: the recovery gate, and noting the
//! worker that sent it.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

use super::input::WORKER_HEADER;
use super::AppState;

/// Closed until recovery has put back every recovered queue, so no request can create
/// an empty twin of a queue that is still being restored. The port is open before
/// that (tests and clients learn the address early); requests just wait.
#[derive(Default)]
pub struct RecoveryGate {
    open: AtomicBool,
    opened: Notify,
}

impl RecoveryGate {
    /// Lets requests in (recovery is complete).
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.opened.notify_waiters();
    }

    /// Resolves once the gate is open.
    pub async fn wait_open(&self) {
        if self.open.load(Ordering::Acquire) {
            return;
        }
        loop {
            let opened = self.opened.notified();
            if self.open.load(Ordering::SeqCst) {
                return;
            }
            opened.await;
        }
    }
}

/// Runs before every request: waits for the recovery gate, and tells the registry a
/// worker was seen when a work request carries its id.
pub async fn admit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(state) = req.app_data::<web::Data<AppState>>() {
        state.gate.wait_open().await;
        let raw = req
            .headers()
            .get(WORKER_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|_| crate::registry::is_sighting(req.method(), req.path()));
        if let Some(raw) = raw {
            state.registry.saw(raw);
        }
    }
    next.call(req).await
}
