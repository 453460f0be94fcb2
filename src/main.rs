//! The `presque` binary: parse flags, load settings, run the server.

use std::process::ExitCode;

// Measured faster than the system allocator on presque's request path (many small,
// short-lived allocations per request); see BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use presque::{exit_code, telemetry, Application};
use presque::{Cli, Settings};

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    let settings = match Settings::load(&cli) {
        Ok(settings) => settings,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    let stopped = app.run_until_stopped().await;
    if let Err(e) = &stopped {
        tracing::error!("{e:#}");
    }
    ExitCode::from(exit_code(&stopped))
}
