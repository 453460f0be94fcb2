//! Validated names: queue names and worker ids. A name that reaches a queue or the
//! registry (and, later, a file on disk) has passed these checks.
//!
//! Names arrive percent-encoded (in a path or a query string) or plain (in a header
//! or a JSON body). [`percent_decode`] is the one strict decoder: a malformed escape
//! or bytes that are not UTF-8 are refused, never taken literally or folded into
//! U+FFFD (which would make `%ff` and `%fe` one name).

use std::fmt;
use std::sync::Arc;

/// Longest queue name or worker id accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
    #[error("must not contain '/'")]
    Slash,
    #[error("must not contain control characters")]
    Control,
    /// A worker id with a character beyond ASCII (a header cannot carry one).
    #[error("must contain only ASCII characters")]
    NotAscii,
    /// A worker id with a space at either end (a header cannot carry one).
    #[error("must not start or end with a space")]
    EdgeSpace,
    /// A `%` not followed by two hex digits; `at` is the escape's byte offset.
    #[error("{escape:?} at byte {at} is not a percent-escape (% must be followed by two hex digits; send a literal % as %25)")]
    BadEscape { escape: String, at: usize },
    /// The percent-decoded bytes are not UTF-8; `at` is the first bad byte's offset
    /// in the decoded bytes.
    #[error(
        "is not valid UTF-8 after percent-decoding (byte 0x{byte:02X} at decoded offset {at})"
    )]
    NotUtf8 { byte: u8, at: usize },
}

/// Decodes `%XX` escapes strictly: a `%` not followed by two hex digits is an error,
/// and so are decoded bytes that are not UTF-8. Everything else is copied as is (a
/// `+` stays a `+`: this is path decoding, not form decoding).
pub fn percent_decode(raw: &str) -> Result<String, NameError> {
    if !raw.contains('%') {
        return Ok(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let hex = |k: usize| bytes.get(k).and_then(|&c| (c as char).to_digit(16));
        match (hex(i + 1), hex(i + 2)) {
            (Some(hi), Some(lo)) => {
                // Two hex digits: at most 0xFF.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(u8::MAX));
                i += 3;
            }
            _ => {
                // The escape as sent: `%` and up to two following characters.
                let escape: String = raw[i..].chars().take(3).collect();
                return Err(NameError::BadEscape { escape, at: i });
            }
        }
    }
    String::from_utf8(out).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let byte = e.as_bytes().get(at).copied().unwrap_or(0);
        NameError::NotUtf8 { byte, at }
    })
}

fn check(raw: &str) -> Result<(), NameError> {
    if raw.is_empty() {
        Err(NameError::Empty)
    } else if raw.len() > MAX_NAME_BYTES {
        Err(NameError::TooLong)
    } else if raw.contains('/') {
        Err(NameError::Slash)
    } else if raw.chars().any(char::is_control) {
        Err(NameError::Control)
    } else {
        Ok(())
    }
}

/// A queue's name: 1 to 255 bytes, no `/`, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueName(Arc<str>);

impl QueueName {
    /// Validates `raw` as a queue name.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        check(raw)?;
        Ok(QueueName(Arc::from(raw)))
    }

    /// Validates a percent-encoded queue name (a path segment): strictly decoded by
    /// [`percent_decode`], then [`QueueName::parse`].
    pub fn parse_encoded(raw: &str) -> Result<Self, NameError> {
        QueueName::parse(&percent_decode(raw)?)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A worker's id: 1 to 255 bytes of printable ASCII (space to `~`), no `/`, no space
/// at either end.
///
/// The rule is what the `X-presque-workerid` header can carry (visible ASCII, inner
/// spaces; a header value loses its outer whitespace), and every other carrier
/// (`?worker_id=`, the registration body's `{"worker_id": ...}`) is held to it, so an
/// id registered one way can always be sent the other.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(Arc<str>);

impl WorkerId {
    /// Validates `raw` as a worker id, whatever carried it.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        check(raw)?;
        if !raw.is_ascii() {
            return Err(NameError::NotAscii);
        }
        if raw.starts_with(' ') || raw.ends_with(' ') {
            return Err(NameError::EdgeSpace);
        }
        Ok(WorkerId(Arc::from(raw)))
    }

    /// Validates a worker id as raw header bytes: bytes beyond ASCII are
    /// [`NameError::NotAscii`], the rest as [`WorkerId::parse`].
    pub fn parse_bytes(raw: &[u8]) -> Result<Self, NameError> {
        let raw = std::str::from_utf8(raw).map_err(|_| NameError::NotAscii)?;
        WorkerId::parse(raw)
    }

    /// A worker id read back from the log or a snapshot: the rules requests were held
    /// to before [`WorkerId::parse`] was narrowed to what a header can carry (1 to 255
    /// bytes, no `/`, no control characters), so a registration an older version
    /// accepted survives a restart.
    pub fn restore(raw: &str) -> Result<Self, NameError> {
        check(raw)?;
        Ok(WorkerId(Arc::from(raw)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        assert!(QueueName::parse("emails").is_ok());
        assert!(QueueName::parse("a.b-c_d:é").is_ok());
        assert!(QueueName::parse(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(QueueName::parse(""), Err(NameError::Empty));
        assert_eq!(QueueName::parse(&"x".repeat(256)), Err(NameError::TooLong));
        assert_eq!(QueueName::parse("a/b"), Err(NameError::Slash));
        assert_eq!(QueueName::parse("a\nb"), Err(NameError::Control));
        assert_eq!(QueueName::parse("a\u{7f}"), Err(NameError::Control));
        assert_eq!(WorkerId::parse("w\0"), Err(NameError::Control));
    }
}
