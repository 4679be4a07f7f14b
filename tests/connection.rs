//! Connecting: host/port/URI/unix socket, AUTH (password, ACL user, URI,
//! `REDISCLI_AUTH`), database selection, and the failures of each; with
//! `--retry`, waiting for a server that is not up yet.

use std::io::Write;
use std::thread;
use std::time::Duration;

use crate::common::{Client, Outcome, Pipeload, RedisServer, TempDir, sets};

const PASSWORD_WARNING: &str = "Warning: Using a password with '-a' or '-u' option on the command line interface may not be safe.";

const INPUT: &str = "SET loaded yes\nRPUSH list a b c\n";

/// The two commands of [`INPUT`] loaded cleanly, and they are all there is.
fn assert_loaded(outcome: &Outcome, client: &mut Client) {
    outcome.assert_summary(0, 2);
    assert_eq!(client.get("loaded"), Some(b"yes".to_vec()), "{outcome}");
    assert_eq!(client.dbsize(), 2, "{outcome}");
}

/// A server whose default user is off, with an ACL user `loader`/`secret`:
/// an unauthenticated connection can do nothing.
fn server_with_acl_user() -> RedisServer {
    let server = RedisServer::start();
    let mut admin = server.client();
    admin.ok(&[
        "ACL", "SETUSER", "loader", "on", ">secret", "~*", "&*", "+@all",
    ]);
    admin.ok(&["ACL", "SETUSER", "default", "off"]);
    server
}

fn loader_client(server: &RedisServer) -> Client {
    Client::connect_auth(server.port(), Some("loader"), "secret")
}

/// A server with `requirepass`.
fn server_with_password(password: &str) -> RedisServer {
    let server = RedisServer::start();
    server
        .client()
        .ok(&["CONFIG", "SET", "requirepass", password]);
    server
}

#[test]
fn acl_user_and_password_flags() {
    let server = server_with_acl_user();

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--user", "loader", "-a", "secret"])
        .stdin(INPUT)
        .run();

    assert_loaded(&outcome, &mut loader_client(&server));
    outcome.assert_stderr_line(PASSWORD_WARNING);
}

#[test]
fn acl_user_with_resp3_and_a_database() {
    let server = server_with_acl_user();

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--user", "loader", "-a", "secret", "--no-auth-warning"])
        .args(["-3", "-n", "2"])
        .stdin(INPUT)
        .run();

    let mut client = loader_client(&server);
    assert_eq!(client.dbsize(), 0, "db 0 must stay empty\n{outcome}");
    client.select(2);
    assert_loaded(&outcome, &mut client);
    outcome.assert_stderr_lacks("Warning");
}

#[test]
fn acl_user_in_uri() {
    let server = server_with_acl_user();
    let uri = format!("redis://loader:secret@127.0.0.1:{}", server.port());

    let outcome = Pipeload::new().args(["-u", &uri]).stdin(INPUT).run();

    assert_loaded(&outcome, &mut loader_client(&server));
    outcome.assert_stderr_line(PASSWORD_WARNING);
}

#[test]
fn password_only_uri_and_no_auth_warning() {
    let server = server_with_password("pw-in-uri");
    let uri = format!("redis://:pw-in-uri@127.0.0.1:{}", server.port());

    let outcome = Pipeload::new()
        .args(["-u", &uri, "--no-auth-warning"])
        .stdin(INPUT)
        .run();

    assert_loaded(
        &outcome,
        &mut Client::connect_auth(server.port(), None, "pw-in-uri"),
    );
    outcome.assert_stderr_lacks("Warning");
}

#[test]
fn requirepass_with_dash_a() {
    let server = server_with_password("hunter2");

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["-a", "hunter2"])
        .stdin(INPUT)
        .run();

    assert_loaded(
        &outcome,
        &mut Client::connect_auth(server.port(), None, "hunter2"),
    );
    outcome.assert_stderr_line(PASSWORD_WARNING);
}

