//! Runs the built pipeload binary: stdin fed from a thread, stdout and
//! stderr collected by two more, a hang guard that kills the child. Every
//! assertion on an [`Outcome`] prints the whole invocation, exit status,
//! stdout and stderr when it fails.
//!
//! [`Pipeload::spawn`] starts the child and hands back a [`Running`] whose
//! stdin stays open for the test to write at its own pace, whose stderr can
//! be waited on while it runs ([`Running::wait_for_stderr`]), and which can
//! be sent signals (`kill -INT`) before it is [`finish`](Running::finish)ed.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Default hang guard: far above what any normal run needs.
const DEFAULT_GUARD: Duration = Duration::from_secs(60);

/// How much of stdout/stderr (head and tail each) a failure report shows.
const REPORT_LIMIT: usize = 16 * 1024;

pub const TRANSFERRED: &str = "All data transferred. Waiting for the last reply...";
pub const LAST_REPLY: &str = "Last reply received from server.";
/// How the summary's line on a cluster's layout changes begins.
const CLUSTER_LINE: &str = "cluster: ";
/// How the summary's line on `--connections N` begins.
const CONNECTIONS_LINE: &str = "connections: ";

/// A line the summary adds after the counts for cluster or connection
/// details, which the checks of the counts and the resume advice skip.
fn is_detail_line(line: &str) -> bool {
    line.starts_with(CLUSTER_LINE) || line.starts_with(CONNECTIONS_LINE)
}

/// Where the child's stdout or stderr goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// A pipe read to the end by a thread of the test (the default).
    Collected,
    /// A pipe whose read end is closed before the child starts, as after
    /// `pipeload … | head -c 0`: every write fails with a broken pipe.
    ClosedPipe,
    /// No such descriptor at all, as after `pipeload … >&-`.
    Closed,
    /// A pipe the test keeps open and never reads, as after `pipeload … |
    /// less` left waiting: once the pipe is full, every write blocks.
    Unread,
}

/// One pipeload invocation, built up and then [`run`](Pipeload::run).
pub struct Pipeload {
    args: Vec<OsString>,
    stdin: Vec<u8>,
    env: Vec<(OsString, OsString)>,
    current_dir: Option<PathBuf>,
    guard: Duration,
    stdout_sink: Sink,
    stderr_sink: Sink,
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
            stdout_sink: Sink::Collected,
            stderr_sink: Sink::Collected,
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

    pub fn stdout_sink(mut self, sink: Sink) -> Pipeload {
        self.stdout_sink = sink;
        self
    }

    pub fn stderr_sink(mut self, sink: Sink) -> Pipeload {
        self.stderr_sink = sink;
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
        for (fd, sink) in [(1, self.stdout_sink), (2, self.stderr_sink)] {
            match sink {
                Sink::Collected => {}
                Sink::ClosedPipe => {
                    text.push_str(&format!(" {fd}>(a pipe closed at its read end)"))
                }
                Sink::Closed => text.push_str(&format!(" {fd}>&-")),
                Sink::Unread => text.push_str(&format!(" {fd}>(a pipe never read)")),
            }
        }
        text.push_str(&format!(
            "\nstdin ({} bytes): {}",
            self.stdin.len(),
            excerpt(&self.stdin)
        ));
        text
    }

    /// Runs to the end with the whole stdin fed from a thread.
    pub fn run(mut self) -> Outcome {
        let input = std::mem::take(&mut self.stdin);
        let mut running = self.spawn();
        let mut stdin = running.take_stdin();
        // pipeload may stop reading early (bad usage, refused connection,
        // malformed input): a broken pipe here is expected then.
        let feeder = thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let outcome = running.finish();
        let _ = feeder.join();
        outcome
    }

