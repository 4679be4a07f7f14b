//! `--reads`: pipelined reads (`pipeload --replies`), side by side. 1M `GET`
//! of 1 KiB values (100k keys, each read ten times) into one server:
//! pipeload without `--replies`, with `--replies FILE` in each format, and
//! `redis-cli` without `--pipe` (one round trip per command, its replies on
//! stdout) on a slice of the file, scaled to the whole; then the same
//! `GET`s with `-c` into a 3-primary cluster with `--replies`, in input
//! order, against the single-server wall; and `json` to `/dev/null`, the
//! cost without the file system's.
//!
//! Every run is checked: exit status 0, and for `raw` and `json` one line
//! per `GET` in the replies file. The replies file is removed after each
//! run so the disk holds one at a time.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::measure::{Measurement, run_measured};
use crate::server_choice::ServerChoice;

/// `GET`s in the full file.
const GETS: u64 = 1_000_000;
/// Distinct keys read; each value is `VALUE_LEN` bytes.
const KEYS: u64 = 100_000;
const VALUE_LEN: usize = 1024;
/// The slice `redis-cli` without `--pipe` reads, scaled to `GETS`.
const REDIS_CLI_SLICE: u64 = 100_000;

/// One configuration measured.
pub struct Variant {
    pub name: String,
    pub walls: Vec<Duration>,
    pub rss_kib: Vec<u64>,
}

impl Variant {
    pub fn median_wall(&self) -> f64 {
        let mut walls: Vec<f64> = self.walls.iter().map(Duration::as_secs_f64).collect();
        walls.sort_by(f64::total_cmp);
        walls.get(walls.len() / 2).copied().unwrap_or(f64::NAN)
    }

    pub fn median_rss_mib(&self) -> f64 {
        let mut rss = self.rss_kib.clone();
        rss.sort_unstable();
        rss.get(rss.len() / 2).copied().unwrap_or(0) as f64 / 1024.0
    }
}

