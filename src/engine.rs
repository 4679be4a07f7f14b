//! One load, from start to summary, whatever the server: the input thread,
//! the route, one lane (connection) per server connection, and the summary
//! concluded once for all of them. One server is the engine with one lane
//! and a route that passes the input's batches through; `cluster::load`
//! gives it one lane per primary and the slot router.
//!
//! Place in the data flow: `run` hands it the connected server(s); it
//! starts the input (with the progress display), runs the lanes
//! (`run_lanes`, each a `connection`; a cluster's route may ask for more
//! mid-load, for a node it found), then `LoadStart::finish` prints the
//! one summary: the tally of every lane, the resume point (the first
//! command not settled on any lane), the exit status.

use std::convert::Infallible;
use std::ops::Range;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender, TryRecvError, bounded, never, select, unbounded};

use crate::batch::{Batch, Expect};
use crate::config::Config;
use crate::conn::Connection;
use crate::connection::{ConnectionRun, SessionShared, run_connection};
use crate::handlers::errors::ErrorsFile;
use crate::handover::LaneNode;
use crate::input::{self, BatchSize, InputOptions, OpenSource, read_input};
use crate::input_watch::InputWatch;
use crate::pace::{self, Pace, Probe};
use crate::progress::{self, Counters};
use crate::replies::{Replies, ReplyContext};
use crate::reply_order::RepliesOut;
use crate::retry;
use crate::route::{NewLane, Route};
use crate::stop::{Stop, StopReason};
use crate::summary::{
    ClusterEvents, ConnectionCounts, ErrorLog, NodeCounts, Outcome, Tally, report,
};
use crate::tls::TlsConfig;
use crate::writer::Redirects;

/// Batches waiting between input and writer: enough to keep the writer busy
/// while input frames the next one, few enough to keep memory flat.
pub(crate) const BATCH_CHANNEL_CAPACITY: usize = 4;

/// Loads the input into one server: the engine with one connection, which
/// takes the input's batches as they come.
pub(crate) fn load(
    connection: Connection,
    sources: Vec<OpenSource>,
    errors_file: Option<ErrorsFile>,
    stop: Arc<Stop>,
    tls: Option<&TlsConfig>,
    config: &Config,
) -> Result<ExitCode> {
    let mut load = start_load(sources, errors_file.is_some(), 1, stop, tls, config)?;
    let (shared, batches, input) = load.parts(tls, config);
    let replies = shared.replies(0, errors_file);
    let lane = shared.lane(Some(connection), batches.clone(), config.clone(), replies);
    let end = run_lanes(vec![lane], Route::PassThrough, None, input, config)?;
    Ok(load.finish(end, config))
}

/// One connection of a load, with what it reads and what its reply reader
/// shares with the others.
pub(crate) struct Lane<'a> {
    /// Connected up front, or (a node found mid-load) connected by the
    /// lane itself when it starts.
    pub connection: Option<Connection>,
    pub batches: Receiver<Batch>,
    /// Cluster mode: commands other lanes send here, and when none can
    /// come any more (see `Writer::redirects`).
    pub redirects: Option<Receiver<Batch>>,
    pub all_settled: Option<&'a Receiver<Infallible>>,
    /// A routed lane (a cluster's, or one of `--connections`): disconnects
    /// once the router has finished (see `Writer::router_done`).
    pub router_done: Option<&'a Receiver<Infallible>>,
    pub stop: &'a Stop,
    /// The load's settings, with the endpoint of this connection.
    pub config: Config,
    pub tls: Option<&'a TlsConfig>,
    pub progress: Option<&'a Counters>,
    /// Cluster mode: the node's address, which messages start with.
    pub node: Option<String>,
    /// Cluster mode: the node's index, and its hand-over when lost.
    pub lane_node: Option<LaneNode<'a>>,
    /// `--rate`, `--max-latency`: the budget shared by every lane.
    pub pace: Option<&'a Pace>,
    pub replies: Replies<'a>,
}

