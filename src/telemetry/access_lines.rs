//! The access log's own output: one line per `presque::access` event, formatted by
//! hand into a shared buffer that a writer thread hands to stderr in batches.
//!
//! Why not the general `fmt` layer: on a 100-byte `GET /q` it cost more than all of
//! the server's own work (about 15,000 instructions a line in `core::fmt`, the
//! escaping field visitor and ANSI styling) plus one `write` system call per request.
//! Here a line costs a few hundred instructions and one `memcpy`, and stderr sees one
//! `write` per batch. The lines read the same as the `fmt` layer's (text) or the same
//! keys (JSON); the events still go through `tracing`, so `RUST_LOG` filters them.
//!
//! A line reaches stderr within [`FLUSH_INTERVAL`], at once past [`BATCH_BYTES`], and
//! at [`flush`] (the server's stop). A killed process loses at most that interval of
//! access lines; nothing else. When stderr cannot keep up, requests wait for room past
//! [`MAX_BUFFERED_BYTES`] (as they waited on the `write` before), so memory stays
//! bounded and no line is dropped.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::settings::LogFormat;

/// How long a line may wait in the buffer.
const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// Buffered bytes that wake the writer before the interval.
const BATCH_BYTES: usize = 64 << 10;
/// Buffered bytes past which a request waits for the writer.
const MAX_BUFFERED_BYTES: usize = 8 << 20;

/// Formats `presque::access` events; install it behind a filter that passes only
/// that target.
pub struct AccessLines {
    format: LogFormat,
}

impl AccessLines {
    pub fn new(format: LogFormat) -> Self {
        Self { format }
    }
}

impl<S: Subscriber> Layer<S> for AccessLines {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            let now = SystemTime::now();
            match self.format {
                LogFormat::Text => {
                    timestamp(&mut line, now);
                    line.push_str(level_padded(meta.level()));
                    line.push_str(meta.target());
                    line.push(':');
                    event.record(&mut TextFields(&mut line));
                }
                LogFormat::Json => {
                    line.push_str("{\"timestamp\":\"");
                    timestamp(&mut line, now);
                    line.push_str("\",\"level\":\"");
                    line.push_str(meta.level().as_str());
                    line.push('"');
                    event.record(&mut JsonFields(&mut line));
                    line.push_str(",\"target\":");
                    json_string(&mut line, meta.target());
                    line.push('}');
                }
            }
            line.push('\n');
            output().push(line.as_bytes());
        });
    }
}

thread_local! {
    /// One line's bytes, reused: no allocation per line once warm.
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    /// The `YYYY-MM-DDTHH:MM:SS` of the second last formatted on this thread.
    static SECOND: std::cell::RefCell<(u64, String)> =
        const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// `2026-12-01T08:43:31.123456Z`, as the `fmt` layer writes it. The calendar part is
/// worked out once a second per thread.
fn timestamp(out: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            let (days, rest) = (secs / 86_400, secs % 86_400);
            let (y, m, d) = civil_from_days(days as i64);
            cached.1.clear();
            let _ = write!(
                cached.1,
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
                rest / 3600,
                rest % 3600 / 60,
                rest % 60
            );
            cached.0 = secs;
        }
        out.push_str(&cached.1);
    });
    let micros = since.subsec_micros();
    out.push('.');
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(micros);
    for _ in digits.len()..6 {
        out.push('0');
    }
    out.push_str(digits);
    out.push('Z');
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The level as the `fmt` layer pads it between the timestamp and the target.
fn level_padded(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => " ERROR ",
        Level::WARN => "  WARN ",
        Level::INFO => "  INFO ",
        Level::DEBUG => " DEBUG ",
        Level::TRACE => " TRACE ",
    }
}

/// Text fields: ` message key=value key="string"`, strings quoted and escaped as the
/// `fmt` layer's `Debug` does, but without `core::fmt` when there is nothing to escape.
struct TextFields<'a>(&'a mut String);

