//! The append-only log: a writer thread that owns the current segment file, and the
//! cloneable [`Log`] handle actors append through.
//!
//! Group commit: the writer takes every record waiting in its channel, writes them
//! all, then (under `fsync = "always"`) issues one fsync for the whole batch before
//! telling each waiter its record is durable. Records that arrive while that fsync
//! runs form the next batch, so concurrent writers share fsyncs instead of queueing
//! behind each other's.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::oneshot;

use super::format::{encode_record, log_header, LogRecordRef};
use super::{sync_dir, StorageError};

/// When the log is flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Before the client is answered: nothing acknowledged is lost.
    Always,
    /// At least once a second: a crash loses at most about a second of changes.
    #[serde(rename = "everysec")]
    #[value(name = "everysec")]
    EverySec,
    /// Left to the operating system.
    No,
}

/// Records waiting for the writer, at most; appending past this blocks the appending
/// actor, which is the back-pressure that keeps memory bounded.
const CHANNEL_CAPACITY: usize = 65_536;

/// Largest batch written between two fsyncs.
const MAX_BATCH: usize = 8_192;

/// The file name of log segment `n`.
pub fn segment_file_name(n: u64) -> String {
    format!("log-{n:020}.presque")
}

/// The segment number a file name denotes, if it is a log segment.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("log-")?
        .strip_suffix(".presque")?
        .parse()
        .ok()
}

enum Command {
    Append {
        frame: Vec<u8>,
        done: Option<oneshot::Sender<Result<(), StorageError>>>,
    },
    /// Close the current segment (fsynced) and start the next; answers its number.
    Rotate(oneshot::Sender<Result<u64, StorageError>>),
    /// Flush and fsync, then stop.
    Shutdown(oneshot::Sender<Result<(), StorageError>>),
}

/// Whether an appended record has reached stable storage as the policy requires.
pub enum Durable {
    /// Nothing to wait for (the policy does not wait for fsync).
    Now,
    /// Resolves once the record's batch is fsynced.
    Pending(oneshot::Receiver<Result<(), StorageError>>),
}

impl Durable {
    /// Waits until the record is durable (or its write failed).
    pub async fn wait(self) -> Result<(), StorageError> {
        match self {
            Durable::Now => Ok(()),
            Durable::Pending(rx) => rx
                .await
                .unwrap_or_else(|_| Err(StorageError::LogFailed("log writer stopped".into()))),
        }
    }
}

/// Whether the log can still be written, shared by the writer and every handle. Once
/// a write or fsync fails, every later change is refused: a change that cannot be
/// logged must not be acknowledged.
#[derive(Default)]
struct Health {
    failed: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Health {
    fn check(&self) -> Result<(), StorageError> {
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let reason = self
            .reason
            .lock()
            .map(|r| r.clone().unwrap_or_default())
            .unwrap_or_default();
        Err(StorageError::LogFailed(reason))
    }

    fn note(&self, result: &Result<(), StorageError>) {
        if let Err(e) = result {
            if let Ok(mut reason) = self.reason.lock() {
                reason.get_or_insert_with(|| e.to_string());
            }
            if !self.failed.swap(true, Ordering::AcqRel) {
                tracing::error!(error = %e, "the log cannot be written; refusing further changes");
            }
        }
    }
}

/// A handle on the log; cheap to clone.
#[derive(Clone)]
pub struct Log {
    tx: SyncSender<Command>,
    policy: FsyncPolicy,
    health: Arc<Health>,
}

impl Log {
    /// Starts the writer thread on a fresh segment `first_segment` in `dir`.
    pub fn start(
        dir: &Path,
        first_segment: u64,
        policy: FsyncPolicy,
    ) -> Result<Self, StorageError> {
        let segment = open_segment(dir, first_segment)?;
        let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
        let health = Arc::new(Health::default());
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            number: first_segment,
            file: segment,
            policy,
            dirty: false,
            last_sync: Instant::now(),
            health: health.clone(),
        };
        std::thread::Builder::new()
            .name("presque-log".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StorageError::io("cannot start the log writer for", dir, e))?;
        Ok(Log { tx, policy, health })
    }

    pub fn policy(&self) -> FsyncPolicy {
        self.policy
    }