/// What every lane of a load shares, borrowed from its `LoadStart`.
pub(crate) struct LaneShared<'a> {
    pub stop: &'a Stop,
    source_names: &'a [Option<String>],
    error_log: &'a ErrorLog,
    progress: Option<&'a Counters>,
    pace: Option<&'a Pace>,
    /// `--replies`: where every reply is written, in input order.
    pub replies_out: Option<&'a RepliesOut>,
    tls: Option<&'a TlsConfig>,
    max_errors: Option<u64>,
    resend_transient: bool,
}

impl<'a> LaneShared<'a> {
    /// The reply context of lane `lane` with the shared parts only (no
    /// cluster links, no `--connections` count).
    pub(crate) fn replies(&self, lane: usize, errors_file: Option<ErrorsFile>) -> ReplyContext<'a> {
        ReplyContext {
            source_names: self.source_names,
            stop: self.stop,
            error_log: self.error_log,
            progress: self.progress,
            max_errors: self.max_errors,
            resend_transient: self.resend_transient,
            errors_file,
            cluster: None,
            replies_out: self.replies_out,
            spread: None,
            lane,
        }
    }

    /// A lane that takes `batches` on `connection` (`None`: it connects
    /// when it starts), with its own `config` (its endpoint) and reply
    /// context; no redirects, no node.
    pub(crate) fn lane(
        &self,
        connection: Option<Connection>,
        batches: Receiver<Batch>,
        config: Config,
        replies: ReplyContext<'a>,
    ) -> Lane<'a> {
        Lane {
            connection,
            batches,
            redirects: None,
            all_settled: None,
            router_done: None,
            stop: self.stop,
            config,
            tls: self.tls,
            progress: self.progress,
            node: None,
            lane_node: None,
            pace: self.pace,
            replies: Replies::new(replies),
        }
    }
}

/// Lanes a route asks for mid-load (a cluster's node found by a redirect
/// or a new layout), and how to make one from a request.
pub(crate) struct JoiningLanes<'r, 'a> {
    pub requests: &'r Receiver<NewLane>,
    pub make: &'r dyn Fn(NewLane) -> Lane<'a>,
}

/// What one lane hands back when it ends.
struct LaneEnd {
    tally: Tally,
    run: ConnectionRun,
    /// Batches it was given and never sent.
    waiting: Vec<Batch>,
    address: Option<String>,
}

/// Tells the thread that runs the lanes that one has ended, even by
/// unwinding.
struct LaneDone<'s>(&'s Sender<()>);

impl Drop for LaneDone<'_> {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// Runs one lane on the calling thread until the load ends; connects it
/// first when it was not connected up front.
fn run_lane(lane: Lane, on_all_written: &dyn Fn()) -> Result<LaneEnd> {
    let Lane {
        connection,
        batches,
        redirects,
        all_settled,
        router_done,
        stop,
        config,
        tls,
        progress,
        node,
        lane_node,
        pace,
        mut replies,
    } = lane;
    let shared = SessionShared {
        batches: &batches,
        redirects: redirects
            .as_ref()
            .zip(all_settled)
            .map(|(batches, all_settled)| Redirects {
                batches,
                all_settled,
            }),
        router_done,
        stop,
        config: &config,
        tls,
        progress,
        node: node.as_deref(),
        lane_node,
        pace,
    };
    let run = match connection {
        Some(connection) => run_connection(connection, &shared, &mut replies, on_all_written)?,
        // A node found mid-load: set up as the input set up the others.
        None => match retry::connect_first(&config, tls, stop, Some(replies.replay())) {
            Ok(connection) => run_connection(connection, &shared, &mut replies, on_all_written)?,
            Err(error) => ConnectionRun::never_connected(error),
        },
    };
    if run.failure.is_some() {
        // One lane given up: the others finish what is in flight.
        stop.request(StopReason::NodeLost);
    }
    // Batches still waiting for this lane were never sent; once the router
    // has finished, no more can come. (A lane ends before the router only
    // when the load stops, and a stopping router returns at once.)
    if let Some(router_done) = router_done {
        let _ = router_done.recv();
    }
    let mut waiting: Vec<Batch> = batches.try_iter().collect();
    if let Some(redirects) = &redirects {
        waiting.extend(redirects.try_iter());
    }
    Ok(LaneEnd {
        tally: replies.tally(),
        run,
        waiting,
        address: node,
    })
}

