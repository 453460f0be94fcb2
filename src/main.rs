//! The `presque` binary: parse flags, load settings, run the server; or run a client
//! subcommand (`presque::cli`), or print shell completions or the man page.

use std::io::Write as _;
use std::process::ExitCode;

// Measured faster than the system allocator on presque's request path (many small,
// short-lived allocations per request); see BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory, Parser};
use presque::{exit_code, telemetry, Application};
use presque::{Cli, Command, LogFormat, Settings};

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(command) = &cli.command {
        if let Some(code) = presque::cli::run(command).await {
            return code;
        }
        if matches!(command, Command::Completions { .. } | Command::Man) {
            return print_generated(command);
        }
    }
    // Logging is set up once the settings say how; a config that cannot be read is
    // still reported through it, in the format the flag or environment asked for.
    let settings = match Settings::load(&cli) {
        Ok(settings) => settings,
        Err(e) => {
            telemetry::init_as(cli.log_format.unwrap_or(LogFormat::Text));
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init_as(settings.log.format);
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
    telemetry::flush();
    ExitCode::from(exit_code(&stopped))
}

/// `presque completions SHELL` and `presque man`: generated from the same flag
/// definitions the server parses, written to stdout.
fn print_generated(command: &Command) -> ExitCode {
    let mut out = Vec::new();
    let mut cli = Cli::command();
    let written = match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut cli, "presque", &mut out);
            Ok(())
        }
        // Man pages title themselves in capitals.
        Command::Man => clap_mangen::Man::new(cli).title("PRESQUE").render(&mut out),
        // Handled before: [`presque::cli::run`] and the server.
        _ => Ok(()),
    };
    let mut stdout = std::io::stdout().lock();
    match written
        .and_then(|()| stdout.write_all(&out))
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            telemetry::init();
            tracing::error!("cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}
