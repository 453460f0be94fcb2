//! A closed-loop load generator for `bench/run`: drives presque (HTTP/1.1 keep-alive) and
//! beanstalkd (its text protocol) with the same client, so the two servers are compared
//! through one yardstick rather than through two tools with different overheads.
//!
//! Each of `--connections` persistent connections runs one operation after another
//! (closed loop: the next starts when the last answer is in) until `--duration` is up,
//! on one thread (like `wrk -t1`: the client stays on its own core and costs little).
//! It prints one line for `bench/run.py` to parse:
//!
//! `RESULT ops=.. jobs=.. errors=.. duration_us=.. p50_us=.. p99_us=..`
//!
//! `ops` counts timed operations (one request; one whole cycle for `cycle`; one batch of
//! `--pipeline` requests), `jobs` the jobs they moved. An answer that is not the expected
//! one counts an error (and the first few are printed); a broken connection exits 1.
//!
//! Operations (`--op`), HTTP against presque / beanstalk:
//! - `enqueue`: `POST /q/NAME` (201) / `put` (INSERTED);
//! - `dequeue`: `GET /q/NAME` (200; 404 means the queue ran dry) / `reserve-with-timeout 0`
//!   then `delete`: a plain GET removes the job, so the at-most-once equivalent is both;
//! - `lease`: `GET /q/NAME?lease=300` / `reserve-with-timeout 0` alone; the job is left
//!   leased (reserved);
//! - `cycle`: `POST`, `GET ?lease=300`, `DELETE /q/NAME/ID` with the lease token / `put`,
//!   `reserve-with-timeout 0`, `delete`: one job through its whole life;
//! - `fill`: pipelined enqueues until `--jobs` are in (to prefill before a dequeue run).
//!
//! `--pipeline K` writes K requests in one write, then reads the K answers (single-request
//! operations only): the test that pipelined requests are not slower than sequential ones.

// A command-line tool, not the server: printing and exiting are its interface.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Clone)]
#[command(about = "Closed-loop load generator for presque (HTTP) and beanstalkd")]
struct Args {
    #[arg(long, value_enum, default_value = "http")]
    proto: Proto,
    #[arg(long, value_enum, default_value = "enqueue")]
    op: Op,
    /// HOST:PORT of the server.
    #[arg(long, default_value = "127.0.0.1:5000")]
    addr: String,
    /// The queue (HTTP) or tube (beanstalk).
    #[arg(long, default_value = "bench")]
    queue: String,
    #[arg(short, long, default_value_t = 32)]
    connections: usize,
    /// Seconds (fractions allowed; a trailing `s` is accepted, as wrk writes it).
    #[arg(short, long, default_value = "5")]
    duration: String,
    /// Requests written at once per connection (enqueue, HTTP dequeue, lease; fill).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Jobs to add in all (`fill` only).
    #[arg(long, default_value_t = 100_000)]
    jobs: u64,
    /// Size of each job's body in bytes (a JSON object padded to this size).
    #[arg(long, default_value_t = 100)]
    size: usize,
}

#[derive(ValueEnum, Clone, Copy, PartialEq)]
enum Proto {
    Http,
    Beanstalk,
}

#[derive(ValueEnum, Clone, Copy, PartialEq)]
enum Op {
    Enqueue,
    Dequeue,
    Lease,
    Cycle,
    Fill,
}

/// What one connection did.
#[derive(Default)]
struct Tally {
    ops: u64,
    jobs: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u32>,
}

/// An answer that is not the expected one (the connection itself is fine).
type Outcome = Result<(), String>;

/// One persistent connection with its read buffer: answers are parsed straight from
/// it, so several pipelined answers arriving in one read are all used.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    args: Args,
}

