//! Servers that misbehave on cue (scripted fakes): one that never answers,
//! one that hangs up mid-stream, one that answers garbage. pipeload must end
//! (the runner's hang guard fails the test otherwise), say what happened,
//! still print its summary, and exit 1.

mod common;

use common::{FakeServer, Outcome, Pipeload, Summary};

/// Many small commands, so a hang-up lands mid-stream.
fn many_sets(count: usize) -> String {
    (0..count)
        .map(|i| format!("SET key:{i} value:{i}\n"))
        .collect()
}

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
        .assert_fatal_line("No replies for 1 seconds: exiting.")
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
        .assert_fatal_line("No replies for 2 seconds: exiting.")
        .check(summary.replies == 2, "two replies were sent");
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

    let outcome = Pipeload::new()
        .port(fake.port())
        .stdin(many_sets(100_000))
        .run();

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

    let outcome = Pipeload::new()
        .port(fake.port())
        .stdin(many_sets(100_000))
        .run();

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
