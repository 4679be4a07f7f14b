//! Pipelined reads (`--replies FILE`, `--replies-format raw|json|resp`):
//! every reply written out once, in input order. Each format is checked
//! against what the harness's RESP reader gets for the same commands sent
//! one by one to a second server seeded alike: `resp` read back by that
//! reader, `json` parsed by serde_json, `raw` as redis-cli --raw prints the
//! reader's values. Then: the summary on stderr with `--replies -`, input
//! order across the primaries of a cluster with keys over every slot, a
//! connection dropped under `--retry` in the middle of a reads file, a
//! reply after an `ASK` redirect, and a load that stops early (its file
//! holds the replies of what it acknowledged; `--skip` writes the rest),
//! and a reader of `--replies -` that goes away (the load ends, exit 0).

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use base64::Engine;
use serde_json::json;

use crate::common::client::{info_field, read_value};
use crate::common::cluster::tag_on_node;
use crate::common::run::Sink;
use crate::common::{
    Client, Pipeload, RedisServer, TempDir, TestCluster, Value, middle_line_end, slot_of,
    wait_until,
};

/// A value no UTF-8 decoder accepts, with the bytes RESP frames by.
const BINARY: &[u8] = b"\xff\xfe\x00\r\n\x80bin";

fn seed(client: &mut Client) {
    client.ok(&["SET", "str", "hello"]);
    client.ok(&[&b"SET"[..], b"bin", BINARY]);
    client.ok(&["SET", "n", "10"]);
    client.ok(&["HSET", "h", "f1", "v1", "f2", "v2"]);
    client.ok(&["RPUSH", "l", "a", "b", "c"]);
    client.ok(&["SADD", "s", "x"]);
    client.ok(&["ZADD", "z", "1.5", "m1", "2", "m2"]);
}

/// One input line and whether pipeload is to write a line for it.
struct Read {
    line: &'static str,
    answered: bool,
}

const fn read(line: &'static str) -> Read {
    Read {
        line,
        answered: true,
    }
}

const fn silent(line: &'static str) -> Read {
    Read {
        line,
        answered: false,
    }
}

/// Reads of every reply type, an error in the middle, a transaction with a
/// failing element, replies switched off, and RESP3 after `HELLO 3`.
const READS: &[Read] = &[
    read("GET str"),
    read("GET missing"),
    read("GET bin"),
    read("HGETALL h"),
    read("LRANGE l 0 -1"),
    read("LRANGE missing 0 -1"),
    read("SMEMBERS s"),
    read("ZRANGE z 0 -1 WITHSCORES"),
    read("INCR str"),
    read("INCR n"),
    read("MULTI"),
    read("INCR n"),
    read("LPUSH h x"),
    read("GET n"),
    read("EXEC"),
    silent("CLIENT REPLY SKIP"),
    silent("INCR n"),
    silent("CLIENT REPLY OFF"),
    silent("INCR n"),
    read("CLIENT REPLY ON"),
    read("GET n"),
    // Its reply names the connection (`id`), which differs between servers.
    silent("CLIENT REPLY SKIP"),
    silent("HELLO 3"),
    read("HGETALL h"),
    read("ZSCORE z m1"),
    read("SMEMBERS s"),
    read("GET missing"),
    read("DEBUG PROTOCOL true"),
    read("DEBUG PROTOCOL bignum"),
    read("DEBUG PROTOCOL verbatim"),
    read("DEBUG PROTOCOL map"),
    read("DEBUG PROTOCOL attrib"),
    read("DEBUG PROTOCOL double"),
    read("GET bin"),
];

/// What a client reads for the answered lines, sent one by one to a server
/// seeded as pipeload's; the silent ones run too (they change `n`), except
/// `CLIENT REPLY` itself, which a one-by-one client cannot wait on.
fn expected_replies() -> Vec<(usize, Value)> {
    let server = RedisServer::start();
    let mut client = server.client();
    seed(&mut client);
    let mut replies = Vec::new();
    for (index, read) in READS.iter().enumerate() {
        if read.line.starts_with("CLIENT REPLY OFF") || read.line.starts_with("CLIENT REPLY SKIP") {
            continue;
        }
        let args: Vec<&str> = read.line.split(' ').collect();
        let reply = client.cmd(&args);
        if read.answered {
            replies.push((index + 1, reply));
        }
    }
    replies
}

