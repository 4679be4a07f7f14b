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
//! A data set that reads (the `GET` sets) has its values preloaded, untimed,
//! with `redis-cli --pipe`, and has the server's memory watched during the
//! run (`INFO memory` from a side connection); a run the server cut off for
//! its output buffer (a limit the server was started with) says so.
//! Every run is killed after the time limit and marked timed out.
//!
//! A tool is a program and its flags: pipeload runs plain, or with
//! `--progress` against `--no-progress` to price the progress display. Its
//! standard error is a file, not a terminal, so `--progress` prints its
//! plain line a second there; the lines are counted.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pipeload_harness::{Client, RedisServer, TestCluster};

use crate::datasets::{Dataset, Preload};
use crate::measure::run_measured;
use crate::server_stats::{MemoryPeaks, MemoryWatch, cpu_time};

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
    /// A CSV or JSON Lines set as users load it today: a Python script
    /// writing RESP, piped into `redis-cli --pipe`.
    PythonRedisCli,
    /// pipeload loading the commands a record set's template gives, already
    /// encoded as RESP: the floor templating should stay near.
    PipeloadResp,
    /// pipeload loading a CSV or JSON Lines set through `--template`.
    PipeloadTemplate,
}

/// The prefix of pipeload's progress lines in a log.
const PROGRESS_LINE: &str = "pipeload: progress: ";
/// What redis-server logs when it drops a client over its output buffer
/// (`… scheduled to be closed ASAP for overcoming of output buffer limits.`).
const OUTPUT_BUFFER_DROP: &str = "output buffer limits";

impl Tool {
    /// Every tool, in the order the report lists them.
    pub const ALL: [Tool; 7] = [
        Tool::RedisCli,
        Tool::Pipeload,
        Tool::PipeloadNoProgress,
        Tool::PipeloadProgress,
        Tool::PythonRedisCli,
        Tool::PipeloadResp,
        Tool::PipeloadTemplate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tool::RedisCli => "redis-cli",
            Tool::Pipeload => "pipeload",
            Tool::PipeloadProgress => "pipeload --progress",
            Tool::PipeloadNoProgress => "pipeload --no-progress",
            Tool::PythonRedisCli => "python → redis-cli --pipe",
            Tool::PipeloadResp => "pipeload, same commands as RESP",
            Tool::PipeloadTemplate => "pipeload --template",
        }
    }

    /// Flags beyond the connection and `--pipe` every tool gets.
    fn flags(self) -> &'static [&'static str] {
        match self {
            Tool::RedisCli | Tool::Pipeload | Tool::PythonRedisCli => &[],
            Tool::PipeloadResp | Tool::PipeloadTemplate => &[],
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
            // The Python script and redis-cli, as one shell pipeline.
            Tool::PythonRedisCli => Path::new("sh"),
            Tool::Pipeload
            | Tool::PipeloadProgress
            | Tool::PipeloadNoProgress
            | Tool::PipeloadResp
            | Tool::PipeloadTemplate => &self.pipeload,
        }
    }
}

/// Where a load goes.
pub struct Target<'a> {
    /// Emptied before the run; their keys and CPU time count.
    pub servers: Servers<'a>,
    /// The port the tool is given: a server's own, the delay proxy's, or the
    /// cluster node the tool learns the others from.
    pub port: u16,
}

