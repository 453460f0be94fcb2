//! Building and running the server: recovery, the log, the actors (queues on the
//! HTTP workers' arbiters, one per core by default; the registry and the snapshot
//! actor on the system's), and the HTTP server in front of them. Tests use this to
//! start the real server on port 0.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::middleware;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::http::{self, AppState, BodyTimeout, RecoveryGate};
use crate::metrics::Metrics;
use crate::queue::budget::{MachineMemory, MemoryBudget};
use crate::queue::directory::QueueDirectory;
use crate::queue::job::JobIds;
use crate::queue::QueueConfig;
use crate::registry::actor::WorkerRegistry;
use crate::registry::state::RegistryState;
use crate::registry::Registry;
use crate::schedule::actor::ScheduleActor;
use crate::settings::{MemoryLimit, ServerSettings, Settings};
use crate::storage::log::Log;
use crate::storage::progress::{self, Phase, ProgressReporter, RecoveryProgress};
use crate::storage::recovery::{recover_telling, RecoveredQueue};
use crate::storage::snapshotter::{SnapshotActor, SnapshotSources, TakeSnapshot};
use crate::storage::StorageError;

/// A built server, already serving; [`Application::run_until_stopped`] waits for it
/// to stop and shuts down persistence cleanly.
pub struct Application {
    address: SocketAddr,
    server: actix_rt::task::JoinHandle<std::io::Result<()>>,
    handle: ServerHandle,
    snapshots: Addr<SnapshotActor>,
    queues: Arc<QueueDirectory>,
    log: Log,
    signals: ShutdownSignals,
    /// Held for the process' lifetime: one server per data directory.
    _lock: File,
}

