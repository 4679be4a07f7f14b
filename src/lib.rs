//! pipeload loads Redis commands into Redis or Valkey as fast as the server
//! can execute them: `cat data.txt | pipeload --pipe`.
//!
//! The data flow, one thread per step:
//!
//! ```text
//! input ─► [batch channel] ─► (cluster: router) ─► per connection:
//! (text lines → RESP,          slot → primary       writer ─► socket ─► server
//!  RESP passed through,                             (window: in flight,  │
//!  CSV/JSONL records →                               bounded)            ▼
//!  templates → RESP)
//! summary ◄─ one tally, one resume point ◄─ reply reader ◄─ socket ◄─ replies
//! ```
//!
//! - `cli` turns the command line into a `config::Config`; `run` (here)
//!   opens what the load needs and connects (`conn`, `stream`, `tls`;
//!   `retry` waits for a server not up yet).
//! - `input` (with `text`, `resp`, `encode`) fills `batch::Batch`es;
//!   `input_watch` is the input thread as the load sees it.
//! - `engine` runs a load: the input, the connections, the summary;
//!   `cluster` routes a cluster load to its primaries, and spreads a
//!   `--connections N` load over N connections to one server.
//! - `connection` runs one connection: `writer` and `replies` around the
//!   `window`, reconnecting under `--retry`; `handover` is what it asks
//!   when a cluster's primary is lost (the cluster answers it); `pace`
//!   holds the writers to `--rate` and `--max-latency`.
//! - `summary` prints what `redis-cli --pipe` prints; `stop` turns signals
//!   and `--max-errors` into an orderly stop; `progress` shows it going.

pub mod askpass;
pub mod batch;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod connection;
pub mod control;
pub mod encode;
pub mod engine;
pub mod handlers;
pub mod handover;
pub mod input;
pub mod input_watch;
pub mod io_error;
pub mod manual;
pub mod output_file;
pub mod pace;
pub mod progress;
pub mod readbuf;
pub mod replies;
pub mod reply_failure;
pub mod reply_format;
pub mod reply_order;
pub mod resp;
pub mod retry;
pub mod route;
pub mod stop;
pub mod stream;
pub mod summary;
pub mod tls;
pub mod window;
pub mod writer;

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::{Arc, PoisonError};
use std::thread;

use anyhow::{Context, Result};
use crossbeam_channel::bounded;

use crate::batch::{Batch, Expect};
use crate::config::{Config, Credentials, Endpoint, RepliesTarget};
use crate::engine::BATCH_CHANNEL_CAPACITY;
use crate::handlers::errors::{ErrorsFile, ErrorsFileWriter, write_or_report};
use crate::input::{BatchSize, InputError, InputOptions, OpenSource, open_sources, read_input};
use crate::output_file::{Readers, create_output};
use crate::stop::Stop;
use crate::summary::{Outcome, report};
use crate::tls::TlsConfig;

/// The password warning redis-cli prints, word for word.
const PASSWORD_WARNING: &str = "Warning: Using a password with '-a' or '-u' option on the command line interface may not be safe.";

/// Runs one load as configured. Returns the exit status for a load that ran
/// (0 when no error at all); fails, before anything is sent, when an input
/// or the errors file cannot be opened or the server cannot be reached.
/// With `--json` a failure prints its JSON summary too, however early.
pub fn run(config: Config) -> Result<ExitCode> {
    if config.emit_resp {
        return emit_resp(
            open_sources(&config.sources, config.format, &config.records)?,
            &config,
        );
    }
    if config
        .replies
        .as_ref()
        .is_some_and(|replies| replies.target == RepliesTarget::Stdout)
    {
        summary::summary_to_stderr();
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
    // After the signals: a Ctrl-C while stdin's first line is awaited ends
    // the run like one while connecting (typed at a terminal, Ctrl-C is a
    // byte that cancels, and the terminal gets its echo back).
    let with_password;
    let config = match (&config.credentials, config.ask_password) {
        (Some(credentials), true) => {
            let mut asked = config.clone();
            asked.credentials = Some(Credentials {
                password: askpass::read_password()?,
                ..credentials.clone()
            });
            with_password = asked;
            &with_password
        }
        _ => config,
    };
    let tls = config.tls.as_ref().map(TlsConfig::load).transpose()?;
    let tls = tls.as_ref();
    let sources = open_sources(&config.sources, config.format, &config.records)?;
    let errors_file = open_errors_file(config, &sources)?;
    if config.warn_about_password {
        report(PASSWORD_WARNING);
    }
    let stop = Arc::clone(stop);
    let mut connection = retry::connect_first(config, tls, &stop, None)?;
    say_if_reading_the_terminal(config);
    if config.cluster {
        let seed_host = match &config.endpoint {
            Endpoint::Tcp { host, .. } => host.clone(),
            Endpoint::Unix(_) => "127.0.0.1".to_owned(),
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
                tls,
                config,
            );
        }
    }
    if config.connections > 1 {
        return cluster::load::load_spread(connection, sources, errors_file, stop, tls, config);
    }
    engine::load(connection, sources, errors_file, stop, tls, config)
}

/// `pipeload` alone at a terminal waits for typed commands: say so once,
/// rather than seem to hang.
fn say_if_reading_the_terminal(config: &Config) {
    if progress::reads_the_terminal(&config.sources) {
        report("pipeload: reading commands from the terminal, one per line; end with Ctrl-D");
    }
}

/// `--errors-file`, created before anything is read or sent.
fn open_errors_file(config: &Config, sources: &[OpenSource]) -> Result<Option<ErrorsFile>> {
    let Some(path) = &config.errors_file else {
        return Ok(None);
    };
    // A CSV's failed records follow its header, so the file loads again
    // with the same command line.
    let mut headers = sources.iter().filter_map(|source| source.header.as_ref());
    let header = headers.next().map(|header| header.line.clone());
    if headers.any(|other| Some(&other.line) != header.as_ref()) {
        report(&format!(
            "pipeload: warning: the CSV files' headers differ: {} starts with the first one's",
            path.display()
        ));
    }
    let file = create_output(path, "--errors-file", &config.sources, Readers::OwnerOnly)?;
    Ok(Some(ErrorsFileWriter::new(file, header)))
}

/// `--emit-resp`: the input's commands as RESP on stdout, no server; the
/// lines refused go to `--errors-file` as in a load.
fn emit_resp(sources: Vec<OpenSource>, config: &Config) -> Result<ExitCode> {
    let source_names = input::source_names(&sources);
    let (batch_sender, batch_receiver) = bounded::<Batch>(BATCH_CHANNEL_CAPACITY);
    let options = InputOptions {
        format: config.format,
        confirm_unanswered_tail: false,
        skip: config.skip,
        keep_originals: config.errors_file.is_some(),
        cluster: false,
        progress: None,
        records: config.records.clone(),
        batch_size: BatchSize::default(),
    };
    let errors_file = open_errors_file(config, &sources)?;
    say_if_reading_the_terminal(config);
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
                    let why = batch.refusal_reason(index, why);
                    report(&format!("{position}: not sent: {why}"));
                    keep_refused(&errors_file, &batch, index);
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
    if let Some(file) = &errors_file {
        file.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush()
            .context("cannot write the errors file")?;
    }
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

/// Writes a refused line to `--errors-file` under `--emit-resp`.
fn keep_refused(errors_file: &Option<ErrorsFile>, batch: &Batch, index: usize) {
    if let Some(file) = errors_file {
        write_or_report(file, batch, index);
    }
}
