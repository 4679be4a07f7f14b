//! CSV, TSV and JSON Lines through command templates (`--format
//! csv|tsv|jsonl --template …`): every field arrives in the server byte for
//! byte, as Python's `csv` module reads it; records that cannot be used are
//! refused with their input line and the rest loads; the errors file holds
//! the failed records under the CSV header and loads again with the same
//! command line; `--skip` and the resume point count template commands;
//! `--emit-resp` writes the commands the templates describe.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::common::{
    Client, Pipeload, RedisServer, TempDir, middle_line_end, resp_command, wait_until,
};

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// Every tricky CSV value: (id, the field as written in the CSV, the line
/// end after the record).
fn tricky_rows() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let big: Vec<u8> = (0..10 * 1024 * 1024)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let mut big_field = b"\"x,".to_vec();
    big_field.extend_from_slice(&big);
    big_field.extend_from_slice(b"\"");
    vec![
        ("comma", b"\"Smith, John\"".to_vec(), "\n"),
        (
            "quotes",
            b"\"Bob \"\"The Builder\"\" Jones\"".to_vec(),
            "\n",
        ),
        ("backslashes", b"C:\\Users\\dan".to_vec(), "\n"),
        ("backslash-t", b"Tab\\there".to_vec(), "\n"),
        ("crlf", b"win@example.com".to_vec(), "\r\n"),
        ("newline", b"\"first line\nsecond line\"".to_vec(), "\n"),
        ("crlf-inside", b"\"a\r\nb\"".to_vec(), "\r\n"),
        ("empty", b"".to_vec(), "\n"),
        ("empty-quoted", b"\"\"".to_vec(), "\n"),
        ("utf8", "Zoë 日本 🎉".as_bytes().to_vec(), "\n"),
        ("invalid-utf8", b"\xff\xfe\x80ok".to_vec(), "\n"),
        ("padded", b"  padded  ".to_vec(), "\n"),
        ("single-quote", b"it's 'quoted'".to_vec(), "\n"),
        ("braces", b"{id} {{name}} {*}".to_vec(), "\n"),
        ("nul", b"a\x00b".to_vec(), "\n"),
        ("inch", b"5\" screen".to_vec(), "\n"),
        ("after-quote", b"\"ab\"cd".to_vec(), "\n"),
        ("big", big_field, "\n"),
        ("last", b"no line end".to_vec(), ""),
    ]
}

/// A CSV file (`id,value`, with a byte order mark) holding `rows`.
fn tricky_csv(rows: &[(&str, Vec<u8>, &str)]) -> Vec<u8> {
    let mut csv = b"\xEF\xBB\xBFid,value\r\n".to_vec();
    for (id, field, end) in rows {
        csv.extend_from_slice(id.as_bytes());
        csv.push(b',');
        csv.extend_from_slice(field);
        csv.extend_from_slice(end.as_bytes());
    }
    csv
}

/// What Python's `csv.DictReader` reads from `path` (`delimiter` between
/// fields, bytes kept as they are with surrogateescape): each row's fields
/// by name.
fn python_reads(path: &std::path::Path, delimiter: &str) -> Vec<BTreeMap<String, Vec<u8>>> {
    let script = r#"
import csv, sys
csv.field_size_limit(sys.maxsize)
with open(sys.argv[1], newline='', encoding='utf-8-sig', errors='surrogateescape') as f:
    for row in csv.DictReader(f, delimiter=sys.argv[2]):
        print(' '.join(k + '=' + v.encode('utf-8', 'surrogateescape').hex() for k, v in row.items()))
"#;
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .arg(delimiter)
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("python prints hex")
        .lines()
        .map(|line| {
            line.split(' ')
                .map(|pair| {
                    let (name, hex) = pair.split_once('=').expect("name=hex");
                    (name.to_owned(), unhex(hex))
                })
                .collect()
        })
        .collect()
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex digits"))
        .collect()
}

/// Shows a value, shortened, for assertion messages.
fn shown(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    match text.len() > 80 {
        true => format!("{}… ({} bytes)", &text[..80], value.len()),
        false => format!("{text:?}"),
    }
}

