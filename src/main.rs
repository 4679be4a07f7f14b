//! The `pipeload` binary: parse flags, run the load, turn the outcome into
//! an exit status. Usage errors exit with 2 (clap), failures with 1.

use std::process::ExitCode;

use pipeload::conn::ConnectError;
use pipeload::tls::TlsSetupError;

fn main() -> ExitCode {
    let config = match pipeload::cli::parse_args(std::env::args_os()) {
        Ok(config) => config,
        Err(error) => {
            pipeload::summary::report(&format!("pipeload: {error:#}"));
            // A TLS file that cannot be read is no usage error.
            let unusable_file = error.downcast_ref::<TlsSetupError>().is_some();
            return ExitCode::from(if unusable_file { 1 } else { 2 });
        }
    };
    match pipeload::run(config) {
        Ok(status) => status,
        // Worded as redis-cli words it, without a prefix.
        Err(error) if error.downcast_ref::<ConnectError>().is_some() => {
            pipeload::summary::report(&error.to_string());
            ExitCode::FAILURE
        }
        Err(error) => {
            pipeload::summary::report(&format!("pipeload: {error:#}"));
            ExitCode::FAILURE
        }
    }
}
