//! Snapshot files: written atomically (temp file, fsync, rename, fsync the directory),
//! read with every check the format allows, and pruned so that the newest two
//! snapshots and the log segments the older of them needs are kept.

use std::path::{Path, PathBuf};

use super::format::{
    decode_snapshot, write_snapshot_to, SnapshotData, SnapshotDecodeError, SnapshotWriteError,
};
use super::log::parse_segment_file_name;
use super::{sync_dir, StorageError};

/// The file name of snapshot generation `n`.
pub fn snapshot_file_name(n: u64) -> String {
    format!("snapshot-{n:020}.presque")
}

/// The generation a file name denotes, if it is a snapshot.
pub fn parse_snapshot_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("snapshot-")?
        .strip_suffix(".presque")?
        .parse()
        .ok()
}

/// Writes a snapshot atomically; returns its path and size in bytes. The previous
/// snapshot is untouched until this one is complete under its final name. The
/// payload is encoded straight into the file ([`write_snapshot_to`]): no copy of the
/// whole snapshot is ever held in memory.
pub fn write_snapshot(dir: &Path, data: &SnapshotData) -> Result<(PathBuf, usize), StorageError> {
    let path = dir.join(snapshot_file_name(data.generation));
    let temp = dir.join(format!("{}.tmp", snapshot_file_name(data.generation)));
    let written = std::fs::File::create(&temp)
        .map_err(|e| StorageError::io("cannot create snapshot", &temp, e))
        .and_then(|mut file| {
            let len = write_snapshot_to(data, &mut file).map_err(|e| match e {
                SnapshotWriteError::Io(e) => StorageError::io("cannot write snapshot", &temp, e),
                SnapshotWriteError::Encode(message) => StorageError::EncodeSnapshot(message),
            })?;
            file.sync_all()
                .map_err(|e| StorageError::io("cannot write snapshot", &temp, e))?;
            Ok(len)
        })
        .and_then(|len| {
            std::fs::rename(&temp, &path)
                .map_err(|e| StorageError::io("cannot rename snapshot", &temp, e))?;
            Ok(len)
        });
    let len = match written {
        Ok(len) => len,
        Err(e) => {
            // A half-written temporary file would keep a full disk full.
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
    };
    sync_dir(dir)?;
    Ok((path, len as usize))
}

/// Why a snapshot file could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SnapshotReadError {
    #[error("cannot read snapshot {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("snapshot {path} is unusable: {source}")]
    Bad {
        path: PathBuf,
        source: SnapshotDecodeError,
    },
}

/// Reads and checks a snapshot file.
pub fn read_snapshot(path: &Path) -> Result<SnapshotData, SnapshotReadError> {
    let bytes = std::fs::read(path).map_err(|e| SnapshotReadError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    decode_snapshot(&bytes).map_err(|source| SnapshotReadError::Bad {
        path: path.to_path_buf(),
        source,
    })
}

/// After snapshot `newest` is complete: removes snapshots older than `keep_from`
/// (the previous good one) and log segments below `keep_log_from` (the first segment
/// that previous snapshot needs), so the fallback stays usable and nothing grows
/// without bound. Failures are logged, not fatal: the files are merely left over.
pub fn prune(dir: &Path, keep_from: u64, keep_log_from: u64) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list the data directory to prune it");
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let obsolete = parse_snapshot_file_name(name).is_some_and(|g| g < keep_from)
            || parse_segment_file_name(name).is_some_and(|n| n < keep_log_from);
        if obsolete {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove an obsolete file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_round_trip() {
        assert_eq!(parse_snapshot_file_name(&snapshot_file_name(7)), Some(7));
        assert_eq!(parse_snapshot_file_name("snapshot-7.presque.tmp"), None);
    }
}