#[test]
fn no_auth_warning_silences_the_warning() {
    let server = server_with_password("hunter2");

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["-a", "hunter2", "--no-auth-warning"])
        .stdin(INPUT)
        .run();

    assert_loaded(
        &outcome,
        &mut Client::connect_auth(server.port(), None, "hunter2"),
    );
    outcome.assert_stderr_lacks("Warning");
}

#[test]
fn rediscli_auth_env_is_used_without_a_warning() {
    let server = server_with_password("from-env");

    let outcome = Pipeload::new()
        .port(server.port())
        .env("REDISCLI_AUTH", "from-env")
        .stdin(INPUT)
        .run();

    assert_loaded(
        &outcome,
        &mut Client::connect_auth(server.port(), None, "from-env"),
    );
    outcome.assert_stderr_lacks("Warning");
}

#[test]
fn rediscli_auth_env_with_an_acl_user() {
    let server = server_with_acl_user();

    let outcome = Pipeload::new()
        .port(server.port())
        .env("REDISCLI_AUTH", "secret")
        .args(["--user", "loader"])
        .stdin(INPUT)
        .run();

    assert_loaded(&outcome, &mut loader_client(&server));
    outcome.assert_stderr_lacks("Warning");
}

#[test]
fn uri_password_wins_over_rediscli_auth() {
    let server = server_with_password("in-uri");
    let uri = format!("redis://:in-uri@127.0.0.1:{}", server.port());

    let outcome = Pipeload::new()
        .env("REDISCLI_AUTH", "wrong")
        .args(["-u", &uri, "--no-auth-warning"])
        .stdin(INPUT)
        .run();

    assert_loaded(
        &outcome,
        &mut Client::connect_auth(server.port(), None, "in-uri"),
    );
}

#[test]
fn dash_a_wins_over_rediscli_auth() {
    let server = server_with_password("right");

    let outcome = Pipeload::new()
        .port(server.port())
        .env("REDISCLI_AUTH", "wrong")
        .args(["-a", "right", "--no-auth-warning"])
        .stdin(INPUT)
        .run();

    assert_loaded(
        &outcome,
        &mut Client::connect_auth(server.port(), None, "right"),
    );
}

/// AUTH failed, exit 1, nothing loaded, the password printed nowhere.
fn assert_auth_failed(outcome: &Outcome, client: &mut Client, password: &str) {
    outcome
        .assert_code(1)
        .assert_fatal_line("AUTH failed:")
        .assert_never_prints(password);
    assert_eq!(client.dbsize(), 0, "{outcome}");
}

#[test]
fn wrong_password_fails_and_loads_nothing() {
    let server = server_with_password("correct-horse");

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["-a", "Wr0ngPassw0rd"])
        .stdin(INPUT)
        .run();

    assert_auth_failed(
        &outcome,
        &mut Client::connect_auth(server.port(), None, "correct-horse"),
        "Wr0ngPassw0rd",
    );
    outcome.assert_stderr_line(PASSWORD_WARNING);
}

#[test]
fn wrong_acl_password_fails_and_loads_nothing() {
    let server = server_with_acl_user();

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--user", "loader", "-a", "NotTheSecret"])
        .stdin(INPUT)
        .run();

    assert_auth_failed(&outcome, &mut loader_client(&server), "NotTheSecret");
}

#[test]
fn wrong_password_in_uri_is_never_printed() {
    let server = server_with_acl_user();
    let uri = format!("redis://loader:UriSecret99@127.0.0.1:{}", server.port());

    let outcome = Pipeload::new()
        .args(["-u", &uri, "--no-auth-warning"])
        .stdin(INPUT)
        .run();

    assert_auth_failed(&outcome, &mut loader_client(&server), "UriSecret99");
}

#[test]
fn wrong_rediscli_auth_fails() {
    let server = server_with_password("correct-horse");

    let outcome = Pipeload::new()
        .port(server.port())
        .env("REDISCLI_AUTH", "EnvWrong77")
        .stdin(INPUT)
        .run();

    assert_auth_failed(
        &outcome,
        &mut Client::connect_auth(server.port(), None, "correct-horse"),
        "EnvWrong77",
    );
}