fn io_err(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    async fn open(args: &Args) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(&args.addr).await?;
        // Requests go out whole in one write each; no reason to let Nagle hold any.
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            args: args.clone(),
        };
        if args.proto == Proto::Beanstalk {
            // Puts go to the tube, reserves take only from it.
            let q = &args.queue;
            for (cmd, want) in [
                (format!("use {q}\r\n"), "USING"),
                (format!("watch {q}\r\n"), "WATCHING"),
                ("ignore default\r\n".to_string(), "WATCHING"),
            ] {
                conn.stream.write_all(cmd.as_bytes()).await?;
                let line = conn.line().await?;
                if !line.starts_with(want) {
                    return Err(io_err(format!("`{}` answered `{line}`", cmd.trim_end())));
                }
            }
        }
        Ok(conn)
    }

    /// Reads more bytes; the server closing the connection is a hard error.
    async fn more(&mut self) -> std::io::Result<()> {
        // Appends to the buffer's spare capacity (no zeroing of it first).
        self.buf.reserve(16 * 1024);
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(io_err("the server closed the connection".into()));
        }
        Ok(())
    }

    /// One CRLF-terminated line (beanstalk), consumed from the buffer.
    async fn line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            self.more().await?;
        }
    }

    /// Drops exactly `n` bytes (a body we do not look at).
    async fn skip(&mut self, n: usize) -> std::io::Result<()> {
        while self.buf.len() < n {
            self.more().await?;
        }
        self.buf.drain(..n);
        Ok(())
    }

    /// One HTTP/1.1 response: its status and the two lease headers, body consumed.
    async fn response(&mut self) -> std::io::Result<(u16, Option<String>, Option<String>)> {
        let head_end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end;
            }
            self.more().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io_err(format!("not an HTTP status line: {status_line:?}")))?;
        let (mut length, mut jobid, mut lease) = (None, None, None);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "transfer-encoding" => {
                    return Err(io_err(format!(
                        "Transfer-Encoding: {value} is not supported"
                    )));
                }
                "x-presque-jobid" => jobid = Some(value.to_string()),
                "x-presque-lease" => lease = Some(value.to_string()),
                _ => {}
            }
        }
        let length = match (length, status) {
            (Some(n), _) => n,
            (None, 204 | 304 | 100..=199) => 0,
            (None, _) => return Err(io_err(format!("{status} answer without Content-Length"))),
        };
        self.skip(length).await?;
        Ok((status, jobid, lease))
    }

    async fn expect_status(&mut self, want: u16, what: &str) -> std::io::Result<Outcome> {
        let (status, _, _) = self.response().await?;
        Ok(if status == want {
            Ok(())
        } else {
            Err(format!("{what}: {status}, not {want}"))
        })
    }

    /// `RESERVED id bytes` + body: the job's id; anything else (TIMED_OUT: ran dry).
    async fn reserved(&mut self) -> std::io::Result<Result<String, String>> {
        let line = self.line().await?;
        let mut words = line.split(' ');
        if words.next() != Some("RESERVED") {
            return Ok(Err(format!("reserve-with-timeout 0: {line}")));
        }
        let id = words.next().unwrap_or("").to_string();
        let bytes: usize = words.next().and_then(|b| b.parse().ok()).unwrap_or(0);
        self.skip(bytes + 2).await?;
        Ok(Ok(id))
    }

    async fn expect_line(&mut self, want: &str, what: &str) -> std::io::Result<Outcome> {
        let line = self.line().await?;
        Ok(if line.starts_with(want) {
            Ok(())
        } else {
            Err(format!("{what}: {line}"))
        })
    }
}

