//! The append-only log: a writer thread that owns the current segment file, and the
//! cloneable [`Log`] handle actors append through.
//!
//! Group commit: the writer takes every record waiting in the pending buffer, writes
//! them all, then (under `fsync = "always"`) issues one fsync for the whole batch
//! before telling each waiter its record is durable. Records that arrive while that
//! fsync runs form the next batch, so concurrent writers share fsyncs instead of
//! queueing behind each other's.
//!
//! A change is refused before it is logged or applied whenever the log cannot make it
//! durable, so a refusal changes nothing: while a failed write or fsync is retried
//! (the writer holds what it could not write), once the data directory or its lock is
//! gone, and when no disk space can be reserved ahead for it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
use serde::Deserialize;
use tokio::sync::oneshot;

use super::format::{append_record, log_header, LogRecordRef, LOG_HEADER_LEN};
use super::watch::{DirIdentity, DirWatch, CHECK_INTERVAL};
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

/// As `config.toml` and `--fsync` spell it, so the start log reads like the setting.
impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::EverySec => "everysec",
            FsyncPolicy::No => "no",
        })
    }
}

/// Bytes waiting for the writer, at most; appending past this blocks the appending
/// actor until the writer catches up, which is the back-pressure that keeps memory
/// bounded when the disk is slower than the clients.
const MAX_PENDING_BYTES: usize = 64 << 20;

/// Under `everysec` and `no`, how long the writer lets records gather after being
/// woken before it writes them: one wake-up (and one `write`) per this interval at
/// most, instead of one per burst of requests. It bounds what a killed process can
/// lose to about this long. `always` waits so only while no record gathered is
/// awaited (lease grants alone).
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
    /// The writer lets a batch of records nobody waits for gather (`always`): an
    /// awaited record ends that at once.
    lingering: bool,
    stopped: bool,
    /// The server is stopping: a stalled writer retries only a little longer.
    stopping: bool,
    /// Records appended since the start.
    appended: u64,
    /// Bytes that may still be appended into disk space the writer has reserved;
    /// `None` where the file system cannot reserve (then a full disk is met by the
    /// write itself, and the writer holds and retries).
    budget: Option<u64>,
    /// Why the writer could not reserve more: appends past the budget are refused.
    reserve_failed: Option<String>,
    /// Budget an appender is waiting for.
    wanted: u64,
    /// The largest record refused for want of space since the last reservation that
    /// covered it: space counts as available again only once it fits.
    refused: u64,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when there is work for the writer.
    work: Condvar,
    /// Signalled when the writer has taken the pending bytes.
    room: Condvar,
    health: Health,
    /// Where fsync times go (`/metrics`), once the server hands it over.
    fsync_seconds: OnceLock<Histogram>,
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
    /// Waits until the record is durable (or it can never be).
    pub async fn wait(self) -> Result<(), StorageError> {
        match self {
            Durable::Now => Ok(()),
            Durable::Pending(rx) => rx.await.unwrap_or_else(|_| Err(stopped())),
        }
    }
}

const HEALTHY: u8 = 0;
/// A write or fsync failed: the writer holds what it could not write and retries.
const STALLED: u8 = 1;
/// The data directory or its lock is gone: nothing written now would survive.
const BROKEN: u8 = 2;

/// Whether the log takes changes now, shared by the writer and every handle. A change
/// is refused *before* it is logged or applied whenever the log cannot make it
/// durable, so a refusal changes nothing.
#[derive(Default)]
struct Health {
    state: AtomicU8,
    reason: Mutex<String>,
}

impl Health {
    fn check(&self) -> Result<(), StorageError> {
        match self.state.load(Ordering::Acquire) {
            HEALTHY => Ok(()),
            state => Err(StorageError::Unavailable {
                reason: self.reason(),
                retry: state == STALLED,
            }),
        }
    }

