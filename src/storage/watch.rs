//! Noticing the data directory, the segment being written or the `LOCK` file go
//! away while the server runs. A directory removed (or replaced) would take every
//! later change with it; a lock file removed would let a second server in.
//!
//! The full check is a few `stat` calls; rather than pay them on every batch of the
//! log, a watcher thread (inotify) flags any removal or rename in the directory, and
//! the writer checks in full only when flagged, and every [`CHECK_INTERVAL`] anyway.
//! Without inotify, every batch is checked.

use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::StorageError;

/// Longest time between two full checks while records are written.
pub(super) const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The data directory and its lock file as they were at start, to tell when either
/// has been removed or replaced since.
pub(super) struct DirIdentity {
    dir: PathBuf,
    dev_ino: (u64, u64),
    lock: Option<(PathBuf, u64)>,
}

impl DirIdentity {
    pub(super) fn of(dir: &Path) -> Result<Self, StorageError> {
        let meta =
            std::fs::metadata(dir).map_err(|e| StorageError::io("cannot inspect", dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = std::fs::metadata(&lock_path)
            .ok()
            .map(|m| (lock_path, m.ino()));
        Ok(DirIdentity {
            dir: dir.to_path_buf(),
            dev_ino: (meta.dev(), meta.ino()),
            lock,
        })
    }

    /// The data directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// What is wrong, if anything.
    pub(super) fn problem(&self, segment: &File, segment_path: &Path) -> Option<String> {
        let dir = self.dir.display();
        match std::fs::metadata(&self.dir) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.dev_ino => {}
            Ok(_) => {
                return Some(format!(
                    "the data directory {dir} was replaced by another one while the server ran"
                ))
            }
            Err(e) => {
                return Some(format!(
                    "the data directory {dir} was removed while the server ran ({e})"
                ))
            }
        }
        if segment.metadata().map(|m| m.nlink()).unwrap_or(0) == 0 {
            return Some(format!(
                "log segment {} was deleted while the server ran",
                segment_path.display()
            ));
        }
        if let Some((path, ino)) = &self.lock {
            if std::fs::metadata(path).map(|m| m.ino()).ok() != Some(*ino) {
                return Some(format!(
                    "the lock file {} was removed or replaced while the server ran: another server may be using {dir}",
                    path.display()
                ));
            }
        }
        None
    }
}

/// Tells the writer when a full [`DirIdentity`] check is due.
pub(super) struct DirWatch {
    changed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    live: bool,
    last_check: Instant,
}

impl DirWatch {
    /// Starts watching `dir`; without inotify, every call to [`DirWatch::due`] says yes.
    pub(super) fn start(dir: &Path) -> DirWatch {
        let changed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let live = watch(dir, changed.clone(), stop.clone()).is_some();
        if !live {
            tracing::info!(dir = %dir.display(), "no inotify: the data directory is checked at every log write");
        }
        DirWatch {
            changed,
            stop,
            live,
            last_check: Instant::now(),
        }
    }

    /// Whether a full check is due: something was removed or renamed in the directory
    /// since the last one, or [`CHECK_INTERVAL`] has passed. Counts as that check.
    pub(super) fn due(&mut self) -> bool {
        let flagged = self.changed.swap(false, Ordering::AcqRel);
        if !self.live || flagged || self.last_check.elapsed() >= CHECK_INTERVAL {
            self.last_check = Instant::now();
            return true;
        }
        false
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Starts the inotify thread; `None` where inotify cannot be had.
#[allow(unsafe_code)] // inotify has no safe wrapper in std
fn watch(dir: &Path, changed: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> Option<()> {
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: plain syscalls; the descriptor is owned by the thread below, which
    // closes it when it ends.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if fd < 0 {
        return None;
    }
    let mask = libc::IN_DELETE
        | libc::IN_DELETE_SELF
        | libc::IN_MOVE_SELF
        | libc::IN_MOVED_FROM
        | libc::IN_MOVED_TO;
    // SAFETY: `path` is a valid C string and `fd` an inotify descriptor.
    if unsafe { libc::inotify_add_watch(fd, path.as_ptr(), mask) } < 0 {
        // SAFETY: closing the descriptor opened above.
        unsafe { libc::close(fd) };
        return None;
    }
    let spawned = std::thread::Builder::new()
        .name("presque-watch".into())
        .spawn(move || {
            let mut events = [0u8; 4096];
            while !stop.load(Ordering::Acquire) {
                let mut poll = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd; the timeout lets the thread see `stop`.
                let ready = unsafe { libc::poll(&mut poll, 1, 500) };
                if ready > 0 {
                    // SAFETY: reads into a buffer of the length given.
                    while unsafe { libc::read(fd, events.as_mut_ptr().cast(), events.len()) } > 0 {}
                    changed.store(true, Ordering::Release);
                }
            }
            // SAFETY: the thread owns the descriptor.
            unsafe { libc::close(fd) };
        });
    if spawned.is_err() {
        // SAFETY: the thread did not start, so the descriptor is still ours.
        unsafe { libc::close(fd) };
        return None;
    }
    Some(())
}
