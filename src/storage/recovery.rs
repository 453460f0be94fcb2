//! Start-up recovery: the newest readable snapshot, then every log record after it.
//!
//! Strict and loud. A torn tail, what a crash mid-write leaves at the very end of the
//! last segment (fewer bytes than a frame header, a sound frame header whose payload
//! runs past the end; or, with no whole frame anywhere after it, unreadable bytes
//! that show a stretch never written: pages of the last batch that never landed
//! before a power loss), is moved to a side file with a warning. A checksum failure
//! anywhere else, the last whole record included, is damage. A segment whose header
//! never reached the disk held nothing and is skipped, wherever it is. Any other
//! damage (a checksum mismatch, a damaged frame header, a missing segment, an
//! unreadable snapshot that no older snapshot can replace without loss) stops the
//! start with the file and offset, unless the operator accepts the loss explicitly;
//! then only the unreadable bytes are lost.
//!
//! Nothing in the data directory changes until recovery knows it will go ahead: a
//! refused start leaves every file as it was.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::format::{
    decode_record, decode_snapshot_payload, log_header, parse_log_header, read_frame, Frame,
    HeaderError, LogRecord, SnapshotData, LOG_HEADER_LEN,
};
use super::log::parse_segment_file_name;
use super::progress::{Phase, RecoveryProgress};
use super::snapshot::{parse_snapshot_file_name, read_snapshot};
use super::sync_dir;
use crate::names::QueueName;
use crate::queue::state::{Change, QueueState};
use crate::registry::state::RegistryState;
use crate::schedule::state::{ScheduleChange, ScheduleState};

/// One queue as recovered.
pub struct RecoveredQueue {
    pub incarnation: u64,
    pub name: QueueName,
    pub seq: u64,
    pub state: QueueState,
}

/// The server's state as recovered, and where persistence carries on from.
pub struct Recovered {
    pub queues: Vec<RecoveredQueue>,
    pub registry_seq: u64,
    pub registry: RegistryState,
    pub schedule_seq: u64,
    pub schedules: ScheduleState,
    pub next_job_id: u64,
    pub next_incarnation: u64,
    /// The segment the log writer starts (a fresh file, never a damaged one).
    pub next_segment: u64,
    /// The newest snapshot generation present, readable or not.
    pub last_generation: u64,
    /// The snapshot recovery started from, as (generation, log_start), if any, and if
    /// it is still a lossless fallback.
    pub fallback: Option<(u64, u64)>,
    /// Data was dropped with the operator's consent: a fresh snapshot should be taken
    /// before serving so the damage is not met again.
    pub lost_data: bool,
}

/// Why the server refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("cannot read the data directory {dir}: {message}")]
    ListDir { dir: PathBuf, message: String },
    #[error("refusing to start, the data in {dir} cannot be recovered without loss:\n  - {}\nStart with --accept-data-loss to start from what can be read; the rest is lost.", problems.join("\n  - "))]
    Refused { dir: PathBuf, problems: Vec<String> },
    #[error("cannot set aside the torn tail of {path} (from byte {offset}): {message}; the segment is left as it was: start again once this is fixed")]
    TornTail {
        path: PathBuf,
        offset: usize,
        message: String,
    },
}

struct Listing {
    snapshots: BTreeMap<u64, PathBuf>,
    segments: BTreeMap<u64, PathBuf>,
    /// Unfinished snapshots from a crash mid-write (never the only copy): removed
    /// once recovery succeeds, so a refused start leaves every file as it was.
    unfinished: Vec<PathBuf>,
}

