//! One load, from start to summary: the input thread, the connections, and
//! the summary concluded once for all of them. The single-server load is
//! here; `cluster::load` runs the same pieces with one connection per
//! primary.
//!
//! Place in the data flow: `run` hands it the connected server(s); it
//! starts the input (with the progress display), runs each connection
//! (`connection`), then `LoadStart::finish` prints the one summary: the
//! tally of every connection, the resume point (the first command not
//! settled on any connection), the exit status.

use std::process::ExitCode;
use std::sync::Arc;
use std::thread::{self};
use std::time::Instant;

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, TryRecvError, bounded};

use crate::batch::Batch;
use crate::config::Config;
use crate::conn::Connection;
use crate::connection::{SessionShared, run_connection};
use crate::input::{self, InputOptions, OpenSource, read_input};
use crate::input_watch::InputWatch;
use crate::progress::{self, Counters};
use crate::replies::{ErrorsFile, Replies, ReplyContext};
use crate::stop::{Stop, StopReason};
use crate::summary::{ErrorLog, NodeCounts, Outcome, Tally, report};
use crate::tls::TlsConfig;

/// Batches waiting between input and writer: enough to keep the writer busy
/// while input frames the next one, few enough to keep memory flat.
pub(crate) const BATCH_CHANNEL_CAPACITY: usize = 4;

/// Streams the input to the server, reconnecting as `--retry` allows, and
/// prints the summary.
pub(crate) fn load(
    connection: Connection,
    sources: Vec<OpenSource>,
    errors_file: Option<ErrorsFile>,
    stop: Arc<Stop>,
    tls: Option<&TlsConfig>,
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
        tls,
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
