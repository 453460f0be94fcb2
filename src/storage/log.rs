//! The append-only log: a writer thread that owns the current segment file, and the
//! cloneable [`Log`] handle actors append through.
//!
//! Group commit: the writer takes every record waiting in the pending buffer, writes
//! them all, then (under `fsync = "always"`) issues one fsync for the whole batch
//! before telling each waiter its record is durable. Records that arrive while that
//! fsync runs form the next batch, so concurrent writers share fsyncs instead of
//! queueing behind each other's.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::oneshot;

use super::format::{append_record, log_header, LogRecordRef};
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

/// Bytes waiting for the writer, at most; appending past this blocks the appending
/// actor until the writer catches up, which is the back-pressure that keeps memory
/// bounded when the disk is slower than the clients.
const MAX_PENDING_BYTES: usize = 64 << 20;

/// Under `everysec` and `no`, how long the writer lets records gather after being
/// woken before it writes them: one wake-up (and one `write`) per this interval at
/// most, instead of one per burst of requests. It bounds what a killed process can
/// lose to about this long; `always` never waits.
const LINGER: Duration = Duration::from_millis(2);

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

type Done = oneshot::Sender<Result<(), StorageError>>;

/// A request to the writer other than appending, placed at a byte offset of the
/// pending buffer so it happens exactly between the records before and after it.
enum Control {
    /// Close the current segment (fsynced) and start the next; answers its number.
    Rotate(oneshot::Sender<Result<u64, StorageError>>),
    /// Flush and fsync, then stop.
    Shutdown(Done),
}

/// What producers hand the writer. Records are framed straight into one buffer: no
/// allocation or channel message per record, and the writer is woken only when it is
/// idle, so under load appends cost a memcpy under a short lock.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    waiters: Vec<Done>,
    controls: Vec<(usize, Control)>,
    writer_idle: bool,
    stopped: bool,
    /// Records appended since the start.
    appended: u64,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when there is work for the writer.
    work: Condvar,
    /// Signalled when the writer has taken the pending bytes.
    room: Condvar,
    health: Health,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves at worst a half-appended frame, which
        // recovery treats like a torn write; keep going rather than poison everything.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
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

fn stopped() -> StorageError {
    StorageError::LogFailed("log writer stopped".into())
}

/// A handle on the log; cheap to clone.
#[derive(Clone)]
pub struct Log {
    shared: Arc<Shared>,
    policy: FsyncPolicy,
}

impl Log {
    /// Starts the writer thread on a fresh segment `first_segment` in `dir`.
    pub fn start(
        dir: &Path,
        first_segment: u64,
        policy: FsyncPolicy,
    ) -> Result<Self, StorageError> {
        let file = open_segment(dir, first_segment)?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            work: Condvar::new(),
            room: Condvar::new(),
            health: Health::default(),
        });
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            number: first_segment,
            file,
            policy,
            dirty: false,
            last_sync: Instant::now(),
            shared: shared.clone(),
        };
        std::thread::Builder::new()
            .name("presque-log".into())
            .spawn(move || writer.run())
            .map_err(|e| StorageError::io("cannot start the log writer for", dir, e))?;
        Ok(Log { shared, policy })
    }

    /// Appends one record; refused once the log has failed.
    pub fn append(&self, record: &LogRecordRef<'_>) -> Result<Durable, StorageError> {
        self.shared.health.check()?;
        let (done, durable) = if self.policy == FsyncPolicy::Always {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Durable::Pending(rx))
        } else {
            (None, Durable::Now)
        };
        let mut pending = self.shared.lock();
        while pending.buf.len() > MAX_PENDING_BYTES && !pending.stopped {
            pending = self
                .shared
                .room
                .wait(pending)
                .unwrap_or_else(|e| e.into_inner());
        }
        if pending.stopped {
            return Err(stopped());
        }
        // Framed straight into the shared buffer: no allocation or copy per record.
        append_record(record, &mut pending.buf).map_err(StorageError::Encode)?;
        pending.appended += 1;
        pending.waiters.extend(done);
        self.wake(pending);
        Ok(durable)
    }

    /// Wakes the writer if it sleeps; otherwise it will find the work on its own.
    fn wake(&self, mut pending: std::sync::MutexGuard<'_, Pending>) {
        let idle = std::mem::replace(&mut pending.writer_idle, false);
        drop(pending);
        if idle {
            self.shared.work.notify_one();
        }
    }

    fn control(&self, control: Control) -> Result<(), StorageError> {
        let mut pending = self.shared.lock();
        if pending.stopped {
            return Err(stopped());
        }
        let at = pending.buf.len();
        pending.controls.push((at, control));
        self.wake(pending);
        Ok(())
    }

    /// How many records have been appended since the start: unchanged means nothing
    /// changed.
    pub fn appended(&self) -> u64 {
        self.shared.lock().appended
    }

    /// Starts a new segment; returns its number. Every record appended before this
    /// call is in an earlier segment.
    pub async fn rotate(&self) -> Result<u64, StorageError> {
        let (tx, rx) = oneshot::channel();
        self.control(Control::Rotate(tx))?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Flushes, fsyncs and stops the writer.
    pub async fn shutdown(&self) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.control(Control::Shutdown(tx))?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
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
    Ok((path, BufWriter::with_capacity(1 << 16, file)))
}