/// SIGTERM and SIGINT, listened for from before the server says it is listening, so
/// a signal sent right after start is never fatal.
struct ShutdownSignals {
    term: Signal,
    int: Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        Ok(ShutdownSignals {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    /// Resolves on the first of them, naming it.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// How long the HTTP workers get to start.
const ARBITERS_DEADLINE: Duration = Duration::from_secs(30);

/// What the HTTP handlers share, before the server starts.
struct Parts {
    gate: Arc<RecoveryGate>,
    queues: Arc<QueueDirectory>,
    job_ids: JobIds,
    state: web::Data<AppState>,
}

impl Parts {
    /// `next_ids`: the next queue incarnation and the next job id.
    fn new(
        settings: &Settings,
        next_ids: (u64, u64),
        log: &Log,
        registry: Registry,
        metrics: Arc<Metrics>,
        schedules: Addr<ScheduleActor>,
    ) -> Self {
        let server = &settings.server;
        let gate = Arc::new(RecoveryGate::default());
        let queues = Arc::new(QueueDirectory::new(
            next_ids.0,
            log.clone(),
            QueueConfig {
                default_max_attempts: server.default_max_attempts,
                max_waiters: server.max_waiters_per_queue,
                default_max_jobs: match settings.limits.default_max_jobs {
                    0 => None,
                    n => Some(n),
                },
                budget: memory_budget(settings.limits.max_memory_bytes),
                leasing: Default::default(),
                totals: Default::default(),
                default_backoff: settings.retry.backoff,
            },
        ));
        let job_ids = JobIds::starting_at(next_ids.1);
        Parts {
            state: web::Data::new(AppState {
                gate: gate.clone(),
                queues: queues.clone(),
                job_ids: job_ids.clone(),
                registry,
                schedules,
                log: log.clone(),
                max_body_bytes: server.max_body_bytes,
                max_wait_secs: server.max_wait_secs,
                worker_timeout_secs: server.worker_timeout_secs,
                default_max_attempts: server.default_max_attempts,
                facts: http::ServerFacts {
                    started_ms: crate::clock::now_ms(),
                    // Locked and read by now, so it exists: shown as an absolute path.
                    data_dir: std::fs::canonicalize(&settings.storage.data_dir)
                        .unwrap_or_else(|_| settings.storage.data_dir.clone()),
                    fsync: settings.storage.fsync.to_string(),
                },
                metrics,
            }),
            gate,
            queues,
            job_ids,
        }
    }
}

/// The memory budget `max_memory_bytes` asks for (`"auto"`: half the machine's or
/// the cgroup's memory, whichever is lower).
fn memory_budget(limit: MemoryLimit) -> MemoryBudget {
    match limit {
        MemoryLimit::Bytes(n) => MemoryBudget::new(n),
        MemoryLimit::Unlimited => MemoryBudget::unlimited(),
        MemoryLimit::Auto => {
            let machine = MachineMemory::read();
            match machine.auto_budget() {
                Some(n) => MemoryBudget::new(n),
                None => {
                    tracing::warn!("cannot read the machine's memory size: no memory budget");
                    MemoryBudget::unlimited()
                }
            }
        }
    }
}

/// Starts the registry actor on the calling thread's arbiter.
fn start_registry(state: RegistryState, seq: u64, log: &Log) -> Registry {
    let counts = state.counts();
    let log = log.clone();
    let actor = WorkerRegistry::create(move |_| WorkerRegistry::new(state, seq, log));
    Registry::new(actor, counts)
}

/// The TLS configuration from `[server] tls_cert_file` and `tls_key_file`, or `None`
/// when they are unset. A file that cannot be read or holds no usable PEM, or a key
/// that does not belong to the certificate, is an error naming the file.
fn load_tls(server: &ServerSettings) -> anyhow::Result<Option<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let (Some(cert_path), Some(key_path)) = (&server.tls_cert_file, &server.tls_key_file) else {
        return Ok(None);
    };
    let cert_name = cert_path.display();
    let key_name = key_path.display();
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            anyhow::anyhow!(
                "[server] tls_cert_file {cert_name}: cannot read a PEM certificate: {e}"
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!("[server] tls_cert_file {cert_name}: no PEM certificate in it");
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        anyhow::anyhow!("[server] tls_key_file {key_name}: cannot read a PEM private key: {e}")
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS: no usable protocol version")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow::anyhow!(
                "[server] TLS: the key in {key_name} does not fit the certificate in {cert_name}: {e}"
            )
        })?;
    Ok(Some(config))
}

/// Warns when the server is reachable beyond this machine without protection: a
/// non-loopback address served without TLS. The one place such start-up warnings go.
fn warn_if_exposed(server: &ServerSettings, tls: bool) {
    let ip = server.bind.ip();
    if !ip.is_loopback() && !tls {
        tracing::warn!(
            bind = %server.bind,
            "listening beyond loopback without TLS: requests and job bodies cross the \
             network in clear text; set [server] tls_cert_file and tls_key_file, or bind \
             to 127.0.0.1"
        );
    }
}

