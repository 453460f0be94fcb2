//! The disk failing under the real binary: a write the kernel refuses (a file-size
//! limit, always available), a full tmpfs (needs root to mount; skipped with a message
//! otherwise), the data directory or its lock removed while the server runs.
//!
//! The promise under test: an acknowledged change survives; a refused one (503) changes
//! nothing; the server takes writes again by itself once the disk does.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::harness::*;

const JOB: &str = "\"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"";

/// A server on `data` with fsync `policy`, on a free port.
fn server_args<'a>(data: &'a str, policy: &'a str) -> [&'a str; 6] {
    [
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--fsync",
        policy,
    ]
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post(server: &ServerProcess, queue: &str) -> reqwest::Response {
    post_body(server, queue, JOB.to_owned()).await
}

async fn post_body(server: &ServerProcess, queue: &str, body: String) -> reqwest::Response {
    let request = client()
        .post(server.url(&format!("/q/{queue}")))
        .header("Content-Type", "application/json")
        .body(body)
        .send();
    // A full disk must be refused, never left hanging.
    tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .expect("POST answered in time")
        .expect("POST")
}

async fn size(server: &ServerProcess, queue: &str) -> u64 {
    let r = client()
        .get(server.url(&format!("/status/{queue}")))
        .send()
        .await
        .expect("status");
    assert_eq!(r.status(), StatusCode::OK, "reads keep working");
    let body: serde_json::Value = r.json().await.expect("json");
    body["size"].as_u64().expect("size")
}

/// Asserts a 503 refusal from a log that cannot write, and returns its message.
async fn assert_unavailable(r: reqwest::Response, retry: bool) -> String {
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    assert_eq!(retry_after.as_deref(), retry.then_some("1"));
    let body: serde_json::Value = r.json().await.expect("json error");
    let message = body["error"].as_str().unwrap_or("").to_owned();
    assert!(
        message.starts_with("changes cannot be made durable"),
        "{message}"
    );
    message
}

/// Limits the size of any file the child writes (its writes past it fail with EFBIG),
/// leaving the hard limit open so the test can lift it later.
fn limit_file_size(command: &mut Command, bytes: u64) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Writes past the limit must fail with EFBIG, not kill the process.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
}