fn list(dir: &Path) -> Result<Listing, RecoveryError> {
    let entries = std::fs::read_dir(dir).map_err(|e| RecoveryError::ListDir {
        dir: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut listing = Listing {
        snapshots: BTreeMap::new(),
        segments: BTreeMap::new(),
        unfinished: Vec::new(),
    };
    for entry in entries {
        let entry = entry.map_err(|e| RecoveryError::ListDir {
            dir: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(generation) = parse_snapshot_file_name(name) {
            listing.snapshots.insert(generation, entry.path());
        } else if let Some(n) = parse_segment_file_name(name) {
            listing.segments.insert(n, entry.path());
        } else if name.ends_with(".presque.tmp") {
            listing.unfinished.push(entry.path());
        }
    }
    Ok(listing)
}

struct QueueReplay {
    name: String,
    seq: u64,
    state: QueueState,
}

/// Applies records on top of a snapshot.
struct Replay {
    queues: HashMap<u64, QueueReplay>,
    watermark: u64,
    deleted: HashSet<u64>,
    registry_seq: u64,
    registry: RegistryState,
    schedule_seq: u64,
    schedules: ScheduleState,
    max_job_id: u64,
    max_incarnation: u64,
    records: usize,
}

impl Replay {
    fn from_snapshot(base: Option<SnapshotData>) -> Self {
        let mut replay = Replay {
            queues: HashMap::new(),
            watermark: 0,
            deleted: HashSet::new(),
            registry_seq: 0,
            registry: RegistryState::default(),
            schedule_seq: 0,
            schedules: ScheduleState::default(),
            max_job_id: 0,
            max_incarnation: 0,
            records: 0,
        };
        if let Some(base) = base {
            replay.watermark = base.incarnation_watermark;
            replay.registry_seq = base.registry_seq;
            replay.registry = RegistryState::from_image(&base.workers);
            replay.schedule_seq = base.schedule_seq;
            replay.schedules = ScheduleState::from_image(&base.schedules);
            replay.max_job_id = base.next_job_id.saturating_sub(1);
            replay.max_incarnation = base.next_incarnation.saturating_sub(1);
            for q in base.queues {
                replay.max_incarnation = replay.max_incarnation.max(q.incarnation);
                replay.queues.insert(
                    q.incarnation,
                    QueueReplay {
                        name: q.name,
                        seq: q.seq,
                        state: QueueState::from_image(q.image),
                    },
                );
            }
        }
        replay
    }

    fn apply(&mut self, record: LogRecord) {
        self.records += 1;
        match record {
            LogRecord::QueueCreated { queue, name } => {
                self.max_incarnation = self.max_incarnation.max(queue);
                let known = self.queues.contains_key(&queue) || self.deleted.contains(&queue);
                if !known && queue > self.watermark {
                    self.queues.insert(
                        queue,
                        QueueReplay {
                            name,
                            seq: 0,
                            state: QueueState::default(),
                        },
                    );
                }
            }
            LogRecord::Queue { queue, seq, change } => {
                self.max_incarnation = self.max_incarnation.max(queue);
                if let Change::Enqueued { jobs, .. } | Change::Returned { jobs } = &change {
                    if let Some(max) = jobs.iter().map(|j| j.id.0).max() {
                        self.max_job_id = self.max_job_id.max(max);
                    }
                }
                // Whatever became of the queue since: a schedule's run whose job is
                // here reached its queue, and is not sent again.
                if let Change::Enqueued { jobs, .. } = &change {
                    for job in jobs {
                        self.schedules.job_settled(job.id.0);
                    }
                }
                let Some(entry) = self.queues.get_mut(&queue) else {
                    // A queue deleted before the snapshot it would belong to.
                    return;
                };
                if seq <= entry.seq {
                    return;
                }
                entry.seq = seq;
                if change == Change::Purged {
                    self.queues.remove(&queue);
                    self.deleted.insert(queue);
                } else {
                    entry.state.apply(change);
                }
            }
            LogRecord::Registry { seq, change } => {
                if seq > self.registry_seq {
                    self.registry_seq = seq;
                    self.registry.apply(&change);
                }
            }
            LogRecord::Schedule { seq, change } => {
                // A run's job id is taken even if its job never reached the queue:
                // it is sent again under that id.
                if let ScheduleChange::Fired { job_id, .. } = &change {
                    self.max_job_id = self.max_job_id.max(*job_id);
                }
                if seq > self.schedule_seq {
                    self.schedule_seq = seq;
                    self.schedules.apply(&change);
                }
            }
        }
    }

    /// One queue per name: the newest incarnation. An older one still present means a
    /// DELETE was under way at the crash (never acknowledged): it is taken as done.
    fn take_queues(&mut self) -> Vec<RecoveredQueue> {
        let mut by_name: BTreeMap<String, (u64, QueueReplay)> = BTreeMap::new();
        for (incarnation, q) in self.queues.drain() {
            let newer = by_name
                .get(&q.name)
                .is_none_or(|(kept, _)| *kept < incarnation);
            if by_name.contains_key(&q.name) {
                tracing::warn!(queue = %q.name, "dropping a queue whose deletion was under way at the crash");
            }
            if newer {
                by_name.insert(q.name.clone(), (incarnation, q));
            }
        }
        by_name
            .into_values()
            .filter_map(|(incarnation, q)| match QueueName::parse(&q.name) {
                Ok(name) => Some(RecoveredQueue {
                    incarnation,
                    name,
                    seq: q.seq,
                    state: q.state,
                }),
                Err(e) => {
                    tracing::warn!(queue = %q.name, error = %e, "skipping a queue with an invalid name");
                    None
                }
            })
            .collect()
    }
}

/// What replaying one segment found.
#[derive(Default)]
struct SegmentOutcome {
    /// Stretches that could not be read, each with file and byte offsets. Everything
    /// readable around them has been replayed.
    damage: Vec<String>,
    /// Where a torn tail starts: the rest of the file is what a crash mid-write left.
    torn_at: Option<usize>,
}

/// A segment file whose header never fully reached the disk: empty, a prefix of the
/// header it should have, or zeros (a size that grew before the data landed). The
/// writer fsyncs the header before the first record, so such a file holds nothing.
fn never_written(data: &[u8], number: u64) -> bool {
    data.len() <= LOG_HEADER_LEN
        && (data.iter().all(|&b| b == 0) || log_header(number).starts_with(data))
}

/// Whether the unreadable end of the newest segment, from `offset`, holds what a power
/// loss leaves in a batch that was being written: the file grew, but some of its
/// blocks never landed and read as zeros. Either nothing but zeros to the end, or a
/// whole 512-byte-aligned block of zeros (or at least [`UNWRITTEN_RUN`] of them up to
/// the end of the file). No record holds such a run: job bodies are JSON text, names,
/// worker ids and `uniq` keys have no control characters, the rest is short CBOR
/// metadata; and no flipped bit makes one.
fn looks_unwritten(data: &[u8], offset: usize) -> bool {
    let rest = &data[offset..];
    if rest.iter().all(|&b| b == 0) {
        return true;
    }
    let first = offset.next_multiple_of(UNWRITTEN_BLOCK);
    (first..data.len()).step_by(UNWRITTEN_BLOCK).any(|start| {
        let block = &data[start..data.len().min(start + UNWRITTEN_BLOCK)];
        block.len() >= UNWRITTEN_RUN && block.iter().all(|&b| b == 0)
    })
}

/// The smallest unit a disk writes: a block that never landed is this long and aligned.
const UNWRITTEN_BLOCK: usize = 512;

/// Zero bytes that, ending the file from an aligned offset, count as a block that
/// never landed.
const UNWRITTEN_RUN: usize = 64;

/// The first offset at or after `from` where a whole frame (both checksums matching)
/// starts. Only for resuming after damage: a false match needs a frame header and a
/// payload that both pass their CRC-32 by chance.
fn next_whole_frame(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len()).find(|&at| matches!(read_frame(&data[at..]), Frame::Whole { .. }))
}

/// Replays every readable record of one segment. Never writes: what to do about the
/// damage and the torn tail it reports is decided once the whole log has been read.
fn replay_segment(
    path: &Path,
    number: u64,
    is_last: bool,
    replay: &mut Replay,
    progress: &RecoveryProgress,
) -> SegmentOutcome {
    let mut outcome = SegmentOutcome::default();
    let file = path.display();
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(e) => {
            outcome
                .damage
                .push(format!("cannot read log segment {file}: {e}"));
            return outcome;
        }
    };
    progress.file_read();
    match parse_log_header(&data) {
        Ok(n) if n == number => {}
        _ if never_written(&data, number) => {
            tracing::warn!(
                file = %file,
                bytes = data.len(),
                "skipping a log segment whose header never reached the disk (a start that failed before logging anything); it holds nothing"
            );
            return outcome;
        }
        Ok(n) => outcome.damage.push(format!(
            "log segment {file} at byte 0: the header says it is segment {n}"
        )),
        // A damaged version field, when the first frame reads as this format's: the
        // frames carry their own checksums, so they are read (and the damage told).
        Err(e @ HeaderError::Version { .. })
            if matches!(read_frame(&data[LOG_HEADER_LEN..]), Frame::Whole { .. }) =>
        {
            outcome.damage.push(format!("log segment {file}: {e}"));
        }
        Err(e @ HeaderError::Version { .. }) => {
            // Another format: its frames cannot be read as this one's.
            outcome.damage.push(format!(
                "log segment {file} at byte 0: {e}; its {} bytes cannot be read",
                data.len()
            ));
            return outcome;
        }
        Err(e @ HeaderError::Short) => {
            outcome.damage.push(format!(
                "log segment {file} at byte 0: {e} ({} bytes, not a header's beginning)",
                data.len()
            ));
            return outcome;
        }
        // A damaged magic says nothing about the records: their frames carry their
        // own checksums.
        Err(e @ HeaderError::BadMagic) => outcome
            .damage
            .push(format!("log segment {file} at byte 0: {e}")),
    }
    let mut offset = LOG_HEADER_LEN;
    while offset < data.len() {
        let rest = &data[offset..];
        let what = match read_frame(rest) {
            Frame::Whole { payload, len } => {
                match decode_record(payload) {
                    Ok(record) => {
                        replay.apply(record);
                        progress.records_replayed(replay.records);
                    }
                    Err(e) => outcome.damage.push(format!(
                        "log segment {file} at byte {offset}: record cannot be decoded ({e}); bytes {offset}..{} skipped",
                        offset + len
                    )),
                }
                offset += len;
                continue;
            }
            // A record whose data is damaged, with no whole record anywhere after it
            // in the newest segment, is taken for a torn write only when its bytes
            // show a stretch that was never written (see `looks_unwritten`): a bit
            // flipped in the last acknowledged record is refused like any other.
            // (Whole frames after it are looked for first: the zero scan then runs
            // at most once a segment, so recovery stays linear in damaged records.)
            Frame::BadChecksum { .. } | Frame::BadHeader
                if is_last
                    && next_whole_frame(&data, offset + 1).is_none()
                    && looks_unwritten(&data, offset) =>
            {
                outcome.torn_at = Some(offset);
                break;
            }
            Frame::BadChecksum { len } => {
                outcome.damage.push(format!(
                    "log segment {file} at byte {offset}: checksum mismatch; the record's bytes {offset}..{} skipped",
                    offset + len
                ));
                offset += len;
                continue;
            }
            // The file ends inside the frame: a write cut short (a killed process).
            Frame::Truncated if is_last => {
                outcome.torn_at = Some(offset);
                break;
            }
            Frame::Truncated => "record cut short in a segment that is not the last",
            Frame::BadHeader => "frame header checksum mismatch",
        };
        let resume = next_whole_frame(&data, offset + 1).unwrap_or(data.len());
        outcome.damage.push(format!(
            "log segment {file} at byte {offset}: {what}; bytes {offset}..{resume} ({} bytes) cannot be read{}",
            resume - offset,
            if resume < data.len() {
                format!(", the next readable record starts at byte {resume}")
            } else {
                ", nothing readable follows in this segment".to_owned()
            }
        ));
        offset = resume;
    }
    outcome
}

/// `path` with `suffix` appended to its name, numbered if that name is taken, so an
/// earlier incident's copy is never overwritten.
fn side_path(path: &Path, suffix: &str) -> PathBuf {
    let mut n = 1u32;
    loop {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        if n > 1 {
            name.push(format!(".{n}"));
        }
        let candidate = PathBuf::from(name);
        if !candidate.exists() {
            return candidate;
        }
        n += 1;
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.sync_all()
}

/// Moves a torn tail out of the segment: its bytes go to a side file (fsynced) before
/// the segment is cut, so nothing is destroyed even if the tail was not what it
/// seems. The segment must be cut: the next start writes a new segment after it, and
/// a tail left in place would then read as damage in the middle of the log.
fn set_aside_torn_tail(path: &Path, offset: usize) -> Result<(), RecoveryError> {
    let fail = |e: std::io::Error| RecoveryError::TornTail {
        path: path.to_path_buf(),
        offset,
        message: e.to_string(),
    };
    let data = std::fs::read(path).map_err(fail)?;
    let tail = data.get(offset..).unwrap_or_default();
    let aside = side_path(path, &format!(".torn-{offset}"));
    write_synced(&aside, tail).map_err(fail)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir).map_err(|e| RecoveryError::TornTail {
            path: path.to_path_buf(),
            offset,
            message: e.to_string(),
        })?;
    }
    truncate(path, offset as u64).map_err(fail)?;
    tracing::warn!(
        file = %path.display(),
        offset,
        dropped_bytes = tail.len(),
        kept_in = %aside.display(),
        "dropping a torn last log record (the server stopped mid-write); it was never acknowledged under fsync=always"
    );
    Ok(())
}

fn truncate(path: &Path, len: u64) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

/// Keeps a copy of a damaged log segment for forensics. The original stays in place
/// (unchanged) so that a start that fails before its fresh snapshot meets the same
/// data again; once a snapshot covers it, pruning removes it like any old segment.
fn copy_aside(path: &Path) {
    let aside = side_path(path, ".corrupt");
    let copied = std::fs::read(path).and_then(|bytes| write_synced(&aside, &bytes));
    match copied {
        Ok(()) => {
            tracing::warn!(file = %path.display(), copy = %aside.display(), "damaged log segment copied aside")
        }
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "cannot copy the damaged log segment aside; it is left in place until pruned")
        }
    }
}