/// Access-line fields that are tokens (an HTTP method, a socket address), written
/// bare in text, as the `fmt` layer writes `Display` values.
const BARE: [&str; 2] = ["method", "peer"];

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push(' ');
        if field.name() != "message" {
            self.0.push_str(field.name());
            self.0.push('=');
            let plain = value
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
            if plain && BARE.contains(&field.name()) {
                self.0.push_str(value);
            } else if plain {
                self.0.push('"');
                self.0.push_str(value);
                self.0.push('"');
            } else {
                let _ = write!(self.0, "{value:?}");
            }
        } else {
            self.0.push_str(value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push(' ');
        self.0.push_str(field.name());
        self.0.push('=');
        self.0.push_str(itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push(' ');
        self.0.push_str(field.name());
        self.0.push('=');
        self.0.push_str(itoa::Buffer::new().format(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push(' ');
        if field.name() != "message" {
            self.0.push_str(field.name());
            self.0.push('=');
        }
        let _ = write!(self.0, "{value:?}");
    }
}

/// JSON fields: `,"key":value` for each, flattened beside `message`.
struct JsonFields<'a>(&'a mut String);

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        self.0.push(',');
        json_string(self.0, field.name());
        self.0.push(':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        json_string(self.0, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.0.push_str(itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.0.push_str(itoa::Buffer::new().format(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.0.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.key(field);
        json_string(self.0, &format!("{value:?}"));
    }
}

/// `value` as a JSON string.
fn json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The buffer between request threads and the writer thread.
struct Output {
    buf: Mutex<Vec<u8>>,
    /// Wakes the writer early (a full batch, or a flush).
    work: Condvar,
    /// Wakes requests waiting for room.
    room: Condvar,
    /// Whether the writer thread runs; if it could not start, each line is written
    /// as it comes.
    threaded: bool,
}

fn output() -> &'static Output {
    static OUTPUT: OnceLock<Output> = OnceLock::new();
    OUTPUT.get_or_init(|| {
        // The thread waits for this initialisation to finish before it reads.
        let threaded = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(write_forever)
            .is_ok();
        Output {
            buf: Mutex::new(Vec::with_capacity(BATCH_BYTES)),
            work: Condvar::new(),
            room: Condvar::new(),
            threaded,
        }
    })
}

impl Output {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, line: &[u8]) {
        let mut buf = self.lock();
        while buf.len() > MAX_BUFFERED_BYTES {
            buf = self.room.wait(buf).unwrap_or_else(|e| e.into_inner());
        }
        buf.extend_from_slice(line);
        if !self.threaded {
            drop(buf);
            self.write_out(&mut Vec::new());
        } else if buf.len() >= BATCH_BYTES {
            self.work.notify_one();
        }
    }

    /// Takes what is buffered and writes it; wakes whoever waits for room or flush.
    fn write_out(&self, spare: &mut Vec<u8>) {
        {
            let mut buf = self.lock();
            std::mem::swap(&mut *buf, spare);
        }
        if !spare.is_empty() {
            // Nowhere to report a failed write to stderr: the line is dropped, as the
            // `fmt` layer drops it.
            let _ = std::io::stderr().lock().write_all(spare);
            spare.clear();
        }
        self.room.notify_all();
    }
}

fn write_forever() {
    let out = output();
    let mut spare = Vec::with_capacity(BATCH_BYTES);
    loop {
        {
            let buf = out.lock();
            if buf.len() < BATCH_BYTES {
                let _ = out.work.wait_timeout(buf, FLUSH_INTERVAL);
            }
        }
        out.write_out(&mut spare);
    }
}

/// Writes every buffered access line now: at the server's stop, so the last requests'
/// lines are not left behind.
pub fn flush() {
    let mut spare = Vec::new();
    output().write_out(&mut spare);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_the_calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_788), (2026, 12, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn timestamps_read_like_the_fmt_layers() {
        let at = UNIX_EPOCH + Duration::from_micros(1_795_854_211_000_042);
        let mut s = String::new();
        timestamp(&mut s, at);
        assert_eq!(s, "2026-11-28T08:23:31.000042Z");
    }

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
    }
}