/// The servers a load reaches.
#[derive(Clone, Copy)]
pub enum Servers<'a> {
    One(&'a RedisServer),
    /// Its primaries; the tool is told it loads a cluster (`-c`).
    Cluster(&'a TestCluster),
}

impl Target<'_> {
    /// Empties every server, synchronously: Valkey flushes in the
    /// background by default (`lazyfree-lazy-user-flush yes`), which would
    /// free one run's keys during the next.
    fn flush_all(&self) {
        for mut client in self.clients() {
            client.ok(&["FLUSHALL", "SYNC"]);
        }
    }

    fn key_count(&self) -> u64 {
        let keys: i64 = self.clients().iter_mut().map(Client::dbsize).sum();
        u64::try_from(keys).expect("DBSIZE is never negative")
    }

    fn cpu_time(&self) -> Result<Duration> {
        self.pids().into_iter().map(cpu_time).sum()
    }

    /// A new connection to every server.
    fn clients(&self) -> Vec<Client> {
        match self.servers {
            Servers::One(server) => vec![server.client()],
            Servers::Cluster(cluster) => (0..cluster.len())
                .map(|node| cluster.client(node))
                .collect(),
        }
    }

    fn pids(&self) -> Vec<u32> {
        match self.servers {
            Servers::One(server) => vec![server.pid()],
            Servers::Cluster(cluster) => (0..cluster.len()).map(|node| cluster.pid(node)).collect(),
        }
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
    /// For the data sets that read: the server's memory during the run.
    pub server_memory: Option<MemoryPeaks>,
    /// The server dropped the tool's connection over its output buffer.
    pub dropped_for_output_buffer: bool,
    pub timed_out: bool,
    /// Why the run does not count, when it does not.
    pub failure: Option<String>,
}

/// Loads `dataset` with `tool` into an emptied `target`, killing the tool
/// after `time_limit`.
pub fn measure_load(
    target: &Target,
    tools: &Tools,
    tool: Tool,
    dataset: &Dataset,
    output_dir: &Path,
    time_limit: Duration,
) -> Result<RunRecord> {
    target.flush_all();
    thread::sleep(SETTLE_AFTER_FLUSH);
    let leftover = target.key_count();
    anyhow::ensure!(leftover == 0, "{leftover} keys left after FLUSHALL");
    let watched = match (&dataset.preload, target.servers) {
        (None, _) => None,
        (Some(preload), Servers::One(server)) => {
            preload_values(target.port, tools, preload, output_dir)?;
            Some(server)
        }
        (Some(_), Servers::Cluster(_)) => {
            bail!("{} reads from one server, not a cluster", dataset.name)
        }
    };

    let mut arguments = ["-h", "127.0.0.1", "-p", &target.port.to_string(), "--pipe"]
        .map(String::from)
        .to_vec();
    if let Servers::Cluster(_) = target.servers {
        arguments.push("-c".to_owned());
    }
    arguments.extend(tool.flags().iter().map(|flag| flag.to_string()));
    let mut input = dataset.path.as_path();
    if let Some(records) = &dataset.records {
        match tool {
            Tool::PythonRedisCli => {
                let pipeline = format!(
                    "python3 '{}' | '{}' {}",
                    records.python_script.display(),
                    tools.redis_cli.display(),
                    arguments.join(" ")
                );
                arguments = vec!["-c".to_owned(), pipeline];
            }
            Tool::PipeloadResp => input = &records.resp_twin,
            Tool::PipeloadTemplate => arguments.extend(
                ["--format", records.format, "--template", records.template].map(String::from),
            ),
            _ => {}
        }
    }
    let server_cpu_before = target.cpu_time()?;
    let log_before = watched.map(|server| server.log().len());
    let watch = watched.map(MemoryWatch::start).transpose()?;
    let measurement = run_measured(
        tools.program(tool),
        &arguments,
        input,
        output_dir,
        time_limit,
    )
    .with_context(|| format!("{} on {}", tool.name(), dataset.name))?;
    let server_memory = watch.map(MemoryWatch::finish).transpose()?;
    let server_cpu = target.cpu_time()?.saturating_sub(server_cpu_before);
    let keys = target.key_count();
    let dropped_for_output_buffer = match (watched, log_before) {
        (Some(server), Some(offset)) => server
            .log()
            .get(offset..)
            .is_some_and(|logged| logged.contains(OUTPUT_BUFFER_DROP)),
        _ => false,
    };

    let mut problems = Vec::new();
    if measurement.timed_out {
        problems.push(format!(
            "timed out: killed after {} s",
            time_limit.as_secs()
        ));
    }
    if dropped_for_output_buffer {
        problems.push("the server dropped its connection over the output buffer limit".to_owned());
    }
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
        server_memory,
        dropped_for_output_buffer,
        timed_out: measurement.timed_out,
        failure,
    })
}

/// Puts the values a reading data set reads on the server at `port`
/// (untimed, with `redis-cli --pipe`).
fn preload_values(port: u16, tools: &Tools, preload: &Preload, output_dir: &Path) -> Result<()> {
    let input = File::open(&preload.path)
        .with_context(|| format!("cannot open {}", preload.path.display()))?;
    let output = Command::new(&tools.redis_cli)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--pipe"])
        .current_dir(output_dir)
        .stdin(Stdio::from(input))
        .output()
        .context("cannot run redis-cli --pipe to preload the values")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = format!("errors: 0, replies: {}", preload.commands);
    if !output.status.success() || stdout.lines().last() != Some(expected.as_str()) {
        bail!(
            "preloading {} failed ({}): {stdout}{}",
            preload.path.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn first_lines(text: &str, count: usize) -> String {
    text.lines().take(count).collect::<Vec<_>>().join("\n")
}
