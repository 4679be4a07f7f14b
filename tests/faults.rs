//! Servers that do on cue what a real one does not (scripted fakes): never
//! answer, answer slowly, hang up mid-stream, answer garbage, or read no
//! more until their replies are read. pipeload must end (the runner's hang
//! guard fails the test otherwise), say what happened, and on a failure
//! still print its summary and exit 1.

use std::thread;
use std::time::Duration;

use crate::common::{FakeServer, Outcome, Pipeload, Summary, sets};

/// The summary line is there, with at least one error, and exit 1.
fn assert_failed_with_summary(outcome: &Outcome) -> Summary {
    outcome.assert_code(1);
    let summary = outcome.summary();
    outcome.check(summary.errors >= 1, "a fatal failure counts as an error");
    summary
}

#[test]
fn pipe_timeout_when_the_server_never_answers() {
    let fake = FakeServer::start(|mut conn| while conn.next_command().is_some() {});

    let outcome = Pipeload::new()
        .port(fake.port())
        .args(["--pipe-timeout", "1"])
        .stdin("SET a 1\nSET b 2\n")
        .run();

    let summary = assert_failed_with_summary(&outcome);
    outcome
        .assert_fatal_line("No replies for 1 seconds: line 1 (SET) is still waiting for its reply")
        .check(summary.replies == 0, "no reply was sent");
    fake.finish();
}

#[test]
fn pipe_timeout_after_some_replies() {
    let fake = FakeServer::start(|mut conn| {
        while let Some(_command) = conn.next_command() {
            if conn.commands <= 2 {
                conn.send(b"+OK\r\n");
            }
        }
    });

    let outcome = Pipeload::new()
        .port(fake.port())
        .args(["--pipe-timeout", "2"])
        .stdin("SET a 1\nSET b 2\nSET c 3\nSET d 4\n")
        .run();

    let summary = assert_failed_with_summary(&outcome);
    outcome
        .assert_fatal_line("No replies for 2 seconds: line 3 (SET) is still waiting for its reply")
        .check(summary.replies == 2, "two replies were sent");
    fake.finish();
}

#[test]
fn a_slow_but_steady_server_does_not_time_out() {
    // 15 replies 200 ms apart: 3 s in all, but never 2 s without a reply.
    const COMMANDS: usize = 15;
    let fake = FakeServer::start(|mut conn| {
        while conn.next_command().is_some() {
            thread::sleep(Duration::from_millis(200));
            conn.send(b"+OK\r\n");
        }
    });

    let outcome = Pipeload::new()
        .port(fake.port())
        .args(["--pipe-timeout", "2"])
        .stdin(sets(COMMANDS))
        .run();

    outcome.assert_summary(0, COMMANDS as u64);
    fake.finish();
}

#[test]
fn server_hangs_up_cleanly_mid_stream() {
    let fake = FakeServer::start(|mut conn| {
        for _ in 0..3 {
            conn.next_command();
        }
        conn.send(b"+OK\r\n+OK\r\n+OK\r\n");
        conn.hang_up();
    });

    let outcome = Pipeload::new().port(fake.port()).stdin(sets(100_000)).run();

    let summary = assert_failed_with_summary(&outcome);
    outcome.assert_stderr_contains("connection lost").check(
        summary
            == Summary {
                errors: 1,
                replies: 3,
            },
        "expected `errors: 1, replies: 3`: three replies came before the hang-up",
    );
    fake.finish();
}

#[test]
fn server_connection_reset_mid_stream() {
    let fake = FakeServer::start(|mut conn| {
        for _ in 0..3 {
            conn.next_command();
        }
        conn.send(b"+OK\r\n+OK\r\n+OK\r\n");
        conn.hang_up_abruptly();
    });

    let outcome = Pipeload::new().port(fake.port()).stdin(sets(100_000)).run();

    let summary = assert_failed_with_summary(&outcome);
    outcome
        .assert_stderr_contains("connection lost")
        .check(summary.replies <= 3, "at most three replies were sent");
    fake.finish();
}

#[test]
fn server_answers_garbage() {
    let fake = FakeServer::start(|mut conn| {
        conn.next_command();
        conn.send(b"@this is not RESP\r\n");
        conn.drain();
    });

    let outcome = Pipeload::new()
        .port(fake.port())
        .stdin("SET a 1\nSET b 2\n")
        .run();

    assert_failed_with_summary(&outcome);
    outcome.check(
        !outcome.stderr_text().trim().is_empty(),
        "the bad reply must be reported",
    );
    fake.finish();
}

#[test]
fn a_handshake_that_is_never_answered_ends() {
    // The fake reads AUTH and never answers it.
    let fake = FakeServer::start(|mut conn| conn.drain());

    let outcome = Pipeload::new()
        .port(fake.port())
        .args([
            "-a",
            "pw",
            "--no-auth-warning",
            "-t",
            "1",
            "--pipe-timeout",
            "1",
        ])
        .stdin("SET a 1\n")
        .run();

    outcome.assert_code(1).assert_stderr_contains("AUTH");
    fake.finish();
}

/// A server that answers each command with a 64 KiB reply and reads the
/// next command only once that reply is written: pipeload must read
/// replies while it is still sending, or both sides block for ever.
#[test]
fn replies_are_read_while_commands_are_still_being_sent() {
    const COMMANDS: usize = 2_000;
    let fake = FakeServer::start(|mut conn| {
        let mut reply = b"$65536\r\n".to_vec();
        reply.extend(std::iter::repeat_n(b'r', 65_536));
        reply.extend_from_slice(b"\r\n");
        while conn.next_command().is_some() {
            conn.send(&reply);
        }
    });

    let outcome = Pipeload::new()
        .port(fake.port())
        .stdin(sets(COMMANDS))
        .run();

    outcome.assert_summary(0, COMMANDS as u64);
    fake.finish();
}
