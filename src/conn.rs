//! Connecting: TCP (with TLS when configured) or unix socket, then AUTH,
//! HELLO 3 and SELECT, one command at a time, before any input is sent;
//! under `--retry` also `INFO server`, for the server's `run_id`, so that a
//! reconnect can tell the same server from a restarted one.
//!
//! Place in the data flow: `run` connects once; the stream is then split into
//! the writer's half and the reply reader's half (`try_clone`). A failure
//! here is reported in redis-cli's words, nothing is sent, and the exit
//! status is 1. Passwords never appear in a message. A TLS session is set up
//! completely here (see `tls`), so a certificate either side refuses is a
//! connection error too.

use std::fmt;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::batch::CommandKind;
use crate::config::{Config, Credentials, Endpoint, IpFamily};
use crate::control::{Value, query_encoded};
use crate::encode::command_bytes;
use crate::io_error::describe_io_error;
use crate::stream::Stream;
use crate::tls::{self, TlsConfig};

/// A connection set up and ready for the input.
#[derive(Debug)]
pub struct Connection {
    pub stream: Stream,
    /// The `run_id` of the server instance that answered (`INFO server`),
    /// asked only under `--retry`; `None` as well when the server would not
    /// say (an ACL user without `INFO`, a proxy).
    pub run_id: Option<String>,
}