    /// Appends one record; refused once the log has failed.
    pub fn append(&self, record: &LogRecordRef<'_>) -> Result<Durable, StorageError> {
        self.health.check()?;
        let frame = encode_record(record).map_err(StorageError::Encode)?;
        let (done, durable) = if self.policy == FsyncPolicy::Always {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Durable::Pending(rx))
        } else {
            (None, Durable::Now)
        };
        let command = Command::Append { frame, done };
        // try_send first: the common case never blocks; a full channel waits.
        match self.tx.try_send(command) {
            Ok(()) => Ok(durable),
            Err(TrySendError::Full(command)) => self
                .tx
                .send(command)
                .map(|()| durable)
                .map_err(|_| StorageError::LogFailed("log writer stopped".into())),
            Err(TrySendError::Disconnected(_)) => {
                Err(StorageError::LogFailed("log writer stopped".into()))
            }
        }
    }

    /// Starts a new segment; returns its number. Every record appended before this
    /// call is in an earlier segment.
    pub async fn rotate(&self) -> Result<u64, StorageError> {
        let (tx, rx) = oneshot::channel();
        self.send_blocking(Command::Rotate(tx))?;
        rx.await
            .unwrap_or_else(|_| Err(StorageError::LogFailed("log writer stopped".into())))
    }

    /// Flushes, fsyncs and stops the writer.
    pub async fn shutdown(&self) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.send_blocking(Command::Shutdown(tx))?;
        rx.await
            .unwrap_or_else(|_| Err(StorageError::LogFailed("log writer stopped".into())))
    }

    fn send_blocking(&self, command: Command) -> Result<(), StorageError> {
        self.tx
            .send(command)
            .map_err(|_| StorageError::LogFailed("log writer stopped".into()))
    }
}

fn open_segment(dir: &Path, number: u64) -> Result<(PathBuf, BufWriter<File>), StorageError> {
    let path = dir.join(segment_file_name(number));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| StorageError::io("cannot create log segment", &path, e))?;
    file.write_all(&log_header(number))
        .and_then(|()| file.sync_all())
        .map_err(|e| StorageError::io("cannot write log segment", &path, e))?;
    sync_dir(dir)?;
    Ok((path, BufWriter::with_capacity(1 << 20, file)))
}

struct Writer {
    dir: PathBuf,
    number: u64,
    file: (PathBuf, BufWriter<File>),
    policy: FsyncPolicy,
    dirty: bool,
    last_sync: Instant,
    health: Arc<Health>,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Command>) {
        loop {
            let timeout = if self.policy == FsyncPolicy::EverySec && self.dirty {
                Duration::from_secs(1).saturating_sub(self.last_sync.elapsed())
            } else {
                Duration::from_secs(3600)
            };
            let first = match rx.recv_timeout(timeout) {
                Ok(command) => command,
                Err(RecvTimeoutError::Timeout) => {
                    if self.dirty {
                        let result = self.sync();
                        self.health.note(&result);
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let result = self.sync();
                    self.health.note(&result);
                    return;
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            if self.handle_batch(batch) {
                return;
            }
        }
    }

    /// Writes a batch; returns true when told to shut down.
    fn handle_batch(&mut self, batch: Vec<Command>) -> bool {
        let mut waiters = Vec::new();
        let mut result: Result<(), StorageError> = self.health.check();
        let mut stop = None;
        for command in batch {
            match command {
                Command::Append { frame, done } => {
                    if result.is_ok() {
                        result = self.file.1.write_all(&frame).map_err(|e| {
                            StorageError::io("cannot write log segment", &self.file.0, e)
                        });
                        self.dirty = true;
                    }
                    if let Some(done) = done {
                        waiters.push(done);
                    }
                }
                Command::Rotate(reply) => {
                    let rotated = result.clone().and_then(|()| self.rotate());
                    if let Err(e) = &rotated {
                        result = Err(e.clone());
                    }
                    let _ = reply.send(rotated);
                }
                Command::Shutdown(reply) => stop = Some(reply),
            }
        }
        if result.is_ok() {
            let must_sync = match self.policy {
                FsyncPolicy::Always => !waiters.is_empty() || stop.is_some(),
                FsyncPolicy::EverySec => {
                    stop.is_some() || self.last_sync.elapsed() >= Duration::from_secs(1)
                }
                FsyncPolicy::No => stop.is_some(),
            };
            result = if must_sync { self.sync() } else { self.flush() };
        }
        self.health.note(&result);
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
        match stop {
            Some(reply) => {
                let _ = reply.send(result);
                true
            }
            None => false,
        }
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        self.file
            .1
            .flush()
            .map_err(|e| StorageError::io("cannot write log segment", &self.file.0, e))
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.flush()?;
        self.file
            .1
            .get_ref()
            .sync_data()
            .map_err(|e| StorageError::io("cannot fsync log segment", &self.file.0, e))?;
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn rotate(&mut self) -> Result<u64, StorageError> {
        self.sync()?;
        let next = self.number + 1;
        self.file = open_segment(&self.dir, next)?;
        self.number = next;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_file_name(42), "log-00000000000000000042.presque");
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_segment_file_name("log-x.presque"), None);
        assert_eq!(parse_segment_file_name("snapshot-1.presque"), None);
    }
}