/// Starts the HTTP workers on `listener` (speaking TLS with `tls`). Each registers its
/// arbiter with the queue directory as it starts; queues will live there.
fn start_http(
    settings: &Settings,
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    state: web::Data<AppState>,
) -> anyhow::Result<(
    actix_rt::task::JoinHandle<std::io::Result<()>>,
    ServerHandle,
)> {
    let main_thread = std::thread::current().id();
    let server_settings = &settings.server;
    let body_timeout = BodyTimeout(Duration::from_secs(server_settings.body_timeout_secs));
    let auth = web::Data::new(http::Auth::new(&settings.auth).map_err(anyhow::Error::msg)?);
    let access_log = settings.log.access;
    let server = HttpServer::new(move || {
        if std::thread::current().id() != main_thread {
            state.queues.register_current_arbiter();
        }
        App::new()
            .app_data(state.clone())
            .app_data(body_timeout)
            .wrap(http::Admit)
            .app_data(auth.clone())
            // With auth off, not even a pass-through layer: it costs every request.
            .wrap(middleware::Condition::new(
                auth.enabled(),
                middleware::from_fn(http::authenticate),
            ))
            // Outermost, so what auth and the recovery gate refuse is counted and
            // logged too.
            .wrap(http::Observe {
                metrics: state.metrics.clone(),
                access: access_log,
            })
            .configure(http::configure)
            .default_service(web::to(http::not_found))
    })
    .workers(settings.worker_threads())
    // Signals are ours: actix-server would stop the whole actix system on one,
    // before the final snapshot could be taken.
    .disable_signals()
    // A client that closes its side has gone: drop its request at once, so a
    // fetch it abandoned puts its job back instead of writing it to a dead socket.
    .h1_allow_half_closed(false)
    // A pipelining client sends several requests before reading: without this, each
    // small response after the first waits behind Nagle's algorithm for the
    // client's delayed ACK (40 ms), and 16 pipelined requests ran 27x slower than
    // sequential ones.
    .tcp_nodelay(true)
    // A client gets this long for its request head; an idle keep-alive connection is
    // closed after keep_alive_secs (the body's own limit is `BodyTimeout`).
    .client_request_timeout(Duration::from_secs(
        server_settings.request_head_timeout_secs,
    ))
    .tls_handshake_timeout(Duration::from_secs(
        server_settings.request_head_timeout_secs,
    ))
    .keep_alive(Duration::from_secs(server_settings.keep_alive_secs))
    // actix-server counts connections per worker; past the cap, it stops accepting
    // and new connections wait in the listen backlog.
    .max_connections(settings.max_connections_per_worker())
    // The graceful stop closes whatever connection is still open after this long.
    .shutdown_timeout(server_settings.shutdown_timeout_secs);
    let server = match tls {
        Some(config) => server.listen_rustls_0_23(listener, config),
        None => server.listen(listener),
    }
    .context("cannot start the HTTP server")?
    .run();
    let handle = server.handle();
    Ok((actix_rt::spawn(server), handle))
}

/// Starts the snapshot actor, which goes on from the `last` snapshot recovery found
/// (its generation, and the fallback pair pruning must keep). With `seal` (recovery
/// accepted lost data) it takes one at once, so the damage is not met again next start.
async fn start_snapshots(
    dir: &Path,
    settings: &Settings,
    sources: SnapshotSources,
    log: &Log,
    last: (u64, Option<(u64, u64)>),
    seal: bool,
    metrics: &Metrics,
) -> anyhow::Result<Addr<SnapshotActor>> {
    let interval = Duration::from_secs(settings.storage.snapshot_interval_secs);
    let snapshots = SnapshotActor::new(
        dir.to_path_buf(),
        sources,
        log.clone(),
        interval,
        last.0,
        last.1,
    )
    .with_metrics(metrics.snapshots())
    .start();
    if seal {
        snapshots
            .send(TakeSnapshot::Always)
            .await
            .context("snapshot actor unavailable")??;
    }
    Ok(snapshots)
}

/// Starts the actor of every recovered queue; returns how many there were.
fn restore_queues(
    directory: &QueueDirectory,
    queues: Vec<RecoveredQueue>,
    progress: &RecoveryProgress,
) -> usize {
    progress.enter(Phase::RestoringQueues);
    let queue_count = queues.len();
    for queue in queues {
        let c = queue.state.counters();
        directory.insert_recovered(queue);
        progress.jobs_restored(c.ready + c.delayed + c.leased);
    }
    queue_count
}

/// Says what recovery found, once its progress lines have stopped; answers how long
/// it took.
fn log_recovered(reporter: ProgressReporter, queues: usize, dir: &Path) -> Duration {
    let done = reporter.finish();
    tracing::info!(
        queues,
        jobs = done.jobs,
        files = done.files,
        log_records = done.records,
        elapsed_ms = done.elapsed.as_millis() as u64,
        data_dir = %dir.display(),
        "recovered"
    );
    done.elapsed
}

