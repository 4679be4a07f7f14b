//! Faults on cue: scripted fake servers that hang up, answer garbage,
//! answer slowly or never, push RESP3 frames, or answer `-LOADING`; real
//! servers for `--max-errors` and `--errors-file`; SIGINT/SIGTERM sent to a
//! running load; stdout and stderr closed under pipeload's feet. Whenever a
//! load stops early its summary ends with `acknowledged: K` and `resume
//! with: --skip K`, and K is exactly the prefix of the input that was
//! answered.

use std::collections::HashMap;
use std::io::{BufReader, Cursor};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::client::read_value;
use crate::common::run::{Running, Sink};
use crate::common::{
    FakeServer, Outcome, Pipeload, RedisServer, Summary, TempDir, Value, resp_command, sets,
    wait_until,
};

/// One command as the fake received it: its arguments.
type Command = Vec<Vec<u8>>;

/// Complete RESP commands at the start of `bytes`.
fn complete_commands(bytes: &[u8]) -> usize {
    let mut reader = BufReader::new(Cursor::new(bytes));
    let mut count = 0;
    while let Ok(Value::Array(Some(_))) = read_value(&mut reader) {
        count += 1;
    }
    count
}

fn arg_text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

// --- Servers that misbehave -------------------------------------------

#[test]
fn a_server_that_hangs_up_after_some_bytes_gives_the_exact_resume_point() {
    const COMMANDS: usize = 20_000;
    const CUT_AT: usize = 50_000;
    let answered = Arc::new(AtomicUsize::new(0));
    let fake = FakeServer::start({
        let answered = Arc::clone(&answered);
        move |mut conn| {
            let received = conn.read_raw(CUT_AT);
            let complete = complete_commands(&received);
            conn.send(&b"+OK\r\n".repeat(complete));
            answered.store(complete, Ordering::SeqCst);
            conn.hang_up();
        }
    });

    let outcome = Pipeload::new()
        .port(fake.port())
        .stdin(sets(COMMANDS))
        .run();
    fake.finish();

    let complete = answered.load(Ordering::SeqCst) as u64;
    let acknowledged = outcome.assert_stopped(1);
    let summary = outcome.summary();
    outcome
        .check(
            acknowledged == complete,
            format!("the fake answered the first {complete} commands: expected `acknowledged: {complete}`"),
        )
        .check(
            summary.errors == 1 && summary.replies == complete,
            format!("expected `errors: 1, replies: {complete}` (one for the lost connection)"),
        );

    // Resuming on a real server loads exactly the rest.
    let server = RedisServer::start();
    let resumed = Pipeload::new()
        .port(server.port())
        .args(["--skip", &acknowledged.to_string()])
        .stdin(sets(COMMANDS))
        .run();
    resumed.assert_summary(0, COMMANDS as u64 - acknowledged);
    let mut client = server.client();
    assert!(client.exists(format!("key:{acknowledged}")), "{resumed}");
    assert!(
        !client.exists(format!("key:{}", acknowledged - 1)),
        "{resumed}"
    );
    assert_eq!(
        client.dbsize(),
        (COMMANDS as u64 - acknowledged) as i64,
        "{resumed}"
    );
}

#[test]
fn a_garbage_reply_stops_the_load_with_the_resume_point() {
    let fake = FakeServer::start(|mut conn| {
        for _ in 0..2 {
            conn.next_command();
            conn.send(b"+OK\r\n");
        }
        conn.next_command();
        conn.send(b"@this is not RESP\r\n");
        conn.drain();
    });

    let outcome = Pipeload::new().port(fake.port()).stdin(sets(10)).run();
    fake.finish();

    let acknowledged = outcome.assert_stopped(1);
    let summary = outcome.summary();
    outcome
        .check(
            acknowledged == 2,
            "two commands were answered before the garbage",
        )
        .check(
            summary.replies == 2 && summary.errors >= 1,
            "expected `replies: 2` and the bad reply counted as an error",
        )
        .check(
            !outcome.stderr_text().trim().is_empty(),
            "the bad reply must be reported",
        );
}

