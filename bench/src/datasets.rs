//! The data sets the bench loads: files generated into the scratch directory
//! from a fixed seed, so every run on every machine loads the same bytes.
//! Each one knows the `replies: N` a clean load must print and the number of
//! keys it must leave on an empty server; the report checks both.
//!
//! The `GET` sets read values that a preload file (`SET`s) puts on a fresh
//! server of their own before each run, untimed; the run itself owes
//! 16 KiB per command, which is what the server's output buffer holds for
//! a client that sends faster than it reads.
//!
//! Text lines never need the server's quoting rules beyond what they show on
//! purpose (one double-quoted value with a space per `HSET`): random values
//! are drawn from printable bytes other than space, quotes and backslash,
//! which the inline protocol takes literally.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::runs::Tool;

/// The names `--only` accepts, in the order the bench runs them.
pub const DATASET_NAMES: [&str; 12] = [
    SET_1M_RESP,
    SET_1M_TEXT,
    MIXED_300K_TEXT,
    BIG_200_RESP,
    GET_200K_16K_TEXT,
    GET_200K_16K_TEXT_OBUF,
    SET_1M_RESP_RTT_20MS,
    SET_1M_RESP_CLUSTER3,
    SET_1M_RESP_PROGRESS,
    SET_10M_RESP,
    USERS_1M_CSV,
    DOCS_1M_JSONL,
];

pub const SET_1M_RESP: &str = "set-1m.resp";
const SET_1M_TEXT: &str = "set-1m.txt";
const MIXED_300K_TEXT: &str = "mixed-300k.txt";
const BIG_200_RESP: &str = "big-200.resp";
/// 200k `GET`s of 16 KiB values, the values preloaded.
pub const GET_200K_16K_TEXT: &str = "get-200k-16k.txt";
/// Not a file of its own: `get-200k-16k.txt` again, into a server that drops
/// a normal client whose output buffer passes 16 MiB, or stays over 8 MiB
/// for 10 seconds.
pub const GET_200K_16K_TEXT_OBUF: &str = "get-200k-16k.txt@obuf16mb";
/// The `client-output-buffer-limit` of `GET_200K_16K_TEXT_OBUF`.
pub const OUTPUT_BUFFER_LIMIT: &str = "normal 16mb 8mb 10";
/// Not a file of its own: `set-1m.resp` again, through the delay proxy.
const SET_1M_RESP_RTT_20MS: &str = "set-1m.resp@rtt20ms";
/// Not a file of its own: `set-1m.resp` again, into a 3-primary cluster.
pub const SET_1M_RESP_CLUSTER3: &str = "set-1m.resp@cluster3";
/// Not a file of its own: `set-1m.resp` again, pipeload `--progress`
/// against `--no-progress`.
pub const SET_1M_RESP_PROGRESS: &str = "set-1m.resp@progress";
pub const SET_10M_RESP: &str = "set-10m.resp";
/// 1M CSV rows (`id,name,email,age,city`, some names quoted) loaded with
/// `--template 'HSET user:{id} {*}'`.
const USERS_1M_CSV: &str = "users-1m.csv";
/// 1M JSON Lines (a nested address) loaded with a template of paths.
const DOCS_1M_JSONL: &str = "docs-1m.jsonl";

/// Size of each value in `big-200.resp`.
const BIG_VALUE_BYTES: usize = 512 * 1024;
/// Size of each value the `GET` sets read.
const GET_VALUE_BYTES: usize = 16 * 1024;
/// Distinct values the `GET` sets read, in turn (160 MiB on the server).
const GET_VALUES: u64 = 10_000;
/// Random `SET` values in `mixed-300k.txt` are this long, inclusive.
const MIXED_VALUE_BYTES: (usize, usize) = (10, 2000);
/// The lists, counters and sets of `mixed-300k.txt` are shared by many
/// commands, as in real fixtures; this many of each.
const MIXED_SHARED_KEYS: u64 = 1000;
const SEED: u64 = 0x5eed_b10c_0dd5_ca1e;

/// How the tools reach the server for a data set.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Route {
    Direct,
    /// Through the delay proxy: a 20 ms round trip.
    DelayProxy,
    /// Into the bench's 3-primary cluster instead of its one server.
    Cluster,
    /// Into a server started for the run alone, so that its memory figures
    /// start from the same floor every run.
    FreshServer,
}