    /// Starts the child with its stdin an open pipe the test writes to (the
    /// bytes given with [`stdin`](Pipeload::stdin) are not used).
    pub fn spawn(self) -> Running {
        let invocation = self.invocation();
        let binary = env!("CARGO_BIN_EXE_pipeload");
        // A descriptor the child must not have at all takes a shell to close.
        let closes: Vec<&str> = [(self.stdout_sink, ">&-"), (self.stderr_sink, "2>&-")]
            .into_iter()
            .filter(|(sink, _)| *sink == Sink::Closed)
            .map(|(_, redirection)| redirection)
            .collect();
        let mut command = match closes.is_empty() {
            true => Command::new(binary),
            false => {
                let mut shell = Command::new("sh");
                shell
                    .arg("-c")
                    .arg(format!("exec \"$0\" \"$@\" {}", closes.join(" ")))
                    .arg(binary);
                shell
            }
        };
        command
            .args(&self.args)
            .env_remove("REDISCLI_AUTH")
            .stdin(Stdio::piped())
            .stdout(sink_stdio(self.stdout_sink))
            .stderr(sink_stdio(self.stderr_sink));
        for (key, value) in &self.env {
            command.env(key, value);
        }
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {invocation}: {err}"));
        let stdin = child.stdin.take();
        let unread_stdout = match self.stdout_sink {
            Sink::Unread => child.stdout.take(),
            _ => None,
        };
        let stdout = child.stdout.take().map(collect);
        let stderr = child.stderr.take().map(collect);
        Running {
            invocation,
            child,
            stdin,
            stdout,
            stderr,
            _unread_stdout: unread_stdout,
            guard: self.guard,
        }
    }
}

/// The `Stdio` for one output sink; a closed fd is arranged by the shell.
fn sink_stdio(sink: Sink) -> Stdio {
    match sink {
        Sink::Collected | Sink::Closed | Sink::Unread => Stdio::piped(),
        Sink::ClosedPipe => {
            let (reader, writer) = io::pipe().expect("create a pipe");
            drop(reader);
            writer.into()
        }
    }
}