fn lift_file_size_limit(server: &ServerProcess) {
    let open = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall on our own child.
    let rc = unsafe {
        libc::prlimit(
            server.child.id() as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &open,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[actix_web::test]
async fn a_log_write_failure_refuses_with_503_changes_nothing_and_heals_itself() {
    for policy in ["everysec", "always"] {
        let dir = tempfile::tempdir().unwrap();
        let args = server_args("d", policy);
        let server = start_binary_with(dir.path(), &args, &[], |c| limit_file_size(c, 48 * 1024));
        let mut acked = 0;
        let mut held = None;
        let refusal = loop {
            let url = server.url("/q/jobs");
            let mut request = Box::pin(async move {
                client()
                    .post(url)
                    .header("Content-Type", "application/json")
                    .body(JOB)
                    .send()
                    .await
                    .expect("POST")
            });
            match tokio::time::timeout(Duration::from_millis(700), &mut request).await {
                Ok(r) if r.status() == StatusCode::CREATED => acked += 1,
                Ok(r) => break r,
                // Under `always`, the request whose write failed waits for the retry.
                Err(_) => {
                    assert!(held.is_none(), "{policy}: only one batch can be held");
                    assert_eq!(policy, "always");
                    held = Some(actix_web::rt::spawn(request));
                }
            }
            assert!(acked < 1000, "{policy}: never refused");
        };
        let message = assert_unavailable(refusal, true).await;
        assert!(message.contains("File too large"), "{policy}: {message}");
        // Under `always` the request whose write failed is held, not refused.
        assert_eq!(held.is_some(), policy == "always", "{policy}");
        // Refused changes are not applied; the held one is in memory, not yet answered.
        let in_memory = acked + u64::from(held.is_some());
        assert_eq!(size(&server, "jobs").await, in_memory, "{policy}");
        assert_unavailable(post(&server, "jobs").await, true).await;
        let fetch = client().get(server.url("/q/jobs")).send().await.unwrap();
        assert_unavailable(fetch, true).await;
        assert_eq!(size(&server, "jobs").await, in_memory, "{policy}");

        lift_file_size_limit(&server);
        let healed = Instant::now();
        loop {
            let r = post(&server, "jobs").await;
            if r.status() == StatusCode::CREATED {
                acked += 1;
                break;
            }
            assert_unavailable(r, true).await;
            assert!(
                healed.elapsed() < Duration::from_secs(5),
                "{policy}: not healed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(held) = held {
            let r = held.await.expect("held request");
            assert_eq!(r.status(), StatusCode::CREATED, "{policy}: held request");
            acked += 1;
        }
        for _ in 0..3 {
            assert_eq!(post(&server, "jobs").await.status(), StatusCode::CREATED);
            acked += 1;
        }
        assert_eq!(size(&server, "jobs").await, acked, "{policy}");
        if policy == "always" {
            server.kill9();
        } else {
            // Healed means healed: a graceful stop exits 0, nothing lost.
            server.stop();
        }
        let server = start_binary(dir.path(), &args, &[]);
        assert_eq!(
            size(&server, "jobs").await,
            acked,
            "{policy}: every acknowledged job, nothing refused"
        );
        server.stop();
    }
}

#[actix_web::test]
async fn a_stop_while_the_log_cannot_write_ends_with_exit_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let args = server_args("d", "everysec");
    let mut server = start_binary_with(dir.path(), &args, &[], |c| limit_file_size(c, 32 * 1024));
    let mut acked = 0;
    loop {
        let r = post(&server, "jobs").await;
        if r.status() != StatusCode::CREATED {
            assert_unavailable(r, true).await;
            break;
        }
        acked += 1;
        assert!(acked < 1000, "never refused");
    }
    let stopping = Instant::now();
    let code = server.terminate();
    assert_eq!(code, Some(3), "changes were lost: exit code 3");
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "a stalled log holds the stop for a few seconds, not for ever"
    );
    // What did reach the disk is intact and starts cleanly.
    let server = start_binary(dir.path(), &args, &[]);
    let kept = size(&server, "jobs").await;
    // Exactly what exit code 3 announces: the batch the writer held when it gave up
    // (acknowledged under `everysec`, a few milliseconds of requests) is gone; every
    // job written before it is intact.
    assert!(kept < acked && kept + 50 >= acked, "kept {kept} of {acked}");
    server.stop();
}

#[actix_web::test]
async fn a_removed_data_directory_refuses_every_write() {
    for policy in ["always", "everysec"] {
        let dir = tempfile::tempdir().unwrap();
        let args = server_args("d", policy);
        let mut server = start_binary(dir.path(), &args, &[]);
        for _ in 0..3 {
            assert_eq!(post(&server, "jobs").await.status(), StatusCode::CREATED);
        }
        std::fs::remove_dir_all(dir.path().join("d")).unwrap();
        if policy == "everysec" {
            // Its answers do not wait for the disk: the writer's idle check finds it.
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        let message = assert_unavailable(post(&server, "jobs").await, false).await;
        assert!(message.contains("was removed"), "{policy}: {message}");
        assert_unavailable(post(&server, "other").await, false).await;
        // Reads still answer (what they show can no longer be saved anywhere).
        size(&server, "jobs").await;
        let code = server.terminate();
        assert_eq!(code, Some(3), "{policy}");
    }
}

#[actix_web::test]
async fn a_removed_lock_file_refuses_writes_so_a_second_server_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let args = server_args("d", "always");
    let mut first = start_binary(dir.path(), &args, &[]);
    for _ in 0..2 {
        assert_eq!(post(&first, "jobs").await.status(), StatusCode::CREATED);
    }
    std::fs::remove_file(dir.path().join("d/LOCK")).unwrap();
    let message = assert_unavailable(post(&first, "jobs").await, false).await;
    assert!(message.contains("lock file"), "{message}");

    let second = start_binary(dir.path(), &args, &[]);
    assert_eq!(size(&second, "jobs").await, 2);
    assert_eq!(post(&second, "jobs").await.status(), StatusCode::CREATED);
    // The first server's stop must not snapshot or prune over the second's files.
    assert_eq!(first.terminate(), Some(3));
    assert_eq!(post(&second, "jobs").await.status(), StatusCode::CREATED);
    second.kill9();
    let third = start_binary(dir.path(), &args, &[]);
    assert_eq!(size(&third, "jobs").await, 4);
    third.stop();
}

/// A 16 KiB job, so a few hundred fill a small disk.
fn big_job(n: u64) -> String {
    format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(16 * 1024))
}

/// A small tmpfs, unmounted on drop; `None` (with a message) where mounting is not
/// allowed.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(parent: &Path, size: &str) -> Option<Tmpfs> {
        let path = parent.join("mnt");
        std::fs::create_dir_all(&path).ok()?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs { path }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    /// The data directory on it.
    fn data(&self) -> String {
        self.path.join("d").to_string_lossy().into_owned()
    }

    /// Fills what is left of the file system; returns the filler's path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0xAAu8; 4096];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[actix_web::test]
async fn a_full_disk_refuses_writes_cleanly_and_they_resume_when_space_frees() {
    for policy in ["always", "everysec"] {
        let dir = tempfile::tempdir().unwrap();
        let Some(disk) = Tmpfs::mount(dir.path(), "4m") else {
            return;
        };
        let data = disk.data();
        let data = data.as_str();
        let args = server_args(data, policy);
        let server = start_binary(dir.path(), &args, &[]);
        let mut acked = 0;
        for _ in 0..10 {
            let r = post_body(&server, "jobs", big_job(acked)).await;
            assert_eq!(r.status(), StatusCode::CREATED);
            acked += 1;
        }
        let filler = disk.fill();
        // The log reserves its space ahead: the disk filling up is met by a clean
        // refusal of the next record, not by a failed write.
        let refusal = loop {
            let r = post_body(&server, "jobs", big_job(acked)).await;
            if r.status() != StatusCode::CREATED {
                break r;
            }
            acked += 1;
            assert!(acked < 2000, "{policy}: never refused");
        };
        let message = assert_unavailable(refusal, true).await;
        assert!(message.contains("No space left"), "{policy}: {message}");
        assert_eq!(size(&server, "jobs").await, acked, "{policy}");

        std::fs::remove_file(&filler).unwrap();
        let freed = Instant::now();
        loop {
            let r = post_body(&server, "jobs", big_job(acked)).await;
            if r.status() == StatusCode::CREATED {
                acked += 1;
                break;
            }
            assert_unavailable(r, true).await;
            assert!(
                freed.elapsed() < Duration::from_secs(5),
                "{policy}: not healed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        server.kill9();
        let server = start_binary(dir.path(), &args, &[]);
        assert_eq!(size(&server, "jobs").await, acked, "{policy}");
        server.stop();
    }
}

#[actix_web::test]
async fn a_start_on_a_full_disk_leaves_nothing_in_the_way_of_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(dir.path(), "1m") else {
        return;
    };
    let data = disk.path.join("d");
    std::fs::create_dir_all(&data).unwrap();
    let filler = disk.fill();
    let path = data.to_str().unwrap();
    let args = server_args(path, "always");
    let (code, stderr) = run_binary_expect_exit(dir.path(), &args);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("No space left"), "{stderr}");
    for entry in std::fs::read_dir(&data).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(
            !name.to_string_lossy().starts_with("log-"),
            "a failed start left {name:?} behind"
        );
    }
    std::fs::remove_file(filler).unwrap();
    let server = start_binary(dir.path(), &args, &[]);
    for _ in 0..5 {
        assert_eq!(post(&server, "jobs").await.status(), StatusCode::CREATED);
    }
    server.kill9();
    let server = start_binary(dir.path(), &args, &[]);
    assert_eq!(size(&server, "jobs").await, 5);
    server.stop();
}