/// Runs every lane on its own thread, and the router when there is one,
/// until the load ends; adds up what they hand back. Lanes the route asks
/// for meanwhile (`joining`) start as they come. When one lane gives up,
/// the others finish what is in flight.
pub(crate) fn run_lanes<'a>(
    lanes: Vec<Lane<'a>>,
    route: Route,
    joining: Option<JoiningLanes<'_, 'a>>,
    input: &mut InputWatch,
    config: &Config,
) -> Result<ConnectionsEnd> {
    let written = Mutex::new((input, Vec::<bool>::new()));
    let lane_wrote_all = |lane: usize| {
        let mut written = written.lock().unwrap_or_else(PoisonError::into_inner);
        let (input, lanes_done) = &mut *written;
        lanes_done[lane] = true;
        if lanes_done.iter().all(|done| *done) {
            input.all_written();
        }
    };
    let (done, lane_ended) = unbounded::<()>();
    let no_requests = never();
    let requests = joining
        .as_ref()
        .map_or(&no_requests, |joining| joining.requests);
    let (routed, ends) = thread::scope(|scope| -> Result<_> {
        let router = match route {
            Route::PassThrough => None,
            Route::Router(router) => Some(scope.spawn(router)),
        };
        let mut running = Vec::new();
        let start = |running: &mut Vec<_>, lane: Lane<'a>| {
            let index = {
                let mut written = written.lock().unwrap_or_else(PoisonError::into_inner);
                written.1.push(false);
                written.1.len() - 1
            };
            let (lane_wrote_all, done) = (&lane_wrote_all, &done);
            running.push(scope.spawn(move || {
                let _done = LaneDone(done);
                run_lane(lane, &|| lane_wrote_all(index))
            }));
        };
        for lane in lanes {
            start(&mut running, lane);
        }
        // A lane asks for another before it ends: once every lane started
        // has ended and no request waits, none can come.
        let mut ended = 0;
        loop {
            if let Some(joining) = &joining {
                for request in joining.requests.try_iter() {
                    start(&mut running, (joining.make)(request));
                }
            }
            if ended == running.len() {
                break;
            }
            select! {
                recv(lane_ended) -> _ => ended += 1,
                recv(requests) -> request => {
                    if let (Ok(request), Some(joining)) = (request, &joining) {
                        start(&mut running, (joining.make)(request));
                    }
                }
            }
        }
        let routed = router.map(|router| router.join().unwrap_or_default());
        let mut ends = Vec::with_capacity(running.len());
        for lane in running {
            let Ok(end) = lane.join() else {
                anyhow::bail!("internal error: a connection thread panicked");
            };
            ends.push(end?);
        }
        Ok((routed, ends))
    })?;

    let mut end = ConnectionsEnd::default();
    // The first input command not known to be applied, over every lane.
    let mut first_unsettled = u64::MAX;
    let mut note_unsettled = |batch: &Batch, commands: Range<usize>| {
        for index in commands {
            if batch.commands[index].expect != Expect::Marker {
                first_unsettled = first_unsettled.min(batch.seq(index));
            }
        }
    };
    for LaneEnd {
        tally,
        run,
        waiting,
        address,
    } in ends
    {
        end.tally.add(&tally);
        end.reconnects += run.reconnects;
        end.commands_sent += run.commands_sent;
        end.bytes_sent += run.bytes_sent;
        end.in_flight += run.in_flight;
        end.server_restarted |= run.server_restarted;
        end.connections.push(ConnectionCounts {
            replies: tally.replies,
            errors: tally.errors(),
            commands_sent: run.commands_sent,
            reconnects: run.reconnects,
        });
        if let Some(failure) = run.failure {
            let message = match &address {
                Some(address) => format!("{address}: {failure}"),
                None => failure.to_string(),
            };
            match address.is_none() && failure.is_worded_as_redis_cli() {
                true => report(&message),
                false => report(&format!("pipeload: {message}")),
            }
            end.failures.push(message);
        }
        for unsettled in &run.unsettled {
            note_unsettled(&unsettled.batch, unsettled.first..unsettled.end);
        }
        for batch in &waiting {
            note_unsettled(batch, 0..batch.commands.len());
        }
        if let Some(address) = address {
            // With `--connections`, a node's lanes add up to its counts.
            match end.nodes.iter_mut().find(|node| node.address == address) {
                Some(node) => {
                    node.replies += tally.replies;
                    node.errors += tally.errors();
                }
                None => end.nodes.push(NodeCounts {
                    address,
                    replies: tally.replies,
                    errors: tally.errors(),
                }),
            }
        }
    }
    let nothing_unsettled = first_unsettled == u64::MAX;
    (end.acknowledged, end.nothing_left) = match routed {
        // One lane counts its own settled prefix exactly.
        None => (config.skip + end.tally.acknowledged, nothing_unsettled),
        Some(routed) => (
            first_unsettled
                .saturating_sub(1)
                .min(routed.delivered_up_to)
                .max(config.skip),
            routed.input_ended && nothing_unsettled,
        ),
    };
    Ok(end)
}

