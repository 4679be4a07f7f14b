//! Every error is reported with where its command came from: `line N` on
//! stdin, `FILE:N` in a file, ` (command K)` after a RESP command, and
//! ` (EXEC element I)` for an error inside a transaction's reply.

use crate::common::{Client, Outcome, Pipeload, RedisServer, TempDir, Value, resp_command};

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";

/// The server's own error text for `args`, e.g. for an unknown command.
fn error_text(client: &mut Client, args: &[&str]) -> String {
    match client.cmd(args) {
        Value::Error(message) => message,
        other => panic!("expected {args:?} to fail, got {other:?}"),
    }
}

#[test]
fn errors_name_their_file_stdin_line_and_command() {
    let server = RedisServer::start();
    let mut client = server.client();
    let dir = TempDir::new("files");
    dir.write("a.txt", "SET s 1\nFOO bar\n\nLPUSH s x\nRPUSH order a\n");
    let mut stdin = b"SET m 1\n".to_vec();
    stdin.extend_from_slice(&resp_command(&["RPUSH", "m", "x"])); // lines 2-8
    stdin.extend_from_slice(b"BAR\r\nRPUSH order stdin\r\n");
    let mut b = resp_command(&["SET", "k", "v"]); // lines 1-7, command 1
    b.extend_from_slice(b"FOO\n"); // line 8, command 2
    b.extend_from_slice(&resp_command(&["LPUSH", "k", "x"])); // lines 9-15, command 3
    b.extend_from_slice(b"\r\n"); // line 16
    b.extend_from_slice(&resp_command(&["HSET", "k", "f", "v"])); // lines 17-25, command 4
    b.extend_from_slice(&resp_command(&["RPUSH", "order", "b"])); // lines 26-32, command 5
    std::fs::create_dir(dir.path().join("sub")).expect("create sub/");
    dir.write("sub/b.resp", &b);

    let outcome = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args(["a.txt", "-", "sub/b.resp"])
        .stdin(stdin)
        .run();

    let foo_bar = error_text(&mut client, &["FOO", "bar"]);
    let bar = error_text(&mut client, &["BAR"]);
    let foo = error_text(&mut client, &["FOO"]);
    outcome
        .assert_summary(7, 13)
        .assert_stderr_line(&format!("a.txt:2: {foo_bar}"))
        .assert_stderr_line(&format!("a.txt:4: {WRONGTYPE}"))
        .assert_stderr_line(&format!("line 2 (command 2): {WRONGTYPE}"))
        .assert_stderr_line(&format!("line 9: {bar}"))
        .assert_stderr_line(&format!("sub/b.resp:8: {foo}"))
        .assert_stderr_line(&format!("sub/b.resp:9 (command 3): {WRONGTYPE}"))
        .assert_stderr_line(&format!("sub/b.resp:17 (command 4): {WRONGTYPE}"));
    assert_eq!(
        client.lrange("order"),
        [b"a".to_vec(), b"stdin".to_vec(), b"b".to_vec()],
        "files and stdin must load in the order given"
    );
    assert_eq!(client.get("k"), Some(b"v".to_vec()));
}

/// 50,001 commands with a WRONGTYPE every 10,000 lines and a 300 KB line
/// plus a blank line every 10,000 lines; returns the input, the expected
/// error lines (with `prefix` before each line number) and the long value.
fn long_input(prefix: &str) -> (Vec<u8>, Vec<String>, Vec<u8>) {
    let long_value: Vec<u8> = (0..300_000).map(|i| b'a' + (i % 26) as u8).collect();
    let mut input = b"SET str x\n".to_vec();
    let mut expected = Vec::new();
    let mut line_no = 1;
    for i in 0..50_000 {
        line_no += 1;
        match i % 10_000 {
            9_999 => {
                input.extend_from_slice(b"LPUSH str x\r\n");
                expected.push(format!("{prefix}{line_no}: {WRONGTYPE}"));
            }
            5_000 => {
                // A line far longer than any read buffer, then a blank one.
                input.extend_from_slice(b"SET long ");
                input.extend_from_slice(&long_value);
                input.extend_from_slice(b"\n\n");
                line_no += 1;
            }
            _ => input.extend_from_slice(format!("SET key:{i} {i}\n").as_bytes()),
        }
    }
    (input, expected, long_value)
}

