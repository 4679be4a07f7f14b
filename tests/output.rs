//! What pipeload prints besides the data it loads: the `--json` summary
//! (every documented field, after a clean load, an early stop and a cluster
//! load), `--error-lines`, the progress display (on a terminal, into a log,
//! and off), `--completions`, `--man` and `--help`; and a cluster load over
//! TLS. Each test starts its own server or cluster.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::cluster::tag_on_node;
use crate::common::{
    FakeServer, Outcome, Pipeload, RedisServer, TempDir, TestCluster, resp_command, sets,
};

/// Debug builds, big inputs and clusters on two cores: a wide hang guard.
const GUARD: Duration = Duration::from_secs(120);

const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";

/// The fields of the `--json` summary, as the README documents them.
const JSON_FIELDS: [&str; 21] = [
    "completed",
    "commands",
    "replies",
    "errors",
    "error_replies",
    "rejected_lines",
    "acknowledged",
    "resume_skip",
    "in_flight",
    "answered_after_resume",
    "reconnects",
    "server_restarted",
    "bytes_sent",
    "elapsed_seconds",
    "commands_per_second",
    "paced_rate",
    "first_errors",
    "failures",
    "cluster",
    "nodes",
    "connections",
];

// --- --json -----------------------------------------------------------------

#[test]
fn json_summary_has_every_documented_field_and_nothing_else_on_stdout() {
    let server = RedisServer::start();
    // Successes, an error reply (line 4), a refused line (line 5), and an
    // EXEC whose second element fails (line 9).
    let lines = [
        "SET a 1",
        "INCR a",
        "SET s x",
        "INCR s",
        "SET \"x",
        "MULTI",
        "INCR a",
        "LPUSH s v",
        "EXEC",
        "GET a",
    ];
    let sent: Vec<&[&str]> = vec![
        &["SET", "a", "1"],
        &["INCR", "a"],
        &["SET", "s", "x"],
        &["INCR", "s"],
        &["MULTI"],
        &["INCR", "a"],
        &["LPUSH", "s", "v"],
        &["EXEC"],
        &["GET", "a"],
    ];
    let resp_bytes: usize = sent.iter().map(|args| resp_command(args).len()).sum();

    let outcome = Pipeload::new()
        .port(server.port())
        .arg("--json")
        .stdin(lines.join("\n") + "\n")
        .run();

    outcome.assert_code(1);
    let summary = json_summary(&outcome);
    let field = |name: &str| summary.field(name, &outcome);
    outcome
        .check(field("completed") == &Json::Bool(true), "completed: true")
        .check(field("commands").as_u64() == Some(10), "commands: 10")
        .check(field("replies").as_u64() == Some(9), "replies: 9")
        .check(field("errors").as_u64() == Some(3), "errors: 3")
        .check(
            field("error_replies").as_u64() == Some(2),
            "error_replies: 2",
        )
        .check(
            field("rejected_lines").as_u64() == Some(1),
            "rejected_lines: 1",
        )
        .check(
            field("acknowledged").as_u64() == Some(10),
            "acknowledged: 10",
        )
        .check(field("resume_skip") == &Json::Null, "resume_skip: null")
        .check(field("reconnects").as_u64() == Some(0), "reconnects: 0")
        .check(
            field("server_restarted") == &Json::Bool(false),
            "server_restarted: false",
        )
        // No AUTH, SELECT or HELLO is needed: what was written is the
        // commands sent, as RESP.
        .check(
            field("bytes_sent").as_u64() == Some(resp_bytes as u64),
            format!("bytes_sent: {resp_bytes}, the RESP of the 9 commands sent"),
        )
        .check(field("nodes") == &Json::Array(Vec::new()), "nodes: []")
        .check(
            field("connections") == &Json::Array(Vec::new()),
            "connections: [] with one connection",
        );
    assert_rate_matches(&outcome, &summary);
    let first_errors = field("first_errors")
        .as_array()
        .unwrap_or_else(|| outcome.fail("first_errors must be an array"))
        .iter()
        .map(|error| {
            (
                error.field("position", &outcome).as_str().unwrap_or("?"),
                error.field("message", &outcome).as_str().unwrap_or("?"),
            )
        })
        .collect::<Vec<_>>();
    let expected = [
        ("line 4", NOT_AN_INTEGER),
        ("line 5", "not sent: unbalanced quotes"),
        (
            "line 9 (EXEC element 2)",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ),
    ];
    outcome.check(
        first_errors == expected,
        format!("first_errors: expected {expected:?}, got {first_errors:?}"),
    );
    // The error lines still go to stderr.
    outcome
        .assert_stderr_line(&format!("line 4: {NOT_AN_INTEGER}"))
        .assert_stderr_line("line 5: not sent: unbalanced quotes");
    let mut client = server.client();
    assert_eq!(client.get("a"), Some(b"3".to_vec()), "{outcome}");
    assert_eq!(client.get("s"), Some(b"x".to_vec()), "{outcome}");
}