struct Writer {
    dir: PathBuf,
    number: u64,
    file: (PathBuf, BufWriter<File>),
    policy: FsyncPolicy,
    dirty: bool,
    last_sync: Instant,
    shared: Arc<Shared>,
}

impl Writer {
    fn run(&mut self) {
        let mut spare = Vec::new();
        loop {
            let (buf, waiters, controls) = {
                let mut pending = self.shared.lock();
                while pending.buf.is_empty() && pending.controls.is_empty() {
                    pending.writer_idle = true;
                    if self.policy == FsyncPolicy::EverySec && self.dirty {
                        let left = Duration::from_secs(1).saturating_sub(self.last_sync.elapsed());
                        let (guard, timeout) = self
                            .shared
                            .work
                            .wait_timeout(pending, left)
                            .unwrap_or_else(|e| e.into_inner());
                        pending = guard;
                        if timeout.timed_out()
                            && pending.buf.is_empty()
                            && pending.controls.is_empty()
                        {
                            pending.writer_idle = false;
                            drop(pending);
                            let result = self.sync();
                            self.shared.health.note(&result);
                            pending = self.shared.lock();
                        }
                    } else {
                        pending = self
                            .shared
                            .work
                            .wait(pending)
                            .unwrap_or_else(|e| e.into_inner());
                    }
                }
                pending.writer_idle = false;
                if self.policy != FsyncPolicy::Always && pending.controls.is_empty() {
                    drop(pending);
                    std::thread::sleep(LINGER);
                    pending = self.shared.lock();
                }
                let buf = std::mem::replace(&mut pending.buf, std::mem::take(&mut spare));
                let taken = (
                    buf,
                    std::mem::take(&mut pending.waiters),
                    std::mem::take(&mut pending.controls),
                );
                self.shared.room.notify_all();
                taken
            };
            let stop = self.handle_batch(&buf, waiters, controls);
            spare = buf;
            spare.clear();
            if stop {
                let mut pending = self.shared.lock();
                pending.stopped = true;
                drop(pending);
                self.shared.room.notify_all();
                return;
            }
        }
    }

    /// Writes a batch; returns true when told to shut down.
    fn handle_batch(
        &mut self,
        buf: &[u8],
        waiters: Vec<Done>,
        controls: Vec<(usize, Control)>,
    ) -> bool {
        let mut result: Result<(), StorageError> = self.shared.health.check();
        let mut written = 0;
        let mut stop = None;
        for (at, control) in controls {
            if result.is_ok() {
                result = self.write(&buf[written..at]);
            }
            written = at;
            match control {
                Control::Rotate(reply) => {
                    let rotated = result.clone().and_then(|()| self.rotate());
                    if let Err(e) = &rotated {
                        result = Err(e.clone());
                    }
                    let _ = reply.send(rotated);
                }
                Control::Shutdown(reply) => stop = Some(reply),
            }
        }
        if result.is_ok() {
            result = self.write(&buf[written..]);
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
        self.shared.health.note(&result);
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

    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.dirty = true;
        self.file
            .1
            .write_all(bytes)
            .map_err(|e| StorageError::io("cannot write log segment", &self.file.0, e))
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
