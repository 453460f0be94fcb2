//! Start-up recovery: the newest readable snapshot, then every log record after it.
//!
//! Strict and loud. A record cut short at the very end of the last segment is what a
//! crash mid-write leaves: it is dropped (and the segment truncated) with a warning.
//! Any other damage (a checksum mismatch, a missing segment, an unreadable snapshot
//! that no older snapshot can replace without loss) stops the start with the file
//! and offset, unless the operator accepts the loss explicitly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::format::{
    decode_record, parse_log_header, read_frame, Frame, LogRecord, SnapshotData, LOG_HEADER_LEN,
};
use super::log::parse_segment_file_name;
use super::snapshot::{parse_snapshot_file_name, read_snapshot};
use crate::names::QueueName;
use crate::queue_state::{Change, QueueState};
use crate::registry_state::RegistryState;

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
    pub records_replayed: usize,
}

/// Why the server refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("cannot read the data directory {dir}: {message}")]
    ListDir { dir: PathBuf, message: String },
    #[error("refusing to start, the data in {dir} cannot be recovered without loss:\n  - {}\nStart with --accept-data-loss to start from what can be read; the rest is lost.", problems.join("\n  - "))]
    Refused { dir: PathBuf, problems: Vec<String> },
}

struct Listing {
    snapshots: BTreeMap<u64, PathBuf>,
    segments: BTreeMap<u64, PathBuf>,
}

