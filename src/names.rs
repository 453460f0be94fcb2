//! Validated names: queue names and worker ids. A name that reaches a queue or the
//! registry (and, later, a file on disk) has passed these checks.

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

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A worker's id, with the same rules as a queue name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(Arc<str>);

impl WorkerId {
    /// Validates `raw` as a worker id.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
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
