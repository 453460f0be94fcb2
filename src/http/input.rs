//! Reading and checking what a request carries: the queue name in the path, the body
//! (size-limited, JSON-checked), the worker id and the query parameters.

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use serde::de::DeserializeOwned;

use std::time::Duration;

use crate::http::error::ApiError;
use crate::names::{percent_decode, QueueName, WorkerId};
use crate::queue::job::{JobId, DEFAULT_PRIORITY};

/// Header carrying the worker id (the protocol's final form).
pub const WORKER_HEADER: &str = "X-presque-workerid";

/// Largest `batch_size` accepted by `GET /qb`.
pub const MAX_BATCH_SIZE: usize = 1000;

/// `batch_size` when the query does not give one.
pub const DEFAULT_BATCH_SIZE: usize = 10;

/// The queue name and job id a path names: from the route's `{name}` and `{id}`, or,
/// under the hand-routed `/q` scope, from the rest of the path (`/NAME` or `/NAME/ID`).
///
/// These are actix's decoded segments, where bytes that are not UTF-8 have become
/// U+FFFD: good for routing, tracing and job ids (which must be digits anyway), never
/// for a name. [`queue_name`] reads the name from [`raw_path_target`] instead.
pub fn path_target(req: &HttpRequest) -> (&str, Option<&str>) {
    let info = req.match_info();
    if let Some(name) = info.get("name") {
        return (name, info.get("id"));
    }
    let rest = info.unprocessed().strip_prefix('/').unwrap_or("");
    match rest.split_once('/') {
        Some((name, id)) => (name, Some(id)),
        None => (rest, None),
    }
}

/// The queue name (and, under `/q`, the job id) as the client sent them, still
/// percent-encoded: every named route is `/PREFIX/NAME...`, so the name is the raw
/// path after its second `/`; a `{name:.*}` route's name is all of that, and a `/q`
/// path's ends at the next `/`. (actix leaves `%2F` encoded, so a raw `/` is a
/// segment boundary in both forms.)
pub fn raw_path_target(req: &HttpRequest) -> (&str, Option<&str>) {
    let rest = req
        .uri()
        .path()
        .strip_prefix('/')
        .and_then(|path| path.split_once('/'))
        .map_or("", |(_, rest)| rest);
    if req.match_info().get("name").is_some() {
        return (rest, None);
    }
    match rest.split_once('/') {
        Some((name, id)) => (name, Some(id)),
        None => (rest, None),
    }
}

/// The queue name from the path, percent-decoded strictly ([`QueueName::parse_encoded`]):
/// `%2F` is seen (and refused) as `/`, a malformed escape (`%zz`, a lone `%`) and bytes
/// that are not UTF-8 (`%ff`) are refused rather than taken literally or folded into
/// U+FFFD.
pub fn queue_name(req: &HttpRequest) -> Result<QueueName, ApiError> {
    let raw = raw_path_target(req).0;
    if raw.is_empty() {
        return Err(ApiError::QueueNameMissing);
    }
    QueueName::parse_encoded(raw).map_err(ApiError::BadQueueName)
}

/// Whether a Content-Type value is the media type `application/json`: type and subtype
/// compared without case, parameters (`; charset=utf-8`) and whitespace around them
/// allowed. `application/jsonx`, `application/json-seq` or `text/plain;
/// application/json` are not JSON.
pub fn is_json_media_type(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default();
    essence.trim().eq_ignore_ascii_case("application/json")
}

/// Refuses a request whose Content-Type is not `application/json` (parameters such as
/// a charset are fine).
pub fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| is_json_media_type(v.as_bytes()));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::ContentType)
    }
}

/// How long a request may take to send its whole body (`[server] body_timeout_secs`),
/// from when its handler starts reading it. Startup puts it in the app data; a request
/// that finds none gets [`BodyTimeout::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeout(pub Duration);

impl Default for BodyTimeout {
    fn default() -> Self {
        BodyTimeout(Duration::from_secs(10))
    }
}