fn reads_input() -> String {
    READS
        .iter()
        .map(|read| format!("{}\n", read.line))
        .collect()
}

/// Loads `READS` into a freshly seeded server with `--replies` in `format`
/// and returns what the file holds, checking the database after.
fn replies_in(format: &str) -> Vec<u8> {
    let server = RedisServer::start();
    seed(&mut server.client());
    let dir = TempDir::new("replies");
    let out = dir.path().join("replies.out");
    let outcome = Pipeload::new()
        .port(server.port())
        .arg("--replies")
        .arg(&out)
        .args(["--replies-format", format])
        .stdin(reads_input())
        .run();
    // Two errors: `INCR str`, and `LPUSH h` inside the `EXEC`.
    outcome.assert_code(1).assert_summary(2, 28);
    assert_eq!(
        server.client().get("n"),
        Some(b"14".to_vec()),
        "INCR n ran four times\n{outcome}"
    );
    std::fs::read(&out).unwrap_or_else(|error| panic!("read {}: {error}\n{outcome}", out.display()))
}

fn read_all_values(mut bytes: &[u8]) -> Vec<Value> {
    let mut values = Vec::new();
    while !bytes.is_empty() {
        let mut reader = BufReader::new(bytes);
        values.push(read_value(&mut reader).expect("a RESP reply"));
        let consumed = bytes.len() - reader.buffer().len();
        // BufReader over a slice reads it all at once: what it still holds
        // is what was not consumed.
        bytes = &bytes[consumed..];
    }
    values
}

#[test]
fn resp_format_is_every_reply_as_received() {
    let expected: Vec<Value> = expected_replies()
        .into_iter()
        .map(|(_, reply)| reply)
        .collect();
    let got = read_all_values(&replies_in("resp"));
    assert_eq!(got, expected);
}

/// The JSON a reply maps to: the README's table, written out here again.
fn json_of(value: &Value) -> serde_json::Value {
    let text = |bytes: &[u8]| match std::str::from_utf8(bytes) {
        Ok(text) => json!(text),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    };
    match value {
        Value::Simple(simple) => json!(simple),
        Value::Error(message) => json!({ "error": message }),
        Value::Int(number) => json!(number),
        Value::Bulk(None) | Value::Array(None) | Value::Null => serde_json::Value::Null,
        Value::Bulk(Some(bytes)) => text(bytes),
        Value::Verbatim(bytes) => text(&bytes[4..]),
        Value::Array(Some(items)) | Value::Set(items) | Value::Push(items) => {
            items.iter().map(json_of).collect()
        }
        Value::Map(pairs) => pairs
            .iter()
            .map(|(key, value)| {
                let key = match json_of(key) {
                    serde_json::Value::String(key) => key,
                    other => other.to_string(),
                };
                (key, json_of(value))
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        Value::Bool(truth) => json!(truth),
        Value::Double(number) | Value::BigNumber(number) => {
            serde_json::from_str(number).unwrap_or_else(|_| json!(number))
        }
    }
}

#[test]
fn json_format_is_one_object_a_line_with_the_input_line() {
    let expected: Vec<serde_json::Value> = expected_replies()
        .into_iter()
        .map(|(line, reply)| json!({ "line": line, "reply": json_of(&reply) }))
        .collect();
    let output = replies_in("json");
    let got: Vec<serde_json::Value> = String::from_utf8(output)
        .expect("JSON lines are UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{line}: {error}")))
        .collect();
    assert_eq!(got, expected);
}

/// What `redis-cli --raw` prints for a reply, without the line end.
fn raw_of(value: &Value) -> Vec<u8> {
    let join = |items: Vec<Vec<u8>>| items.join(&b"\n"[..]);
    match value {
        Value::Simple(text) | Value::Double(text) | Value::BigNumber(text) => {
            text.clone().into_bytes()
        }
        Value::Error(message) => format!("{message}\n").into_bytes(),
        Value::Int(number) => number.to_string().into_bytes(),
        Value::Bulk(None) | Value::Array(None) | Value::Null => Vec::new(),
        Value::Bulk(Some(bytes)) => bytes.clone(),
        Value::Verbatim(bytes) => bytes[4..].to_vec(),
        Value::Bool(truth) => format!("({truth})").into_bytes(),
        Value::Array(Some(items)) | Value::Set(items) | Value::Push(items) => {
            join(items.iter().map(raw_of).collect())
        }
        Value::Map(pairs) => join(
            pairs
                .iter()
                .map(|(key, value)| [raw_of(key), b" ".to_vec(), raw_of(value)].concat())
                .collect(),
        ),
    }
}