#[test]
fn a_server_slower_than_the_input_still_gets_every_command_answered() {
    const COMMANDS: usize = 3_000;
    let fake = FakeServer::start(|mut conn| {
        while conn.next_command().is_some() {
            if conn.commands % 100 == 0 {
                thread::sleep(Duration::from_millis(20));
            }
            conn.send(b"+OK\r\n");
        }
    });

    let outcome = Pipeload::new()
        .port(fake.port())
        .args(["--pipe-timeout", "5"])
        .stdin(sets(COMMANDS))
        .run();
    fake.finish();

    outcome.assert_summary(0, COMMANDS as u64);
}

#[test]
fn replies_arriving_one_byte_at_a_time_are_all_counted() {
    const COMMANDS: usize = 200;
    let fake = FakeServer::start(|mut conn| {
        let mut replies = Vec::new();
        while conn.next_command().is_some() {
            replies.extend_from_slice(match conn.commands % 4 {
                0 => &b"+OK\r\n"[..],
                1 => b":12345\r\n",
                2 => b"$5\r\nhello\r\n",
                _ => b"*2\r\n$1\r\na\r\n:1\r\n",
            });
            if conn.commands == COMMANDS {
                break;
            }
        }
        for (index, byte) in replies.iter().enumerate() {
            conn.send(&[*byte]);
            if index % 16 == 0 {
                thread::sleep(Duration::from_millis(1));
            }
        }
        conn.drain();
    });

    let outcome = Pipeload::new()
        .port(fake.port())
        .stdin(sets(COMMANDS))
        .run();
    fake.finish();

    outcome.assert_summary(0, COMMANDS as u64);
}

#[test]
fn a_server_that_stops_answering_times_out_with_the_resume_point() {
    let fake = FakeServer::start(|mut conn| {
        while conn.next_command().is_some() {
            if conn.commands <= 3 {
                conn.send(b"+OK\r\n");
            }
        }
    });

    let started = Instant::now();
    let outcome = Pipeload::new()
        .port(fake.port())
        .args(["--pipe-timeout", "1"])
        .stdin(sets(50))
        .run();
    let took = started.elapsed();
    fake.finish();

    let acknowledged = outcome.assert_stopped(1);
    outcome
        .assert_fatal_line("No replies for 1 seconds: line 4 (SET) is still waiting for its reply")
        .check(
            acknowledged == 3,
            "three commands were answered: `acknowledged: 3`",
        )
        .check(
            took < Duration::from_secs(20),
            format!("a 1 s pipe timeout took {took:?}"),
        );
}

#[test]
fn resp3_push_frames_between_replies_are_not_counted() {
    const COMMANDS: usize = 40;
    let fake = FakeServer::start(|mut conn| {
        let push = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$5\r\nkey:0\r\n";
        let push_with_error = b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n-ERR not a reply\r\n";
        conn.send(push); // before any reply
        while conn.next_load_command().is_some() {
            match conn.commands % 3 {
                0 => conn.send(push),
                1 => conn.send(push_with_error),
                _ => {}
            }
            conn.send(b"+OK\r\n");
        }
    });

    let outcome = Pipeload::new()
        .port(fake.port())
        .arg("-3")
        .stdin(sets(COMMANDS))
        .run();
    fake.finish();

    outcome.assert_summary(0, COMMANDS as u64);
}

/// The four replies a server gives while it cannot serve for a moment.
const TRANSIENT: [&str; 4] = [
    "LOADING Redis is loading the dataset in memory",
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
    "TRYAGAIN Multiple keys request during rehashing of slot",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
];

/// What a fake that applies SETs knows.
#[derive(Default)]
struct FakeStore {
    /// Transient errors still to send, to the next commands in order.
    transient_left: usize,
    values: HashMap<String, String>,
    /// SETs answered `+OK`, in order.
    applied: Vec<(String, String)>,
}