pub fn run(
    servers: ServerChoice,
    pipeload: &Path,
    redis_cli: &Path,
    scratch: &Path,
    runs: u32,
    scale: f64,
    time_limit: Duration,
) -> Result<()> {
    let gets = ((GETS as f64 * scale).round() as u64).max(1);
    let keys = KEYS.min(gets);
    let slice = REDIS_CLI_SLICE.min(gets);
    let sets_path = scratch.join("reads-sets.txt");
    let gets_path = scratch.join("reads-gets.txt");
    let slice_path = scratch.join("reads-gets-slice.txt");
    write_lines(&sets_path, keys, |i| {
        format!("SET value:{i} {i:08}{}\n", "v".repeat(VALUE_LEN - 8))
    })?;
    write_lines(&gets_path, gets, |i| format!("GET value:{}\n", i % keys))?;
    write_lines(&slice_path, slice, |i| format!("GET value:{}\n", i % keys))?;
    let output_dir = scratch.join("reads-output");
    fs::create_dir_all(&output_dir)?;
    let replies_path = scratch.join("replies.out");

    let server = servers.start();
    preload(pipeload, &["-p", &server.port().to_string()], &sets_path)?;
    let cluster = servers.start_cluster();
    preload(
        pipeload,
        &["-c", "-p", &cluster.port(0).to_string()],
        &sets_path,
    )?;
    eprintln!(
        "{gets} GETs of {VALUE_LEN}-byte values over {keys} keys, server on port {}, cluster from port {}",
        server.port(),
        cluster.port(0)
    );

    let single = ["-p".to_owned(), server.port().to_string()];
    let clustered = [
        "-c".to_owned(),
        "-p".to_owned(),
        cluster.port(0).to_string(),
    ];
    let replies = |format: &str| {
        vec![
            "--replies".to_owned(),
            replies_path.display().to_string(),
            "--replies-format".to_owned(),
            format.to_owned(),
        ]
    };
    let plans: Vec<(String, Vec<String>, bool)> = vec![
        ("pipeload (replies dropped)".into(), single.to_vec(), false),
        (
            "pipeload --replies raw".into(),
            [&single[..], &replies("raw")].concat(),
            true,
        ),
        (
            "pipeload --replies json".into(),
            [&single[..], &replies("json")].concat(),
            true,
        ),
        (
            "pipeload --replies resp".into(),
            [&single[..], &replies("resp")].concat(),
            true,
        ),
        (
            "pipeload -c (replies dropped)".into(),
            clustered.to_vec(),
            false,
        ),
        (
            "pipeload -c --replies raw".into(),
            [&clustered[..], &replies("raw")].concat(),
            true,
        ),
        (
            "pipeload -c --replies json".into(),
            [&clustered[..], &replies("json")].concat(),
            true,
        ),
        // The same formatting and ordering with no file system under it:
        // what the kernel charges for a 1 GB file varies from machine to
        // machine (and on a VM that hands freed pages back to its host,
        // from run to run).
        (
            "pipeload --replies json to /dev/null".into(),
            [
                &single[..],
                &[
                    "--replies".to_owned(),
                    "/dev/null".to_owned(),
                    "--replies-format".to_owned(),
                    "json".to_owned(),
                ],
            ]
            .concat(),
            false,
        ),
    ];
    let mut variants: Vec<Variant> = plans
        .iter()
        .map(|(name, _, _)| Variant {
            name: name.clone(),
            walls: Vec::new(),
            rss_kib: Vec::new(),
        })
        .collect();
    let mut redis_cli_runs = Variant {
        name: format!(
            "redis-cli (no --pipe), {slice} GETs scaled ×{}",
            gets as f64 / slice as f64
        ),
        walls: Vec::new(),
        rss_kib: Vec::new(),
    };
    // Alternating, so that a slow spell of the shared machine hits all.
    for run in 1..=runs {
        for ((name, arguments, writes_replies), variant) in plans.iter().zip(&mut variants) {
            let measured = run_measured(pipeload, arguments, &gets_path, &output_dir, time_limit)?;
            check(name, &measured)?;
            if *writes_replies && !arguments.contains(&"resp".to_owned()) {
                let lines = count_lines(&replies_path)?;
                if lines != gets {
                    bail!("{name}: {lines} lines in the replies file, not {gets}");
                }
            }
            let _ = fs::remove_file(&replies_path);
            eprintln!(
                "run {run}/{runs} {name}: {:.3}s",
                measured.wall.as_secs_f64()
            );
            variant.walls.push(measured.wall);
            variant.rss_kib.push(measured.peak_rss_kib);
        }
        let measured = run_measured(
            redis_cli,
            &["-p".to_owned(), server.port().to_string()],
            &slice_path,
            &output_dir,
            time_limit,
        )?;
        check("redis-cli", &measured)?;
        let scaled = measured.wall.mul_f64(gets as f64 / slice as f64);
        eprintln!(
            "run {run}/{runs} redis-cli: {:.3}s for {slice}, {:.3}s scaled",
            measured.wall.as_secs_f64(),
            scaled.as_secs_f64()
        );
        redis_cli_runs.walls.push(scaled);
        redis_cli_runs.rss_kib.push(measured.peak_rss_kib);
    }

    let plain = variants[0].median_wall();
    let cluster_plain = variants[4].median_wall();
    let redis_cli_wall = redis_cli_runs.median_wall();
    println!(
        "\n### Pipelined reads: {gets} GET of {VALUE_LEN}-byte values (median of {runs} runs)\n"
    );
    println!("| tool | wall s | × without --replies | redis-cli / it | peak RSS MiB |");
    println!("|---|---:|---:|---:|---:|");
    for (index, variant) in variants.iter().enumerate() {
        let base = if (4..=6).contains(&index) {
            cluster_plain
        } else {
            plain
        };
        println!(
            "| {} | {:.3} | {:.2} | {:.1} | {:.1} |",
            variant.name,
            variant.median_wall(),
            variant.median_wall() / base,
            redis_cli_wall / variant.median_wall(),
            variant.median_rss_mib()
        );
    }
    println!(
        "| {} | {:.3} | | 1.0 | {:.1} |",
        redis_cli_runs.name,
        redis_cli_wall,
        redis_cli_runs.median_rss_mib()
    );
    println!();
    for (format, single, clustered) in [("raw", 1, 5), ("json", 2, 6)] {
        let single = variants[single].median_wall();
        let clustered = variants[clustered].median_wall();
        println!(
            "-c --replies {format} into the 3-primary cluster: {clustered:.3}s, {:.2}× the single-server --replies {format} wall ({single:.3}s)",
            clustered / single
        );
    }
    Ok(())
}

fn write_lines(path: &Path, count: u64, line: impl Fn(u64) -> String) -> Result<()> {
    let mut out = BufWriter::new(
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    for i in 0..count {
        out.write_all(line(i).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

fn preload(pipeload: &Path, target: &[&str], input: &Path) -> Result<()> {
    let status = Command::new(pipeload)
        .args(target)
        .arg(input)
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", pipeload.display()))?;
    if !status.success() {
        bail!("preloading the values failed: {status}");
    }
    Ok(())
}

/// A run that timed out or exited with a failure fails the bench.
pub fn check(name: &str, measured: &Measurement) -> Result<()> {
    if measured.timed_out || !measured.status.success() {
        bail!(
            "{name} failed ({}{}):\n{}",
            measured.status,
            if measured.timed_out {
                ", timed out"
            } else {
                ""
            },
            measured.stderr
        );
    }
    Ok(())
}

fn count_lines(path: &Path) -> Result<u64> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut lines = 0;
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(lines);
        }
        lines += memchr_count(buffer);
        let len = buffer.len();
        reader.consume(len);
    }
}

fn memchr_count(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&byte| byte == b'\n').count() as u64
}
