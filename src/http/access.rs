//! The access log: one info line per request (target `presque::access`) with its
//! method, path, status, duration, request id and peer, and the request id returned
//! in `X-Request-Id` on every response, errors included.
//!
//! Done by `http::observe`'s layer, which times every request anyway, only with
//! `[log] access = true`: when it is off, no `X-Request-Id` either, since it names a
//! log line.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode, Uri};

/// The request id header, read from the client and set on the response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client request id kept; a longer one is replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The longest path logged, in bytes: the path is the client's, and a log line must not
/// grow with it.
pub const MAX_LOGGED_PATH: usize = 256;

/// The tracing target of access lines, so `RUST_LOG=presque::access=off` silences
/// them alone.
pub const TARGET: &str = "presque::access";

/// A request's access line in the making: taken when the request comes in (by
/// `http::observe`, which times every request anyway), written when it is answered.
pub struct Access {
    method: Method,
    uri: Uri,
    peer: Option<SocketAddr>,
    id: HeaderValue,
}

impl Access {
    /// Notes what the line will say. Cheap clones: the request itself must stay
    /// unshared, since routing needs it.
    pub fn start(req: &ServiceRequest) -> Self {
        Access {
            id: request_id(req.headers().get(REQUEST_ID)),
            method: req.method().clone(),
            uri: req.uri().clone(),
            peer: req.peer_addr(),
        }
    }

    /// Logs the answer and gives it its request id. An error from a layer inside
    /// (auth, the recovery gate) is answered here, so it carries the id too.
    pub fn finish<B>(
        self,
        answered: Result<ServiceResponse<B>, actix_web::Error>,
        started: Instant,
    ) -> Result<ServiceResponse<B>, actix_web::Error> {
        match answered {
            Ok(mut res) => {
                self.log(res.status(), started);
                res.headers_mut().insert(REQUEST_ID, self.id);
                Ok(res)
            }
            Err(e) => {
                let mut response = e.error_response();
                self.log(response.status(), started);
                response.headers_mut().insert(REQUEST_ID, self.id);
                Err(InternalError::from_response(e, response).into())
            }
        }
    }

    fn log(&self, status: StatusCode, started: Instant) {
        let path = self
            .uri
            .path_and_query()
            .map_or(self.uri.path(), |p| p.as_str());
        // `&str` values: the text format quotes and escapes them, JSON escapes them.
        tracing::info!(
            target: TARGET,
            method = self.method.as_str(),
            path = capped(path, MAX_LOGGED_PATH).as_ref(),
            status = status.as_u16(),
            duration_us = started.elapsed().as_micros() as u64,
            request_id = self.id.to_str().unwrap_or("-"),
            peer = Peer(self.peer).text().as_str(),
            "request"
        );
    }
}

/// The peer address, or `-` when unknown.
struct Peer(Option<SocketAddr>);

impl Peer {
    /// Written by hand into a stack buffer: `SocketAddrV4`'s own Display, through
    /// `core::fmt`'s integer padding, was a fifth of an access line's cost.
    fn text(&self) -> Text<48> {
        let mut out = Text::default();
        match self.0 {
            Some(SocketAddr::V4(addr)) => {
                let mut digits = itoa::Buffer::new();
                for (i, octet) in addr.ip().octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(".");
                    }
                    out.push(digits.format(octet));
                }
                out.push(":");
                out.push(digits.format(addr.port()));
            }
            Some(addr) => {
                use std::fmt::Write as _;
                let _ = write!(out, "{addr}");
            }
            None => out.push("-"),
        }
        out
    }
}

/// A short string on the stack; what does not fit is cut (never mid-character,
/// since only ASCII is pushed).
struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Text {
            buf: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> Text<N> {
    fn push(&mut self, s: &str) {
        let n = s.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("-")
    }
}

impl<const N: usize> std::fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push(s);
        Ok(())
    }
}

/// The client's id when it is sane (1 to [`MAX_REQUEST_ID_LEN`] visible ASCII
/// characters), else a new one.
fn request_id(client: Option<&HeaderValue>) -> HeaderValue {
    match client {
        Some(v) if is_sane(v.as_bytes()) => v.clone(),
        _ => generate(),
    }
}

