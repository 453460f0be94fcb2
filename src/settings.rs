//! Settings: the typed form of `config.toml`, and how the file, environment variables
//! and command-line flags combine (flags over env over file over built-in defaults).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

pub use crate::storage::log::FsyncPolicy;

/// The largest `max_attempts` a queue may have.
pub const MAX_ATTEMPTS_LIMIT: u32 = 1000;

/// All settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub storage: StorageSettings,
    pub auth: AuthSettings,
    pub limits: LimitsSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    pub retry: RetrySettings,
    /// The config file these settings were read from; `None`: the built-in defaults.
    /// Set by [`Settings::load`], never read from a file.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
}

/// `[log]`: what the server logs, and how.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// One info line per request (target `presque::access`), and `X-Request-Id` on
    /// every response.
    pub access: bool,
    /// How log lines are written to stderr.
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            access: true,
            format: LogFormat::Text,
        }
    }
}

/// `[log] format`: `"text"` (one human-readable line per event) or `"json"` (one JSON
/// object per line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Longest `wait` a fetch may ask for, in seconds.
    pub max_wait_secs: u64,
    /// Fetches that may be parked on one queue at once.
    pub max_waiters_per_queue: usize,
    /// Seconds of silence after which a worker is shown as gone.
    pub worker_timeout_secs: u64,
    /// Failed deliveries (expired or failed leases) before a job is dead-lettered,
    /// for queues that have not set their own.
    pub default_max_attempts: u32,
    /// Seconds a new connection gets to send a complete request head (request line and
    /// headers); a slower one is answered 408 and closed.
    pub request_head_timeout_secs: u64,
    /// Seconds an idle keep-alive connection is kept open between requests.
    pub keep_alive_secs: u64,
    /// Seconds a request gets to send its whole body once its handler starts reading
    /// it; a slower one is answered 408 and its connection closed.
    pub body_timeout_secs: u64,
    /// Open connections served at once, across all HTTP workers; more wait in the
    /// listen backlog until one closes.
    pub max_connections: usize,
    /// Seconds a graceful stop waits for open connections before closing them.
    pub shutdown_timeout_secs: u64,
    /// PEM certificate chain; with `tls_key_file`, the server speaks only HTTPS.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: SocketAddr::from(([127, 0, 0, 1], 5000)),
            workers: 0,
            max_body_bytes: 1024 * 1024,
            max_wait_secs: 30,
            max_waiters_per_queue: 1024,
            worker_timeout_secs: 60,
            default_max_attempts: 5,
            request_head_timeout_secs: 5,
            keep_alive_secs: 5,
            body_timeout_secs: 10,
            max_connections: 10_000,
            shutdown_timeout_secs: 10,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Directory holding presque's data.
    pub data_dir: PathBuf,
    /// Seconds between snapshots.
    pub snapshot_interval_secs: u64,
    /// When the log reaches stable storage.
    pub fsync: FsyncPolicy,
    /// Start even if recovery must drop unreadable data (flag only, never in a file).
    #[serde(skip)]
    pub accept_data_loss: bool,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            data_dir: PathBuf::from("snapshots"),
            snapshot_interval_secs: 60,
            fsync: FsyncPolicy::EverySec,
            accept_data_loss: false,
        }
    }
}

/// `[auth]`: off (every request passes) unless `tokens` lists at least one token.
/// `Debug` never prints a token nor its digest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// The accepted bearer tokens, each with its role; replaced by `PRESQUE_TOKENS`.
    pub tokens: Vec<TokenEntry>,
    /// Read-only route groups anonymous GETs may use while auth is on (`"/"`,
    /// `"/status"`, ...).
    pub open_routes: Vec<String>,
}

/// One accepted token: its role and either the token or its SHA-256 (hex).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// `producer`, `consumer` or `admin`.
    pub role: String,
    /// The token itself.
    #[serde(default)]
    pub token: Option<String>,
    /// The token's SHA-256, 64 hex digits.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Prints the role only.
impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.sha256.is_some() {
            "<sha256 redacted>"
        } else {
            "<token redacted>"
        };
        f.debug_struct("TokenEntry")
            .field("role", &self.role)
            .field("secret", &format_args!("{kind}"))
            .finish()
    }
}

/// `[metrics]`: what `GET /metrics` shows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Per-queue series are written for the first this many queues in name order
    /// (each asked of its actor at every scrape); sums over every queue always are.
    pub max_queues: usize,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings { max_queues: 1000 }
    }
}

/// `[retry]`: what happens to a leased job that failed or whose lease ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// The retry backoff of queues that have not set their own (`/settings/NAME`);
    /// written as there: `{kind = "none"}` (the default: ready again at once),
    /// `{kind = "fixed", delay_secs = S}` or `{kind = "exponential", base_secs = B,
    /// factor = F, max_secs = M, jitter = J}`.
    #[serde(deserialize_with = "crate::queue::backoff::deserialize_spec")]
    pub backoff: crate::queue::backoff::Backoff,
}

/// `[limits]`: how much the server's jobs may hold.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSettings {
    /// What every queue's jobs together may cost in memory before creates are
    /// answered 507.
    pub max_memory_bytes: MemoryLimit,
    /// The most ready, delayed and leased jobs a queue without its own `max_jobs`
    /// holds; 0: unlimited.
    pub default_max_jobs: u64,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        LimitsSettings {
            max_memory_bytes: MemoryLimit::Auto,
            default_max_jobs: 0,
        }
    }
}

/// `max_memory_bytes`: `"auto"` (half the machine's memory, or of the cgroup's limit
/// if lower), `"unlimited"` (or 0), or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawMemoryLimit")]
pub enum MemoryLimit {
    Auto,
    Unlimited,
    Bytes(u64),
}

/// As config.toml spells it.
impl std::fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryLimit::Auto => f.write_str("auto"),
            MemoryLimit::Unlimited => f.write_str("unlimited"),
            MemoryLimit::Bytes(n) => n.fmt(f),
        }
    }
}

/// How `max_memory_bytes` is written: a number or a keyword.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawMemoryLimit {
    Bytes(u64),
    Keyword(String),
}

impl TryFrom<RawMemoryLimit> for MemoryLimit {
    type Error = String;

    fn try_from(raw: RawMemoryLimit) -> Result<Self, String> {
        match raw {
            RawMemoryLimit::Bytes(0) => Ok(MemoryLimit::Unlimited),
            RawMemoryLimit::Bytes(n) => Ok(MemoryLimit::Bytes(n)),
            RawMemoryLimit::Keyword(word) => match word.as_str() {
                "auto" => Ok(MemoryLimit::Auto),
                "unlimited" => Ok(MemoryLimit::Unlimited),
                _ => Err(format!(
                    "max_memory_bytes must be a number of bytes, \"auto\" or \"unlimited\", not {word:?}"
                )),
            },
        }
    }
}

/// Command-line flags (and the environment variables clap reads for them).
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "presque",
    version,
    about = "A local HTTP/JSON job queue server"
)]
pub struct Cli {
    /// Configuration file. Without it, ./config.toml is read if present.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on, overriding server.bind in the config file.
    #[arg(long, global = true, value_name = "HOST:PORT", env = "PRESQUE_BIND")]
    pub bind: Option<SocketAddr>,
    /// Data directory (created if missing), overriding storage.data_dir in the config file.
    #[arg(long, global = true, value_name = "DIR", env = "PRESQUE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log fsync policy, overriding storage.fsync in the config file.
    #[arg(long, global = true, value_enum, env = "PRESQUE_FSYNC")]
    pub fsync: Option<FsyncPolicy>,
    /// Start even when recovery finds damaged data it cannot read; only that data is
    /// lost (copies of the damaged files are kept with a .corrupt suffix).
    #[arg(long, global = true)]
    pub accept_data_loss: bool,
    /// Log format, overriding log.format in the config file.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        env = "PRESQUE_LOG_FORMAT"
    )]
    pub log_format: Option<LogFormat>,
    /// Without one, the server runs (as `serve`). The server's flags may come before
    /// or after `serve`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What the binary does: run the server (the default), talk to one as a client, or