/// Refuses a body in a Content-Encoding the server does not decode: anything but no
/// header or `identity`.
pub fn require_identity_encoding(req: &HttpRequest) -> Result<(), ApiError> {
    for value in req.headers().get_all(header::CONTENT_ENCODING) {
        let text = String::from_utf8_lossy(value.as_bytes());
        let identity = text
            .split(',')
            .all(|coding| coding.trim().eq_ignore_ascii_case("identity"));
        if !identity {
            return Err(ApiError::UnsupportedEncoding(text.trim().to_owned()));
        }
    }
    Ok(())
}

/// Reads the whole body, refusing a Content-Encoding other than `identity` (415),
/// more than `limit` bytes (early, from Content-Length, when the client announces it)
/// and a body not complete within the [`BodyTimeout`] (actix has no such limit: a
/// client that stalled mid-body would hold its connection and this handler for ever).
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    require_identity_encoding(req)?;
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|len| len > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    let BodyTimeout(timeout) = req.app_data::<BodyTimeout>().copied().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + timeout;
    // Copied out of the connection's read buffer (a job kept as a slice of it would
    // hold the whole buffer). No timer is armed while each read is ready at once, as
    // a small body that arrived with its head is once the dispatcher, which runs the
    // handler, has had one turn to hand it over: a yield costs far less than arming
    // and dropping a timer.
    let mut body = BytesMut::with_capacity(announced.unwrap_or(0));
    let mut yielded = false;
    loop {
        let mut next = payload.next().now_or_never();
        if next.is_none() && !yielded {
            yielded = true;
            tokio::task::yield_now().await;
            next = payload.next().now_or_never();
        }
        let next = match next {
            Some(next) => next,
            None => tokio::time::timeout_at(deadline, payload.next())
                .await
                .map_err(|_| ApiError::BodyTimeout {
                    secs: timeout.as_secs(),
                })?,
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| ApiError::BodyRead(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads a small JSON document (a control or settings body): `missing` when the body
/// is empty, a precise error when it is not JSON.
pub async fn json_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    missing: ApiError,
) -> Result<serde_json::Value, ApiError> {
    let body = read_body(req, payload, limit).await?;
    if body.is_empty() {
        return Err(missing);
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::BadJson(e.to_string()))
}

/// Checks that `body` is one complete JSON value in UTF-8, without building it.
///
/// Nesting depth is not limited (only the body size is): serde_json skips an ignored
/// value with a byte-per-level stack on the heap, not by recursion, so no depth can
/// overflow the thread's stack. Routes never parse a stored job again (they hand its
/// bytes back verbatim), so nothing downstream imposes a depth limit either.
pub fn check_json(body: &[u8]) -> Result<(), ApiError> {
    std::str::from_utf8(body).map_err(|e| ApiError::BadJson(format!("not UTF-8: {e}")))?;
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map(|_| ())
        .map_err(|e| ApiError::BadJson(e.to_string()))
}

/// The worker id from the `X-presque-workerid` header, if present (an empty value is
/// none), held to [`WorkerId::parse`] like every other carrier.
pub fn worker_header(req: &HttpRequest) -> Result<Option<WorkerId>, ApiError> {
    match req.headers().get(WORKER_HEADER) {
        None => Ok(None),
        Some(value) if value.is_empty() => Ok(None),
        Some(value) => WorkerId::parse_bytes(value.as_bytes())
            .map(Some)
            .map_err(ApiError::BadWorkerId),
    }
}

/// A worker id from `?worker_id=` (already form-decoded, strictly, by [`query`]): an
/// empty value is none.
pub fn worker_param(raw: Option<&str>) -> Result<Option<WorkerId>, ApiError> {
    match raw {
        None | Some("") => Ok(None),
        Some(raw) => WorkerId::parse(raw)
            .map(Some)
            .map_err(ApiError::BadWorkerId),
    }
}

/// A worker id from a JSON body's `worker_id`: a string, or a number as the seed
/// accepted (`{"worker_id": 5}` is the id `5`); none when absent, empty or another type.
pub fn worker_json(value: Option<&serde_json::Value>) -> Result<Option<WorkerId>, ApiError> {
    let raw = match value {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Ok(None),
    };
    WorkerId::parse(&raw)
        .map(Some)
        .map_err(ApiError::BadWorkerId)
}

/// Query parameters the original clients are known to send, accepted on every route
/// and ignored where the route has no use for them (the old Perl and Clojure clients,
/// and plain curl scripts written against them, may add them generically).
pub const TOLERATED_PARAMS: [&str; 6] = [
    "worker_id",
    "queue_name",
    "batch_size",
    "delayed",
    "uniq",
    "with_desc",
];

/// A query struct for routes that take no query parameters (the tolerated original
/// ones aside): `let NoQuery {} = query(&req)?;`.
#[derive(serde::Deserialize)]
pub struct NoQuery {}

/// Parses the query string into `T`, a struct whose fields are optional strings
/// (checked by the caller so each gets a precise message).
///
/// The struct's fields are the parameters the route takes: adding one is adding a
/// field. Any other parameter is refused with [`ApiError::UnknownQuery`], naming the
/// struct's fields, except the [`TOLERATED_PARAMS`], which serde then skips. So `T`
/// must be a struct with named fields (no `flatten`, no map), and must not be
/// `deny_unknown_fields` (that would refuse the tolerated parameters).
pub fn query<T: DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    parse_query(req.query_string())
}

/// [`query`] on a raw query string.
pub fn parse_query<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    if !raw.is_empty() {
        check_query(raw, field_names::<T>())?;
    }
    web::Query::<T>::from_query(raw)
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::BadQuery(format!("invalid query string: {e}")))
}

