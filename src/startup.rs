//! Building and running the server: the actors, the arbiters they live on and the
//! HTTP server in front of them. Tests use this to start the real server on port 0.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix::prelude::*;
use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;

use crate::actors::registry::WorkerRegistry;
use crate::directory::QueueDirectory;
use crate::job::JobIds;
use crate::routes::{self, AppState};
use crate::settings::Settings;

/// A built, listening server, not yet driven.
pub struct Application {
    address: SocketAddr,
    server: Server,
    arbiters: Vec<Arbiter>,
}

impl Application {
    /// Creates the data directory, binds the listener, starts the actors (queues spread
    /// over one arbiter per core) and the HTTP workers. Must run inside an actix system.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let data_dir = &settings.storage.data_dir;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;

        let listener = TcpListener::bind(settings.server.bind)
            .with_context(|| format!("cannot listen on {}", settings.server.bind))?;
        let address = listener
            .local_addr()
            .context("cannot read the bound address")?;

        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let arbiters: Vec<Arbiter> = (0..cores).map(|_| Arbiter::new()).collect();
        let handles: Vec<ArbiterHandle> = arbiters.iter().map(Arbiter::handle).collect();
        let registry = WorkerRegistry::start_in_arbiter(&handles[0], |_| WorkerRegistry::default());
        let queues = Arc::new(QueueDirectory::new(handles, JobIds::default()));

        let state = web::Data::new(AppState {
            queues,
            registry,
            max_body_bytes: settings.server.max_body_bytes,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .workers(settings.worker_threads())
        .listen(listener)
        .context("cannot start the HTTP server")?
        .run();

        tracing::info!(%address, "presque listening on http://{address}");
        Ok(Application {
            address,
            server,
            arbiters,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// A handle to stop the server from elsewhere (tests).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT/SIGTERM (or a stop through [`Application::handle`]): stops
    /// accepting, lets in-flight requests finish, then stops the actors.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        tracing::info!("presque stopped");
        result
    }
}