fn set_aside(path: &Path) {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".corrupt");
    match std::fs::rename(path, &aside) {
        Ok(()) => tracing::warn!(file = %path.display(), "set aside as .corrupt"),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot set the damaged file aside")
        }
    }
}

/// Recovers the state kept in `dir`.
#[cfg(test)]
pub fn recover(dir: &Path, accept_loss: bool) -> Result<Recovered, RecoveryError> {
    recover_telling(dir, accept_loss, &RecoveryProgress::default())
}

/// Recovers the state kept in `dir`, counting what it reads in `progress`.
pub fn recover_telling(
    dir: &Path,
    accept_loss: bool,
    progress: &RecoveryProgress,
) -> Result<Recovered, RecoveryError> {
    let listing = list(dir)?;
    let mut findings = Findings::default();
    progress.enter(Phase::ReadingSnapshot);
    let base = pick_snapshot(&listing, accept_loss, &mut findings, progress);
    progress.enter(Phase::ReplayingLog);
    let fallback = base.as_ref().map(|(g, d)| (*g, d.log_start));
    // Without a snapshot the log must reach back to its very first segment.
    let log_start = fallback.map_or(1, |(_, log_start)| log_start);
    let mut replay = Replay::from_snapshot(base.map(|(_, d)| d));
    replay_log(
        dir,
        &listing,
        log_start,
        fallback.is_some(),
        &mut replay,
        &mut findings,
        progress,
    );

    let problems = findings.problems(fallback.is_some());
    if !problems.is_empty() {
        if !accept_loss {
            return Err(RecoveryError::Refused {
                dir: dir.to_path_buf(),
                problems,
            });
        }
        accept_the_loss(&problems, &findings);
    } else {
        for (_, message) in &findings.unreadable_snapshots {
            tracing::warn!(problem = %message, "recovered from an older snapshot and the log instead; nothing was lost");
        }
    }
    clean_up(&listing, &findings)?;

    let lost_data = !problems.is_empty();
    let next_segment = listing
        .segments
        .keys()
        .next_back()
        .map_or(1, |n| n + 1)
        .max(log_start);
    Ok(Recovered {
        queues: replay.take_queues(),
        registry_seq: replay.registry_seq,
        registry: replay.registry,
        schedule_seq: replay.schedule_seq,
        schedules: replay.schedules,
        next_job_id: replay.max_job_id + 1,
        next_incarnation: replay.max_incarnation + 1,
        next_segment,
        last_generation: listing.snapshots.keys().next_back().copied().unwrap_or(0),
        fallback: if lost_data { None } else { fallback },
        lost_data,
    })
}

