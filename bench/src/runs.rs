//! One measured load: empty the server, note its CPU time, run one tool on
//! one data set, then check what a clean load must show — the last line
//! `errors: 0, replies: N`, a zero exit status and the data set's key count
//! on the server — and keep every figure for the report. A run that fails a
//! check is announced at once on standard error and kept, marked, so the
//! report can say so.

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
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::RedisCli => "redis-cli",
            Tool::Pipeload => "pipeload",
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
            Tool::Pipeload => &self.pipeload,
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
    /// Why the run does not count, when it does not.
    pub failure: Option<String>,
}

/// Loads `dataset` with `tool` into an emptied `server`, reached on
/// `target_port` (the server's own, or the delay proxy's).
pub fn measure_load(
    server: &RedisServer,
    target_port: u16,
    tools: &Tools,
    tool: Tool,
    dataset: &Dataset,
    output_dir: &Path,
) -> Result<RunRecord> {
    server.flush_all()?;
    thread::sleep(SETTLE_AFTER_FLUSH);
    let leftover = server.key_count()?;
    anyhow::ensure!(leftover == 0, "{leftover} keys left after FLUSHALL");

    let arguments = ["-h", "127.0.0.1", "-p", &target_port.to_string(), "--pipe"].map(String::from);
    let server_cpu_before = server.cpu_time()?;
    let measurement = run_measured(tools.program(tool), &arguments, &dataset.path, output_dir)
        .with_context(|| format!("{} on {}", tool.name(), dataset.name))?;
    let server_cpu = server.cpu_time()?.saturating_sub(server_cpu_before);
    let keys = server.key_count()?;

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
        failure,
    })
}

fn first_lines(text: &str, count: usize) -> String {
    text.lines().take(count).collect::<Vec<_>>().join("\n")
}