#[test]
fn dash_n_selects_the_database() {
    let server = RedisServer::start();

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["-n", "3"])
        .stdin(INPUT)
        .run();

    let mut client = server.client();
    assert_eq!(client.dbsize(), 0, "db 0 must stay empty\n{outcome}");
    client.select(3);
    assert_loaded(&outcome, &mut client);
}

#[test]
fn uri_path_selects_the_database() {
    let server = RedisServer::start();
    let uri = format!("redis://127.0.0.1:{}/2", server.port());

    let outcome = Pipeload::new().args(["-u", &uri]).stdin(INPUT).run();

    let mut client = server.client();
    assert_eq!(client.dbsize(), 0, "db 0 must stay empty\n{outcome}");
    client.select(2);
    assert_loaded(&outcome, &mut client);
    outcome.assert_stderr_lacks("Warning");
}

#[test]
fn valkey_uri_scheme_is_accepted() {
    let server = RedisServer::start();
    let uri = format!("valkey://127.0.0.1:{}/4", server.port());

    let outcome = Pipeload::new().args(["-u", &uri]).stdin(INPUT).run();

    let mut client = server.client();
    client.select(4);
    assert_loaded(&outcome, &mut client);
}

#[test]
fn explicit_flags_override_the_uri() {
    let server = server_with_password("flag-pass");
    // Wrong port, wrong password and db 2 in the URI; the flags fix all three.
    let closed_port = RedisServer::start().stop();
    let uri = format!("redis://:uri-pass@127.0.0.1:{closed_port}/2");

    let outcome = Pipeload::new()
        .args([
            "-u",
            &uri,
            "-n",
            "5",
            "-a",
            "flag-pass",
            "--no-auth-warning",
        ])
        .port(server.port())
        .stdin(INPUT)
        .run();

    let mut client = Client::connect_auth(server.port(), None, "flag-pass");
    client.select(5);
    assert_loaded(&outcome, &mut client);
}

#[test]
fn a_database_the_server_lacks_fails_at_select() {
    let server = RedisServer::start();

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["-n", "99"])
        .stdin(INPUT)
        .run();

    outcome.assert_code(1).check(
        outcome.stderr_lines().iter().any(|line| {
            let message = line.strip_prefix("pipeload: ").unwrap_or(line);
            message.starts_with("SELECT") && message.contains("failed")
        }),
        "expected a line starting with `SELECT` (optionally after `pipeload: `) with `failed`",
    );
    assert_eq!(server.client().dbsize(), 0);
}

#[test]
fn unix_socket() {
    let server = RedisServer::start_with_unix_socket();

    let outcome = Pipeload::new()
        .arg("-s")
        .arg(server.unix_socket())
        .stdin(INPUT)
        .run();

    assert_loaded(&outcome, &mut server.client());
}

#[test]
fn host_port_connect_timeout_and_pipe_flags() {
    let server = RedisServer::start();

    let outcome = Pipeload::new()
        .args([
            "-h",
            "127.0.0.1",
            "-t",
            "5",
            "--pipe",
            "--pipe-timeout",
            "0",
        ])
        .port(server.port())
        .stdin(INPUT)
        .run();

    assert_loaded(&outcome, &mut server.client());
}

#[test]
fn host_name_is_resolved() {
    // `localhost` may resolve to ::1 first; the server listens on
    // 127.0.0.1 only, so every address must be tried.
    let server = RedisServer::start();

    let outcome = Pipeload::new()
        .args(["-h", "localhost"])
        .port(server.port())
        .stdin(INPUT)
        .run();

    assert_loaded(&outcome, &mut server.client());
}

#[test]
fn connection_refused() {
    let port = RedisServer::start().stop();

    let outcome = Pipeload::new().port(port).stdin(INPUT).run();

    outcome
        .assert_code(1)
        .assert_fatal_line(&format!(
            "Could not connect to Redis at 127.0.0.1:{port}: Connection refused"
        ))
        .check(
            !outcome.stdout_text().contains("errors:")
                && !outcome.stdout_text().contains("All data transferred"),
            "stdout must have no summary lines",
        );
}

