//! The figures as Markdown, ready to paste into an issue or the README: how
//! the bench was run, one row per data set and tool with the medians of its
//! runs, then pipeload / redis-cli per data set, then pipeload into one
//! server against pipeload into the 3-primary cluster, then pipeload
//! `--progress` against `--no-progress`, then the server's memory under bulk
//! `GET`s. Medians, because a shared two-core machine has outliers; only
//! runs that passed their checks count, and failed ones are listed at the
//! end (the memory table counts every run: a run the server cut off shows
//! what it cost the server first).

use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::datasets::{
    Dataset, OUTPUT_BUFFER_LIMIT, SET_1M_RESP, SET_1M_RESP_CLUSTER3, SET_1M_RESP_PROGRESS,
    SET_10M_RESP,
};
use crate::runs::{RunRecord, Tool};

/// Peak RSS of pipeload on ten times the input may grow this much at most.
const FLAT_RSS_TOLERANCE: f64 = 0.10;

/// How the bench was run, for the header.
pub struct Setup {
    pub command_line: String,
    pub nproc: usize,
    pub cpu_model: Option<String>,
    pub server_version: String,
    pub redis_cli_version: String,
    pub pipeload: PathBuf,
    /// What measuring adds to every peak RSS (`true` measured the same way).
    pub rss_floor_kib: u64,
    pub runs: u32,
    pub scale: f64,
}

/// Medians over the runs of one tool on one data set that passed their checks.
struct ToolSummary {
    passed_runs: usize,
    all_runs: usize,
    wall_seconds: Option<f64>,
    client_cpu_seconds: Option<f64>,
    server_cpu_seconds: Option<f64>,
    /// Server CPU / wall: how busy the load kept the server's one main thread.
    server_saturation: Option<f64>,
    peak_rss_mib: Option<f64>,
    keys: Option<f64>,
    progress_lines: Option<f64>,
}

impl ToolSummary {
    fn of(records: &[&RunRecord]) -> Self {
        let passed: Vec<&RunRecord> = records
            .iter()
            .copied()
            .filter(|record| record.failure.is_none())
            .collect();
        let median_of = |figure: fn(&RunRecord) -> f64| median(passed.iter().map(|r| figure(r)));
        ToolSummary {
            passed_runs: passed.len(),
            all_runs: records.len(),
            wall_seconds: median_of(|r| r.wall.as_secs_f64()),
            client_cpu_seconds: median_of(|r| r.client_cpu.as_secs_f64()),
            server_cpu_seconds: median_of(|r| r.server_cpu.as_secs_f64()),
            server_saturation: median_of(|r| r.server_cpu.as_secs_f64() / seconds_or_tiny(r.wall)),
            peak_rss_mib: median_of(|r| r.peak_rss_kib as f64 / 1024.0),
            keys: median_of(|r| r.keys as f64),
            progress_lines: median_of(|r| r.progress_lines as f64),
        }
    }
}

/// The whole report.
pub fn render(setup: &Setup, datasets: &[Dataset], records: &[RunRecord]) -> String {
    let mut out = String::new();
    render_setup(&mut out, setup);
    render_figures(&mut out, datasets, records);
    render_ratios(&mut out, datasets, records);
    render_template_comparison(&mut out, datasets, records);
    render_cluster_comparison(&mut out, setup, records);
    render_progress_comparison(&mut out, records);
    render_server_memory(&mut out, datasets, records);
    render_flat_rss(&mut out, records);
    render_failures(&mut out, records);
    out
}

fn render_setup(out: &mut String, setup: &Setup) {
    let _ = writeln!(out, "## pipeload vs `redis-cli --pipe`\n");
    let _ = writeln!(out, "- command: `{}`", setup.command_line);
    let cpu = setup.cpu_model.as_deref().unwrap_or("unknown CPU");
    let _ = writeln!(out, "- machine: nproc {}, {cpu}", setup.nproc);
    let _ = writeln!(out, "- {}", setup.server_version);
    let _ = writeln!(out, "- {}", setup.redis_cli_version);
    let _ = writeln!(out, "- pipeload: `{}`", setup.pipeload.display());
    let _ = writeln!(
        out,
        "- {} runs per tool and data set, tools alternating, FLUSHALL before each run; \
         scale {}; medians of the runs that passed their checks",
        setup.runs, setup.scale
    );
    let _ = writeln!(
        out,
        "- client CPU and peak RSS from the tool's own `wait4` rusage, taken by a small \
         helper process (peak RSS of `true` measured so: {:.1} MiB); server CPU from \
         `/proc/PID/stat` (10 ms ticks), summed over the 3 nodes for `{SET_1M_RESP_CLUSTER3}` \
         (whose saturation can thus exceed 100%); saturation = server CPU / wall\n",
        setup.rss_floor_kib as f64 / 1024.0
    );
}