#[test]
fn raw_format_prints_as_redis_cli_raw() {
    let expected: Vec<u8> = expected_replies()
        .into_iter()
        .flat_map(|(_, reply)| [raw_of(&reply), b"\n".to_vec()].concat())
        .collect();
    let got = replies_in("raw");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(got, expected);
}

#[test]
fn replies_to_stdout_send_the_summary_to_stderr() {
    let server = RedisServer::start();
    seed(&mut server.client());
    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--replies", "-", "--replies-format", "json"])
        .stdin("GET str\nGET missing\nSET k v\n")
        .run();
    outcome.assert_code(0);
    assert_eq!(
        outcome.stdout_text(),
        "{\"line\":1,\"reply\":\"hello\"}\n{\"line\":2,\"reply\":null}\n{\"line\":3,\"reply\":\"OK\"}\n",
        "stdout holds the replies only\n{outcome}"
    );
    outcome.assert_stderr_line("errors: 0, replies: 3");
    assert_eq!(server.client().get("k"), Some(b"v".to_vec()));

    let refused = Pipeload::new()
        .port(server.port())
        .args(["--replies", "-", "--json"])
        .stdin("SET never sent\n")
        .run();
    refused
        .assert_code(2)
        .assert_stderr_contains("--json prints the summary on stdout");
    assert_eq!(server.client().get("never"), None, "{refused}");
}

#[test]
fn several_files_are_named_in_json_and_a_bad_replies_path_sends_nothing_and_empties_no_input() {
    let server = RedisServer::start();
    seed(&mut server.client());
    let dir = TempDir::new("replies-files");
    let first = dir.write("first.txt", "GET str\n");
    let second = dir.write("second.txt", "\nGET n\n");
    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--replies", "-", "--replies-format", "json"])
        .arg(&first)
        .arg(&second)
        .run();
    outcome.assert_code(0);
    let lines: Vec<serde_json::Value> = outcome
        .stdout_text()
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    assert_eq!(
        lines,
        [
            json!({"file": first.display().to_string(), "line": 1, "reply": "hello"}),
            json!({"file": second.display().to_string(), "line": 2, "reply": "10"}),
        ],
        "{outcome}"
    );

    let unwritable = Pipeload::new()
        .port(server.port())
        .arg("--replies")
        .arg(dir.path().join("no-such-dir").join("out"))
        .stdin("SET never sent\n")
        .run();
    unwritable
        .assert_code(1)
        .assert_stderr_contains("cannot create");
    assert_eq!(server.client().get("never"), None, "{unwritable}");

    let input = dir.write("input.txt", "SET never sent\n");
    let onto_input = Pipeload::new()
        .port(server.port())
        .arg("--replies")
        .arg(dir.path().join(".").join("input.txt"))
        .arg(&input)
        .run();
    onto_input
        .assert_code(1)
        .assert_stderr_contains("is the input file");
    assert_eq!(server.client().get("never"), None, "{onto_input}");
    assert_eq!(
        std::fs::read_to_string(&input).expect("the input"),
        "SET never sent\n",
        "the input is left as it was\n{onto_input}"
    );
}

/// One key per hash slot, in an order that hops between the primaries.
fn keys_over_every_slot() -> Vec<String> {
    let mut by_slot: Vec<Option<String>> = vec![None; 16384];
    let mut missing = by_slot.len();
    let mut candidate = 0u64;
    while missing > 0 {
        let key = format!("k:{candidate}");
        let slot = &mut by_slot[usize::from(slot_of(key.as_bytes()))];
        if slot.is_none() {
            *slot = Some(key);
            missing -= 1;
        }
        candidate += 1;
    }
    let mut keys: Vec<String> = by_slot.into_iter().flatten().collect();
    // A fixed shuffle: slot order would keep each node's keys together.
    let len = keys.len();
    for index in 0..len {
        keys.swap(index, (index * 7919 + 13) % len);
    }
    keys
}