/// Everything recovery found wrong, and the files it concerns: a refusal lists all of
/// it, and accepting the loss deals with exactly the files it names.
#[derive(Default)]
struct Findings {
    /// Snapshots that could not be read, newest first, each with why.
    unreadable_snapshots: Vec<(PathBuf, String)>,
    /// No snapshot could be read and the log does not reach back to segment 1: the
    /// unreadable snapshots held data nothing else has.
    snapshots_irreplaceable: bool,
    /// A snapshot whose header is damaged, used anyway (only with the loss accepted).
    used_damaged_header: Option<PathBuf>,
    /// Damage to the log, and segments missing from it, in log order.
    log_damage: Vec<String>,
    /// Log segments holding some of that damage.
    damaged_segments: Vec<PathBuf>,
    /// Where the newest segment's torn tail starts. Not a loss: it is set aside even
    /// when nothing else is wrong.
    torn_tail: Option<(PathBuf, usize)>,
}

impl Findings {
    /// What the loss of data amounts to, one line each; empty when nothing is lost.
    /// `has_base`: recovery started from a snapshot.
    fn problems(&self, has_base: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if self.snapshots_irreplaceable {
            problems.extend(self.unreadable_snapshots.iter().map(|(_, m)| m.clone()));
            problems
                .push("no readable snapshot, and the log does not reach back to segment 1".into());
        }
        problems.extend(self.log_damage.iter().cloned());
        problems.extend(self.used_damaged_header.as_ref().map(|path| {
            format!(
                "snapshot {} has a damaged header; its payload, whose checksum holds, was used",
                path.display()
            )
        }));
        if !problems.is_empty() && !self.snapshots_irreplaceable {
            // Every file accepting the loss would set aside is named in the refusal.
            let why = if has_base {
                "(and the older snapshot cannot replace it without loss)"
            } else {
                "(recovery used the log instead)"
            };
            let named = self
                .unreadable_snapshots
                .iter()
                .rev()
                .map(|(_, message)| format!("{message} {why}"));
            problems.splice(0..0, named);
        }
        problems
    }
}

/// The newest snapshot that reads whole, as (generation, data). With the loss
/// accepted and none whole, the newest whose payload alone checks out.
fn pick_snapshot(
    listing: &Listing,
    accept_loss: bool,
    findings: &mut Findings,
    progress: &RecoveryProgress,
) -> Option<(u64, SnapshotData)> {
    let mut base = None;
    for (generation, path) in listing.snapshots.iter().rev() {
        let read = read_snapshot(path);
        progress.file_read();
        match read {
            Ok(data) => {
                base = Some((*generation, data));
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "snapshot unusable; trying an older one");
                findings
                    .unreadable_snapshots
                    .push((path.clone(), e.to_string()));
            }
        }
    }
    if base.is_none() && accept_loss {
        base = salvage_snapshot(listing, findings);
    }
    findings.snapshots_irreplaceable = base.is_none()
        && !findings.unreadable_snapshots.is_empty()
        && listing.segments.keys().next() != Some(&1);
    base
}

/// No snapshot reads whole: one whose header alone is damaged still holds a payload
/// that checks out, better than none.
fn salvage_snapshot(listing: &Listing, findings: &mut Findings) -> Option<(u64, SnapshotData)> {
    listing.snapshots.iter().rev().find_map(|(generation, path)| {
        let data = std::fs::read(path)
            .ok()
            .and_then(|file| decode_snapshot_payload(&file))?;
        tracing::error!(file = %path.display(), "using a snapshot whose header is damaged: its payload checks out (--accept-data-loss)");
        findings.used_damaged_header = Some(path.clone());
        Some((*generation, data))
    })
}