#[test]
fn json_summary_after_an_early_stop_gives_the_resume_skip() {
    // Three replies, then the server hangs up.
    let fake = FakeServer::start(|mut conn| {
        for _ in 0..3 {
            conn.next_load_command();
        }
        conn.send(b"+OK\r\n+OK\r\n+OK\r\n");
        conn.hang_up();
    });
    let input = sets(100_000);

    let outcome = Pipeload::new()
        .port(fake.port())
        .arg("--json")
        .stdin(input)
        .run();

    outcome
        .assert_code(1)
        .assert_stderr_contains("connection lost");
    let summary = json_summary(&outcome);
    let field = |name: &str| summary.field(name, &outcome);
    let acknowledged = field("acknowledged")
        .as_u64()
        .unwrap_or_else(|| outcome.fail("acknowledged must be a count"));
    outcome
        .check(field("completed") == &Json::Bool(false), "completed: false")
        .check(field("replies").as_u64() == Some(3), "replies: 3")
        .check(
            field("errors").as_u64() == Some(1),
            "errors: 1, the lost connection",
        )
        .check(
            field("error_replies").as_u64() == Some(0),
            "error_replies: 0",
        )
        .check(acknowledged == 3, "acknowledged: 3, the replies received")
        .check(
            field("resume_skip").as_u64() == Some(acknowledged),
            "resume_skip must equal acknowledged",
        )
        .check(
            field("commands")
                .as_u64()
                .is_some_and(|n| n >= acknowledged),
            "commands: at least the acknowledged ones",
        )
        .check(
            field("bytes_sent").as_u64().is_some_and(|n| n > 0),
            "bytes_sent > 0",
        )
        .check(
            field("failures").as_array().is_some_and(|failures| {
                failures.len() == 1
                    && failures[0]
                        .as_str()
                        .is_some_and(|failure| failure.starts_with("connection lost"))
            }),
            "failures: the one `connection lost`",
        )
        .check(field("nodes") == &Json::Array(Vec::new()), "nodes: []");
    fake.finish();
}

/// `acknowledged` counts from the very start of the input, `--skip`
/// included, in a complete load as in a stopped one.
#[test]
fn json_acknowledged_counts_the_skipped_commands_too() {
    let server = RedisServer::start();

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--json", "--skip", "1"])
        .stdin("SET a 1\nSET b 2\nSET c 3\n")
        .run();

    outcome.assert_code(0);
    let summary = json_summary(&outcome);
    let field = |name: &str| summary.field(name, &outcome);
    outcome
        .check(field("completed") == &Json::Bool(true), "completed: true")
        .check(field("replies").as_u64() == Some(2), "replies: 2")
        .check(
            field("acknowledged").as_u64() == Some(3),
            "acknowledged: 3, the skipped command included",
        );
    assert!(!server.client().exists("a"), "{outcome}");
}

/// A run that fails before it loads anything still prints its JSON
/// object, with the failure, the resume point (the `--skip` given: nothing
/// was sent), and `completed: false`.
#[test]
fn json_summary_of_a_load_that_fails_before_it_starts() {
    let refusing_port = RedisServer::start().stop();
    let dir = TempDir::new("json-early");
    let missing = dir.path().join("missing.txt");
    let cases: [(Vec<String>, &str); 2] = [
        (
            vec!["-p".into(), refusing_port.to_string()],
            "Could not connect to Redis",
        ),
        (
            vec![
                "-p".into(),
                refusing_port.to_string(),
                missing.display().to_string(),
            ],
            "missing.txt",
        ),
    ];
    for (args, failure) in cases {
        let outcome = Pipeload::new()
            .args(&args)
            .args(["--json", "--skip", "5"])
            .stdin("SET a 1\n")
            .run();

        outcome.assert_code(1);
        let summary = json_summary(&outcome);
        let field = |name: &str| summary.field(name, &outcome);
        outcome
            .check(field("completed") == &Json::Bool(false), "completed: false")
            .check(
                field("resume_skip").as_u64() == Some(5),
                "resume_skip: 5, the --skip given",
            )
            .check(
                field("errors").as_u64() == Some(1),
                "errors: 1, the failure",
            )
            .check(
                field("failures").as_array().is_some_and(|failures| {
                    failures.len() == 1
                        && failures[0]
                            .as_str()
                            .is_some_and(|text| text.contains(failure))
                }),
                format!("failures: one, naming {failure:?}"),
            );
    }
}

