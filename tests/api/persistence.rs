//! Durability: the real binary, stopped gracefully or killed with SIGKILL, restarted
//! on the same data directory; damaged files; an unusable data directory.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

use presque::format::{frame_header, read_frame, Frame, LOG_HEADER_LEN};

use crate::harness::*;
use crate::helpers::*;

/// A data directory with a config file, and the binary started on it.
struct Node {
    dir: TempDir,
}

impl Node {
    fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("presque.toml"), config).unwrap();
        Node { dir }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn start(&self, extra: &[&str]) -> ServerProcess {
        start_binary(self.dir.path(), &[&NODE_ARGS[..], extra].concat(), &[])
    }

    fn start_expecting_failure(&self, extra: &[&str]) -> String {
        let args = [&NODE_ARGS[..], extra].concat();
        let (code, stderr) = run_binary_expect_exit(self.dir.path(), &args);
        assert_eq!(
            code,
            Some(1),
            "expected a refusal to start; stderr:\n{stderr}"
        );
        stderr
    }

    fn files(&self, prefix: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.data())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_str().unwrap();
                name.starts_with(prefix) && name.ends_with(".presque")
            })
            .collect();
        files.sort();
        files
    }
}

const ALWAYS: &str = "[storage]\nfsync = \"always\"\nsnapshot_interval_secs = 3600\n";

