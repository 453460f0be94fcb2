//! On-disk formats.
//!
//! **Log segment** `log-NNNNNNNNNNNNNNNNNNNN.presque`: a 20-byte header (magic
//! `PRSQLOG\0`, format version as u32 LE, segment number as u64 LE), then records, each
//! framed by a 12-byte frame header (payload length as u32 LE, CRC-32 of the payload as
//! u32 LE, CRC-32 of those first 8 bytes as u32 LE) and the payload: one CBOR-encoded
//! [`LogRecord`].
//!
//! The frame header has its own checksum because the length decides where the next
//! record starts: without it, a damaged length is indistinguishable from a record cut
//! short by a crash, and recovery would drop every record after it as a torn tail.
//!
//! **Snapshot** `snapshot-NNNNNNNNNNNNNNNNNNNN.presque`: a 24-byte header (magic
//! `PRSQSNAP`, format version as u32 LE, payload length as u64 LE, CRC-32 of the payload
//! as u32 LE), then the payload: one CBOR-encoded [`SnapshotData`].
//!
//! Job bodies are CBOR byte strings holding the posted bytes.

use std::io::{Seek, SeekFrom, Write};

use serde::{Deserialize, Serialize};

use crate::queue::state::{Change, QueueImage};
use crate::registry::state::{RegistryChange, WorkerImage};
use crate::schedule::state::{ScheduleChange, ScheduleImage};

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
pub const LOG_MAGIC: &[u8; 8] = b"PRSQLOG\0";
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"PRSQSNAP";
pub const LOG_HEADER_LEN: usize = 20;
pub const SNAPSHOT_HEADER_LEN: usize = 24;
pub const FRAME_HEADER_LEN: usize = 12;

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub enum LogRecord {
    /// A queue incarnation came to be (its first change follows).
    QueueCreated { queue: u64, name: String },
    /// The `seq`-th change of queue incarnation `queue`.
    Queue {
        queue: u64,
        seq: u64,
        change: Change,
    },
    /// The `seq`-th change of the worker registry.
    Registry { seq: u64, change: RegistryChange },
    /// The `seq`-th change of the schedules (recurring jobs).
    Schedule { seq: u64, change: ScheduleChange },
}

/// [`LogRecord`]'s borrowing twin, for encoding without cloning job bodies. Serde
/// encodes both identically (same variant and field names).
#[derive(Serialize)]
pub enum LogRecordRef<'a> {
    QueueCreated {
        queue: u64,
        name: &'a str,
    },
    Queue {
        queue: u64,
        seq: u64,
        change: &'a Change,
    },
    Registry {
        seq: u64,
        change: &'a RegistryChange,
    },
    Schedule {
        seq: u64,
        change: &'a ScheduleChange,
    },
}

/// One queue in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    /// The queue incarnation (a deleted and re-created queue is a new incarnation).
    pub incarnation: u64,
    pub name: String,
    /// The last change the image includes; replay skips records at or below it.
    pub seq: u64,
    pub image: QueueImage,
}

/// Everything a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotData {
    pub generation: u64,
    /// The first log segment this snapshot does not cover: recovery replays from it.
    pub log_start: u64,
    /// Incarnations numbered up to here that have no image here had been deleted when
    /// the snapshot was taken; their later records are ignored at replay.
    pub incarnation_watermark: u64,
    pub next_incarnation: u64,
    pub next_job_id: u64,
    pub created_at_ms: u64,
    pub queues: Vec<QueueSnapshot>,
    pub registry_seq: u64,
    pub workers: Vec<WorkerImage>,
    /// The last schedule change the images include (absent before schedules were).
    #[serde(default)]
    pub schedule_seq: u64,
    #[serde(default)]
    pub schedules: Vec<ScheduleImage>,
}

/// Frames a record: frame header, CBOR payload.
pub fn encode_record(record: &LogRecordRef<'_>) -> Result<Vec<u8>, String> {
    let mut frame = Vec::new();
    append_record(record, &mut frame)?;
    Ok(frame)
}