/// A fake that answers the first `transient` commands it receives (on any
/// connection) with `-{error}`, then applies SETs and answers `+OK`.
fn transient_fake(error: &'static str, transient: usize) -> (FakeServer, Arc<Mutex<FakeStore>>) {
    let store = Arc::new(Mutex::new(FakeStore {
        transient_left: transient,
        ..FakeStore::default()
    }));
    let shared = Arc::clone(&store);
    let fake = FakeServer::serve(move |mut conn, _| {
        while let Some(args) = conn.next_load_command() {
            let mut store = shared.lock().expect("fake store");
            if store.transient_left > 0 {
                store.transient_left -= 1;
                drop(store);
                conn.send(format!("-{error}\r\n").as_bytes());
                continue;
            }
            if let [name, key, value] = args.as_slice()
                && name.eq_ignore_ascii_case(b"SET")
            {
                store.values.insert(arg_text(key), arg_text(value));
                store.applied.push((arg_text(key), arg_text(value)));
            }
            drop(store);
            conn.send(b"+OK\r\n");
        }
    });
    (fake, store)
}

/// 30 SETs of one key (last value wins), each followed by a SET of its own
/// key: a resend that skipped what followed a refused command would leave
/// the wrong last value.
fn overwrites() -> (String, usize) {
    let input = (0..30)
        .map(|i| format!("SET same v{i}\nSET own:{i} {i}\n"))
        .collect();
    (input, 60)
}

#[test]
fn with_retry_transient_errors_are_resent_not_counted() {
    for error in TRANSIENT {
        let (fake, store) = transient_fake(error, 3);
        let (input, commands) = overwrites();

        let outcome = Pipeload::new()
            .port(fake.port())
            .args(["--retry", "3"])
            .stdin(input)
            .run();
        fake.finish();

        let (summary, _) = outcome.assert_retried_without_errors();
        outcome.check(
            summary.replies >= commands as u64,
            format!("every command must be answered (transient error {error:?})"),
        );
        let store = store.lock().expect("fake store");
        outcome.check(
            store.values.get("same").map(String::as_str) == Some("v29"),
            format!(
                "after {error:?} the key written 30 times must end with its last value, got {:?}",
                store.values.get("same")
            ),
        );
        for i in 0..30 {
            outcome.check(
                store.values.get(&format!("own:{i}")) == Some(&i.to_string()),
                format!("own:{i} was never applied (transient error {error:?})"),
            );
        }
    }
}

#[test]
fn without_retry_transient_errors_are_errors() {
    for error in TRANSIENT {
        let (fake, store) = transient_fake(error, 3);
        let (input, commands) = overwrites();

        let outcome = Pipeload::new().port(fake.port()).stdin(input).run();
        fake.finish();

        outcome
            .assert_summary(3, commands as u64)
            .assert_stderr_line(&format!("line 1: {error}"))
            .assert_stderr_line(&format!("line 2: {error}"))
            .assert_stderr_line(&format!("line 3: {error}"));
        let store = store.lock().expect("fake store");
        outcome.check(
            store.applied.len() == commands - 3,
            "without --retry nothing is resent",
        );
    }
}