    fn reason(&self) -> String {
        self.reason.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn set(&self, state: u8, reason: String) {
        if let Ok(mut r) = self.reason.lock() {
            *r = reason;
        }
        self.state.store(state, Ordering::Release);
    }

    fn is(&self, state: u8) -> bool {
        self.state.load(Ordering::Acquire) == state
    }
}

fn stopped() -> StorageError {
    StorageError::Unavailable {
        reason: "the log writer has stopped".into(),
        retry: false,
    }
}

/// A handle on the log; cheap to clone.
#[derive(Clone)]
pub struct Log {
    shared: Arc<Shared>,
    policy: FsyncPolicy,
}

impl Log {
    /// Starts the writer thread on a fresh segment `first_segment` in `dir`. The
    /// directory's identity (and its `LOCK` file's, if present) is recorded: if either
    /// is removed or replaced while the server runs, changes are refused.
    pub fn start(
        dir: &Path,
        first_segment: u64,
        policy: FsyncPolicy,
    ) -> Result<Self, StorageError> {
        let identity = DirIdentity::of(dir)?;
        release_old_reserves(dir);
        let segment = Segment::create(dir, first_segment)?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            work: Condvar::new(),
            room: Condvar::new(),
            health: Health::default(),
            fsync_seconds: OnceLock::new(),
        });
        let mut writer = Writer {
            reservable: true,
            last_short_reserve: None,
            identity,
            segment,
            policy,
            unsynced: Vec::new(),
            last_sync: Instant::now(),
            watch: DirWatch::start(dir),
            held: None,
            shutdown: None,
            stopping_since: None,
            stalled_since: None,
            lost_bytes: 0,
            shared: shared.clone(),
        };
        writer.reserve(0);
        std::thread::Builder::new()
            .name("presque-log".into())
            .spawn(move || writer.run())
            .map_err(|e| StorageError::io("cannot start the log writer for", dir, e))?;
        Ok(Log { shared, policy })
    }

    /// Times every fsync of the log's group commits into `histogram` from now on.
    pub fn time_fsyncs(&self, histogram: Histogram) {
        let _ = self.shared.fsync_seconds.set(histogram);
    }

    /// Refuses at once when the log cannot take a change now (see [`Log::append`]).
    pub fn check(&self) -> Result<(), StorageError> {
        self.shared.health.check()
    }

    /// Appends one record. Refused, with nothing written, while the log cannot make
    /// changes durable (a failed write not yet retried successfully, or a removed data
    /// directory): the caller must then not apply the change.
    pub fn append(&self, record: &LogRecordRef<'_>) -> Result<Durable, StorageError> {
        self.append_as(record, true)
    }

    /// Appends a record, in order with every other, that nobody waits for: its change
    /// is answered at once even under `always`. Only for changes whose loss in a crash
    /// the protocol already allows (a lease grant: losing it re-delivers the job, as
    /// its lease running out would). A later awaited record is durable only once this
    /// one is, since the log is written in order.
    pub fn append_unawaited(&self, record: &LogRecordRef<'_>) -> Result<(), StorageError> {
        self.append_as(record, false).map(|_| ())
    }

    fn append_as(&self, record: &LogRecordRef<'_>, awaited: bool) -> Result<Durable, StorageError> {
        self.shared.health.check()?;
        let (done, durable) = if awaited && self.policy == FsyncPolicy::Always {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Durable::Pending(rx))
        } else {
            (None, Durable::Now)
        };
        let mut pending = self.shared.lock();
        loop {
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
            // Again after any wait: the writer may have stalled meanwhile.
            self.shared.health.check()?;
            // Framed straight into the shared buffer: no allocation or copy per record.
            let start = pending.buf.len();
            append_record(record, &mut pending.buf).map_err(StorageError::EncodeRecord)?;
            let frame = (pending.buf.len() - start) as u64;
            match pending.budget {
                Some(budget) if budget < frame => {
                    // Not (yet) room for it on the disk: taken back, nothing changed.
                    pending.buf.truncate(start);
                    if let Some(reason) = pending.reserve_failed.clone() {
                        pending.refused = pending.refused.max(frame);
                        return Err(StorageError::Unavailable {
                            reason: format!("no disk space for the log: {reason}"),
                            retry: true,
                        });
                    }
                    pending.wanted = pending.wanted.max(frame);
                    pending.writer_idle = false;
                    self.shared.work.notify_one();
                    pending = self
                        .shared
                        .room
                        .wait(pending)
                        .unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                Some(budget) => pending.budget = Some(budget - frame),
                None => {}
            }
            break;
        }
        pending.appended += 1;
        let urgent = done.is_some() && pending.lingering;
        pending.waiters.extend(done);
        self.wake(pending, urgent);
        Ok(durable)
    }

    /// Wakes the writer if it sleeps (or, when `urgent`, lingers); otherwise it will
    /// find the work on its own.
    fn wake(&self, mut pending: std::sync::MutexGuard<'_, Pending>, urgent: bool) {
        let idle = std::mem::replace(&mut pending.writer_idle, false);
        drop(pending);
        if idle || urgent {
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
        self.wake(pending, false);
        Ok(())
    }

    /// How many records have been appended since the start: unchanged means nothing
    /// changed.
    pub fn appended(&self) -> u64 {
        self.shared.lock().appended
    }

    /// Starts a new segment; returns its number. Every record appended before this
    /// call is in an earlier segment. Refused while the writer is stalled.
    pub async fn rotate(&self) -> Result<u64, StorageError> {
        let (tx, rx) = oneshot::channel();
        self.control(Control::Rotate(tx))?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// The server is stopping: a stalled writer gives up after [`STOP_GRACE`] more of
    /// retrying, answering the changes it holds as failed, so the stop cannot hang on
    /// a disk that never frees.
    pub fn begin_shutdown(&self) {
        let mut pending = self.shared.lock();
        pending.stopping = true;
        drop(pending);
        self.shared.work.notify_one();
        self.shared.room.notify_all();
    }

    /// Flushes, fsyncs and stops the writer. [`StorageError::Unwritten`] means changes
    /// that may have been acknowledged never reached the disk.
    pub async fn shutdown(&self) -> Result<(), StorageError> {
        self.begin_shutdown();
        let (tx, rx) = oneshot::channel();
        self.control(Control::Shutdown(tx))?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// How often a stalled writer tries again to write what it holds.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// How long a stalled writer keeps retrying once the server is stopping.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Bytes written since the last fsync are kept until it succeeds: after a failed
/// fsync the kernel may have dropped them, so they are written again. Past this size
/// the writer fsyncs instead of keeping more (under `no`, the only fsyncs besides
/// rotations and the stop). The copy is memory the server holds on top of its jobs:
/// at 64 MiB it cost about 60 bytes per queued 100-byte job after a fill of a million
/// (`bench/run`'s RSS figure), at 8 MiB it costs a few.
const MAX_UNSYNCED_COPY: usize = 8 << 20;

/// The action of the error a failed fsync of the segment gives: [`Writer::stall`]
/// tells a failed fsync from a failed write by it.
const FSYNC_FAILED: &str = "cannot fsync log segment";

/// The segment being written.
struct Segment {
    path: PathBuf,
    file: File,
    number: u64,
    /// Bytes in the file that belong to it (the header and whole batches).
    len: u64,
    /// Bytes known to be on stable storage.
    synced_len: u64,
    /// The file's space is reserved up to here (past `len`, without growing it).
    reserved: u64,
}

impl Segment {
    /// Creates segment `number` with its header, fsynced. A file of that number can
    /// only be left over from an earlier failed attempt (the writer only goes
    /// forward), so it is replaced; on failure nothing of it stays behind.
    fn create(dir: &Path, number: u64) -> Result<Self, StorageError> {
        let path = dir.join(segment_file_name(number));
        let created = (|| {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| StorageError::io("cannot create log segment", &path, e))?;
            file.write_all_at(&log_header(number), 0)
                .and_then(|()| file.sync_all())
                .map_err(|e| StorageError::io("cannot write log segment", &path, e))?;
            sync_dir(dir)?;
            Ok(file)
        })();
        match created {
            Ok(file) => Ok(Segment {
                path,
                file,
                number,
                len: LOG_HEADER_LEN as u64,
                synced_len: LOG_HEADER_LEN as u64,
                reserved: LOG_HEADER_LEN as u64,
            }),
            Err(e) => {
                // An empty or half-written header holds nothing; left behind it would
                // only be in the way of the next attempt.
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }
}

impl Segment {
    /// Gives back the space reserved past the end of a segment no longer written to.
    fn release_reserve(&self) {
        if self.reserved > self.len {
            let _ = release_space(&self.file, self.len, self.reserved);
        }
        // Cutting a file to its own size drops what is allocated past its end on the
        // file systems where a punched hole past the end is a no-op.
        let _ = self.file.set_len(self.len);
    }
}

/// Gives back the space a server that stopped (or was killed) had reserved past the
/// end of its segments: nothing is ever appended to them again.
fn release_old_reserves(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_str().and_then(parse_segment_file_name).is_none() {
            continue;
        }
        if let Ok(file) = OpenOptions::new().write(true).open(entry.path()) {
            if let Ok(meta) = file.metadata() {
                let _ = release_space(&file, meta.len(), meta.len() + RESERVE_AHEAD * 4);
                let _ = file.set_len(meta.len());
            }
        }
    }
}

/// How far ahead of the records the writer reserves disk space when it can.
const RESERVE_AHEAD: u64 = 8 << 20;

/// Reserves `file`'s space from `from` to `to` without changing its size.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // fallocate has no safe wrapper in std
fn reserve_space(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if to <= from {
        return Ok(());
    }
    let (Ok(offset), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
        return Err(std::io::Error::from_raw_os_error(libc::EFBIG));
    };
    // SAFETY: a plain syscall on a file descriptor we own.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn reserve_space(_: &File, _: u64, _: u64) -> std::io::Result<()> {
    Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}

/// Reserves `file`'s space from `reserved` up to `ahead`, or as close to it as the
/// disk allows: after each refusal the distance past `needed` (or past `reserved`, if
/// further) is halved, down to 4 KiB. Returns how far it reserved, or the last error;
/// at once when the file system cannot reserve at all.
fn reserve_most(file: &File, reserved: u64, needed: u64, ahead: u64) -> std::io::Result<u64> {
    let floor = needed.max(reserved);
    let mut target = ahead;
    loop {
        match reserve_space(file, reserved, target) {
            Ok(()) => return Ok(target),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Err(e),
            Err(_) if target > floor + 4096 => target = floor + (target - floor) / 2,
            Err(e) => return Err(e),
        }
    }
}

/// Frees `file`'s reserved space from `from` to `to` (past its end).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // fallocate has no safe wrapper in std
fn release_space(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
        return Ok(());
    };
    // SAFETY: a plain syscall on a file descriptor we own.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn release_space(_: &File, _: u64, _: u64) -> std::io::Result<()> {
    Ok(())
}

/// Records the writer could not write yet, and whoever waits on them.
struct Held {
    buf: Vec<u8>,
    waiters: Vec<Done>,
}

struct Batch {
    buf: Vec<u8>,
    waiters: Vec<Done>,
    controls: Vec<(usize, Control)>,
    stopping: bool,
}

struct Writer {
    /// Whether the file system reserves space (`fallocate`); a disk that fills up
    /// then refuses new records cleanly instead of failing a write.
    reservable: bool,
    /// When a reservation last fell short of its target: not tried again at once.
    last_short_reserve: Option<Instant>,
    /// The data directory, and what it must still be.
    identity: DirIdentity,
    segment: Segment,
    policy: FsyncPolicy,
    /// A copy of the bytes written since the last good fsync: what is written again
    /// if an fsync fails.
    unsynced: Vec<u8>,
    last_sync: Instant,
    /// When to check `identity` in full.
    watch: DirWatch,
    /// Set while stalled: what must be written before anything else.
    held: Option<Held>,
    shutdown: Option<Done>,
    stopping_since: Option<Instant>,
    /// When the writer began holding records it could not write.
    stalled_since: Option<Instant>,
    /// Bytes of records dropped without being written (given up at stop, or arriving
    /// after the directory was lost).
    lost_bytes: u64,
    shared: Arc<Shared>,
}

impl Writer {
    fn run(&mut self) {
        let mut spare = Vec::new();
        loop {
            let batch = self.take(std::mem::take(&mut spare));
            if batch.stopping && self.stopping_since.is_none() {
                self.stopping_since = Some(Instant::now());
            }
            spare = self.handle(batch);
            spare.clear();
            if self.shared.health.is(HEALTHY) {
                self.reserve(0);
            }
            if self.shutdown.is_some() && self.held.is_none() {
                self.finish();
                return;
            }
        }
    }

    /// Waits for work (or, while stalled, for the next retry) and takes it.
    fn take(&mut self, spare: Vec<u8>) -> Batch {
        let mut pending = self.shared.lock();
        loop {
            let wants_room = pending.wanted > 0 && self.shared.health.is(HEALTHY);
            if !pending.buf.is_empty() || !pending.controls.is_empty() || wants_room {
                break;
            }
            if self.held.is_some() {
                // Stalled: retry on time, or at once when asked to stop.
                if pending.stopping && self.stopping_since.is_none() {
                    break;
                }
                pending.writer_idle = true;
                let (guard, timeout) = self
                    .shared
                    .work
                    .wait_timeout(pending, RETRY_INTERVAL)
                    .unwrap_or_else(|e| e.into_inner());
                pending = guard;
                if timeout.timed_out() {
                    break;
                }
                continue;
            }
            pending.writer_idle = true;
            let mut wait = CHECK_INTERVAL;
            // Under `always` too: lease grants written without an fsync get one
            // within a second, like `everysec`.
            if self.policy != FsyncPolicy::No
                && self.segment.len > self.segment.synced_len
                && self.shared.health.is(HEALTHY)
            {
                wait = wait.min(Duration::from_secs(1).saturating_sub(self.last_sync.elapsed()));
            }
            let (guard, timeout) = self
                .shared
                .work
                .wait_timeout(pending, wait)
                .unwrap_or_else(|e| e.into_inner());
            pending = guard;
            if timeout.timed_out() && pending.buf.is_empty() && pending.controls.is_empty() {
                pending.writer_idle = false;
                drop(pending);
                self.idle_duties();
                pending = self.shared.lock();
            }
        }
        pending.writer_idle = false;
        if pending.controls.is_empty() && self.held.is_none() && !pending.buf.is_empty() {
            if self.policy != FsyncPolicy::Always {
                drop(pending);
                std::thread::sleep(LINGER);
                pending = self.shared.lock();
            } else if pending.waiters.is_empty() {
                // Under `always`, records nobody waits for (lease grants) gather like
                // under `everysec`, instead of one `write` each; the first awaited
                // record, or any control, ends the wait at once.
                pending.lingering = true;
                let until = Instant::now() + LINGER;
                while pending.waiters.is_empty() && pending.controls.is_empty() {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    pending = self
                        .shared
                        .work
                        .wait_timeout(pending, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                pending.lingering = false;
            }
        }
        let batch = Batch {
            buf: std::mem::replace(&mut pending.buf, spare),
            waiters: std::mem::take(&mut pending.waiters),
            controls: std::mem::take(&mut pending.controls),
            stopping: pending.stopping,
        };
        self.shared.room.notify_all();
        batch
    }

    /// The once-a-second fsync under `everysec` (and `always`, for records nobody
    /// waited for), and the check that the directory is
    /// still ours, done while no records arrive.
    fn idle_duties(&mut self) {
        if self.shared.health.is(BROKEN) {
            return;
        }
        if let Some(problem) = self.problem() {
            self.break_down(problem);
            return;
        }
        if self.shared.lock().reserve_failed.is_some() {
            self.reserve(0);
        }
        if self.policy != FsyncPolicy::No
            && self.segment.len > self.segment.synced_len
            && self.last_sync.elapsed() >= Duration::from_secs(1)
        {
            if let Err(e) = self.sync() {
                self.stall(e, &[], Vec::new());
            }
        }
    }

    /// Writes a batch (or, while stalled, first what is held); returns the emptied
    /// buffer for reuse.
    fn handle(&mut self, batch: Batch) -> Vec<u8> {
        let Batch {
            mut buf,
            waiters,
            controls,
            ..
        } = batch;
        if self.shared.health.is(BROKEN) {
            self.refuse_batch(&buf, waiters, controls);
            return buf;
        }
        if self.held.is_some() {
            self.retry();
        }
        if self.held.is_some() {
            self.hold_behind(&buf, waiters, controls);
            buf.clear();
            return buf;
        }
        // Checked before writing too: a record written into a directory that another
        // server now owns would come back there as a change this one refused.
        if !buf.is_empty() && self.watch.due() {
            if let Some(problem) = self.problem() {
                self.break_down(problem);
                self.refuse_batch(&buf, waiters, controls);
                return buf;
            }
        }
        self.write_batch(&buf, waiters, controls);
        buf
    }

    /// The log is broken: the batch's records are dropped, and its waiters and
    /// controls refused.
    fn refuse_batch(&mut self, buf: &[u8], waiters: Vec<Done>, controls: Vec<(usize, Control)>) {
        self.drop_records(buf, waiters);
        self.refuse_controls(controls);
    }

    fn refuse_controls(&mut self, controls: impl IntoIterator<Item = (usize, Control)>) {
        for (_, control) in controls {
            self.refuse(control);
        }
    }

    /// Still stalled after a retry: new records queue behind the held ones, in order,
    /// and no rotation can happen (a snapshot waits for a writable log).
    fn hold_behind(&mut self, buf: &[u8], waiters: Vec<Done>, controls: Vec<(usize, Control)>) {
        if let Some(held) = &mut self.held {
            held.buf.extend_from_slice(buf);
            held.waiters.extend(waiters);
        }
        self.refuse_controls(controls);
        self.give_up_if_stopping();
    }

    /// Writes a batch while the log is healthy: its records, each control at its
    /// place between them, then the fsync the policy asks for; answers the waiters
    /// once their records are where they will survive. Any failure stalls the writer.
    fn write_batch(&mut self, buf: &[u8], waiters: Vec<Done>, controls: Vec<(usize, Control)>) {
        let mut written = 0;
        let mut controls = controls.into_iter();
        while let Some((at, control)) = controls.next() {
            // Every record before a rotation must be durable in the old segment.
            let step = match self.write(&buf[written..at]) {
                Err(e) => Err((e, written)),
                Ok(()) if matches!(control, Control::Rotate(_)) => self.sync().map_err(|e| (e, at)),
                Ok(()) => Ok(()),
            };
            if let Err((e, unwritten_from)) = step {
                self.stall(e, &buf[unwritten_from..], waiters);
                self.refuse(control);
                self.refuse_controls(controls);
                return;
            }
            written = at;
            self.carry_out(control, (buf.len() - at) as u64);
        }
        if let Err(e) = self.write(&buf[written..]) {
            self.stall(e, &buf[written..], waiters);
            return;
        }
        if self.sync_due(!waiters.is_empty()) {
            if let Err(e) = self.sync() {
                self.stall(e, &[], waiters);
                return;
            }
        }
        // Only now is it known the records went somewhere that will survive.
        if self.watch.due() {
            if let Some(problem) = self.problem() {
                self.break_down(problem);
                self.drop_records(&[], waiters);
                return;
            }
        }
        for waiter in waiters {
            let _ = waiter.send(Ok(()));
        }
    }

    /// Carries out a control once every record before it is written. `after`: bytes
    /// of the batch still to be written after it.
    fn carry_out(&mut self, control: Control, after: u64) {
        match control {
            Control::Rotate(reply) => {
                // On failure the current segment simply stays the one written to.
                let rotated = Segment::create(self.identity.dir(), self.segment.number + 1);
                let _ = reply.send(rotated.map(|next| {
                    let old = std::mem::replace(&mut self.segment, next);
                    old.release_reserve();
                    self.segment.number
                }));
                self.reserve(after);
            }
            Control::Shutdown(reply) => self.shutdown = Some(reply),
        }
    }

    /// Whether what was just written is to be fsynced now. `waited_for`: someone
    /// waits for it to be durable (only under `always`).
    fn sync_due(&self, waited_for: bool) -> bool {
        let policy_due = match self.policy {
            FsyncPolicy::Always => waited_for || self.shutdown.is_some(),
            FsyncPolicy::EverySec => {
                self.shutdown.is_some() || self.last_sync.elapsed() >= Duration::from_secs(1)
            }
            FsyncPolicy::No => self.shutdown.is_some(),
        };
        policy_due || self.unsynced.len() > MAX_UNSYNCED_COPY
    }

    /// Appends bytes at the end of the segment. A failed write is undone (the file is
    /// cut back), so a retry writes the same bytes at the same place.
    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let segment = &mut self.segment;
        if let Err(e) = segment.file.write_all_at(bytes, segment.len) {
            let _ = segment.file.set_len(segment.len);
            // Cutting the file back may also free the space reserved past its end.
            segment.reserved = segment.len;
            return Err(StorageError::io(
                "cannot write log segment",
                &segment.path,
                e,
            ));
        }
        segment.len += bytes.len() as u64;
        self.unsynced.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let segment = &mut self.segment;
        if segment.len == segment.synced_len {
            return Ok(());
        }
        // Unit tests make fsyncs fail here: a real one fails only on a broken disk.
        #[cfg(test)]
        if tests::sync_fails(&segment.path) {
            return Err(StorageError::io(
                FSYNC_FAILED,
                &segment.path,
                std::io::Error::from_raw_os_error(libc::EIO),
            ));
        }
        let started = Instant::now();
        segment
            .file
            .sync_data()
            .map_err(|e| StorageError::io(FSYNC_FAILED, &segment.path, e))?;
        if let Some(fsyncs) = self.shared.fsync_seconds.get() {
            fsyncs.observe(started.elapsed().as_secs_f64());
        }
        segment.synced_len = segment.len;
        self.unsynced.clear();
        // One record bigger than the cap (a large batch) grew the copy past it: give
        // that memory back rather than hold it for the rest of the run.
        if self.unsynced.capacity() > 2 * MAX_UNSYNCED_COPY {
            self.unsynced = Vec::new();
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// A write or fsync failed: hold `not_written` (bytes that are not in the file)
    /// and the waiters until a retry succeeds, and refuse new changes meanwhile. A
    /// failed write was already cut back by [`Writer::write`], leaving earlier writes
    /// as they were. After a failed fsync the kernel may have dropped the pages
    /// written since the last good one (and report success next time), so those are
    /// cut off too and held, from the copy kept of them, to be written again.
    fn stall(&mut self, e: StorageError, not_written: &[u8], waiters: Vec<Done>) {
        let segment = &mut self.segment;
        let failed_sync = matches!(&e, StorageError::Io { action, .. } if *action == FSYNC_FAILED);
        let mut buf = Vec::new();
        if failed_sync && segment.len > segment.synced_len {
            buf.append(&mut self.unsynced);
            segment.len = segment.synced_len;
            let _ = segment.file.set_len(segment.len);
            segment.reserved = segment.len;
        }
        buf.extend_from_slice(not_written);
        // A retry that fails again is the same stall: its clock and its log line stay.
        if self.stalled_since.is_none() {
            self.stalled_since = Some(Instant::now());
            tracing::error!(
                error = %e,
                held_bytes = buf.len(),
                "the log cannot be written; holding what it could not write, refusing new changes (503) and retrying"
            );
        }
        self.set_health(STALLED, e.to_string());
        match &mut self.held {
            Some(held) => {
                held.buf.splice(0..0, buf);
                held.waiters.extend(waiters);
            }
            None => self.held = Some(Held { buf, waiters }),
        }
    }

    /// Sets the log's health under the appenders' lock, then wakes those waiting for
    /// disk space: one that checked the health just before cannot miss the change.
    fn set_health(&self, state: u8, reason: String) {
        let pending = self.shared.lock();
        self.shared.health.set(state, reason);
        drop(pending);
        self.shared.room.notify_all();
    }

    /// Tries to write what is held, and fsyncs it whatever the policy; on success
    /// the log takes changes again.
    fn retry(&mut self) {
        let Some(held) = self.held.take() else { return };
        if let Err(e) = self.write(&held.buf) {
            self.stall(e, &held.buf, held.waiters);
            return;
        }
        if let Err(e) = self.sync() {
            // The held bytes are in the file and in the copy: `stall` cuts them back.
            self.stall(e, &[], held.waiters);
            return;
        }
        if let Some(problem) = self.problem() {
            self.break_down(problem);
            self.drop_records(&[], held.waiters);
            return;
        }
        tracing::info!(
            written_bytes = held.buf.len(),
            "the log is writable again; taking changes"
        );
        self.stalled_since = None;
        self.set_health(HEALTHY, String::new());
        for waiter in held.waiters {
            let _ = waiter.send(Ok(()));
        }
    }

    /// Once the server is stopping and retries have gone on for [`STOP_GRACE`], the
    /// held records are given up: their waiters are refused and the loss is reported.
    fn give_up_if_stopping(&mut self) {
        // STOP_GRACE of retrying, counted from the stop or from the stall, whichever
        // came later: a write failing late in a long graceful stop still gets it.
        let (Some(stopping), Some(stalled)) = (self.stopping_since, self.stalled_since) else {
            return;
        };
        if stopping.max(stalled).elapsed() < STOP_GRACE {
            return;
        }
        if let Some(held) = self.held.take() {
            let reason = format!(
                "gave up writing {} bytes of log records at shutdown: {}",
                held.buf.len(),
                self.shared.health.reason()
            );
            tracing::error!("{reason}");
            self.set_health(BROKEN, reason);
            self.drop_records(&held.buf, held.waiters);
        }
    }

    /// The directory or the lock is gone: nothing written from now on would survive.
    fn break_down(&mut self, problem: String) {
        tracing::error!(problem = %problem, "refusing every change from now on; restart the server on an intact data directory");
        self.set_health(BROKEN, problem);
        if let Some(held) = self.held.take() {
            self.drop_records(&held.buf, held.waiters);
        }
    }

    fn drop_records(&mut self, bytes: &[u8], waiters: Vec<Done>) {
        self.lost_bytes += bytes.len() as u64;
        let error = self.shared.health.check().err().unwrap_or_else(stopped);
        for waiter in waiters {
            let _ = waiter.send(Err(error.clone()));
        }
    }

    fn refuse(&mut self, control: Control) {
        let error = self.shared.health.check().err().unwrap_or_else(stopped);
        match control {
            Control::Rotate(reply) => {
                let _ = reply.send(Err(error));
            }
            Control::Shutdown(reply) => self.shutdown = Some(reply),
        }
    }

    /// Keeps disk space reserved ahead of the records: at least what is queued (and
    /// `in_hand`, bytes taken but not yet written) plus what an appender waits for,
    /// and [`RESERVE_AHEAD`] when the disk has it. Publishes the appenders' budget.
    fn reserve(&mut self, in_hand: u64) {
        if !self.reservable {
            return;
        }
        let (queued, wanted) = {
            let pending = self.shared.lock();
            (
                pending.buf.len() as u64,
                pending.wanted.max(pending.refused),
            )
        };
        let needed = self.segment.len + in_hand + queued + wanted;
        let ahead = needed + RESERVE_AHEAD;
        let recently_short = self
            .last_short_reserve
            .is_some_and(|at| at.elapsed() < CHECK_INTERVAL);
        let mut failed = None;
        let reserved = self.segment.reserved;
        if reserved < needed || (reserved < ahead - RESERVE_AHEAD / 2 && !recently_short) {
            match reserve_most(&self.segment.file, reserved, needed, ahead) {
                Ok(target) => {
                    self.segment.reserved = target;
                    self.last_short_reserve = (target < ahead).then(Instant::now);
                }
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    self.stop_reserving();
                    return;
                }
                Err(e) => {
                    self.last_short_reserve = Some(Instant::now());
                    if reserved < needed {
                        failed = Some(e.to_string());
                    }
                }
            }
        }
        self.publish_budget(in_hand, failed);
    }

    /// The file system cannot reserve space: appenders stop counting a budget.
    fn stop_reserving(&mut self) {
        tracing::info!("the file system cannot reserve space; a full disk will be met by the log writes themselves");
        self.reservable = false;
        let mut pending = self.shared.lock();
        pending.budget = None;
        pending.wanted = 0;
        drop(pending);
        self.shared.room.notify_all();
    }

    /// Tells the appenders how much more the reserved space takes, and whether the
    /// reservation fell short of what is needed (`failed`, why), then wakes those
    /// waiting for room.
    fn publish_budget(&self, in_hand: u64, failed: Option<String>) {
        let segment = &self.segment;
        let mut pending = self.shared.lock();
        let claimed = segment.len + in_hand + pending.buf.len() as u64;
        pending.budget = Some(segment.reserved.saturating_sub(claimed));
        match (&failed, &pending.reserve_failed) {
            (Some(reason), None) => {
                tracing::error!(error = %reason, "no disk space for the log; refusing changes (503) until there is");
            }
            (None, Some(_)) => tracing::info!("disk space for the log is available again"),
            _ => {}
        }
        if failed.is_none() {
            pending.refused = 0;
        }
        pending.reserve_failed = failed;
        pending.wanted = 0;
        drop(pending);
        self.shared.room.notify_all();
    }

    fn problem(&self) -> Option<String> {
        self.identity
            .problem(&self.segment.file, &self.segment.path)
    }

    /// Answers the shutdown and stops appends for good. Records appended after the
    /// batch that carried the shutdown (under `everysec` and `no`, answered already)
    /// are taken under the same lock that stops appends, and written too.
    fn finish(&mut self) {
        let (rest, waiters, controls) = {
            let mut pending = self.shared.lock();
            pending.stopped = true;
            (
                std::mem::take(&mut pending.buf),
                std::mem::take(&mut pending.waiters),
                std::mem::take(&mut pending.controls),
            )
        };
        self.shared.room.notify_all();
        for (_, control) in controls {
            if let Control::Rotate(reply) = control {
                let _ = reply.send(Err(stopped()));
            }
        }
        let mut outcome = if self.shared.health.is(BROKEN) {
            Err(self.shared.health.reason())
        } else {
            self.write(&rest).map_err(|e| e.to_string())
        };
        if outcome.is_err() {
            self.lost_bytes += rest.len() as u64;
        }
        // Whatever was written is worth making durable, even if something was lost.
        let unsynced = self.unsynced.len() as u64;
        if let Err(e) = self.sync() {
            self.lost_bytes += unsynced;
            outcome = outcome.and(Err(e.to_string()));
        }
        self.segment.release_reserve();
        for waiter in waiters {
            let _ = waiter.send(match &outcome {
                Ok(()) => Ok(()),
                Err(_) => Err(stopped()),
            });
        }
        let result = match outcome {
            Ok(()) if self.lost_bytes == 0 => Ok(()),
            Ok(()) => Err(StorageError::Unwritten {
                bytes: self.lost_bytes,
                reason: self.shared.health.reason(),
            }),
            Err(reason) => Err(StorageError::Unwritten {
                bytes: self.lost_bytes,
                reason,
            }),
        };
        if let Some(reply) = self.shutdown.take() {
            let _ = reply.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::format::{read_frame, Frame};

    /// The next N fsyncs of log segments in one directory fail with EIO. Tests that
    /// set it hold `SERIAL`; writers of other tests (other directories) are spared.
    static FAIL_SYNCS: Mutex<Option<(PathBuf, usize)>> = Mutex::new(None);
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail_syncs(dir: &Path, count: usize) {
        *FAIL_SYNCS.lock().unwrap_or_else(|e| e.into_inner()) = Some((dir.to_path_buf(), count));
    }

    /// Whether this fsync of `segment` is to fail (and counts it).
    pub(super) fn sync_fails(segment: &Path) -> bool {
        let mut fault = FAIL_SYNCS.lock().unwrap_or_else(|e| e.into_inner());
        match fault.as_mut() {
            Some((dir, left)) if *left > 0 && segment.starts_with(dir.as_path()) => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    fn record(name: &str) -> LogRecordRef<'_> {
        LogRecordRef::QueueCreated { queue: 7, name }
    }

    /// The records in a segment file; every frame must be whole.
    fn frames(path: &Path) -> Vec<Vec<u8>> {
        let data = std::fs::read(path).expect("read segment");
        let mut at = LOG_HEADER_LEN;
        let mut out = Vec::new();
        while at < data.len() {
            match read_frame(&data[at..]) {
                Frame::Whole { payload, len } => {
                    out.push(payload.to_vec());
                    at += len;
                }
                other => panic!("bad frame at {at}: {other:?}"),
            }
        }
        out
    }

    fn wait_until(mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn a_failed_fsync_under_always_is_cut_back_held_and_written_again() {
        let _serial = serial();
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join(segment_file_name(1));
        let log = Log::start(dir.path(), 1, FsyncPolicy::Always).expect("log");
        fail_syncs(dir.path(), usize::MAX);
        let durable = log.append(&record("a")).expect("append");
        wait_until(|| log.check().is_err());
        // The kernel may have dropped the pages: the record is not trusted in place.
        let len_while_stalled = std::fs::metadata(&path).expect("segment").len();
        fail_syncs(dir.path(), 0);
        block_on(durable.wait()).expect("acknowledged once written again");
        assert_eq!(len_while_stalled, LOG_HEADER_LEN as u64);
        assert_eq!(frames(&path).len(), 1);
    }

    #[test]
    fn an_unawaited_record_is_answered_at_once_and_written_before_the_next() {
        let _serial = serial();
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join(segment_file_name(1));
        let log = Log::start(dir.path(), 1, FsyncPolicy::Always).expect("log");
        // No fsync succeeds: the unawaited append returns anyway, the awaited one
        // after it resolves only once both are on disk.
        fail_syncs(dir.path(), usize::MAX);
        log.append_unawaited(&record("grant")).expect("unawaited");
        let mut ack = log.append(&record("ack")).expect("append");
        wait_until(|| log.check().is_err());
        if let Durable::Pending(rx) = &mut ack {
            assert!(rx.try_recv().is_err(), "durable before any fsync succeeded");
        } else {
            panic!("an awaited record under always must be pending");
        }
        fail_syncs(dir.path(), 0);
        block_on(ack.wait()).expect("durable once written");
        assert_eq!(frames(&path).len(), 2);
    }

    #[test]
    fn under_always_an_unawaited_record_alone_is_fsynced_within_a_second() {
        let _serial = serial();
        let dir = tempfile::tempdir().expect("dir");
        let log = Log::start(dir.path(), 1, FsyncPolicy::Always).expect("log");
        // The first fsync fails, so its attempt shows as a stall.
        fail_syncs(dir.path(), 1);
        let start = Instant::now();
        log.append_unawaited(&record("grant")).expect("unawaited");
        wait_until(|| log.check().is_err());
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        wait_until(|| log.check().is_ok());
        block_on(log.shutdown()).expect("shutdown");
        assert_eq!(frames(&dir.path().join(segment_file_name(1))).len(), 1);
    }

    #[test]
    fn a_retry_whose_fsync_fails_does_not_write_the_held_bytes_twice() {
        let _serial = serial();
        let dir = tempfile::tempdir().expect("dir");
        let log = Log::start(dir.path(), 1, FsyncPolicy::EverySec).expect("log");
        log.append(&record("a")).expect("append");
        // The once-a-second fsync fails, and so does the first retry's.
        fail_syncs(dir.path(), 2);
        wait_until(|| log.check().is_err());
        wait_until(|| log.check().is_ok());
        block_on(log.shutdown()).expect("shutdown");
        assert_eq!(frames(&dir.path().join(segment_file_name(1))).len(), 1);
    }

    #[test]
    fn a_failed_fsync_at_rotation_does_not_write_the_records_before_it_twice() {
        let _serial = serial();
        let dir = tempfile::tempdir().expect("dir");
        let log = Log::start(dir.path(), 1, FsyncPolicy::No).expect("log");
        fail_syncs(dir.path(), 1);
        // The record and the rotation in one batch (under `no` the writer lingers).
        log.append(&record("a")).expect("append");
        assert!(block_on(log.rotate()).is_err(), "rotation refused");
        wait_until(|| log.check().is_ok());
        block_on(log.shutdown()).expect("shutdown");
        assert_eq!(frames(&dir.path().join(segment_file_name(1))).len(), 1);
    }

    /// The copy of unsynced bytes stays small under `no` too: once it passes
    /// [`MAX_UNSYNCED_COPY`] the writer fsyncs (here the fsync fails, which shows as
    /// a stall) instead of keeping more in memory.
    #[test]
    fn under_no_the_writer_fsyncs_once_its_unsynced_copy_is_full() {
        let _serial = serial();
        let dir = tempfile::tempdir().expect("dir");
        let log = Log::start(dir.path(), 1, FsyncPolicy::No).expect("log");
        fail_syncs(dir.path(), 1);
        let name = "x".repeat(64 << 10);
        for _ in 0..MAX_UNSYNCED_COPY / name.len() + 1 {
            log.append(&record(&name)).expect("append");
        }
        wait_until(|| log.check().is_err());
        wait_until(|| log.check().is_ok());
        block_on(log.shutdown()).expect("shutdown");
        let written = frames(&dir.path().join(segment_file_name(1)));
        assert_eq!(written.len(), MAX_UNSYNCED_COPY / name.len() + 1);
    }

    /// CPU ticks of the newest writer thread in this process.
    fn writer_cpu_ticks() -> u64 {
        let mut newest: Option<(u64, std::path::PathBuf)> = None;
        for task in std::fs::read_dir("/proc/self/task")
            .expect("tasks")
            .flatten()
        {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let tid: u64 = task.file_name().to_string_lossy().parse().unwrap_or(0);
            if comm.trim() == "presque-log" && newest.as_ref().is_none_or(|(t, _)| tid > *t) {
                newest = Some((tid, task.path()));
            }
        }
        let stat =
            std::fs::read_to_string(newest.expect("a writer thread").1.join("stat")).expect("stat");
        let rest = &stat[stat.rfind(')').expect("comm end") + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0)
    }

    #[test]
    fn a_broken_everysec_writer_does_not_spin() {
        let _serial = serial();
        let dir = tempfile::tempdir().expect("dir");
        let log = Log::start(dir.path(), 1, FsyncPolicy::EverySec).expect("log");
        log.append(&record("a")).expect("append");
        std::thread::sleep(Duration::from_millis(50));
        std::fs::remove_file(dir.path().join(segment_file_name(1))).expect("remove");
        wait_until(|| log.check().is_err());
        // Past the second at which an everysec fsync would be due.
        std::thread::sleep(Duration::from_millis(1200));
        let before = writer_cpu_ticks();
        std::thread::sleep(Duration::from_secs(1));
        let used = writer_cpu_ticks() - before;
        assert!(
            used < 10,
            "the broken writer used {used} of 100 ticks in 1 s"
        );
    }

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_file_name(42), "log-00000000000000000042.presque");
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_segment_file_name("log-x.presque"), None);
        assert_eq!(parse_segment_file_name("snapshot-1.presque"), None);
    }
}