/// Every ready job of `queue` (`/status/NAME?with_desc=1`, page after page).
async fn all_ready(client: &Client, server: &ServerProcess, queue: &str) -> Value {
    let mut jobs = Vec::new();
    let mut after = String::new();
    loop {
        let path = format!("/status/{queue}?with_desc=1&limit=10000{after}");
        let (status, page) = get_text(client, server, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let page: Value = serde_json::from_str(&page).unwrap();
        jobs.extend(page["jobs"].as_array().unwrap().iter().cloned());
        match page["next"].as_u64() {
            Some(next) => after = format!("&after={next}"),
            None => return Value::Array(jobs),
        }
    }
}

async fn get_text(client: &Client, server: &ServerProcess, path: &str) -> (StatusCode, String) {
    let r = client.get(server.url(path)).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn drain(client: &Client, server: &ServerProcess, queue: &str) -> Vec<String> {
    let mut jobs = Vec::new();
    loop {
        let (status, body) = get_text(client, server, &format!("/q/{queue}")).await;
        if status != StatusCode::OK {
            return jobs;
        }
        jobs.push(body);
    }
}

/// Everything the read routes answer, for before/after comparisons.
async fn observe(client: &Client, server: &ServerProcess) -> Vec<(String, String)> {
    let paths = [
        "/status/",
        "/status/emails?with_desc=1",
        "/status/closed?with_desc=1",
        "/status/later?with_desc=1",
        "/j/emails",
        "/j/closed",
        "/j/later",
        "/control/emails",
        "/control/closed",
        "/w/",
        "/w/?worker_id=w1",
        "/w/?worker_id=w2",
        "/w/?queue_name=emails",
    ];
    let mut seen = Vec::new();
    for path in paths {
        let (status, body) = get_text(client, server, path).await;
        seen.push((path.to_owned(), format!("{status} {body}")));
    }
    seen
}

#[actix_web::test]
async fn graceful_restart_keeps_every_route_the_same() {
    let node = Node::new("");
    let client = Client::new();
    let server = node.start(&[]);
    for i in 0..5 {
        post(&client, &server, "/q/emails", &format!("{{\"n\":{i}}}")).await;
    }
    post(&client, &server, "/q/emails?uniq=key", "{\"uniq\":true}").await;
    post(&client, &server, "/qb/emails", "{\"jobs\":[\"b1\",\"b2\"]}").await;
    let later = now_secs_f64() + 3600.0;
    post(
        &client,
        &server,
        &format!("/q/later?delayed={later}&uniq=dkey"),
        "{\"later\":1}",
    )
    .await;
    post(&client, &server, "/q/closed", "[1]").await;
    client
        .post(server.url("/control/closed"))
        .body("{\"status\":\"stop\"}")
        .send()
        .await
        .unwrap();
    client
        .post(server.url("/w/emails"))
        .header("X-presque-workerid", "w1")
        .send()
        .await
        .unwrap();
    client
        .post(server.url("/w/emails"))
        .body("{\"worker_id\":\"w2\"}")
        .send()
        .await
        .unwrap();
    client
        .get(server.url("/q/emails"))
        .header("X-presque-workerid", "w1")
        .send()
        .await
        .unwrap();
    client
        .put(server.url("/q/emails"))
        .header("Content-Type", "application/json")
        .header("X-presque-workerid", "w2")
        .body("{\"failed\":1}")
        .send()
        .await
        .unwrap();
    let before = observe(&client, &server).await;
    let lines = server.stop();
    assert!(
        lines.iter().any(|l| l.contains("snapshot written")),
        "{lines:?}"
    );

    let server = node.start(&[]);
    let after = observe(&client, &server).await;
    assert_eq!(before, after);
    // uniq keys survived (ready and delayed), and order is kept.
    assert_eq!(
        post(&client, &server, "/q/emails?uniq=key", "{}").await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(&client, &server, "/q/later?uniq=dkey", "{}").await,
        StatusCode::BAD_REQUEST
    );
    let jobs = drain(&client, &server, "emails").await;
    assert_eq!(
        jobs,
        [
            "{\"n\":1}",
            "{\"n\":2}",
            "{\"n\":3}",
            "{\"n\":4}",
            "{\"uniq\":true}",
            "\"b1\"",
            "\"b2\"",
            "{\"failed\":1}"
        ]
    );
    server.stop();
}

#[actix_web::test]
async fn sigkill_with_only_a_log_loses_nothing() {
    let node = Node::new(ALWAYS);
    let client = Client::new();
    let server = node.start(&[]);
    for i in 0..50 {
        assert_eq!(
            post(&client, &server, "/q/a", &i.to_string()).await,
            StatusCode::CREATED
        );
    }
    for _ in 0..10 {
        get_text(&client, &server, "/q/a").await;
    }
    client
        .post(server.url("/control/b"))
        .body("{\"status\":\"stop\"}")
        .send()
        .await
        .unwrap();
    client
        .post(server.url("/w/a"))
        .header("X-presque-workerid", "w")
        .send()
        .await
        .unwrap();
    assert!(node.files("snapshot-").is_empty());
    server.kill9();

    let server = node.start(&[]);
    let (_, j) = get_text(&client, &server, "/j/a").await;
    assert_eq!(
        serde_json::from_str::<Value>(&j).unwrap(),
        json!({"queue_name": "a", "job_count": 40, "job_failed": 0, "job_processed": 10})
    );
    let (_, c) = get_text(&client, &server, "/control/b").await;
    assert_eq!(serde_json::from_str::<Value>(&c).unwrap()["status"], 0);
    let (_, w) = get_text(&client, &server, "/w/").await;
    assert_eq!(w, "[\"w\"]");
    let jobs = drain(&client, &server, "a").await;
    let expected: Vec<String> = (10..50).map(|i| i.to_string()).collect();
    assert_eq!(jobs, expected);
    server.stop();
}

/// Posts `"P-I"` jobs to `url` until `stop` (or until the server is gone), noting in
/// `created` each one answered 201.
async fn post_until_stopped(
    url: String,
    p: usize,
    created: &Arc<Mutex<HashSet<String>>>,
    stop: &Arc<AtomicBool>,
) {
    let client = Client::new();
    for i in 0..100_000 {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let body = format!("\"{p}-{i}\"");
        let sent = client
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == StatusCode::CREATED => {
                created.lock().unwrap().insert(body);
            }
            _ => break,
        }
    }
}

/// After 1.5 s of traffic, kill -9 the server; a moment later, tell the traffic to stop.
async fn kill_mid_traffic(server: Arc<Mutex<ServerProcess>>, stop: Arc<AtomicBool>) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.lock().unwrap().signal("KILL");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
}