#[test]
fn retry_resends_exactly_what_was_not_acknowledged_after_redoing_the_handshake() {
    const COMMANDS: usize = 5_000;
    const ANSWERED: usize = 1_000;
    // Every command each connection received, handshake included, by
    // connection index.
    let received: Arc<Mutex<HashMap<usize, Vec<Command>>>> = Arc::default();
    let fake = FakeServer::serve({
        let received = Arc::clone(&received);
        move |mut conn, index| {
            let mut seen: Vec<Command> = Vec::new();
            let mut sets = 0;
            while let Some(args) = conn.next_command() {
                let name = args[0].to_ascii_uppercase();
                seen.push(args);
                if name == b"SET" {
                    sets += 1;
                }
                if index == 0 && sets > ANSWERED {
                    // Stop answering with a backlog of unanswered commands.
                    break;
                }
                conn.send(match name.as_slice() {
                    b"HELLO" => b"%0\r\n",
                    _ => b"+OK\r\n",
                });
            }
            received.lock().expect("record").insert(index, seen);
            // The first connection is reset, as when a server dies, once
            // its replies have had time to arrive.
            thread::sleep(Duration::from_millis(200));
            conn.hang_up_abruptly();
        }
    });

    let outcome = Pipeload::new()
        .port(fake.port())
        .args([
            "--retry",
            "5",
            "-a",
            "secret",
            "--no-auth-warning",
            "-3",
            "-n",
            "4",
        ])
        .stdin(sets(COMMANDS))
        .run();
    fake.finish();

    let received = received.lock().expect("record");
    let second = received
        .get(&1)
        .unwrap_or_else(|| outcome.fail("pipeload never opened a second connection"));
    outcome.check(
        received.len() == 2,
        format!("expected two connections, got {}", received.len()),
    );
    let words = |args: &Command| {
        args.iter()
            .map(|arg| arg_text(arg))
            .collect::<Vec<_>>()
            .join(" ")
    };
    // Under --retry the set-up ends with `INFO server`, for the run_id.
    let handshake: Vec<String> = second.iter().take(4).map(words).collect();
    outcome.check(
        handshake == ["AUTH secret", "HELLO 3", "SELECT 4", "INFO server"],
        format!(
            "the new connection must redo AUTH, HELLO 3 and SELECT 4 (then INFO server) \
             first, got {handshake:?}"
        ),
    );
    let resent: Vec<String> = second.iter().skip(4).map(words).collect();
    let expected: Vec<String> = (ANSWERED..COMMANDS)
        .map(|i| format!("SET key:{i} value:{i}"))
        .collect();
    outcome.check(
        resent == expected,
        format!(
            "the new connection must get exactly the unacknowledged commands, \
             `SET key:{ANSWERED} …` to the end, in order; got {} commands: {:?} … {:?}",
            resent.len(),
            resent.iter().take(3).collect::<Vec<_>>(),
            resent
                .iter()
                .skip(resent.len().saturating_sub(2))
                .collect::<Vec<_>>()
        ),
    );
    let (summary, reconnects) = outcome.assert_retried_without_errors();
    outcome
        .check(reconnects == 1, "expected `reconnects: 1`")
        .check(
            summary.replies == COMMANDS as u64,
            format!("expected `replies: {COMMANDS}`"),
        )
        .assert_stderr_contains("reconnecting");
}

#[test]
fn retry_gives_up_on_a_server_that_keeps_hanging_up_without_getting_further() {
    const COMMANDS: usize = 10_000;
    const ANSWERED_PER_CONNECTION: usize = 2;
    // Every connection answers two commands, then hangs up: each new one
    // gets a little further than the last, never past where the first
    // drop cut the load.
    let answered = Arc::new(AtomicUsize::new(0));
    let fake = FakeServer::serve({
        let answered = Arc::clone(&answered);
        move |mut conn, _| {
            for _ in 0..ANSWERED_PER_CONNECTION {
                if conn.next_load_command().is_none() {
                    return;
                }
                conn.send(b"+OK\r\n");
                answered.fetch_add(1, Ordering::SeqCst);
            }
            conn.hang_up();
        }
    });

    // A loop without end would resend the input thousands of times: the
    // guard kills it.
    let outcome = Pipeload::new()
        .port(fake.port())
        .args(["--retry", "3"])
        .guard(Duration::from_secs(30))
        .stdin(sets(COMMANDS))
        .run();
    fake.finish();

    let answered = answered.load(Ordering::SeqCst) as u64;
    let acknowledged = outcome.assert_stopped(1);
    outcome
        .check(
            outcome.reconnects() == 3,
            "one outage: three reconnects, then it gives up",
        )
        .check(
            answered == 4 * ANSWERED_PER_CONNECTION as u64,
            format!("the first connection and three more answered; {answered} answers"),
        )
        .check(
            acknowledged == answered,
            format!("acknowledged must be the {answered} commands answered"),
        )
        .check(
            outcome.summary()
                == Summary {
                    errors: 1,
                    replies: answered,
                },
            format!("expected `errors: 1, replies: {answered}`"),
        )
        .assert_stderr_line("pipeload: gave up after 3 reconnect attempts (--retry 3)");
}