fn assert_long_input_loaded(
    outcome: &Outcome,
    expected: &[String],
    long_value: &[u8],
    server: &RedisServer,
) {
    outcome.assert_summary(expected.len() as u64, 50_001);
    for line in expected {
        outcome.assert_stderr_line(line);
    }
    let mut client = server.client();
    assert_eq!(client.get("long").as_deref(), Some(long_value));
    assert_eq!(client.get("key:49998"), Some(b"49998".to_vec()));
}

#[test]
fn line_numbers_stay_right_across_long_stdin() {
    let server = RedisServer::start();
    let (input, expected, long_value) = long_input("line ");

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    assert_long_input_loaded(&outcome, &expected, &long_value, &server);
}

#[test]
fn line_numbers_stay_right_across_long_files() {
    let server = RedisServer::start();
    let dir = TempDir::new("long");
    let (input, expected, long_value) = long_input("long.txt:");
    dir.write("long.txt", input);

    let outcome = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .arg("long.txt")
        .run();

    assert_long_input_loaded(&outcome, &expected, &long_value, &server);
}

#[test]
fn error_lines_stop_at_the_limit_and_the_rest_are_counted() {
    let server = RedisServer::start();
    let mut input = String::from("SET str x\n");
    input.push_str(&"INCR str\n".repeat(1000));

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    outcome
        .assert_summary(1000, 1001)
        .assert_stderr_line(&format!("line 101: {NOT_AN_INTEGER}"))
        .assert_stderr_line("pipeload: 900 more errors not shown (--error-lines 0 shows them all)");
    let reported = outcome
        .stderr_lines()
        .iter()
        .filter(|line| line.ends_with(NOT_AN_INTEGER))
        .count();
    outcome.check(
        reported == 100,
        format!("expected 100 error lines, found {reported}"),
    );
}

#[test]
fn every_one_of_many_errors_is_reported() {
    const ERRORS: usize = 100_000;
    let server = RedisServer::start();
    let mut input = String::from("SET str x\n");
    input.push_str(&"INCR str\n".repeat(ERRORS));
    input.push_str("SET last 1\n");

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--error-lines", "0"])
        .stdin(input)
        .run();

    outcome
        .assert_summary(ERRORS as u64, ERRORS as u64 + 2)
        .assert_stderr_line(&format!("line 2: {NOT_AN_INTEGER}"))
        .assert_stderr_line(&format!("line {}: {NOT_AN_INTEGER}", ERRORS + 1));
    let reported = outcome
        .stderr_lines()
        .iter()
        .filter(|line| line.ends_with(NOT_AN_INTEGER))
        .count();
    outcome.check(
        reported == ERRORS,
        format!("expected {ERRORS} error lines, found {reported}"),
    );
    assert_eq!(server.client().get("last"), Some(b"1".to_vec()));
}

#[test]
fn a_big_transaction_reports_the_failing_element() {
    const QUEUED: usize = 10_000;
    const FAILING: usize = 7_777;
    let server = RedisServer::start();
    let mut input = String::from("SET str x\nMULTI\n");
    for element in 1..=QUEUED {
        if element == FAILING {
            input.push_str("LPUSH str x\n");
        } else {
            input.push_str(&format!("RPUSH list {element}\n"));
        }
    }
    input.push_str("EXEC\nSET after 1\n");
    let exec_line = QUEUED + 3;

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    // SET, MULTI, QUEUED each, EXEC, SET.
    outcome
        .assert_summary(1, QUEUED as u64 + 4)
        .assert_stderr_line(&format!(
            "line {exec_line} (EXEC element {FAILING}): {WRONGTYPE}"
        ));
    let mut client = server.client();
    assert_eq!(client.lrange("list").len(), QUEUED - 1);
    assert_eq!(client.get("after"), Some(b"1".to_vec()));
}