#[test]
fn json_summary_of_a_usage_error() {
    let outcome = Pipeload::new().args(["--json", "--no-such-flag"]).run();

    outcome.assert_code(2);
    let summary = json_summary(&outcome);
    let field = |name: &str| summary.field(name, &outcome);
    outcome
        .check(field("completed") == &Json::Bool(false), "completed: false")
        .check(field("resume_skip") == &Json::Null, "resume_skip: null")
        .assert_stderr_contains("--no-such-flag");
}

#[test]
fn json_summary_of_a_cluster_load_counts_per_primary() {
    const KEYS: usize = 3_000;
    let cluster = TestCluster::start();
    let mut input: String = (0..KEYS).map(|i| format!("SET key:{i} {i}\n")).collect();
    // One error reply, on node 1.
    let tag = tag_on_node("json", 1);
    input.push_str(&format!("SET {{{tag}}}str x\nINCR {{{tag}}}str\n"));
    let mut expected_replies = [0u64; 3];
    for i in 0..KEYS {
        expected_replies[cluster.owner_of_key(format!("key:{i}"))] += 1;
    }
    expected_replies[1] += 2;

    let outcome = Pipeload::new()
        .arg("-c")
        .port(cluster.port(0))
        .arg("--json")
        .guard(GUARD)
        .stdin(input)
        .run();

    outcome.assert_code(1);
    let summary = json_summary(&outcome);
    let field = |name: &str| summary.field(name, &outcome);
    let replies = field("replies").as_u64();
    outcome
        .check(field("completed") == &Json::Bool(true), "completed: true")
        .check(replies == Some(KEYS as u64 + 2), "replies: every command")
        .check(field("errors").as_u64() == Some(1), "errors: 1")
        .check(field("resume_skip") == &Json::Null, "resume_skip: null");
    let nodes = field("nodes")
        .as_array()
        .unwrap_or_else(|| outcome.fail("nodes must be an array"));
    outcome.check(nodes.len() == 3, "nodes: one entry per primary");
    let mut addresses = BTreeSet::new();
    let mut replies_sum = 0;
    for node in nodes {
        let address = node
            .field("address", &outcome)
            .as_str()
            .unwrap_or_else(|| outcome.fail("a node's address must be a string"));
        let index = (0..3)
            .find(|&index| cluster.address(index) == address)
            .unwrap_or_else(|| outcome.fail(format!("{address} is not a primary's address")));
        let node_replies = node.field("replies", &outcome).as_u64().unwrap_or(0);
        let node_errors = node.field("errors", &outcome).as_u64();
        outcome
            .check(
                node_replies == expected_replies[index],
                format!(
                    "node {address}: expected {} replies (the commands on its slots)",
                    expected_replies[index]
                ),
            )
            .check(
                node_errors == Some(u64::from(index == 1)),
                format!("node {address}: expected {} errors", u64::from(index == 1)),
            );
        addresses.insert(address.to_string());
        replies_sum += node_replies;
    }
    outcome
        .check(addresses.len() == 3, "three different addresses")
        .check(
            Some(replies_sum) == replies,
            "the nodes' replies must sum to replies",
        );
    assert_eq!(cluster.total_keys(), KEYS as i64 + 1, "{outcome}");
}

