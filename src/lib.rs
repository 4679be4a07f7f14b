//! pipeload loads Redis commands into Redis or Valkey as fast as the server
//! can execute them: `cat data.txt | pipeload --pipe`.
//!
//! The data flow, one thread per step:
//!
//! ```text
//! input ─► [batch channel] ─► writer ─► socket ─► server
//! (text lines → RESP,   bounded      (window: in-flight  │
//!  RESP passed through)               batches, bounded)  ▼
//! summary ◄─ reply reader ◄──────────── socket ◄── replies
//! ```
//!
//! `cli` turns flags into a `Config`; `input` (with `text`, `resp` and
//! `encode`) fills `batch::Batch`es; `conn` connects (and `retry` waits for
//! a server that cannot be reached, under `--retry`); `writer` and `replies`
//! run the two halves of the connection around the `window`; `summary` prints
//! what `redis-cli --pipe` prints.

pub mod batch;
pub mod cli;
pub mod cluster;
pub mod conn;
pub mod control;
pub mod encode;
pub mod input;
pub mod progress;
pub mod readbuf;
pub mod replies;
pub mod resp;
pub mod retry;
pub mod stop;
pub mod summary;
pub mod text;
pub mod tls;
pub mod window;
pub mod writer;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, TryRecvError, bounded, unbounded};

use crate::batch::{Batch, Expect, InFlight};
use crate::cli::Config;
use crate::conn::{ConnectError, Connection, SessionReplay, Stream, describe_io_error};
use crate::input::{InputError, InputOptions, OpenSource, open_sources, read_input};
use crate::progress::Counters;
use crate::replies::{ErrorsFile, Replies, ReplyContext, ReplyFailure, SessionEnd};
use crate::retry::{Attempts, Outage};
use crate::stop::{Stop, StopReason};
use crate::summary::{
    ALL_DATA_TRANSFERRED, ErrorLog, NodeCounts, Outcome, Tally, print_line, report,
};
use crate::window::Window;
use crate::writer::{Writer, WriterEnd, WriterOutcome};

/// Batches waiting between input and writer: enough to keep the writer busy
/// while input frames the next one, few enough to keep memory flat.
pub(crate) const BATCH_CHANNEL_CAPACITY: usize = 4;

/// The password warning redis-cli prints, word for word.
const PASSWORD_WARNING: &str = "Warning: Using a password with '-a' or '-u' option on the command line interface may not be safe.";

/// Runs one load as configured. Returns the exit status for a load that ran
/// (0 when no error at all); fails, before anything is sent, when an input
/// or the errors file cannot be opened or the server cannot be reached.
/// With `--json` a failure prints its JSON summary too, however early.
pub fn run(config: Config) -> Result<ExitCode> {
    if config.emit_resp {
        return emit_resp(open_sources(&config.sources)?, &config);
    }
    let stop = Arc::new(Stop::default());
    let result = load_as_configured(&config, &stop);
    if let Err(error) = &result
        && config.json
    {
        let failure = format!("{error:#}");
        // Once loading began, only a panicked thread fails the run: where to
        // resume is unknown then.
        let resume_at = (!stop.has_begun_loading()).then_some(config.skip);
        Outcome::failed_early(resume_at, failure).print(true);
    }
    result
}

/// Opens what the load needs, connects, and runs the single-server or the
/// cluster load.
fn load_as_configured(config: &Config, stop: &Arc<Stop>) -> Result<ExitCode> {
    // Watched from the start, so that a signal that comes while connecting
    // is not lost either: nothing was sent yet, so the summary is known.
    let (json, skip) = (config.json, config.skip);
    stop::watch_signals(Arc::clone(stop), move |signal| {
        report(&format!(
            "pipeload: interrupted by signal {signal} before loading: nothing was sent"
        ));
        Outcome {
            resume_at: Some(skip),
            ..Outcome::default()
        }
        .print(json);
    })
    .context("cannot watch for signals")?;
    let sources = open_sources(&config.sources)?;
    let errors_file = match &config.errors_file {
        Some(path) => {
            let file = File::create(path).map_err(|error| {
                anyhow::anyhow!(
                    "cannot create {}: {}",
                    path.display(),
                    describe_io_error(&error)
                )
            })?;
            Some(Arc::new(Mutex::new(BufWriter::new(file))))
        }
        None => None,
    };
    if config.warn_about_password {
        report(PASSWORD_WARNING);
    }
    let stop = Arc::clone(stop);
    let mut connection = retry::connect_first(config, &stop)?;
    if config.cluster {
        let seed_host = match &config.endpoint {
            cli::Endpoint::Tcp { host, .. } => host.clone(),
            cli::Endpoint::Unix(_) => "127.0.0.1".to_owned(),
        };
        if let Some(topology) =
            cluster::topology::discover(&mut connection.stream, &seed_host, config.tls.is_some())?
        {
            return cluster::load::load_cluster(
                connection.stream,
                topology,
                sources,
                errors_file,
                stop,
                config,
            );
        }
    }
    load(connection, sources, errors_file, stop, config)
}