/// What a load, single-server or cluster, starts with.
pub(crate) struct LoadStart {
    pub started: Instant,
    pub stop: Arc<Stop>,
    pub source_names: Vec<Option<String>>,
    pub error_log: Arc<ErrorLog>,
    pub counters: Option<Arc<Counters>>,
    /// The input's batches.
    pub batches: Receiver<Batch>,
    pub input: InputWatch,
    /// `--replies`: where every reply is written, in input order.
    pub replies_out: Option<RepliesOut>,
    /// `--rate`, `--max-latency`: the budget every connection shares.
    pub pace: Option<Arc<Pace>>,
    /// `--max-latency`: the probe that sets the pace's rate.
    pub probe: Option<Probe>,
}

/// What the connections of a load hand back when they have all ended.
#[derive(Default)]
pub(crate) struct ConnectionsEnd {
    pub tally: Tally,
    /// Why connections gave up before the end (already reported).
    pub failures: Vec<String>,
    pub reconnects: u64,
    pub commands_sent: u64,
    pub bytes_sent: u64,
    /// Commands sent and never answered: they may have run.
    pub in_flight: u64,
    /// Input commands, from the very start (`--skip` included), every one
    /// of which is settled.
    pub acknowledged: u64,
    /// No command taken from the input is left unsettled or unsent.
    pub nothing_left: bool,
    /// Cluster mode: per primary.
    pub nodes: Vec<NodeCounts>,
    /// Per connection, in lane order.
    pub connections: Vec<ConnectionCounts>,
    /// A reconnect found a new server instance (`run_id` changed).
    pub server_restarted: bool,
    /// Cluster mode: what happened to the layout.
    pub cluster: Option<ClusterEvents>,
}

