//! Connections through real sockets: slow clients are cut by the head and body
//! timeouts, the connection cap holds others back until then, a graceful stop does not
//! wait on a stalled client past its shutdown timeout, TLS (a certificate made here),
//! and the start-up checks around it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::helpers::spawn_app_with;

/// `http://127.0.0.1:PORT` → `127.0.0.1:PORT`.
fn socket_address(address: &str) -> String {
    address
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_owned()
}

/// Connects and sends `bytes`, then leaves the connection stalled.
fn stalled(address: &str, bytes: &str) -> TcpStream {
    let mut stream = TcpStream::connect(socket_address(address)).unwrap();
    stream.write_all(bytes.as_bytes()).unwrap();
    stream.flush().unwrap();
    stream
}

/// Reads until the server closes (or `limit` passes, which fails the test): what the
/// server sent, and how long that took.
fn read_until_closed(mut stream: TcpStream, limit: Duration) -> (String, Duration) {
    let start = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "connection still open after {:?} ({e}); got {:?}",
                start.elapsed(),
                String::from_utf8_lossy(&got)
            ),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

/// Runs blocking socket code off the test's thread (the server's actors live there).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    actix_web::rt::task::spawn_blocking(f).await.unwrap()
}

const HALF_BODY: &str = "POST /q/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"half\": ";
const HALF_HEAD: &str = "POST /q/slow HTTP/1.1\r\nHost: x\r\nContent-Ty";

#[actix_web::test]
async fn a_body_stalled_midway_is_answered_408_and_closed_within_the_body_timeout() {
    let app = spawn_app_with(|s| s.server.body_timeout_secs = 1).await;
    let address = app.address.clone();
    let (answer, took) =
        blocking(move || read_until_closed(stalled(&address, HALF_BODY), Duration::from_secs(10)))
            .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#"{"error":"#), "{answer}");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // Nothing was created, and the server still serves.
    assert_eq!(app.get("/q/slow").await.status(), 404);
}

#[actix_web::test]
async fn half_a_header_line_is_cut_within_the_head_timeout() {
    let app = spawn_app_with(|s| s.server.request_head_timeout_secs = 1).await;
    let address = app.address.clone();
    let (answer, took) =
        blocking(move || read_until_closed(stalled(&address, HALF_HEAD), Duration::from_secs(10)))
            .await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(took < Duration::from_secs(4), "{took:?}");
}

#[actix_web::test]
async fn connections_past_the_cap_wait_until_stalled_ones_are_cut() {
    let app = spawn_app_with(|s| {
        s.server.workers = 1;
        s.server.max_connections = 2;
        s.server.request_head_timeout_secs = 2;
    })
    .await;
    let address = app.address.clone();
    let stalls = blocking(move || {
        let stalls = [stalled(&address, HALF_HEAD), stalled(&address, HALF_HEAD)];
        std::thread::sleep(Duration::from_millis(200));
        stalls
    })
    .await;
    // Accepted by the kernel, but not served until a slot frees.
    let start = Instant::now();
    let r = app.get("/status").await;
    let took = start.elapsed();
    assert_eq!(r.status(), 200);
    assert!(
        took >= Duration::from_millis(1200),
        "served too soon: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
    // The stalled ones were cut; normal clients go on working.
    for stall in stalls {
        blocking(move || read_until_closed(stall, Duration::from_secs(5))).await;
    }
    let r = app.post_json("/q/capped", r#"{"n":1}"#).await;
    assert_eq!(r.status(), 201);
    assert_eq!(app.get("/q/capped").await.status(), 200);
}

#[actix_web::test]
async fn sigterm_with_a_stalled_client_exits_within_the_shutdown_timeout() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("presque.toml"),
        "[server]\nshutdown_timeout_secs = 2\nrequest_head_timeout_secs = 60\n\
         body_timeout_secs = 60\nkeep_alive_secs = 60\n",
    )
    .unwrap();
    let mut server = start_binary(dir.path(), &NODE_ARGS, &[]);
    let r = reqwest::Client::new()
        .post(server.url("/q/x"))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let address = server.address.clone();
    let stalls = blocking(move || {
        let stalls = [stalled(&address, HALF_BODY), stalled(&address, HALF_HEAD)];
        std::thread::sleep(Duration::from_millis(300));
        stalls
    })
    .await;
    let start = Instant::now();
    let code = blocking(move || {
        server.signal("TERM");
        server.wait_for_exit()
    })
    .await;
    let took = start.elapsed();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(6), "stop took {took:?}");
    drop(stalls);
}

