//! The `pipeload` binary: parse the command line, run the load, and pick
//! the exit status, all in one place: 0 for a clean load (or printed help),
//! 1 for a failure, 2 for bad usage, 128 + a signal after one.

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;

use pipeload::cli::{self, Invocation};
use pipeload::conn::ConnectError;
use pipeload::input::records::FieldNotInHeader;
use pipeload::summary::{Outcome, report};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let config = match cli::parse_args(&args) {
        Ok(Invocation::Load(config)) => *config,
        Ok(Invocation::Print(text)) => return print_to_stdout(&text),
        Err(error) => {
            report(&error.to_string());
            // A script that asked for JSON gets its object even now.
            if args.iter().any(|arg| arg == "--json") {
                Outcome::failed_early(None, error.headline().to_owned()).print(true);
            }
            return ExitCode::from(2);
        }
    };
    match pipeload::run(config) {
        Ok(status) => status,
        // Worded as redis-cli words it, without a prefix.
        Err(error) if error.downcast_ref::<ConnectError>().is_some() => {
            report(&error.to_string());
            ExitCode::FAILURE
        }
        // A template naming a field the input's header lacks: found once
        // the header is read, still before anything is sent.
        Err(error) if error.downcast_ref::<FieldNotInHeader>().is_some() => {
            report(&format!("pipeload: {error:#}"));
            ExitCode::from(2)
        }
        Err(error) => {
            report(&format!("pipeload: {error:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Help, version, a completion script or the man page. A reader that
/// stopped early (`| head`) is no failure.
fn print_to_stdout(text: &[u8]) -> ExitCode {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(text).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            report(&format!("pipeload: cannot write to stdout: {error}"));
            ExitCode::FAILURE
        }
    }
}
