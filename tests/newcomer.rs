//! A newcomer's first ten minutes: the samples in `testdata/` load as
//! `testdata/README.md` says, and what surprises a new user gets one clear
//! line (the `redis-cli` flags pipeload takes, `--skip` beyond the input, a
//! cluster node without `-c`, a port that does not speak RESP, a blocking
//! command, the errors file's mode).

use crate::common::{FakeServer, Pipeload, RedisServer, TempDir};

/// pipeload run from the repository's top, as the README's commands are,
/// so `testdata/…` names the samples.
fn from_the_top() -> Pipeload {
    Pipeload::new().current_dir(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_quoting_sample_stores_every_value_byte_for_byte() {
    let server = RedisServer::start();

    let outcome = from_the_top()
        .port(server.port())
        .arg("testdata/quoting.txt")
        .run();

    outcome.assert_summary(0, 11);
    let mut client = server.client();
    let expected: [(&str, &[u8]); 7] = [
        ("greeting", b"hello world"),
        ("path", br"C:\Users\dan"),
        ("tab", b"one\ttwo"),
        ("quote", b"it's here"),
        ("said", b"she said \"hi\""),
        ("empty", b""),
        ("bytes", b"\x00\xffA"),
    ];
    for (key, value) in expected {
        assert_eq!(client.get(key).as_deref(), Some(value), "{key}\n{outcome}");
    }
    assert_eq!(
        client.lrange("fruits"),
        [
            b"apple".to_vec(),
            b"passion fruit".to_vec(),
            b"kiwi".to_vec()
        ]
    );
    assert_eq!(
        client.hgetall("user:1").get(b"name".as_slice()).cloned(),
        Some(b"Smith, John".to_vec())
    );
    assert_eq!(client.get("visits"), Some(b"2".to_vec()));
}

#[test]
fn the_bad_lines_sample_reports_four_errors_by_line_and_loads_the_rest() {
    bad_lines_sample_loads_around_its_errors(&RedisServer::start());
}

/// The bad-lines sample loaded into `server`: four errors named by file
/// and line, every other line loaded (shared with the Valkey tests).
pub(crate) fn bad_lines_sample_loads_around_its_errors(server: &RedisServer) {
    let outcome = from_the_top()
        .port(server.port())
        .arg("testdata/mixed-with-bad-lines.txt")
        .run();

    outcome
        .assert_code(1)
        .assert_summary(4, 7)
        .assert_stderr_line("testdata/mixed-with-bad-lines.txt:3: not sent: unbalanced quotes")
        .assert_stderr_line_starts("testdata/mixed-with-bad-lines.txt:5: WRONGTYPE")
        .assert_stderr_line_starts("testdata/mixed-with-bad-lines.txt:7: ERR unknown command")
        .assert_stderr_line_starts("testdata/mixed-with-bad-lines.txt:8: not sent:");
    let mut client = server.client();
    assert_eq!(client.get("counter"), Some(b"15".to_vec()));
    assert_eq!(client.get("after"), Some(b"still loaded".to_vec()));
    assert!(!client.exists("note") && !client.exists("closing"));
    assert_eq!(client.dbsize(), 4, "counter, list, after, h\n{outcome}");
}

#[test]
fn the_resp_samples_load_binary_values_databases_and_transactions() {
    resp_samples_load_binary_values_databases_and_transactions(&RedisServer::start());
}

/// The RESP samples loaded into `server`: binary values byte for byte, the
/// AOF's `SELECT` and `MULTI`/`EXEC` into db 0 and db 2 (shared with the
/// Valkey tests).
pub(crate) fn resp_samples_load_binary_values_databases_and_transactions(server: &RedisServer) {
    let outcome = from_the_top()
        .port(server.port())
        .arg("testdata/binary-values.resp")
        .arg("testdata/select-and-multi.aof")
        .run();

    outcome.assert_summary(0, 17);
    let mut client = server.client();
    assert_eq!(
        client.get("resp:greeting"),
        Some(b"hello\r\nwith a line break".to_vec())
    );
    assert_eq!(
        client.get("resp:binary"),
        Some(b"\x00\x01\xfe\xff".to_vec())
    );
    assert_eq!(client.get("aof:a"), Some(b"2".to_vec()));
    assert_eq!(client.lrange("aof:log"), [b"incremented".to_vec()]);
    assert!(!client.exists("aof:in-db-2"), "db 2's key leaked into db 0");
    client.select(2);
    assert_eq!(client.get("aof:in-db-2"), Some(b"yes".to_vec()));
    assert_eq!(
        client.hgetall("aof:h").get(b"f".as_slice()).cloned(),
        Some(b"v".to_vec())
    );
}

#[test]
fn redis_cli_flags_with_pipe_are_taken() {
    let server = RedisServer::start();

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["-2", "--pipe", "--pipe", "--pipe-timeout", "2.5"])
        .stdin("SET parity yes\n")
        .run();

    outcome.assert_summary(0, 1);
    assert_eq!(server.client().get("parity"), Some(b"yes".to_vec()));
}

#[test]
fn askpass_without_a_terminal_reads_stdins_first_line_as_redis_cli_does() {
    let server = RedisServer::start();
    server
        .client()
        .ok(&["CONFIG", "SET", "requirepass", "s3cret"]);

    // -a and REDISCLI_AUTH are ignored under --askpass, as in redis-cli.
    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--askpass", "-a", "wrong"])
        .env("REDISCLI_AUTH", "wrong too")
        .stdin("s3cret\r\nSET asked yes\nSET second line\n")
        .run();

    outcome
        .assert_summary(0, 2)
        .assert_stderr_lacks("Warning: Using a password")
        .assert_never_prints("s3cret");
    let mut client = crate::common::Client::connect_auth(server.port(), None, "s3cret");
    assert_eq!(client.get("asked"), Some(b"yes".to_vec()));
    assert_eq!(client.get("second"), Some(b"line".to_vec()));
    assert_eq!(
        client.dbsize(),
        2,
        "the password line is not a command\n{outcome}"
    );
}

#[test]
fn askpass_with_no_password_line_fails_with_its_json_summary() {
    let server = RedisServer::start();

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--askpass", "--json"])
        .stdin("")
        .run();

    outcome
        .assert_code(1)
        .assert_fatal_line("--askpass: stdin is not a terminal and ended before a password line");
    let json = outcome.stdout_text();
    outcome.check(
        json.starts_with("{\"completed\":false,")
            && json.contains("\"failures\":[\"--askpass: stdin is not a terminal"),
        "one JSON object naming the failure",
    );
}

#[test]
fn a_tls_cipher_rustls_does_not_offer_is_refused_with_what_it_offers() {
    let server = RedisServer::start();

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--tls", "--tls-ciphers", "HIGH:!aNULL"])
        .stdin("SET never sent\n")
        .run();

    outcome.assert_code(1).assert_fatal_line(
        "--tls-ciphers: 'HIGH' is not one pipeload's TLS (rustls) offers; it offers ECDHE-",
    );
    assert_eq!(server.client().dbsize(), 0);
}

#[test]
fn skip_beyond_the_input_is_an_error_naming_how_many_commands_it_has() {
    let server = RedisServer::start();

    let outcome = from_the_top()
        .port(server.port())
        .args(["--skip", "12", "testdata/quoting.txt"])
        .run();

    outcome
        .assert_code(1)
        .assert_fatal_line(
            "--skip 12 is beyond the end of the input, which has 11 commands: nothing was sent",
        )
        .assert_stderr_lacks("resume with");
    assert_eq!(server.client().dbsize(), 0);

    // Skipping exactly the whole input is a resume with nothing left.
    from_the_top()
        .port(server.port())
        .args(["--skip", "11", "testdata/quoting.txt"])
        .run()
        .assert_summary(0, 0);
}

#[test]
fn the_errors_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;

    let server = RedisServer::start();
    let dir = TempDir::new("newcomer");
    // A file left world-readable by an earlier run is narrowed too.
    dir.write("earlier.txt", "old\n");
    let earlier = dir.path().join("earlier.txt");
    std::fs::set_permissions(&earlier, std::fs::Permissions::from_mode(0o644)).unwrap();

    for name in ["new.txt", "earlier.txt"] {
        let outcome = Pipeload::new()
            .port(server.port())
            .arg("--errors-file")
            .arg(dir.path().join(name))
            .stdin("AUTH loader not-the-password\nSET ok 1\n")
            .run();
        outcome.assert_summary(1, 2);
        let file = dir.path().join(name);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}\n{outcome}");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "AUTH loader not-the-password\n"
        );
    }
}

