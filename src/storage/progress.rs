//! Recovery's progress, told while it runs: recovering millions of jobs takes seconds,
//! and an operator must see it is moving. Recovery only bumps counters (relaxed
//! stores, no clock read, no syscall); a thread of its own logs them at a fixed
//! interval, so even one long step (decoding a big snapshot) is reported.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often progress is logged while recovery runs.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// A test and debugging knob: the progress interval in milliseconds, so a test can see
/// progress lines without recovering for seconds. Not a setting: operators have no
/// need of it.
pub const INTERVAL_ENV: &str = "PRESQUE_PROGRESS_INTERVAL_MS";

/// The interval [`INTERVAL_ENV`] asks for, or [`DEFAULT_INTERVAL`].
pub fn interval_from_env() -> Duration {
    std::env::var(INTERVAL_ENV)
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map_or(DEFAULT_INTERVAL, Duration::from_millis)
}

/// What recovery is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    ReadingSnapshot = 0,
    ReplayingLog = 1,
    RestoringQueues = 2,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::ReadingSnapshot => "reading snapshot",
            Phase::ReplayingLog => "replaying log",
            Phase::RestoringQueues => "restoring queues",
        }
    }

    fn from_u8(n: u8) -> Phase {
        match n {
            0 => Phase::ReadingSnapshot,
            1 => Phase::ReplayingLog,
            _ => Phase::RestoringQueues,
        }
    }
}

/// Counters recovery bumps as it goes.
#[derive(Debug)]
pub struct RecoveryProgress {
    started: Instant,
    phase: AtomicU8,
    files: AtomicU64,
    records: AtomicU64,
    jobs: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub files: u64,
    pub records: u64,
    pub jobs: u64,
    pub elapsed: Duration,
}

impl Default for RecoveryProgress {
    fn default() -> Self {
        RecoveryProgress {
            started: Instant::now(),
            phase: AtomicU8::new(Phase::ReadingSnapshot as u8),
            files: AtomicU64::new(0),
            records: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
        }
    }
}

impl RecoveryProgress {
    pub fn enter(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// One more file (snapshot or log segment) read.
    pub fn file_read(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
    }

    /// Records replayed so far (a total, not an increment: a plain store).
    pub fn records_replayed(&self, total: usize) {
        self.records.store(total as u64, Ordering::Relaxed);
    }

    /// `n` more jobs put back into their queues.
    pub fn jobs_restored(&self, n: usize) {
        self.jobs.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            files: self.files.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            jobs: self.jobs.load(Ordering::Relaxed),
            elapsed: self.started.elapsed(),
        }
    }

    fn log(&self) {
        let now = self.snapshot();
        tracing::info!(
            phase = Phase::from_u8(self.phase.load(Ordering::Relaxed)).name(),
            files = now.files,
            records = now.records,
            jobs = now.jobs,
            elapsed_ms = now.elapsed.as_millis() as u64,
            "recovery in progress"
        );
    }
}

/// Logs a [`RecoveryProgress`] every interval until dropped.
pub struct ProgressReporter {
    progress: Arc<RecoveryProgress>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ProgressReporter {
    /// Starts the reporting thread. Should the thread not start, recovery goes on
    /// untold (a warning says so): progress lines are not worth refusing a start.
    pub fn start(interval: Duration) -> Self {
        let progress = Arc::new(RecoveryProgress::default());
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = progress.clone();
        let thread = std::thread::Builder::new()
            .name("recovery-progress".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    shared.log();
                }
            });
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the recovery progress thread; recovery runs without progress lines");
                None
            }
        };
        ProgressReporter {
            progress,
            stop: Some(stop),
            thread,
        }
    }

    pub fn progress(&self) -> &RecoveryProgress {
        &self.progress
    }

    /// Stops the progress lines and returns the final counts: a summary logged after
    /// this is the last word.
    pub fn finish(self) -> ProgressSnapshot {
        let progress = self.progress.clone();
        drop(self);
        progress.snapshot()
    }
}

/// Stops the thread at once (it is waiting on the channel) and waits for it, so no
/// progress line follows the summary.
impl Drop for ProgressReporter {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_and_the_reporter_stops_when_dropped() {
        let reporter = ProgressReporter::start(Duration::from_millis(1));
        let p = reporter.progress();
        p.file_read();
        p.file_read();
        p.enter(Phase::ReplayingLog);
        p.records_replayed(10);
        p.records_replayed(25);
        p.enter(Phase::RestoringQueues);
        p.jobs_restored(3);
        p.jobs_restored(4);
        std::thread::sleep(Duration::from_millis(5));
        let now = p.snapshot();
        assert_eq!((now.files, now.records, now.jobs), (2, 25, 7));
        // Returns only once the thread has ended (a hang here fails the test run).
        let done = reporter.finish();
        assert_eq!((done.files, done.records, done.jobs), (2, 25, 7));
    }
}