// --- --max-errors and --errors-file on a real server ---------------------

const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";

#[test]
fn max_errors_stops_a_long_load_and_skip_resumes_it() {
    const COMMANDS: usize = 100_000;
    let server = RedisServer::start();
    let mut client = server.client();
    client.ok(&["SET", "str", "text"]);
    // Command j: an INCR of the string every 1,000 commands, else a SET.
    let input: String = (0..COMMANDS)
        .map(|j| match j % 1_000 {
            999 => "INCR str\n".to_string(),
            _ => format!("SET key:{j} {j}\n"),
        })
        .collect();
    let failing_before = |end: usize| (0..end).filter(|j| j % 1_000 == 999).count() as u64;

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--max-errors", "5"])
        .guard(Duration::from_secs(240))
        .stdin(input.clone())
        .run();

    let acknowledged = outcome.assert_stopped(1) as usize;
    outcome.assert_stderr_contains("stopping after").check(
        (5_000..COMMANDS).contains(&acknowledged),
        "the load must stop after the fifth failing command and before the end",
    );
    let reported = outcome
        .stderr_lines()
        .iter()
        .filter(|line| line.ends_with(NOT_AN_INTEGER))
        .count() as u64;
    outcome.check(
        reported == failing_before(acknowledged),
        format!(
            "every failing command in the acknowledged prefix is reported, no other: expected {}",
            failing_before(acknowledged)
        ),
    );
    // Everything sent was answered: the database holds exactly the prefix.
    let sets_in_prefix = acknowledged as i64 - failing_before(acknowledged) as i64;
    assert_eq!(client.dbsize(), 1 + sets_in_prefix, "{outcome}");
    assert!(
        client.exists(format!("key:{}", acknowledged - 1)) || (acknowledged - 1) % 1_000 == 999,
        "{outcome}"
    );
    let next = (acknowledged..COMMANDS)
        .find(|j| j % 1_000 != 999)
        .unwrap_or(COMMANDS);
    assert!(!client.exists(format!("key:{next}")), "{outcome}");

    let resumed = Pipeload::new()
        .port(server.port())
        .args(["--skip", &acknowledged.to_string()])
        .guard(Duration::from_secs(240))
        .stdin(input)
        .run();

    let failing_after = failing_before(COMMANDS) - failing_before(acknowledged);
    resumed.assert_summary(failing_after, (COMMANDS - acknowledged) as u64);
    assert_eq!(
        client.dbsize(),
        1 + (COMMANDS as i64 - failing_before(COMMANDS) as i64),
        "{resumed}"
    );
}

/// An input with failures of every kind, as text (LF and CRLF), RESP, and
/// refused lines, from stdin and a file; and the errors file it must give.
struct ErrorsCase {
    stdin: Vec<u8>,
    file: Vec<u8>,
    expected: Vec<u8>,
}

