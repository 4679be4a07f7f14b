//! `--connections-table`: pipeload `--connections 1, 2, 4` into one
//! server, Valkey (with `--io-threads 2`) and Redis, for 1M `SET` and 500k
//! 5-field `HSET` (RESP files), medians and the ratio to one connection.
//! A reference row runs 4 pipeload processes at once, each on the commands
//! of one slot group over one connection: what more connections can gain on
//! the machine without any route between them.
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
use pipeload_harness::{RedisServer, slot_of};

use crate::datasets::{scaled, set_pair, write_resp};
use crate::measure::{Measurement, run_measured};
use crate::reads::{Variant, check};
use crate::server_choice::ServerChoice;

/// The connection counts compared.
const CONNECTIONS: [u32; 3] = [1, 2, 4];

/// Separate processes in the reference row, one per slot group.
const PROCESSES: u16 = 4;

/// One input file, the same commands split by hash slot mod `PROCESSES`,
/// and how many keys it leaves.
struct Input {
    name: String,
    path: PathBuf,
    parts: Vec<PathBuf>,
    keys: u64,
}

/// Writes an input and its parts: each command into the whole file and
/// into the part of its key's slot.
struct InputWriter {
    whole: BufWriter<File>,
    parts: Vec<BufWriter<File>>,
    paths: (PathBuf, Vec<PathBuf>),
}

impl InputWriter {
    fn create(scratch: &Path, stem: &str) -> Result<Self> {
        let path = scratch.join(format!("{stem}.resp"));
        let part_paths: Vec<PathBuf> = (0..PROCESSES)
            .map(|part| scratch.join(format!("{stem}.part{part}.resp")))
            .collect();
        Ok(InputWriter {
            whole: create(&path)?,
            parts: part_paths
                .iter()
                .map(|path| create(path))
                .collect::<Result<_>>()?,
            paths: (path, part_paths),
        })
    }

    /// `arguments[1]` is the command's key.
    fn write(&mut self, arguments: &[&[u8]]) -> Result<()> {
        write_resp(&mut self.whole, arguments)?;
        let part = slot_of(arguments[1]) % PROCESSES;
        write_resp(&mut self.parts[usize::from(part)], arguments)
    }

    fn finish(mut self, name: String, keys: u64) -> Result<Input> {
        self.whole.flush()?;
        for part in &mut self.parts {
            part.flush()?;
        }
        let (path, parts) = self.paths;
        Ok(Input {
            name,
            path,
            parts,
            keys,
        })
    }
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
                .map(|connections| format!("--connections {connections}"))
                .chain([format!("{PROCESSES} processes, one connection each")])
                .map(|name| Variant {
                    name,
                    walls: Vec::new(),
                    rss_kib: Vec::new(),
                })
                .collect();
            for run in 1..=runs {
                for (index, variant) in variants.iter_mut().enumerate() {
                    server.client().ok(&["FLUSHALL", "SYNC"]);
                    let port = server.port().to_string();
                    let measured = match CONNECTIONS.get(index) {
                        Some(connections) => {
                            let arguments = [
                                "-p".to_owned(),
                                port,
                                "--connections".to_owned(),
                                connections.to_string(),
                            ];
                            run_measured(
                                pipeload,
                                &arguments,
                                &input.path,
                                &output_dir,
                                time_limit,
                            )?
                        }
                        None => run_processes(pipeload, &port, input, &output_dir, time_limit)?,
                    };
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

/// The reference the issue measured: `PROCESSES` pipeload processes at
/// once, each loading one part of the input over one connection, started
/// by a shell under one measurement (wall from the first start to the last
/// end; peak RSS of the largest).
fn run_processes(
    pipeload: &Path,
    port: &str,
    input: &Input,
    output_dir: &Path,
    time_limit: Duration,
) -> Result<Measurement> {
    let script = "program=$1 port=$2; shift 2; pids=; \
                  for part in \"$@\"; do \"$program\" -p \"$port\" \"$part\" >/dev/null & pids=\"$pids $!\"; done; \
                  status=0; for pid in $pids; do wait \"$pid\" || status=1; done; exit $status";
    let mut arguments = vec![
        "-c".to_owned(),
        script.to_owned(),
        "processes".to_owned(),
        pipeload.display().to_string(),
        port.to_owned(),
    ];
    arguments.extend(input.parts.iter().map(|part| part.display().to_string()));
    run_measured(
        Path::new("sh"),
        &arguments,
        Path::new("/dev/null"),
        output_dir,
        time_limit,
    )
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
    let mut out = InputWriter::create(scratch, "connections-set")?;
    for i in 0..count {
        let (key, value) = set_pair(i);
        out.write(&[b"SET", key.as_bytes(), value.as_bytes()])?;
    }
    out.finish(format!("{count} SET"), count)
}

/// 500k `HSET user:i` with 5 fields (scaled), as RESP.
fn write_hset_input(scratch: &Path, scale: f64) -> Result<Input> {
    let count = scaled(500_000, scale);
    let mut out = InputWriter::create(scratch, "connections-hset")?;
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
        out.write(&arguments)?;
    }
    out.finish(format!("{count} HSET (5 fields)"), count)
}