fn render_figures(out: &mut String, datasets: &[Dataset], records: &[RunRecord]) {
    let _ = writeln!(
        out,
        "| data set | commands | tool | passed runs | wall s | client CPU s | server CPU s | server saturation | peak RSS MiB | keys |"
    );
    let _ = writeln!(out, "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|");
    for dataset in datasets {
        for tool in Tool::ALL {
            let runs = records_of(records, dataset.name, tool);
            if runs.is_empty() {
                continue;
            }
            let summary = ToolSummary::of(&runs);
            let warning = if summary.passed_runs < summary.all_runs {
                " ⚠"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {}/{}{warning} | {} | {} | {} | {} | {} | {} |",
                dataset.name,
                dataset.commands,
                tool.name(),
                summary.passed_runs,
                summary.all_runs,
                figure(summary.wall_seconds, 3),
                figure(summary.client_cpu_seconds, 3),
                figure(summary.server_cpu_seconds, 2),
                summary
                    .server_saturation
                    .map_or("—".to_owned(), |ratio| format!("{:.0}%", ratio * 100.0)),
                figure(summary.peak_rss_mib, 1),
                figure(summary.keys, 0),
            );
        }
    }
    out.push('\n');
}

fn render_ratios(out: &mut String, datasets: &[Dataset], records: &[RunRecord]) {
    let raced: Vec<&Dataset> = datasets
        .iter()
        .filter(|d| d.contenders.contains(&Tool::RedisCli))
        .collect();
    if raced.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "| data set | wall pipeload / redis-cli | client CPU pipeload / redis-cli |"
    );
    let _ = writeln!(out, "|---|--:|--:|");
    for dataset in raced {
        let redis_cli = ToolSummary::of(&records_of(records, dataset.name, Tool::RedisCli));
        let pipeload = ToolSummary::of(&records_of(records, dataset.name, Tool::Pipeload));
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            dataset.name,
            ratio(pipeload.wall_seconds, redis_cli.wall_seconds),
            ratio(pipeload.client_cpu_seconds, redis_cli.client_cpu_seconds),
        );
    }
    out.push('\n');
}

/// For the CSV and JSON Lines sets: pipeload through `--template` against
/// pipeload loading the same commands as RESP (how much templating costs)
/// and against a Python script piped into `redis-cli --pipe` (what users
/// run today).
fn render_template_comparison(out: &mut String, datasets: &[Dataset], records: &[RunRecord]) {
    let with_records: Vec<&Dataset> = datasets.iter().filter(|d| d.records.is_some()).collect();
    if with_records.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "| data set | wall --template / RESP | wall --template / python → redis-cli | client CPU --template / RESP | client CPU --template / python → redis-cli |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|");
    for dataset in with_records {
        let of = |tool| ToolSummary::of(&records_of(records, dataset.name, tool));
        let (template, resp, python) = (
            of(Tool::PipeloadTemplate),
            of(Tool::PipeloadResp),
            of(Tool::PythonRedisCli),
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            dataset.name,
            ratio(template.wall_seconds, resp.wall_seconds),
            ratio(template.wall_seconds, python.wall_seconds),
            ratio(template.client_cpu_seconds, resp.client_cpu_seconds),
            ratio(template.client_cpu_seconds, python.client_cpu_seconds),
        );
    }
    out.push('\n');
}