#[actix_web::test]
async fn a_snapshot_that_does_not_fit_leaves_no_temporary_file_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(dir.path(), "4m") else {
        return;
    };
    let data = disk.data();
    let data = data.as_str();
    let args = server_args(data, "always");
    let mut server = start_binary(dir.path(), &args, &[]);
    for n in 0..150 {
        let r = post_body(&server, "jobs", big_job(n)).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // Room for a new log segment, not for a 2.4 MB snapshot beside the 2.4 MB log on
    // a 4 MiB disk (whatever the log had reserved ahead is given back at rotation).
    let filler = disk.fill();
    let len = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(len.saturating_sub(64 * 1024))
        .unwrap();
    let code = server.terminate();
    assert_eq!(
        code,
        Some(0),
        "a failed final snapshot loses nothing: the log has it"
    );
    for entry in std::fs::read_dir(data).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(
            !name.to_string_lossy().ends_with(".tmp"),
            "a failed snapshot left {name:?} on a full disk"
        );
    }
    std::fs::remove_file(&filler).unwrap();
    let server = start_binary(dir.path(), &args, &[]);
    assert_eq!(size(&server, "jobs").await, 150);
    server.stop();
}

#[actix_web::test]
async fn space_reserved_by_a_killed_server_is_given_back_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(dir.path(), "4m") else {
        return;
    };
    let data = disk.data();
    let data = data.as_str();
    let args = server_args(data, "always");
    // Each start reserves what the small disk has left ahead of its log; a killed
    // server never gives it back itself.
    for round in 0..3u64 {
        let server = start_binary(dir.path(), &args, &[]);
        for n in 0..10 {
            let r = post_body(&server, "jobs", big_job(round * 10 + n)).await;
            assert_eq!(r.status(), StatusCode::CREATED, "round {round}");
        }
        server.kill9();
    }
    let server = start_binary(dir.path(), &args, &[]);
    assert_eq!(size(&server, "jobs").await, 30);
    server.stop();
    // Stopped, the log holds its records and nothing more: 30 jobs of 16 KiB.
    let used = used_bytes(&disk.path);
    assert!(used < 1 << 20, "{used} bytes still allocated on the disk");
}

fn used_bytes(mount: &Path) -> u64 {
    let path = std::ffi::CString::new(mount.to_str().unwrap()).unwrap();
    // SAFETY: statvfs fills the struct it is given.
    let stat = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(path.as_ptr(), &mut stat), 0);
        stat
    };
    (stat.f_blocks - stat.f_bfree) * stat.f_frsize
}