fn is_sane(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len()) && id.iter().all(|b| b.is_ascii_graphic())
}

/// `PREFIX-N`: a prefix drawn once per process (so ids from two runs or two servers
/// do not collide in a shared log) and a counter; no syscall, no lock.
fn generate() -> HeaderValue {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = *PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // std draws RandomState's keys from the OS's randomness.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish() as u32
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // `{prefix:08x}-{n:x}`, without `core::fmt`, which cost more than the rest of the id.
    let mut id = Text::<25>::default();
    let mut digits = [0; 16];
    let prefix = crate::hex::lower_hex(u64::from(prefix), &mut digits);
    id.push(&"00000000"[prefix.len().min(8)..]);
    id.push(prefix);
    id.push("-");
    id.push(crate::hex::lower_hex(n, &mut digits));
    HeaderValue::from_str(id.as_str()).unwrap_or(HeaderValue::from_static("-"))
}

/// `text` cut to at most `max` bytes on a character boundary, marked with `...` when
/// cut.
fn capped(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_kept_only_when_sane() {
        let kept = HeaderValue::from_static("abc-123_XYZ:9");
        assert_eq!(request_id(Some(&kept)), kept);
        let long = HeaderValue::from_str(&"a".repeat(MAX_REQUEST_ID_LEN + 1)).ok();
        let max = HeaderValue::from_str(&"a".repeat(MAX_REQUEST_ID_LEN)).ok();
        assert_eq!(
            request_id(max.as_ref()),
            max.clone().unwrap_or(kept.clone())
        );
        for bad in [
            long,
            HeaderValue::from_bytes(b"a b").ok(),
            HeaderValue::from_bytes(b"a\tb").ok(),
            HeaderValue::from_bytes(b"caf\xc3\xa9").ok(),
            HeaderValue::from_bytes(b"").ok(),
        ] {
            let bad = bad.expect("a header value");
            assert_ne!(request_id(Some(&bad)), bad);
        }
    }

    #[test]
    fn generated_ids_are_the_prefix_and_the_counter_in_hex() {
        let id = generate();
        let (prefix, n) = id
            .to_str()
            .unwrap_or("")
            .split_once('-')
            .unwrap_or(("", ""));
        assert!(
            prefix.len() == 8 && u32::from_str_radix(prefix, 16).is_ok(),
            "{id:?}"
        );
        assert!(!n.starts_with('0') || n == "0", "{id:?}");
        let n = u64::from_str_radix(n, 16).unwrap_or(u64::MAX);
        // Other tests draw ids meanwhile: the counter only goes up.
        let next = generate();
        let next = next.to_str().unwrap_or("").split_once('-').map(|(_, n)| n);
        assert!(next.and_then(|n| u64::from_str_radix(n, 16).ok()) > Some(n));
    }

    #[test]
    fn generated_ids_differ_and_share_the_process_prefix() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        let (a, b) = (a.to_str().unwrap_or(""), b.to_str().unwrap_or(""));
        assert!(is_sane(a.as_bytes()) && is_sane(b.as_bytes()), "{a} {b}");
        assert_eq!(a.split('-').next(), b.split('-').next());
        assert_eq!(a.split('-').next().map(str::len), Some(8));
    }

    #[test]
    fn peers_read_as_socket_addresses() {
        for addr in ["127.0.0.1:36506", "10.0.255.9:1", "[::1]:8080"] {
            let parsed: SocketAddr = addr.parse().unwrap_or_else(|_| panic!("{addr}"));
            assert_eq!(Peer(Some(parsed)).text().as_str(), addr);
        }
        assert_eq!(Peer(None).text().as_str(), "-");
        let widest: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
            .parse()
            .unwrap_or_else(|_| panic!("an address"));
        assert_eq!(
            Peer(Some(widest)).text().as_str(),
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
        );
    }

    #[test]
    fn long_paths_are_capped_on_a_char_boundary() {
        assert_eq!(capped("/q/a", 10), "/q/a");
        let long = format!("/q/{}", "é".repeat(200));
        let cut = capped(&long, MAX_LOGGED_PATH);
        assert!(
            cut.len() <= MAX_LOGGED_PATH + 3 && cut.ends_with("..."),
            "{cut}"
        );
    }
}
