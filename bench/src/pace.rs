//! `--pace`: how well pipeload keeps to `--rate` and `--max-latency`, on a
//! redis-server (and a 3-primary cluster) of its own.
//!
//! - Rate accuracy: 100k `SET`s at `--rate 20000` (whatever `--scale`),
//!   one server and a cluster: the wall time against the one the rate
//!   implies, and the largest count of commands the server processed in
//!   any one second (its `total_commands_processed`, sampled every 50 ms).
//! - Latency: a foreground client sends one `GET` per millisecond on its own
//!   connection while pipeload loads 3M `SET`s, at full speed and with
//!   `--max-latency 1`: the foreground's p50/p99, pipeload's wall, rate and
//!   the rate it settled at; and the foreground idle, for reference. The
//!   3M are scaled by `--scale`.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pipeload_harness::client::read_value;
use pipeload_harness::{Client, RedisServer, TestCluster, info_field, resp_command};

/// Commands of the rate-accuracy load, and the rate it asks for.
const RATE_COMMANDS: u64 = 100_000;
const RATE: u64 = 20_000;
/// Commands of the latency load.
const LATENCY_COMMANDS: u64 = 3_000_000;
/// How often the server's processed-commands count is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Runs the pace figures and returns them as Markdown.
pub fn run(pipeload: &Path, scratch: &Path, scale: f64) -> Result<String> {
    // Not scaled: five seconds at any scale, long enough to judge the rate.
    let rate_commands = RATE_COMMANDS;
    let latency_commands = ((LATENCY_COMMANDS as f64 * scale) as u64).max(1000);
    let rate_file = scratch.join("pace-set-100k.txt");
    write_sets(&rate_file, rate_commands)?;
    let latency_file = scratch.join("pace-set-3m.txt");
    write_sets(&latency_file, latency_commands)?;

    let mut out = String::new();
    out.push_str(&format!(
        "### --rate {RATE}: {rate_commands} SETs\n\n\
         | target | wall (s) | expected (s) | error | max commands in one second | max / rate |\n\
         |---|---|---|---|---|---|\n"
    ));
    let expected = rate_commands as f64 / RATE as f64;
    {
        let server = RedisServer::start();
        eprintln!("rate: one server on port {}", server.port());
        let rate = RATE.to_string();
        let run = load_sampled(
            pipeload,
            &["-p", &server.port().to_string(), "--rate", &rate],
            &rate_file,
            &[server.port()],
        )?;
        check_keys(&[server.port()], rate_commands)?;
        out.push_str(&rate_row("one server", &run, expected));
    }
    {
        let cluster = TestCluster::start();
        let ports: Vec<u16> = (0..cluster.len()).map(|node| cluster.port(node)).collect();
        eprintln!("rate: 3-primary cluster on ports {ports:?}");
        let rate = RATE.to_string();
        let run = load_sampled(
            pipeload,
            &["-c", "-p", &ports[0].to_string(), "--rate", &rate],
            &rate_file,
            &ports,
        )?;
        check_keys(&ports, rate_commands)?;
        out.push_str(&rate_row("3-primary cluster (-c)", &run, expected));
    }

    out.push_str(&format!(
        "\n### Foreground GET latency (one GET per ms) during {latency_commands} SETs\n\n\
         | pipeload | foreground p50 (ms) | foreground p99 (ms) | GETs | pipeload wall (s) | commands/s | paced_rate |\n\
         |---|---|---|---|---|---|---|\n"
    ));
    let server = RedisServer::start();
    eprintln!("latency: one server on port {}", server.port());
    server.client().ok(&["SET", "foreground", "value"]);
    let idle = foreground_during(server.port(), || {
        thread::sleep(Duration::from_secs(3));
        Ok(None)
    })?;
    out.push_str(&latency_row("idle (no load)", &idle));
    for (label, flags) in [
        ("full speed", &[][..]),
        ("--max-latency 1", &["--max-latency", "1"][..]),
    ] {
        server.client().ok(&["FLUSHALL", "SYNC"]);
        server.client().ok(&["SET", "foreground", "value"]);
        let port = server.port().to_string();
        let mut args = vec!["-p", port.as_str()];
        args.extend_from_slice(flags);
        let run = foreground_during(server.port(), || {
            load(pipeload, &args, &latency_file).map(Some)
        })?;
        check_keys(&[server.port()], latency_commands + 1)?;
        out.push_str(&latency_row(label, &run));
    }
    Ok(out)
}

