//! Command-line handling: FILE arguments that cannot be read stop the run
//! before anything is sent; bad usage exits 2.

use crate::common::{Pipeload, RedisServer, TempDir};

#[test]
fn a_missing_file_stops_the_run_before_anything_is_sent() {
    let server = RedisServer::start();
    let dir = TempDir::new("cli");
    dir.write("good.txt", "SET good 1\n");

    let outcome = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args(["good.txt", "missing.txt"])
        .run();

    outcome.assert_code(1).assert_stderr_contains("missing.txt");
    assert_eq!(
        server.client().dbsize(),
        0,
        "nothing may be sent\n{outcome}"
    );
}

#[test]
fn a_directory_argument_stops_the_run_before_anything_is_sent() {
    let server = RedisServer::start();
    let dir = TempDir::new("cli");
    dir.write("good.txt", "SET good 1\n");
    std::fs::create_dir(dir.path().join("subdir")).expect("create subdir");

    let outcome = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args(["good.txt", "subdir"])
        .run();

    outcome.assert_code(1).assert_stderr_contains("subdir");
    assert_eq!(
        server.client().dbsize(),
        0,
        "nothing may be sent\n{outcome}"
    );
}

#[test]
fn files_load_in_order_with_stdin_as_dash() {
    let server = RedisServer::start();
    let dir = TempDir::new("cli");
    dir.write("one.txt", "SET k one\nRPUSH order one\n");
    dir.write("two.txt", "SET k two\nRPUSH order two");

    let outcome = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args(["one.txt", "-", "two.txt"])
        .stdin("RPUSH order stdin\n")
        .run();

    outcome.assert_summary(0, 5);
    let mut client = server.client();
    assert_eq!(client.get("k"), Some(b"two".to_vec()));
    assert_eq!(
        client.lrange("order"),
        [b"one".to_vec(), b"stdin".to_vec(), b"two".to_vec()]
    );
}

#[test]
fn empty_input_loads_nothing_and_succeeds() {
    let server = RedisServer::start();

    let outcome = Pipeload::new()
        .port(server.port())
        .stdin("\n\r\n  \n")
        .run();

    outcome.assert_summary(0, 0);
    assert_eq!(server.client().dbsize(), 0);
}

/// Bad usage: exit 2, a message, nothing sent.
fn assert_usage_error(args: &[&str]) {
    let server = RedisServer::start();

    let outcome = Pipeload::new()
        .port(server.port())
        .args(args)
        .stdin("SET k v\n")
        .run();

    outcome.assert_code(2).check(
        !outcome.stderr_text().trim().is_empty(),
        "a usage error must say what is wrong",
    );
    assert_eq!(
        server.client().dbsize(),
        0,
        "nothing may be sent\n{outcome}"
    );
}

#[test]
fn unknown_format_is_a_usage_error() {
    assert_usage_error(&["--format", "xml"]);
}

#[test]
fn unknown_flag_is_a_usage_error() {
    assert_usage_error(&["--no-such-flag"]);
}

#[test]
fn bad_flag_values_are_usage_errors() {
    assert_usage_error(&["-n", "three"]);
    assert_usage_error(&["--pipe-timeout", "soon"]);
    assert_usage_error(&["-t", "forever"]);
    // `-h` is the host, as in redis-cli: it needs a value.
    assert_usage_error(&["-h"]);
}

#[test]
fn bad_port_is_a_usage_error() {
    let outcome = Pipeload::new()
        .args(["-p", "not-a-port"])
        .stdin("SET k v\n")
        .run();
    outcome.assert_code(2);
    let outcome = Pipeload::new()
        .args(["-p", "70000"])
        .stdin("SET k v\n")
        .run();
    outcome.assert_code(2);
}

#[test]
fn help_is_long_only_and_succeeds() {
    let outcome = Pipeload::new().arg("--help").run();
    outcome.assert_code(0).check(
        outcome.stdout_text().contains("--pipe-timeout"),
        "help lists the flags",
    );
}