/// The frame header for a payload of `payload_len` bytes whose CRC-32 is `payload_crc`.
pub fn frame_header(payload_len: u32, payload_crc: u32) -> [u8; FRAME_HEADER_LEN] {
    let mut header = [0u8; FRAME_HEADER_LEN];
    header[..4].copy_from_slice(&payload_len.to_le_bytes());
    header[4..8].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&header[..8]);
    header[8..].copy_from_slice(&header_crc.to_le_bytes());
    header
}

/// Frames a record at the end of `out`. On error `out` is left as it was.
pub fn append_record(record: &LogRecordRef<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    let payload_start = start + FRAME_HEADER_LEN;
    let framed = ciborium::into_writer(record, &mut *out)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            u32::try_from(out.len() - payload_start)
                .map_err(|_| "record larger than 4 GiB".to_owned())
        });
    let payload_len = match framed {
        Ok(len) => len,
        Err(e) => {
            out.truncate(start);
            return Err(e);
        }
    };
    let crc = crc32fast::hash(&out[payload_start..]);
    out[start..payload_start].copy_from_slice(&frame_header(payload_len, crc));
    Ok(())
}

/// What reading one frame at some offset found.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete frame with matching checksums: its payload and total length.
    Whole { payload: &'a [u8], len: usize },
    /// The data ends inside the frame: fewer bytes than a frame header, or a sound
    /// frame header whose payload runs past the end (a torn write, if at the end of
    /// the log).
    Truncated,
    /// The frame header's checksum does not match: its length cannot be trusted, so
    /// where the next frame starts is unknown.
    BadHeader,
    /// A sound frame header, but the payload's checksum does not match; `len` (the
    /// whole frame's) can be trusted, so reading can resume after it.
    BadChecksum { len: usize },
}

/// Reads the frame at the start of `data`.
pub fn read_frame(data: &[u8]) -> Frame<'_> {
    if data.len() < FRAME_HEADER_LEN {
        return Frame::Truncated;
    }
    let word = |at: usize| u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    if crc32fast::hash(&data[..8]) != word(8) {
        return Frame::BadHeader;
    }
    let payload_len = word(0) as usize;
    let Some(end) = FRAME_HEADER_LEN.checked_add(payload_len) else {
        return Frame::Truncated;
    };
    if data.len() < end {
        return Frame::Truncated;
    }
    let payload = &data[FRAME_HEADER_LEN..end];
    if crc32fast::hash(payload) != word(4) {
        return Frame::BadChecksum { len: end };
    }
    Frame::Whole { payload, len: end }
}

/// Decodes a record payload.
pub fn decode_record(payload: &[u8]) -> Result<LogRecord, String> {
    ciborium::from_reader(payload).map_err(|e| e.to_string())
}

/// A log segment's header.
pub fn log_header(segment: u64) -> [u8; LOG_HEADER_LEN] {
    let mut header = [0u8; LOG_HEADER_LEN];
    header[..8].copy_from_slice(LOG_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&segment.to_le_bytes());
    header
}

/// What is wrong with a file header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("file is shorter than its header (at byte 0)")]
    Short,
    #[error("not a presque file (bad magic bytes at byte 0)")]
    BadMagic,
    #[error("format version {found} at byte 8 is not supported (this build reads version {FORMAT_VERSION})")]
    Version { found: u32 },
}

fn check_magic_and_version(data: &[u8], magic: &[u8; 8], len: usize) -> Result<(), HeaderError> {
    if data.len() < len {
        return Err(HeaderError::Short);
    }
    if &data[..8] != magic {
        return Err(HeaderError::BadMagic);
    }
    let version = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version { found: version });
    }
    Ok(())
}

/// Checks a log segment's header; returns the segment number it records.
pub fn parse_log_header(data: &[u8]) -> Result<u64, HeaderError> {
    check_magic_and_version(data, LOG_MAGIC, LOG_HEADER_LEN)?;
    let mut n = [0u8; 8];
    n.copy_from_slice(&data[12..20]);
    Ok(u64::from_le_bytes(n))
}

/// What is wrong with a snapshot file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotDecodeError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("payload length does not match: the header (bytes 12..20) says {expected} bytes, the file holds {found}")]
    Truncated { expected: u64, found: u64 },
    #[error("checksum mismatch in the payload (bytes {start}..{end})")]
    Checksum { start: usize, end: usize },
    #[error("payload cannot be decoded at byte {offset}: {message}")]
    Decode { offset: usize, message: String },
}