/// `count` lines `SET key:N value:N`.
fn write_sets(path: &Path, count: u64) -> Result<()> {
    let mut text = Vec::with_capacity(count as usize * 32);
    for n in 0..count {
        writeln!(text, "SET key:{n} value:{n}")?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// What pipeload's `--json` summary said, and how long it took.
struct Load {
    wall: Duration,
    summary: String,
}

impl Load {
    fn field(&self, name: &str) -> String {
        let key = format!("\"{name}\":");
        self.summary
            .split_once(&key)
            .map(|(_, rest)| {
                rest.split([',', '}'])
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default()
    }
}

fn load(pipeload: &Path, args: &[&str], input: &Path) -> Result<Load> {
    let started = Instant::now();
    let output = Command::new(pipeload)
        .args(args)
        .args(["--json", "--no-progress"])
        .arg(input)
        .stdin(Stdio::null())
        .output()
        .context("cannot run pipeload")?;
    let wall = started.elapsed();
    let summary = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() {
        bail!(
            "pipeload {args:?} failed: {summary} {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(Load { wall, summary })
}

/// A load, with the largest number of commands the servers processed in
/// any one second while it ran.
struct SampledLoad {
    load: Load,
    max_per_second: u64,
}

fn load_sampled(
    pipeload: &Path,
    args: &[&str],
    input: &Path,
    ports: &[u16],
) -> Result<SampledLoad> {
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        let mut clients: Vec<Client> = ports.iter().map(|&port| Client::connect(port)).collect();
        thread::spawn(move || {
            let mut samples: Vec<(Instant, u64)> = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let total = clients.iter_mut().map(processed).sum::<u64>();
                samples.push((Instant::now(), total));
                thread::sleep(SAMPLE_EVERY);
            }
            samples
        })
    };
    let load = load(pipeload, args, input);
    done.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap_or_default();
    Ok(SampledLoad {
        load: load?,
        max_per_second: max_in_one_second(&samples),
    })
}

fn processed(client: &mut Client) -> u64 {
    info_field(&client.info("stats"), "total_commands_processed")
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

/// The most commands counted between two samples at most one second apart.
fn max_in_one_second(samples: &[(Instant, u64)]) -> u64 {
    let mut max = 0;
    for (start, (at, count)) in samples.iter().enumerate() {
        for (later_at, later_count) in &samples[start + 1..] {
            if later_at.duration_since(*at) > Duration::from_secs(1) {
                break;
            }
            max = max.max(later_count.saturating_sub(*count));
        }
    }
    max
}

fn check_keys(ports: &[u16], expected: u64) -> Result<()> {
    let keys: i64 = ports
        .iter()
        .map(|&port| Client::connect(port).dbsize())
        .sum();
    if keys as u64 != expected {
        bail!("expected {expected} keys after the load, found {keys}");
    }
    Ok(())
}

fn rate_row(target: &str, run: &SampledLoad, expected: f64) -> String {
    let wall = run.load.wall.as_secs_f64();
    format!(
        "| {target} | {wall:.2} | {expected:.2} | {:+.1} % | {} | {:.3} |\n",
        (wall / expected - 1.0) * 100.0,
        run.max_per_second,
        run.max_per_second as f64 / RATE as f64
    )
}

/// The foreground client's latencies while `during` runs, and what it gave.
struct Foreground {
    latencies: Vec<Duration>,
    load: Option<Load>,
}

fn foreground_during(
    port: u16,
    during: impl FnOnce() -> Result<Option<Load>>,
) -> Result<Foreground> {
    let done = Arc::new(AtomicBool::new(false));
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    let foreground = {
        let done = Arc::clone(&done);
        thread::spawn(move || -> Result<Vec<Duration>> {
            let mut writer = stream.try_clone()?;
            let mut reader = BufReader::new(stream);
            let get = resp_command(&["GET", "foreground"]);
            let mut latencies = Vec::new();
            let mut next = Instant::now();
            while !done.load(Ordering::Relaxed) {
                let sent = Instant::now();
                writer.write_all(&get)?;
                read_value(&mut reader)?;
                latencies.push(sent.elapsed());
                next += Duration::from_millis(1);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                } else {
                    next = Instant::now();
                }
            }
            Ok(latencies)
        })
    };
    let load = during();
    done.store(true, Ordering::Relaxed);
    let latencies = foreground
        .join()
        .map_err(|_| anyhow::anyhow!("the foreground client panicked"))??;
    Ok(Foreground {
        latencies,
        load: load?,
    })
}

fn percentile(sorted: &[Duration], share: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * share).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

fn latency_row(label: &str, run: &Foreground) -> String {
    let mut sorted = run.latencies.clone();
    sorted.sort_unstable();
    let (wall, rate, paced) = match &run.load {
        Some(load) => (
            format!("{:.2}", load.wall.as_secs_f64()),
            load.field("commands_per_second"),
            load.field("paced_rate"),
        ),
        None => ("–".into(), "–".into(), "–".into()),
    };
    format!(
        "| {label} | {:.3} | {:.3} | {} | {wall} | {rate} | {paced} |\n",
        percentile(&sorted, 0.50),
        percentile(&sorted, 0.99),
        sorted.len()
    )
}