/// `path` made absolute against the working directory (as given when that fails), so
/// the start log names the place whatever directory the server was started in.
fn absolute(path: &Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Where the settings came from, for the start log: the config file, or the built-in
/// defaults when none was read.
fn config_origin(file: Option<&Path>) -> String {
    match file {
        Some(path) => absolute(path).to_string_lossy().into_owned(),
        None => "built-in defaults".to_owned(),
    }
}

/// Creates the data directory if needed and takes its lock.
fn open_data_dir(dir: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    lock_data_dir(dir)
}

/// Takes the data directory's lock file, so two servers never share one directory.
fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("data directory {} is not writable", dir.display()))?;
    file.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => anyhow::anyhow!(
            "data directory {} is in use by another presque process",
            dir.display()
        ),
        std::fs::TryLockError::Error(e) => {
            anyhow::anyhow!("cannot lock {}: {e}", path.display())
        }
    })?;
    Ok(file)
}

impl Application {
    /// Recovers the data directory, binds the listener, starts the log, the actors and
    /// the HTTP workers. Must run inside an actix system.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // Bad TLS files stop the start before anything touches the data directory.
        let tls = load_tls(&settings.server)?;
        let dir = settings.storage.data_dir.clone();
        let lock = open_data_dir(&dir)?;
        // Logs progress until the queues are back (dropped at the end of recovery,
        // or on an error).
        let reporter = ProgressReporter::start(progress::interval_from_env());
        let recovered =
            recover_telling(&dir, settings.storage.accept_data_loss, reporter.progress())?;
        let log = Log::start(&dir, recovered.next_segment, settings.storage.fsync)?;
        let metrics = Arc::new(Metrics::new(settings.metrics.max_queues));
        log.time_fsyncs(metrics.fsync_seconds());
        // Bound only now: while the files are read (seconds for millions of jobs) a
        // client is refused at once rather than left hanging in the listen queue; from
        // here until the gate opens, requests get 503 with Retry-After.
        let listener = TcpListener::bind(settings.server.bind)
            .with_context(|| format!("cannot listen on {}", settings.server.bind))?;
        let address = listener
            .local_addr()
            .context("cannot read the bound address")?;
        // The registry lives on this (the system's) arbiter; queues on the HTTP workers'.
        let registry = start_registry(recovered.registry, recovered.registry_seq, &log);
        let ids = (recovered.next_incarnation, recovered.next_job_id);
        // The schedules' actor takes messages from the start, but runs (and fires)
        // only once the queues are restored: a run must not create an empty twin of
        // a queue being restored.
        let schedule_context = Context::<ScheduleActor>::new();
        let parts = Parts::new(
            &settings,
            ids,
            &log,
            registry.clone(),
            metrics.clone(),
            schedule_context.address(),
        );
        let scheme = if tls.is_some() { "https" } else { "http" };
        warn_if_exposed(&settings.server, tls.is_some());
        let (server, handle) = start_http(&settings, listener, tls, parts.state.clone())?;
        parts
            .queues
            .wait_for_arbiters(
                settings.worker_threads(),
                Instant::now() + ARBITERS_DEADLINE,
            )
            .await
            .map_err(|()| anyhow::anyhow!("the HTTP workers did not start"))?;
        let queue_count = restore_queues(&parts.queues, recovered.queues, reporter.progress());
        let recovery_time = log_recovered(reporter, queue_count, &dir);
        metrics.recovered_in(recovery_time.as_secs_f64());
        let schedules = schedule_context.run(
            ScheduleActor::new(
                recovered.schedules,
                recovered.schedule_seq,
                log.clone(),
                parts.queues.clone(),
                parts.job_ids.clone(),
            )
            .with_metrics(metrics.schedules()),
        );
        let sources = SnapshotSources {
            queues: parts.queues.clone(),
            job_ids: parts.job_ids.clone(),
            registry: registry.actor.clone(),
            schedules,
        };
        let last = (recovered.last_generation, recovered.fallback);
        let snapshots = start_snapshots(
            &dir,
            &settings,
            sources,
            &log,
            last,
            recovered.lost_data,
            &metrics,
        )
        .await?;
        parts.gate.open();