#[test]
fn emit_resp_writes_the_refused_lines_to_the_errors_file() {
    let dir = TempDir::new("newcomer");
    let errors = dir.path().join("refused.txt");

    let outcome = from_the_top()
        .args([
            "--emit-resp",
            "testdata/mixed-with-bad-lines.txt",
            "--errors-file",
        ])
        .arg(&errors)
        .run();

    outcome.assert_code(1);
    assert_eq!(
        std::fs::read_to_string(&errors).unwrap(),
        "SET note \"an unbalanced quote\nSET closing \"quote\"followed\n"
    );
    assert!(
        outcome
            .stdout_text()
            .starts_with("*3\r\n$3\r\nSET\r\n$7\r\ncounter\r\n")
    );
}

#[test]
fn a_port_that_does_not_speak_resp_shows_what_it_sent() {
    let http_proxy = FakeServer::start(|mut conn| {
        conn.next_command();
        conn.send(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n");
        conn.drain();
    });

    let outcome = Pipeload::new()
        .port(http_proxy.port())
        .stdin("SET a 1\n")
        .run();

    outcome.assert_code(1).assert_fatal_line(
        "connection lost: the server's reply is not RESP: unknown reply type byte; \
         it sent \"HTTP/1.1 400 Bad Request\\r\\nContent-Type: \"...: is this a Redis server?",
    );
    http_proxy.finish();
}

#[test]
fn a_blocking_command_is_warned_about_and_named_when_replies_stop() {
    let server = RedisServer::start();

    // 1.5 s: long enough that `SET before` is answered first on a busy
    // machine, so the head of the queue is the BLPOP.
    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--pipe-timeout", "1.5"])
        .stdin("SET before 1\nBLPOP nolist 0\nBRPOP nolist 0\nSET after 1\n")
        .run();

    outcome
        .assert_code(1)
        .assert_stderr_line(
            "pipeload: warning: line 2: BLPOP can block: no command after it is answered \
             until it returns (further ones are not reported)",
        )
        .assert_stderr_lacks("BRPOP can block")
        .assert_fatal_line(
            "No replies for 1.5 seconds: line 2 (BLPOP) is still waiting for its reply",
        );
    outcome.check(
        outcome
            .stdout_lines()
            .iter()
            .any(|line| line == "resume with: --skip 1"),
        "the resume point is the blocking command",
    );
    assert_eq!(server.client().get("before"), Some(b"1".to_vec()));
}

#[test]
fn a_cluster_node_without_dash_c_hints_once_at_dash_c() {
    use crate::common::TestCluster;
    use crate::common::cluster::tag_on_node;

    let cluster = TestCluster::start();
    let here = tag_on_node("here", 0);
    let elsewhere = [tag_on_node("away", 1), tag_on_node("away", 2)];
    let input = format!(
        "SET {{{here}}}k 1\nSET {{{}}}k 1\nSET {{{}}}k 1\n",
        elsewhere[0], elsewhere[1]
    );

    let outcome = Pipeload::new().port(cluster.port(0)).stdin(input).run();

    outcome.assert_code(1).assert_summary(2, 3);
    let hints: Vec<String> = outcome
        .stderr_lines()
        .into_iter()
        .filter(|line| line.contains("add -c"))
        .collect();
    assert_eq!(
        hints,
        [
            "pipeload: hint: the server answered MOVED: it is a cluster node; add -c to load the whole cluster"
        ],
        "{outcome}"
    );
    outcome.assert_stderr_line_starts("line 2: MOVED ");
    assert_eq!(cluster.get(format!("{{{here}}}k")), Some(b"1".to_vec()));
    assert_eq!(cluster.total_keys(), 1);
}

#[test]
fn commands_typed_at_a_terminal_are_announced_once_and_load() {
    use std::io::Write;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::process::{Command, Stdio};

    let server = RedisServer::start();
    let (mut controller, terminal) = {
        let (mut controller, mut terminal) = (-1, -1);
        // SAFETY: openpty fills two descriptors, owned from here on.
        let opened = unsafe {
            libc::openpty(
                &mut controller,
                &mut terminal,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both were just opened and nothing else owns them.
        unsafe {
            (
                std::fs::File::from(OwnedFd::from_raw_fd(controller)),
                OwnedFd::from_raw_fd(terminal),
            )
        }
    };
    let child = Command::new(env!("CARGO_BIN_EXE_pipeload"))
        .args(["-p", &server.port().to_string()])
        .stdin(Stdio::from(terminal))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pipeload");
    // A typed line, then Ctrl-D at the start of the next: the end of input.
    controller.write_all(b"SET typed yes\n\x04").unwrap();
    let output = child.wait_with_output().expect("pipeload ends at Ctrl-D");
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert_eq!(
        stderr,
        "pipeload: reading commands from the terminal, one per line; end with Ctrl-D\n"
    );
    assert!(output.status.success(), "{stderr}");
    assert_eq!(server.client().get("typed"), Some(b"yes".to_vec()));
}

#[test]
fn the_man_page_renders_with_every_section_a_reader_looks_for() {
    let dir = TempDir::new("newcomer");
    let outcome = Pipeload::new().arg("--man").run();
    outcome.assert_code(0);
    let page = dir.path().join("pipeload.1");
    std::fs::write(&page, outcome.stdout_text()).unwrap();
    let sections = [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "INPUT",
        "OPTIONS",
        "EXIT STATUS",
        "ENVIRONMENT",
        "RESUMING",
        "EXAMPLES",
        "SEE ALSO",
    ];
    // Rendered as `man` renders it, when groff is installed: no warning,
    // and the headings in order; else the headings in the roff source.
    let rendered = std::process::Command::new("groff")
        // Plain text: no bold or underline by overstriking.
        .args(["-man", "-Tutf8", "-ww", "-P-cbou"])
        .arg(&page)
        .output();
    let headings: Vec<String> = match rendered {
        Ok(rendered) => {
            let warnings = String::from_utf8_lossy(&rendered.stderr);
            assert!(
                rendered.status.success() && warnings.is_empty(),
                "{warnings}"
            );
            let text = String::from_utf8_lossy(&rendered.stdout);
            assert!(text.contains("REDISCLI_AUTH") && text.contains("--skip 183742"));
            assert!(text.contains("-p <PORT>"), "options keep their value names");
            let header = text.lines().next().unwrap_or_default();
            assert!(header.contains("User Commands"), "header: {header}");
            text.lines()
                .filter(|line| !line.is_empty() && !line.starts_with(' '))
                .map(str::to_owned)
                .collect()
        }
        Err(_) => outcome
            .stdout_lines()
            .iter()
            .filter_map(|line| line.strip_prefix(".SH "))
            .map(|heading| heading.trim_matches('"').to_owned())
            .collect(),
    };
    let found: Vec<&str> = sections
        .iter()
        .copied()
        .filter(|section| headings.iter().any(|heading| heading == section))
        .collect();
    assert_eq!(found, sections, "headings: {headings:?}");
    let order: Vec<usize> = sections
        .iter()
        .filter_map(|section| headings.iter().position(|heading| heading == section))
        .collect();
    assert!(order.is_sorted(), "headings out of order: {headings:?}");
    assert!(
        !outcome
            .stdout_text()
            .contains("Transfer raw Redis protocol"),
        "--pipe is described as what it does"
    );
}

#[test]
fn every_flag_in_help_is_in_the_readmes_tables() {
    let help = Pipeload::new().arg("--help").run();
    help.assert_code(0);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let table_rows: Vec<&str> = readme
        .lines()
        .filter(|line| line.starts_with('|'))
        .collect();
    let flags: Vec<String> = help
        .stdout_lines()
        .iter()
        .map(|line| line.trim_start())
        .filter(|line| line.starts_with('-'))
        .flat_map(|line| {
            line.split([' ', ','])
                .take_while(|word| word.is_empty() || word.starts_with('-'))
                // Not the "- auto: …" lines listing a flag's values.
                .filter(|word| word.len() > 1)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(flags.len() > 40, "flags found in --help: {flags:?}");
    let missing: Vec<&String> = flags
        .iter()
        .filter(|flag| {
            !table_rows.iter().any(|row| {
                [" ", "`", "\\"]
                    .iter()
                    .any(|after| row.contains(&format!("`{flag}{after}")))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "flags of --help missing from the README's tables: {missing:?}"
    );
}
