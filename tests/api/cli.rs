//! The client subcommands and the `work` runner, run as the real binary against a real
//! server: output, exit codes, and what the server holds afterwards.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio::process::{Child, Command};

use crate::harness::BIN;
use crate::helpers::{spawn_app, spawn_app_with, TestApp};

/// `presque SUBCOMMAND --url ADDRESS ARGS...`, with none of the caller's PRESQUE_*
/// settings.
fn cli(app: &TestApp, subcommand: &str, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg(subcommand)
        .arg("--url")
        .arg(&app.address)
        .args(args)
        .env_remove("PRESQUE_URL")
        .env_remove("PRESQUE_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn run(app: &TestApp, subcommand: &str, args: &[&str]) -> Output {
    cli(app, subcommand, args).output().await.unwrap()
}

async fn run_with_stdin(app: &TestApp, subcommand: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = cli(app, subcommand, args)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.as_bytes()).await.unwrap();
    drop(pipe);
    child.wait_with_output().await.unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success and answers stdout.
fn ok(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

async fn overview(app: &TestApp, queue: &str) -> Value {
    let (_, body) = app.get_json(&format!("/overview?name={queue}")).await;
    body["queues"][0].clone()
}

/// Polls until `check` holds of the queue's overview (panics after 20 s).
async fn until(app: &TestApp, queue: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let now = overview(app, queue).await;
        if check(&now) {
            return now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{queue}: never {what}; last: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn push_and_pop_round_trip_one_job_and_a_stdin_bulk() {
    let app = spawn_app().await;
    let first = ok(&run(&app, "push", &["emails", r#"{"to":"a@b.c"}"#]).await);
    let first: u64 = first.trim().parse().unwrap();
    // Three jobs (and a blank line) in batches of two: ids in order, one per line.
    let bulk = run_with_stdin(
        &app,
        "push",
        &["emails", "-", "--batch", "2"],
        "{\"n\":1}\n\n[2, 3]\n\"three\"\n",
    )
    .await;
    let ids: Vec<u64> = ok(&bulk).lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(ids, vec![first + 1, first + 2, first + 3]);

    // Each job comes back byte for byte, in order.
    for expected in [r#"{"to":"a@b.c"}"#, r#"{"n":1}"#, "[2, 3]", "\"three\""] {
        assert_eq!(
            ok(&run(&app, "pop", &["emails"]).await),
            format!("{expected}\n")
        );
    }
    // No job: exit code 3, nothing printed.
    let empty = run(&app, "pop", &["emails", "--wait", "0.2"]).await;
    assert_eq!(empty.status.code(), Some(3), "{}", stderr(&empty));
    assert_eq!(stdout(&empty), "");

    // A line that is not JSON: exit 1 and a message naming it; nothing of its batch sent.
    let bad = run_with_stdin(&app, "push", &["emails", "-"], "{}\nnope\n").await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("line 2 is not JSON"),
        "{}",
        stderr(&bad)
    );
    assert_eq!(overview(&app, "emails").await["ready"], 0);
}

#[actix_web::test]
async fn leased_pop_prints_the_token_for_ack_and_fail() {
    let app = spawn_app().await;
    ok(&run(&app, "push", &["emails", r#"{"to":"x"}"#]).await);
    let popped = ok(&run(&app, "pop", &["emails", "--lease", "30", "--json"]).await);
    let popped: Value = serde_json::from_str(&popped).unwrap();
    assert_eq!(popped["job"], serde_json::json!({"to": "x"}));
    let id = popped["id"].as_u64().unwrap().to_string();
    let token = popped["lease"].as_str().unwrap().to_owned();

    let failed = run(
        &app,
        "fail",
        &["emails", &id, "--lease", &token, "--reason", "smtp timeout"],
    )
    .await;
    assert_eq!(ok(&failed), format!("job {id} is ready (attempts: 1)\n"));
    // The old token is spent: exit 1 with the server's message.
    let again = run(&app, "ack", &["emails", &id, "--lease", &token]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("lease is no longer held"),
        "{}",
        stderr(&again)
    );

    // Without --json the token goes to stderr, the job alone to stdout.
    let popped = run(&app, "pop", &["emails", "--lease", "30"]).await;
    assert_eq!(ok(&popped), "{\"to\":\"x\"}\n");
    let said = stderr(&popped);
    let token = said.trim().split("lease=").nth(1).unwrap().to_owned();
    assert!(said.starts_with(&format!("id={id} ")), "{said}");
    ok(&run(&app, "ack", &["emails", &id, "--lease", &token]).await);
    let now = overview(&app, "emails").await;
    assert_eq!(
        (now["ready"].as_u64(), now["leased"].as_u64()),
        (Some(0), Some(0))
    );
}

#[actix_web::test]
async fn stats_as_a_table_and_as_json() {
    let app = spawn_app().await;
    ok(&run(&app, "push", &["b-queue", "1"]).await);
    ok(&run(&app, "push", &["a-queue", "2"]).await);
    ok(&run(&app, "pop", &["a-queue"]).await);

    let one: Value =
        serde_json::from_str(&ok(&run(&app, "stats", &["a-queue", "--json"]).await)).unwrap();
    assert_eq!(one["name"], "a-queue");
    assert_eq!(
        (one["ready"].as_u64(), one["processed"].as_u64()),
        (Some(0), Some(1))
    );
    let all: Value = serde_json::from_str(&ok(&run(&app, "stats", &["--json"]).await)).unwrap();
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a-queue", "b-queue"]);
    // A queue that does not exist: zeros.
    let none: Value =
        serde_json::from_str(&ok(&run(&app, "stats", &["nothing", "--json"]).await)).unwrap();
    assert_eq!(none["ready"], 0);

    let table = ok(&run(&app, "stats", &[]).await);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("QUEUE"), "{table}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row,
        ["a-queue", "open", "0", "0", "0", "0", "0", "1", "0"],
        "{table}"
    );
    let watched = ok(&run(&app, "watch", &["--once"]).await);
    assert_eq!(watched, table);
}

#[actix_web::test]
async fn dead_letters_listed_retried_and_purged() {
    let app = spawn_app_with(|s| s.server.default_max_attempts = 1).await;
    for job in ["{\"n\":1}", "{\"n\":2}"] {
        ok(&run(&app, "push", &["emails", job]).await);
        let popped: Value = serde_json::from_str(&ok(&run(
            &app,
            "pop",
            &["emails", "--lease", "30", "--json"],
        )
        .await))
        .unwrap();
        let id = popped["id"].to_string();
        let token = popped["lease"].as_str().unwrap();
        let args = ["emails", &id, "--lease", token, "--reason", "boom"];
        let failed = run(&app, "fail", &args).await;
        assert!(ok(&failed).contains("is dead"));
    }
    let listed: Value =
        serde_json::from_str(&ok(&run(&app, "dead", &["emails", "--json"]).await)).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["job"], serde_json::json!({"n": 1}));
    assert_eq!(listed[0]["errors"][0]["error"], "boom");
    let table = ok(&run(&app, "dead", &["emails"]).await);
    assert!(table.lines().nth(1).unwrap().contains("boom"), "{table}");

    let first = listed[0]["id"].to_string();
    assert_eq!(
        ok(&run(&app, "dead", &["emails", "retry", "--id", &first]).await),
        "retried 1\n"
    );
    assert_eq!(
        ok(&run(&app, "dead", &["emails", "purge"]).await),
        "purged 1\n"
    );
    let now = overview(&app, "emails").await;
    assert_eq!(
        (now["ready"].as_u64(), now["dead"].as_u64()),
        (Some(1), Some(0))
    );
}

#[actix_web::test]
async fn control_closes_and_opens_a_queue() {
    let app = spawn_app().await;
    ok(&run(&app, "push", &["emails", "{}"]).await);
    assert_eq!(
        ok(&run(&app, "control", &["emails", "close"]).await),
        "emails: closed\n"
    );
    let refused = run(&app, "pop", &["emails"]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("queue is closed"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        ok(&run(&app, "control", &["emails", "status"]).await),
        "emails: closed\n"
    );
    assert_eq!(
        ok(&run(&app, "control", &["emails", "open"]).await),
        "emails: open\n"
    );
    assert_eq!(ok(&run(&app, "pop", &["emails"]).await), "{}\n");
}

#[actix_web::test]
async fn usage_errors_exit_2_and_unreachable_servers_exit_1() {
    let app = spawn_app().await;
    assert_eq!(run(&app, "push", &[]).await.status.code(), Some(2));
    assert_eq!(
        run(&app, "control", &["q", "ajar"]).await.status.code(),
        Some(2)
    );
    assert_eq!(run(&app, "work", &["q"]).await.status.code(), Some(2));
    let down = Command::new(BIN)
        .args(["stats", "--url", "http://127.0.0.1:9"])
        .output()
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(
        stderr(&down).contains("cannot reach the server"),
        "{}",
        stderr(&down)
    );
    // The generated completions know the new subcommands.
    let completions = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .await
        .unwrap();
    let script = stdout(&completions);
    for sub in ["serve", "push", "work", "watch"] {
        assert!(script.contains(sub), "completions lack {sub}");
    }
}

/// `presque work` on `queue`, logs piped.
fn worker(app: &TestApp, queue: &str, flags: &[&str], command: &[&str]) -> Child {
    let mut args = vec![queue];
    args.extend_from_slice(flags);
    args.push("--");
    args.extend_from_slice(command);
    cli(app, "work", &args).spawn().unwrap()
}

async fn stop(child: Child) -> (Option<i32>, String) {
    let pid = child.id().unwrap().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the worker exits after SIGTERM")
        .unwrap();
    (output.status.code(), stderr(&output))
}

async fn registered(app: &TestApp, worker_id: &str) -> bool {
    app.get(&format!("/w/?worker_id={worker_id}"))
        .await
        .status()
        == 200
}

#[actix_web::test]
async fn work_runs_a_command_per_job_and_acks_on_success() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for n in 1..=3 {
        ok(&run(&app, "push", &["jobs", &format!("{{\"n\":{n}}}")]).await);
    }
    let script = format!(
        // One write per job: two commands run at once and append to the same file.
        "job=$(cat); echo \"$job $PRESQUE_QUEUE $PRESQUE_JOB_ID $PRESQUE_ATTEMPT\" >> {out}",
        out = out.display()
    );
    let child = worker(
        &app,
        "jobs",
        &["--worker-id", "w-ok", "--wait", "1", "--concurrency", "2"],
        &["sh", "-c", &script],
    );
    let done = until(&app, "jobs", "drained", |q| {
        q["processed"] == 3 && q["ready"] == 0 && q["leased"] == 0
    })
    .await;
    assert_eq!(done["failed"], 0);
    assert!(registered(&app, "w-ok").await);
    let (code, said) = stop(child).await;
    assert_eq!(code, Some(0), "{said}");
    assert!(!registered(&app, "w-ok").await, "still registered:\n{said}");

    let mut lines: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    // Each job on stdin, with its queue, id and attempt (1: the first delivery).
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (n, line) in (1..=3).zip(&lines) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[0], format!("{{\"n\":{n}}}"));
        assert_eq!((fields[1], fields[3]), ("jobs", "1"));
        assert!(fields[2].parse::<u64>().is_ok(), "{line}");
    }
}

#[actix_web::test]
async fn work_reports_a_failing_command_with_its_stderr_tail() {
    let app = spawn_app_with(|s| s.server.default_max_attempts = 2).await;
    ok(&run(&app, "push", &["jobs", "{}"]).await);
    let child = worker(
        &app,
        "jobs",
        &["--worker-id", "w-fail", "--wait", "1"],
        &[
            "sh",
            "-c",
            "echo noise >&2; echo \"smtp down (attempt $PRESQUE_ATTEMPT)\" >&2; exit 3",
        ],
    );
    until(&app, "jobs", "dead", |q| q["dead"] == 1).await;
    let (code, said) = stop(child).await;
    assert_eq!(code, Some(0), "{said}");
    let (_, dead) = app.get_json("/dead/jobs").await;
    let errors: Vec<&str> = dead["jobs"][0]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["error"].as_str().unwrap())
        .collect();
    assert_eq!(
        errors,
        [
            "exit code 3: noise\nsmtp down (attempt 1)",
            "exit code 3: noise\nsmtp down (attempt 2)"
        ]
    );
    assert_eq!(dead["jobs"][0]["errors"][0]["worker_id"], "w-fail");
}

#[actix_web::test]
async fn work_extends_the_lease_of_a_command_that_outlives_it() {
    let app = spawn_app().await;
    ok(&run(&app, "push", &["slow", "{}"]).await);
    // A 2 s lease and a 5 s command: without extensions the job would come back
    // after 2 s and, with a free slot, be run again.
    let child = worker(
        &app,
        "slow",
        &["--lease", "2", "--wait", "1", "--concurrency", "2"],
        &["sleep", "5"],
    );
    let done = until(&app, "slow", "acked", |q| {
        q["processed"].as_u64() >= Some(1) && q["ready"] == 0 && q["leased"] == 0
    })
    .await;
    let (code, said) = stop(child).await;
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(done["processed"], 1, "delivered again: {done}\n{said}");
    assert_eq!(done["failed"], 0);
    assert_eq!(said.matches("running job=").count(), 1, "{said}");
}

#[actix_web::test]
async fn sigterm_mid_job_lets_the_command_finish_then_unregisters() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("finished");
    ok(&run(&app, "push", &["jobs", "{}"]).await);
    let script = format!("sleep 1; touch {}", marker.display());
    let child = worker(
        &app,
        "jobs",
        &["--worker-id", "w-term", "--wait", "1"],
        &["sh", "-c", &script],
    );
    until(&app, "jobs", "leased", |q| q["leased"] == 1).await;
    let (code, said) = stop(child).await;
    assert_eq!(code, Some(0), "{said}");
    assert!(marker.exists(), "the command did not finish:\n{said}");
    let now = overview(&app, "jobs").await;
    assert_eq!(
        (
            now["ready"].as_u64(),
            now["leased"].as_u64(),
            now["failed"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{now}"
    );
    assert!(!registered(&app, "w-term").await);
}

#[actix_web::test]
async fn sigterm_past_the_grace_period_kills_the_command_and_fails_its_job() {
    let app = spawn_app().await;
    ok(&run(&app, "push", &["jobs", "{}"]).await);
    let child = worker(
        &app,
        "jobs",
        &["--worker-id", "w-kill", "--wait", "1", "--grace", "0.5"],
        &["sleep", "60"],
    );
    until(&app, "jobs", "leased", |q| q["leased"] == 1).await;
    let started = Instant::now();
    let (code, said) = stop(child).await;
    assert_eq!(code, Some(0), "{said}");
    assert!(started.elapsed() < Duration::from_secs(20), "{said}");
    let now = overview(&app, "jobs").await;
    assert_eq!(
        (now["ready"].as_u64(), now["failed"].as_u64()),
        (Some(1), Some(1))
    );
    let (_, jobs) = app.get_json("/jobs/jobs?state=ready").await;
    assert_eq!(
        jobs["jobs"][0]["errors"][0]["error"],
        "killed: the worker stopped"
    );
    assert!(!registered(&app, "w-kill").await);
}

#[actix_web::test]
async fn watch_redraws_until_interrupted() {
    let app = spawn_app().await;
    ok(&run(&app, "push", &["emails", "{}"]).await);
    let child = cli(&app, "watch", &["--interval", "0.2"]).spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = child.id().unwrap().to_string();
    let status = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().await.unwrap();
    let shown = ok(&output);
    // Several views, each clearing the screen; rates once there are two views.
    assert!(shown.matches("\x1b[H\x1b[2J").count() >= 2, "{shown:?}");
    assert!(
        shown.contains("JOBS/S") && shown.contains("emails"),
        "{shown:?}"
    );
    // The cursor is shown again.
    assert!(shown.ends_with("\x1b[?25h"), "{shown:?}");
}

#[actix_web::test]
async fn the_token_comes_from_the_flag_or_the_environment() {
    const ADMIN: &str = "admin-token-0123456789";
    let app = spawn_app_with(|s| {
        s.auth.tokens =
            vec![toml::from_str(&format!("role = \"admin\"\ntoken = \"{ADMIN}\"")).unwrap()];
    })
    .await;
    let refused = run(&app, "stats", &[]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("401"), "{}", stderr(&refused));
    ok(&run(&app, "push", &["--token", ADMIN, "emails", "{}"]).await);
    let with_env = cli(&app, "stats", &["emails", "--json"])
        .env("PRESQUE_TOKEN", ADMIN)
        .output()
        .await
        .unwrap();
    let stats: Value = serde_json::from_str(&ok(&with_env)).unwrap();
    assert_eq!(stats["ready"], 1);
}

#[test]
fn serve_runs_the_server_with_its_flags_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::harness::start_binary(
        dir.path(),
        &["serve", "--bind", "127.0.0.1:0", "--data-dir", "data"],
        &[],
    );
    assert!(server.address.starts_with("http://127.0.0.1:"));
    server.stop();
    assert!(dir.path().join("data").is_dir());
}

#[actix_web::test]
async fn a_command_s_background_child_does_not_hold_its_result_back() {
    let app = spawn_app().await;
    ok(&run(&app, "push", &["bg", "{}"]).await);
    // Exits at once, leaving a child that holds stderr open for 8 s: with a 2 s
    // lease, waiting for that stderr to close would lose the lease and run it again.
    let child = worker(
        &app,
        "bg",
        &["--lease", "2", "--wait", "1"],
        &["sh", "-c", "(sleep 8 &); exit 0"],
    );
    let done = until(&app, "bg", "acked", |q| {
        q["processed"].as_u64() >= Some(1) && q["ready"] == 0 && q["leased"] == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (code, said) = stop(child).await;
    assert_eq!(code, Some(0), "{said}");
    let now = overview(&app, "bg").await;
    assert_eq!(done["processed"], 1, "{done}\n{said}");
    assert_eq!(
        (now["processed"].as_u64(), now["ready"].as_u64()),
        (Some(1), Some(0)),
        "run again: {now}\n{said}"
    );
    assert_eq!(said.matches("running job=").count(), 1, "{said}");
}

#[actix_web::test]
async fn past_the_grace_period_what_the_command_started_is_killed_too() {
    let app = spawn_app().await;
    ok(&run(&app, "push", &["tree", "{}"]).await);
    let child = worker(
        &app,
        "tree",
        &["--wait", "1", "--grace", "0.5"],
        &["sh", "-c", "sleep 30; echo done >&2"],
    );
    until(&app, "tree", "leased", |q| q["leased"] == 1).await;
    let started = Instant::now();
    let (code, said) = stop(child).await;
    assert_eq!(code, Some(0), "{said}");
    // The `sleep` holds the command's stderr: the worker waited for it to end.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the worker waited {:?} for the command's children:\n{said}",
        started.elapsed()
    );
    assert_eq!(overview(&app, "tree").await["failed"], 1);
}

#[actix_web::test]
async fn an_interrupt_to_the_worker_s_process_group_lets_commands_finish() {
    let app = spawn_app().await;
    for n in 0..2 {
        ok(&run(&app, "push", &["grp", &format!("{{\"n\":{n}}}")]).await);
    }
    let mut command = cli(
        &app,
        "work",
        &[
            "grp",
            "--wait",
            "1",
            "--concurrency",
            "2",
            "--",
            "sleep",
            "2",
        ],
    );
    // Its own group, as a shell gives a job: Ctrl-C signals the whole group.
    command.process_group(0);
    let child = command.spawn().unwrap();
    let pgid = child.id().unwrap();
    until(&app, "grp", "leased", |q| q["leased"] == 2).await;
    let status = Command::new("kill")
        .args(["-INT", "--", &format!("-{pgid}")])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the worker exits after SIGINT")
        .unwrap();
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    let now = overview(&app, "grp").await;
    assert_eq!(
        (
            now["processed"].as_u64(),
            now["failed"].as_u64(),
            now["ready"].as_u64()
        ),
        (Some(2), Some(0), Some(0)),
        "the commands were interrupted too: {now}\n{said}"
    );
}

#[actix_web::test]
async fn a_bulk_push_stopped_part_way_says_which_lines_went_in() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 1000).await;
    // Batches of 2: lines 1-2 go in, the batch of lines 3-4 is too big for the server.
    let big = format!("\"{}\"", "x".repeat(2000));
    let input = format!("1\n2\n3\n{big}\n5\n");
    let partial = run_with_stdin(&app, "push", &["bulk", "-", "--batch", "2"], &input).await;
    assert_eq!(partial.status.code(), Some(1));
    let said = stderr(&partial);
    assert!(
        said.contains("lines 3 to 4 were not pushed (the 2 jobs of the lines before were)"),
        "{said}"
    );
    assert_eq!(stdout(&partial).lines().count(), 2);
    assert_eq!(overview(&app, "bulk").await["ready"], 2);
}