/// Refuses a query string with a malformed percent-escape (`%zz`, a lone `%`) or a
/// name or value that is not UTF-8 once decoded, naming the parameter (the form
/// decoder would otherwise take the first literally and fold the second into
/// U+FFFD), and one naming a parameter neither in `accepted` nor tolerated. One pass,
/// and no allocation for the usual plain names and values.
fn check_query(raw: &str, accepted: &'static [&'static str]) -> Result<(), ApiError> {
    let mut unknown: Vec<String> = Vec::new();
    for pair in raw.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decoded(key).map_err(|e| {
            ApiError::BadQuery(format!("invalid query string: a parameter name {e}"))
        })?;
        decoded(value)
            .map_err(|e| ApiError::BadQuery(format!("invalid query parameter {name:?}: {e}")))?;
        // The form decoder skips empty pairs (`a=1&&b=2`) and reads `+` as a space.
        if pair.is_empty() {
            continue;
        }
        let name: std::borrow::Cow<'_, str> = if key.contains('+') {
            decoded(&key.replace('+', " "))
                .map(std::borrow::Cow::into_owned)
                .unwrap_or_default()
                .into()
        } else {
            name
        };
        let known = accepted.contains(&&*name) || TOLERATED_PARAMS.contains(&&*name);
        if !known && !unknown.iter().any(|u| *u == *name) {
            unknown.push(name.into_owned());
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ApiError::UnknownQuery { unknown, accepted })
    }
}

/// `raw` percent-decoded, borrowed when there is nothing to decode.
fn decoded(raw: &str) -> Result<std::borrow::Cow<'_, str>, crate::names::NameError> {
    if raw.contains('%') {
        percent_decode(raw).map(Into::into)
    } else {
        Ok(raw.into())
    }
}

/// The field names of the struct `T` deserializes as (what `#[derive(Deserialize)]`
/// hands to `deserialize_struct`), read without any input; empty for anything else.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The probe always answers an error once it has seen the fields.
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields
}

/// A deserializer that only records the field names a struct asks for.
struct FieldProbe<'a>(&'a mut &'static [&'static str]);

/// The probe's (only) answer.
#[derive(Debug)]
struct Probed;