/// What a data set that reads needs on the server before each run.
#[derive(Clone, Debug)]
pub struct Preload {
    /// `SET`s of the values it reads, loaded untimed with `redis-cli --pipe`.
    pub path: PathBuf,
    pub commands: u64,
    /// The `client-output-buffer-limit` its fresh server starts with, when
    /// not the default (no limit for normal clients).
    pub output_buffer_limit: Option<&'static str>,
}

/// One data set, generated and ready to load.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub name: &'static str,
    pub path: PathBuf,
    pub commands: u64,
    pub expected_keys: u64,
    pub route: Route,
    /// The values it reads, for the `GET` sets.
    pub preload: Option<Preload>,
    /// The tools that load it, alternating. Only pipeload loads the 10M set
    /// (it exists to show pipeload's memory stays flat as the input grows,
    /// not to race) and the cluster (`redis-cli --pipe` ignores `-c`); the
    /// progress set races pipeload against itself, progress on and off.
    pub contenders: &'static [Tool],
    /// For the CSV and JSON Lines sets: how each contender loads them.
    pub records: Option<Records>,
}

/// How the contenders load a CSV or JSON Lines data set: pipeload through
/// a template, pipeload from the same commands already encoded as RESP, and
/// what users run today, a Python script (the `csv` or `json` module)
/// writing RESP into `redis-cli --pipe`.
#[derive(Clone, Debug)]
pub struct Records {
    /// `--format` of pipeload.
    pub format: &'static str,
    pub template: &'static str,
    /// The commands the template gives, as RESP.
    pub resp_twin: PathBuf,
    /// The Python script writing those commands as RESP.
    pub python_script: PathBuf,
}

const RACE: &[Tool] = &[Tool::RedisCli, Tool::Pipeload];
const PIPELOAD_ONLY: &[Tool] = &[Tool::Pipeload];
const PROGRESS_ON_OFF: &[Tool] = &[Tool::PipeloadNoProgress, Tool::PipeloadProgress];
const TEMPLATE_RACE: &[Tool] = &[
    Tool::PythonRedisCli,
    Tool::PipeloadResp,
    Tool::PipeloadTemplate,
];

/// Which data sets to run, in the order of `DATASET_NAMES`: those `--only`
/// names, or all of them when it names none (the 10M one only when asked
/// for, it takes minutes; the progress one only when named, it measures
/// pipeload against itself).
pub fn select(only: &[String], include_10m: bool) -> Vec<&'static str> {
    DATASET_NAMES
        .into_iter()
        .filter(|&name| match only.is_empty() {
            true => (name != SET_10M_RESP || include_10m) && name != SET_1M_RESP_PROGRESS,
            false => only.iter().any(|wanted| wanted == name),
        })
        .collect()
}