/// Starts the progress display and the input thread. Never returns when a
/// signal came while connecting (the signal ends the run itself).
/// `lanes`: how many connections the route splits the input's batches
/// between.
pub(crate) fn start_load(
    sources: Vec<OpenSource>,
    keep_originals: bool,
    lanes: usize,
    stop: Arc<Stop>,
    tls: Option<&TlsConfig>,
    config: &Config,
) -> Result<LoadStart> {
    // Before loading begins: a file that cannot be created fails the run
    // with nothing sent.
    let replies_out = match &config.replies {
        Some(options) => Some(RepliesOut::create(
            options,
            &config.sources,
            config.skip,
            Arc::clone(&stop),
        )?),
        None => None,
    };
    // Connected before loading begins: a probe that cannot connect fails
    // the run with nothing sent.
    let probe_connection = pace::connect_probe(config, tls)?;
    if !stop.begin_loading() {
        wait_for_exit();
    }
    let started = Instant::now();
    let source_names = input::source_names(&sources);
    let error_log = Arc::new(ErrorLog::new(config.error_lines));
    let (counters, display) = start_progress(config, &error_log);
    let pace = Pace::new(&config.pace, counters.clone()).map(Arc::new);
    let probe = match (&pace, probe_connection) {
        (Some(pace), Some(connection)) => Some(pace::start_probe(connection, pace, config, &stop)?),
        _ => None,
    };
    let (batch_sender, batches) = bounded::<Batch>(BATCH_CHANNEL_CAPACITY);
    let options = InputOptions {
        format: config.format,
        confirm_unanswered_tail: true,
        skip: config.skip,
        keep_originals,
        progress: counters.clone(),
        cluster: config.cluster,
        records: config.records.clone(),
        batch_size: BatchSize::for_lanes(lanes),
    };
    // Not scoped: when the load stops early the input thread may be blocked
    // on a source that never ends, and must not keep the process alive.
    let handle = thread::Builder::new()
        .name("input".into())
        .spawn(move || read_input(sources, options, &batch_sender))
        .context("cannot start the input thread")?;
    Ok(LoadStart {
        started,
        stop,
        source_names,
        error_log,
        counters,
        batches,
        input: InputWatch::new(handle, config.json, display),
        replies_out,
        pace,
        probe,
    })
}