/// `commands_per_second` is `replies` over `elapsed_seconds`, within the
/// rounding of the printed figures (3 decimals, and whole commands).
fn assert_rate_matches(outcome: &Outcome, summary: &Json) {
    let elapsed = summary
        .field("elapsed_seconds", outcome)
        .as_f64()
        .unwrap_or_else(|| outcome.fail("elapsed_seconds must be a number"));
    let rate = summary
        .field("commands_per_second", outcome)
        .as_f64()
        .unwrap_or_else(|| outcome.fail("commands_per_second must be a number"));
    let replies = summary.field("replies", outcome).as_f64().unwrap_or(0.0);
    outcome.check(
        (0.0..60.0).contains(&elapsed),
        "elapsed_seconds: the wall time of a short load",
    );
    outcome.check(rate >= 0.0, "commands_per_second must not be negative");
    if elapsed >= 0.001 {
        let (fastest, slowest) = (replies / (elapsed - 0.0005), replies / (elapsed + 0.0005));
        outcome.check(
            rate <= fastest + 1.0 && rate >= slowest - 1.0,
            format!("commands_per_second must be replies / elapsed_seconds: {slowest}..{fastest}"),
        );
    }
}

/// stdout is one JSON object on one line, with exactly the documented
/// fields, and nothing else (no redis-cli lines, no resume hint).
fn json_summary(outcome: &Outcome) -> Json {
    let stdout = outcome.stdout_text();
    let Some(line) = stdout
        .strip_suffix('\n')
        .filter(|line| !line.contains('\n'))
    else {
        outcome.fail("stdout must be exactly one line, the JSON summary");
    };
    let summary = Json::parse(line)
        .unwrap_or_else(|err| outcome.fail(format!("stdout is not one JSON value: {err}")));
    let Json::Object(fields) = &summary else {
        outcome.fail("the JSON summary must be an object");
    };
    let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    let documented: BTreeSet<&str> = JSON_FIELDS.into_iter().collect();
    outcome.check(
        unique.len() == names.len() && unique == documented,
        format!("the JSON summary must have exactly the fields {JSON_FIELDS:?}, got {names:?}"),
    );
    summary
}

// --- --error-lines ------------------------------------------------------------

#[test]
fn error_lines_cap_the_lines_and_the_errors_file_still_gets_every_one() {
    let server = RedisServer::start();
    let dir = TempDir::new("error-lines");
    let mut input = String::from("SET str x\n");
    input.push_str(&"INCR str\n".repeat(50));

    let outcome = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args(["--error-lines", "5", "--errors-file", "failed.txt"])
        .stdin(input)
        .run();

    outcome.assert_summary(50, 51);
    let mut expected: Vec<String> = (2..=6)
        .map(|line| format!("line {line}: {NOT_AN_INTEGER}"))
        .collect();
    expected.push("pipeload: 45 more errors not shown (--error-lines 0 shows them all)".into());
    let mut stderr = outcome.stderr_lines();
    if stderr.last().is_some_and(String::is_empty) {
        stderr.pop();
    }
    outcome.check(
        stderr == expected,
        format!("expected stderr to be exactly:\n{}", expected.join("\n")),
    );
    let written = std::fs::read(dir.path().join("failed.txt")).expect("read the errors file");
    outcome.check(
        written == "INCR str\n".repeat(50).into_bytes(),
        format!(
            "the errors file must hold all 50 failed commands, got:\n{}",
            String::from_utf8_lossy(&written)
        ),
    );
}

// --- progress -------------------------------------------------------------------

#[test]
fn progress_is_shown_on_a_terminal() {
    const LINES: usize = 2_000_000;
    let server = RedisServer::start();
    let dir = TempDir::new("progress-tty");
    let mut input = String::with_capacity(LINES * 24);
    for i in 0..LINES {
        input.push_str(&format!("SET key:{i} {i}\n"));
    }
    let file = dir.write("big.txt", input);

    // `script` runs the command with a pseudo-terminal as its stdin, stdout
    // and stderr, and copies what it writes to our stdout.
    let command = format!(
        "'{}' -p {} '{}'",
        env!("CARGO_BIN_EXE_pipeload"),
        server.port(),
        file.display()
    );
    let (status, output) = run_guarded(
        Command::new("script")
            .args(["-q", "-e", "-f", "-c", &command, "/dev/null"])
            .stdin(Stdio::null()),
        GUARD,
    );
    let text = String::from_utf8_lossy(&output);
    let report = || {
        format!(
            "--- script -qefc {command:?} /dev/null\n--- exit: {status}\n--- output ({} bytes, \
             the first 4000):\n{}",
            output.len(),
            text.chars().take(4000).collect::<String>()
        )
    };
    assert!(status.success(), "pipeload failed\n{}", report());
    assert!(
        text.contains("sent ") && text.contains("acked "),
        "no `sent N` and `acked N` on the terminal\n{}",
        report()
    );
    assert!(
        has_percentage(&text),
        "no percentage on the terminal (the input is a regular file)\n{}",
        report()
    );
    assert!(
        text.contains(&format!("errors: 0, replies: {LINES}")),
        "no summary on the terminal\n{}",
        report()
    );
    assert_eq!(
        server.client().dbsize(),
        LINES as i64,
        "the database must be fully loaded\n{}",
        report()
    );
}