/// Writes the files the named data sets need into `dir` (each file once, even
/// when two data sets share it), with every count multiplied by `scale`.
pub fn generate(names: &[&'static str], dir: &Path, scale: f64) -> Result<Vec<Dataset>> {
    let mut datasets: Vec<Dataset> = Vec::new();
    for &name in names {
        let route = match name {
            SET_1M_RESP_RTT_20MS => Route::DelayProxy,
            SET_1M_RESP_CLUSTER3 => Route::Cluster,
            GET_200K_16K_TEXT | GET_200K_16K_TEXT_OBUF => Route::FreshServer,
            _ => Route::Direct,
        };
        let contenders = match name {
            SET_1M_RESP_CLUSTER3 | SET_10M_RESP => PIPELOAD_ONLY,
            SET_1M_RESP_PROGRESS => PROGRESS_ON_OFF,
            USERS_1M_CSV | DOCS_1M_JSONL => TEMPLATE_RACE,
            _ => RACE,
        };
        // The `@` sets load `set-1m.resp` again (generated once): only
        // their name, route and contenders differ.
        let file = match name.split_once('@') {
            Some((file, _)) => file,
            None => name,
        };
        let base = match datasets.iter().find(|d| d.path == dir.join(file)) {
            Some(done) => done.clone(),
            None => generate_one(file, dir, scale)?,
        };
        let output_buffer_limit = (name == GET_200K_16K_TEXT_OBUF).then_some(OUTPUT_BUFFER_LIMIT);
        let preload = base.preload.map(|preload| Preload {
            output_buffer_limit,
            ..preload
        });
        let dataset = Dataset {
            name,
            route,
            contenders,
            preload,
            ..base
        };
        datasets.push(dataset);
    }
    Ok(datasets)
}

fn generate_one(name: &'static str, dir: &Path, scale: f64) -> Result<Dataset> {
    let path = dir.join(name);
    let started = Instant::now();
    eprint!("generating {name} ... ");
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut rng = SplitMix64(SEED);
    let mut preload = None;
    let mut records = None;
    let (commands, expected_keys) = match name {
        USERS_1M_CSV | DOCS_1M_JSONL => {
            let twin = dir.join(format!("{name}.resp"));
            let script = dir.join(format!("{name}.py"));
            let (format, template, python) = match name {
                USERS_1M_CSV => ("csv", USERS_TEMPLATE, PYTHON_CSV),
                _ => ("jsonl", DOCS_TEMPLATE, PYTHON_JSONL),
            };
            std::fs::write(&script, format!("{PYTHON_RESP_WRITER}{python}"))
                .with_context(|| format!("cannot write {}", script.display()))?;
            let twin_file =
                File::create(&twin).with_context(|| format!("cannot create {}", twin.display()))?;
            let mut twin_out = BufWriter::with_capacity(1 << 20, twin_file);
            let written = write_records(
                &mut out,
                &mut twin_out,
                scaled(1_000_000, scale),
                format,
                &mut rng,
            )?;
            twin_out
                .flush()
                .with_context(|| format!("cannot write {}", twin.display()))?;
            records = Some(Records {
                format,
                template,
                resp_twin: twin,
                python_script: script,
            });
            written
        }
        GET_200K_16K_TEXT => {
            let preload_path = dir.join(format!("{name}.preload.resp"));
            let values = write_get_values(&preload_path, GET_VALUES, &mut rng)?;
            preload = Some(Preload {
                path: preload_path,
                commands: values,
                output_buffer_limit: None,
            });
            write_gets(&mut out, scaled(200_000, scale), values)?
        }
        SET_1M_RESP => write_sets(&mut out, scaled(1_000_000, scale), Format::Resp)?,
        SET_1M_TEXT => write_sets(&mut out, scaled(1_000_000, scale), Format::Text)?,
        SET_10M_RESP => write_sets(&mut out, scaled(10_000_000, scale), Format::Resp)?,
        MIXED_300K_TEXT => write_mixed(&mut out, scaled(300_000, scale), &mut rng)?,
        BIG_200_RESP => write_big_sets(&mut out, scaled(200, scale), &mut rng)?,
        _ => unreachable!("{name} is not generated from a file of its own"),
    };
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    let bytes = out.get_ref().metadata().map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "{commands} commands, {:.1} MiB, {:.1} s",
        bytes as f64 / (1024.0 * 1024.0),
        started.elapsed().as_secs_f64()
    );
    Ok(Dataset {
        name,
        path,
        commands,
        expected_keys,
        // The caller names the data set and says how and by whom it loads.
        route: Route::Direct,
        preload,
        contenders: RACE,
        records,
    })
}

/// The template of `users-1m.csv`: every field into a hash.
const USERS_TEMPLATE: &str = "HSET user:{id} {*}";
/// The template of `docs-1m.jsonl`: fields by path, one of them nested.
const DOCS_TEMPLATE: &str = "HSET doc:{id} name {name} email {email} age {age} city {address.city}";

/// The RESP encoder both Python scripts start with (each command a list of
/// str arguments, written to stdout).
const PYTHON_RESP_WRITER: &str = r#"import sys
write = sys.stdout.buffer.write
def resp(args):
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)
"#;

/// What users run today for `users-1m.csv`: Python's `csv` module, each row
/// written as the RESP of `HSET user:<id> <field> <value>…`.
const PYTHON_CSV: &str = r#"import csv
for row in csv.DictReader(open(0, newline="", encoding="utf-8")):
    args = ["HSET", "user:" + row["id"]]
    for name, value in row.items():
        args += [name, value]
    write(resp(args))
"#;

