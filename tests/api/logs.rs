//! What the real binary logs: the access log and request ids, JSON lines, the start
//! line, recovery progress; and what it prints instead of serving (completions, man
//! page, version).

use std::process::{Command, Stdio};

use reqwest::Client;
use serde_json::Value;

use crate::harness::*;

const ARGS: [&str; 4] = ["--bind", "127.0.0.1:0", "--data-dir", "d"];

fn access_lines(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| l.contains("presque::access"))
        .collect()
}

fn request_id(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no X-Request-Id on a {} answer", r.status()))
}

#[actix_web::test]
async fn every_request_gets_an_access_line_and_a_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_binary(dir.path(), &ARGS, &[]);
    let client = Client::new();
    let url = |p: &str| server.url(p);

    // The client's own id is kept and logged.
    let r = client
        .post(url("/q/logged?delay=0"))
        .header("Content-Type", "application/json")
        .header("X-Request-Id", "trace-abc:123")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(request_id(&r), "trace-abc:123");

    // Errors carry one too; ids the server makes differ from one another.
    let r = client.get(url("/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let made = request_id(&r);
    let r = client.get(url("/q/x?bogus=1")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let made2 = request_id(&r);
    assert_ne!(made, made2);

    // Hostile ids are replaced: too long, a tab, non-ASCII.
    let long = "a".repeat(129);
    let hostile: [&[u8]; 3] = [long.as_bytes(), b"a\tb", "caf\u{e9}".as_bytes()];
    for bad in hostile {
        let r = client
            .get(url("/status"))
            .header(
                "X-Request-Id",
                reqwest::header::HeaderValue::from_bytes(bad).unwrap(),
            )
            .send()
            .await
            .unwrap();
        let id = request_id(&r);
        assert_ne!(id.as_bytes(), bad);
        assert_eq!(
            id.split('-').next(),
            made.split('-').next(),
            "a replaced id is one the server made: {id}"
        );
    }
    // 128 visible characters are still the client's.
    let max = "b".repeat(128);
    let r = client
        .get(url("/status"))
        .header("X-Request-Id", &max)
        .send()
        .await
        .unwrap();
    assert_eq!(request_id(&r), max);

    // A long hostile path is logged cut short, quoted, never raw.
    let path = format!("/q/{}%22%0A{}", "p".repeat(600), "z".repeat(10));
    let r = client.get(url(&path)).send().await.unwrap();
    assert!(r.status().is_client_error(), "an over-long queue name");

    let lines = server.stop();
    let access = access_lines(&lines);
    let said = lines.join("\n");
    let posted = access
        .iter()
        .find(|l| l.contains("request_id=\"trace-abc:123\""))
        .unwrap_or_else(|| panic!("no access line with the client's id:\n{said}"));
    // As tracing-subscriber's text format wrote it before the access log had a
    // writer of its own.
    let stamp = posted.split(' ').next().unwrap_or("");
    assert!(
        stamp.len() == 27 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{posted}"
    );
    for part in [
        "Z  INFO presque::access: request method=POST path=",
        "method=POST",
        "path=\"/q/logged?delay=0\"",
        "status=201",
        "duration_us=",
        "peer=127.0.0.1:",
    ] {
        assert!(posted.contains(part), "{part} missing from {posted}");
    }
    assert!(access
        .iter()
        .any(|l| l.contains(&format!("request_id=\"{made}\"")) && l.contains("status=404")));
    let long_line = access
        .iter()
        .find(|l| l.contains("ppppp"))
        .unwrap_or_else(|| panic!("no line for the long path:\n{said}"));
    assert!(long_line.contains("...\""), "{long_line}");
    assert!(!long_line.contains("zzzzzzzzzz"), "{long_line}");
    assert!(long_line.len() < 600, "{long_line}");
    assert_eq!(access.len(), 8, "one line per request:\n{said}");
}

#[actix_web::test]
async fn answers_refused_by_auth_carry_a_request_id_and_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_binary(
        dir.path(),
        &ARGS,
        &[("PRESQUE_TOKENS", "admin:an-admin-token-long-enough")],
    );
    let r = Client::new()
        .post(server.url("/q/x"))
        .header("X-Request-Id", "no-token-1")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(request_id(&r), "no-token-1");
    let lines = server.stop();
    assert!(
        access_lines(&lines)
            .iter()
            .any(|l| l.contains("request_id=\"no-token-1\"") && l.contains("status=401")),
        "{}",
        lines.join("\n")
    );
}

#[actix_web::test]
async fn with_the_access_log_off_there_are_no_lines_and_no_ids() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("presque.toml"), "[log]\naccess = false\n").unwrap();
    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    assert!(server.startup_lines.join("\n").contains("access_log=false"));
    let client = Client::new();
    for path in ["/status", "/nothing"] {
        let r = client
            .get(server.url(path))
            .header("X-Request-Id", "client-id")
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("x-request-id").is_none(), "{path}");
    }
    let lines = server.stop();
    assert!(access_lines(&lines).is_empty(), "{}", lines.join("\n"));
}