fn errors_case() -> ErrorsCase {
    let incrby_resp = resp_command(&["INCRBY", "num", "5"]);
    let decrby_resp = resp_command(&["DECRBY", "num", "2"]);
    let mut stdin = Vec::new();
    let mut expected = Vec::new();
    stdin.extend_from_slice(b"SET num notanumber\n");
    stdin.extend_from_slice(b"INCR num\r\n");
    expected.extend_from_slice(b"INCR num\n");
    stdin.extend_from_slice(b"SET quoted \"unbalanced value\n");
    expected.extend_from_slice(b"SET quoted \"unbalanced value\n");
    stdin.extend_from_slice(&incrby_resp);
    expected.extend_from_slice(&incrby_resp);
    stdin.extend_from_slice(b"SET good 1\n");
    // An error inside EXEC's reply: the queued command that failed.
    stdin.extend_from_slice(b"MULTI\nSET inmulti 1\nINCR num\nEXEC\n");
    expected.extend_from_slice(b"INCR num\n");
    stdin.extend_from_slice(b"\t INCRBY   num  \"3\"  \n");
    expected.extend_from_slice(b"\t INCRBY   num  \"3\"  \n");
    stdin.extend_from_slice(b"NOSUCHCOMMAND a b\n");
    expected.extend_from_slice(b"NOSUCHCOMMAND a b\n");
    stdin.extend_from_slice(b"SET bin \"\\x01\\xff\"\n");
    stdin.extend_from_slice(b"INCR num");
    expected.extend_from_slice(b"INCR num\n");

    let mut file = Vec::new();
    file.extend_from_slice(b"SET fromfile 1\r\n");
    file.extend_from_slice(&decrby_resp);
    expected.extend_from_slice(&decrby_resp);
    file.extend_from_slice(b"\r\n");
    file.extend_from_slice(b"SET 'x'y 1\r\n");
    expected.extend_from_slice(b"SET 'x'y 1\n");
    file.extend_from_slice(b"DECR num\n");
    expected.extend_from_slice(b"DECR num\n");
    ErrorsCase {
        stdin,
        file,
        expected,
    }
}

#[test]
fn errors_file_holds_each_failed_command_as_it_was_in_the_input() {
    let server = RedisServer::start();
    let dir = TempDir::new("errors-file");
    let case = errors_case();
    dir.write("more.txt", &case.file);

    let outcome = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args(["--errors-file", "failed.txt", "-", "more.txt"])
        .stdin(case.stdin)
        .run();

    // 10 failures, 1 of them inside EXEC; 17 commands, 15 sent.
    outcome
        .assert_summary(10, 15)
        .assert_stderr_line("line 3: not sent: unbalanced quotes")
        .assert_stderr_line(
            "more.txt:10: not sent: closing quote must be followed by a space or the end of the line",
        );
    let written = std::fs::read(dir.path().join("failed.txt")).expect("read the errors file");
    outcome.check(
        written == case.expected,
        format!(
            "the errors file must hold the failed commands' input bytes in order:\n\
             expected: {:?}\n     got: {:?}",
            case.expected.escape_ascii().to_string(),
            written.escape_ascii().to_string()
        ),
    );

    // Fixed (the bad lines mended, the unknown command dropped, the key made
    // a number), the file loads cleanly.
    let fixed = String::from_utf8_lossy(&written)
        .replace(
            "SET quoted \"unbalanced value\n",
            "SET quoted \"unbalanced value\"\n",
        )
        .replace("NOSUCHCOMMAND a b\n", "")
        .replace("SET 'x'y 1\n", "SET 'x' y\n");
    dir.write("fixed.txt", fixed);
    let mut client = server.client();
    client.ok(&["SET", "num", "100"]);
    let reloaded = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .arg("fixed.txt")
        .run();
    reloaded.assert_summary(0, 9);
    // 100 + 1 + 5 + 1 + 3 + 1 - 2 - 1
    assert_eq!(client.get("num"), Some(b"108".to_vec()), "{reloaded}");
    assert_eq!(
        client.get("quoted"),
        Some(b"unbalanced value".to_vec()),
        "{reloaded}"
    );
    assert_eq!(client.get("x"), Some(b"y".to_vec()), "{reloaded}");
}

#[test]
fn errors_file_is_empty_when_nothing_fails() {
    let server = RedisServer::start();
    let dir = TempDir::new("errors-file");
    let path = dir.path().join("failed.txt");

    let outcome = Pipeload::new()
        .port(server.port())
        .arg("--errors-file")
        .arg(&path)
        .stdin(sets(100))
        .run();

    outcome.assert_summary(0, 100);
    let written = std::fs::read(&path)
        .unwrap_or_else(|err| outcome.fail(format!("the errors file must exist: {err}")));
    outcome.check(written.is_empty(), "the errors file must be empty");
}