impl std::fmt::Display for Probed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names probed")
    }
}

impl std::error::Error for Probed {}

impl serde::de::Error for Probed {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Probed
    }
}

impl<'de> serde::Deserializer<'de> for FieldProbe<'_> {
    type Error = Probed;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Probed> {
        *self.0 = fields;
        Err(Probed)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
        identifier ignored_any
    }
}

/// `delayed=EPOCH_SECONDS` as epoch milliseconds (rounded up, so a job is never
/// fetchable before its time).
pub fn delayed_ms(raw: Option<&str>) -> Result<Option<u64>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let secs: f64 = raw.trim().parse().map_err(|_| {
        ApiError::BadQuery(format!(
            "delayed must be a number of epoch seconds, not {raw:?}"
        ))
    })?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(ApiError::BadQuery(format!(
            "delayed must be a non-negative number of epoch seconds, not {raw:?}"
        )));
    }
    // f64 -> u64 saturates, so absurdly far futures clamp rather than wrap.
    Ok(Some((secs * 1000.0).ceil() as u64))
}

/// Longest relative `delay` a job may be given, in seconds (ten years of 365 days):
/// far enough for any schedule, near enough that `now + delay` is plainly a time.
pub const MAX_DELAY_SECS: f64 = 315_360_000.0;

/// When a new or re-queued job becomes fetchable, in epoch milliseconds, from the
/// original `delayed=EPOCH_SECONDS` or the relative `delay=SECONDS` (at most
/// [`MAX_DELAY_SECS`]; `0` is no delay); `None` when neither is given. Giving both is
/// refused. Every route that takes `delayed` should take `delay` through this.
pub fn due_ms(delayed: Option<&str>, delay: Option<&str>) -> Result<Option<u64>, ApiError> {
    if delay.is_none() {
        // The common case (no delay at all) reads no clock.
        return delayed_ms(delayed);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    due_ms_at(delayed, delay, now)
}

/// [`due_ms`] with the current time given (since the epoch).
fn due_ms_at(
    delayed: Option<&str>,
    delay: Option<&str>,
    now: Duration,
) -> Result<Option<u64>, ApiError> {
    match (delayed, delay) {
        (Some(_), Some(_)) => Err(ApiError::DelayConflict),
        (delayed, None) => delayed_ms(delayed),
        (None, Some(raw)) => {
            let secs = seconds(raw, "delay", MAX_DELAY_SECS)?;
            if secs == 0.0 {
                // At the tail at once, like a job without a delay.
                return Ok(None);
            }
            // Rounded up to the millisecond, like `delayed`: never fetchable before
            // `secs` have passed since the request came.
            let due = now.saturating_add(Duration::from_secs_f64(secs));
            Ok(Some(
                u64::try_from(due.as_micros().div_ceil(1000)).unwrap_or(u64::MAX),
            ))
        }
    }
}

/// `ttl=SECONDS` as the epoch millisecond the job expires at (rounded up): above 0
/// and at most [`MAX_DELAY_SECS`], fractions allowed.
pub fn expires_ms(ttl: Option<&str>) -> Result<Option<u64>, ApiError> {
    let Some(raw) = ttl else {
        return Ok(None);
    };
    match raw.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs <= MAX_DELAY_SECS => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let at = now.saturating_add(Duration::from_secs_f64(secs));
            Ok(Some(
                u64::try_from(at.as_micros().div_ceil(1000)).unwrap_or(u64::MAX),
            ))
        }
        _ => Err(ApiError::BadQuery(format!(
            "ttl must be a number of seconds above 0 and at most {MAX_DELAY_SECS}, not {raw:?}"
        ))),
    }
}

/// `batch_size`: an integer from 1 to [`MAX_BATCH_SIZE`], default [`DEFAULT_BATCH_SIZE`].
pub fn batch_size(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_BATCH_SIZE);
    };
    match raw.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_BATCH_SIZE).contains(&n) => Ok(n),
        _ => Err(ApiError::BadQuery(format!(
            "batch_size must be an integer from 1 to {MAX_BATCH_SIZE}, not {raw:?}"
        ))),
    }
}

