//! TLS (`--tls`, `rediss://`): loading through a real `redis-server` on a
//! TLS port, client certificates, certificate verification and its
//! failures, large records both ways, and `--pipe-timeout` over TLS.

use std::time::{Duration, Instant};

use crate::common::tls::{SilentTlsServer, TlsFiles, TlsRedis};
use crate::common::{Outcome, Pipeload, RedisServer, TempDir, sets};

/// Pipeload against the TLS server, trusting the test CA.
fn over_tls(server: &TlsRedis) -> Pipeload {
    Pipeload::new()
        .port(server.port())
        .arg("--tls")
        .arg("--cacert")
        .arg(&server.files().ca)
}

fn assert_nothing_loaded(outcome: &Outcome, server: &TlsRedis) {
    outcome.check(
        !outcome.stdout_text().contains("errors:"),
        "stdout must have no summary lines",
    );
    assert_eq!(server.client().dbsize(), 0, "{outcome}");
}

#[test]
fn loads_ten_thousand_sets_over_tls() {
    let server = TlsRedis::start(false);

    let outcome = over_tls(&server).stdin(sets(10_000)).run();

    outcome.assert_code(0).assert_summary(0, 10_000);
    let mut client = server.client();
    assert_eq!(client.dbsize(), 10_000, "{outcome}");
    for i in [0, 1, 4_999, 9_999] {
        assert_eq!(
            client.get(format!("key:{i}")),
            Some(format!("value:{i}").into_bytes()),
            "{outcome}"
        );
    }
}

#[test]
fn rediss_uri_means_tls() {
    let server = TlsRedis::start(false);

    for (scheme, db) in [("rediss", 2), ("valkeys", 3)] {
        let uri = format!("{scheme}://127.0.0.1:{}/{db}", server.port());
        let outcome = Pipeload::new()
            .args(["-u", &uri, "--cacert"])
            .arg(&server.files().ca)
            .stdin(format!("SET scheme {scheme}\n"))
            .run();

        outcome.assert_code(0).assert_summary(0, 1);
        let mut client = server.client();
        client.select(db);
        assert_eq!(
            client.get("scheme"),
            Some(scheme.as_bytes().to_vec()),
            "{outcome}"
        );
    }
}

#[test]
fn client_certificate_when_the_server_requires_one() {
    let server = TlsRedis::start(true);
    let files = server.files();

    let outcome = over_tls(&server)
        .arg("--cert")
        .arg(&files.client_cert)
        .arg("--key")
        .arg(&files.client_key)
        .stdin(sets(100))
        .run();

    outcome.assert_code(0).assert_summary(0, 100);
    assert_eq!(server.client().dbsize(), 100, "{outcome}");
}

#[test]
fn missing_client_certificate_fails_cleanly() {
    let server = TlsRedis::start(true);
    let port = server.port();

    let outcome = over_tls(&server).stdin(sets(100)).run();

    outcome.assert_code(1).assert_stderr_line_starts(&format!(
        "Could not connect to Redis at 127.0.0.1:{port}: TLS handshake failed: "
    ));
    assert_nothing_loaded(&outcome, &server);
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let server = TlsRedis::start(false);
    let port = server.port();

    let outcome = Pipeload::new()
        .port(port)
        .arg("--tls")
        .arg("--cacert")
        .arg(&server.files().other_ca)
        .stdin(sets(100))
        .run();

    outcome.assert_code(1).assert_stderr_line(&format!(
        "Could not connect to Redis at 127.0.0.1:{port}: TLS handshake failed: \
         invalid peer certificate: UnknownIssuer"
    ));
    outcome.check(
        outcome.stderr_text().lines().count() == 1,
        "exactly one line on stderr",
    );
    assert_nothing_loaded(&outcome, &server);
}

#[test]
fn insecure_skips_verification() {
    let server = TlsRedis::start(false);

    let outcome = Pipeload::new()
        .port(server.port())
        .arg("--tls")
        .arg("--cacert")
        .arg(&server.files().other_ca)
        .arg("--insecure")
        .stdin(sets(100))
        .run();

    outcome.assert_code(0).assert_summary(0, 100);
    assert_eq!(server.client().dbsize(), 100, "{outcome}");
}

#[test]
fn sni_is_the_name_the_certificate_must_match() {
    let server = TlsRedis::start(false);
    let port = server.port();

    let outcome = over_tls(&server)
        .args(["-h", "127.0.0.1", "--sni", "localhost"])
        .stdin(sets(10))
        .run();
    outcome.assert_code(0).assert_summary(0, 10);

    let outcome = over_tls(&server)
        .args(["--sni", "redis.example.org"])
        .stdin(sets(10))
        .run();
    outcome.assert_code(1).assert_stderr_line_starts(&format!(
        "Could not connect to Redis at 127.0.0.1:{port}: TLS handshake failed: \
         invalid peer certificate: "
    ));
}