/// The bytes of the single-request operations (a whole pipelined batch of them).
fn request(args: &Args, body: &[u8]) -> Vec<u8> {
    let (q, host) = (&args.queue, &args.addr);
    let one: Vec<u8> = match (args.proto, args.op) {
        (Proto::Http, Op::Enqueue | Op::Fill) => {
            let mut r = format!(
                "POST /q/{q} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body);
            r
        }
        (Proto::Http, Op::Dequeue) => format!("GET /q/{q} HTTP/1.1\r\nHost: {host}\r\n\r\n").into(),
        (Proto::Http, Op::Lease) => {
            format!("GET /q/{q}?lease=300 HTTP/1.1\r\nHost: {host}\r\n\r\n").into()
        }
        (Proto::Beanstalk, Op::Enqueue | Op::Fill) => {
            // Priority 0, no delay, 300 s to run (as a 300 s lease).
            let mut r = format!("put 0 0 300 {}\r\n", body.len()).into_bytes();
            r.extend_from_slice(body);
            r.extend_from_slice(b"\r\n");
            r
        }
        (Proto::Beanstalk, Op::Lease) => b"reserve-with-timeout 0\r\n".to_vec(),
        _ => Vec::new(),
    };
    one.repeat(args.pipeline)
}

/// Reads the answer to one single-request operation.
async fn answer(conn: &mut Conn) -> std::io::Result<Outcome> {
    match (conn.args.proto, conn.args.op) {
        (Proto::Http, Op::Enqueue | Op::Fill) => conn.expect_status(201, "POST").await,
        (Proto::Http, Op::Dequeue) => {
            conn.expect_status(200, "GET (404: the queue ran dry)")
                .await
        }
        (Proto::Http, Op::Lease) => conn.expect_status(200, "GET ?lease").await,
        (Proto::Beanstalk, Op::Enqueue | Op::Fill) => conn.expect_line("INSERTED", "put").await,
        (Proto::Beanstalk, Op::Lease) => Ok(conn.reserved().await?.map(|_| ())),
        _ => unreachable!("not a single-request operation"),
    }
}

/// The multi-request operations: each step waits for the answer it needs.
async fn multi(conn: &mut Conn, put: &[u8]) -> std::io::Result<Outcome> {
    let q = conn.args.queue.clone();
    let host = conn.args.addr.clone();
    match (conn.args.proto, conn.args.op) {
        (Proto::Beanstalk, op) => {
            if op == Op::Cycle {
                conn.stream.write_all(put).await?;
                if let Err(e) = conn.expect_line("INSERTED", "put").await? {
                    return Ok(Err(e));
                }
            }
            conn.stream.write_all(b"reserve-with-timeout 0\r\n").await?;
            let id = match conn.reserved().await? {
                Ok(id) => id,
                Err(e) => return Ok(Err(e)),
            };
            conn.stream
                .write_all(format!("delete {id}\r\n").as_bytes())
                .await?;
            conn.expect_line("DELETED", "delete").await
        }
        (Proto::Http, _) => {
            conn.stream.write_all(put).await?;
            if let Err(e) = conn.expect_status(201, "POST").await? {
                return Ok(Err(e));
            }
            let get = format!("GET /q/{q}?lease=300 HTTP/1.1\r\nHost: {host}\r\n\r\n");
            conn.stream.write_all(get.as_bytes()).await?;
            let (status, id, token) = conn.response().await?;
            let (200, Some(id), Some(token)) = (status, id, token) else {
                return Ok(Err(format!("GET ?lease: {status} or no id/token headers")));
            };
            let ack = format!(
                "DELETE /q/{q}/{id} HTTP/1.1\r\nHost: {host}\r\nX-presque-lease: {token}\r\n\r\n"
            );
            conn.stream.write_all(ack.as_bytes()).await?;
            conn.expect_status(204, "DELETE (ack)").await
        }
    }
}

async fn run(mut conn: Conn, deadline: Instant, jobs_to_fill: u64) -> std::io::Result<Tally> {
    let args = conn.args.clone();
    let body = job_body(args.size);
    let batch = request(&args, &body);
    let single = !batch.is_empty();
    let put = {
        let mut one = args.clone();
        one.op = Op::Enqueue;
        one.pipeline = 1;
        request(&one, &body)
    };
    let mut tally = Tally::default();
    let mut now = Instant::now();
    loop {
        let done = if args.op == Op::Fill {
            tally.jobs >= jobs_to_fill
        } else {
            now >= deadline
        };
        if done {
            return Ok(tally);
        }
        let mut errors = Vec::new();
        if single {
            conn.stream.write_all(&batch).await?;
            for _ in 0..args.pipeline {
                if let Err(e) = answer(&mut conn).await? {
                    errors.push(e);
                }
            }
        } else if let Err(e) = multi(&mut conn, &put).await? {
            errors.push(e);
        }
        let end = Instant::now();
        let moved = if single { args.pipeline as u64 } else { 1 };
        if errors.is_empty() {
            tally.ops += 1;
            tally.jobs += moved;
            tally
                .latencies_us
                .push((end - now).as_micros().min(u32::MAX as u128) as u32);
        } else {
            tally.errors += errors.len() as u64;
            tally.jobs += moved - errors.len() as u64;
            tally
                .first_error
                .get_or_insert_with(|| errors.swap_remove(0));
        }
        now = end;
    }
}

/// A JSON object of exactly `size` bytes (at least the 12 of its frame).
fn job_body(size: usize) -> Vec<u8> {
    let head = "{\"pad\":\"";
    let pad = size.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad)).into_bytes()
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    text.trim_end_matches('s')
        .parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0 && s.is_finite())
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("--duration: not a number of seconds: {text:?}"))
}

fn fail(message: String) -> ! {
    eprintln!("loadgen: {message}");
    std::process::exit(1)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let duration = parse_duration(&args.duration).unwrap_or_else(|e| fail(e));
    let multi_request = matches!(
        (args.proto, args.op),
        (_, Op::Cycle) | (Proto::Beanstalk, Op::Dequeue)
    );
    if args.pipeline == 0 || (args.pipeline > 1 && multi_request) {
        fail("--pipeline K (K >= 1) is for single-request operations only".into());
    }
    // Connect everything first, so the clock measures only the operations.
    let mut conns = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let conn = Conn::open(&args)
            .await
            .unwrap_or_else(|e| fail(format!("connection {i} to {}: {e}", args.addr)));
        conns.push(conn);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let n = args.connections as u64;
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            // `fill` splits the jobs between the connections.
            let share = args.jobs / n + u64::from((i as u64) < args.jobs % n);
            tokio::spawn(run(conn, deadline, share))
        })
        .collect();
    let mut total = Tally::default();
    let mut messages = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let tally = match task.await {
            Ok(Ok(tally)) => tally,
            Ok(Err(e)) => fail(format!("connection {i} to {}: {e}", args.addr)),
            Err(e) => fail(format!("connection {i}: {e}")),
        };
        total.ops += tally.ops;
        total.jobs += tally.jobs;
        total.errors += tally.errors;
        total.latencies_us.extend(tally.latencies_us);
        if let Some(e) = tally.first_error {
            if !messages.contains(&e) && messages.len() < 3 {
                messages.push(e);
            }
        }
    }
    let elapsed = start.elapsed();
    for m in &messages {
        eprintln!("loadgen: unexpected answer: {m}");
    }
    let lat = &mut total.latencies_us;
    lat.sort_unstable();
    let pct = |p: usize| {
        if lat.is_empty() {
            0
        } else {
            lat[(lat.len() - 1) * p / 100]
        }
    };
    println!(
        "RESULT ops={} jobs={} errors={} duration_us={} p50_us={} p99_us={}",
        total.ops,
        total.jobs,
        total.errors,
        elapsed.as_micros(),
        pct(50),
        pct(99)
    );
}
