//! What can go wrong talking to presque.

/// An error from a presque call: the server's answer (its status and `{"error"}`
/// message), or the connection, or an answer this client cannot read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 409 `lease is no longer held`: the lease ran out (or the job was handed to
    /// another worker). Drop the result: someone else will do, or has done, the job.
    #[error("lease is no longer held: {message}")]
    LeaseLost {
        /// The server's message.
        message: String,
    },
    /// 404 `queue is closed`: fetches are refused until the queue is opened again.
    #[error("queue is closed")]
    QueueClosed,
    /// 401 or 403: no token, a wrong one, or one whose role may not do this.
    #[error("not allowed ({status}): {message}")]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// Any other error answer: its status and the server's `{"error"}` message (or
    /// the body as text if it was not that).
    #[error("server answered {status}: {message}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The request did not get an answer (connection refused, reset, bad URL).
    #[error("cannot reach the server: {0}")]
    Http(#[from] reqwest::Error),
    /// An answer that does not say what the protocol says it does (a missing header,
    /// a body that is not the expected JSON).
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// A job that could not be turned into JSON, or read from it as the asked type.
    #[error("job is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// The HTTP status of an error answer, if the server gave one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::LeaseLost { .. } => Some(409),
            Error::QueueClosed => Some(404),
            Error::Unauthorized { status, .. } | Error::Server { status, .. } => Some(*status),
            Error::Http(e) => e.status().map(|s| s.as_u16()),
            Error::Protocol(_) | Error::Json(_) => None,
        }
    }

    /// The error for an answer with status `status` and body `body`.
    pub(crate) fn from_answer(status: u16, body: &[u8]) -> Error {
        #[derive(serde::Deserialize)]
        struct ErrorBody {
            error: String,
        }
        let message = match serde_json::from_slice::<ErrorBody>(body) {
            Ok(parsed) => parsed.error,
            Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
        };
        match status {
            409 => Error::LeaseLost { message },
            404 if message == "queue is closed" => Error::QueueClosed,
            401 | 403 => Error::Unauthorized { status, message },
            _ => Error::Server { status, message },
        }
    }
}