/// pipeload into one server (`set-1m.resp`) against pipeload into the
/// 3-primary cluster (`set-1m.resp@cluster3`): the same file, the same
/// machine, the same bench run. Shown when the cluster set ran; the one-server
/// row is blank when `set-1m.resp` did not.
fn render_cluster_comparison(out: &mut String, setup: &Setup, records: &[RunRecord]) {
    let cluster = records_of(records, SET_1M_RESP_CLUSTER3, Tool::Pipeload);
    if cluster.is_empty() {
        return;
    }
    let cluster = ToolSummary::of(&cluster);
    let one_server = ToolSummary::of(&records_of(records, SET_1M_RESP, Tool::Pipeload));
    let _ = writeln!(
        out,
        "| pipeload into | data set | passed runs | wall s | client CPU s | server CPU s | peak RSS MiB |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|");
    for (target, dataset, summary) in [
        ("one redis-server", SET_1M_RESP, &one_server),
        ("3-primary cluster", SET_1M_RESP_CLUSTER3, &cluster),
    ] {
        let _ = writeln!(
            out,
            "| {target} | {dataset} | {}/{} | {} | {} | {} | {} |",
            summary.passed_runs,
            summary.all_runs,
            figure(summary.wall_seconds, 3),
            figure(summary.client_cpu_seconds, 3),
            figure(summary.server_cpu_seconds, 2),
            figure(summary.peak_rss_mib, 1),
        );
    }
    let _ = writeln!(
        out,
        "| cluster / one server | | | {} | {} | {} | {} |",
        ratio(cluster.wall_seconds, one_server.wall_seconds),
        ratio(cluster.client_cpu_seconds, one_server.client_cpu_seconds),
        ratio(cluster.server_cpu_seconds, one_server.server_cpu_seconds),
        ratio(cluster.peak_rss_mib, one_server.peak_rss_mib),
    );
    out.push('\n');
    if one_server.all_runs == 0 {
        let _ = writeln!(
            out,
            "No one-server figures: run `{SET_1M_RESP}` in the same bench to compare \
             (`--only {SET_1M_RESP},{SET_1M_RESP_CLUSTER3}`).\n"
        );
    }
    let _ = writeln!(
        out,
        "Server CPU of the cluster is summed over its 3 nodes. `redis-cli --pipe` has no row: \
         it cannot load a cluster (it ignores `-c`). This machine has {} cores (nproc): the \
         3 servers and pipeload share them.\n",
        setup.nproc
    );
}

/// pipeload `--progress` against `--no-progress` on `set-1m.resp@progress`,
/// when it ran: what the progress display costs a load that a log records.
fn render_progress_comparison(out: &mut String, records: &[RunRecord]) {
    let summary_of = |tool| ToolSummary::of(&records_of(records, SET_1M_RESP_PROGRESS, tool));
    let (off, on) = (
        summary_of(Tool::PipeloadNoProgress),
        summary_of(Tool::PipeloadProgress),
    );
    if off.all_runs + on.all_runs == 0 {
        return;
    }
    let _ = writeln!(
        out,
        "| {SET_1M_RESP_PROGRESS} | passed runs | wall s | client CPU s | peak RSS MiB | progress lines |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|");
    for (tool, summary) in [
        (Tool::PipeloadNoProgress, &off),
        (Tool::PipeloadProgress, &on),
    ] {
        let _ = writeln!(
            out,
            "| {} | {}/{} | {} | {} | {} | {} |",
            tool.name(),
            summary.passed_runs,
            summary.all_runs,
            figure(summary.wall_seconds, 3),
            figure(summary.client_cpu_seconds, 3),
            figure(summary.peak_rss_mib, 1),
            figure(summary.progress_lines, 0),
        );
    }
    let _ = writeln!(
        out,
        "| --progress / --no-progress | | {} | {} | {} | |",
        ratio(on.wall_seconds, off.wall_seconds),
        ratio(on.client_cpu_seconds, off.client_cpu_seconds),
        ratio(on.peak_rss_mib, off.peak_rss_mib),
    );
    let _ = writeln!(
        out,
        "\nThe tool's standard error is a file, not a terminal: `--progress` prints \
         `pipeload: progress: …` once a second there (medians of the lines counted above).\n"
    );
}

