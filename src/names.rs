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

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(percent_decode("a%2Fb").ok().as_deref(), Some("a/b"));
        assert_eq!(percent_decode("%C3%A9+").ok().as_deref(), Some("\u{e9}+"));
        assert_eq!(
            percent_decode("%ff"),
            Err(NameError::NotUtf8 { byte: 0xFF, at: 0 })
        );
        assert_eq!(
            percent_decode("x%zz"),
            Err(NameError::BadEscape {
                escape: "%zz".into(),
                at: 1
            })
        );
        assert_eq!(
            percent_decode("%"),
            Err(NameError::BadEscape {
                escape: "%".into(),
                at: 0
            })
        );
        assert_eq!(
            percent_decode("%4\u{e9}"),
            Err(NameError::BadEscape {
                escape: "%4\u{e9}".into(),
                at: 0
            })
        );
        assert!(QueueName::parse_encoded("%fe").is_err());
        assert!(QueueName::parse_encoded("%80").is_err());
    }

    #[test]
    fn worker_ids_are_what_a_header_can_carry() {
        assert!(WorkerId::parse("worker-1@host:42").is_ok());
        assert!(WorkerId::parse("a b").is_ok());
        assert!(WorkerId::parse("5").is_ok());
        assert_eq!(WorkerId::parse("caf\u{e9}"), Err(NameError::NotAscii));
        assert_eq!(WorkerId::parse(" a"), Err(NameError::EdgeSpace));
        assert_eq!(WorkerId::parse("a "), Err(NameError::EdgeSpace));
        assert_eq!(WorkerId::parse("a\tb"), Err(NameError::Control));
        assert_eq!(WorkerId::parse("a/b"), Err(NameError::Slash));
        assert_eq!(WorkerId::parse_bytes(b"w\xff"), Err(NameError::NotAscii));
        // What older versions accepted still reads back from disk.
        assert!(WorkerId::restore("caf\u{e9} ").is_ok());
        assert!(WorkerId::restore("a\nb").is_err());
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Encodes every byte, the way a careful client would.
        fn encode_all(raw: &str) -> String {
            raw.bytes().map(|b| format!("%{b:02X}")).collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn decoding_arbitrary_text_never_panics_nor_grows(raw in "(?s).{0,300}") {
                if let Ok(decoded) = percent_decode(&raw) {
                    prop_assert!(decoded.len() <= raw.len());
                }
                let _ = QueueName::parse_encoded(&raw);
                let _ = WorkerId::parse(&raw);
                let _ = WorkerId::parse_bytes(raw.as_bytes());
            }

            #[test]
            fn decoding_escape_heavy_text_never_panics(raw in "[%0-9a-fA-FzZ/\\x80-\\xff]{0,64}") {
                if let Ok(decoded) = percent_decode(&raw) {
                    prop_assert!(decoded.len() <= raw.len());
                }
            }

            #[test]
            fn arbitrary_bytes_as_worker_header_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
                if let Ok(id) = WorkerId::parse_bytes(&raw) {
                    prop_assert_eq!(id.as_str().as_bytes(), &raw[..]);
                }
            }

            #[test]
            fn valid_names_round_trip_through_percent_encoding(raw in "[^/\\p{Cc}]{1,60}") {
                prop_assume!(raw.len() <= MAX_NAME_BYTES);
                let name = QueueName::parse(&raw);
                prop_assert!(name.is_ok());
                let decoded = QueueName::parse_encoded(&encode_all(&raw));
                prop_assert_eq!(decoded.ok(), name.ok());
                // Only `%` needs encoding for the name to decode back to itself.
                let light = raw.replace('%', "%25");
                prop_assert_eq!(percent_decode(&light).ok(), Some(raw.clone()));
            }

            #[test]
            fn valid_worker_ids_round_trip(raw in "[!-~][ -~]{0,40}[!-~]") {
                prop_assume!(!raw.contains('/'));
                let id = WorkerId::parse(&raw);
                prop_assert!(id.is_ok());
                let from_bytes = WorkerId::parse_bytes(raw.as_bytes());
                prop_assert_eq!(from_bytes.ok(), id.clone().ok());
                let decoded = percent_decode(&encode_all(&raw));
                prop_assert_eq!(decoded.ok(), Some(raw.clone()));
            }

            #[test]
            fn accepted_worker_ids_obey_the_rule(raw in "(?s).{0,40}") {
                if let Ok(id) = WorkerId::parse(&raw) {
                    let s = id.as_str();
                    prop_assert!(!s.is_empty() && s.len() <= MAX_NAME_BYTES);
                    prop_assert!(s.bytes().all(|b| (b' '..=b'~').contains(&b)));
                    prop_assert!(!s.starts_with(' ') && !s.ends_with(' ') && !s.contains('/'));
                }
            }
        }
    }
}