/// `priority=N` on a create: an integer from 0 (the most urgent) to 255 (the least),
/// default [`DEFAULT_PRIORITY`].
pub fn priority(raw: Option<&str>) -> Result<u8, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_PRIORITY);
    };
    // Digits only: `+5` or ` 5` would parse, but are not what the contract says.
    let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| raw.parse::<u8>().ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::BadQuery(format!(
            "priority must be an integer from 0 (most urgent) to 255 (least urgent), not {raw:?}"
        ))
        })
}

/// Longest lease a fetch may ask for, in seconds (a day).
pub const MAX_LEASE_SECS: f64 = 86_400.0;

fn seconds(raw: &str, what: &str, max: f64) -> Result<f64, ApiError> {
    match raw.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 && secs <= max => Ok(secs),
        _ => Err(ApiError::BadQuery(format!(
            "{what} must be a number of seconds from 0 to {max}, not {raw:?}"
        ))),
    }
}

/// `wait=SECONDS`: how long a fetch may wait for a job, at most `max_secs`.
pub fn wait(raw: Option<&str>, max_secs: u64) -> Result<Option<Duration>, ApiError> {
    raw.map(|raw| seconds(raw, "wait", max_secs as f64).map(Duration::from_secs_f64))
        .transpose()
}

/// Shortest lease a fetch may ask for, in seconds (a millisecond, the lease clock's
/// unit).
pub const MIN_LEASE_SECS: f64 = 0.001;

/// `lease=SECONDS` in milliseconds (rounded to the nearest): from [`MIN_LEASE_SECS`]
/// to [`MAX_LEASE_SECS`], both included.
pub fn lease_ms(raw: Option<&str>) -> Result<Option<u64>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    match raw.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && (MIN_LEASE_SECS..=MAX_LEASE_SECS).contains(&secs) => {
            Ok(Some((secs * 1000.0).round() as u64))
        }
        _ => Err(ApiError::BadQuery(format!(
            "lease must be a number of seconds from {MIN_LEASE_SECS} to {MAX_LEASE_SECS}, not {raw:?}"
        ))),
    }
}

/// A job id from the path.
pub fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse::<u64>()
        .map(JobId)
        .map_err(|_| ApiError::BadPath(format!("invalid job id: {raw:?}")))
}

/// Items one page of a listing holds when the query does not say (`limit`): an old
/// client's answer stays whole for listings up to this size.
pub const DEFAULT_PAGE: usize = 1000;

/// Most items one page of a listing may hold, whatever `limit` asks.
pub const MAX_PAGE: usize = 10_000;

/// `limit=N` on a paged listing: an integer from 1 to [`MAX_PAGE`].
pub fn page_limit(raw: Option<&str>) -> Result<Option<usize>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    match raw.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(Some(n)),
        _ => Err(ApiError::BadQuery(format!(
            "limit must be an integer from 1 to {MAX_PAGE}, not {raw:?}"
        ))),
    }
}

/// `after=ID` on a paged listing: the job id the page starts after (the previous
/// page's `next`).
pub fn page_after(raw: Option<&str>) -> Result<Option<JobId>, ApiError> {
    raw.map(|raw| {
        raw.trim().parse::<u64>().map(JobId).map_err(|_| {
            ApiError::BadQuery(format!(
                "after must be the \"next\" of an earlier page (a job id), not {raw:?}"
            ))
        })
    })
    .transpose()
}