#[test]
fn an_errors_file_that_cannot_be_created_fails_before_connecting() {
    let closed_port = RedisServer::start().stop();
    let dir = TempDir::new("errors-file");
    let path = dir.path().join("no-such-dir").join("failed.txt");

    let outcome = Pipeload::new()
        .port(closed_port)
        .arg("--errors-file")
        .arg(&path)
        .stdin(sets(3))
        .run();

    outcome
        .assert_code(1)
        .assert_stderr_contains(&path.display().to_string())
        .assert_stderr_lacks("Could not connect")
        .check(
            outcome.stdout.is_empty(),
            "nothing may be loaded or summed up",
        );
}

// --- Signals ----------------------------------------------------------------

/// Starts a load on `server` with stdin kept open, writes `count` SETs and
/// waits until the server holds them all.
fn load_and_leave_stdin_open(server: &RedisServer, count: usize) -> Running {
    let mut running = Pipeload::new().port(server.port()).spawn();
    running
        .write_stdin(sets(count).as_bytes())
        .expect("write to pipeload's stdin");
    let mut client = server.client();
    wait_until(
        Duration::from_secs(60),
        "the server holds every command written",
        || client.dbsize() == count as i64,
    );
    running
}

fn assert_interrupted(outcome: &Outcome, code: i32, count: u64, server: &RedisServer) {
    let acknowledged = outcome.assert_stopped(code);
    let summary = outcome.summary();
    outcome.check(
        acknowledged == count && summary.replies == count,
        format!("every command written was answered: expected `replies: {count}` and `acknowledged: {count}`"),
    );
    assert_eq!(server.client().dbsize(), count as i64, "{outcome}");
}

#[test]
fn sigint_with_the_input_still_open_stops_with_the_resume_point() {
    let server = RedisServer::start();
    let mut running = load_and_leave_stdin_open(&server, 1_000);

    running.signal("INT");
    let exited = running.wait_for_exit(Duration::from_secs(20));
    let outcome = running.finish();

    outcome.check(
        exited.is_some(),
        "pipeload must stop after SIGINT even though stdin is open",
    );
    assert_interrupted(&outcome, 130, 1_000, &server);
}

#[test]
fn sigterm_with_the_input_still_open_stops_with_the_resume_point() {
    let server = RedisServer::start();
    let mut running = load_and_leave_stdin_open(&server, 1_000);

    running.signal("TERM");
    let exited = running.wait_for_exit(Duration::from_secs(20));
    let outcome = running.finish();

    outcome.check(
        exited.is_some(),
        "pipeload must stop after SIGTERM even though stdin is open",
    );
    assert_interrupted(&outcome, 143, 1_000, &server);
}