/// A pipeload child still running: write to its stdin, signal it, then
/// [`finish`](Running::finish) it. Dropped unfinished, it is killed.
pub struct Running {
    invocation: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<Collector>,
    stderr: Option<Collector>,
    /// [`Sink::Unread`]: held open, never read, until the child is finished.
    _unread_stdout: Option<ChildStdout>,
    guard: Duration,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The write end of the child's stdin, for a feeder thread; dropping it
    /// is the end of the input.
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("stdin already taken")
    }

    /// Writes to the child's stdin (still open afterwards).
    pub fn write_stdin(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stdin = self.stdin.as_mut().expect("stdin already taken");
        stdin.write_all(bytes)?;
        stdin.flush()
    }

    /// Ends the input.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends a signal by name (`INT`, `TERM`) with `kill -NAME PID`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap_or_else(|err| panic!("run kill -{name}: {err}"));
        assert!(
            status.success(),
            "kill -{name} {} failed: {status}",
            self.pid()
        );
    }

    /// Waits up to `limit` for the child to exit; `None` if still running.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() >= deadline => return None,
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(err) => panic!("wait for {}: {err}", self.invocation),
            }
        }
    }

    /// Waits until the child's stderr contains `text`; panics with what it
    /// printed so far if it exits first or `limit` passes.
    pub fn wait_for_stderr(&mut self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let stderr = self
                .stderr
                .as_ref()
                .map(Collector::so_far)
                .unwrap_or_default();
            let stderr = String::from_utf8_lossy(&stderr);
            if stderr.contains(text) {
                return;
            }
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() >= deadline {
                panic!(
                    "waited for stderr to contain {text:?}, but pipeload {}\n\
                     --- command:\n{}\n--- stderr so far:\n{stderr}",
                    match exited {
                        true => "exited",
                        false => "still runs without it",
                    },
                    self.invocation
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the child (killing it at the hang guard, counted from now)
    /// and collects what it printed. The test's end of stdin is closed.
    pub fn finish(mut self) -> Outcome {
        self.stdin = None;
        let status = self.wait_for_exit(self.guard);
        let timed_out = status.is_none();
        let status = status.unwrap_or_else(|| {
            let _ = self.child.kill();
            self.child.wait().expect("wait for killed pipeload")
        });
        let output = |pipe: Option<Collector>| pipe.map(Collector::finish).unwrap_or_default();
        let outcome = Outcome {
            invocation: self.invocation.clone(),
            status,
            stdout: output(self.stdout.take()),
            stderr: output(self.stderr.take()),
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

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One output pipe of the child, read by a thread into a buffer the test
/// can look at while the child runs.
struct Collector {
    bytes: Arc<Mutex<Vec<u8>>>,
    reader: thread::JoinHandle<()>,
}

impl Collector {
    /// What was read so far.
    fn so_far(&self) -> Vec<u8> {
        self.bytes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Everything, once the pipe is closed.
    fn finish(self) -> Vec<u8> {
        self.reader.join().expect("output reader");
        std::mem::take(&mut *self.bytes.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn collect(mut pipe: impl Read + Send + 'static) -> Collector {
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::clone(&bytes);
    let reader = thread::spawn(move || {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => return,
                Ok(read) => shared
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(&chunk[..read]),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    });
    Collector { bytes, reader }
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

    /// stdout without the `cluster: …` line, which a cluster load whose
    /// layout changed prints after the counts, and the `connections: …`
    /// line of a load over several connections.
    pub fn summary_text(&self) -> String {
        self.stdout_text()
            .lines()
            .filter(|line| !is_detail_line(line))
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// The `cluster: …` line of the summary, if there is one.
    pub fn cluster_line(&self) -> Option<String> {
        self.stdout_lines()
            .into_iter()
            .find(|line| line.starts_with(CLUSTER_LINE))
    }

    /// The `connections: …` line of the summary, if there is one.
    pub fn connections_line(&self) -> Option<String> {
        self.stdout_lines()
            .into_iter()
            .find(|line| line.starts_with(CONNECTIONS_LINE))
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
        self.assert_complete_summary(errors, replies);
        self.assert_code(if errors == 0 { 0 } else { 1 })
    }

    /// The stdout lines after the `errors: N, replies: M` line (the last
    /// line's newline does not make an empty line).
    #[track_caller]
    fn lines_after_counts(&self) -> Vec<String> {
        let mut lines = self.stdout_lines();
        lines.retain(|line| !is_detail_line(line));
        if lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        let Some(at) = lines.iter().position(|line| parse_summary(line).is_some()) else {
            self.fail("stdout has no `errors: N, replies: M` line");
        };
        lines.split_off(at + 1)
    }

    /// A load that stopped early: stdout ends with the `errors: N,
    /// replies: M` line, `reconnects: R` when `--retry` was given, then
    /// `acknowledged: K` and `resume with: --skip K` (then what `--skip` leaves
    /// out: `in flight: …`, `answered after it: …`, `failed: …`); the exit code is
    /// `code`. Returns K.
    #[track_caller]
    pub fn assert_stopped(&self, code: i32) -> u64 {
        self.assert_code(code);
        let mut after = self.lines_after_counts();
        if after
            .first()
            .is_some_and(|line| line.starts_with("reconnects: "))
        {
            after.remove(0);
        }
        // What `--skip` leaves out may follow: `in flight: …`, `answered after it: …`, `failed: …`.
        let advice_notes = after.len().saturating_sub(2);
        let notes_known = after[after.len() - advice_notes..].iter().all(|line| {
            ["in flight: ", "answered after it: ", "failed: "]
                .iter()
                .any(|note| line.starts_with(note))
        });
        let acknowledged = match &after[..after.len() - advice_notes] {
            [acknowledged, hint] if notes_known => acknowledged
                .strip_prefix("acknowledged: ")
                .and_then(|count| count.parse::<u64>().ok())
                .filter(|count| *hint == format!("resume with: --skip {count}")),
            _ => None,
        };
        acknowledged.unwrap_or_else(|| {
            self.fail(
                "expected stdout to end with `errors: N, replies: M`, [`reconnects: R`,] \
                 `acknowledged: K` and `resume with: --skip K` [, `in flight: …`] [, `failed: …`]",
            )
        })
    }

    /// The R of the `reconnects: R` line, which must come right after the
    /// `errors: N, replies: M` line.
    #[track_caller]
    pub fn reconnects(&self) -> u64 {
        self.lines_after_counts()
            .first()
            .and_then(|line| line.strip_prefix("reconnects: "))
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| {
                self.fail("expected a `reconnects: R` line right after the `errors:` line")
            })
    }

    /// A `--retry` load that ran to the end: stdout is exactly the three
    /// summary lines plus `reconnects: R`, exit 0 (no error). Returns the
    /// counts and R.
    #[track_caller]
    pub fn assert_retried_without_errors(&self) -> (Summary, u64) {
        let summary = self.summary();
        let reconnects = self.reconnects();
        let expected = format!(
            "{TRANSFERRED}\n{LAST_REPLY}\nerrors: 0, replies: {}\nreconnects: {reconnects}\n",
            summary.replies
        );
        self.check(
            self.summary_text() == expected,
            format!("expected stdout to be exactly:\n{expected}"),
        );
        self.assert_code(0);
        (summary, reconnects)
    }

    /// stdout is exactly the three summary lines of a normal run, with
    /// these counts, whatever the exit code.
    #[track_caller]
    pub fn assert_complete_summary(&self, errors: u64, replies: u64) -> &Outcome {
        let expected =
            format!("{TRANSFERRED}\n{LAST_REPLY}\nerrors: {errors}, replies: {replies}\n");
        self.check(
            self.summary_text() == expected,
            format!("expected stdout to be exactly:\n{expected}"),
        )
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