/// The input thread, joined once it is known to have ended.
pub(crate) struct InputWatch {
    handle: Option<JoinHandle<Result<(), InputError>>>,
    result: Option<Result<(), InputError>>,
    /// `--json`: no redis-cli progress lines on stdout.
    quiet: bool,
    /// "All data transferred" was printed (once, even if a reconnect
    /// writes some of the data again).
    announced: bool,
    /// The progress display, cleared before the summary lines so that a
    /// terminal shows them whole.
    display: Option<progress::Display>,
}

impl InputWatch {
    pub(crate) fn new(
        handle: JoinHandle<Result<(), InputError>>,
        quiet: bool,
        display: Option<progress::Display>,
    ) -> Self {
        InputWatch {
            handle: Some(handle),
            result: None,
            quiet,
            announced: false,
            display,
        }
    }

    /// Clears the progress display for good.
    pub(crate) fn finish_display(&mut self) {
        if let Some(display) = self.display.take() {
            display.finish();
        }
    }

    /// Whether the whole input was read without error.
    pub(crate) fn is_complete(&self) -> bool {
        matches!(self.result, Some(Ok(())))
    }

    /// Reports an input failure (not a mere stop) and says whether there
    /// was one.
    pub(crate) fn report_failure(&self) -> Option<String> {
        match &self.result {
            Some(Err(error)) if !matches!(error, InputError::Stopped) => {
                let message = error.to_string();
                report(&format!("pipeload: {message}"));
                Some(message)
            }
            _ => None,
        }
    }

    /// Called when a writer ends: if it saw the end of the input (the input
    /// thread dropped its sender, so it is exiting), collect the input's
    /// result and, when all of it was read, say so as redis-cli does.
    pub(crate) fn writer_finished(&mut self, end: &WriterEnd) {
        if !matches!(end, WriterEnd::InputEnded) {
            return;
        }
        self.join();
        self.announce_transferred();
    }

    /// Prints redis-cli's "All data transferred" line, once, if the whole
    /// input was read.
    fn announce_transferred(&mut self) {
        if self.is_complete() && !self.quiet && !self.announced {
            self.announced = true;
            self.finish_display();
            print_line(ALL_DATA_TRANSFERRED);
        }
    }

    /// The input command (from the start, `--skip` included) that opened a
    /// transaction the input never closed, if it ended so.
    fn unfinished_transaction(&self) -> Option<u64> {
        match &self.result {
            Some(Err(InputError::UnfinishedTransaction { seq, .. })) => Some(*seq),
            _ => None,
        }
    }

    fn join(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.result = Some(handle.join().unwrap_or(Err(InputError::Panicked)));
        }
    }

    /// Joins the input thread if it has ended; never waits on a thread that
    /// may be blocked on a source that sends nothing.
    pub(crate) fn collect_if_finished(&mut self) {
        if self.handle.as_ref().is_some_and(JoinHandle::is_finished) {
            self.join();
        }
    }
}

/// Streams the input to the server, reconnecting as `--retry` allows, and
/// prints the summary.
fn load(
    connection: Connection,
    sources: Vec<OpenSource>,
    errors_file: Option<ErrorsFile>,
    stop: Arc<Stop>,
    config: &Config,
) -> Result<ExitCode> {
    let mut load = start_load(sources, errors_file.is_some(), true, stop, config)?;
    let mut replies = Replies::new(ReplyContext {
        source_names: &load.source_names,
        stop: &load.stop,
        error_log: &load.error_log,
        progress: load.counters.as_deref(),
        max_errors: config.max_errors,
        resend_transient: config.retry > 0,
        errors_file,
    });
    let shared = SessionShared {
        batches: &load.batches,
        redirects: None,
        stop: &load.stop,
        config,
        progress: load.counters.as_deref(),
        node: None,
    };
    let run = run_connection(connection, &shared, &mut replies, Some(&mut load.input))?;

    let mut failures = Vec::new();
    if let Some(message) = run.failure {
        // Worded as redis-cli words it, without a prefix.
        match message.starts_with("No replies") {
            true => report(&message),
            false => report(&format!("pipeload: {message}")),
        }
        failures.push(message);
    }
    let end = ConnectionsEnd {
        tally: replies.tally,
        failures,
        reconnects: run.reconnects,
        commands_sent: run.commands_sent,
        bytes_sent: run.bytes_sent,
        in_flight: run.in_flight,
        acknowledged: config.skip + replies.tally.acknowledged,
        nothing_left: run.unsettled.is_empty(),
        nodes: Vec::new(),
        server_restarted: run.server_restarted,
    };
    Ok(load.finish(end, config))
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
}

