//! The real `presque` binary as a child process: started on a port the system picks
//! (`--bind 127.0.0.1:0`), its address read from its "listening" log line, stopped
//! with SIGTERM or SIGKILL, and killed on drop so a panic leaves no server behind.
//!
//! One copy for the integration tests (`tests/api/main.rs`) and the benches
//! (`bench/*.rs`), each of which includes this file as a module:
//! `#[path = "../tests/harness/mod.rs"] mod harness;`.

// Each test or bench target uses its own subset of what is here: what one leaves
// unused would otherwise warn in that target.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The binary cargo built alongside the test or bench.
pub const BIN: &str = env!("CARGO_BIN_EXE_presque");

/// How long a start may take to print "listening" or exit (a bench's recovery of a
/// million jobs included).
const START_LIMIT: Duration = Duration::from_secs(120);

/// How long a stopped server may take to exit.
const EXIT_LIMIT: Duration = Duration::from_secs(60);

/// Arguments for a server run in a directory that holds its config file,
/// `presque.toml`, and its data directory, `data`; on a port the system picks.
pub const NODE_ARGS: [&str; 6] = [
    "--config",
    "presque.toml",
    "--bind",
    "127.0.0.1:0",
    "--data-dir",
    "data",
];

/// The real binary as a child process.
pub struct ServerProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// What the server printed up to its "listening" line (recovery reports).
    pub startup_lines: Vec<String>,
    /// From just before the spawn to the "listening" line.
    pub listening_after: Duration,
    /// Keeps the stderr reader thread alive: were it to stop reading, the server
    /// would block or die writing its logs.
    stderr_lines: Receiver<String>,
}

/// `program` run in `cwd` with `args`: none of the caller's `PRESQUE_*` settings,
/// info logs on a piped stderr, which [`try_start_command`] reads.
pub fn command_for(program: impl AsRef<OsStr>, cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("PRESQUE_BIND")
        .env_remove("PRESQUE_DATA_DIR")
        .env_remove("PRESQUE_FSYNC")
        .env_remove("PRESQUE_TOKENS")
        .env_remove("PRESQUE_LOG_FORMAT")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Starts the built binary with `args` in `cwd`, waits for its "listening" line.
pub fn start_binary(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> ServerProcess {
    start_binary_with(cwd, args, envs, |_| {})
}

/// [`start_binary`], with a last say over the command (limits, signals).
pub fn start_binary_with(
    cwd: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    configure: impl FnOnce(&mut Command),
) -> ServerProcess {
    expect_started(try_start_binary(cwd, args, envs, configure))
}

/// Starts the built binary and waits for its "listening" line: the server, or, if it
/// exits first, its exit code and everything it printed.
pub fn try_start_binary(
    cwd: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    configure: impl FnOnce(&mut Command),
) -> Result<ServerProcess, (Option<i32>, String)> {
    let mut command = command_for(BIN, cwd, args);
    command.envs(envs.iter().copied());
    configure(&mut command);
    try_start_command(command)
}

/// [`try_start_command`], panicking with what the server said if it exits first.
pub fn start_command(command: Command) -> ServerProcess {
    expect_started(try_start_command(command))
}

fn expect_started(started: Result<ServerProcess, (Option<i32>, String)>) -> ServerProcess {
    started.unwrap_or_else(|(code, said)| {
        panic!("presque did not report its address (exit code {code:?}); it said:\n{said}")
    })
}

/// Spawns `command` (made by [`command_for`]) and waits for its "listening" line: the
/// server, or, if it exits first, its exit code and everything it printed.
pub fn try_start_command(mut command: Command) -> Result<ServerProcess, (Option<i32>, String)> {
    let spawned = Instant::now();
    let mut child = command.spawn().expect("spawn presque");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = spawned + START_LIMIT;
    let mut startup_lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let address = line.find("listening on http://").map(|at| {
                    let rest = &line[at + "listening on ".len()..];
                    // Up to a space, or the quote ending a JSON log line's message.
                    let end = rest.find(|c: char| c.is_whitespace() || c == '"');
                    rest[..end.unwrap_or(rest.len())].to_owned()
                });
                startup_lines.push(line);
                if let Some(address) = address {
                    return Ok(ServerProcess {
                        child,
                        address,
                        startup_lines,
                        listening_after: spawned.elapsed(),
                        stderr_lines: rx,
                    });
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                let code = wait_for_exit(&mut child, EXIT_LIMIT);
                return Err((code, startup_lines.join("\n")));
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "presque neither started nor exited within {START_LIMIT:?}; it said:\n{}",
                    startup_lines.join("\n")
                );
            }
        }
    }
}

/// Runs the binary expecting it to fail at start; returns (exit code, stderr).
pub fn run_binary_expect_exit(cwd: &Path, args: &[&str]) -> (Option<i32>, String) {
    match try_start_binary(cwd, args, &[], |_| {}) {
        Ok(server) => panic!("presque started on {} instead of exiting", server.address),
        Err(exited) => exited,
    }
}

/// Waits for a child to exit; kills it and panics past `limit`.
fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("server did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A test or bench that fails midway must not leave its server running.
impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl ServerProcess {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Sends signal `name` (`TERM`, `STOP`, ...) with the system's `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the server to exit (panics past a minute); its exit code.
    pub fn wait_for_exit(&mut self) -> Option<i32> {
        wait_for_exit(&mut self.child, EXIT_LIMIT)
    }

    /// SIGTERM, then waits for the exit; its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.signal("TERM");
        self.wait_for_exit()
    }

    /// SIGTERM, then waits for a clean exit; returns what it printed after starting.
    pub fn stop(mut self) -> Vec<String> {
        let code = self.terminate();
        let lines = self.rest_of_stderr();
        assert_eq!(code, Some(0), "graceful stop failed:\n{}", lines.join("\n"));
        lines
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// What the server printed since starting (or since the last call), up to its
    /// exit or a 5 s silence.
    pub fn rest_of_stderr(&self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.stderr_lines.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        lines
    }
}

/// A client that keeps at most one idle connection: its requests share one
/// keep-alive connection when made one after another.
pub fn one_connection() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .expect("client")
}
