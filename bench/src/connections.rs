//! `--connections-table`: pipeload `--connections 1, 2, 4` into one
//! server, Valkey (with `--io-threads 2`) and Redis, for 1M `SET` and 500k
//! 5-field `HSET` (RESP files), medians and the ratio to one connection.
//!
//! One connection is served by one server thread; Valkey's I/O threads
//! take several connections at once, so only there can more connections
//! pay on a small machine. Runs alternate between connection counts, so
//! that a slow spell of the shared machine hits all alike; every run is
//! checked (exit status 0, every key in the database).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pipeload_harness::RedisServer;

use crate::datasets::{Format, scaled, write_resp, write_sets};
use crate::measure::run_measured;
use crate::reads::{Variant, check};
use crate::server_choice::ServerChoice;

/// The connection counts compared.
const CONNECTIONS: [u32; 3] = [1, 2, 4];

/// One input file and how many keys it leaves.
struct Input {
    name: String,
    path: PathBuf,
    keys: u64,
}

pub fn run(
    pipeload: &Path,
    scratch: &Path,
    runs: u32,
    scale: f64,
    time_limit: Duration,
) -> Result<()> {
    let inputs = [
        write_set_input(scratch, scale)?,
        write_hset_input(scratch, scale)?,
    ];
    let output_dir = scratch.join("connections-output");
    std::fs::create_dir_all(&output_dir)?;
    let mut tables = String::new();
    for choice in [ServerChoice::new(true), ServerChoice::new(false)] {
        let server = choice.start();
        let described = choice.describe(&server);
        eprintln!("{described} on port {}", server.port());
        for input in &inputs {
            let mut variants: Vec<Variant> = CONNECTIONS
                .iter()
                .map(|connections| Variant {
                    name: format!("--connections {connections}"),
                    walls: Vec::new(),
                    rss_kib: Vec::new(),
                })
                .collect();
            for run in 1..=runs {
                for (connections, variant) in CONNECTIONS.iter().zip(&mut variants) {
                    server.client().ok(&["FLUSHALL"]);
                    let arguments = [
                        "-p".to_owned(),
                        server.port().to_string(),
                        "--connections".to_owned(),
                        connections.to_string(),
                    ];
                    let measured =
                        run_measured(pipeload, &arguments, &input.path, &output_dir, time_limit)?;
                    check(&variant.name, &measured)?;
                    check_keys(&server, input.keys)?;
                    eprintln!(
                        "{described} {} {} run {run}/{runs}: {:.3}s",
                        input.name,
                        variant.name,
                        measured.wall.as_secs_f64()
                    );
                    variant.walls.push(measured.wall);
                    variant.rss_kib.push(measured.peak_rss_kib);
                }
            }
            tables.push_str(&table(&described, &input.name, &variants, runs));
        }
    }
    print!("{tables}");
    Ok(())
}

fn table(server: &str, input: &str, variants: &[Variant], runs: u32) -> String {
    let one = variants[0].median_wall();
    let mut table = format!(
        "\n### {input} into {server}: --connections (median of {runs} runs)\n\n\
         | connections | wall s | × one connection | peak RSS MiB |\n|---|---:|---:|---:|\n"
    );
    for variant in variants {
        table.push_str(&format!(
            "| {} | {:.3} | {:.2} | {:.1} |\n",
            variant.name,
            variant.median_wall(),
            variant.median_wall() / one,
            variant.median_rss_mib()
        ));
    }
    table
}

fn check_keys(server: &RedisServer, expected: u64) -> Result<()> {
    let keys = server.client().dbsize();
    if keys != expected as i64 {
        bail!("{keys} keys in the database after the load, not {expected}");
    }
    Ok(())
}

fn create(path: &Path) -> Result<BufWriter<File>> {
    Ok(BufWriter::new(File::create(path).with_context(|| {
        format!("cannot create {}", path.display())
    })?))
}

/// 1M `SET key:i value:i` (scaled), as RESP.
fn write_set_input(scratch: &Path, scale: f64) -> Result<Input> {
    let count = scaled(1_000_000, scale);
    let path = scratch.join("connections-set.resp");
    let mut out = create(&path)?;
    let (_, keys) = write_sets(&mut out, count, Format::Resp)?;
    out.flush()?;
    Ok(Input {
        name: format!("{count} SET"),
        path,
        keys,
    })
}

/// 500k `HSET user:i` with 5 fields (scaled), as RESP.
fn write_hset_input(scratch: &Path, scale: f64) -> Result<Input> {
    let count = scaled(500_000, scale);
    let path = scratch.join("connections-hset.resp");
    let mut out = create(&path)?;
    for i in 0..count {
        let key = format!("user:{i}");
        let fields = [
            ("id", i.to_string()),
            ("name", format!("name {i}")),
            ("email", format!("user{i}@example.com")),
            ("age", (18 + i % 60).to_string()),
            ("city", format!("city {}", i % 1000)),
        ];
        let mut arguments: Vec<&[u8]> = vec![b"HSET", key.as_bytes()];
        for (field, value) in &fields {
            arguments.extend([field.as_bytes(), value.as_bytes()]);
        }
        write_resp(&mut out, &arguments)?;
    }
    out.flush()?;
    Ok(Input {
        name: format!("{count} HSET (5 fields)"),
        path,
        keys: count,
    })
}
