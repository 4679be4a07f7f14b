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
//! `encode`) fills `batch::Batch`es; `conn` connects; `writer` and `replies`
//! run the two halves of the connection around the `window`; `summary` prints
//! what `redis-cli --pipe` prints.

pub mod batch;
pub mod cli;
pub mod conn;
pub mod encode;
pub mod input;
pub mod readbuf;
pub mod replies;
pub mod resp;
pub mod summary;
pub mod text;
pub mod window;
pub mod writer;

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, unbounded};

use crate::batch::{Batch, Expect};
use crate::cli::Config;
use crate::input::{InputError, InputOptions, OpenSource, open_sources, read_input};
use crate::replies::{ReplyFailure, ReplyReader};
use crate::summary::{
    ALL_DATA_TRANSFERRED, LAST_REPLY_RECEIVED, Tally, print_counts, print_line, report,
};
use crate::window::Window;
use crate::writer::{WriteError, write_batches};

/// Batches waiting between input and writer: enough to keep the writer busy
/// while input frames the next one, few enough to keep memory flat.
const BATCH_CHANNEL_CAPACITY: usize = 4;

/// The password warning redis-cli prints, word for word.
const PASSWORD_WARNING: &str = "Warning: Using a password with '-a' or '-u' option on the command line interface may not be safe.";

/// Runs one load as configured. Returns the exit status for a load that ran
/// (0 when no error at all); fails, before anything is sent, when an input
/// cannot be opened or the server cannot be reached.
pub fn run(config: Config) -> Result<ExitCode> {
    let sources = open_sources(&config.sources)?;
    if config.emit_resp {
        return emit_resp(sources, &config);
    }
    if config.warn_about_password {
        report(PASSWORD_WARNING);
    }
    let stream = conn::connect(&config)?;
    load(stream, sources, &config)
}

/// Streams the input to the server and prints the summary.
fn load(stream: conn::Stream, sources: Vec<OpenSource>, config: &Config) -> Result<ExitCode> {
    let source_names = input::source_names(&sources);
    let writer_stream = stream.try_clone().context("cannot set up the connection")?;
    let (batch_sender, batch_receiver) = bounded::<Batch>(BATCH_CHANNEL_CAPACITY);
    let (in_flight_sender, in_flight_receiver) = unbounded::<Arc<Batch>>();
    let window = Window::new(config.window);
    let options = InputOptions {
        format: config.format,
        confirm_unanswered_tail: true,
    };

    // Not scoped: when the load stops early the input thread may be blocked
    // on a source that never ends, and must not keep the process alive.
    let input = thread::Builder::new()
        .name("input".into())
        .spawn(move || read_input(sources, options, &batch_sender))
        .context("cannot start the input thread")?;

    let (written, outcome) = thread::scope(|scope| {
        let writer =
            scope.spawn(|| write_batches(batch_receiver, in_flight_sender, &window, writer_stream));
        let reader = scope.spawn(|| {
            ReplyReader::new(stream, in_flight_receiver, &window, &source_names)
                .run(config.pipe_timeout)
        });
        let written = writer.join();
        // The writer has ended, so the input has too unless the load failed.
        let input_result = match input.is_finished() || written.as_ref().is_ok_and(Result::is_ok) {
            true => Some(input.join()),
            false => None,
        };
        if matches!(written, Ok(Ok(_))) && matches!(input_result, Some(Ok(Ok(())))) {
            print_line(ALL_DATA_TRANSFERRED);
        }
        let outcome = reader.join();
        (written.map(|written| (written, input_result)), outcome)
    });

    let Ok(mut outcome) = outcome else {
        anyhow::bail!("internal error: the reply reader panicked");
    };
    let Ok((written, input_result)) = written else {
        anyhow::bail!("internal error: the writer panicked");
    };

    let mut tally = outcome.tally;
    match (&written, outcome.failure.take()) {
        (Err(WriteError::Io(error)), _) => {
            tally.fatal += 1;
            report(&format!(
                "pipeload: connection lost: {}",
                conn::describe_io_error(error)
            ));
        }
        (_, Some(ReplyFailure::Stopped)) => {}
        (_, Some(failure @ ReplyFailure::NoReplies(_))) => {
            tally.fatal += 1;
            report(&failure.to_string());
        }
        (_, Some(failure)) => {
            tally.fatal += 1;
            report(&format!("pipeload: {failure}"));
        }
        (_, None) => print_line(LAST_REPLY_RECEIVED),
    }
    match input_result {
        Some(Ok(Err(InputError::Stopped))) | None => {}
        Some(Ok(Err(error))) => {
            tally.fatal += 1;
            report(&format!("pipeload: {error}"));
        }
        Some(Ok(Ok(()))) => {}
        Some(Err(_)) => anyhow::bail!("internal error: the input thread panicked"),
    }
    print_counts(&tally);
    Ok(exit_status(&tally))
}

fn exit_status(tally: &Tally) -> ExitCode {
    match tally.errors() {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// `--emit-resp`: the input's commands as RESP on stdout, no server.
fn emit_resp(sources: Vec<OpenSource>, config: &Config) -> Result<ExitCode> {
    let source_names = input::source_names(&sources);
    let (batch_sender, batch_receiver) = bounded::<Batch>(BATCH_CHANNEL_CAPACITY);
    let options = InputOptions {
        format: config.format,
        confirm_unanswered_tail: false,
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