/// What the connections of a load hand back when they have all ended.
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
    /// A reconnect found a new server instance (`run_id` changed).
    pub server_restarted: bool,
}

/// Starts the progress display and the input thread. Never returns when a
/// signal came while connecting (the signal ends the run itself).
/// `confirm_unanswered_tail`: see `InputOptions` (one server only).
pub(crate) fn start_load(
    sources: Vec<OpenSource>,
    keep_originals: bool,
    confirm_unanswered_tail: bool,
    stop: Arc<Stop>,
    config: &Config,
) -> Result<LoadStart> {
    if !stop.begin_loading() {
        wait_for_exit();
    }
    let started = Instant::now();
    let source_names = input::source_names(&sources);
    let error_log = Arc::new(ErrorLog::new(config.error_lines));
    let (counters, display) = start_progress(config, &error_log);
    let (batch_sender, batches) = bounded::<Batch>(BATCH_CHANNEL_CAPACITY);
    let options = InputOptions {
        format: config.format,
        confirm_unanswered_tail,
        skip: config.skip,
        keep_originals,
        progress: counters.clone(),
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
    })
}

impl LoadStart {
    /// Prints the summary of a load whose connections have all ended and
    /// returns its exit status. The load is complete when the whole input
    /// was read and every command of it settled, with no signal received;
    /// otherwise the summary says where to resume.
    pub(crate) fn finish(mut self, end: ConnectionsEnd, config: &Config) -> ExitCode {
        self.input.finish_display();
        let Some(stopped) = self.stop.conclude() else {
            wait_for_exit();
        };
        let mut tally = end.tally;
        let mut failures = end.failures;
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
        let outcome = Outcome {
            tally,
            last_reply_received: failures.is_empty() && end.in_flight == 0,
            reconnects: (config.retry > 0).then_some(end.reconnects),
            resume_at: (!complete).then_some(acknowledged),
            in_flight: end.in_flight,
            errors_file: config.errors_file.clone(),
            commands_sent: end.commands_sent,
            bytes_sent: end.bytes_sent,
            elapsed_seconds: self.started.elapsed().as_secs_f64(),
            first_errors: self.error_log.first(),
            failures,
            nodes: end.nodes,
            server_restarted: end.server_restarted,
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
    if !progress::wanted(config.progress) {
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
/// a complete load without errors into one server instance, else 1: after
/// a restart, what the old instance acknowledged may be gone.
fn exit_status(
    stopped: Option<StopReason>,
    tally: &Tally,
    stopped_early: bool,
    server_restarted: bool,
) -> ExitCode {
    match stopped {
        Some(StopReason::Signal(signal)) => ExitCode::from((128 + signal) as u8),
        _ if tally.errors() == 0 && !stopped_early && !server_restarted => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// What every session of one connection works with.
pub(crate) struct SessionShared<'a> {
    pub batches: &'a Receiver<Batch>,
    /// Cluster mode: see `Writer::redirects`.
    pub redirects: Option<(&'a Receiver<Batch>, &'a AtomicUsize)>,
    pub stop: &'a Stop,
    /// The load's settings, with the endpoint of this connection.
    pub config: &'a Config,
    pub progress: Option<&'a Counters>,
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
    pub failure: Option<String>,
    /// Whether its last writer wrote everything the input gave it.
    pub all_written: bool,
    /// What it still held when it ended, never acknowledged, in order.
    pub unsettled: Vec<InFlight>,
    /// Input commands of `unsettled` that were sent: they may have run.
    pub in_flight: u64,
    /// A reconnect found a new server instance (its `run_id` changed).
    pub server_restarted: bool,
}

/// Runs sessions on one connection until the load ends, reconnecting and
/// resending what was not acknowledged as `--retry` allows. `input`, when
/// given, is told as soon as a writer has written the whole input.
pub(crate) fn run_connection(
    connection: Connection,
    shared: &SessionShared,
    replies: &mut Replies,
    mut input: Option<&mut InputWatch>,
) -> Result<ConnectionRun> {
    let config = shared.config;
    let mut run = ConnectionRun {
        bytes_sent: 0,
        commands_sent: 0,
        reconnects: 0,
        failure: None,
        all_written: false,
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
        let (written, session) =
            run_session(stream, resend, shared, replies, input.as_deref_mut())?;
        run.bytes_sent += written.bytes_sent;
        run.commands_sent += written.commands_sent;
        run.all_written = matches!(written.end, WriterEnd::InputEnded);
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
            run.failure = Some(failure.to_string());
            run.unsettled = resend;
            run.in_flight = in_flight;
            return Ok(run);
        }
        shared.report(&failure.to_string());
        // A session that got no further than where the outage began is
        // the same outage: its attempts go on counting.
        let acknowledged = replies.tally.acknowledged;
        if outage
            .as_ref()
            .is_none_or(|outage| outage.is_over(acknowledged, &resend))
        {
            outage = Some(Outage::begin(acknowledged, &resend));
            attempts = Attempts::new(config.retry);
        }
        match reconnect(shared, &replies.replay, &mut attempts) {
            Ok(reconnected) => {
                run.reconnects += 1;
                if let (Some(known), Some(now)) = (&run_id, &reconnected.run_id)
                    && known != now
                {
                    run.server_restarted = true;
                    shared.report(&format!(
                        "the server restarted (it answers with a new run_id): the {} \
                         commands acknowledged before are lost unless it persisted them",
                        replies.tally.acknowledged
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
        .flat_map(|in_flight| &in_flight.batch.commands[in_flight.first..])
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
    input: Option<&mut InputWatch>,
) -> Result<(WriterOutcome, SessionEnd)> {
    let SessionShared {
        batches,
        redirects,
        stop,
        config,
        progress,
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
            }
            .run(resend)
        });
        let reader =
            scope.spawn(move || replies.run_session(stream, receiver, window, config.pipe_timeout));
        let written = writer.join();
        if let (Ok(outcome), Some(input)) = (&written, input) {
            input.writer_finished(&outcome.end);
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
) -> Result<Connection, String> {
    let SessionShared { config, stop, .. } = *shared;
    loop {
        let Some(pause) = attempts.next_pause() else {
            return Err(format!(
                "gave up after {} reconnect attempts (--retry {})",
                config.retry, config.retry
            ));
        };
        shared.report(&format!(
            "reconnecting in {:.1} s ({attempts})",
            pause.as_secs_f64()
        ));
        if retry::pause_unless_stopped(stop, pause) {
            return Err("stopped while reconnecting".into());
        }
        match conn::connect(config, Some(replay)) {
            Ok(connection) => return Ok(connection),
            Err(error @ ConnectError::Unreachable { .. }) => report(&error.to_string()),
            Err(error) => return Err(error.to_string()),
        }
    }
}

/// `--emit-resp`: the input's commands as RESP on stdout, no server.
fn emit_resp(sources: Vec<OpenSource>, config: &Config) -> Result<ExitCode> {
    let source_names = input::source_names(&sources);
    let (batch_sender, batch_receiver) = bounded::<Batch>(BATCH_CHANNEL_CAPACITY);
    let options = InputOptions {
        format: config.format,
        confirm_unanswered_tail: false,
        skip: config.skip,
        keep_originals: false,
        progress: None,
    };
    let mut rejected = 0u64;
    let (input_result, written) = thread::scope(|scope| {
        let input = scope.spawn(move || read_input(sources, options, &batch_sender));
        let mut stdout = io::stdout().lock();
        let mut written = Ok(());
        for batch in &batch_receiver {
            for (index, command) in batch.commands.iter().enumerate() {
                if let Expect::Rejected(why) = command.expect {
                    rejected += 1;
                    let position = batch.position(index, &source_names, None);
                    report(&format!("{position}: not sent: {why}"));
                }
            }
            written = stdout.write_all(&batch.bytes);
            if written.is_err() {
                break;
            }
        }
        drop(batch_receiver);
        let written = written.and_then(|()| stdout.flush());
        (input.join(), written)
    });
    let mut failed = rejected > 0;
    match input_result {
        Ok(Ok(())) | Ok(Err(InputError::Stopped)) => {}
        Ok(Err(error)) => {
            failed = true;
            report(&format!("pipeload: {error}"));
        }
        Err(_) => anyhow::bail!("internal error: the input thread panicked"),
    }
    match written {
        // A reader that stopped early (`| head`) is not an error.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {}
        Err(error) => {
            return Err(error).context("cannot write to stdout");
        }
        Ok(()) => {}
    }
    Ok(match failed {
        true => ExitCode::FAILURE,
        false => ExitCode::SUCCESS,
    })
}