/// A CA and a certificate it signed for `localhost` and 127.0.0.1, written as PEM
/// files into `dir`: (CA PEM, cert path, key path).
fn make_certificate(dir: &Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (
        ca.pem(),
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

#[actix_web::test]
async fn tls_serves_jobs_to_a_client_trusting_the_ca() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificate(certs.path());
    let app = spawn_app_with(|s| {
        s.server.tls_cert_file = Some(cert.into());
        s.server.tls_key_file = Some(key.into());
    })
    .await;
    let port = socket_address(&app.address)
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/q/secure");
    let r = client
        .post(&url)
        .header("Content-Type", "application/json")
        .body(r#"{"secret":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), r#"{"secret":1}"#);
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/status"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // A client that does not trust the CA is refused.
    assert!(reqwest::Client::new()
        .get(format!("https://127.0.0.1:{port}/status"))
        .send()
        .await
        .is_err());
}

#[actix_web::test]
async fn bad_tls_files_stop_the_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = make_certificate(dir.path());
    let other = tempfile::tempdir().unwrap();
    let (_, _, other_key) = make_certificate(other.path());
    std::fs::write(dir.path().join("garbage.pem"), "not a certificate\n").unwrap();
    let cases = [
        ("missing.pem", key.as_str(), "missing.pem"),
        ("garbage.pem", key.as_str(), "garbage.pem"),
        (cert.as_str(), "missing-key.pem", "missing-key.pem"),
        (cert.as_str(), "garbage.pem", "garbage.pem"),
        (cert.as_str(), other_key.as_str(), "does not fit"),
    ];
    for (cert, key, expected) in cases {
        std::fs::write(
            dir.path().join("presque.toml"),
            format!("[server]\ntls_cert_file = {cert:?}\ntls_key_file = {key:?}\n"),
        )
        .unwrap();
        let (code, said) = run_binary_expect_exit(dir.path(), &NODE_ARGS);
        assert_eq!(code, Some(1), "{cert} {key}: {said}");
        assert!(said.contains(expected), "{cert} {key}: {said}");
        assert!(!dir.path().join("data").exists(), "data dir touched");
    }
    // Only one of the pair.
    std::fs::write(
        dir.path().join("presque.toml"),
        format!("[server]\ntls_cert_file = {cert:?}\n"),
    )
    .unwrap();
    let (code, said) = run_binary_expect_exit(dir.path(), &NODE_ARGS);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("tls_key_file"), "{said}");
}

#[actix_web::test]
async fn listening_beyond_loopback_without_tls_warns() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_binary(dir.path(), &["--bind", "0.0.0.0:0", "--data-dir", "d"], &[]);
    let said = server.startup_lines.join("\n");
    assert!(
        said.contains("WARN") && said.contains("beyond loopback"),
        "{said}"
    );
    server.stop();
    let server = start_binary(
        dir.path(),
        &["--bind", "127.0.0.1:0", "--data-dir", "d"],
        &[],
    );
    let said = server.startup_lines.join("\n");
    assert!(!said.contains("beyond loopback"), "{said}");
    server.stop();
}

/// Reads one HTTP/1.1 response (head and `Content-Length` body) from `stream`, whose
/// unread bytes so far are in `pending`: its status and body.
fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> (u16, String) {
    let mut buf = [0u8; 65536];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if pending.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                let body = String::from_utf8_lossy(&pending[end + 4..end + 4 + length]).to_string();
                pending.drain(..end + 4 + length);
                return (status, body);
            }
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed the connection mid-pipeline");
        pending.extend_from_slice(&buf[..n]);
    }
}

/// HTTP/1.1 pipelining: a client may send requests before reading the answers to
/// earlier ones, and gets them in order. Small answers used to wait behind Nagle's
/// algorithm for the client's delayed ACK (40 ms a batch, 27x slower than sequential
/// requests): 125 batches of 8 must not take anywhere near 125 x 40 ms.
#[actix_web::test]
async fn a_thousand_pipelined_requests_answer_in_order_without_stalling() {
    let app = spawn_app_with(|_| {}).await;
    let address = socket_address(&app.address);
    let took = blocking(move || {
        let mut stream = TcpStream::connect(&address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let post = |n: usize| {
            let body = n.to_string();
            format!(
                "POST /q/piped HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let get = "GET /q/piped HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut pending = Vec::new();
        let start = Instant::now();
        for batch in 0..125 {
            let requests: String = (batch * 8..batch * 8 + 8).map(post).collect();
            stream.write_all(requests.as_bytes()).unwrap();
            for _ in 0..8 {
                assert_eq!(read_response(&mut stream, &mut pending).0, 201);
            }
        }
        let took = start.elapsed();
        // All 1,000 fetches in one write: each answer is the next job, in order.
        stream.write_all(get.repeat(1000).as_bytes()).unwrap();
        for n in 0..1000 {
            assert_eq!(
                read_response(&mut stream, &mut pending),
                (200, n.to_string()),
                "answer {n} out of order"
            );
        }
        assert!(pending.is_empty());
        took
    })
    .await;
    assert!(
        took < Duration::from_secs(4),
        "125 pipelined batches took {took:?}: a stall per batch"
    );
}