/// Epoch milliseconds as epoch seconds, the protocol's unit.
pub fn epoch_secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Whether a flag-like query value (`with_desc=1`) is set.
pub fn flag(raw: Option<&str>) -> bool {
    raw.is_some_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delayed_parses_numbers_only() {
        assert_eq!(delayed_ms(None).ok(), Some(None));
        assert_eq!(delayed_ms(Some("12")).ok(), Some(Some(12_000)));
        assert_eq!(delayed_ms(Some("1.0001")).ok(), Some(Some(1_001)));
        assert!(delayed_ms(Some("soon")).is_err());
        assert!(delayed_ms(Some("-1")).is_err());
        assert!(delayed_ms(Some("NaN")).is_err());
        assert!(delayed_ms(Some("inf")).is_err());
    }

    #[test]
    fn due_takes_delayed_or_delay_not_both() {
        let now = Duration::from_micros(1_000_000_500);
        assert_eq!(due_ms_at(None, None, now).ok(), Some(None));
        assert_eq!(due_ms_at(Some("12"), None, now).ok(), Some(Some(12_000)));
        assert_eq!(due_ms_at(None, Some("0"), now).ok(), Some(None));
        assert_eq!(
            due_ms_at(None, Some("0.3"), now).ok(),
            Some(Some(1_000_301))
        );
        assert_eq!(due_ms_at(None, Some("2"), now).ok(), Some(Some(1_002_001)));
        assert_eq!(
            due_ms_at(None, Some("0.0001"), now).ok(),
            Some(Some(1_000_001))
        );
        let exact = Duration::from_millis(1_000_000);
        assert_eq!(
            due_ms_at(None, Some("0.3"), exact).ok(),
            Some(Some(1_000_300))
        );
        assert_eq!(
            due_ms_at(None, Some("315360000"), exact).ok(),
            Some(Some(1_000_000 + 315_360_000_000))
        );
        assert!(matches!(
            due_ms_at(Some("12"), Some("1"), now),
            Err(ApiError::DelayConflict)
        ));
        for bad in ["-1", "abc", "", "NaN", "inf", "315360001"] {
            let message = due_ms_at(None, Some(bad), now)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert_eq!(
                message,
                format!("delay must be a number of seconds from 0 to 315360000, not {bad:?}")
            );
        }
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        delayed: Option<String>,
        #[serde(rename = "delay")]
        relative: Option<String>,
    }

    #[test]
    fn page_bounds() {
        assert_eq!(page_limit(None).ok(), Some(None));
        assert_eq!(page_limit(Some("10000")).ok(), Some(Some(10_000)));
        assert!(page_limit(Some("0")).is_err());
        assert!(page_limit(Some("10001")).is_err());
        assert!(page_limit(Some("x")).is_err());
        assert_eq!(page_after(Some("7")).ok(), Some(Some(JobId(7))));
        assert!(page_after(Some("-1")).is_err());
    }

    #[test]
    fn query_structs_name_their_parameters() {
        assert_eq!(field_names::<Sample>(), ["delayed", "delay"]);
        assert!(field_names::<NoQuery>().is_empty());
        assert!(check_query(
            "delayed=1&delay=2&worker_id=w&with_desc=1",
            &["delayed", "delay"]
        )
        .is_ok());
        let message = |raw, accepted| {
            check_query(raw, accepted)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            message("delay_secs=5&uniq=k", &["delayed", "delay", "uniq"]),
            "unknown query parameter \"delay_secs\"; this route takes: delayed, delay, uniq"
        );
        assert_eq!(
            message("a=1&b&a=2", &["lease"]),
            "unknown query parameters \"a\", \"b\"; this route takes: lease"
        );
        assert_eq!(
            message("x=1", &[]),
            "unknown query parameter \"x\"; this route takes no query parameters"
        );
        assert_eq!(
            message("%64elay_s=1", &[]),
            "unknown query parameter \"delay_s\"; this route takes no query parameters"
        );
    }

    #[test]
    fn batch_size_bounds() {
        assert_eq!(batch_size(None).ok(), Some(10));
        assert_eq!(batch_size(Some("1")).ok(), Some(1));
        assert_eq!(batch_size(Some("1000")).ok(), Some(1000));
        assert!(batch_size(Some("0")).is_err());
        assert!(batch_size(Some("1001")).is_err());
        assert!(batch_size(Some("2.5")).is_err());
        assert!(batch_size(Some("x")).is_err());
    }

    #[test]
    fn wait_and_lease_bounds() {
        assert_eq!(wait(None, 30).ok(), Some(None));
        assert_eq!(
            wait(Some("1.5"), 30).ok(),
            Some(Some(Duration::from_millis(1500)))
        );
        assert_eq!(wait(Some("0"), 30).ok(), Some(Some(Duration::ZERO)));
        assert!(wait(Some("31"), 30).is_err());
        assert!(wait(Some("-1"), 30).is_err());
        assert!(wait(Some("soon"), 30).is_err());
        assert_eq!(lease_ms(Some("2.5")).ok(), Some(Some(2_500)));
        assert!(lease_ms(Some("0")).is_err());
        assert!(lease_ms(Some("86401")).is_err());
        assert!(job_id("12").is_ok());
        assert!(job_id("x").is_err());
    }

    #[test]
    fn json_check() {
        assert!(check_json(br#"{"a":[1,2,{"b":null}]}"#).is_ok());
        assert!(check_json(b"\"x\"").is_ok());
        assert!(check_json(b"{\"a\":").is_err());
        assert!(check_json(b"{} {}").is_err());
    }

    #[test]
    fn json_check_takes_any_depth_without_recursing() {
        let depth = 1_000_000;
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(check_json(deep.as_bytes()).is_ok());
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        assert!(check_json(objects.as_bytes()).is_ok());
        let unbalanced = format!("{}{}", "[".repeat(depth), "]".repeat(depth - 1));
        assert!(check_json(unbalanced.as_bytes()).is_err());
    }

    #[test]
    fn lease_bounds_are_exact() {
        assert_eq!(lease_ms(Some("0.001")).ok(), Some(Some(1)));
        assert_eq!(lease_ms(Some("86400")).ok(), Some(Some(86_400_000)));
        assert_eq!(lease_ms(Some("0.0015")).ok(), Some(Some(2)));
        for bad in [
            "0.0005",
            "0.000999",
            "0",
            "-1",
            "86400.0001",
            "inf",
            "NaN",
            "x",
        ] {
            let message = lease_ms(Some(bad))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert_eq!(
                message,
                format!("lease must be a number of seconds from 0.001 to 86400, not {bad:?}")
            );
        }
    }

    #[test]
    fn media_types() {
        for json in [
            "application/json",
            "APPLICATION/Json",
            "application/json; charset=utf-8",
            " application/json ;charset=UTF-8",
            "application/json;",
        ] {
            assert!(is_json_media_type(json.as_bytes()), "{json:?}");
        }
        for other in [
            "application/jsonx",
            "application/json-seq",
            "text/plain; application/json",
            "application/ json",
            "",
            "application/json\u{e9}",
        ] {
            assert!(!is_json_media_type(other.as_bytes()), "{other:?}");
        }
        assert!(!is_json_media_type(b"application/json\xff"));
    }

    #[test]
    fn query_encoding_is_strict() {
        assert!(check_query("a=%C3%A9&b=x+y&c", &["a", "b", "c"]).is_ok());
        for bad in ["a=%ff", "a=%zz", "a=%", "a=%4", "%fe=1", "a=1&b=%80"] {
            assert!(
                matches!(check_query(bad, &["a", "b"]), Err(ApiError::BadQuery(_))),
                "{bad}"
            );
        }
    }

    mod properties {
        use super::*;
        use crate::queue::state::DeliveryToken;
        use proptest::prelude::*;

        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Fetch {
            lease: Option<String>,
            wait: Option<String>,
            worker_id: Option<String>,
        }

        /// Query-string-like text: mostly the characters that matter to the parser.
        fn query_text() -> impl Strategy<Value = String> {
            prop_oneof![
                "(?s).{0,200}",
                "[a-z_=&%+0-9a-fA-F\\x80-\\xff;]{0,120}",
                "(lease|wait|worker_id|uniq|delayed)=[-+0-9.eEinfNa%]{0,24}(&(lease|wait|worker_id|zz)=[-0-9.%a-f]{0,12}){0,4}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// The names found unknown are the ones the form decoder (which then
            /// reads the values) sees, in the same spelling.
            #[test]
            fn unknown_names_are_the_form_decoders(raw in query_text()) {
                let accepted: &'static [&'static str] = &["lease", "wait", "worker_id"];
                let Ok(pairs) = web::Query::<Vec<(String, String)>>::from_query(&raw) else {
                    return Ok(());
                };
                let mut expected: Vec<String> = Vec::new();
                for (key, _) in pairs.into_inner() {
                    let known = accepted.contains(&key.as_str())
                        || TOLERATED_PARAMS.contains(&key.as_str());
                    if !known && !expected.contains(&key) {
                        expected.push(key);
                    }
                }
                match check_query(&raw, accepted) {
                    Ok(()) => prop_assert!(expected.is_empty(), "{raw:?}: {expected:?}"),
                    Err(ApiError::UnknownQuery { unknown, .. }) => {
                        prop_assert_eq!(unknown, expected)
                    }
                    // Bad encoding, which the form decoder lets through lossily.
                    Err(_) => {}
                }
            }

            #[test]
            fn arbitrary_query_strings_never_panic(raw in query_text()) {
                let parsed = parse_query::<Fetch>(&raw);
                if let Ok(fetch) = parsed {
                    // What passed is checked like a request's parameters, which also
                    // must not panic.
                    let _ = lease_ms(fetch.lease.as_deref());
                    let _ = wait(fetch.wait.as_deref(), 30);
                    let _ = worker_param(fetch.worker_id.as_deref());
                }
                let _ = parse_query::<NoQuery>(&raw);
            }

            #[test]
            fn numeric_parsers_hold_their_bounds(raw in prop_oneof!["(?s).{0,40}", "[-+]?[0-9]{0,12}(\\.[0-9]{0,8})?(e[-+]?[0-9]{1,3})?"]) {
                if let Ok(Some(ms)) = lease_ms(Some(&raw)) {
                    prop_assert!((1..=86_400_000).contains(&ms));
                }
                if let Ok(Some(d)) = wait(Some(&raw), 30) {
                    prop_assert!(d <= Duration::from_secs(30));
                }
                if let Ok(n) = batch_size(Some(&raw)) {
                    prop_assert!((1..=MAX_BATCH_SIZE).contains(&n));
                }
                if let Ok(Some(n)) = page_limit(Some(&raw)) {
                    prop_assert!((1..=MAX_PAGE).contains(&n));
                }
                let now = Duration::from_secs(1_700_000_000);
                if let Ok(Some(due)) = due_ms_at(None, Some(&raw), now) {
                    prop_assert!(due >= 1_700_000_000_000);
                    prop_assert!(due <= 1_700_000_000_000 + 315_360_000_000 + 1);
                }
                let _ = due_ms_at(Some(&raw), None, now);
                let _ = page_after(Some(&raw));
                let _ = job_id(&raw);
            }

            #[test]
            fn lease_round_trips_whole_milliseconds(ms in 1u64..=86_400_000) {
                let raw = format!("{}", ms as f64 / 1000.0);
                prop_assert_eq!(lease_ms(Some(&raw)).ok(), Some(Some(ms)));
            }

            #[test]
            fn arbitrary_tokens_never_panic(raw in prop_oneof!["(?s).{0,60}", "[0-9a-fA-F.]{0,40}"]) {
                if let Ok(token) = raw.parse::<DeliveryToken>() {
                    // A token the parser takes prints back to one it takes the same.
                    let again = token.to_string().parse::<DeliveryToken>();
                    prop_assert_eq!(again.ok(), Some(token));
                }
            }

            #[test]
            fn media_type_check_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..120)) {
                let _ = is_json_media_type(&raw);
            }
        }
    }
}