/// The connection could not be set up; `Display` is the one line to print.
#[derive(Debug)]
pub enum ConnectError {
    /// Worded as redis-cli words it.
    Unreachable { address: String, reason: String },
    /// A handshake command (AUTH, HELLO, SELECT) got an error or no answer.
    Handshake { command: String, reason: String },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Unreachable { address, reason } => {
                write!(f, "Could not connect to Redis at {address}: {reason}")
            }
            ConnectError::Handshake { command, reason } => write!(f, "{command} failed: {reason}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// What the input set up on its connection, which a new connection must
/// set up again: the last `AUTH`, `HELLO` and `SELECT` of the input that
/// succeeded, encoded as they were sent.
#[derive(Debug, Default, Clone)]
pub struct SessionReplay {
    auth: Option<Vec<u8>>,
    hello: Option<Vec<u8>>,
    select: Option<Vec<u8>>,
}

impl SessionReplay {
    /// Keeps `encoded`, a command of `kind` that succeeded, if it is one
    /// to replay.
    pub fn record(&mut self, kind: CommandKind, encoded: &[u8]) {
        let slot = match kind {
            CommandKind::Auth => &mut self.auth,
            CommandKind::Hello => &mut self.hello,
            CommandKind::Select => &mut self.select,
            CommandKind::Plain | CommandKind::Multi | CommandKind::EndMulti => return,
        };
        *slot = Some(encoded.to_vec());
    }

    /// The commands to send, each with its name for messages, in the order
    /// that keeps their effect: authenticate, then the protocol (a `HELLO`
    /// may authenticate too), then the database.
    fn commands(&self) -> impl Iterator<Item = (&'static str, &[u8])> {
        [
            ("AUTH of the input", &self.auth),
            ("HELLO of the input", &self.hello),
            ("SELECT of the input", &self.select),
        ]
        .into_iter()
        .filter_map(|(label, encoded)| Some((label, encoded.as_deref()?)))
    }
}

/// Connects to the configured server and runs the handshake, then sends
/// `replay` (what the input set up, after a reconnect) the same way.
pub fn connect(
    config: &Config,
    tls: Option<&TlsConfig>,
    replay: Option<&SessionReplay>,
) -> Result<Connection, ConnectError> {
    let unreachable = |reason: String| ConnectError::Unreachable {
        address: config.endpoint.to_string(),
        reason,
    };
    let mut stream = match &config.endpoint {
        Endpoint::Tcp { host, port } => {
            let stream = connect_tcp(host, *port, config.connect_timeout, config.prefer_ip)
                .map_err(unreachable)?;
            // Commands go out in large writes; the last small one of a load
            // must not wait for Nagle.
            let _ = stream.set_nodelay(true);
            match tls {
                None => Stream::Tcp(stream),
                Some(tls) => connect_tls(stream, tls, host, config)
                    .map_err(|reason| unreachable(format!("TLS handshake failed: {reason}")))?,
            }
        }
        Endpoint::Unix(path) => Stream::Unix(
            UnixStream::connect(path).map_err(|error| unreachable(describe_io_error(&error)))?,
        ),
    };
    let run_id = handshake(&mut stream, config, replay)?;
    Ok(Connection { stream, run_id })
}

/// Sets TLS up on a connected socket: the handshake, then one round trip.
/// Under TLS 1.3 the server checks the client certificate only after the
/// client has finished, so a refused (or missing) certificate shows only in
/// the server's next answer: a PING confirms the session before anything
/// else is sent. Any reply does, even an error (`-NOAUTH` before AUTH).
/// Waits are bounded by `-t`, else `--pipe-timeout`: it is all connecting.
fn connect_tls(
    socket: TcpStream,
    tls: &TlsConfig,
    host: &str,
    config: &Config,
) -> Result<Stream, String> {
    let timeout = config.connect_timeout.or(config.pipe_timeout);
    let mut stream = Stream::Tls(tls::handshake(socket, tls, host, timeout)?);
    exchange(&mut stream, &command_bytes(&[b"PING"]))?;
    Ok(stream)
}

fn connect_tcp(
    host: &str,
    port: u16,
    timeout: Option<Duration>,
    prefer_ip: Option<IpFamily>,
) -> Result<TcpStream, String> {
    let mut addresses: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|error| describe_io_error(&error))?
        .collect();
    // -4 / -6: the preferred family's addresses first, the others after.
    if let Some(preferred) = prefer_ip {
        addresses.sort_by_key(|address| address.is_ipv4() != (preferred == IpFamily::V4));
    }
    let mut last_error = String::from("no address found");
    for address in addresses {
        let attempt = match timeout {
            Some(timeout) => TcpStream::connect_timeout(&address, timeout),
            None => TcpStream::connect(address),
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(error) => last_error = describe_io_error(&error),
        }
    }
    Err(last_error)
}

/// Sets the connection up; returns the server's `run_id` under `--retry`.
fn handshake(
    stream: &mut Stream,
    config: &Config,
    replay: Option<&SessionReplay>,
) -> Result<Option<String>, ConnectError> {
    // A server that accepts but never answers must not hang the handshake.
    let answer_timeout = config.pipe_timeout.or(config.connect_timeout);
    let _ = stream.set_read_timeout(answer_timeout);
    if let Some(Credentials { user, password }) = &config.credentials {
        let mut auth: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = user {
            auth.push(user.as_bytes());
        }
        auth.push(password.as_bytes());
        request(stream, "AUTH", &auth)?;
    }
    if config.resp3 {
        request(stream, "HELLO 3", &[b"HELLO", b"3"])?;
    }
    if config.db != 0 {
        let db = config.db.to_string();
        request(stream, &format!("SELECT {db}"), &[b"SELECT", db.as_bytes()])?;
    }
    for (label, encoded) in replay.into_iter().flat_map(SessionReplay::commands) {
        send_request(stream, label, encoded)?;
    }
    // Last, once authenticated as the input is: only a reconnect compares
    // it, so a load without `--retry` pays no extra round trip.
    let run_id = match config.retry > 0 {
        true => server_run_id(stream)?,
        false => None,
    };
    let _ = stream.set_read_timeout(None);
    Ok(run_id)
}

/// The `run_id` in the server's `INFO server`; `None` when it gives none
/// or refuses (`-NOPERM`): the load need not stop for want of it.
fn server_run_id(stream: &mut Stream) -> Result<Option<String>, ConnectError> {
    let info = query_encoded(stream, &command_bytes(&[b"INFO", b"server"])).map_err(|reason| {
        ConnectError::Handshake {
            command: "INFO server".to_owned(),
            reason,
        }
    })?;
    Ok(info.as_bytes().and_then(run_id_in_info))
}

/// The value of the `run_id:` line of an `INFO` text.
fn run_id_in_info(info: &[u8]) -> Option<String> {
    info.split(|&byte| byte == b'\n')
        .find_map(|line| line.strip_prefix(b"run_id:"))
        .map(|run_id| String::from_utf8_lossy(run_id.trim_ascii()).into_owned())
        .filter(|run_id| !run_id.is_empty())
}

/// Sends one command and waits for its reply; an error reply fails with the
/// server's text.
fn request(stream: &mut Stream, label: &str, args: &[&[u8]]) -> Result<(), ConnectError> {
    send_request(stream, label, &command_bytes(args))
}

/// Sends one encoded command and waits for its reply; `label` names it in
/// errors.
fn send_request(stream: &mut Stream, label: &str, encoded: &[u8]) -> Result<(), ConnectError> {
    let failed = |reason: String| ConnectError::Handshake {
        command: label.to_owned(),
        reason,
    };
    match exchange(stream, encoded).map_err(failed)? {
        Some(error_reply) => Err(failed(error_reply)),
        None => Ok(()),
    }
}

/// Sends one encoded command and waits for its reply. Returns the text of
/// an error reply, or fails with why no reply came.
fn exchange(stream: &mut Stream, encoded: &[u8]) -> Result<Option<String>, String> {
    match query_encoded(stream, encoded)? {
        Value::Error(message) => Ok(Some(message)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_is_read_from_the_info_text() {
        let info = b"# Server\r\nredis_version:7.0.15\r\nrun_id:5f3c0a9e\r\ntcp_port:6390\r\n";
        assert_eq!(run_id_in_info(info).as_deref(), Some("5f3c0a9e"));
        assert_eq!(run_id_in_info(b"# Server\r\nrun_id:\r\n"), None);
        assert_eq!(run_id_in_info(b"OK"), None);
    }
}