#[test]
fn forced_progress_into_a_log_prints_plain_lines() {
    let server = RedisServer::start();

    let outcome = slow_fed_load(&server, &["--progress"]);

    outcome.assert_summary(0, SLOW_FEED_COMMANDS as u64);
    let stderr = outcome.stderr_lines();
    let progress: Vec<&String> = stderr
        .iter()
        .filter(|line| line.starts_with("pipeload: progress: "))
        .collect();
    outcome
        .check(
            !progress.is_empty(),
            "a load of over 2 s must print `pipeload: progress: ` lines",
        )
        .check(
            progress
                .iter()
                .all(|line| line.contains("sent ") && line.contains("acked ")),
            "every progress line says what was sent and acknowledged",
        )
        .check(
            stderr
                .iter()
                .all(|line| line.is_empty() || line.starts_with("pipeload: progress: ")),
            "stderr must hold nothing but progress lines",
        )
        .check(
            !outcome.stderr.contains(&b'\r') && !outcome.stderr.contains(&0x1b),
            "a log gets plain lines: no carriage return, no escape sequence",
        );
}

#[test]
fn no_progress_prints_nothing_on_stderr() {
    let server = RedisServer::start();

    let outcome = slow_fed_load(&server, &["--no-progress"]);

    outcome
        .assert_summary(0, SLOW_FEED_COMMANDS as u64)
        .check(outcome.stderr.is_empty(), "stderr must stay empty");
}

#[test]
fn progress_is_off_by_default_when_stderr_is_not_a_terminal() {
    let server = RedisServer::start();

    let outcome = slow_fed_load(&server, &[]);

    outcome
        .assert_summary(0, SLOW_FEED_COMMANDS as u64)
        .check(outcome.stderr.is_empty(), "stderr must stay empty");
}

/// Batches of the slow feed, one every `SLOW_FEED_PAUSE`: 2.5 s in all,
/// long enough for two log lines, at no cost to the machine.
const SLOW_FEED_BATCHES: usize = 25;
const SLOW_FEED_PAUSE: Duration = Duration::from_millis(100);
const SLOW_FEED_COMMANDS: usize = SLOW_FEED_BATCHES * 4;

/// A load whose stdin comes a few commands at a time over 2.5 s, with
/// stderr a pipe.
fn slow_fed_load(server: &RedisServer, flags: &[&str]) -> Outcome {
    let mut running = Pipeload::new()
        .port(server.port())
        .args(flags)
        .guard(GUARD)
        .spawn();
    for batch in 0..SLOW_FEED_BATCHES {
        let commands: String = (0..4)
            .map(|n| format!("SET key:{batch}:{n} {n}\n"))
            .collect();
        running
            .write_stdin(commands.as_bytes())
            .expect("feed pipeload's stdin");
        thread::sleep(SLOW_FEED_PAUSE);
    }
    running.close_stdin();
    running.finish()
}

/// Whether `text` has a percentage: one to three digits, then `%`.
fn has_percentage(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(at, &byte)| {
        let digits = bytes[..at]
            .iter()
            .rev()
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        byte == b'%' && (1..=3).contains(&digits)
    })
}

/// Runs `command` to the end with its stdout collected, killing it at
/// `limit`; returns its status and stdout.
fn run_guarded(command: &mut Command, limit: Duration) -> (std::process::ExitStatus, Vec<u8>) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("run {command:?} (is util-linux `script` installed?): {err}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {limit:?} and was killed");
        }
        thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().expect("stdout reader"))
}

