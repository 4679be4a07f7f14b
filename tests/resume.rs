//! Stopping and resuming: a load whose server dies says how many commands
//! were acknowledged and the `--skip` that resumes it; rerunning the same
//! input with that `--skip` applies nothing twice and misses nothing.
//! `--retry` reconnects to a restarted server (or after a dropped
//! connection, setting it up again as the input did) and finishes the load
//! by itself; a restarted server is a new instance, and pipeload says so
//! (what it had acknowledged may be gone). `--skip` counts commands from the very start of the input, across
//! sources, rejected lines included, blank lines and empty arrays excluded.
//!
//! Most servers here persist every write (append-only file, fsync before
//! each reply), so what a killed server acknowledged is still there after a
//! restart on the same port and directory; one does not, to show what a
//! restart then loses.

use std::process::ChildStdin;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::run::LAST_REPLY;
use crate::common::{Client, Outcome, Pipeload, RedisServer, TempDir, Value, resp_command, sets};

/// Big enough that the server dies mid-stream, small enough for a debug
/// build.
const COMMANDS: usize = 300_000;

/// How pipeload says a reconnect reached a new server instance.
const RESTARTED: &str = "pipeload: the server restarted (it answers with a new run_id)";

fn incr_input(count: usize) -> Vec<u8> {
    (0..count)
        .flat_map(|i| format!("INCR counter:{i}\n").into_bytes())
        .collect()
}

/// Writes `input` in 64 KiB chunks a few milliseconds apart, so the load
/// is still going when the test strikes; reports on `half_written` once
/// half the input is written. Stops quietly when pipeload stops reading.
fn feed_slowly(
    mut stdin: ChildStdin,
    input: Vec<u8>,
    half_written: mpsc::Sender<()>,
) -> thread::JoinHandle<()> {
    use std::io::Write;
    thread::spawn(move || {
        let mut half_written = Some(half_written);
        let mut written = 0;
        for chunk in input.chunks(64 * 1024) {
            if stdin.write_all(chunk).is_err() {
                break;
            }
            written += chunk.len();
            if written >= input.len() / 2
                && let Some(signal) = half_written.take()
            {
                let _ = signal.send(());
            }
            thread::sleep(Duration::from_millis(4));
        }
    })
}

/// The values of `prefix0 … prefix{count-1}` (`None` for a missing key),
/// read with MGET in slices.
fn values(client: &mut Client, prefix: &str, count: usize) -> Vec<Option<Vec<u8>>> {
    let mut values = Vec::with_capacity(count);
    for start in (0..count).step_by(10_000) {
        let mut args = vec!["MGET".to_string()];
        args.extend((start..count.min(start + 10_000)).map(|i| format!("{prefix}{i}")));
        values.extend(
            client
                .ok(&args)
                .into_array()
                .into_iter()
                .map(Value::into_bulk),
        );
    }
    values
}

/// The counters `counter:0 …`, a missing one as 0.
fn counters(client: &mut Client, count: usize) -> Vec<i64> {
    values(client, "counter:", count)
        .into_iter()
        .map(|value| {
            value.map_or(0, |bytes| {
                String::from_utf8_lossy(&bytes)
                    .parse()
                    .expect("a counter is an integer")
            })
        })
        .collect()
}

/// `what` for the first few indexes where `bad` holds, for a message.
fn first_offenders<T: std::fmt::Debug>(
    items: &[T],
    bad: impl Fn(usize, &T) -> bool,
) -> Vec<String> {
    items
        .iter()
        .enumerate()
        .filter(|(index, item)| bad(*index, item))
        .take(10)
        .map(|(index, item)| format!("#{index} = {item:?}"))
        .collect()
}

/// Every `key:i` of `sets(COMMANDS)` holds its `value:i` in
/// `client`'s database.
#[track_caller]
fn assert_sets_loaded(client: &mut Client, outcome: &Outcome) {
    let values = values(client, "key:", COMMANDS);
    let wrong = first_offenders(&values, |index, value| {
        value.as_deref() != Some(format!("value:{index}").as_bytes())
    });
    assert!(
        wrong.is_empty(),
        "every key must hold its value; wrong: {wrong:?}\n{outcome}"
    );
}

