//! One connection of a load, from first session to last: a writer and a
//! reply reader around a window per session, and under `--retry` the
//! reconnect loop that resends what a lost session left unacknowledged.
//!
//! Place in the data flow: between the batches (of the input, or of the
//! cluster router) and the server. Each connection runs here the same way,
//! whether it is the one connection of a single-server load or one of a
//! cluster's primaries.

use std::fmt;
use std::thread;

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, unbounded};

use crate::batch::{Batch, Expect, InFlight};
use crate::config::Config;
use crate::conn::{self, ConnectError, Connection, SessionReplay};
use crate::io_error::describe_io_error;
use crate::pace::Pace;
use crate::progress::Counters;
use crate::replies::{Replies, SessionEnd};
use crate::reply_failure::ReplyFailure;
use crate::retry::{self, Attempts, Outage};
use crate::stop::Stop;
use crate::stream::Stream;
use crate::summary::report;
use crate::tls::TlsConfig;
use crate::window::Window;
use crate::writer::{Redirects, Writer, WriterEnd, WriterOutcome};

/// What every session of one connection works with.
pub(crate) struct SessionShared<'a> {
    pub batches: &'a Receiver<Batch>,
    /// Cluster mode: see `Writer::redirects`.
    pub redirects: Option<Redirects<'a>>,
    pub stop: &'a Stop,
    /// The load's settings, with the endpoint of this connection.
    pub config: &'a Config,
    /// The TLS files of the configuration, loaded.
    pub tls: Option<&'a TlsConfig>,
    pub progress: Option<&'a Counters>,
    /// `--rate`, `--max-latency`: the budget shared by every connection.
    pub pace: Option<&'a Pace>,
    /// Cluster mode: the node's address, which messages start with.
    pub node: Option<&'a str>,
}

impl SessionShared<'_> {
    /// `message` as a report line, naming the node in cluster mode.
    fn report(&self, message: &str) {
        match self.node {
            Some(node) => report(&format!("pipeload: {node}: {message}")),
            None => report(&format!("pipeload: {message}")),
        }
    }
}

/// How the sessions of one connection ended.
pub(crate) struct ConnectionRun {
    pub bytes_sent: u64,
    pub commands_sent: u64,
    pub reconnects: u64,
    /// Why the connection gave up before the end of the load.
    pub failure: Option<ConnectionFailure>,
    /// What it still held when it ended, never acknowledged, in order.
    pub unsettled: Vec<InFlight>,
    /// Input commands of `unsettled` that were sent: they may have run.
    pub in_flight: u64,
    /// A reconnect found a new server instance (its `run_id` changed).
    pub server_restarted: bool,
}

/// Why a connection gave up before the end of the load.
#[derive(Debug)]
pub enum ConnectionFailure {
    /// Its session failed, and no reconnect was to be tried.
    Session(ReplyFailure),
    /// The `--retry` attempts of one outage were used up.
    GaveUp { retry: u32 },
    /// A stop came while it waited to reconnect.
    StoppedReconnecting,
    /// The server took a reconnect but refused its set-up (AUTH…).
    Refused(ConnectError),
}

impl ConnectionFailure {
    /// Whether redis-cli has its own words for it, printed without a prefix.
    pub fn is_worded_as_redis_cli(&self) -> bool {
        matches!(
            self,
            ConnectionFailure::Session(ReplyFailure::NoReplies { .. })
        )
    }
}

impl fmt::Display for ConnectionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionFailure::Session(failure) => failure.fmt(f),
            ConnectionFailure::GaveUp { retry } => {
                write!(
                    f,
                    "gave up after {retry} reconnect attempts (--retry {retry})"
                )
            }
            ConnectionFailure::StoppedReconnecting => f.write_str("stopped while reconnecting"),
            ConnectionFailure::Refused(error) => error.fmt(f),
        }
    }
}