// --- completions, manual page, help ---------------------------------------------

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    // fish names a long flag without its dashes: `-l pipe-timeout`.
    for (shell, flag) in [
        ("bash", "--pipe-timeout"),
        ("zsh", "--pipe-timeout"),
        ("fish", "-l pipe-timeout"),
    ] {
        let outcome = Pipeload::new().args(["--completions", shell]).run();
        outcome
            .assert_code(0)
            .check(
                !outcome.stdout_text().trim().is_empty(),
                format!("the {shell} completion script must not be empty"),
            )
            .check(
                outcome.stdout_text().contains(flag),
                format!("the {shell} completion script must complete {flag}"),
            );
    }
}

#[test]
fn man_prints_a_roff_manual_page() {
    let outcome = Pipeload::new().arg("--man").run();
    let page = outcome.stdout_text();
    outcome
        .assert_code(0)
        .check(
            page.starts_with(".ie") || page.starts_with(".TH"),
            "a roff page starts with `.ie` or `.TH`",
        )
        .check(page.contains(".TH pipeload 1"), "a `.TH pipeload 1` title")
        .check(
            page.contains("pipe\\-timeout"),
            "the page documents --pipe-timeout (roff escapes the dash)",
        );
}

#[test]
fn help_has_an_examples_section() {
    let outcome = Pipeload::new().arg("--help").run();
    let help = outcome.stdout_text();
    let examples = help.find("\nExamples:\n");
    outcome.assert_code(0).check(
        examples.is_some_and(|at| help[at..].contains("\n  pipeload ")),
        "help must end with an `Examples:` section of pipeload command lines",
    );
}

// --- cluster over TLS -------------------------------------------------------------

#[test]
fn cluster_load_over_tls_puts_every_key_on_its_owner() {
    const KEYS: usize = 10_000;
    let cluster = TestCluster::start_tls();
    let files = cluster.tls_files().expect("a TLS cluster");
    let input = sets(KEYS);

    let outcome = Pipeload::new()
        .arg("-c")
        .arg("--tls")
        .arg("--cacert")
        .arg(&files.ca)
        .port(cluster.port(0))
        .guard(GUARD)
        .stdin(input)
        .run();

    outcome.assert_summary(0, KEYS as u64);
    let dbsizes = cluster.dbsizes();
    outcome.check(
        dbsizes.iter().sum::<i64>() == KEYS as i64 && dbsizes.iter().all(|&keys| keys > 0),
        format!("every primary holds its share of the {KEYS} keys: {dbsizes:?}"),
    );
    let mut clients: Vec<_> = (0..cluster.len())
        .map(|index| cluster.node_client(index))
        .collect();
    for i in 0..KEYS {
        let key = format!("key:{i}");
        let owner = cluster.owner_of_key(&key);
        outcome.check(
            clients[owner].get(&key) == Some(format!("value:{i}").into_bytes()),
            format!("{key} must be on node {owner}, its owner"),
        );
    }
}

// --- a JSON reader, just enough for the summary ----------------------------------

/// A JSON value. Numbers keep their text, so a count can be told from a
/// fraction.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Fields in their order, duplicates kept (the caller checks).
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses one JSON value filling the whole of `text` (RFC 8259).
    fn parse(text: &str) -> Result<Json, String> {
        let mut parser = JsonParser {
            bytes: text.as_bytes(),
            at: 0,
        };
        let value = parser.value()?;
        parser.skip_space();
        match parser.at == parser.bytes.len() {
            true => Ok(value),
            false => Err(format!("trailing text at byte {}", parser.at)),
        }
    }

    /// The field `name` of an object; fails the test when there is none.
    fn field(&self, name: &str, outcome: &Outcome) -> &Json {
        let found = match self {
            Json::Object(fields) => fields.iter().find(|(key, _)| key == name),
            _ => None,
        };
        found
            .map(|(_, value)| value)
            .unwrap_or_else(|| outcome.fail(format!("no field {name:?} in {self:?}")))
    }

    /// A whole non-negative number.
    fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(text) => text.parse().ok(),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(text) => text.parse().ok(),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(text) => Some(text),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }
}