/// print generated files.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Runs the server (what the binary does without a subcommand).
    Serve,
    /// Pushes a job, or one job per line of stdin (prints the ids).
    Push(crate::cli::PushArgs),
    /// Takes the job at the head of a queue and prints it (exit code 3: no job).
    Pop(crate::cli::PopArgs),
    /// Acks a leased job: done, it is gone.
    Ack(crate::cli::AckArgs),
    /// Reports a leased job failed, with an optional reason.
    Fail(crate::cli::FailArgs),
    /// Shows queues and their counters (a table, or --json).
    Stats(crate::cli::StatsArgs),
    /// Lists, retries or purges a queue's dead letters.
    Dead(crate::cli::DeadArgs),
    /// Opens or closes a queue for fetches.
    Control(crate::cli::ControlArgs),
    /// A live view of the queues and their rates, refreshed every second (Ctrl-C stops).
    Watch(crate::cli::WatchArgs),
    /// Runs COMMAND once per job of QUEUE, the job on its stdin: acks on exit 0,
    /// reports a failure with its stderr's tail otherwise.
    Work(crate::cli::WorkArgs),
    /// Prints a shell completion script to stdout (e.g. `presque completions bash >
    /// /etc/bash_completion.d/presque`).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Prints the man page (roff) to stdout (e.g. `presque man > presque.1`).
    Man,
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// A TOML error's message and position, without the quoted source line toml's own
/// `Display` adds: that line could hold a token.
fn parse_message(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{message} (line {line}, column {column})")
        }
        None => message.to_owned(),
    }
}