/// The snapshot header for a payload of `payload_len` bytes whose CRC-32 is `crc`.
fn snapshot_header(payload_len: u64, crc: u32) -> [u8; SNAPSHOT_HEADER_LEN] {
    let mut header = [0u8; SNAPSHOT_HEADER_LEN];
    header[..8].copy_from_slice(SNAPSHOT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&payload_len.to_le_bytes());
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Passes bytes through to `inner`, counting them and computing their CRC-32 on the
/// way.
struct Checksummed<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Why a snapshot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotWriteError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot encode the snapshot: {0}")]
    Encode(String),
}

/// Bytes handed to the file at a time while a snapshot is encoded.
const SNAPSHOT_WRITE_BUFFER: usize = 1 << 20;

/// Writes a whole snapshot file to `out` (at its start), encoding the payload
/// straight to it: the memory it takes is a write buffer, not a copy of the snapshot.
/// The header, which needs the payload's length and checksum, is written first as
/// zeros and filled in at the end. Returns the file's length.
pub fn write_snapshot_to<W: Write + Seek>(
    data: &SnapshotData,
    out: &mut W,
) -> Result<u64, SnapshotWriteError> {
    out.seek(SeekFrom::Start(0))?;
    out.write_all(&[0u8; SNAPSHOT_HEADER_LEN])?;
    let mut payload = std::io::BufWriter::with_capacity(
        SNAPSHOT_WRITE_BUFFER,
        Checksummed {
            inner: &mut *out,
            hasher: crc32fast::Hasher::new(),
            len: 0,
        },
    );
    ciborium::into_writer(data, &mut payload).map_err(|e| match e {
        ciborium::ser::Error::Io(e) => SnapshotWriteError::Io(e),
        ciborium::ser::Error::Value(message) => SnapshotWriteError::Encode(message),
    })?;
    let checksummed = payload.into_inner().map_err(|e| e.into_error())?;
    let (len, crc) = (checksummed.len, checksummed.hasher.finalize());
    out.seek(SeekFrom::Start(0))?;
    out.write_all(&snapshot_header(len, crc))?;
    out.flush()?;
    Ok(SNAPSHOT_HEADER_LEN as u64 + len)
}

/// Encodes a whole snapshot file in memory (the same bytes [`write_snapshot_to`]
/// writes).
pub fn encode_snapshot(data: &SnapshotData) -> Result<Vec<u8>, String> {
    let mut file = std::io::Cursor::new(Vec::new());
    write_snapshot_to(data, &mut file).map_err(|e| e.to_string())?;
    Ok(file.into_inner())
}

/// A snapshot's payload when its own checksum holds, whatever the rest of the header
/// says (magic, version, length): what `--accept-data-loss` can still use of a
/// snapshot whose header is damaged.
pub fn decode_snapshot_payload(file: &[u8]) -> Option<SnapshotData> {
    let payload = file.get(SNAPSHOT_HEADER_LEN..)?;
    let crc = u32::from_le_bytes([file[20], file[21], file[22], file[23]]);
    if crc32fast::hash(payload) != crc {
        return None;
    }
    ciborium::from_reader(payload).ok()
}