#[actix_web::test]
async fn json_format_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("presque.toml"),
        "[log]\nformat = \"json\"\n",
    )
    .unwrap();
    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    let r = Client::new()
        .post(server.url("/q/j"))
        .header("Content-Type", "application/json")
        .header("X-Request-Id", "json-1")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut lines = server.startup_lines.clone();
    lines.extend(server.stop());
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let start = parsed
        .iter()
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("presque listening"))
        })
        .unwrap();
    assert_eq!(start["level"], "INFO");
    assert_eq!(start["log_format"], "json", "{start}");
    assert!(start["config"].as_str().unwrap().ends_with("presque.toml"));
    let access = parsed
        .iter()
        .find(|v| v["target"] == "presque::access")
        .unwrap();
    assert_eq!(access["request_id"], "json-1");
    assert_eq!(access["method"], "POST");
    assert_eq!(access["path"], "/q/j");
    assert_eq!(access["status"], 201);
    assert!(access["duration_us"].is_u64());

    // The flag beats the file; a value the file does not know stops the start.
    let server = start_binary(dir.path(), &NODE_ARGS, &[("PRESQUE_LOG_FORMAT", "text")]);
    assert!(serde_json::from_str::<Value>(&server.startup_lines[0]).is_err());
    server.stop();
    std::fs::write(dir.path().join("presque.toml"), "[log]\nformat = \"xml\"\n").unwrap();
    let (code, stderr) = run_binary_expect_exit(dir.path(), &NODE_ARGS);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("xml") && stderr.contains("json"),
        "{stderr}"
    );
}

#[actix_web::test]
async fn the_start_line_names_the_config_and_the_policies() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_binary(dir.path(), &ARGS, &[]);
    let said = server.startup_lines.join("\n");
    let data_dir = dir.path().join("d");
    for part in [
        "config=\"built-in defaults\"".to_owned(),
        format!("data_dir=\"{}\"", data_dir.display()),
        format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        "fsync=everysec".to_owned(),
        "max_memory_bytes=auto".to_owned(),
        "auth=\"off\"".to_owned(),
        "access_log=true".to_owned(),
        "log_format=text".to_owned(),
        format!("address={}", server.address.trim_start_matches("http://")),
    ] {
        assert!(said.contains(&part), "{part} missing from:\n{said}");
    }
    server.stop();

    std::fs::write(
        dir.path().join("presque.toml"),
        "[limits]\nmax_memory_bytes = \"unlimited\"\n",
    )
    .unwrap();
    let server = start_binary(dir.path(), &NODE_ARGS, &[]);
    let said = server.startup_lines.join("\n");
    let config = dir.path().join("presque.toml");
    assert!(
        said.contains(&format!("config=\"{}\"", config.display())),
        "{said}"
    );
    assert!(said.contains("max_memory_bytes=unlimited"), "{said}");
    server.stop();
}

#[actix_web::test]
async fn recovery_logs_its_progress_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    // Every acknowledged batch on disk before the SIGKILL.
    let server = start_binary(dir.path(), &ARGS, &[("PRESQUE_FSYNC", "always")]);
    let client = Client::new();
    let batch = format!("{{\"jobs\":[{}]}}", vec!["{\"n\":1}"; 5000].join(","));
    for _ in 0..10 {
        let r = client
            .post(server.url("/qb/progress"))
            .header("Content-Type", "application/json")
            .body(batch.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // No final snapshot: the restart replays 50,000 jobs from the log.
    server.kill9();
    let server = start_binary(dir.path(), &ARGS, &[("PRESQUE_PROGRESS_INTERVAL_MS", "1")]);
    let said = server.startup_lines.join("\n");
    let progress: Vec<&String> = server
        .startup_lines
        .iter()
        .filter(|l| l.contains("recovery in progress"))
        .collect();
    assert!(!progress.is_empty(), "no progress line:\n{said}");
    for part in ["phase=", "files=", "records=", "jobs=", "elapsed_ms="] {
        assert!(progress[0].contains(part), "{part}: {}", progress[0]);
    }
    let summary = server
        .startup_lines
        .iter()
        .find(|l| l.contains("recovered"))
        .unwrap_or_else(|| panic!("no summary:\n{said}"));
    assert!(summary.contains("jobs=50000"), "{summary}");
    assert!(summary.contains("files=1"), "{summary}");
    // The summary is the last word: no progress line after it.
    let after = server
        .startup_lines
        .iter()
        .skip_while(|l| !l.contains("recovered"))
        .any(|l| l.contains("recovery in progress"));
    assert!(!after, "{said}");
    let lines = server.stop();
    assert!(!lines.iter().any(|l| l.contains("recovery in progress")));
}

fn run_for_stdout(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_man_page_and_version() {
    for shell in ["bash", "zsh", "fish"] {
        let script = run_for_stdout(&["completions", shell]);
        // Fish spells a long flag `-l data-dir`.
        for flag in ["data-dir", "accept-data-loss", "log-format", "completions"] {
            assert!(script.contains(flag), "{shell}: {flag} missing");
        }
    }
    let man = run_for_stdout(&["man"]);
    assert!(man.contains(".TH PRESQUE 1"), "{man}");
    assert!(man.contains("\\-\\-data\\-dir"), "{man}");
    let version = run_for_stdout(&["--version"]);
    assert_eq!(
        version.trim(),
        format!("presque {}", env!("CARGO_PKG_VERSION"))
    );
}
