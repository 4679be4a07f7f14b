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
use crossbeam_channel::{Receiver, bounded, unbounded};

use crate::batch::{Batch, Expect, InFlight};
use crate::cli::Config;
use crate::conn::{ConnectError, Connection, SessionReplay, Stream, describe_io_error};
use crate::input::{InputError, InputOptions, OpenSource, open_sources, read_input};
use crate::progress::Counters;
use crate::replies::{ErrorsFile, Replies, ReplyContext, ReplyFailure, SessionEnd};
use crate::retry::{Attempts, Outage};
use crate::stop::{Stop, StopReason};
use crate::summary::{ALL_DATA_TRANSFERRED, ErrorLog, Outcome, Tally, print_line, report};
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
pub fn run(config: Config) -> Result<ExitCode> {
    let sources = open_sources(&config.sources)?;
    if config.emit_resp {
        return emit_resp(sources, &config);
    }
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
    // Watched from the start, so that a signal that comes while connecting
    // is not lost either.
    let stop = Arc::new(Stop::default());
    stop::watch_signals(Arc::clone(&stop)).context("cannot watch for signals")?;
    let mut connection = retry::connect_first(&config, &stop)?;
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
                &config,
            );
        }
    }
    load(connection, sources, errors_file, stop, &config)
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
    /// Called when a writer ends: if it saw the end of the input (the input
    /// thread dropped its sender, so it is exiting), collect the input's
    /// result and, when all of it was read, say so as redis-cli does.
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

    pub(crate) fn writer_finished(&mut self, end: &WriterEnd) {
        if !matches!(end, WriterEnd::InputEnded) {
            return;
        }
        self.join();
        if self.is_complete() && !self.quiet && !self.announced {
            self.announced = true;
            self.finish_display();
            print_line(ALL_DATA_TRANSFERRED);
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
    let LoadStart {
        started,
        stop,
        source_names,
        error_log,
        counters,
        batches: batch_receiver,
        mut input,
    } = start_load(sources, errors_file.is_some(), true, stop, config)?;

    let mut replies = Replies::new(ReplyContext {
        source_names: &source_names,
        stop: &stop,
        error_log: &error_log,
        progress: counters.as_deref(),
        max_errors: config.max_errors,
        resend_transient: config.retry > 0,
        errors_file,
    });
    let shared = SessionShared {
        batches: &batch_receiver,
        redirects: None,
        stop: &stop,
        config,
        progress: counters.as_deref(),
        node: None,
    };
    let ConnectionRun {
        bytes_sent,
        commands_sent,
        reconnects,
        failure,
        server_restarted,
        ..
    } = run_connection(connection, &shared, &mut replies, Some(&mut input))?;

    input.finish_display();
    let mut tally = replies.tally;
    let mut failures = Vec::new();
    if let Some(message) = &failure {
        failures.push(message.clone());
        tally.fatal += 1;
        // Worded as redis-cli words it, without a prefix.
        match message.starts_with("No replies") {
            true => report(message),
            false => report(&format!("pipeload: {message}")),
        }
    }
    input.collect_if_finished();
    let input_complete = input.is_complete();
    if let Some(message) = input.report_failure() {
        tally.fatal += 1;
        failures.push(message);
    }
    error_log.report_hidden();
    let stopped = stop.reason();
    let stopped_early = failure.is_some() || stopped.is_some() || !input_complete;
    let outcome = Outcome {
        tally,
        last_reply_received: failure.is_none(),
        reconnects: (config.retry > 0).then_some(reconnects),
        resume_at: stopped_early.then_some(config.skip + tally.acknowledged),
        commands_sent,
        bytes_sent,
        elapsed_seconds: started.elapsed().as_secs_f64(),
        first_errors: error_log.first(),
        failures,
        nodes: Vec::new(),
        server_restarted,
    };
    outcome.print(config.json);
    Ok(exit_status(
        stopped,
        &tally,
        stopped_early,
        server_restarted,
    ))
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

/// Starts the progress display and the input thread.
/// `confirm_unanswered_tail`: see `InputOptions` (one server only).
pub(crate) fn start_load(
    sources: Vec<OpenSource>,
    keep_originals: bool,
    confirm_unanswered_tail: bool,
    stop: Arc<Stop>,
    config: &Config,
) -> Result<LoadStart> {
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
pub(crate) fn exit_status(
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
            WriterEnd::Failed(error) => {
                Some(ReplyFailure::ConnectionLost(describe_io_error(&error)))
            }
            _ => session
                .failure
                .filter(|failure| !matches!(failure, ReplyFailure::Stopped)),
        };
        resend = session.unacknowledged;
        resend.extend(written.unsent);
        let Some(failure) = failure else {
            run.unsettled = resend;
            return Ok(run);
        };
        if !failure.is_retryable() || config.retry == 0 || shared.stop.is_requested() {
            run.failure = Some(failure.to_string());
            run.unsettled = resend;
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
                return Ok(run);
            }
        }
    }
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