impl Settings {
    /// Parses a TOML document; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, SettingsError> {
        let settings: Settings = toml::from_str(text).map_err(|e| SettingsError::Parse {
            path: origin.to_path_buf(),
            message: parse_message(&e, text),
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// The settings for this process: `--config` (or ./config.toml if present, or the
    /// built-in defaults), then env and flags on top (clap has already folded the
    /// environment into `cli`, flags winning).
    pub fn load(cli: &Cli) -> Result<Self, SettingsError> {
        let local = Path::new("config.toml");
        let file = match &cli.config {
            Some(path) => Some(path.as_path()),
            None => Some(local).filter(|local| local.is_file()),
        };
        let mut settings = match file {
            Some(path) => Self::from_file(path)?,
            None => Settings::default(),
        };
        settings.config_file = file.map(Path::to_path_buf);
        if let Some(format) = cli.log_format {
            settings.log.format = format;
        }
        if let Some(bind) = cli.bind {
            settings.server.bind = bind;
        }
        if let Some(dir) = &cli.data_dir {
            settings.storage.data_dir = dir.clone();
        }
        if let Some(fsync) = cli.fsync {
            settings.storage.fsync = fsync;
        }
        settings.storage.accept_data_loss = cli.accept_data_loss;
        if let Some(raw) = std::env::var_os(crate::http::auth::TOKENS_ENV) {
            let raw = raw.to_str().ok_or_else(|| {
                SettingsError::Invalid(format!(
                    "{} is not valid UTF-8",
                    crate::http::auth::TOKENS_ENV
                ))
            })?;
            settings.auth.tokens =
                crate::http::auth::tokens_from_env(raw).map_err(SettingsError::Invalid)?;
        }
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        if self.server.max_body_bytes == 0 {
            return Err(SettingsError::Invalid(
                "[server] max_body_bytes must be at least 1".into(),
            ));
        }
        if self.server.max_waiters_per_queue == 0 {
            return Err(SettingsError::Invalid(
                "[server] max_waiters_per_queue must be at least 1".into(),
            ));
        }
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&self.server.default_max_attempts) {
            return Err(SettingsError::Invalid(format!(
                "[server] default_max_attempts must be from 1 to {MAX_ATTEMPTS_LIMIT}"
            )));
        }
        if self.server.worker_timeout_secs == 0 {
            return Err(SettingsError::Invalid(
                "[server] worker_timeout_secs must be at least 1".into(),
            ));
        }
        self.validate_connections()?;
        if self.storage.snapshot_interval_secs == 0 {
            return Err(SettingsError::Invalid(
                "[storage] snapshot_interval_secs must be at least 1".into(),
            ));
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(SettingsError::Invalid(
                "[storage] data_dir must not be empty".into(),
            ));
        }
        crate::http::Auth::new(&self.auth).map_err(SettingsError::Invalid)?;
        Ok(())
    }

    /// The `[server]` connection settings: timeouts of at least a second (actix reads
    /// 0 as "never"), a connection cap, and TLS files given both or neither.
    fn validate_connections(&self) -> Result<(), SettingsError> {
        let server = &self.server;
        for (name, value) in [
            (
                "request_head_timeout_secs",
                server.request_head_timeout_secs,
            ),
            ("keep_alive_secs", server.keep_alive_secs),
            ("body_timeout_secs", server.body_timeout_secs),
            ("shutdown_timeout_secs", server.shutdown_timeout_secs),
        ] {
            if value == 0 {
                return Err(SettingsError::Invalid(format!(
                    "[server] {name} must be at least 1"
                )));
            }
        }
        if server.max_connections == 0 {
            return Err(SettingsError::Invalid(
                "[server] max_connections must be at least 1".into(),
            ));
        }
        match (&server.tls_cert_file, &server.tls_key_file) {
            (Some(_), None) => Err(SettingsError::Invalid(
                "[server] tls_cert_file is set but tls_key_file is not: give both, or neither"
                    .into(),
            )),
            (None, Some(_)) => Err(SettingsError::Invalid(
                "[server] tls_key_file is set but tls_cert_file is not: give both, or neither"
                    .into(),
            )),
            _ => Ok(()),
        }
    }

    /// Connections each HTTP worker may hold: `max_connections` shared out (rounded
    /// up), since actix-server caps them per worker.
    pub fn max_connections_per_worker(&self) -> usize {
        self.server
            .max_connections
            .div_ceil(self.worker_threads())
            .max(1)
    }

    /// HTTP worker threads to run: `workers`, or one per core when it is 0.
    pub fn worker_threads(&self) -> usize {
        match self.server.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    /// The repository's `config.toml`: documentation of every key, and (by the test
    /// below) proof that [`Settings::default`] matches it.
    const EMBEDDED_CONFIG: &str = include_str!("../config.toml");

    use super::*;

    #[test]
    fn embedded_config_is_the_default() {
        let parsed = Settings::from_toml(EMBEDDED_CONFIG, Path::new("config.toml"));
        assert_eq!(parsed.ok(), Some(Settings::default()));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Settings::from_toml("[server]\nbindd = \"1.2.3.4:5\"\n", Path::new("x.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("bindd"), "{err}");
        let err = Settings::from_toml("[sever]\n", Path::new("x.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("sever"), "{err}");
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let s = Settings::from_toml("[server]\nworkers = 3\n", Path::new("x.toml"));
        let s = s.ok().unwrap_or_default();
        assert_eq!(s.server.workers, 3);
        assert_eq!(s.server.max_body_bytes, 1024 * 1024);
        assert_eq!(s.storage.data_dir, PathBuf::from("snapshots"));
    }

    #[test]
    fn flags_override_file() {
        let cli = Cli {
            config: None,
            bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            data_dir: Some(PathBuf::from("/tmp/x")),
            fsync: Some(FsyncPolicy::Always),
            accept_data_loss: true,
            log_format: Some(LogFormat::Json),
            command: None,
        };
        let s = Settings::load(&cli).ok().unwrap_or_default();
        assert_eq!(s.server.bind.port(), 0);
        assert_eq!(s.storage.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(s.storage.fsync, FsyncPolicy::Always);
        assert!(s.storage.accept_data_loss);
        assert_eq!(s.log.format, LogFormat::Json);
    }

    #[test]
    fn log_settings() {
        let s = Settings::from_toml("[log]\naccess = false\nformat = \"json\"\n", Path::new("x"));
        let s = s.ok().unwrap_or_default();
        assert!(!s.log.access);
        assert_eq!(s.log.format, LogFormat::Json);
        let err = Settings::from_toml("[log]\nformat = \"xml\"\n", Path::new("x"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("xml") && err.contains("json"), "{err}");
    }

    #[test]
    fn auth_tokens_parse_and_debug_redacts_them() {
        let text =
            "[auth]\ntokens = [{ role = \"producer\", token = \"abcdefghijklmnop-secret\" }]\n";
        let s = Settings::from_toml(text, Path::new("x"))
            .ok()
            .unwrap_or_default();
        assert_eq!(s.auth.tokens.len(), 1);
        let debug = format!("{s:?}");
        assert!(!debug.contains("abcdefghijklmnop-secret"), "{debug}");
        assert!(debug.contains("producer"), "{debug}");
        // A parse error names the line but never quotes it (it could hold a token).
        let text =
            "[auth]\ntokens = [{ role = \"producer\", tokn = \"abcdefghijklmnop-secret\" }]\n";
        let err = Settings::from_toml(text, Path::new("x"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("tokn") && err.contains("line 2"), "{err}");
        assert!(!err.contains("abcdefghijklmnop-secret"), "{err}");
        let text = "[auth]\ntokens = [{ role = \"boss\", token = \"abcdefghijklmnop-secret\" }]\n";
        let err = Settings::from_toml(text, Path::new("x"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unknown role"), "{err}");
        assert!(!err.contains("abcdefghijklmnop-secret"), "{err}");
    }

    #[test]
    fn fsync_values() {
        for (text, policy) in [
            ("always", FsyncPolicy::Always),
            ("everysec", FsyncPolicy::EverySec),
            ("no", FsyncPolicy::No),
        ] {
            let s =
                Settings::from_toml(&format!("[storage]\nfsync = \"{text}\"\n"), Path::new("x"));
            assert_eq!(s.ok().map(|s| s.storage.fsync), Some(policy));
        }
        let err = Settings::from_toml("[storage]\nfsync = \"sometimes\"\n", Path::new("x"));
        assert!(err
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("sometimes"));
        let err = Settings::from_toml("[storage]\naccept_data_loss = true\n", Path::new("x"));
        assert!(err.is_err());
    }

    #[test]
    fn connection_settings_are_checked() {
        for text in [
            "request_head_timeout_secs = 0",
            "keep_alive_secs = 0",
            "body_timeout_secs = 0",
            "shutdown_timeout_secs = 0",
            "max_connections = 0",
            "tls_cert_file = \"c.pem\"",
            "tls_key_file = \"k.pem\"",
        ] {
            let key = text.split(' ').next().unwrap_or_default();
            let err = Settings::from_toml(&format!("[server]\n{text}\n"), Path::new("x"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(key), "{text}: {err}");
        }
        let both = "[server]\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n";
        assert!(Settings::from_toml(both, Path::new("x")).is_ok());
    }

    #[test]
    fn max_connections_is_shared_out_per_worker() {
        let mut s = Settings::default();
        s.server.workers = 3;
        assert_eq!(s.max_connections_per_worker(), 3334);
        s.server.max_connections = 2;
        assert_eq!(s.max_connections_per_worker(), 1);
    }
}
