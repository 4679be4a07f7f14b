//! One measured load: empty the target, note its CPU time, run one tool on
//! one data set, then check what a clean load must show — the last line
//! `errors: 0, replies: N`, a zero exit status and the data set's key count
//! on the target — and keep every figure for the report. A run that fails a
//! check is announced at once on standard error and kept, marked, so the
//! report can say so.
//!
//! The target is one server or the primaries of a cluster: every one is
//! emptied, and keys and server CPU time are summed over them.
//!
//! A tool is a program and its flags: pipeload runs plain, or with
//! `--progress` against `--no-progress` to price the progress display. Its
//! standard error is a file, not a terminal, so `--progress` prints its
//! plain line a second there; the lines are counted.

use std::iter::Sum;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::datasets::Dataset;
use crate::measure::run_measured;
use crate::server::RedisServer;

/// Lets the server finish freeing memory and settle after FLUSHALL, so that
/// work is not charged to the next run.
const SETTLE_AFTER_FLUSH: Duration = Duration::from_millis(300);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tool {
    RedisCli,
    Pipeload,
    /// pipeload with its progress display forced on (`--progress`).
    PipeloadProgress,
    /// pipeload with its progress display forced off (`--no-progress`).
    PipeloadNoProgress,
}

/// The prefix of pipeload's progress lines in a log.
const PROGRESS_LINE: &str = "pipeload: progress: ";

impl Tool {
    /// Every tool, in the order the report lists them.
    pub const ALL: [Tool; 4] = [
        Tool::RedisCli,
        Tool::Pipeload,
        Tool::PipeloadNoProgress,
        Tool::PipeloadProgress,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tool::RedisCli => "redis-cli",
            Tool::Pipeload => "pipeload",
            Tool::PipeloadProgress => "pipeload --progress",
            Tool::PipeloadNoProgress => "pipeload --no-progress",
        }
    }

    /// Flags beyond the connection and `--pipe` every tool gets.
    fn flags(self) -> &'static [&'static str] {
        match self {
            Tool::RedisCli | Tool::Pipeload => &[],
            Tool::PipeloadProgress => &["--progress"],
            Tool::PipeloadNoProgress => &["--no-progress"],
        }
    }
}

/// Where the two tools are.
pub struct Tools {
    pub redis_cli: PathBuf,
    pub pipeload: PathBuf,
}

impl Tools {
    fn program(&self, tool: Tool) -> &Path {
        match tool {
            Tool::RedisCli => &self.redis_cli,
            Tool::Pipeload | Tool::PipeloadProgress | Tool::PipeloadNoProgress => &self.pipeload,
        }
    }
}

/// Where a load goes.
pub struct Target<'a> {
    /// Emptied before the run; their keys and CPU time count.
    pub servers: &'a [RedisServer],
    /// The port the tool is given: a server's own, the delay proxy's, or the
    /// cluster node the tool learns the others from.
    pub port: u16,
    /// Whether the tool is told it loads a cluster (`-c`).
    pub cluster: bool,
}

impl Target<'_> {
    fn flush_all(&self) -> Result<()> {
        self.servers.iter().try_for_each(RedisServer::flush_all)
    }

    fn key_count(&self) -> Result<u64> {
        self.sum_over_servers(RedisServer::key_count)
    }

    fn cpu_time(&self) -> Result<Duration> {
        self.sum_over_servers(RedisServer::cpu_time)
    }

    fn sum_over_servers<T: Sum>(&self, figure: fn(&RedisServer) -> Result<T>) -> Result<T> {
        self.servers.iter().map(figure).sum()
    }
}

/// The figures of one run.
#[derive(Clone, Debug)]
pub struct RunRecord {
    pub dataset: &'static str,
    pub tool: Tool,
    pub wall: Duration,
    pub client_cpu: Duration,
    pub server_cpu: Duration,
    pub peak_rss_kib: u64,
    pub keys: u64,
    /// `pipeload: progress: ` lines on the tool's standard error.
    pub progress_lines: u64,
    /// Why the run does not count, when it does not.
    pub failure: Option<String>,
}

/// Loads `dataset` with `tool` into an emptied `target`.
pub fn measure_load(
    target: &Target,
    tools: &Tools,
    tool: Tool,
    dataset: &Dataset,
    output_dir: &Path,
) -> Result<RunRecord> {
    target.flush_all()?;
    thread::sleep(SETTLE_AFTER_FLUSH);
    let leftover = target.key_count()?;
    anyhow::ensure!(leftover == 0, "{leftover} keys left after FLUSHALL");

    let mut arguments = ["-h", "127.0.0.1", "-p", &target.port.to_string(), "--pipe"]
        .map(String::from)
        .to_vec();
    if target.cluster {
        arguments.push("-c".to_owned());
    }
    arguments.extend(tool.flags().iter().map(|flag| flag.to_string()));
    let server_cpu_before = target.cpu_time()?;
    let measurement = run_measured(tools.program(tool), &arguments, &dataset.path, output_dir)
        .with_context(|| format!("{} on {}", tool.name(), dataset.name))?;
    let server_cpu = target.cpu_time()?.saturating_sub(server_cpu_before);
    let keys = target.key_count()?;

    let mut problems = Vec::new();
    let expected_summary = format!("errors: 0, replies: {}", dataset.commands);
    let summary = measurement.stdout.lines().last().unwrap_or("").trim_end();
    if summary != expected_summary {
        problems.push(format!(
            "last line {summary:?}, expected {expected_summary:?}"
        ));
    }
    if !measurement.status.success() {
        problems.push(measurement.status.to_string());
    }
    if keys != dataset.expected_keys {
        problems.push(format!("{keys} keys, expected {}", dataset.expected_keys));
    }
    let progress_lines = measurement
        .stderr
        .lines()
        .filter(|line| line.starts_with(PROGRESS_LINE))
        .count() as u64;
    if tool == Tool::PipeloadNoProgress && progress_lines > 0 {
        problems.push(format!(
            "{progress_lines} progress lines with --no-progress"
        ));
    }
    let failure = (!problems.is_empty()).then(|| problems.join("; "));
    if let Some(failure) = &failure {
        eprintln!(
            "\n!!! FAILED RUN: {} on {}: {failure}\n!!! its standard error began with:\n{}\n",
            tool.name(),
            dataset.name,
            first_lines(&measurement.stderr, 10)
        );
    }

    Ok(RunRecord {
        dataset: dataset.name,
        tool,
        wall: measurement.wall,
        client_cpu: measurement.cpu,
        server_cpu,
        peak_rss_kib: measurement.peak_rss_kib,
        keys,
        progress_lines,
        failure,
    })
}

fn first_lines(text: &str, count: usize) -> String {
    text.lines().take(count).collect::<Vec<_>>().join("\n")
}