#[actix_web::test]
async fn sigkill_under_load_with_fsync_always() {
    let node = Node::new(ALWAYS);
    // Shared by the traffic tasks (one thread); the Mutex makes the Arc honest.
    let server = Arc::new(Mutex::new(node.start(&[])));
    let address = server.lock().unwrap().address.clone();
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let fetched = Arc::new(Mutex::new(Vec::new()));
    let interrupted_fetches = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let producers =
        (0..4).map(|p| post_until_stopped(format!("{address}/q/load"), p, &acked, &stop));
    let consumers = (0..4).map(|_| {
        let (url, fetched, stop, interrupted) = (
            format!("{address}/q/load"),
            fetched.clone(),
            stop.clone(),
            interrupted_fetches.clone(),
        );
        async move {
            let client = Client::new();
            while !stop.load(Ordering::SeqCst) {
                let sent = client.get(&url).send().await;
                let body = match sent {
                    Ok(r) if r.status() == StatusCode::OK => r.text().await,
                    Ok(_) => {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    Err(e) => Err(e),
                };
                match body {
                    Ok(body) => fetched.lock().unwrap().push(body),
                    Err(_) => {
                        // The kill cut this fetch short: its job may be gone unseen.
                        interrupted.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                }
            }
        }
    });
    let killer = kill_mid_traffic(server.clone(), stop.clone());
    tokio::join!(
        futures_util::future::join_all(producers),
        futures_util::future::join_all(consumers),
        killer
    );
    let _ = server.lock().unwrap().child.wait();

    let server = node.start(&[]);
    let client = Client::new();
    let remaining = drain(&client, &server, "load").await;
    server.stop();

    let acked = acked.lock().unwrap().clone();
    let fetched = fetched.lock().unwrap().clone();
    eprintln!(
        "acked {}, fetched {}, remaining {}, interrupted fetches {}",
        acked.len(),
        fetched.len(),
        remaining.len(),
        interrupted_fetches.load(Ordering::SeqCst)
    );
    assert!(
        acked.len() > 100,
        "too little traffic to mean anything: {}",
        acked.len()
    );
    let fetched_set: HashSet<&String> = fetched.iter().collect();
    assert_eq!(
        fetched_set.len(),
        fetched.len(),
        "a job was delivered twice before the crash"
    );
    let remaining_set: HashSet<&String> = remaining.iter().collect();
    assert_eq!(
        remaining_set.len(),
        remaining.len(),
        "a job is queued twice"
    );
    let redelivered: Vec<&&String> = remaining_set.intersection(&fetched_set).collect();
    assert!(
        redelivered.is_empty(),
        "acknowledged fetches delivered again: {redelivered:?}"
    );
    let lost: Vec<&String> = acked
        .iter()
        .filter(|j| !fetched_set.contains(j) && !remaining_set.contains(j))
        .collect();
    // Only a fetch cut short by the kill may have taken a job its client never saw.
    assert!(
        lost.len() <= interrupted_fetches.load(Ordering::SeqCst),
        "acknowledged jobs lost: {lost:?}"
    );
}

/// Under `always` a lease grant is answered before its fsync (README, *Durability*):
/// a crash may hand a leased job out again, but an ack that got its `204` is never
/// undone, and no job that got its `201` is lost, leased or not.
#[actix_web::test]
async fn sigkill_under_leased_work_with_fsync_always() {
    let node = Node::new(ALWAYS);
    let server = Arc::new(Mutex::new(node.start(&[])));
    let address = server.lock().unwrap().address.clone();
    let created = Arc::new(Mutex::new(HashSet::new()));
    // Acks answered 204, and acks sent whose answer the kill cut off.
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let unanswered = Arc::new(Mutex::new(HashSet::new()));
    let leases = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let producers =
        (0..3).map(|p| post_until_stopped(format!("{address}/q/work"), p, &created, &stop));
    let workers = (0..4).map(|_| {
        let (address, acked, unanswered, leases, stop) = (
            address.clone(),
            acked.clone(),
            unanswered.clone(),
            leases.clone(),
            stop.clone(),
        );
        async move {
            let client = Client::new();
            while !stop.load(Ordering::SeqCst) {
                let r = match client.get(format!("{address}/q/work?lease=2")).send().await {
                    Ok(r) if r.status() == StatusCode::OK => r,
                    Ok(_) => {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    Err(_) => break,
                };
                let header = |name: &str| {
                    r.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let (Some(id), Some(token)) =
                    (header("X-presque-jobid"), header("X-presque-lease"))
                else {
                    panic!("a lease answer without its headers");
                };
                let Ok(body) = r.text().await else { break };
                leases.fetch_add(1, Ordering::SeqCst);
                let ack = client
                    .delete(format!("{address}/q/work/{id}"))
                    .header("X-presque-lease", token)
                    .send()
                    .await;
                match ack {
                    Ok(r) if r.status() == StatusCode::NO_CONTENT => {
                        acked.lock().unwrap().insert(body);
                    }
                    Ok(r) => panic!("ack answered {}", r.status()),
                    Err(_) => {
                        unanswered.lock().unwrap().insert(body);
                        break;
                    }
                }
            }
        }
    });
    let killer = kill_mid_traffic(server.clone(), stop.clone());
    tokio::join!(
        futures_util::future::join_all(producers),
        futures_util::future::join_all(workers),
        killer
    );
    let _ = server.lock().unwrap().child.wait();

    // Leases granted before the kill either were lost (the job is ready again) or
    // come back when their 2 s run out: collect until nothing is left in either.
    let server = node.start(&[]);
    let client = Client::new();
    let mut remaining = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        remaining.extend(drain(&client, &server, "work").await);
        let (_, leased) = get_text(&client, &server, "/jobs/work?state=leased").await;
        let leased: Value = serde_json::from_str(&leased).unwrap();
        if leased["size"] == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "leases never ran out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop();

    let (created, acked) = (
        created.lock().unwrap().clone(),
        acked.lock().unwrap().clone(),
    );
    let unanswered = unanswered.lock().unwrap().clone();
    eprintln!(
        "created {}, leases {}, acked {}, unanswered acks {}, remaining {}",
        created.len(),
        leases.load(Ordering::SeqCst),
        acked.len(),
        unanswered.len(),
        remaining.len()
    );
    assert!(acked.len() > 100, "too little traffic to mean anything");
    let remaining: HashSet<String> = remaining.into_iter().collect();
    let undone: Vec<&String> = acked.intersection(&remaining).collect();
    assert!(undone.is_empty(), "acknowledged acks undone: {undone:?}");
    let lost: Vec<&String> = created
        .iter()
        .filter(|j| !acked.contains(*j) && !unanswered.contains(*j) && !remaining.contains(*j))
        .collect();
    assert!(lost.is_empty(), "acknowledged jobs lost: {lost:?}");
}

#[actix_web::test]
async fn log_rotates_across_snapshots_and_recovers_after_sigkill() {
    let node = Node::new("[storage]\nfsync = \"everysec\"\nsnapshot_interval_secs = 1\n");
    let client = Client::new();
    let server = node.start(&[]);
    let mut expected = Vec::new();
    for round in 0..8 {
        for i in 0..20 {
            let body = format!("[{round},{i}]");
            assert_eq!(
                post(&client, &server, "/q/r", &body).await,
                StatusCode::CREATED
            );
            expected.push(body);
        }
        // Fetch one per round so snapshots and log both carry removals.
        let (status, body) = get_text(&client, &server, "/q/r").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, expected.remove(0));
        tokio::time::sleep(Duration::from_millis(450)).await;
    }
    // Several snapshots ran; old segments and snapshots were deleted.
    let snapshots = node.files("snapshot-");
    let segments = node.files("log-");
    assert!(
        !snapshots.is_empty() && snapshots.len() <= 2,
        "{snapshots:?}"
    );
    assert!(segments.len() <= 4, "log not pruned: {segments:?}");
    // everysec: wait out the fsync window so the kill tests the files, not luck.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    server.kill9();

    let server = node.start(&[]);
    assert_eq!(drain(&client, &server, "r").await, expected);
    server.stop();
}

/// (offset, length) of every frame in a sound segment.
fn frames(segment: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = LOG_HEADER_LEN;
    while let Frame::Whole { len, .. } = read_frame(&segment[at..]) {
        out.push((at, len));
        at += len;
    }
    assert_eq!(at, segment.len(), "the segment is not sound");
    out
}

async fn fill_and_kill(node: &Node, jobs: usize) {
    let client = Client::new();
    let server = node.start(&[]);
    for i in 0..jobs {
        assert_eq!(
            post(&client, &server, "/q/t", &i.to_string()).await,
            StatusCode::CREATED
        );
    }
    server.kill9();
}

#[actix_web::test]
async fn a_torn_last_record_is_dropped_with_a_warning() {
    let node = Node::new(ALWAYS);
    fill_and_kill(&node, 5).await;
    let segment = node.files("log-").pop().unwrap();
    let mut data = std::fs::read(&segment).unwrap();
    let sound_len = data.len();
    // A record that claims 100 bytes but stops after 10: a crash mid-write.
    let torn: Vec<u8> = frame_header(100, 0).into_iter().chain([0xa5; 10]).collect();
    data.extend_from_slice(&torn);
    std::fs::write(&segment, &data).unwrap();

    let server = node.start(&[]);
    assert!(
        server
            .startup_lines
            .iter()
            .any(|l| l.contains("torn last log record")),
        "{:?}",
        server.startup_lines
    );
    let client = Client::new();
    let jobs = drain(&client, &server, "t").await;
    assert_eq!(jobs, ["0", "1", "2", "3", "4"]);
    server.kill9();
    // The torn bytes were moved aside, not destroyed.
    assert_eq!(std::fs::read(&segment).unwrap().len(), sound_len);
    let name = segment.file_name().unwrap().to_str().unwrap();
    let aside = node.data().join(format!("{name}.torn-{sound_len}"));
    assert_eq!(std::fs::read(aside).unwrap(), torn);
    // The next start is clean.
    let server = node.start(&[]);
    assert!(!server.startup_lines.iter().any(|l| l.contains("torn")));
    server.stop();
}

#[actix_web::test]
async fn a_corrupt_record_mid_log_refuses_to_start_unless_loss_is_accepted() {
    let node = Node::new(ALWAYS);
    fill_and_kill(&node, 6).await;
    let segment = node.files("log-").remove(0);
    let mut data = std::fs::read(&segment).unwrap();
    let all = frames(&data);
    // Records: QueueCreated, then one Enqueued per job. Damage the 4th job's record.
    let (at, len) = all[4];
    data[at + len - 1] ^= 0x01;
    std::fs::write(&segment, &data).unwrap();

    let stderr = node.start_expecting_failure(&[]);
    let name = segment.file_name().unwrap().to_str().unwrap();
    assert!(stderr.contains(name), "{stderr}");
    assert!(
        stderr.contains(&format!("at byte {at}: checksum mismatch")),
        "{stderr}"
    );
    assert!(stderr.contains("--accept-data-loss"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let server = node.start(&["--accept-data-loss"]);
    let client = Client::new();
    let jobs = drain(&client, &server, "t").await;
    // Only the damaged record is lost; the ones after it are replayed.
    assert_eq!(jobs, ["0", "1", "2", "4", "5"]);
    post(&client, &server, "/q/t", "\"after\"").await;
    server.stop();
    // The damaged segment was kept aside, and the next start needs no flag.
    assert!(node.data().join(format!("{name}.corrupt")).exists());
    let server = node.start(&[]);
    assert_eq!(drain(&client, &server, "t").await, ["\"after\""]);
    server.stop();
}

#[actix_web::test]
async fn a_damaged_length_mid_log_is_refused_and_accepting_loss_loses_only_that_record() {
    let node = Node::new(ALWAYS);
    fill_and_kill(&node, 100).await;
    let segment = node.files("log-").pop().unwrap();
    let mut data = std::fs::read(&segment).unwrap();
    let all = frames(&data);
    assert_eq!(all.len(), 101, "QueueCreated, then one record per job");
    // The record of job "49", in the middle: one bit of its length.
    let (at, len) = all[50];
    data[at + 2] ^= 0x40;
    std::fs::write(&segment, &data).unwrap();

    let stderr = node.start_expecting_failure(&[]);
    let name = segment.file_name().unwrap().to_str().unwrap();
    assert!(
        stderr.contains(&format!(
            "{name} at byte {at}: frame header checksum mismatch"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("torn"), "{stderr}");
    // Refusing changes nothing on disk.
    assert_eq!(std::fs::read(&segment).unwrap(), data);

    let server = node.start(&["--accept-data-loss"]);
    let said = server.startup_lines.join("\n");
    assert!(
        said.contains(&format!("bytes {at}..{} ({len} bytes)", at + len)),
        "{said}"
    );
    // Killed at once: what was recovered must already be sealed by a snapshot.
    server.kill9();
    let corrupt = node.data().join(format!("{name}.corrupt"));
    assert_eq!(std::fs::read(corrupt).unwrap(), data);

    let server = node.start(&[]);
    let client = Client::new();
    let jobs = drain(&client, &server, "t").await;
    let expected: Vec<String> = (0..100)
        .filter(|&i| i != 49)
        .map(|i| i.to_string())
        .collect();
    assert_eq!(jobs, expected);
    server.stop();
}

#[actix_web::test]
async fn an_empty_segment_left_by_a_failed_start_does_not_block_later_starts() {
    let node = Node::new(ALWAYS);
    node.start(&[]).stop();
    // A start that failed on a full disk: it created its segment but could not write
    // the header.
    let newest = node.files("log-").pop().unwrap();
    let newest = newest.file_name().unwrap().to_str().unwrap();
    let number: u64 = newest["log-".len()..newest.len() - ".presque".len()]
        .parse()
        .unwrap();
    let empty = node.data().join(format!("log-{:020}.presque", number + 1));
    std::fs::write(&empty, b"").unwrap();

    let client = Client::new();
    let server = node.start(&[]);
    for i in 0..5 {
        assert_eq!(
            post(&client, &server, "/q/e", &i.to_string()).await,
            StatusCode::CREATED
        );
    }
    server.kill9();

    let server = node.start(&[]);
    assert_eq!(
        drain(&client, &server, "e").await,
        ["0", "1", "2", "3", "4"]
    );
    server.stop();
}

#[actix_web::test]
async fn a_damaged_snapshot_falls_back_when_that_loses_nothing() {
    let node = Node::new("");
    let client = Client::new();
    let server = node.start(&[]);
    for i in 0..10 {
        post(&client, &server, "/q/s", &i.to_string()).await;
    }
    server.stop();
    let snapshot = node.files("snapshot-").pop().unwrap();
    let mut data = std::fs::read(&snapshot).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 0x10;
    std::fs::write(&snapshot, &data).unwrap();

    let server = node.start(&[]);
    let said = server.startup_lines.join("\n");
    assert!(said.contains("checksum mismatch"), "{said}");
    assert!(said.contains("nothing was lost"), "{said}");
    let jobs = drain(&client, &server, "s").await;
    let expected: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(jobs, expected);
    server.stop();
}

#[actix_web::test]
async fn an_unknown_format_version_is_refused_with_a_clear_message() {
    let node = Node::new("");
    let client = Client::new();
    let server = node.start(&[]);
    post(&client, &server, "/q/v", "1").await;
    server.stop();
    // The only snapshot claims a future format, and the log before it is gone.
    let snapshot = node.files("snapshot-").pop().unwrap();
    let mut data = std::fs::read(&snapshot).unwrap();
    data[8..12].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&snapshot, &data).unwrap();
    std::fs::remove_file(node.files("log-").remove(0)).unwrap();

    let stderr = node.start_expecting_failure(&[]);
    assert!(
        stderr.contains("format version 99 at byte 8 is not supported"),
        "{stderr}"
    );
    assert!(
        stderr.contains(snapshot.file_name().unwrap().to_str().unwrap()),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[actix_web::test]
async fn delayed_jobs_due_during_downtime_are_ready_at_once() {
    let node = Node::new(ALWAYS);
    let client = Client::new();
    let server = node.start(&[]);
    let due = now_secs_f64() + 1.0;
    post(&client, &server, &format!("/q/d?delayed={due}"), "\"due\"").await;
    server.kill9();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let server = node.start(&[]);
    let (status, s) = get_text(&client, &server, "/status/d").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Value>(&s).unwrap()["size"], 1);
    assert_eq!(get_text(&client, &server, "/q/d").await.1, "\"due\"");
    server.stop();
}

#[test]
fn an_unusable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "not a directory").unwrap();
    let (code, stderr) =
        run_binary_expect_exit(dir.path(), &["--bind", "127.0.0.1:0", "--data-dir", "file"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("cannot create data directory file"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[actix_web::test]
async fn two_servers_cannot_share_a_data_dir() {
    let node = Node::new("");
    let server = node.start(&[]);
    let stderr = node.start_expecting_failure(&[]);
    assert!(
        stderr.contains("is in use by another presque process"),
        "{stderr}"
    );
    server.stop();
}

#[actix_web::test]
async fn leases_and_attempts_survive_a_sigkill_restart() {
    let node = Node::new(ALWAYS);
    let client = Client::new();
    let server = node.start(&[]);
    for i in 0..3 {
        post(&client, &server, "/q/l", &i.to_string()).await;
    }
    let lease = |wait: &'static str| {
        let url = server.url(&format!("/q/l?lease={wait}"));
        let client = client.clone();
        async move {
            let r = client
                .get(url)
                .header("X-presque-workerid", "w")
                .send()
                .await
                .unwrap();
            let header = |name: &str| r.headers()[name].to_str().unwrap().to_owned();
            (header("X-presque-jobid"), header("X-presque-lease"))
        }
    };
    let (held, held_token) = lease("60").await;
    let (failed, failed_token) = lease("60").await;
    let (expiring, _) = lease("1").await;
    client
        .put(server.url(&format!("/q/l/{failed}")))
        .header("X-presque-lease", failed_token)
        .send()
        .await
        .unwrap();
    let (_, before) = get_text(&client, &server, &format!("/q/l/{held}")).await;
    server.kill9();

    let server = node.start(&[]);
    let (_, after) = get_text(&client, &server, &format!("/q/l/{held}")).await;
    assert_eq!(before, after);
    let info: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(
        (info["state"].clone(), info["worker_id"].clone()),
        (json!("leased"), json!("w"))
    );
    let (_, info) = get_text(&client, &server, &format!("/q/l/{failed}")).await;
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(
        (info["state"].clone(), info["attempts"].clone()),
        (json!("ready"), json!(1))
    );
    // The short lease runs out after the restart, on the recovered deadline.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, info) = get_text(&client, &server, &format!("/q/l/{expiring}")).await;
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(
        (info["state"].clone(), info["attempts"].clone()),
        (json!("ready"), json!(1))
    );
    let r = client
        .delete(server.url(&format!("/q/l/{held}")))
        .header("X-presque-lease", held_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    server.stop();
}

#[actix_web::test]
async fn graceful_stop_answers_parked_fetches_at_once() {
    let node = Node::new("");
    let server = node.start(&[]);
    let url = server.url("/q/idle?wait=30");
    let waiter = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let r = Client::new().get(url).send().await.unwrap();
        (r.status(), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = std::time::Instant::now();
    server.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    let (status, waited) = waiter.await.unwrap();
    // Cut short: told to come back (tests/api/polling.rs has the details).
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(waited < Duration::from_secs(5));
}

#[actix_web::test]
async fn an_idle_server_does_not_rewrite_its_snapshot() {
    let node = Node::new("[storage]\nsnapshot_interval_secs = 1\n");
    let client = Client::new();
    let server = node.start(&[]);
    post(&client, &server, "/q/idle", "1").await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let first = node.files("snapshot-");
    assert_eq!(first.len(), 1, "{first:?}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        node.files("snapshot-"),
        first,
        "nothing changed, yet a snapshot was written"
    );
    post(&client, &server, "/q/idle", "2").await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_ne!(node.files("snapshot-"), first);
    server.stop();
}

#[actix_web::test]
async fn a_lease_storm_due_at_start_expires_in_steps_and_replays_the_same() {
    let node = Node::new(&format!("[server]\nworkers = 1\n{ALWAYS}"));
    let client = Client::new();
    let server = node.start(&[]);
    // Several steps' worth (EXPIRY_BATCH is 1024), plus a job never leased.
    let n = 10_000usize;
    let numbers: Vec<usize> = (0..=n).collect();
    for chunk in numbers.chunks(1000) {
        let body = json!({ "jobs": chunk }).to_string();
        assert_eq!(
            post(&client, &server, "/qb/storm", &body).await,
            StatusCode::CREATED
        );
    }
    let mut ids = Vec::new();
    while ids.len() < n {
        let r = client
            .get(server.url("/qb/storm?batch_size=1000&lease=1"))
            .send()
            .await
            .unwrap();
        let header = r.headers()["X-presque-jobid"].to_str().unwrap().to_owned();
        ids.extend(header.split(',').map(str::to_owned));
    }
    server.stop();
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // Every lease ran out while the server was down: they expire as it starts.
    let server = node.start(&[]);
    let started = std::time::Instant::now();
    loop {
        let (status, _) = get_text(&client, &server, "/status/").await;
        assert_eq!(status, StatusCode::OK);
        let (_, j) = get_text(&client, &server, "/j/storm").await;
        let j: Value = serde_json::from_str(&j).unwrap();
        if j["job_count"] == json!(n + 1) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{j}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sample = [&ids[0], &ids[n / 2], &ids[n - 1]];
    let mut infos = Vec::new();
    for id in sample {
        infos.push(
            get_text(&client, &server, &format!("/q/storm/{id}"))
                .await
                .1,
        );
    }
    let listed = all_ready(&client, &server, "storm").await;

    // The expiries now exist only in the log: replay must rebuild the same queue.
    server.kill9();
    let server = node.start(&[]);
    let relisted = all_ready(&client, &server, "storm").await;
    assert_eq!(relisted, listed);
    for (id, before) in sample.iter().zip(&infos) {
        let (_, after) = get_text(&client, &server, &format!("/q/storm/{id}")).await;
        assert_eq!(&after, before);
        let info: Value = serde_json::from_str(&after).unwrap();
        assert_eq!(
            (info["state"].clone(), info["attempts"].clone()),
            (json!("ready"), json!(1))
        );
    }
    let expected: Vec<String> = (0..=n).map(|i| i.to_string()).collect();
    assert_eq!(relisted, json!(expected));
    server.stop();
}