#[test]
fn connection_refused_never_prints_the_uri_password() {
    let port = RedisServer::start().stop();
    let uri = format!("redis://loader:SecretInUri42@127.0.0.1:{port}/1");

    let outcome = Pipeload::new().args(["-u", &uri]).stdin(INPUT).run();

    outcome
        .assert_code(1)
        .assert_fatal_line(&format!(
            "Could not connect to Redis at 127.0.0.1:{port}: Connection refused"
        ))
        .assert_never_prints("SecretInUri42");
}

#[test]
fn missing_unix_socket_fails_cleanly() {
    let dir = TempDir::new("nosock");
    let socket = dir.path().join("absent.sock");

    let outcome = Pipeload::new().arg("-s").arg(&socket).stdin(INPUT).run();

    outcome
        .assert_code(1)
        .assert_fatal_line(&format!(
            "Could not connect to Redis at {}",
            socket.display()
        ))
        .check(
            !outcome.stdout_text().contains("errors:"),
            "stdout must have no summary lines",
        );
}

// --- --retry: a server that is not up yet -------------------------------

/// The line pipeload prints while it waits for the server on `port`, up to
/// the pause.
fn waiting_line(port: u16) -> String {
    format!(
        "pipeload: Could not connect to Redis at 127.0.0.1:{port}: Connection refused; retrying in "
    )
}

#[test]
fn retry_waits_for_a_server_that_is_not_up_yet() {
    const KEYS: usize = 2_000;
    let port = RedisServer::start().stop();

    // Without --retry: at once, in redis-cli's words.
    let refused = Pipeload::new().port(port).stdin(sets(KEYS)).run();
    refused
        .assert_code(1)
        .assert_fatal_line(&format!(
            "Could not connect to Redis at 127.0.0.1:{port}: Connection refused"
        ))
        .assert_stderr_lacks("retrying");

    // With --retry: it waits, saying so, until the server is there.
    let mut running = Pipeload::new().port(port).args(["--retry", "20"]).spawn();
    let mut stdin = running.take_stdin();
    let feeder = thread::spawn(move || {
        let _ = stdin.write_all(sets(KEYS).as_bytes());
    });
    running.wait_for_stderr(&waiting_line(port), Duration::from_secs(30));
    let server = RedisServer::start_on_port(port);
    let outcome = running.finish();
    let _ = feeder.join();

    let (summary, reconnects) = outcome.assert_retried_without_errors();
    outcome
        .check(
            summary.replies == KEYS as u64,
            format!("every one of the {KEYS} commands must be answered"),
        )
        .check(
            reconnects == 0,
            "waiting for the first connection is no reconnect",
        )
        .assert_stderr_contains("(attempt 1 of 20)");
    let mut client = server.client();
    assert_eq!(client.dbsize(), KEYS as i64, "{outcome}");
    for i in [0, KEYS / 2, KEYS - 1] {
        assert_eq!(
            client.get(format!("key:{i}")),
            Some(format!("value:{i}").into_bytes()),
            "{outcome}"
        );
    }
}

#[test]
fn retry_stops_waiting_for_the_server_at_a_signal() {
    let port = RedisServer::start().stop();
    // Twenty attempts would wait more than a minute.
    let mut running = Pipeload::new()
        .port(port)
        .args(["--retry", "20"])
        .guard(Duration::from_secs(30))
        .spawn();
    running.wait_for_stderr(&waiting_line(port), Duration::from_secs(30));

    running.signal("INT");
    let outcome = running.finish();

    outcome
        .assert_no_panic()
        .check(!outcome.status.success(), "nothing was loaded: not exit 0")
        .assert_fatal_line(&format!(
            "Could not connect to Redis at 127.0.0.1:{port}: Connection refused"
        ));
}

#[test]
fn retry_does_not_wait_out_a_refused_password() {
    let server = server_with_password("right");

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--retry", "20", "-a", "Wr0ngPassw0rd", "--no-auth-warning"])
        .stdin(INPUT)
        .run();

    assert_auth_failed(
        &outcome,
        &mut Client::connect_auth(server.port(), None, "right"),
        "Wr0ngPassw0rd",
    );
    outcome.assert_stderr_lacks("retrying");
}