/// What users run today for `docs-1m.jsonl`: Python's `json` module.
const PYTHON_JSONL: &str = r#"import json
for line in open(0, encoding="utf-8"):
    doc = json.loads(line)
    write(resp(["HSET", "doc:%s" % doc["id"], "name", doc["name"], "email", doc["email"],
                "age", str(doc["age"]), "city", doc["address"]["city"]]))
"#;

/// `count` user records as CSV (a header first) or JSON Lines into `out`,
/// and the commands their template gives as RESP into `twin`. Some names
/// hold a comma or quotes, so the CSV quotes them. Returns (commands, keys).
fn write_records(
    out: &mut impl Write,
    twin: &mut impl Write,
    count: u64,
    format: &str,
    rng: &mut SplitMix64,
) -> Result<(u64, u64)> {
    const FIRST: [&str; 6] = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald"];
    const LAST: [&str; 6] = [
        "Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth",
    ];
    const CITIES: [&str; 5] = ["London", "Paris", "Arlington", "Rotterdam", "São Paulo"];
    if format == "csv" {
        writeln!(out, "id,name,email,age,city")?;
    }
    for id in 0..count {
        let first = FIRST[rng.below(FIRST.len() as u64) as usize];
        let last = LAST[rng.below(LAST.len() as u64) as usize];
        let name = match id % 10 {
            0 => format!("{last}, {first}"),
            1 => format!("{first} \"The Great\" {last}"),
            _ => format!("{first} {last}"),
        };
        let email = format!(
            "{}.{}{id}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        );
        let age = (18 + rng.below(80)).to_string();
        let city = CITIES[rng.below(CITIES.len() as u64) as usize];
        let id = id.to_string();
        match format {
            "csv" => {
                let quoted = match name.contains([',', '"']) {
                    true => format!("\"{}\"", name.replace('"', "\"\"")),
                    false => name.clone(),
                };
                writeln!(out, "{id},{quoted},{email},{age},{city}")?;
                let key = format!("user:{id}");
                let fields = [
                    ("id", &id),
                    ("name", &name),
                    ("email", &email),
                    ("age", &age),
                    ("city", &city.to_owned()),
                ];
                let mut args: Vec<&[u8]> = vec![b"HSET", key.as_bytes()];
                for (field, value) in &fields {
                    args.push(field.as_bytes());
                    args.push(value.as_bytes());
                }
                write_resp(twin, &args)?;
            }
            _ => {
                let json_name = name.replace('"', "\\\"");
                writeln!(
                    out,
                    r#"{{"id": {id}, "name": "{json_name}", "email": "{email}", "age": {age}, "address": {{"city": "{city}", "zip": "{:05}"}}}}"#,
                    rng.below(100_000)
                )?;
                let key = format!("doc:{id}");
                write_resp(
                    twin,
                    &[
                        b"HSET",
                        key.as_bytes(),
                        b"name",
                        name.as_bytes(),
                        b"email",
                        email.as_bytes(),
                        b"age",
                        age.as_bytes(),
                        b"city",
                        city.as_bytes(),
                    ],
                )?;
            }
        }
    }
    Ok((count, count))
}

/// `base` shrunk (or grown) by `--scale`, never below one command.
pub fn scaled(base: u64, scale: f64) -> u64 {
    ((base as f64 * scale).round() as u64).max(1)
}

#[derive(Clone, Copy)]
pub enum Format {
    Resp,
    Text,
}

/// The key and value of the `i`th `SET` of `write_sets`.
pub fn set_pair(i: u64) -> (String, String) {
    (format!("key:{i}"), format!("value:{i}"))
}

/// `SET key:i value:i` for every i; returns (commands, keys).
pub fn write_sets(out: &mut impl Write, count: u64, format: Format) -> Result<(u64, u64)> {
    for i in 0..count {
        let (key, value) = set_pair(i);
        match format {
            Format::Resp => write_resp(out, &[b"SET", key.as_bytes(), value.as_bytes()])?,
            Format::Text => writeln!(out, "SET {key} {value}")?,
        }
    }
    Ok((count, count))
}

/// `SET big:i` with a 512 KiB random printable value; returns (commands, keys).
fn write_big_sets(out: &mut impl Write, count: u64, rng: &mut SplitMix64) -> Result<(u64, u64)> {
    let mut value = vec![0u8; BIG_VALUE_BYTES];
    for i in 0..count {
        value.fill_with(|| rng.unquoted_byte());
        write_resp(out, &[b"SET", format!("big:{i}").as_bytes(), &value])?;
    }
    Ok((count, count))
}

/// `SET value:i` with a 16 KiB random printable value for `count` values,
/// into a file of their own; returns the count.
fn write_get_values(path: &Path, count: u64, rng: &mut SplitMix64) -> Result<u64> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut value = vec![0u8; GET_VALUE_BYTES];
    for i in 0..count {
        value.fill_with(|| rng.unquoted_byte());
        write_resp(&mut out, &[b"SET", format!("value:{i}").as_bytes(), &value])?;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(count)
}

/// `GET value:i` for `count` commands, over `values` values in turn;
/// returns (commands, keys): the keys are the preloaded values.
fn write_gets(out: &mut impl Write, count: u64, values: u64) -> Result<(u64, u64)> {
    for i in 0..count {
        writeln!(out, "GET value:{}", i % values)?;
    }
    Ok((count, values))
}

/// A fixture-like mix, one command in five of each kind: hashes with a quoted
/// field value, list pushes, counters, set members, and strings of random
/// length. Returns (commands, keys).
fn write_mixed(out: &mut impl Write, count: u64, rng: &mut SplitMix64) -> Result<(u64, u64)> {
    const NAMES: [&str; 4] = [
        "Ada Lovelace",
        "Alan Turing",
        "Grace Hopper",
        "Edsger W. Dijkstra",
    ];
    const CITIES: [&str; 4] = ["London", "Paris", "Arlington", "Rotterdam"];
    // Counting the distinct keys as they are written is simpler to trust than
    // a formula over the shared-key arithmetic.
    let mut keys = HashSet::new();
    let mut value = Vec::with_capacity(MIXED_VALUE_BYTES.1);
    for i in 0..count {
        let shared = (i / 5) % MIXED_SHARED_KEYS;
        let key = match i % 5 {
            0 => {
                let key = format!("user:{i}");
                let name = NAMES[rng.below(NAMES.len() as u64) as usize];
                let age = 18 + rng.below(80);
                let city = CITIES[rng.below(CITIES.len() as u64) as usize];
                writeln!(out, "HSET {key} name \"{name}\" age {age} city {city}")?;
                key
            }
            1 => {
                let key = format!("queue:{shared}");
                writeln!(out, "RPUSH {key} job:{i}")?;
                key
            }
            2 => {
                let key = format!("counter:{shared}");
                writeln!(out, "INCR {key}")?;
                key
            }
            3 => {
                let key = format!("tags:{shared}");
                writeln!(out, "SADD {key} tag:{}", rng.below(5000))?;
                key
            }
            _ => {
                let key = format!("blob:{i}");
                let (shortest, longest) = MIXED_VALUE_BYTES;
                let length = shortest + rng.below((longest - shortest + 1) as u64) as usize;
                value.clear();
                value.extend((0..length).map(|_| rng.unquoted_byte()));
                write!(out, "SET {key} ")?;
                out.write_all(&value)?;
                out.write_all(b"\n")?;
                key
            }
        };
        keys.insert(key);
    }
    Ok((count, keys.len() as u64))
}

/// One command as a RESP array of bulk strings.
pub fn write_resp(out: &mut impl Write, arguments: &[&[u8]]) -> Result<()> {
    write!(out, "*{}\r\n", arguments.len())?;
    for argument in arguments {
        write!(out, "${}\r\n", argument.len())?;
        out.write_all(argument)?;
        out.write_all(b"\r\n")?;
    }
    Ok(())
}

/// SplitMix64: a few lines, good enough spread for test data, and the same
/// sequence everywhere, which is all the bench needs from randomness.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound`; the modulo bias is irrelevant for test data.
    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// A printable byte the inline protocol takes literally outside quotes:
    /// `!`..=`~` without `"`, `'` and `\`.
    fn unquoted_byte(&mut self) -> u8 {
        const ALPHABET: &[u8] = b"!#$%&()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~";
        ALPHABET[self.below(ALPHABET.len() as u64) as usize]
    }
}