#[test]
fn a_cluster_load_writes_replies_in_input_order() {
    let cluster = TestCluster::start();
    let keys = keys_over_every_slot();
    let sets: String = keys
        .iter()
        .enumerate()
        .filter(|(index, _)| index % 5 != 0)
        .map(|(index, key)| format!("SET {key} value:{index}\n"))
        .collect();
    Pipeload::new()
        .arg("-c")
        .port(cluster.port(0))
        .guard(Duration::from_secs(120))
        .stdin(sets)
        .run()
        .assert_code(0);

    let dir = TempDir::new("cluster-replies");
    let out = dir.path().join("gets.txt");
    let gets: String = keys.iter().map(|key| format!("GET {key}\n")).collect();
    let outcome = Pipeload::new()
        .arg("-c")
        .port(cluster.port(0))
        .guard(Duration::from_secs(120))
        .arg("--replies")
        .arg(&out)
        .stdin(gets)
        .run();
    outcome.assert_code(0);
    let written = std::fs::read_to_string(&out).expect("the replies file");
    let expected: Vec<String> = (0..keys.len())
        .map(|index| match index % 5 {
            0 => String::new(),
            _ => format!("value:{index}"),
        })
        .collect();
    let got: Vec<&str> = written.lines().collect();
    assert_eq!(got.len(), expected.len(), "{outcome}");
    let first_wrong = got
        .iter()
        .zip(&expected)
        .position(|(got, expected)| got != expected);
    assert_eq!(first_wrong, None, "replies out of input order\n{outcome}");
}

/// Reads file large enough that a connection dropped after its first
/// quarter is dropped mid-stream.
const RETRIED_READS: usize = 200_000;

/// `SET key:i value:i` for every key `reads_of_keys` reads, untimed.
fn seed_values(client: &mut Client) {
    let sets: Vec<Vec<Vec<u8>>> = (0..RETRIED_READS)
        .map(|i| {
            vec![
                b"SET".to_vec(),
                format!("key:{i}").into_bytes(),
                format!("value:{i}").into_bytes(),
            ]
        })
        .collect();
    for chunk in sets.chunks(10_000) {
        client.pipeline(chunk);
    }
}

/// `GET key:i` lines, `RETRIED_READS` of them.
fn reads_of_keys() -> Vec<u8> {
    (0..RETRIED_READS)
        .flat_map(|i| format!("GET key:{i}\n").into_bytes())
        .collect()
}