#[test]
fn errors_inside_exec_are_reported_per_element() {
    let server = RedisServer::start();
    let mut client = server.client();
    let input = "SET a 1\n\
        MULTI\n\
        INCR a\n\
        LPUSH a x\n\
        RPUSH l p q\n\
        LRANGE l 0 -1\n\
        SET b 2\n\
        EXEC\n\
        MULTI\n\
        SET c x\n\
        INCR c\n\
        EXEC\n\
        MULTI\n\
        SET d 1\n\
        NOSUCHCMD\n\
        EXEC\n\
        WATCH w\n\
        SET w 1\n\
        MULTI\n\
        SET z 1\n\
        EXEC\n";

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    let unknown = error_text(&mut client, &["NOSUCHCMD"]);
    // Replies: 1 + (1 + 5 QUEUED + EXEC) + (1 + 2 + EXEC) + (1 + 1 + error +
    // EXECABORT) + (WATCH, SET, MULTI, QUEUED, nil EXEC).
    outcome
        .assert_summary(4, 21)
        .assert_stderr_line(&format!("line 8 (EXEC element 2): {WRONGTYPE}"))
        .assert_stderr_line(&format!("line 12 (EXEC element 2): {NOT_AN_INTEGER}"))
        .assert_stderr_line(&format!("line 15: {unknown}"))
        .assert_stderr_line_starts("line 16: EXECABORT");
    assert_eq!(client.get("a"), Some(b"2".to_vec()));
    assert_eq!(client.get("b"), Some(b"2".to_vec()));
    assert_eq!(client.get("c"), Some(b"x".to_vec()));
    assert!(!client.exists("d"), "an aborted transaction must not apply");
    assert!(
        !client.exists("z"),
        "a transaction on a touched WATCH key must not apply"
    );
}

#[test]
fn errors_inside_a_resp_exec_name_the_command_and_element() {
    let server = RedisServer::start();
    let dir = TempDir::new("exec");
    let mut data = resp_command(&["MULTI"]); // lines 1-3, command 1
    data.extend_from_slice(&resp_command(&["SET", "x", "v"])); // lines 4-10
    data.extend_from_slice(&resp_command(&["LPUSH", "x", "y"])); // lines 11-17
    data.extend_from_slice(&resp_command(&["EXEC"])); // lines 18-20, command 4
    dir.write("data.resp", &data);

    let outcome = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .arg("data.resp")
        .run();

    outcome.assert_summary(1, 4).assert_stderr_line(&format!(
        "data.resp:18 (command 4, EXEC element 2): {WRONGTYPE}"
    ));
    assert_eq!(server.client().get("x"), Some(b"v".to_vec()));
}

#[test]
fn subscribe_family_and_monitor_are_refused() {
    let server = RedisServer::start();
    let input = "SET a 1\nSUBSCRIBE ch\npsubscribe p*\nSSUBSCRIBE s\nmonitor\nSET b 2\n";

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    outcome
        .assert_summary(4, 2)
        .assert_stderr_line_starts("line 2: not sent: ")
        .assert_stderr_line_starts("line 3: not sent: ")
        .assert_stderr_line_starts("line 4: not sent: ")
        .assert_stderr_line_starts("line 5: not sent: ");
    let mut client = server.client();
    assert_eq!(client.get("a"), Some(b"1".to_vec()));
    assert_eq!(client.get("b"), Some(b"2".to_vec()));
}

#[test]
fn subscribe_as_resp_is_refused_too() {
    let server = RedisServer::start();
    let mut input = resp_command(&["SUBSCRIBE", "ch"]);
    input.extend_from_slice(b"SET c 3\n");

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    outcome.assert_summary(1, 1).check(
        outcome
            .stderr_lines()
            .iter()
            .any(|line| line.starts_with("line 1") && line.contains("not sent")),
        "expected a `line 1 … not sent` report",
    );
    assert_eq!(server.client().get("c"), Some(b"3".to_vec()));
}

#[test]
fn an_errors_file_that_is_the_input_is_refused_and_the_input_kept() {
    let server = RedisServer::start();
    let dir = TempDir::new("errors-onto-input");
    let input = dir.write("input.txt", "SET never sent\n");
    let outcome = Pipeload::new()
        .port(server.port())
        .arg("--errors-file")
        .arg(dir.path().join(".").join("input.txt"))
        .arg(&input)
        .run();
    outcome
        .assert_code(1)
        .assert_stderr_contains("--errors-file")
        .assert_stderr_contains("is the input file");
    assert_eq!(server.client().get("never"), None, "{outcome}");
    assert_eq!(
        std::fs::read_to_string(&input).expect("the input"),
        "SET never sent\n",
        "the input is left as it was\n{outcome}"
    );
}