/// Runs sessions on one connection until the load ends, reconnecting and
/// resending what was not acknowledged as `--retry` allows.
/// `on_all_written` is called as soon as a writer has written everything this
/// connection will be given.
pub(crate) fn run_connection(
    connection: Connection,
    shared: &SessionShared,
    replies: &mut Replies,
    on_all_written: &dyn Fn(),
) -> Result<ConnectionRun> {
    let config = shared.config;
    let mut run = ConnectionRun {
        bytes_sent: 0,
        commands_sent: 0,
        reconnects: 0,
        failure: None,
        unsettled: Vec::new(),
        in_flight: 0,
        server_restarted: false,
    };
    let Connection {
        mut stream,
        mut run_id,
    } = connection;
    let mut resend = Vec::new();
    let mut attempts = Attempts::new(config.retry);
    let mut outage: Option<Outage> = None;
    loop {
        let (written, session) = run_session(stream, resend, shared, replies, on_all_written)?;
        run.bytes_sent += written.bytes_sent;
        run.commands_sent += written.commands_sent;
        let failure = match written.end {
            // A quit cut the connection: no failure of its own.
            _ if shared.stop.is_quit() => None,
            WriterEnd::Failed(error) => {
                Some(ReplyFailure::ConnectionLost(describe_io_error(&error)))
            }
            _ => session
                .failure
                .filter(|failure| !matches!(failure, ReplyFailure::Stopped)),
        };
        let in_flight = sent_commands(&session.unacknowledged);
        resend = session.unacknowledged;
        resend.extend(written.unsent);
        let Some(failure) = failure else {
            run.unsettled = resend;
            run.in_flight = in_flight;
            return Ok(run);
        };
        if !failure.is_retryable() || config.retry == 0 || shared.stop.is_requested() {
            run.failure = Some(ConnectionFailure::Session(failure));
            run.unsettled = resend;
            run.in_flight = in_flight;
            return Ok(run);
        }
        shared.report(&failure.to_string());
        // A session that got no further than where the outage began is
        // the same outage: its attempts go on counting.
        let acknowledged = replies.tally().acknowledged;
        if outage
            .as_ref()
            .is_none_or(|outage| outage.is_over(acknowledged, &resend))
        {
            outage = Some(Outage::begin(acknowledged, &resend));
            attempts = Attempts::new(config.retry);
        }
        match reconnect(shared, replies.replay(), &mut attempts) {
            Ok(reconnected) => {
                run.reconnects += 1;
                if let (Some(known), Some(now)) = (&run_id, &reconnected.run_id)
                    && known != now
                {
                    run.server_restarted = true;
                    shared.report(&format!(
                        "the server restarted (it answers with a new run_id): the {} \
                         commands acknowledged before are lost unless it persisted them",
                        replies.tally().acknowledged
                    ));
                }
                run_id = reconnected.run_id.or(run_id);
                stream = reconnected.stream;
            }
            Err(gave_up) => {
                run.failure = Some(gave_up);
                run.unsettled = resend;
                run.in_flight = in_flight;
                return Ok(run);
            }
        }
    }
}

/// Input commands of `batches` that went to the server (refused lines and
/// pipeload's own markers did not).
fn sent_commands(batches: &[InFlight]) -> u64 {
    batches
        .iter()
        .flat_map(|in_flight| &in_flight.batch.commands[in_flight.first..in_flight.end])
        .filter(|command| matches!(command.expect, Expect::Reply | Expect::NoReply))
        .count() as u64
}

/// Runs one connection: a writer and a reply reader around a fresh window.
/// Returns how the writer ended and what is left unacknowledged, in order.
fn run_session(
    stream: Stream,
    resend: Vec<InFlight>,
    shared: &SessionShared,
    replies: &mut Replies,
    on_all_written: &dyn Fn(),
) -> Result<(WriterOutcome, SessionEnd)> {
    let SessionShared {
        batches,
        redirects,
        stop,
        config,
        progress,
        pace,
        ..
    } = *shared;
    let writer_stream = stream.try_clone().context("cannot set up the connection")?;
    // A quit cuts the connection through this handle.
    let _registration = stop.register(stream.try_clone().context("cannot set up the connection")?);
    let window = Window::new(config.window);
    let (in_flight_sender, in_flight_receiver) = unbounded::<InFlight>();
    let (written, session) = thread::scope(|scope| {
        let window = &window;
        let receiver = &in_flight_receiver;
        let writer = scope.spawn(move || {
            Writer {
                stream: writer_stream,
                batches,
                redirects,
                in_flight: in_flight_sender,
                window,
                stop,
                progress,
                pace,
            }
            .run(resend)
        });
        let reader =
            scope.spawn(move || replies.run_session(stream, receiver, window, config.pipe_timeout));
        let written = writer.join();
        if let Ok(WriterOutcome {
            end: WriterEnd::InputEnded,
            ..
        }) = &written
        {
            on_all_written();
        }
        (written, reader.join())
    });
    let (Ok(written), Ok(mut session)) = (written, session) else {
        anyhow::bail!("internal error: a connection thread panicked");
    };
    // Handed to the reader but never taken by it: after what it holds.
    session.unacknowledged.extend(in_flight_receiver.try_iter());
    Ok((written, session))
}

/// Connects again after a lost connection, pausing before each attempt
/// (100 ms, doubling, at most 5 s). Fails once `--retry` attempts are used
/// up for this outage, or when a stop is requested.
fn reconnect(
    shared: &SessionShared,
    replay: &SessionReplay,
    attempts: &mut Attempts,
) -> Result<Connection, ConnectionFailure> {
    let SessionShared {
        config, tls, stop, ..
    } = *shared;
    loop {
        let Some(pause) = attempts.next_pause() else {
            return Err(ConnectionFailure::GaveUp {
                retry: config.retry,
            });
        };
        shared.report(&format!(
            "reconnecting in {:.1} s ({attempts})",
            pause.as_secs_f64()
        ));
        if retry::pause_unless_stopped(stop, pause) {
            return Err(ConnectionFailure::StoppedReconnecting);
        }
        match conn::connect(config, tls, Some(replay)) {
            Ok(connection) => return Ok(connection),
            Err(error @ ConnectError::Unreachable { .. }) => report(&error.to_string()),
            Err(refused) => return Err(ConnectionFailure::Refused(refused)),
        }
    }
}