/// pipeload with `--pipe-timeout seconds`, started on 10 SETs against a
/// fake that reads every command and never answers, once the fake has them
/// all: its replies are in flight for good.
fn waiting_on_a_silent_fake(pipe_timeout: &str) -> (Running, FakeServer) {
    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    let fake = FakeServer::start(move |mut conn| {
        while conn.next_command().is_some() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let mut running = Pipeload::new()
        .port(fake.port())
        .args(["--pipe-timeout", pipe_timeout])
        .spawn();
    running
        .write_stdin(sets(10).as_bytes())
        .expect("write to pipeload's stdin");
    wait_until(Duration::from_secs(30), "the fake has the commands", || {
        received.load(Ordering::SeqCst) == 10
    });
    (running, fake)
}

#[test]
fn a_second_sigint_exits_at_once() {
    let (mut running, fake) = waiting_on_a_silent_fake("0");

    running.signal("INT");
    // The first one waits for the replies in flight, which never come.
    let after_first = running.wait_for_exit(Duration::from_millis(500));
    running.signal("INT");
    let after_second = running.wait_for_exit(Duration::from_secs(5));
    let outcome = running.finish();
    fake.finish();

    outcome
        .check(
            after_first.is_none(),
            "after one SIGINT pipeload must wait for the replies in flight (--pipe-timeout 0)",
        )
        .check(after_second.is_some(), "a second SIGINT must exit at once");
    // Still with the summary: nothing was answered, the ten SETs are in
    // flight.
    let acknowledged = outcome.assert_stopped(130);
    outcome
        .check(acknowledged == 0, "nothing was answered: `acknowledged: 0`")
        .check(
            outcome
                .stdout_lines()
                .iter()
                .any(|line| line.starts_with("in flight: 10 ")),
            "the ten SETs sent and never answered are named: `in flight: 10 …`",
        );
}

#[test]
fn sigint_waits_for_replies_only_up_to_the_pipe_timeout() {
    let (mut running, fake) = waiting_on_a_silent_fake("1");

    running.signal("INT");
    let exited = running.wait_for_exit(Duration::from_secs(15));
    let outcome = running.finish();
    fake.finish();

    outcome.check(
        exited.is_some(),
        "after SIGINT, replies that never come are waited for --pipe-timeout only",
    );
    let acknowledged = outcome.assert_stopped(130);
    outcome.check(acknowledged == 0, "nothing was answered: `acknowledged: 0`");
}

// --- Closed stdout and stderr ------------------------------------------------

/// Exited by itself (not by a signal), without a panic's exit code.
fn assert_exited_without_panic(outcome: &Outcome) {
    outcome.assert_no_panic().check(
        outcome.status.code().is_some_and(|code| code != 101),
        "pipeload must exit by itself, never with a panic's status 101",
    );
}

#[test]
fn a_closed_stdout_or_stderr_never_panics() {
    // The input has errors so that stderr is written to as well.
    let input = format!("{}INCR {}\nSET \"bad\n", sets(2_000), "key:1");
    for (stdout, stderr) in [
        (Sink::ClosedPipe, Sink::Collected),
        (Sink::Collected, Sink::ClosedPipe),
        (Sink::ClosedPipe, Sink::ClosedPipe),
        (Sink::Closed, Sink::Collected),
        (Sink::Collected, Sink::Closed),
        (Sink::Closed, Sink::Closed),
    ] {
        let server = RedisServer::start();

        let outcome = Pipeload::new()
            .port(server.port())
            .stdout_sink(stdout)
            .stderr_sink(stderr)
            .stdin(input.clone())
            .run();

        assert_exited_without_panic(&outcome);
        // The load itself still happens.
        assert_eq!(server.client().dbsize(), 2_000, "{outcome}");
    }
}

#[test]
fn a_closed_stdout_never_panics_on_a_stopped_load() {
    let fake = FakeServer::start(|mut conn| {
        conn.next_command();
        conn.send(b"+OK\r\n");
        conn.hang_up_abruptly();
    });

    let outcome = Pipeload::new()
        .port(fake.port())
        .stdout_sink(Sink::ClosedPipe)
        .stdin(sets(10_000))
        .run();
    fake.finish();

    assert_exited_without_panic(&outcome);
    outcome.assert_code(1);
}

#[test]
fn a_closed_stdout_never_panics_after_sigint() {
    let server = RedisServer::start();
    let mut running = Pipeload::new()
        .port(server.port())
        .stdout_sink(Sink::ClosedPipe)
        .spawn();
    running
        .write_stdin(sets(100).as_bytes())
        .expect("write to pipeload's stdin");
    let mut client = server.client();
    wait_until(
        Duration::from_secs(60),
        "the server holds the commands",
        || client.dbsize() == 100,
    );

    running.signal("INT");
    let outcome = running.finish();

    assert_exited_without_panic(&outcome);
    outcome.assert_code(130);
}

#[test]
fn emit_resp_to_a_closed_stdout_never_panics() {
    for stdout in [Sink::ClosedPipe, Sink::Closed] {
        let outcome = Pipeload::new()
            .arg("--emit-resp")
            .stdout_sink(stdout)
            .stdin(sets(50_000))
            .run();

        assert_exited_without_panic(&outcome);
    }
}
