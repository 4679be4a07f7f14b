//! One connection of a load, from first session to last: a writer and a
//! reply reader around a window per session, and under `--retry` the
//! reconnect loop that resends what a lost session left unacknowledged.
//!
//! Place in the data flow: between the batches (of the input, or of the
//! cluster router) and the server. Each connection runs here the same way,
//! whether it is the one connection of a single-server load or one of a
//! cluster's primaries. A cluster's primary whose connection is lost may
//! be handed over (`NodeLoss`): once the cluster has moved its slots to
//! other primaries (a replica promoted, the node removed), what it left
//! unacknowledged goes to their new owners, and the lane forwards what it
//! is still given until the load ends.

use std::convert::Infallible;
use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, bounded, select, unbounded};

use crate::batch::{Batch, Expect, InFlight};
use crate::config::Config;
use crate::conn::{self, ConnectError, Connection, SessionReplay};
use crate::handover::LaneNode;
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
    /// A routed lane: see `Writer::router_done`.
    pub router_done: Option<&'a Receiver<Infallible>>,
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
    /// Cluster mode: the node's index, and its hand-over when lost.
    pub lane_node: Option<LaneNode<'a>>,
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

impl ConnectionRun {
    /// A lane (for a node found mid-load) whose first connection failed:
    /// nothing was sent on it.
    pub fn never_connected(error: ConnectError) -> Self {
        ConnectionRun {
            bytes_sent: 0,
            commands_sent: 0,
            reconnects: 0,
            failure: Some(ConnectionFailure::Refused(error)),
            unsettled: Vec::new(),
            in_flight: 0,
            server_restarted: false,
        }
    }
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
    /// Cluster mode: the node's slots moved to other primaries while it
    /// was reconnected: its commands go to them (not a failure).
    SlotsMovedAway,
    /// The server took a reconnect but refused its set-up (AUTH…), or a
    /// node found mid-load could not be connected.
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
            ConnectionFailure::SlotsMovedAway => f.write_str("its slots moved to other primaries"),
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
    // A cluster's primary may be failing over: its slots are waited for as
    // long as a promotion may take, from the start of the outage, even
    // after the attempts are used up.
    let mut promotion_deadline: Option<Instant> = None;
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
        // A node that owns no slot any more (removed after its slots moved
        // away) and held nothing unanswered is simply gone.
        if let Some(lane_node) = shared.lane_node
            && resend.is_empty()
            && failure.is_retryable()
            && !shared.stop.is_requested()
            && lane_node.loss.moved_away(lane_node.index)
        {
            shared.report(&format!("{failure}: it owns no slot any more"));
            lane_node.loss.node_lost(lane_node.index);
            forward_until_the_end(shared, lane_node, on_all_written);
            return Ok(run);
        }
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
            promotion_deadline = shared
                .lane_node
                .map(|lane_node| Instant::now() + lane_node.loss.promotion_wait());
        }
        match reconnect(
            shared,
            replies.replay(),
            &mut attempts,
            promotion_deadline,
            &mut resend,
        ) {
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
            Err(ConnectionFailure::SlotsMovedAway) if let Some(lane_node) = shared.lane_node => {
                shared.report(&format!(
                    "its slots moved to other primaries: {} commands it held go to them",
                    resend.iter().map(InFlight::command_count).sum::<usize>()
                ));
                lane_node.loss.node_lost(lane_node.index);
                lane_node.loss.forward(resend);
                forward_until_the_end(shared, lane_node, on_all_written);
                return Ok(run);
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

/// A lost node's lane after its hand-over: whatever the router and the
/// other lanes still send it goes on to the owners of the commands' slots,
/// until its input has ended and nothing can be redirected any more, or a
/// stop (what it did not forward then stays in its channels, unsettled).
fn forward_until_the_end(shared: &SessionShared, lane_node: LaneNode, on_all_written: &dyn Fn()) {
    let Some(redirects) = shared.redirects else {
        return;
    };
    let mut input_ended = false;
    loop {
        let batch = match input_ended {
            false => select! {
                recv(shared.batches) -> batch => {
                    input_ended = batch.is_err();
                    batch.ok()
                }
                recv(redirects.batches) -> batch => batch.ok(),
                recv(shared.stop.woken()) -> _ => return,
            },
            true => select! {
                recv(redirects.batches) -> batch => batch.ok(),
                recv(redirects.all_settled) -> _ => break,
                recv(shared.stop.woken()) -> _ => return,
            },
        };
        if let Some(batch) = batch {
            let whole = InFlight::whole(std::sync::Arc::new(batch));
            lane_node.loss.forward(vec![whole]);
        }
    }
    on_all_written();
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
        router_done,
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
    // Dropped when the reader returns: a writer waiting for batches learns
    // that the session failed (a cluster's writer may otherwise wait for
    // the end of the load, and the failed command with it, for ever).
    let (reader_returns, reader_gone) = bounded::<Infallible>(0);
    let (written, session) = thread::scope(|scope| {
        let window = &window;
        let receiver = &in_flight_receiver;
        let reader_gone = &reader_gone;
        let writer = scope.spawn(move || {
            Writer {
                stream: writer_stream,
                batches,
                redirects,
                router_done,
                in_flight: in_flight_sender,
                window,
                stop,
                progress,
                reader_gone,
                pace,
            }
            .run(resend)
        });
        let reader = scope.spawn(move || {
            let _returns = reader_returns;
            replies.run_session(stream, receiver, window, config.pipe_timeout)
        });
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

/// How often the layout is read while a lost primary's slots are waited for.
const PROMOTION_POLL: Duration = Duration::from_millis(250);

/// Request bytes a cluster's lost primary takes off its channel while it
/// waits, so that the router is not held up and the other primaries go on
/// loading: memory stays bounded, whatever the input.
const HELD_WHILE_WAITING: usize = 32 * 1024 * 1024;

/// Waits `pause` unless a stop comes first (then returns true), meanwhile
/// taking the batches the router hands this lost primary into `held`, up
/// to `HELD_WHILE_WAITING` bytes, after what it holds already: they are
/// sent, in order, to wherever its commands go next.
fn pause_holding_batches(
    shared: &SessionShared,
    pause: Duration,
    held: &mut Vec<InFlight>,
) -> bool {
    let deadline = Instant::now() + pause;
    let mut held_bytes: usize = held.iter().map(|part| part.bytes().len()).sum();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if held_bytes >= HELD_WHILE_WAITING {
            return retry::pause_unless_stopped(shared.stop, left);
        }
        select! {
            recv(shared.batches) -> batch => match batch {
                Ok(batch) => {
                    held_bytes += batch.bytes.len();
                    held.push(InFlight::whole(std::sync::Arc::new(batch)));
                }
                // The input has ended: nothing more to take.
                Err(_) => return retry::pause_unless_stopped(shared.stop, left),
            },
            recv(shared.stop.woken()) -> _ => return true,
            default(left) => return shared.stop.is_requested(),
        }
    }
}

/// Connects again after a lost connection, pausing before each attempt
/// (100 ms, doubling, at most 5 s). Fails once `--retry` attempts are used
/// up for this outage (and, for a cluster's primary, `promotion_deadline`
/// has passed), or when a stop is requested; a primary whose slots moved
/// away meanwhile is not reconnected (`SlotsMovedAway`).
fn reconnect(
    shared: &SessionShared,
    replay: &SessionReplay,
    attempts: &mut Attempts,
    promotion_deadline: Option<Instant>,
    held: &mut Vec<InFlight>,
) -> Result<Connection, ConnectionFailure> {
    let SessionShared {
        config, tls, stop, ..
    } = *shared;
    loop {
        let mut counted = true;
        let pause = match attempts.next_pause() {
            Some(pause) => {
                shared.report(&format!(
                    "reconnecting in {:.1} s ({attempts})",
                    pause.as_secs_f64()
                ));
                pause
            }
            None if promotion_deadline.is_some_and(|deadline| Instant::now() < deadline) => {
                counted = false;
                PROMOTION_POLL
            }
            None => {
                return Err(ConnectionFailure::GaveUp {
                    retry: config.retry,
                });
            }
        };
        let stopped = match shared.lane_node {
            Some(_) => pause_holding_batches(shared, pause, held),
            None => retry::pause_unless_stopped(stop, pause),
        };
        if stopped {
            return Err(ConnectionFailure::StoppedReconnecting);
        }
        if let Some(lane_node) = shared.lane_node
            && lane_node.loss.moved_away(lane_node.index)
        {
            return Err(ConnectionFailure::SlotsMovedAway);
        }
        match conn::connect(config, tls, Some(replay)) {
            Ok(connection) => return Ok(connection),
            Err(error @ ConnectError::Unreachable { .. }) if counted => report(&error.to_string()),
            Err(ConnectError::Unreachable { .. }) => {}
            Err(refused) => return Err(ConnectionFailure::Refused(refused)),
        }
    }
}