#[test]
fn every_tricky_csv_field_is_stored_as_pythons_csv_module_reads_it() {
    let server = RedisServer::start();
    let mut client = server.client();
    let dir = TempDir::new("tricky-csv");
    let rows = tricky_rows();
    let path = dir.write("tricky.csv", tricky_csv(&rows));
    let python = python_reads(&path, ",");
    assert_eq!(python.len(), rows.len(), "python reads one row per record");

    Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args(["--format", "csv", "tricky.csv"])
        .args(["--template", "SET value:{id} {value}"])
        .args(["--template", "HSET row:{id} {*}"])
        .guard(Duration::from_secs(120))
        .run()
        .assert_summary(0, 2 * rows.len() as u64);

    for row in &python {
        let id = String::from_utf8_lossy(&row["id"]).into_owned();
        let expected = &row["value"];
        let stored = client.get(format!("value:{id}")).unwrap_or_default();
        assert!(
            stored == *expected,
            "value:{id} holds {}, python's csv reads {}",
            shown(&stored),
            shown(expected)
        );
        let hash: BTreeMap<Vec<u8>, Vec<u8>> = row
            .iter()
            .map(|(name, value)| (name.as_bytes().to_vec(), value.clone()))
            .collect();
        assert!(
            client.hgetall(format!("row:{id}")) == hash,
            "row:{id} must hold every field by its header name"
        );
    }
    assert_eq!(
        client.get("value:braces"),
        Some(b"{id} {{name}} {*}".to_vec()),
        "a value is never searched for placeholders"
    );
}

#[test]
fn tsv_semicolon_and_headerless_files_load_by_delimiter_and_position() {
    let server = RedisServer::start();
    let mut client = server.client();
    let dir = TempDir::new("tsv");
    let tsv = dir.write("pairs.tsv", "k1\tTab\\there, ok\nk2\t\"quoted\ttab\"\n");
    let python = python_reads(&path_with_header(&dir, &tsv, "key\tvalue\n"), "\t");
    dir.write("semi.csv", "id;name\n7;\"a;b\"\n");

    Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args([
            "--format",
            "tsv",
            "--no-header",
            "--template",
            "SET {0} {1}",
        ])
        .arg("pairs.tsv")
        .run()
        .assert_summary(0, 2);
    Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args(["--format", "csv", "--delimiter", ";"])
        .args(["--template", "SET semi:{id} {name}", "semi.csv"])
        .run()
        .assert_summary(0, 1);
    Pipeload::new()
        .port(server.port())
        .args(["--format", "csv", "--fields", "id,name"])
        .args(["--template", "SET given:{id} {name}:{1}"])
        .stdin("1,one\n2,two\n")
        .run()
        .assert_summary(0, 2);

    for row in &python {
        assert_eq!(client.get(&row["key"]).as_ref(), Some(&row["value"]));
    }
    assert_eq!(client.get("k1"), Some(b"Tab\\there, ok".to_vec()));
    assert_eq!(client.get("semi:7"), Some(b"a;b".to_vec()));
    assert_eq!(client.get("given:1"), Some(b"one:one".to_vec()));
    assert_eq!(client.get("given:2"), Some(b"two:two".to_vec()));
}

/// A copy of `data` with `header` before it, for Python's DictReader.
fn path_with_header(dir: &TempDir, data: &std::path::Path, header: &str) -> std::path::PathBuf {
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(&std::fs::read(data).expect("read data"));
    dir.write("with-header", bytes)
}