/// Replays every segment from `log_start` on, noting damage, gaps and a torn tail.
/// `has_base`: recovery started from a snapshot.
fn replay_log(
    dir: &Path,
    listing: &Listing,
    log_start: u64,
    has_base: bool,
    replay: &mut Replay,
    findings: &mut Findings,
    progress: &RecoveryProgress,
) {
    let segments: Vec<(u64, &PathBuf)> = listing
        .segments
        .range(log_start..)
        .map(|(n, p)| (*n, p))
        .collect();
    let mut expected = log_start;
    let last_index = segments.len().checked_sub(1);
    // Every segment is read even after damage: a refusal then lists everything that
    // --accept-data-loss would lose, and accepting loses only that.
    for (i, (number, path)) in segments.iter().enumerate() {
        if *number != expected {
            findings.log_damage.push(format!(
                "log segments {expected} to {} are missing from {}",
                number - 1,
                dir.display()
            ));
        }
        expected = number + 1;
        let outcome = replay_segment(path, *number, Some(i) == last_index, replay, progress);
        if !outcome.damage.is_empty() {
            findings.log_damage.extend(outcome.damage);
            findings.damaged_segments.push((*path).clone());
        }
        if let Some(offset) = outcome.torn_at {
            findings.torn_tail = Some(((*path).clone(), offset));
        }
    }
    if segments.is_empty() && has_base {
        // A snapshot's rotation creates its log_start segment before the snapshot
        // is written, so it is missing only if something removed it.
        if !listing.segments.is_empty() || !findings.unreadable_snapshots.is_empty() {
            findings.log_damage.push(format!(
                "log segment {log_start} is missing from {}",
                dir.display()
            ));
        }
    }
}

/// The operator accepted the loss: every problem is logged, and the damaged files are
/// kept for forensics.
fn accept_the_loss(problems: &[String], findings: &Findings) {
    for problem in problems {
        tracing::error!(problem = %problem, "accepting data loss as asked (--accept-data-loss); this was skipped");
    }
    // Copied before the torn tail may cut the same file (see `clean_up`).
    for path in &findings.damaged_segments {
        copy_aside(path);
    }
    for (path, _) in &findings.unreadable_snapshots {
        set_aside(path);
    }
}