        let signals = ShutdownSignals::install()?;
        http::auth::warn_if_open(address, &settings.auth);
        let budget = &parts.queues.config().budget;
        let memory_budget_bytes = match budget.limit() {
            u64::MAX => "unlimited".to_owned(),
            n => n.to_string(),
        };
        // Every value as config.toml spells it, so the line can be pasted back.
        tracing::info!(
            %address,
            version = env!("CARGO_PKG_VERSION"),
            config = config_origin(settings.config_file.as_deref()).as_str(),
            data_dir = absolute(&dir).to_string_lossy().as_ref(),
            fsync = %settings.storage.fsync,
            max_memory_bytes = %settings.limits.max_memory_bytes,
            memory_budget_bytes,
            memory_used_bytes = budget.used(),
            auth = if settings.auth.tokens.is_empty() { "off" } else { "on" },
            access_log = settings.log.access,
            log_format = %settings.log.format,
            "presque listening on {scheme}://{address}"
        );
        Ok(Application {
            address,
            server,
            handle,
            snapshots,
            queues: parts.queues,
            log,
            signals,
            _lock: lock,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Serves until SIGINT/SIGTERM (or the HTTP server stopping by itself). On a
    /// signal: stops accepting connections, answers parked fetches, writes a final
    /// snapshot while the queues (which live on the HTTP workers) are still up, lets
    /// in-flight requests finish, then flushes the log. Changes made after that
    /// snapshot are in the log. A failed final snapshot loses nothing (the log holds
    /// every change) and is only logged; an error means the log could not be flushed,
    /// and an error whose [`exit_code`] is 3 means changes were lost.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let mut signals = self.signals;
        let mut server = self.server;
        let served: anyhow::Result<()> = tokio::select! {
            result = &mut server => {
                // Stopped from elsewhere: the queues are gone with their workers, so
                // there is nothing to snapshot; the log has every change.
                result.context("HTTP server task failed").and_then(|r| r.context("HTTP server failed"))
            }
            signal = signals.recv() => {
                tracing::info!(%signal, "shutting down: finishing in-flight requests");
                // A log stalled on a full disk gets a last few seconds, not forever.
                self.log.begin_shutdown();
                self.handle.pause().await;
                // Parked long-polls would hold the graceful stop for their whole wait.
                self.queues.release_waiters().await;
                match self.snapshots.send(TakeSnapshot::Always).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "no final snapshot; the log holds every change written"),
                    Err(e) => tracing::warn!(error = %e, "no final snapshot: snapshot actor unavailable"),
                }
                self.handle.stop(true).await;
                server.await.context("HTTP server task failed").and_then(|r| r.context("HTTP server failed"))
            }
        };
        // Whatever happened to the server, what the log holds is flushed; a loss it
        // reports decides the exit code.
        let flushed = self.log.shutdown().await;
        match (served, flushed) {
            (_, Err(e @ StorageError::Unwritten { .. })) => Err(e.into()),
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => Err(e.into()),
            (Ok(()), Ok(())) => {
                tracing::info!("presque stopped");
                Ok(())
            }
        }
    }
}

/// The process exit code for how a run ended; the README lists them.
pub fn exit_code(result: &anyhow::Result<()>) -> u8 {
    match result {
        Ok(()) => 0,
        Err(e)
            if e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<StorageError>(),
                    Some(StorageError::Unwritten { .. })
                )
            }) =>
        {
            EXIT_CHANGES_LOST
        }
        Err(_) => 1,
    }
}

/// Exit code of a stop that could not write every change to the log: changes (maybe
/// acknowledged, under `everysec` and `no`) are lost.
pub const EXIT_CHANGES_LOST: u8 = 3;