fn list(dir: &Path) -> Result<Listing, RecoveryError> {
    let entries = std::fs::read_dir(dir).map_err(|e| RecoveryError::ListDir {
        dir: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut listing = Listing {
        snapshots: BTreeMap::new(),
        segments: BTreeMap::new(),
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
            // An unfinished snapshot from a crash mid-write: never the only copy.
            tracing::info!(file = %entry.path().display(), "removing an unfinished snapshot");
            let _ = std::fs::remove_file(entry.path());
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
            max_job_id: 0,
            max_incarnation: 0,
            records: 0,
        };
        if let Some(base) = base {
            replay.watermark = base.incarnation_watermark;
            replay.registry_seq = base.registry_seq;
            replay.registry = RegistryState::from_image(&base.workers);
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

/// Outcome of replaying one segment.
enum SegmentEnd {
    Clean,
    /// Damage at a byte offset: what, where.
    Damaged(String),
}

fn replay_segment(path: &Path, number: u64, is_last: bool, replay: &mut Replay) -> SegmentEnd {
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(e) => {
            return SegmentEnd::Damaged(format!("cannot read log segment {}: {e}", path.display()))
        }
    };
    match parse_log_header(&data) {
        Ok(n) if n == number => {}
        Ok(n) => {
            return SegmentEnd::Damaged(format!(
                "log segment {} says it is segment {n}",
                path.display()
            ))
        }
        Err(e) if is_last && data.len() < LOG_HEADER_LEN => {
            // Created but never completely written: nothing was logged in it.
            tracing::warn!(file = %path.display(), error = %e, "ignoring an incomplete last log segment");
            return SegmentEnd::Clean;
        }
        Err(e) => {
            return SegmentEnd::Damaged(format!("log segment {} at byte 0: {e}", path.display()))
        }
    }
    let mut offset = LOG_HEADER_LEN;
    while offset < data.len() {
        match read_frame(&data[offset..]) {
            Frame::Whole { payload, len } => match decode_record(payload) {
                Ok(record) => {
                    replay.apply(record);
                    offset += len;
                }
                Err(e) => {
                    return SegmentEnd::Damaged(format!(
                        "log segment {} at byte {offset}: record cannot be decoded: {e}",
                        path.display()
                    ))
                }
            },
            Frame::BadChecksum { len } if !(is_last && offset + len == data.len()) => {
                return SegmentEnd::Damaged(format!(
                    "log segment {} at byte {offset}: checksum mismatch",
                    path.display()
                ))
            }
            Frame::Truncated if !is_last => {
                return SegmentEnd::Damaged(format!(
                    "log segment {} at byte {offset}: record cut short ({} bytes left) in a segment that is not the last",
                    path.display(),
                    data.len() - offset
                ))
            }
            Frame::BadChecksum { .. } | Frame::Truncated => {
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    dropped_bytes = data.len() - offset,
                    "dropping a torn last log record (the server stopped mid-write); it was never acknowledged under fsync=always"
                );
                if let Err(e) = truncate(path, offset as u64) {
                    tracing::warn!(file = %path.display(), error = %e, "cannot truncate the torn record away");
                }
                break;
            }
        }
    }
    SegmentEnd::Clean
}

fn truncate(path: &Path, len: u64) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
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
pub fn recover(dir: &Path, accept_loss: bool) -> Result<Recovered, RecoveryError> {
    let listing = list(dir)?;
    let mut problems: Vec<String> = Vec::new();
    let mut damaged_files: Vec<PathBuf> = Vec::new();

    let mut base: Option<(u64, SnapshotData)> = None;
    let mut unreadable = Vec::new();
    for (generation, path) in listing.snapshots.iter().rev() {
        match read_snapshot(path) {
            Ok(data) => {
                base = Some((*generation, data));
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "snapshot unusable; trying an older one");
                unreadable.push((path.clone(), e.to_string()));
            }
        }
    }
    let last_generation = listing.snapshots.keys().next_back().copied().unwrap_or(0);
    let fallback = base.as_ref().map(|(g, d)| (*g, d.log_start));
    // Without a snapshot the log must reach back to its very first segment.
    let log_start = base.as_ref().map_or(1, |(_, d)| d.log_start);
    if base.is_none() && !unreadable.is_empty() && listing.segments.keys().next() != Some(&1) {
        for (_, message) in &unreadable {
            problems.push(message.clone());
        }
        problems.push("no readable snapshot, and the log does not reach back to segment 1".into());
    }

    let mut replay = Replay::from_snapshot(base.map(|(_, d)| d));
    let segments: Vec<(u64, PathBuf)> = listing
        .segments
        .range(log_start..)
        .map(|(n, p)| (*n, p.clone()))
        .collect();
    let mut expected = log_start;
    let last_index = segments.len().checked_sub(1);
    for (i, (number, path)) in segments.iter().enumerate() {
        if !problems.is_empty() {
            damaged_files.push(path.clone());
            continue;
        }
        if *number != expected {
            problems.push(format!(
                "log segments {expected} to {} are missing from {}",
                number - 1,
                dir.display()
            ));
            damaged_files.push(path.clone());
            continue;
        }
        expected = number + 1;
        if let SegmentEnd::Damaged(message) =
            replay_segment(path, *number, Some(i) == last_index, &mut replay)
        {
            problems.push(message);
            damaged_files.push(path.clone());
        }
    }
    if segments.is_empty() && fallback.is_some() {
        // A snapshot's rotation creates its log_start segment before the snapshot
        // is written, so it is missing only if something removed it.
        if !listing.segments.is_empty() || !unreadable.is_empty() {
            problems.push(format!(
                "log segment {log_start} is missing from {}",
                dir.display()
            ));
        }
    }

    if !problems.is_empty() {
        if !unreadable.is_empty() && fallback.is_some() {
            for (_, message) in &unreadable {
                problems.insert(
                    0,
                    format!("{message} (and the older snapshot cannot replace it without loss)"),
                );
            }
        }
        if !accept_loss {
            return Err(RecoveryError::Refused {
                dir: dir.to_path_buf(),
                problems,
            });
        }
        for problem in &problems {
            tracing::error!(problem = %problem, "accepting data loss as asked (--accept-data-loss)");
        }
        for path in damaged_files
            .iter()
            .chain(unreadable.iter().map(|(p, _)| p))
        {
            set_aside(path);
        }
    } else if !unreadable.is_empty() {
        for (_, message) in &unreadable {
            tracing::warn!(problem = %message, "recovered from an older snapshot and the log instead; nothing was lost");
        }
    }

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
        next_job_id: replay.max_job_id + 1,
        next_incarnation: replay.max_incarnation + 1,
        next_segment,
        last_generation,
        fallback: if lost_data { None } else { fallback },
        lost_data,
        records_replayed: replay.records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::format::{encode_record, log_header, LogRecordRef};
    use proptest::prelude::*;

    fn valid_segment() -> Vec<u8> {
        let mut data = log_header(1).to_vec();
        let created = LogRecordRef::QueueCreated {
            queue: 1,
            name: "q",
        };
        data.extend(encode_record(&created).unwrap_or_default());
        for i in 0..3u64 {
            let change = Change::Enqueued {
                jobs: vec![crate::job::Job {
                    id: crate::job::JobId(i + 1),
                    body: bytes::Bytes::from(format!("{{\"n\":{i}}}")),
                    uniq: None,
                }],
                due_ms: None,
            };
            let record = LogRecordRef::Queue {
                queue: 1,
                seq: i + 1,
                change: &change,
            };
            data.extend(encode_record(&record).unwrap_or_default());
        }
        data
    }

    fn recover_bytes(segment: &[u8]) -> Result<usize, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("log-00000000000000000001.presque"), segment)
            .map_err(|e| e.to_string())?;
        recover(dir.path(), false)
            .map(|r| r.queues.iter().map(|q| q.state.ready_len()).sum())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_valid_segment_replays() {
        assert_eq!(recover_bytes(&valid_segment()), Ok(3));
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
        }

        #[test]
        fn damaged_valid_segments_never_panic(at in 0usize..200, bit in 0u8..8, cut in 0usize..250) {
            let mut data = valid_segment();
            let at = at % data.len();
            data[at] ^= 1 << bit;
            let _ = recover_bytes(&data);
            let cut = cut.min(data.len());
            let _ = recover_bytes(&data[..cut]);
        }
    }
}