/// Once recovery is certain to go ahead: sets the torn tail aside and removes
/// unfinished snapshots. A refused start never gets here, so it changes no file.
fn clean_up(listing: &Listing, findings: &Findings) -> Result<(), RecoveryError> {
    if let Some((path, offset)) = &findings.torn_tail {
        set_aside_torn_tail(path, *offset)?;
    }
    for path in &listing.unfinished {
        tracing::info!(file = %path.display(), "removing an unfinished snapshot");
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::format::{encode_record, log_header, LogRecordRef};
    use proptest::prelude::*;

    fn job_record(seq: u64) -> Vec<u8> {
        let change = Change::Enqueued {
            jobs: vec![crate::queue::job::Job {
                id: crate::queue::job::JobId(seq),
                body: bytes::Bytes::from(format!("{{\"n\":{seq}}}")),
                uniq: None,
                priority: crate::queue::job::DEFAULT_PRIORITY,
            }],
            due_ms: None,
            expires_ms: None,
        };
        let record = LogRecordRef::Queue {
            queue: 1,
            seq,
            change: &change,
        };
        encode_record(&record).unwrap_or_default()
    }

    /// Segment `number` holding jobs `seqs` of queue 1 (created in segment 1).
    fn segment(number: u64, seqs: std::ops::RangeInclusive<u64>) -> Vec<u8> {
        let mut data = log_header(number).to_vec();
        if number == 1 {
            let created = LogRecordRef::QueueCreated {
                queue: 1,
                name: "q",
            };
            data.extend(encode_record(&created).unwrap_or_default());
        }
        for seq in seqs {
            data.extend(job_record(seq));
        }
        data
    }

    /// A schedule's run logged before its job reached the queue (a crash between
    /// the two) is pending after replay, to be sent again under the same id, which
    /// no new job may take; a run whose job is in the log is not.
    #[test]
    fn a_scheduled_run_whose_job_never_reached_its_queue_is_pending_after_replay() {
        use crate::schedule::state::{ScheduleChange, ScheduleSpec};
        let schedule = |seq: u64, change: ScheduleChange| {
            encode_record(&LogRecordRef::Schedule {
                seq,
                change: &change,
            })
            .unwrap_or_default()
        };
        let fired = |job_id: u64, slot_ms: u64| ScheduleChange::Fired {
            name: "s".into(),
            slot_ms,
            job_id,
            missed: None,
        };
        let mut data = log_header(1).to_vec();
        data.extend(
            encode_record(&LogRecordRef::QueueCreated {
                queue: 1,
                name: "q",
            })
            .unwrap_or_default(),
        );
        let spec = ScheduleSpec {
            cron: "* * * * * *".into(),
            timezone: "UTC".into(),
            queue: "q".into(),
            job: "1".into(),
            priority: None,
            ttl_secs: None,
        };
        data.extend(schedule(
            1,
            ScheduleChange::Set {
                name: "s".into(),
                spec,
                now_ms: 1_000,
            },
        ));
        data.extend(schedule(2, fired(7, 2_000)));
        data.extend(job_record(7));
        data.extend(schedule(3, fired(9, 3_000)));
        let dir = dir_with(&[(1, &data)]);
        let recovered = recover(dir.path(), false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(recovered.schedules.pending(), vec![(9, "s".to_owned())]);
        let s = recovered.schedules.get("s");
        assert_eq!(s.map(|s| (s.runs, s.last_run_ms)), Some((2, Some(3_000))));
        assert_eq!(recovered.next_job_id, 10);
        assert_eq!(recovered.schedule_seq, 3);
        assert_eq!(bodies(&recovered), expected([7]));
    }

    /// (offset, length) of every frame in a sound segment.
    fn frames(data: &[u8]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut at = LOG_HEADER_LEN;
        while let Frame::Whole { len, .. } = read_frame(&data[at..]) {
            out.push((at, len));
            at += len;
        }
        out
    }

    fn name(n: u64) -> String {
        crate::storage::log::segment_file_name(n)
    }

    /// A data directory holding `segments` as (number, bytes).
    fn dir_with(segments: &[(u64, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        for (n, bytes) in segments {
            std::fs::write(dir.path().join(name(*n)), bytes)
                .unwrap_or_else(|e| panic!("write: {e}"));
        }
        dir
    }

    /// The bodies of queue q's ready jobs.
    fn bodies(recovered: &Recovered) -> Vec<String> {
        recovered
            .queues
            .iter()
            .flat_map(|q| q.state.ready_bodies())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }

    fn expected(seqs: impl IntoIterator<Item = u64>) -> Vec<String> {
        seqs.into_iter().map(|n| format!("{{\"n\":{n}}}")).collect()
    }

    /// Recovery refuses, naming segment `segment` and byte `at`.
    fn assert_refused_at(dir: &Path, segment: u64, at: usize) {
        let message = refusal(dir);
        assert!(
            message.contains(&format!("{} at byte {at}", name(segment))),
            "{message}"
        );
    }

    fn refusal(dir: &Path) -> String {
        match recover(dir, false) {
            Ok(r) => panic!("recovered {:?} instead of refusing", bodies(&r)),
            Err(e) => e.to_string(),
        }
    }

    fn read(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    fn recover_bytes(segment: &[u8]) -> Result<usize, String> {
        recover_bytes_with(segment, false)
    }

    fn recover_bytes_with(segment: &[u8], accept_loss: bool) -> Result<usize, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join(name(1)), segment).map_err(|e| e.to_string())?;
        recover(dir.path(), accept_loss)
            .map(|r| r.queues.iter().map(|q| q.state.ready_len()).sum())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_valid_segment_replays() {
        assert_eq!(recover_bytes(&segment(1, 1..=3)), Ok(3));
    }

    /// Damage to a length field in the middle of the last segment: refused with file
    /// and offset, and the file is left exactly as it was.
    fn assert_mid_length_damage_refused(damage: impl Fn(&mut [u8], usize)) {
        let mut data = segment(1, 1..=5);
        let (at, _) = frames(&data)[3];
        damage(&mut data, at);
        let dir = dir_with(&[(1, &data)]);
        let message = refusal(dir.path());
        assert!(message.contains(&name(1)), "{message}");
        assert!(
            message.contains(&format!("at byte {at}: frame header checksum mismatch")),
            "{message}"
        );
        assert_eq!(read(&dir.path().join(name(1))), data);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_bit_flip_in_a_middle_records_length_is_refused_not_taken_for_a_torn_tail() {
        assert_mid_length_damage_refused(|data, at| data[at + 2] ^= 0x40);
    }

    #[test]
    fn a_huge_length_in_a_middle_record_is_refused_not_taken_for_a_torn_tail() {
        assert_mid_length_damage_refused(|data, at| {
            data[at..at + 4].copy_from_slice(&10_000_000u32.to_le_bytes())
        });
    }

    /// A torn tail appended to a sound 3-job segment: dropped, its bytes kept in a
    /// side file, the segment cut back, and the next recovery clean.
    fn assert_torn_tail_set_aside(tail: &[u8]) {
        let sound = segment(1, 1..=3);
        let mut data = sound.clone();
        data.extend_from_slice(tail);
        let dir = dir_with(&[(1, &data)]);
        let recovered = recover(dir.path(), false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bodies(&recovered), expected(1..=3));
        assert!(!recovered.lost_data);
        let path = dir.path().join(name(1));
        assert_eq!(read(&path), sound);
        let aside = dir.path().join(format!("{}.torn-{}", name(1), sound.len()));
        assert_eq!(read(&aside), tail);
        let again = recover(dir.path(), false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bodies(&again), expected(1..=3));
    }

    #[test]
    fn a_record_cut_inside_its_frame_header_is_a_torn_tail() {
        assert_torn_tail_set_aside(&job_record(4)[..7]);
    }

    #[test]
    fn a_record_cut_inside_its_payload_is_a_torn_tail() {
        let record = job_record(4);
        assert_torn_tail_set_aside(&record[..record.len() - 3]);
    }

    #[test]
    fn a_flipped_bit_in_the_last_record_is_refused_not_taken_for_a_torn_tail() {
        // Under fsync=always the last whole record may well have been acknowledged.
        let mut data = segment(1, 1..=3);
        let at = data.len();
        let mut record = job_record(4);
        let last = record.len() - 1;
        record[last] ^= 0x01;
        data.extend_from_slice(&record);
        let dir = dir_with(&[(1, &data)]);
        assert_refused_at(dir.path(), 1, at);
        assert_eq!(read(&dir.path().join(name(1))), data);
    }

    #[test]
    fn a_last_record_whose_end_never_landed_is_a_torn_tail() {
        // Its header and first bytes landed; everything after them reads as zeros
        // (the file's size was written, its last blocks were not).
        let mut record = job_record(4);
        let half = record.len() / 2;
        record[half..].fill(0);
        record.extend_from_slice(&[0u8; 4096]);
        assert_torn_tail_set_aside(&record);
    }

    #[test]
    fn zero_bytes_at_the_end_are_a_torn_tail() {
        assert_torn_tail_set_aside(&[0u8; 100]);
        assert_torn_tail_set_aside(&[0u8; 5]);
    }

    #[test]
    fn a_batch_cut_by_a_power_loss_is_a_torn_tail() {
        // The last batch (jobs 4 to 30) was being written when the power went: the
        // file grew, but disk blocks from some 512-byte boundary on never landed.
        let at = segment(1, 1..=3).len();
        let batch: Vec<u8> = (4..=30).flat_map(job_record).collect();
        let boundary = (at + 1).next_multiple_of(512) - at;
        assert!(
            batch.len() > boundary + 1024,
            "the batch spans several blocks"
        );
        // The records wholly before the boundary are read; the rest is set aside.
        let assert_torn_after_the_boundary = |tail: &[u8]| {
            let mut data = segment(1, 1..=3);
            data.extend_from_slice(tail);
            let dir = dir_with(&[(1, &data)]);
            let recovered = recover(dir.path(), false).unwrap_or_else(|e| panic!("{e}"));
            let got = bodies(&recovered);
            assert!(got.len() >= 3 && got.len() < 30, "{got:?}");
            assert_eq!(got, expected(1..=got.len() as u64));
            let torn = std::fs::read_dir(dir.path())
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().contains(".torn-"))
                })
                .unwrap_or(false);
            assert!(torn, "the torn bytes are kept aside");
            let again = recover(dir.path(), false).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(bodies(&again), got);
        };
        // Every block from the boundary on is zeros.
        let mut unwritten_to_the_end = batch.clone();
        unwritten_to_the_end[boundary..].fill(0);
        assert_torn_after_the_boundary(&unwritten_to_the_end);
        // One block is zeros, the next landed, cut inside a record.
        let mut one_block_missing = batch[..boundary + 512 + 30].to_vec();
        one_block_missing[boundary..boundary + 512].fill(0);
        assert_torn_after_the_boundary(&one_block_missing);
        // Zeros that do not fill an aligned block are no proof: refused.
        let mut short_run = batch.clone();
        short_run[boundary - 40..boundary + 40].fill(0);
        let mut data = segment(1, 1..=3);
        data.extend_from_slice(&short_run[..boundary + 200]);
        let dir = dir_with(&[(1, &data)]);
        refusal(dir.path());
    }

    #[test]
    fn a_flipped_bit_in_a_last_record_holding_a_run_of_zeros_is_refused() {
        // Zeros inside a record (here 64 NULs in a `uniq` key, which HTTP now
        // refuses, but older logs may hold) are not an unwritten block.
        let nul = "\0".repeat(64);
        let mut data = segment(1, 1..=3);
        let at = data.len();
        let change = Change::Enqueued {
            jobs: vec![crate::queue::job::Job {
                id: crate::queue::job::JobId(4),
                body: bytes::Bytes::from("{\"n\":4}"),
                uniq: Some(nul.as_str().into()),
                priority: crate::queue::job::DEFAULT_PRIORITY,
            }],
            due_ms: None,
            expires_ms: None,
        };
        let record = LogRecordRef::Queue {
            queue: 1,
            seq: 4,
            change: &change,
        };
        let mut last = encode_record(&record).unwrap_or_default();
        let end = last.len() - 1;
        last[end] ^= 0x01;
        data.extend_from_slice(&last);
        let dir = dir_with(&[(1, &data)]);
        assert_refused_at(dir.path(), 1, at);
    }

    #[test]
    fn a_damaged_record_with_a_whole_record_after_it_in_the_last_segment_is_refused() {
        let mut data = segment(1, 1..=3);
        let at = data.len();
        let mut four = job_record(4);
        four[2] ^= 0x40;
        data.extend_from_slice(&four);
        data.extend_from_slice(&job_record(5));
        let dir = dir_with(&[(1, &data)]);
        assert_refused_at(dir.path(), 1, at);
    }

    #[test]
    fn a_bad_payload_checksum_with_records_after_it_is_refused() {
        let mut data = segment(1, 1..=4);
        let (at, len) = frames(&data)[2];
        data[at + len - 1] ^= 0x01;
        let dir = dir_with(&[(1, &data)]);
        let message = refusal(dir.path());
        assert!(
            message.contains(&format!("{} at byte {at}: checksum mismatch", name(1))),
            "{message}"
        );
    }

    #[test]
    fn a_torn_tail_in_a_segment_that_is_not_the_last_is_refused() {
        let mut first = segment(1, 1..=3);
        let cut_at = first.len();
        first.extend_from_slice(&job_record(4)[..10]);
        let dir = dir_with(&[(1, &first), (2, &segment(2, 5..=6))]);
        assert_refused_at(dir.path(), 1, cut_at);
        assert_eq!(read(&dir.path().join(name(1))), first);
    }

    #[test]
    fn a_segment_whose_header_never_reached_the_disk_does_not_hide_later_ones() {
        let header = log_header(2);
        let never_written: [&[u8]; 5] = [&[], &header[..7], &header[..19], &[0; 9], &[0; 20]];
        for empty in never_written {
            let dir = dir_with(&[(1, &segment(1, 1..=3)), (2, empty), (3, &segment(3, 4..=5))]);
            let recovered =
                recover(dir.path(), false).unwrap_or_else(|e| panic!("{} bytes: {e}", empty.len()));
            assert_eq!(bodies(&recovered), expected(1..=5), "{} bytes", empty.len());
            assert!(!recovered.lost_data);
            assert_eq!(recovered.next_segment, 4);
        }
    }

    #[test]
    fn a_short_segment_that_is_not_a_header_prefix_is_damage() {
        let dir = dir_with(&[(1, &segment(1, 1..=3)), (2, b"garbage")]);
        let message = refusal(dir.path());
        assert!(
            message.contains(&format!("{} at byte 0", name(2))),
            "{message}"
        );
    }

    #[test]
    fn accepting_loss_skips_only_the_damaged_records_and_keeps_later_segments() {
        let mut first = segment(1, 1..=6);
        let all = frames(&first);
        // Job 2: a damaged length; job 4: a damaged payload.
        let (bad_header_at, bad_header_len) = all[2];
        first[bad_header_at + 2] ^= 0x40;
        let (bad_payload_at, bad_payload_len) = all[4];
        first[bad_payload_at + bad_payload_len - 1] ^= 0x01;
        let dir = dir_with(&[(1, &first), (2, &segment(2, 7..=8))]);

        let message = refusal(dir.path());
        assert!(
            message.contains(&format!(
                "at byte {bad_header_at}: frame header checksum mismatch; bytes {bad_header_at}..{} ({bad_header_len} bytes) cannot be read",
                bad_header_at + bad_header_len
            )),
            "{message}"
        );
        assert!(
            message.contains(&format!("at byte {bad_payload_at}: checksum mismatch")),
            "{message}"
        );

        let recovered = recover(dir.path(), true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bodies(&recovered), expected([1, 3, 5, 6, 7, 8]));
        assert!(recovered.lost_data);
        assert_eq!(recovered.fallback, None);
        // Kept for forensics, and the original left as it was.
        let path = dir.path().join(name(1));
        assert_eq!(read(&path), first);
        let mut aside = path.clone().into_os_string();
        aside.push(".corrupt");
        assert_eq!(read(Path::new(&aside)), first);
        assert_eq!(read(&dir.path().join(name(2))), segment(2, 7..=8));
    }

    #[test]
    fn accepting_loss_resumes_after_a_damaged_segment_header() {
        let mut first = segment(1, 1..=3);
        first[0] ^= 0x01;
        let dir = dir_with(&[(1, &first), (2, &segment(2, 4..=4))]);
        assert!(refusal(dir.path()).contains(&format!("{} at byte 0", name(1))));
        let recovered = recover(dir.path(), true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bodies(&recovered), expected(1..=4));
    }

    #[test]
    fn accepting_loss_reads_the_frames_of_a_segment_whose_version_field_is_damaged() {
        let mut two = segment(2, 4..=6);
        two[9] ^= 0x01;
        let dir = dir_with(&[(1, &segment(1, 1..=3)), (2, &two)]);
        let message = refusal(dir.path());
        assert!(message.contains(&name(2)), "{message}");
        let recovered = recover(dir.path(), true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bodies(&recovered), expected(1..=6));
    }

    #[test]
    fn accepting_loss_uses_a_snapshot_whose_header_alone_is_damaged() {
        // A snapshot of jobs 1-3 whose log starts at segment 2 (segment 1 pruned).
        let base = recover(dir_with(&[(1, &segment(1, 1..=3))]).path(), false)
            .unwrap_or_else(|e| panic!("{e}"));
        let queues = base
            .queues
            .into_iter()
            .map(|q| crate::storage::format::QueueSnapshot {
                incarnation: q.incarnation,
                name: q.name.as_str().to_owned(),
                seq: q.seq,
                image: q.state.image(),
            })
            .collect();
        let data = SnapshotData {
            generation: 1,
            log_start: 2,
            incarnation_watermark: 0,
            next_incarnation: base.next_incarnation,
            next_job_id: base.next_job_id,
            created_at_ms: 0,
            queues,
            registry_seq: 0,
            workers: vec![],
            schedule_seq: 0,
            schedules: vec![],
        };
        let mut file = crate::storage::format::encode_snapshot(&data).unwrap_or_default();
        file[1] ^= 0x01;
        let dir = dir_with(&[(2, &segment(2, 4..=6))]);
        std::fs::write(
            dir.path()
                .join(crate::storage::snapshot::snapshot_file_name(1)),
            &file,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let message = refusal(dir.path());
        assert!(message.contains("at byte 0"), "{message}");
        let recovered = recover(dir.path(), true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bodies(&recovered), expected(1..=6));
        assert!(recovered.lost_data, "a fresh snapshot is to be written");
    }

    #[test]
    fn a_refusal_names_every_file_accepting_the_loss_would_set_aside() {
        let mut two = segment(2, 4..=6);
        let (at, _) = frames(&two)[1];
        two[at + 2] ^= 0x40;
        let dir = dir_with(&[(1, &segment(1, 1..=3)), (2, &two)]);
        let snapshot = crate::storage::snapshot::snapshot_file_name(1);
        std::fs::write(
            dir.path().join(&snapshot),
            b"not a snapshot at all, just bytes",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let message = refusal(dir.path());
        assert!(message.contains(&snapshot), "{message}");
        assert!(
            message.contains(&format!("{} at byte {at}", name(2))),
            "{message}"
        );
    }

    #[test]
    fn a_refused_start_leaves_even_an_unfinished_snapshot_in_place() {
        let mut one = segment(1, 1..=3);
        let (at, _) = frames(&one)[1];
        one[at + 2] ^= 0x40;
        let dir = dir_with(&[(1, &one)]);
        let unfinished = dir.path().join("snapshot-00000000000000000001.presque.tmp");
        std::fs::write(&unfinished, b"half a snapshot").unwrap_or_else(|e| panic!("{e}"));
        assert_refused_at(dir.path(), 1, at);
        assert!(unfinished.exists(), "a refused start changed the directory");
        std::fs::write(dir.path().join(name(1)), segment(1, 1..=3))
            .unwrap_or_else(|e| panic!("{e}"));
        let recovered = recover(dir.path(), false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bodies(&recovered), expected(1..=3));
        assert!(!unfinished.exists(), "removed once recovery succeeds");
    }

    #[test]
    fn accepting_loss_keeps_segments_after_a_missing_one() {
        let dir = dir_with(&[(1, &segment(1, 1..=2)), (3, &segment(3, 5..=6))]);
        let message = refusal(dir.path());
        assert!(
            message.contains("log segments 2 to 2 are missing"),
            "{message}"
        );
        let recovered = recover(dir.path(), true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bodies(&recovered), expected([1, 2, 5, 6]));
    }

    /// The invariant behind the frame header checksum and the strict tail rule, over
    /// every byte of a segment: one flipped bit anywhere, the last record included,
    /// is refused naming the file; recovery never quietly drops a record.
    #[test]
    fn every_flipped_bit_in_a_segment_is_refused() {
        let sound = segment(1, 1..=5);
        for at in 0..sound.len() {
            for bit in 0..8 {
                let mut data = sound.clone();
                data[at] ^= 1 << bit;
                match recover_bytes(&data) {
                    Err(message) => assert!(message.contains(&name(1)), "{message}"),
                    Ok(jobs) => panic!("flip at byte {at} bit {bit}: started with {jobs} jobs"),
                }
            }
        }
    }

    #[test]
    fn a_huge_claimed_byte_string_is_an_error_not_an_allocation() {
        // A Job tuple whose body claims 2^62 bytes.
        let mut payload = vec![0x83, 0x01, 0x5b];
        payload.extend_from_slice(&(1u64 << 62).to_be_bytes());
        payload.extend_from_slice(b"abc");
        let record = [0xa1, 0x65]
            .iter()
            .copied()
            .chain(*b"Queue")
            .chain([0xa3, 0x65])
            .chain(*b"queue")
            .chain([0x01, 0x63])
            .chain(*b"seq")
            .chain([0x01, 0x66])
            .chain(*b"change")
            .chain([0xa1, 0x68])
            .chain(*b"Enqueued")
            .chain([0xa2, 0x64])
            .chain(*b"jobs")
            .chain([0x81])
            .chain(payload)
            .collect::<Vec<u8>>();
        let err = crate::storage::format::decode_record(&record);
        assert!(err.is_err(), "{err:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_segments_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = recover_bytes(&data);
            let mut with_header = log_header(1).to_vec();
            with_header.extend_from_slice(&data);
            let _ = recover_bytes(&with_header);
            let _ = recover_bytes_with(&with_header, true);
        }

        #[test]
        fn damaged_valid_segments_never_panic(at in 0usize..200, bit in 0u8..8, cut in 0usize..250) {
            let mut data = segment(1, 1..=3);
            let at = at % data.len();
            data[at] ^= 1 << bit;
            let _ = recover_bytes(&data);
            // Accepting loss replays around the damage: it may skip, never panic.
            let _ = recover_bytes_with(&data, true);
            let cut = cut.min(data.len());
            let _ = recover_bytes(&data[..cut]);
        }
    }
}