/// The data sets that read (bulk `GET`s): per tool, how many runs completed,
/// their wall time, and what every run cost the server's memory.
fn render_server_memory(out: &mut String, datasets: &[Dataset], records: &[RunRecord]) {
    let reading: Vec<&Dataset> = datasets.iter().filter(|d| d.preload.is_some()).collect();
    if reading.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "| data set | tool | completed runs | wall s | server `mem_clients_normal` peak MiB, median (max) | server RSS growth MiB, median (max) | cut off by the server | timed out |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|");
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    for dataset in reading {
        for tool in Tool::ALL {
            let runs = records_of(records, dataset.name, tool);
            if runs.is_empty() {
                continue;
            }
            let summary = ToolSummary::of(&runs);
            let memory: Vec<_> = runs.iter().filter_map(|r| r.server_memory).collect();
            let clients: Vec<f64> = memory.iter().map(|m| mib(m.clients_normal)).collect();
            let growth: Vec<f64> = memory
                .iter()
                .map(|m| mib(m.used_memory_rss.saturating_sub(m.used_memory_rss_at_start)))
                .collect();
            let median_and_max = |values: &[f64]| match (
                median(values.iter().copied()),
                values.iter().copied().reduce(f64::max),
            ) {
                (Some(median), Some(max)) => format!("{median:.1} ({max:.1})"),
                _ => "—".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {}/{} | {} | {} | {} | {} | {} |",
                dataset.name,
                tool.name(),
                summary.passed_runs,
                summary.all_runs,
                figure(summary.wall_seconds, 3),
                median_and_max(&clients),
                median_and_max(&growth),
                runs.iter().filter(|r| r.dropped_for_output_buffer).count(),
                runs.iter().filter(|r| r.timed_out).count(),
            );
        }
    }
    let _ = writeln!(
        out,
        "\nEach run on a fresh redis-server, its values preloaded untimed with `redis-cli --pipe`; \
         `INFO memory` polled every 5 ms from a side connection (whose own buffers count in \
         `mem_clients_normal` too, a few KiB), so a tool the server cuts off within \
         milliseconds may show less than it cost; RSS growth is the peak `used_memory_rss` \
         during the run less its value before. `@obuf16mb`: `client-output-buffer-limit \
         {OUTPUT_BUFFER_LIMIT}`. Wall time is the median of the completed runs only.\n"
    );
}

/// pipeload's peak RSS on the 10M set against the 1M set, when both ran.
fn render_flat_rss(out: &mut String, records: &[RunRecord]) {
    let rss_of =
        |dataset| ToolSummary::of(&records_of(records, dataset, Tool::Pipeload)).peak_rss_mib;
    let (Some(rss_1m), Some(rss_10m)) = (rss_of(SET_1M_RESP), rss_of(SET_10M_RESP)) else {
        return;
    };
    let growth = rss_10m / rss_1m - 1.0;
    let verdict = if growth <= FLAT_RSS_TOLERANCE {
        "flat"
    } else {
        "NOT flat"
    };
    let _ = writeln!(
        out,
        "pipeload peak RSS, set-10m.resp against set-1m.resp: {rss_10m:.1} MiB vs {rss_1m:.1} MiB \
         ({:+.1}%): {verdict} (tolerance {:.0}%)\n",
        growth * 100.0,
        FLAT_RSS_TOLERANCE * 100.0
    );
}

fn render_failures(out: &mut String, records: &[RunRecord]) {
    let failed: Vec<&RunRecord> = records.iter().filter(|r| r.failure.is_some()).collect();
    if failed.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "**{} failed run(s), not counted above:**\n",
        failed.len()
    );
    for record in failed {
        let _ = writeln!(
            out,
            "- {} on {}: {}",
            record.tool.name(),
            record.dataset,
            record.failure.as_deref().unwrap_or_default()
        );
    }
    out.push('\n');
}

fn records_of<'a>(records: &'a [RunRecord], dataset: &str, tool: Tool) -> Vec<&'a RunRecord> {
    records
        .iter()
        .filter(|record| record.dataset == dataset && record.tool == tool)
        .collect()
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    })
}

/// A run too short to time would divide by zero; a nanosecond keeps the
/// ratio finite without hiding anything at the precision printed.
fn seconds_or_tiny(duration: Duration) -> f64 {
    duration.as_secs_f64().max(1e-9)
}

/// `numerator / denominator` to two decimals, or a dash when either is
/// missing.
fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> String {
    match (numerator, denominator) {
        (Some(numerator), Some(denominator)) if denominator > 0.0 => {
            format!("{:.2}", numerator / denominator)
        }
        _ => "—".to_owned(),
    }
}

fn figure(value: Option<f64>, decimals: usize) -> String {
    value.map_or("—".to_owned(), |value| format!("{value:.decimals$}"))
}
