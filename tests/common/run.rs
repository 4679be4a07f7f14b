//! Runs the built pipeload binary: stdin fed from a thread, stdout and
//! stderr collected by two more, a hang guard that kills the child. Every
//! assertion on an [`Outcome`] prints the whole invocation, exit status,
//! stdout and stderr when it fails.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Default hang guard: far above what any normal run needs.
const DEFAULT_GUARD: Duration = Duration::from_secs(60);

/// How much of stdout/stderr (head and tail each) a failure report shows.
const REPORT_LIMIT: usize = 16 * 1024;

pub const TRANSFERRED: &str = "All data transferred. Waiting for the last reply...";
pub const LAST_REPLY: &str = "Last reply received from server.";

/// One pipeload invocation, built up and then [`run`](Pipeload::run).
pub struct Pipeload {
    args: Vec<OsString>,
    stdin: Vec<u8>,
    env: Vec<(OsString, OsString)>,
    current_dir: Option<PathBuf>,
    guard: Duration,
}

impl Default for Pipeload {
    fn default() -> Self {
        Pipeload::new()
    }
}

impl Pipeload {
    pub fn new() -> Pipeload {
        Pipeload {
            args: Vec::new(),
            stdin: Vec::new(),
            env: Vec::new(),
            current_dir: None,
            guard: DEFAULT_GUARD,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Pipeload {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Pipeload
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// `-p PORT`: every test names its server's port, never the default.
    pub fn port(self, port: u16) -> Pipeload {
        self.arg("-p").arg(port.to_string())
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Pipeload {
        self.stdin = input.into();
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Pipeload {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Pipeload {
        self.current_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Raises the hang guard for runs that are slow in a debug build.
    pub fn guard(mut self, limit: Duration) -> Pipeload {
        self.guard = limit;
        self
    }

    fn invocation(&self) -> String {
        let mut text = String::new();
        if let Some(dir) = &self.current_dir {
            text.push_str(&format!("cd {} && ", dir.display()));
        }
        for (key, value) in &self.env {
            text.push_str(&format!(
                "{}={} ",
                key.to_string_lossy(),
                value.to_string_lossy()
            ));
        }
        text.push_str(env!("CARGO_BIN_EXE_pipeload"));
        for arg in &self.args {
            text.push_str(&format!(" {:?}", arg.to_string_lossy()));
        }
        text.push_str(&format!(
            "\nstdin ({} bytes): {}",
            self.stdin.len(),
            excerpt(&self.stdin)
        ));
        text
    }

    pub fn run(self) -> Outcome {
        let invocation = self.invocation();
        let mut command = Command::new(env!("CARGO_BIN_EXE_pipeload"));
        command
            .args(&self.args)
            .env_remove("REDISCLI_AUTH")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {invocation}: {err}"));

        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = self.stdin;
        // pipeload may stop reading early (bad usage, refused connection,
        // malformed input): a broken pipe here is expected then.
        let feeder = thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let stdout = collect(child.stdout.take().expect("piped stdout"));
        let stderr = collect(child.stderr.take().expect("piped stderr"));

        let deadline = Instant::now() + self.guard;
        let (status, timed_out) = loop {
            match child.try_wait() {
                Ok(Some(status)) => break (status, false),
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    break (child.wait().expect("wait for killed pipeload"), true);
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(err) => panic!("wait for {invocation}: {err}"),
            }
        };
        let _ = feeder.join();
        let outcome = Outcome {
            invocation,
            status,
            stdout: stdout.join().expect("stdout reader"),
            stderr: stderr.join().expect("stderr reader"),
        };
        if timed_out {
            outcome.fail(format!(
                "pipeload did not finish within the {:?} hang guard and was killed",
                self.guard
            ));
        }
        outcome
    }
}

fn collect(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// The counters of the `errors: N, replies: M` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub errors: u64,
    pub replies: u64,
}

/// What one run printed and how it ended.
pub struct Outcome {
    pub invocation: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Outcome {
    /// Panics with `what` and the whole report.
    #[track_caller]
    pub fn fail(&self, what: impl fmt::Display) -> ! {
        panic!("{what}\n{self}");
    }

    /// Panics with `what` and the whole report unless `condition` holds.
    #[track_caller]
    pub fn check(&self, condition: bool, what: impl fmt::Display) -> &Outcome {
        if !condition {
            self.fail(what);
        }
        self
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        lines(&self.stdout)
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        lines(&self.stderr)
    }

    /// Exits with `code`, and never by a panic.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Outcome {
        self.assert_no_panic();
        self.check(
            self.status.code() == Some(code),
            format!("expected exit code {code}, got {}", self.status),
        )
    }

    #[track_caller]
    pub fn assert_no_panic(&self) -> &Outcome {
        self.check(
            !self.stderr_text().contains("panicked"),
            "pipeload panicked",
        )
    }

    /// The counters of the `errors: N, replies: M` line on stdout.
    #[track_caller]
    pub fn summary(&self) -> Summary {
        self.stdout_lines()
            .iter()
            .find_map(|line| parse_summary(line))
            .unwrap_or_else(|| self.fail("stdout has no `errors: N, replies: M` line"))
    }

    /// stdout is exactly the three summary lines of a normal run, with
    /// these counts, and the exit code follows the error count.
    #[track_caller]
    pub fn assert_summary(&self, errors: u64, replies: u64) -> &Outcome {
        let expected =
            format!("{TRANSFERRED}\n{LAST_REPLY}\nerrors: {errors}, replies: {replies}\n");
        self.check(
            self.stdout_text() == expected,
            format!("expected stdout to be exactly:\n{expected}"),
        );
        self.assert_code(if errors == 0 { 0 } else { 1 })
    }

    /// stderr has a line equal to `line`.
    #[track_caller]
    pub fn assert_stderr_line(&self, line: &str) -> &Outcome {
        self.check(
            self.stderr_lines().iter().any(|have| have == line),
            format!("expected a stderr line equal to:\n{line}"),
        )
    }

    /// stderr has a line starting with `prefix`.
    #[track_caller]
    pub fn assert_stderr_line_starts(&self, prefix: &str) -> &Outcome {
        self.check(
            self.stderr_lines()
                .iter()
                .any(|have| have.starts_with(prefix)),
            format!("expected a stderr line starting with:\n{prefix}"),
        )
    }

    /// stderr has a line reporting the fatal error `message`: the line
    /// starts with it, after an optional `pipeload: ` program-name prefix
    /// (STYLE rule 1 has main print `pipeload: {err:#}`).
    #[track_caller]
    pub fn assert_fatal_line(&self, message: &str) -> &Outcome {
        self.check(
            self.stderr_lines().iter().any(|have| {
                have.strip_prefix("pipeload: ")
                    .unwrap_or(have)
                    .starts_with(message)
            }),
            format!(
                "expected a stderr line starting with (optionally after `pipeload: `):\n{message}"
            ),
        )
    }

    #[track_caller]
    pub fn assert_stderr_contains(&self, text: &str) -> &Outcome {
        self.check(
            self.stderr_text().contains(text),
            format!("expected stderr to contain:\n{text}"),
        )
    }

    #[track_caller]
    pub fn assert_stderr_lacks(&self, text: &str) -> &Outcome {
        self.check(
            !self.stderr_text().contains(text),
            format!("expected stderr not to contain:\n{text}"),
        )
    }

    /// Neither stdout nor stderr mentions `secret`.
    #[track_caller]
    pub fn assert_never_prints(&self, secret: &str) -> &Outcome {
        self.check(
            !self.stdout_text().contains(secret) && !self.stderr_text().contains(secret),
            format!("output must never contain {secret:?}"),
        )
    }
}

fn parse_summary(line: &str) -> Option<Summary> {
    let rest = line.strip_prefix("errors: ")?;
    let (errors, replies) = rest.split_once(", replies: ")?;
    Some(Summary {
        errors: errors.parse().ok()?,
        replies: replies.parse().ok()?,
    })
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line).to_string())
        .collect()
}

/// The bytes as escaped text, cut in the middle when long.
fn excerpt(bytes: &[u8]) -> String {
    if bytes.len() <= 2 * REPORT_LIMIT {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    format!(
        "{}\n… [{} bytes left out] …\n{}",
        String::from_utf8_lossy(&bytes[..REPORT_LIMIT]),
        bytes.len() - 2 * REPORT_LIMIT,
        String::from_utf8_lossy(&bytes[bytes.len() - REPORT_LIMIT..])
    )
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "--- command:\n{}", self.invocation)?;
        writeln!(f, "--- exit: {}", self.status)?;
        writeln!(
            f,
            "--- stdout ({} bytes):\n{}",
            self.stdout.len(),
            excerpt(&self.stdout)
        )?;
        write!(
            f,
            "--- stderr ({} bytes):\n{}",
            self.stderr.len(),
            excerpt(&self.stderr)
        )
    }
}