struct JsonParser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl JsonParser<'_> {
    fn skip_space(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|byte| b" \t\r\n".contains(byte))
        {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        match self.peek() {
            Some(found) if found == byte => {
                self.at += 1;
                Ok(())
            }
            found => Err(format!(
                "expected {:?} at byte {}, found {:?}",
                byte as char,
                self.at,
                found.map(char::from)
            )),
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, String> {
        match self.bytes[self.at..].starts_with(word.as_bytes()) {
            true => {
                self.at += word.len();
                Ok(value)
            }
            false => Err(format!("bad literal at byte {}", self.at)),
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.skip_space();
        match self.peek() {
            Some(b'n') => self.literal("null", Json::Null),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::String),
            Some(b'[') => self.array(),
            Some(b'{') => self.object(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            found => Err(format!(
                "unexpected {:?} at byte {}",
                found.map(char::from),
                self.at
            )),
        }
    }

    fn array(&mut self) -> Result<Json, String> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.skip_space();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                _ => {
                    self.expect(b']')?;
                    return Ok(Json::Array(items));
                }
            }
        }
    }

    fn object(&mut self) -> Result<Json, String> {
        self.expect(b'{')?;
        let mut fields = Vec::new();
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Json::Object(fields));
        }
        loop {
            self.skip_space();
            let name = self.string()?;
            self.skip_space();
            self.expect(b':')?;
            fields.push((name, self.value()?));
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                _ => {
                    self.expect(b'}')?;
                    return Ok(Json::Object(fields));
                }
            }
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<Json, String> {
        let start = self.at;
        let digits = |parser: &mut Self| {
            let from = parser.at;
            while parser.peek().is_some_and(|byte| byte.is_ascii_digit()) {
                parser.at += 1;
            }
            parser.at - from
        };
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let integer_start = self.at;
        let integer = digits(self);
        if integer == 0 || (integer > 1 && self.bytes[integer_start] == b'0') {
            return Err(format!("bad number at byte {start}"));
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return Err(format!("bad fraction at byte {start}"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if digits(self) == 0 {
                return Err(format!("bad exponent at byte {start}"));
            }
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).expect("ASCII");
        Ok(Json::Number(text.to_string()))
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut text = String::new();
        loop {
            let rest = std::str::from_utf8(&self.bytes[self.at..])
                .map_err(|err| format!("invalid UTF-8: {err}"))?;
            let mut chars = rest.chars();
            let Some(character) = chars.next() else {
                return Err("unterminated string".into());
            };
            self.at += character.len_utf8();
            match character {
                '"' => return Ok(text),
                '\\' => text.push(self.escape()?),
                control if u32::from(control) < 0x20 => {
                    return Err(format!("raw control character at byte {}", self.at - 1));
                }
                other => text.push(other),
            }
        }
    }

    fn escape(&mut self) -> Result<char, String> {
        let byte = self.peek().ok_or("unterminated escape")?;
        self.at += 1;
        Ok(match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = self.hex4()?;
                let code = match high {
                    0xd800..=0xdbff => {
                        self.expect(b'\\')?;
                        self.expect(b'u')?;
                        let low = self.hex4()?;
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return Err("unpaired surrogate".into());
                        }
                        0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00)
                    }
                    _ => high,
                };
                char::from_u32(code).ok_or("bad \\u escape")?
            }
            other => return Err(format!("bad escape \\{}", other as char)),
        })
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u32::from_str_radix(digits, 16).ok())
            .ok_or("bad \\u escape")?;
        self.at += 4;
        Ok(digits)
    }
}

#[test]
fn the_json_reader_reads_what_the_summary_can_hold() {
    let value = Json::parse(
        r#" {"a":[1,-2.5e3,0.125],"b":"q\"\\\/\n\u00e9\ud83d\ude00","c":null,"d":true,"e":{}} "#,
    )
    .expect("valid JSON");
    assert_eq!(
        value,
        Json::Object(vec![
            (
                "a".into(),
                Json::Array(vec![
                    Json::Number("1".into()),
                    Json::Number("-2.5e3".into()),
                    Json::Number("0.125".into()),
                ])
            ),
            ("b".into(), Json::String("q\"\\/\n\u{e9}\u{1f600}".into())),
            ("c".into(), Json::Null),
            ("d".into(), Json::Bool(true)),
            ("e".into(), Json::Object(Vec::new())),
        ])
    );
    for bad in [
        "{\"a\":1,}",
        "[1 2]",
        "01",
        "\"tab\there\"",
        "{} {}",
        "\"x",
        "-",
    ] {
        assert!(Json::parse(bad).is_err(), "{bad:?} must be refused");
    }
}
