//! The Python client (`clients/python`) tested against the real binary: this starts
//! two servers (one without auth, one with a token per role), then runs the client's
//! unittest suite against them with `python3`, so `cargo test` covers it too. It
//! fails, with everything Python printed, if the suite fails or `python3` is missing.

// A failed unwrap is a failed test: the server-only rules in Cargo.toml [lints] do not
// apply.
#![allow(clippy::unwrap_used)]

#[path = "harness/mod.rs"]
mod harness;

use std::path::Path;
use std::process::Command;

use harness::start_binary;

const TOKENS: [(&str, &str); 3] = [
    ("producer", "py-producer-token-0123456789"),
    ("consumer", "py-consumer-token-0123456789"),
    ("admin", "py-admin-token-0123456789abc"),
];

#[test]
fn the_python_client_suite_passes_against_the_real_server() {
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = start_binary(
        plain_dir.path(),
        &["--bind", "127.0.0.1:0", "--data-dir", "data"],
        &[],
    );
    let tokens = TOKENS
        .iter()
        .map(|(role, token)| format!("{role}:{token}"))
        .collect::<Vec<_>>()
        .join(",");
    let auth_dir = tempfile::tempdir().unwrap();
    let auth = start_binary(
        auth_dir.path(),
        &["--bind", "127.0.0.1:0", "--data-dir", "data"],
        &[("PRESQUE_TOKENS", &tokens)],
    );

    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .args(["-m", "unittest", "discover", "-s", "tests", "-v"])
        .current_dir(&client)
        .env("PYTHONPATH", client.join("src"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PRESQUE_URL", &plain.address)
        .env("PRESQUE_AUTH_URL", &auth.address)
        .env("PRESQUE_TEST_TOKENS", &tokens)
        .env_remove("PRESQUE_TOKEN")
        .output()
        .unwrap_or_else(|e| {
            panic!("could not run {python} for the Python client's tests ({e}): install Python 3.9 or later")
        });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the Python client's tests failed ({}):\n{said}",
        output.status
    );
    // unittest exits 0 with "NO TESTS RAN" when discovery finds nothing (5 from 3.12).
    assert!(said.contains("\nOK"), "no Python test ran:\n{said}");
    plain.stop();
    auth.stop();
}