fn commands_processed(client: &mut Client) -> u64 {
    let info = client.info("stats");
    info_field(&info, "total_commands_processed")
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

/// Feeds `reads_of_keys()` to a running pipeload: the first half at once,
/// the rest once `struck` has run, after a quarter of the reads ran on the
/// server `client` talks to.
fn strike_mid_file(
    running: &mut crate::common::run::Running,
    client: &mut Client,
    struck: impl FnOnce(),
) {
    let mut stdin = running.take_stdin();
    let (go_on, rest_wanted) = mpsc::channel::<()>();
    let feeder = thread::spawn(move || {
        let gets = reads_of_keys();
        let half = middle_line_end(&gets);
        let _ = stdin.write_all(&gets[..half]);
        let _ = rest_wanted.recv();
        let _ = stdin.write_all(&gets[half..]);
    });
    let before = commands_processed(client);
    wait_until(
        Duration::from_secs(120),
        "a quarter of the reads ran",
        || commands_processed(client) >= before + RETRIED_READS as u64 / 4,
    );
    struck();
    let _ = go_on.send(());
    let _ = feeder.join();
}

#[test]
fn a_reconnect_under_retry_writes_each_reply_exactly_once() {
    let server = RedisServer::start();
    let mut client = server.client();
    seed_values(&mut client);
    let dir = TempDir::new("retried-replies");
    let out = dir.path().join("replies.txt");
    let mut running = Pipeload::new()
        .port(server.port())
        .args(["--retry", "5", "--replies"])
        .arg(&out)
        .guard(Duration::from_secs(240))
        .spawn();
    let mut killer = server.client();
    strike_mid_file(&mut running, &mut client, || {
        killer.ok(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    });
    let outcome = running.finish();

    let (summary, reconnects) = outcome.assert_retried_without_errors();
    outcome.check(reconnects == 1, "one connection dropped: `reconnects: 1`");
    assert_eq!(summary.replies, RETRIED_READS as u64, "{outcome}");
    let written = std::fs::read_to_string(&out).expect("the replies file");
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines.len(), RETRIED_READS, "one line per read\n{outcome}");
    let first_wrong = (0..RETRIED_READS).find(|&i| lines[i] != format!("value:{i}"));
    assert_eq!(
        first_wrong, None,
        "each reply once, in input order\n{outcome}"
    );
}

#[test]
fn a_reply_after_an_ask_redirect_is_written_once_in_its_place() {
    // A slot half migrated: node 0 answers for the keys it still has and
    // `ASK`s for those moved to node 1, where pipeload resends them.
    let cluster = TestCluster::start();
    let tag = tag_on_node("ask", 0);
    let slot = slot_of(tag.as_bytes()).to_string();
    let keys: Vec<String> = (0..40).map(|i| format!("{{{tag}}}:{i}")).collect();
    let mut source = cluster.client(0);
    for (index, key) in keys.iter().enumerate() {
        source.ok(&["SET", key, &format!("value:{index}")]);
    }
    cluster
        .client(1)
        .ok(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", cluster.node_id(0)]);
    source.ok(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", cluster.node_id(1)]);
    let port = cluster.port(1).to_string();
    let mut migrate = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
    migrate.extend(keys.iter().step_by(2).map(String::as_str));
    source.ok(&migrate);

    // Each key read between reads of keys on the other nodes.
    let others = [tag_on_node("other", 1), tag_on_node("other", 2)];
    let mut input = String::new();
    let mut expected = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        input.push_str(&format!(
            "GET {key}\nGET {{{}}}:missing\n",
            others[index % 2]
        ));
        expected.push(json!({"line": 2 * index + 1, "reply": format!("value:{index}")}));
        expected.push(json!({"line": 2 * index + 2, "reply": null}));
    }
    let outcome = Pipeload::new()
        .arg("-c")
        .port(cluster.port(0))
        .guard(Duration::from_secs(60))
        .args(["--replies", "-", "--replies-format", "json"])
        .stdin(input)
        .run();
    outcome
        .assert_code(0)
        .assert_stderr_line("errors: 0, replies: 80");
    let got: Vec<serde_json::Value> = outcome
        .stdout_text()
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    assert_eq!(got, expected, "{outcome}");
    // The keys stayed where the migration left them.
    assert_eq!(cluster.client(1).dbsize(), 20, "{outcome}");
}

#[test]
fn a_load_that_stops_early_leaves_the_replies_of_what_it_acknowledged_and_skip_writes_the_rest() {
    let mut server = RedisServer::start();
    let mut client = server.client();
    seed_values(&mut client);
    let dir = TempDir::new("stopped-replies");
    let first = dir.path().join("first.txt");
    let mut running = Pipeload::new()
        .port(server.port())
        .arg("--replies")
        .arg(&first)
        .guard(Duration::from_secs(240))
        .spawn();
    strike_mid_file(&mut running, &mut client, || server.kill());
    let outcome = running.finish();
    let acknowledged = outcome.assert_stopped(1);
    let written = std::fs::read_to_string(&first).expect("the replies file");
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(
        lines.len() as u64,
        acknowledged,
        "the replies of the acknowledged commands, and only those\n{outcome}"
    );
    let first_wrong = (0..lines.len()).find(|&i| lines[i] != format!("value:{i}"));
    assert_eq!(first_wrong, None, "{outcome}");

    // The rest, from a server that has the data again.
    let server = RedisServer::start();
    seed_values(&mut server.client());
    let rest = dir.path().join("rest.txt");
    let resumed = Pipeload::new()
        .port(server.port())
        .args(["--skip", &acknowledged.to_string(), "--replies"])
        .arg(&rest)
        .guard(Duration::from_secs(240))
        .stdin(reads_of_keys())
        .run();
    resumed.assert_code(0);
    let written = std::fs::read_to_string(&rest).expect("the replies file");
    let expected: String = (acknowledged as usize..RETRIED_READS)
        .map(|i| format!("value:{i}\n"))
        .collect();
    assert!(
        written == expected,
        "the replies from the resume point on\n{resumed}"
    );
}

#[test]
fn replies_of_a_slow_stream_are_written_as_they_come() {
    let server = RedisServer::start();
    seed(&mut server.client());
    let dir = TempDir::new("streamed-replies");
    let out = dir.path().join("replies.txt");
    let mut running = Pipeload::new()
        .port(server.port())
        .arg("--replies")
        .arg(&out)
        .spawn();
    let written = || std::fs::read_to_string(&out).unwrap_or_default();
    running.write_stdin(b"GET str\n").expect("stdin");
    wait_until(
        Duration::from_secs(30),
        "the first reply is in the file",
        || written() == "hello\n",
    );
    running.write_stdin(b"GET n\n").expect("stdin");
    wait_until(
        Duration::from_secs(30),
        "the second reply is in the file",
        || written() == "hello\n10\n",
    );
    running.close_stdin();
    let outcome = running.finish();
    outcome.assert_summary(0, 2);
    assert_eq!(written(), "hello\n10\n", "{outcome}");
}

/// A server holding one 1000-byte value and, in a file, the line `first`,
/// 50,000 `GET`s of the value, then the line `last` (if not empty): far
/// more replies than a pipe, the chunks waiting for it and the reply-byte
/// window hold.
fn many_big_reads(
    dir_name: &str,
    first: &str,
    last: &str,
) -> (RedisServer, Client, TempDir, PathBuf) {
    let server = RedisServer::start();
    let mut client = server.client();
    client.ok(&["SET", "value", &"v".repeat(1000)]);
    let dir = TempDir::new(dir_name);
    let mut reads = format!("{first}\n");
    reads.push_str(&"GET value\n".repeat(50_000));
    if !last.is_empty() {
        reads.push_str(&format!("{last}\n"));
    }
    let input = dir.write("reads.txt", &reads);
    (server, client, dir, input)
}

#[test]
fn a_second_ctrl_c_quits_though_the_replies_reader_takes_nothing() {
    let (server, mut client, _dir, input) = many_big_reads("replies-unread", "SET started 1", "");
    let mut running = Pipeload::new()
        .port(server.port())
        .args(["--replies", "-"])
        .arg(&input)
        .stdout_sink(Sink::Unread)
        .spawn();
    wait_until(Duration::from_secs(30), "the load started", || {
        client.exists("started")
    });
    running.signal("INT");
    running.wait_for_stderr("interrupted", Duration::from_secs(30));
    running.signal("INT");
    running.wait_for_stderr("quitting at once", Duration::from_secs(30));
    // The reader still takes nothing: the quit must not wait for it.
    let exited = running.wait_for_exit(Duration::from_secs(20));
    assert!(
        exited.is_some(),
        "pipeload still runs after a second Ctrl-C"
    );
    running
        .finish()
        .assert_code(130)
        .assert_stderr_contains("replies still to be written were dropped")
        .assert_stderr_contains("acknowledged: ");
}

#[test]
fn a_replies_reader_that_goes_away_ends_the_load_without_an_error() {
    let (server, mut client, _dir, input) =
        many_big_reads("replies-reader-gone", "SET first 1", "SET last 1");
    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--replies", "-"])
        .arg(&input)
        .stdout_sink(Sink::ClosedPipe)
        .run();
    outcome
        .assert_code(0)
        .assert_stderr_line(
            "pipeload: the reader of the replies (stdout) stopped reading: no more commands are sent",
        )
        .assert_stderr_lacks("errors: 1");
    let acknowledged = outcome
        .stderr_lines()
        .iter()
        .find_map(|line| line.strip_prefix("acknowledged: ")?.parse::<u64>().ok())
        .unwrap_or_else(|| outcome.fail("no `acknowledged: K` line on stderr"));
    outcome.assert_stderr_line(&format!("resume with: --skip {acknowledged}"));
    assert!(acknowledged < 50_002, "{outcome}");
    assert!(client.exists("first"), "{outcome}");
    assert!(!client.exists("last"), "the load went on\n{outcome}");
}

#[test]
fn replies_that_cannot_be_written_are_not_acknowledged() {
    let server = RedisServer::start();
    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--replies", "/dev/full"])
        .stdin("SET k v\nGET k\nGET k\n")
        .run();
    outcome.assert_stderr_line(
        "pipeload: cannot write the replies to /dev/full: No space left on device",
    );
    // Sent and applied all the same, but the resume point is where the
    // replies stop, so a resumed load writes every one of them.
    assert_eq!(outcome.assert_stopped(1), 0, "{outcome}");
    assert_eq!(server.client().get("k").as_deref(), Some(&b"v"[..]));
}