#[test]
fn jsonl_paths_numbers_booleans_and_unicode_escapes_arrive_exactly() {
    let server = RedisServer::start();
    let mut client = server.client();
    let lines = [
        r#"{"id": 1, "user": {"name": "Zo\u00eb \"Z\" \ud83c\udf89", "age": 41}, "tags": ["a b", "c"], "score": 1.50, "ok": true}"#,
        r#"{"id": "2", "user": {"name": "Tab\there\\", "age": 12345678901234567890}, "tags": [], "score": -1e3, "ok": false, "email": null}"#,
    ];
    let input = format!("{}\r\n\n{}\n", lines[0], lines[1]);

    Pipeload::new()
        .port(server.port())
        .args(["--format", "jsonl"])
        .args([
            "--template",
            "HSET doc:{id} name {user.name} age {user.age} first {tags.0:-none}",
        ])
        .args(["--template", "SET json:{id} {.}"])
        .args(["--template", "HSET top:{id} {*}"])
        .args(["--template", "SET mail:{id} {email:-none}"])
        .stdin(input)
        .run()
        .assert_summary(0, 8);

    let hash = |pairs: &[(&str, &[u8])]| -> BTreeMap<Vec<u8>, Vec<u8>> {
        pairs
            .iter()
            .map(|(name, value)| (name.as_bytes().to_vec(), value.to_vec()))
            .collect()
    };
    assert_eq!(
        client.hgetall("doc:1"),
        hash(&[
            ("name", "Zoë \"Z\" 🎉".as_bytes()),
            ("age", b"41"),
            ("first", b"a b")
        ])
    );
    assert_eq!(
        client.hgetall("doc:2"),
        hash(&[
            ("name", b"Tab\there\\"),
            ("age", b"12345678901234567890"),
            ("first", b"none")
        ])
    );
    assert_eq!(client.get("json:1"), Some(lines[0].as_bytes().to_vec()));
    assert_eq!(client.get("json:2"), Some(lines[1].as_bytes().to_vec()));
    assert_eq!(
        client.hgetall("top:1"),
        hash(&[
            ("id", b"1"),
            (
                "user",
                br#"{"name": "Zo\u00eb \"Z\" \ud83c\udf89", "age": 41}"#
            ),
            ("tags", br#"["a b", "c"]"#),
            ("score", b"1.50"),
            ("ok", b"true")
        ])
    );
    assert_eq!(
        client.hgetall("top:2").get(&b"score"[..]),
        Some(&b"-1e3".to_vec())
    );
    assert_eq!(
        client.hgetall("top:2").get(&b"email"[..]),
        None,
        "{{*}} leaves a null out"
    );
    assert_eq!(client.get("mail:1"), Some(b"none".to_vec()));
    assert_eq!(client.get("mail:2"), Some(b"none".to_vec()));
}

#[test]
fn records_that_cannot_be_used_are_refused_with_their_line_and_the_rest_loads() {
    let server = RedisServer::start();
    let mut client = server.client();
    let dir = TempDir::new("refused");
    dir.write(
        "users.csv",
        "id,name,email\n\
         1,Ann,ann@x\n\
         2,\"Two\nlines\",two@x\n\
         3,too,many,fields\n\
         \n\
         4,few\n\
         5,Eve,eve@x\n\
         6,\"never closed,six@x\n\
         7,lost,lost@x\n",
    );
    dir.write(
        "docs.jsonl",
        "{\"id\": 1, \"name\": \"one\"}\n\
         {\"id\": 2, \"name\": \n\
         [1, 2]\n\
         {\"id\": 4}\n\
         \"text\"\n\
         {\"id\": 6, \"name\": \"six\"}\n",
    );

    let csv = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args(["--format", "csv", "users.csv"])
        .args(["--template", "HSET user:{id} name {name} email {email}"])
        .args(["--template", "SADD users {id}"])
        .run();
    csv.assert_summary(3, 6)
        .assert_stderr_line("users.csv:5: not sent: 4 fields, the header has 3")
        .assert_stderr_line("users.csv:7: not sent: 2 fields, the header has 3")
        .assert_stderr_line(
            "users.csv:9: not sent: unterminated quote: the input ends inside a quoted field",
        );
    assert_eq!(
        client.hgetall("user:2").get(&b"name"[..]),
        Some(&b"Two\nlines".to_vec())
    );
    assert_eq!(smembers(&mut client, "users"), ["1", "2", "5"]);
    assert!(
        !client.exists("user:7"),
        "a record swallowed by an open quote is not loaded"
    );

    let jsonl = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args(["--format", "jsonl", "docs.jsonl"])
        .args(["--template", "SET doc:{id} {name}"])
        .run();
    jsonl
        .assert_summary(4, 2)
        .assert_stderr_line_starts("docs.jsonl:2: not sent: column 1")
        .assert_stderr_line(
            "docs.jsonl:3: not sent: column 1: not a JSON object (each line must be one {…})",
        )
        .assert_stderr_line("docs.jsonl:4: not sent: no field 'name'")
        .assert_stderr_line(
            "docs.jsonl:5: not sent: column 1: not a JSON object (each line must be one {…})",
        );
    let invalid = jsonl
        .stderr_lines()
        .into_iter()
        .find(|line| line.starts_with("docs.jsonl:2: "))
        .unwrap_or_default();
    assert!(
        invalid.starts_with("docs.jsonl:2: not sent: column ")
            && invalid.contains("invalid JSON: "),
        "an invalid JSON line names its column: {invalid}"
    );
    assert_eq!(client.get("doc:1"), Some(b"one".to_vec()));
    assert_eq!(client.get("doc:6"), Some(b"six".to_vec()));
}

fn smembers(client: &mut Client, key: &str) -> Vec<String> {
    let mut members: Vec<String> = client
        .cmd(&["SMEMBERS", key])
        .into_array()
        .into_iter()
        .map(|member| member.into_text())
        .collect();
    members.sort();
    members
}

#[test]
fn the_errors_file_holds_failed_records_under_the_header_and_loads_again() {
    let server = RedisServer::start();
    let mut client = server.client();
    let dir = TempDir::new("errors-file");
    // user:2 is a list: its HSET fails, its SADD does not; record 4 has a
    // field too few; record 3 spans two lines and both of its commands
    // fail (users3 is a string).
    client.ok(&["RPUSH", "user:2", "x"]);
    client.ok(&["RPUSH", "user:3", "x"]);
    client.ok(&["SET", "users3", "x"]);
    dir.write(
        "users.csv",
        "id,name,set\r\n\
         1,Ann,users\r\n\
         2,Bob,users\r\n\
         3,\"Multi\r\nline\",users3\r\n\
         4,Short\r\n\
         5,Eve,users\r\n",
    );
    let args = [
        "--format",
        "csv",
        "--template",
        "HSET user:{id} name {name}",
        "--template",
        "SADD {set} {id}",
        "--errors-file",
        "failed.csv",
    ];

    let first = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args(args)
        .arg("users.csv")
        .run();
    first
        .assert_summary(4, 8)
        .assert_stderr_line(&format!("users.csv:3 (template 1): {WRONGTYPE}"))
        .assert_stderr_line(&format!("users.csv:4 (template 1): {WRONGTYPE}"))
        .assert_stderr_line(&format!("users.csv:4 (template 2): {WRONGTYPE}"))
        .assert_stderr_line("users.csv:6: not sent: 2 fields, the header has 3");
    let failed = std::fs::read(dir.path().join("failed.csv")).expect("read failed.csv");
    assert_eq!(
        String::from_utf8_lossy(&failed),
        "id,name,set\n2,Bob,users\n3,\"Multi\r\nline\",users3\n4,Short\n",
        "the header, then each failed record once, as it was written"
    );

    // Fixed: the conflicting keys go, the short record gets its field.
    client.ok(&["DEL", "user:2", "user:3", "users3"]);
    let fixed = String::from_utf8_lossy(&failed).replace("4,Short", "4,Short,users");
    dir.write("failed.csv", fixed);
    Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args(["--format", "csv"])
        .args(["--template", "HSET user:{id} name {name}"])
        .args(["--template", "SADD {set} {id}"])
        .arg("failed.csv")
        .run()
        .assert_summary(0, 6);
    for (id, name) in [
        ("1", "Ann"),
        ("2", "Bob"),
        ("3", "Multi\r\nline"),
        ("4", "Short"),
        ("5", "Eve"),
    ] {
        assert_eq!(
            client.hgetall(format!("user:{id}")).get(&b"name"[..]),
            Some(&name.as_bytes().to_vec()),
            "user:{id}"
        );
    }
    assert_eq!(smembers(&mut client, "users"), ["1", "2", "4", "5"]);
    assert_eq!(smembers(&mut client, "users3"), ["3"]);
}

#[test]
fn skip_counts_template_commands_and_a_stopped_load_resumes_exactly_once() {
    let server = RedisServer::start();
    let mut client = server.client();
    let records = 60_000;
    let mut csv = b"id\n".to_vec();
    for id in 0..records {
        csv.extend_from_slice(format!("{id}\n").as_bytes());
    }
    let args = [
        "--format",
        "csv",
        "--template",
        "INCR a:{id}",
        "--template",
        "INCR b:{id}",
    ];

    // Three commands skipped: record 0 and the first command of record 1.
    Pipeload::new()
        .port(server.port())
        .args(args)
        .args(["--skip", "3"])
        .stdin("id\n0\n1\n2\n")
        .run()
        .assert_summary(0, 3);
    let keys = ["a:0", "b:0", "a:1", "b:1", "a:2", "b:2"];
    let values: Vec<Option<Vec<u8>>> = keys.iter().map(|key| client.get(key)).collect();
    assert_eq!(
        values,
        [
            None,
            None,
            None,
            Some(b"1".to_vec()),
            Some(b"1".to_vec()),
            Some(b"1".to_vec())
        ]
    );
    client.ok(&["FLUSHALL"]);

    // Stopped by SIGTERM halfway through its input: the resume point says
    // how many commands to skip, and the rest loads once.
    let mut running = Pipeload::new()
        .port(server.port())
        .args(args)
        .guard(Duration::from_secs(120))
        .spawn();
    // Cut at a line end: stdin closes right after the signal, and a line
    // cut short would be, rightly, the last record of the first run's
    // input, which the resumed load reads whole.
    let half = middle_line_end(&csv);
    running
        .write_stdin(&csv[..half])
        .expect("write the first half");
    wait_until(Duration::from_secs(60), "the first half is loaded", || {
        client.dbsize() >= records as i64 / 3
    });
    running.signal("TERM");
    let first = running.finish();
    let acknowledged = first.assert_stopped(143);
    first.check(
        acknowledged > 0 && acknowledged < 2 * records as u64,
        "stopped mid-load",
    );

    let second = Pipeload::new()
        .port(server.port())
        .args(args)
        .args(["--skip", &acknowledged.to_string()])
        .stdin(csv)
        .guard(Duration::from_secs(120))
        .run();
    second.assert_summary(0, 2 * records as u64 - acknowledged);
    for prefix in ["a", "b"] {
        let values = client.pipeline(
            &(0..records)
                .map(|id| vec![b"GET".to_vec(), format!("{prefix}:{id}").into_bytes()])
                .collect::<Vec<_>>(),
        );
        let wrong: Vec<String> = values
            .into_iter()
            .enumerate()
            .filter(|(_, value)| value.clone().into_bulk() != Some(b"1".to_vec()))
            .take(5)
            .map(|(id, value)| format!("{prefix}:{id} = {value:?}"))
            .collect();
        assert!(
            wrong.is_empty(),
            "every counter must be 1 after the resume (acknowledged {acknowledged}): {wrong:?}\n{first}\n{second}"
        );
    }
}

#[test]
fn emit_resp_writes_the_commands_the_templates_describe() {
    let dir = TempDir::new("emit");
    dir.write("in.csv", "id,name\n1,\"a b\"\n2,\"x\"\"y\"\n3\n");
    let outcome = Pipeload::new()
        .current_dir(dir.path())
        .args(["--emit-resp", "--format", "csv", "in.csv"])
        .args([
            "--template",
            "HSET 'user:{id}' name {name} tag \"{{literal}}\\t\"",
        ])
        .args(["--template", "SADD users {id}"])
        .args(["--template", "SET json:{id} {.}"])
        .run();
    outcome
        .assert_code(1)
        .assert_stderr_line("in.csv:4: not sent: 1 fields, the header has 2");
    let mut expected = Vec::new();
    for (id, name, json) in [
        ("1", "a b", r#"{"id":"1","name":"a b"}"#),
        ("2", "x\"y", r#"{"id":"2","name":"x\"y"}"#),
    ] {
        let key = format!("user:{id}");
        expected.extend(resp_command(&[
            "HSET",
            &key,
            "name",
            name,
            "tag",
            "{literal}\t",
        ]));
        expected.extend(resp_command(&["SADD", "users", id]));
        expected.extend(resp_command(&["SET", &format!("json:{id}"), json]));
    }
    assert_eq!(
        String::from_utf8_lossy(&outcome.stdout),
        String::from_utf8_lossy(&expected)
    );
}

#[test]
fn bad_templates_and_missing_fields_are_usage_errors_before_anything_is_sent() {
    let server = RedisServer::start();
    let mut client = server.client();
    let dir = TempDir::new("usage");
    dir.write("users.csv", "id,name,email\n1,Ann,ann@x\n");
    let run = |args: &[&str]| {
        Pipeload::new()
            .port(server.port())
            .current_dir(dir.path())
            .args(args)
            .run()
    };

    run(&["--format", "csv", "--template", "HSET user:{id} mail {emial}", "users.csv"])
        .assert_code(2)
        .assert_stderr_line(
            "pipeload: --template 'HSET user:{id} mail {emial}': no field 'emial' in users.csv's header (id, name, email)",
        );
    run(&[
        "--format",
        "csv",
        "--template",
        "SET user:{id name",
        "users.csv",
    ])
    .assert_code(2)
    .assert_stderr_contains("--template 'SET user:{id name': unbalanced brace");
    run(&["--format", "csv", "users.csv"])
        .assert_code(2)
        .assert_stderr_contains("--format csv needs --template")
        .assert_stderr_contains("--template 'HSET user:{id} {*}'");
    run(&[
        "--format",
        "csv",
        "--no-header",
        "--template",
        "SET {name} x",
        "users.csv",
    ])
    .assert_code(2)
    .assert_stderr_contains("fields go by position");
    run(&[
        "--format",
        "csv",
        "--fields",
        "a,b",
        "--template",
        "SET {a} {c}",
        "users.csv",
    ])
    .assert_code(2)
    .assert_stderr_contains("--fields has no 'c'");
    run(&["--template", "SET {a} x", "users.csv"])
        .assert_code(2)
        .assert_stderr_contains("--template needs --format csv, tsv or jsonl");
    assert_eq!(client.dbsize(), 0, "nothing may be sent");
}

#[test]
fn a_cluster_load_routes_each_records_commands_and_reports_their_lines() {
    let cluster = crate::common::TestCluster::start();
    let rows = 3000;
    let mut csv = b"id,name\n".to_vec();
    for id in 0..rows {
        csv.extend_from_slice(format!("{id},\"name {id}, the {id}th\"\n").as_bytes());
    }
    csv.extend_from_slice(b"bad row,with,three\n");
    let owner = cluster.owner_of_key("name:7");
    cluster.client(owner).ok(&["RPUSH", "name:7", "x"]);
    let dir = TempDir::new("cluster-csv");
    dir.write("users.csv", &csv);

    let outcome = Pipeload::new()
        .port(cluster.port(0))
        .current_dir(dir.path())
        .args([
            "-c",
            "--format",
            "csv",
            "users.csv",
            "--errors-file",
            "failed.csv",
        ])
        .args(["--template", "HSET user:{id} {*}"])
        .args(["--template", "APPEND name:{id} {name}"])
        .guard(Duration::from_secs(120))
        .run();
    outcome
        .assert_summary(2, 2 * rows)
        .assert_stderr_line(
            "users.csv:9 (template 2): WRONGTYPE Operation against a key holding the wrong kind of value",
        )
        .assert_stderr_line(&format!(
            "users.csv:{}: not sent: 3 fields, the header has 2",
            rows + 2
        ));
    for id in [0, 1, 2999] {
        assert_eq!(
            cluster.get(format!("name:{id}")),
            Some(format!("name {id}, the {id}th").into_bytes())
        );
    }
    assert_eq!(cluster.total_keys(), 2 * rows as i64);
    // With -c the failed records come in the order the nodes answered.
    let failed = std::fs::read_to_string(dir.path().join("failed.csv")).expect("read failed.csv");
    let mut lines: Vec<&str> = failed.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"id,name"),
        "the header first:\n{failed}"
    );
    lines[1..].sort_unstable();
    assert_eq!(
        lines,
        ["id,name", "7,\"name 7, the 7th\"", "bad row,with,three"],
        "each failed record once:\n{failed}"
    );
}
