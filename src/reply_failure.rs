//! `ReplyFailure`: why a connection's session ended before every command
//! was answered (no replies for `--pipe-timeout`, a lost connection, bytes
//! that are not RESP, a "not now" under `--retry`, or the writer stopping).
//!
//! Place in the data flow: a leaf, made by the reply reader and its
//! handlers, read by `connection` (retry or give up) and worded by the
//! summary.

use std::fmt;
use std::time::Duration;

/// Why a session ended before every command was answered.
#[derive(Debug)]
pub enum ReplyFailure {
    /// Nothing arrived for `--pipe-timeout`; `waiting` is the command at
    /// the head of the unanswered queue (`line 1 (BLPOP)`), when known.
    NoReplies {
        timeout: Duration,
        waiting: Option<String>,
    },
    /// The connection closed or failed.
    ConnectionLost(String),
    /// The server sent bytes that are not RESP.
    Garbled(String),
    /// With `--retry`: the server answered "not now" (`LOADING`…).
    Transient(String),
    /// The writer stopped (it reports why); nothing more will be answered.
    Stopped,
}

impl ReplyFailure {
    /// Whether a new connection may cure it.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ReplyFailure::ConnectionLost(_) | ReplyFailure::Garbled(_) | ReplyFailure::Transient(_)
        )
    }
}

impl fmt::Display for ReplyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyFailure::NoReplies { timeout, waiting } => {
                let seconds = timeout.as_secs_f64();
                match waiting {
                    Some(waiting) => write!(
                        f,
                        "No replies for {seconds} seconds: {waiting} is still waiting for its reply"
                    ),
                    None => write!(f, "No replies for {seconds} seconds: exiting."),
                }
            }
            ReplyFailure::ConnectionLost(reason) => write!(f, "connection lost: {reason}"),
            ReplyFailure::Garbled(reason) => {
                write!(
                    f,
                    "connection lost: the server's reply is not RESP: {reason}"
                )
            }
            ReplyFailure::Transient(message) => write!(f, "server busy: {message}"),
            ReplyFailure::Stopped => write!(f, "stopped"),
        }
    }
}