impl LoadStart {
    /// What the lanes share, the input's batches (for the route), and the
    /// input thread as `run_lanes` watches it.
    pub(crate) fn parts<'a>(
        &'a mut self,
        tls: Option<&'a TlsConfig>,
        config: &Config,
    ) -> (LaneShared<'a>, &'a Receiver<Batch>, &'a mut InputWatch) {
        let shared = LaneShared {
            stop: &self.stop,
            source_names: &self.source_names,
            error_log: &self.error_log,
            progress: self.counters.as_deref(),
            pace: self.pace.as_deref(),
            replies_out: self.replies_out.as_ref(),
            tls,
            max_errors: config.max_errors,
            resend_transient: config.retry > 0,
        };
        (shared, &self.batches, &mut self.input)
    }

    /// Prints the summary of a load whose connections have all ended and
    /// returns its exit status. The load is complete when the whole input
    /// was read and every command of it settled, with no signal received;
    /// otherwise the summary says where to resume.
    pub(crate) fn finish(mut self, end: ConnectionsEnd, config: &Config) -> ExitCode {
        self.input.finish_display();
        drop(self.probe.take());
        let Some(stopped) = self.stop.conclude() else {
            wait_for_exit();
        };
        let mut tally = end.tally;
        let mut failures = end.failures;
        if let Some(replies_out) = &self.replies_out
            && let Some(failure) = replies_out.finish()
        {
            failures.push(failure);
        }
        tally.fatal += failures.len() as u64;
        // A closed, empty channel: the input thread has returned, so joining
        // it cannot block; whatever it read was taken.
        let input_taken = matches!(self.batches.try_recv(), Err(TryRecvError::Disconnected));
        match input_taken {
            true => self.input.join(),
            false => self.input.collect_if_finished(),
        }
        if let Some(message) = self.input.report_failure() {
            tally.fatal += 1;
            failures.push(message);
        }
        self.error_log.report_hidden();
        let signalled = matches!(stopped, Some(StopReason::Signal(_)));
        let complete = input_taken
            && self.input.is_complete()
            && end.nothing_left
            && failures.is_empty()
            && !signalled;
        if complete {
            self.input.announce_transferred();
        }
        // The commands of a transaction the input never closed were queued,
        // then discarded with the connection: not applied.
        let acknowledged = match self.input.unfinished_transaction() {
            Some(multi) => end.acknowledged.min(multi - 1),
            None => end.acknowledged,
        };
        // `--replies`: a command whose line never reached the file (a full
        // disk, a reader gone) is not done yet: a load resumed there writes it.
        let acknowledged = match &self.replies_out {
            Some(replies_out) => acknowledged.min(replies_out.written_through()),
            None => acknowledged,
        };
        // `--skip` beyond the end: the whole input was left out, and a
        // resume hint would only repeat the mistake.
        let skipped_beyond_input = self.input.skipped_beyond_input();
        let acknowledged = skipped_beyond_input.map_or(acknowledged, |commands| commands);
        // Every lane's settled commands (so far a count, `--skip` left out)
        // beyond the resume point: ahead of a slower lane, or their replies
        // never written out.
        let answered_after_resume = (config.skip + tally.acknowledged).saturating_sub(acknowledged);
        // Counted from the very start of the input, `--skip` included, as
        // the summary reports it, complete or not.
        tally.acknowledged = acknowledged;
        // One server over several connections: per connection.
        let connections = match end.nodes.is_empty() && end.connections.len() > 1 {
            true => end.connections,
            false => Vec::new(),
        };
        let outcome = Outcome {
            tally,
            last_reply_received: failures.is_empty() && end.in_flight == 0,
            reconnects: (config.retry > 0).then_some(end.reconnects),
            resume_at: (!complete && skipped_beyond_input.is_none()).then_some(acknowledged),
            in_flight: end.in_flight,
            answered_after_resume: match complete {
                true => 0,
                false => answered_after_resume,
            },
            errors_file: config.errors_file.clone(),
            commands_sent: end.commands_sent,
            bytes_sent: end.bytes_sent,
            elapsed_seconds: self.started.elapsed().as_secs_f64(),
            first_errors: self.error_log.first(),
            failures,
            nodes: end.nodes,
            cluster: end.cluster,
            connections,
            server_restarted: end.server_restarted,
            paced_rate: self.pace.as_ref().map(|pace| pace.settled_rate()),
        };
        outcome.print(config.json);
        exit_status(stopped, &tally, !complete, end.server_restarted)
    }
}

/// Parks the calling thread for good: another thread is ending the run.
fn wait_for_exit() -> ! {
    loop {
        thread::park();
    }
}

/// Starts the progress display when it is wanted.
fn start_progress(
    config: &Config,
    error_log: &Arc<ErrorLog>,
) -> (Option<Arc<Counters>>, Option<progress::Display>) {
    if !progress::wanted(config.progress, &config.sources) {
        return (None, None);
    }
    let counters = Arc::new(Counters::default());
    let display = progress::Display::start(
        Arc::clone(&counters),
        Arc::clone(error_log),
        progress::input_size(&config.sources),
    );
    (Some(counters), Some(display))
}

/// The exit status of a load: 128 + the signal that stopped it, else 0 for
/// a complete load without errors into one server instance, or one whose
/// replies' reader stopped reading (`--replies - | head`, as `rg | head`
/// exits 0), else 1: after a restart, what the old instance acknowledged
/// may be gone.
fn exit_status(
    stopped: Option<StopReason>,
    tally: &Tally,
    stopped_early: bool,
    server_restarted: bool,
) -> ExitCode {
    let stopped_early = stopped_early && stopped != Some(StopReason::RepliesReaderGone);
    match stopped {
        Some(StopReason::Signal(signal)) => ExitCode::from((128 + signal) as u8),
        _ if tally.errors() == 0 && !stopped_early && !server_restarted => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