/// Runs pipeload on `input` fed slowly through stdin, calls `strike` once
/// half of it is written, and returns how the run ended.
fn load_and_strike(pipeload: Pipeload, input: &[u8], strike: impl FnOnce()) -> (Outcome, Duration) {
    let mut running = pipeload.guard(Duration::from_secs(240)).spawn();
    let (half_written, at_half) = mpsc::channel();
    let feeder = feed_slowly(running.take_stdin(), input.to_vec(), half_written);
    at_half
        .recv_timeout(Duration::from_secs(120))
        .expect("the feeder never wrote half the input");
    let struck = Instant::now();
    strike();
    let outcome = running.finish();
    let _ = feeder.join();
    (outcome, struck.elapsed())
}

/// Stops the server from executing more of pipeload's writes and waits
/// until every reply to what it did execute has left its output buffers, so
/// that a kill right after loses no reply the server owed: then every
/// executed command can be known to pipeload, and the resume point can be
/// exact. (A kill at an arbitrary moment can catch a command executed and
/// logged but not yet answered; see the next test.)
fn quiesce(server: &RedisServer) {
    let mut client = server.client();
    client.ok(&["CLIENT", "PAUSE", "600000", "WRITE"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = match client.ok(&["CLIENT", "LIST"]) {
            Value::Bulk(Some(list)) | Value::Verbatim(list) => list,
            other => panic!("CLIENT LIST replied {other:?}"),
        };
        let list = String::from_utf8_lossy(&list).into_owned();
        let others_drained = list
            .lines()
            .filter(|line| !line.contains("cmd=client|list"))
            .all(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                fields.contains(&"obl=0") && fields.contains(&"oll=0")
            });
        if others_drained {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server's reply buffers never drained:\n{list}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    // Replies written to the socket reach pipeload over loopback at once;
    // give its reader a moment to take them.
    thread::sleep(Duration::from_millis(300));
}

#[test]
fn a_killed_server_gives_a_resume_point_and_skip_loads_the_rest_exactly_once() {
    let mut server = RedisServer::start_persistent();
    let input = incr_input(COMMANDS);

    let (first, _) = load_and_strike(Pipeload::new().port(server.port()), &input, || {
        quiesce(&server);
        server.kill();
    });

    let acknowledged = first.assert_stopped(1);
    first.check(
        acknowledged > 0 && acknowledged < COMMANDS as u64,
        "the server was killed mid-load: acknowledged must be between 0 and the input",
    );
    server.restart();
    server.wait_until_loaded();
    let mut client = server.client();
    let survived = client.dbsize();
    assert_eq!(
        survived, acknowledged as i64,
        "every command the server executed was answered before the kill, so \
         acknowledged must equal what the server holds\n{first}"
    );

    let second = Pipeload::new()
        .port(server.port())
        .args(["--skip", &acknowledged.to_string()])
        .guard(Duration::from_secs(240))
        .stdin(input)
        .run();

    second.assert_summary(0, COMMANDS as u64 - acknowledged);
    let counters = counters(&mut client, COMMANDS);
    let wrong = first_offenders(&counters, |_, &count| count != 1);
    assert!(
        wrong.is_empty(),
        "every counter must be exactly 1 (nothing twice, nothing missing); \
         acknowledged {acknowledged}; wrong: {wrong:?}\n--- first run:\n{first}\n--- resumed run:\n{second}"
    );
}

#[test]
fn a_server_killed_at_any_moment_loses_nothing_on_resume() {
    // Killed with no warning, the server may have executed (and logged) a
    // few commands whose replies it had not written yet: pipeload cannot
    // know them, so those may apply twice after `--skip`. Every command up
    // to the resume point must have been applied exactly once, and nothing
    // may be missing.
    let mut server = RedisServer::start_persistent();
    let input = incr_input(COMMANDS);

    let (first, _) = load_and_strike(Pipeload::new().port(server.port()), &input, || {
        server.kill()
    });

    let acknowledged = first.assert_stopped(1);
    first.check(
        acknowledged < COMMANDS as u64,
        "the server was killed mid-load: acknowledged must be below the input",
    );
    let resume_at = acknowledged as usize;
    server.restart();
    server.wait_until_loaded();
    let mut client = server.client();
    let before = counters(&mut client, resume_at);
    let lost = first_offenders(&before, |_, &count| count != 1);
    assert!(
        lost.is_empty(),
        "every acknowledged command was answered, so fsynced: counters below \
         {acknowledged} must be 1; wrong: {lost:?}\n{first}"
    );

    let second = Pipeload::new()
        .port(server.port())
        .args(["--skip", &acknowledged.to_string()])
        .guard(Duration::from_secs(240))
        .stdin(input)
        .run();

    second.assert_summary(0, (COMMANDS - resume_at) as u64);
    let counters = counters(&mut client, COMMANDS);
    let wrong = first_offenders(&counters, |index, &count| {
        !(1..=2).contains(&count) || (index < resume_at && count != 1)
    });
    assert!(
        wrong.is_empty(),
        "every counter must be 1 (2 only for a command past the resume point \
         that the server ran but never answered); acknowledged {acknowledged}; \
         wrong: {wrong:?}\n--- first run:\n{first}\n--- resumed run:\n{second}"
    );
}

#[test]
fn retry_reconnects_to_a_restarted_server_and_finishes_the_load() {
    let mut server = RedisServer::start_persistent();
    let input = sets(COMMANDS).into_bytes();

    let (outcome, _) = load_and_strike(
        Pipeload::new().port(server.port()).args(["--retry", "10"]),
        &input,
        || server.restart(),
    );

    // Every command answered, no error: yet the load went into a new server
    // instance, and pipeload cannot know that it kept what the old one
    // acknowledged (this one did: it fsyncs every write). So it says so,
    // and the exit status is not the 0 of a clean load.
    let summary = outcome.summary();
    let reconnects = outcome.reconnects();
    outcome
        .assert_code(1)
        .check(summary.errors == 0, "no error: `errors: 0`")
        .check(
            reconnects >= 1,
            "the server was restarted: expected `reconnects: R` with R ≥ 1",
        )
        .check(
            summary.replies >= COMMANDS as u64,
            "every command must have been answered",
        )
        .check(
            outcome.stdout_lines().iter().any(|line| line == LAST_REPLY)
                && !outcome.stdout_text().contains("resume with"),
            "the load ran to its end: no resume hint",
        )
        .assert_stderr_contains("reconnecting")
        .assert_stderr_line_starts(RESTARTED);
    let mut client = server.client();
    assert_sets_loaded(&mut client, &outcome);
    assert_eq!(client.dbsize(), COMMANDS as i64, "{outcome}");
}

#[test]
fn retry_says_when_the_server_restarted_and_lost_what_it_acknowledged() {
    // No persistence: a kill -9 and a restart on the same port give an
    // empty server, and every command acknowledged before is gone.
    let mut server = RedisServer::start();
    let input = sets(COMMANDS).into_bytes();

    let (outcome, _) = load_and_strike(
        Pipeload::new()
            .port(server.port())
            .args(["--retry", "20", "--json"]),
        &input,
        || server.restart(),
    );

    let json = outcome.stdout_text();
    outcome
        .assert_code(1)
        .assert_stderr_line_starts(RESTARTED)
        .check(
            json.contains("\"server_restarted\":true"),
            "the JSON summary must say `\"server_restarted\":true`",
        )
        .check(
            json.contains("\"completed\":true") && json.contains("\"errors\":0,"),
            "the load itself ran to its end without an error",
        );
    let mut client = server.client();
    let last = COMMANDS - 1;
    assert_eq!(
        client.get(format!("key:{last}")),
        Some(format!("value:{last}").into_bytes()),
        "the rest of the load went to the new instance\n{outcome}"
    );
    let kept = client.dbsize();
    assert!(
        kept < COMMANDS as i64,
        "what the killed instance acknowledged is gone ({kept} keys of {COMMANDS}): \
         that is why pipeload must say so\n{outcome}"
    );
}

#[test]
fn retry_after_a_dropped_connection_to_the_same_server_reports_no_restart() {
    let server = RedisServer::start();
    let input = sets(COMMANDS).into_bytes();

    let (outcome, _) = load_and_strike(
        Pipeload::new()
            .port(server.port())
            .args(["--retry", "5", "--json"]),
        &input,
        || {
            server
                .client()
                .ok(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
        },
    );

    let json = outcome.stdout_text();
    outcome
        .assert_code(0)
        .assert_stderr_contains("reconnecting")
        .assert_stderr_lacks("restarted")
        .check(
            json.contains("\"server_restarted\":false") && json.contains("\"reconnects\":1,"),
            "one reconnect to the same instance: `\"server_restarted\":false`",
        );
    let mut client = server.client();
    assert_sets_loaded(&mut client, &outcome);
    assert_eq!(client.dbsize(), COMMANDS as i64, "{outcome}");
}

#[test]
fn retry_sets_the_new_connection_up_as_the_input_did() {
    // The input authenticates and picks its database itself; after the
    // connection drops, the rest must still run as that user, in that
    // database.
    let server = RedisServer::start();
    server
        .client()
        .ok(&["CONFIG", "SET", "requirepass", "input-secret"]);
    let mut input = b"AUTH input-secret\nSELECT 3\n".to_vec();
    input.extend_from_slice(sets(COMMANDS).as_bytes());
    let client = || Client::connect_auth(server.port(), None, "input-secret");

    let (outcome, _) = load_and_strike(
        Pipeload::new().port(server.port()).args(["--retry", "5"]),
        &input,
        || {
            client().ok(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
        },
    );

    let (summary, reconnects) = outcome.assert_retried_without_errors();
    outcome
        .check(reconnects == 1, "one connection dropped: `reconnects: 1`")
        .check(
            summary.replies == COMMANDS as u64 + 2,
            "every command must have been answered once",
        );
    let mut client = client();
    assert_eq!(client.dbsize(), 0, "nothing may land in db 0\n{outcome}");
    client.select(3);
    assert_sets_loaded(&mut client, &outcome);
}

#[test]
fn retry_gives_up_when_the_server_stays_down() {
    let mut server = RedisServer::start_persistent();
    let input = sets(COMMANDS).into_bytes();

    let (outcome, after_kill) = load_and_strike(
        Pipeload::new().port(server.port()).args(["--retry", "2"]),
        &input,
        || server.kill(),
    );

    let acknowledged = outcome.assert_stopped(1);
    outcome.assert_stderr_contains("reconnecting").check(
        after_kill < Duration::from_secs(30),
        "two attempts with a backoff from 100 ms must give up quickly",
    );
    // `reconnects: R` is there even though no attempt succeeded.
    let _ = outcome.reconnects();
    // Resume by hand: what was acknowledged survived, `--skip` adds the rest.
    server.restart();
    server.wait_until_loaded();
    let mut client = server.client();
    let before = values(&mut client, "key:", acknowledged as usize);
    let lost = first_offenders(&before, |index, value| {
        value.as_deref() != Some(format!("value:{index}").as_bytes())
    });
    assert!(
        lost.is_empty(),
        "acknowledged commands must have been applied; missing: {lost:?}\n{outcome}"
    );
    let resumed = Pipeload::new()
        .port(server.port())
        .args(["--skip", &acknowledged.to_string()])
        .guard(Duration::from_secs(240))
        .stdin(input)
        .run();
    resumed.assert_summary(0, COMMANDS as u64 - acknowledged);
    assert_eq!(client.dbsize(), COMMANDS as i64, "{resumed}");
}

#[test]
fn retry_without_an_outage_reports_zero_reconnects() {
    let server = RedisServer::start();

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--retry", "3"])
        .stdin("SET a 1\nSET b 2\n")
        .run();

    let (summary, reconnects) = outcome.assert_retried_without_errors();
    outcome.check(
        reconnects == 0 && summary.replies == 2,
        "expected `errors: 0, replies: 2` and `reconnects: 0`",
    );
    assert_eq!(server.client().dbsize(), 2);
}

/// Six commands in every form that counts, with what does not count in
/// between: command n sets `k{n}` (the third is a refused line).
fn mixed_input() -> Vec<u8> {
    // Line 1 blank, 2 k1, 3 blank, 4-10 k2, 11-12 empty arrays, 13 k3…
    let mut input = b"\nSET k1 v1\n\r\n".to_vec(); // blank lines: not commands
    input.extend_from_slice(&resp_command(&["SET", "k2", "v2"]));
    input.extend_from_slice(b"*0\r\n*-1\r\n"); // empty arrays: not commands
    input.extend_from_slice(b"SET k3 \"unbalanced\n"); // refused: counts
    input.extend_from_slice(b"   \n");
    input.extend_from_slice(&resp_command(&["SET", "k4", "v4"]));
    input.extend_from_slice(b"SET k5 v5\r\nSET k6 v6");
    input
}

/// Which of `k1 … k6` the server holds.
fn loaded_keys(server: &RedisServer) -> Vec<usize> {
    let mut client = server.client();
    (1..=6).filter(|n| client.exists(format!("k{n}"))).collect()
}

#[test]
fn skip_zero_loads_everything() {
    let server = RedisServer::start();

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--skip", "0"])
        .stdin(mixed_input())
        .run();

    outcome
        .assert_summary(1, 5)
        .assert_stderr_line("line 13: not sent: unbalanced quotes");
    assert_eq!(loaded_keys(&server), [1, 2, 4, 5, 6], "{outcome}");
}

#[test]
fn skip_counts_text_lines_resp_arrays_and_refused_lines() {
    // (skip, keys loaded); the refused third command is reported only when
    // it is not skipped.
    let cases: &[(u64, &[usize])] = &[
        (1, &[2, 4, 5, 6]),
        (2, &[4, 5, 6]),
        (3, &[4, 5, 6]),
        (4, &[5, 6]),
        (5, &[6]),
        (6, &[]),
    ];
    for &(skip, loaded) in cases {
        let server = RedisServer::start();

        let outcome = Pipeload::new()
            .port(server.port())
            .args(["--skip", &skip.to_string()])
            .stdin(mixed_input())
            .run();

        match skip < 3 {
            true => outcome
                .assert_summary(1, loaded.len() as u64)
                .assert_stderr_line("line 13: not sent: unbalanced quotes"),
            false => outcome
                .assert_summary(0, loaded.len() as u64)
                .assert_stderr_lacks("not sent"),
        };
        assert_eq!(loaded_keys(&server), loaded, "--skip {skip}\n{outcome}");
    }
}

#[test]
fn errors_after_a_skip_keep_their_positions() {
    let server = RedisServer::start();
    server.client().ok(&["SET", "str", "x"]);
    let mut input = b"LPUSH str a\nLPUSH str b\n".to_vec();
    input.extend_from_slice(&resp_command(&["LPUSH", "str", "c"])); // lines 3-9
    input.extend_from_slice(b"LPUSH str d\n"); // line 10

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--skip", "1"])
        .stdin(input)
        .run();

    let wrongtype = "WRONGTYPE Operation against a key holding the wrong kind of value";
    outcome
        .assert_summary(3, 3)
        .assert_stderr_line(&format!("line 2: {wrongtype}"))
        .assert_stderr_line(&format!("line 3 (command 3): {wrongtype}"))
        .assert_stderr_line(&format!("line 10: {wrongtype}"))
        .assert_stderr_lacks("line 1:");
}

#[test]
fn skip_beyond_the_input_sends_nothing_and_says_so() {
    let server = RedisServer::start();

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--skip", "1000"])
        .stdin(mixed_input())
        .run();

    // Usually the wrong file: an error, not a quiet `errors: 0`.
    outcome
        .assert_code(1)
        .assert_fatal_line("--skip 1000 is beyond the end of the input, which has")
        .assert_stderr_lacks("not sent");
    assert_eq!(outcome.stdout_text(), "errors: 1, replies: 0\n");
    assert_eq!(server.client().dbsize(), 0, "{outcome}");
}

#[test]
fn skip_counts_across_file_arguments() {
    let dir = TempDir::new("resume");
    dir.write("a.txt", "SET a1 1\n\nSET a2 2\nSET a3 3\n");
    let mut b = resp_command(&["SET", "b1", "1"]);
    b.extend_from_slice(b"SET b2 2\nSET b3 3\n");
    dir.write("b.resp", &b);
    // (skip, keys loaded)
    let cases: &[(u64, &[&str])] = &[
        (2, &["a3", "b1", "b2", "b3"]),
        (3, &["b1", "b2", "b3"]),
        (4, &["b2", "b3"]),
        (6, &[]),
    ];
    for &(skip, loaded) in cases {
        let server = RedisServer::start();

        let outcome = Pipeload::new()
            .port(server.port())
            .current_dir(dir.path())
            .args(["--skip", &skip.to_string(), "a.txt", "b.resp"])
            .run();

        outcome.assert_summary(0, loaded.len() as u64);
        let mut client = server.client();
        for key in ["a1", "a2", "a3", "b1", "b2", "b3"] {
            assert_eq!(
                client.exists(key),
                loaded.contains(&key),
                "--skip {skip}: key {key}\n{outcome}"
            );
        }
    }
}

#[test]
fn skip_counts_stdin_between_files() {
    let server = RedisServer::start();
    let dir = TempDir::new("resume");
    dir.write("a.txt", "SET a1 1\nSET a2 2\n");
    dir.write("c.txt", "SET c1 1\n");

    let outcome = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args(["--skip", "3", "a.txt", "-", "c.txt"])
        .stdin("SET s1 1\nSET s2 2\n")
        .run();

    outcome.assert_summary(0, 2);
    let mut client = server.client();
    assert!(!client.exists("s1"), "{outcome}");
    assert!(client.exists("s2"), "{outcome}");
    assert!(client.exists("c1"), "{outcome}");
    assert_eq!(client.dbsize(), 2, "{outcome}");
}