#[test]
fn ca_certificate_directory() {
    let server = TlsRedis::start(false);
    let dir = TempDir::new("cacertdir");
    dir.write("ca.pem", std::fs::read(&server.files().ca).unwrap());
    dir.write("notes.txt", "not a certificate\n");

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["-h", "localhost", "--tls", "--cacertdir"])
        .arg(dir.path())
        .stdin(sets(10))
        .run();

    outcome.assert_code(0).assert_summary(0, 10);
}

#[test]
fn large_values_both_ways() {
    const VALUE_LEN: usize = 512 * 1024;
    let server = TlsRedis::start(false);
    let value = |i: usize| -> Vec<u8> {
        (0..VALUE_LEN)
            .map(|at| b"abcdefghijklmnopqrstuvwxyz0123456789"[(at * 7 + i) % 36])
            .collect()
    };
    // 20 SETs carry 10 MiB to the server, 20 GETs bring it back.
    let mut input = Vec::new();
    for i in 0..20 {
        input.extend_from_slice(format!("SET big:{i} ").as_bytes());
        input.extend_from_slice(&value(i));
        input.push(b'\n');
    }
    for i in 0..20 {
        input.extend_from_slice(format!("GET big:{i}\n").as_bytes());
    }

    let outcome = over_tls(&server).stdin(input).run();

    outcome.assert_code(0).assert_summary(0, 40);
    let mut client = server.client();
    for i in [0, 7, 19] {
        assert!(
            client.get(format!("big:{i}")) == Some(value(i)),
            "big:{i} differs\n{outcome}"
        );
    }
}

#[test]
fn pipe_timeout_over_tls() {
    let server = SilentTlsServer::start();
    let started = Instant::now();

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--tls", "--insecure", "--pipe-timeout", "1"])
        .stdin(sets(1_000))
        .run();

    outcome.assert_code(1).assert_stderr_line(
        "No replies for 1 seconds: line 1 (SET) is still waiting for its reply",
    );
    outcome.check(
        started.elapsed() < Duration::from_secs(20),
        "gave up within the timeout",
    );
    assert!(server.swallowed() > 0, "the commands reached the server");
}

#[test]
fn plain_server_fails_the_handshake_quickly() {
    let server = RedisServer::start();
    let port = server.port();
    let started = Instant::now();

    let outcome = Pipeload::new()
        .port(port)
        .args(["--tls", "--insecure", "-t", "2"])
        .stdin(sets(10))
        .run();

    outcome.assert_code(1).assert_stderr_line_starts(&format!(
        "Could not connect to Redis at 127.0.0.1:{port}: TLS handshake failed: "
    ));
    outcome.check(
        started.elapsed() < Duration::from_secs(20),
        "the connect timeout bounds the handshake",
    );
    assert_eq!(server.client().dbsize(), 0, "{outcome}");
}

#[test]
fn unreadable_certificate_files_fail_before_connecting() {
    let dir = TempDir::new("badpem");
    let garbage = dir.write("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64!\n");
    let missing = dir.path().join("missing.pem");
    // Port 1: nothing is listening, so a message about connecting would
    // mean the files were read too late.
    for (flags, file) in [
        (vec!["--cacert"], &missing),
        (vec!["--cacert"], &garbage),
        (vec!["--cacertdir"], &missing),
    ] {
        let outcome = Pipeload::new()
            .port(1)
            .arg("--tls")
            .args(flags)
            .arg(file)
            .stdin(sets(1))
            .run();
        outcome
            .assert_code(1)
            .assert_stderr_line_starts("pipeload: cannot read CA certificate")
            .assert_stderr_contains(&file.display().to_string())
            .assert_stderr_lacks("Could not connect");
    }

    let files = TlsFiles::new();
    let outcome = Pipeload::new()
        .port(1)
        .arg("--tls")
        .arg("--cert")
        .arg(&files.client_cert)
        .arg("--key")
        .arg(&missing)
        .stdin(sets(1))
        .run();
    outcome
        .assert_code(1)
        .assert_stderr_line_starts("pipeload: cannot read private key")
        .assert_stderr_contains(&missing.display().to_string());

    let outcome = Pipeload::new()
        .port(1)
        .arg("--tls")
        .arg("--cert")
        .arg(&files.client_cert)
        .arg("--key")
        .arg(&files.server_key)
        .stdin(sets(1))
        .run();
    outcome
        .assert_code(1)
        .assert_stderr_line_starts("pipeload: client certificate")
        .assert_stderr_contains("does not match private key");
}

#[test]
fn certificate_without_key_is_a_usage_error() {
    let files = TlsFiles::new();

    let outcome = Pipeload::new()
        .port(1)
        .arg("--tls")
        .arg("--cert")
        .arg(&files.client_cert)
        .stdin(sets(1))
        .run();

    outcome.assert_code(2);
}