/// Decodes a whole snapshot file.
pub fn decode_snapshot(file: &[u8]) -> Result<SnapshotData, SnapshotDecodeError> {
    check_magic_and_version(file, SNAPSHOT_MAGIC, SNAPSHOT_HEADER_LEN)?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&file[12..20]);
    let expected = u64::from_le_bytes(len);
    let crc = u32::from_le_bytes([file[20], file[21], file[22], file[23]]);
    let payload = &file[SNAPSHOT_HEADER_LEN..];
    if payload.len() as u64 != expected {
        return Err(SnapshotDecodeError::Truncated {
            expected,
            found: payload.len() as u64,
        });
    }
    if crc32fast::hash(payload) != crc {
        return Err(SnapshotDecodeError::Checksum {
            start: SNAPSHOT_HEADER_LEN,
            end: file.len(),
        });
    }
    ciborium::from_reader(payload).map_err(|e| {
        let offset = match &e {
            ciborium::de::Error::Syntax(at) => SNAPSHOT_HEADER_LEN + at,
            ciborium::de::Error::Semantic(Some(at), _) => SNAPSHOT_HEADER_LEN + at,
            _ => SNAPSHOT_HEADER_LEN,
        };
        SnapshotDecodeError::Decode {
            offset,
            message: e.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::job::{Job, JobId};
    use proptest::prelude::*;

    fn sample_change() -> Change {
        Change::Enqueued {
            jobs: vec![Job {
                id: JobId(9),
                body: bytes::Bytes::from_static(b"{\"a\":1}"),
                uniq: Some("k".into()),
                priority: crate::queue::job::DEFAULT_PRIORITY,
            }],
            due_ms: Some(5),
            expires_ms: None,
        }
    }

    #[test]
    fn record_round_trip() {
        let change = sample_change();
        let frame = encode_record(&LogRecordRef::Queue {
            queue: 3,
            seq: 4,
            change: &change,
        });
        let frame = frame.unwrap_or_default();
        let Frame::Whole { payload, len } = read_frame(&frame) else {
            panic!("frame not read back");
        };
        assert_eq!(len, frame.len());
        assert_eq!(
            decode_record(payload),
            Ok(LogRecord::Queue {
                queue: 3,
                seq: 4,
                change
            })
        );
    }

    #[test]
    fn job_body_is_a_cbor_byte_string() {
        let change = sample_change();
        let frame = encode_record(&LogRecordRef::Queue {
            queue: 1,
            seq: 1,
            change: &change,
        })
        .unwrap_or_default();
        // 0x47 = CBOR byte string of length 7, followed by the posted bytes.
        let needle = b"\x47{\"a\":1}";
        assert!(frame.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn truncated_and_corrupt_frames_are_told_apart() {
        let change = sample_change();
        let frame = encode_record(&LogRecordRef::Queue {
            queue: 1,
            seq: 1,
            change: &change,
        })
        .unwrap_or_default();
        for cut in 0..frame.len() {
            assert_eq!(read_frame(&frame[..cut]), Frame::Truncated, "cut at {cut}");
        }
        let mut flipped = frame.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert_eq!(
            read_frame(&flipped),
            Frame::BadChecksum { len: frame.len() }
        );
    }

    #[test]
    fn any_damaged_frame_header_byte_is_a_bad_header_not_a_truncation() {
        let change = sample_change();
        let frame = encode_record(&LogRecordRef::Queue {
            queue: 1,
            seq: 1,
            change: &change,
        })
        .unwrap_or_default();
        for at in 0..FRAME_HEADER_LEN {
            for bit in 0..8 {
                let mut flipped = frame.clone();
                flipped[at] ^= 1 << bit;
                assert_eq!(
                    read_frame(&flipped),
                    Frame::BadHeader,
                    "byte {at} bit {bit}"
                );
            }
        }
        // A length claiming far more than the file holds is no torn write either.
        let mut huge = frame.clone();
        huge[..4].copy_from_slice(&10_000_000u32.to_le_bytes());
        assert_eq!(read_frame(&huge), Frame::BadHeader);
        // With its own checksum recomputed, the same length is a record cut short.
        let mut resealed = huge.clone();
        let crc = u32::from_le_bytes([huge[4], huge[5], huge[6], huge[7]]);
        resealed[..FRAME_HEADER_LEN].copy_from_slice(&frame_header(10_000_000, crc));
        assert_eq!(read_frame(&resealed), Frame::Truncated);
    }

    #[test]
    fn snapshot_version_and_checksum_are_checked() {
        let data = SnapshotData {
            generation: 1,
            log_start: 2,
            incarnation_watermark: 0,
            next_incarnation: 1,
            next_job_id: 1,
            created_at_ms: 0,
            queues: vec![],
            registry_seq: 0,
            workers: vec![],
            schedule_seq: 0,
            schedules: vec![],
        };
        let file = encode_snapshot(&data).unwrap_or_default();
        assert_eq!(decode_snapshot(&file), Ok(data));
        let mut v1 = file.clone();
        v1[8] = 1;
        assert_eq!(
            decode_snapshot(&v1),
            Err(SnapshotDecodeError::Header(HeaderError::Version {
                found: 1
            }))
        );
        let mut flipped = file.clone();
        flipped[30] ^= 1;
        assert!(matches!(
            decode_snapshot(&flipped),
            Err(SnapshotDecodeError::Checksum { .. })
        ));
    }

    /// A snapshot written before schedules existed (no `schedule_seq`, no
    /// `schedules`) still reads, with none.
    #[test]
    fn a_snapshot_from_before_schedules_still_reads() {
        #[derive(Serialize)]
        struct Before {
            generation: u64,
            log_start: u64,
            incarnation_watermark: u64,
            next_incarnation: u64,
            next_job_id: u64,
            created_at_ms: u64,
            queues: Vec<QueueSnapshot>,
            registry_seq: u64,
            workers: Vec<WorkerImage>,
        }
        let mut payload = Vec::new();
        let before = Before {
            generation: 4,
            log_start: 2,
            incarnation_watermark: 0,
            next_incarnation: 1,
            next_job_id: 9,
            created_at_ms: 5,
            queues: vec![],
            registry_seq: 3,
            workers: vec![],
        };
        assert!(ciborium::into_writer(&before, &mut payload).is_ok());
        let mut file = snapshot_header(payload.len() as u64, crc32fast::hash(&payload)).to_vec();
        file.extend_from_slice(&payload);
        let data = decode_snapshot(&file).map_err(|e| e.to_string());
        assert_eq!(
            data.map(|d| (
                d.next_job_id,
                d.registry_seq,
                d.schedule_seq,
                d.schedules.len()
            )),
            Ok((9, 3, 0, 0))
        );
    }

    /// The file written as it is encoded is byte for byte the file the format has
    /// always had: header, then the whole payload encoded in one piece.
    #[test]
    fn a_streamed_snapshot_is_the_same_file_as_one_encoded_in_memory() {
        let mut state = crate::queue::state::QueueState::default();
        let jobs = (0..8000)
            .map(|i| Job {
                id: JobId(i),
                body: bytes::Bytes::from(format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(300))),
                uniq: (i % 3 == 0).then(|| format!("k{i}").into()),
                priority: crate::queue::job::DEFAULT_PRIORITY,
            })
            .collect();
        state.apply(Change::Enqueued {
            jobs,
            due_ms: None,
            expires_ms: None,
        });
        let data = SnapshotData {
            generation: 7,
            log_start: 3,
            incarnation_watermark: 2,
            next_incarnation: 3,
            next_job_id: 8000,
            created_at_ms: 123,
            queues: vec![QueueSnapshot {
                incarnation: 2,
                name: "q".into(),
                seq: 9,
                image: state.image(),
            }],
            registry_seq: 0,
            workers: vec![],
            schedule_seq: 0,
            schedules: vec![],
        };
        let mut payload = Vec::new();
        assert!(ciborium::into_writer(&data, &mut payload).is_ok());
        assert!(payload.len() > 2 * SNAPSHOT_WRITE_BUFFER);
        let mut expected =
            snapshot_header(payload.len() as u64, crc32fast::hash(&payload)).to_vec();
        expected.extend_from_slice(&payload);
        let streamed = encode_snapshot(&data).unwrap_or_default();
        assert!(streamed == expected, "the streamed file differs");
        assert_eq!(decode_snapshot(&streamed), Ok(data));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_as_snapshot(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_snapshot(&data);
            let mut with_header = SNAPSHOT_MAGIC.to_vec();
            with_header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            with_header.extend_from_slice(&(data.len() as u64).to_le_bytes());
            with_header.extend_from_slice(&crc32fast::hash(&data).to_le_bytes());
            with_header.extend_from_slice(&data);
            let _ = decode_snapshot(&with_header);
        }

        #[test]
        fn arbitrary_bytes_never_panic_as_log_record(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = read_frame(&data);
            let _ = decode_record(&data);
            let _ = parse_log_header(&data);
        }
    }
}
