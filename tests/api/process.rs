//! The real binary: settings precedence, start-up errors, graceful shutdown.

use crate::harness::*;

fn blocking_client() -> reqwest::Client {
    reqwest::Client::new()
}

#[actix_web::test]
async fn sigterm_and_sigint_shut_down_cleanly() {
    for sig in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let mut server = start_binary(
            dir.path(),
            &["--bind", "127.0.0.1:0", "--data-dir", "d"],
            &[],
        );
        let r = blocking_client()
            .post(format!("{}/q/x", server.address))
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        server.signal(sig);
        assert_eq!(server.wait_for_exit(), Some(0), "SIG{sig}");
    }
}

#[actix_web::test]
async fn logs_one_line_with_the_address_and_creates_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_binary(
        dir.path(),
        &["--bind", "127.0.0.1:0", "--data-dir", "nested/data"],
        &[],
    );
    assert!(server.address.starts_with("http://127.0.0.1:"));
    assert!(dir.path().join("nested/data").is_dir());
    let r = blocking_client()
        .get(format!("{}/status/", server.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop();
}

#[actix_web::test]
async fn reads_local_config_toml_and_flags_beat_env_beat_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[server]\nbind = \"127.0.0.1:1\"\nmax_body_bytes = 10\n[storage]\ndata_dir = \"from-file\"\n",
    )
    .unwrap();
    // Env overrides the file's bind; the file's body limit still applies.
    let server = start_binary(dir.path(), &[], &[("PRESQUE_BIND", "127.0.0.1:0")]);
    assert!(dir.path().join("from-file").is_dir());
    let r = blocking_client()
        .post(format!("{}/q/x", server.address))
        .header("Content-Type", "application/json")
        .body("{\"long\":\"enough\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    server.stop();

    // A flag beats the environment (which here names a port that cannot be bound).
    let server = start_binary(
        dir.path(),
        &["--bind", "127.0.0.1:0", "--data-dir", "from-flag"],
        &[
            ("PRESQUE_BIND", "256.0.0.1:1"),
            ("PRESQUE_DATA_DIR", "from-env"),
        ],
    );
    assert!(dir.path().join("from-flag").is_dir());
    assert!(!dir.path().join("from-env").exists());
    server.stop();
}

#[actix_web::test]
async fn explicit_config_file_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("custom.toml");
    std::fs::write(&config, "[storage]\ndata_dir = \"custom-data\"\n").unwrap();
    let server = start_binary(
        dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert!(dir.path().join("custom-data").is_dir());
    server.stop();
}

#[test]
fn unknown_config_key_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[server]\nbnid = \"127.0.0.1:0\"\n").unwrap();
    let (code, stderr) =
        run_binary_expect_exit(dir.path(), &["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("bnid"), "{stderr}");
}

#[test]
fn missing_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run_binary_expect_exit(dir.path(), &["--config", "nope.toml"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("nope.toml"), "{stderr}");
}

#[test]
fn unbindable_address_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = run_binary_expect_exit(dir.path(), &["--bind", &addr, "--data-dir", "d"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

#[actix_web::test]
async fn fsync_policy_comes_from_env_and_flag() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_binary(
        dir.path(),
        &["--bind", "127.0.0.1:0", "--data-dir", "d"],
        &[("PRESQUE_FSYNC", "always")],
    );
    let said = server.startup_lines.join("\n");
    assert!(said.contains("fsync=always"), "{said}");
    server.stop();
    let server = start_binary(
        dir.path(),
        &["--bind", "127.0.0.1:0", "--data-dir", "d", "--fsync", "no"],
        &[("PRESQUE_FSYNC", "always")],
    );
    assert!(server.startup_lines.join("\n").contains("fsync=no"));
    server.stop();
    let (code, stderr) = run_binary_expect_exit(dir.path(), &["--fsync", "sometimes"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("sometimes"), "{stderr}");
}
