//! The summary tells the truth at every stop: a signal that lands as the
//! input ends, a signal while connecting, `--max-errors` (the failed
//! commands are named for a re-run, and a load whose every command was
//! answered is not "resumed"), `--pipe-timeout` (the commands in flight are
//! named, since they may have run), and an input that ends inside `MULTI`.
//! In each case following the printed advice, once the cause is fixed,
//! leaves every command applied, and nothing twice but what the summary
//! names as in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::{
    FakeServer, Outcome, Pipeload, RedisServer, TempDir, middle_line_end, sets, wait_until,
};

/// The value of the stdout line `name: value`, if there is one.
fn summary_line(outcome: &Outcome, name: &str) -> Option<String> {
    let prefix = format!("{name}: ");
    outcome
        .stdout_lines()
        .iter()
        .find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
}

// --- Signals ------------------------------------------------------------------

#[test]
fn a_signal_that_lands_as_the_input_ends_is_not_lost() {
    // `producer | pipeload` and Ctrl-C: the producer dies too, so the input
    // ends in the same instant. The load must still show the stop.
    let server = RedisServer::start();
    for attempt in 0..20 {
        let mut running = Pipeload::new().port(server.port()).spawn();
        running
            .write_stdin(format!("SET r {attempt}\n").as_bytes())
            .expect("write to pipeload's stdin");
        let mut client = server.client();
        wait_until(Duration::from_secs(30), "the server has the SET", || {
            client.get("r") == Some(attempt.to_string().into_bytes())
        });

        // Held still while the signal is sent and the input ends, so that
        // both are there at once when it goes on.
        running.signal("STOP");
        running.signal("INT");
        running.close_stdin();
        running.signal("CONT");
        let outcome = running.finish();

        let acknowledged = outcome.assert_stopped(130);
        outcome.check(
            acknowledged == 1,
            format!("attempt {attempt}: the one command was answered: `acknowledged: 1`"),
        );
    }
}

#[test]
fn a_signal_while_connecting_ends_the_run_with_its_summary() {
    // A server that takes the connection and never answers AUTH.
    let asked = Arc::new(AtomicBool::new(false));
    let auth_seen = Arc::clone(&asked);
    let fake = FakeServer::start(move |mut conn| {
        while conn.next_command().is_some() {
            auth_seen.store(true, Ordering::SeqCst);
        }
    });

    let mut running = Pipeload::new()
        .port(fake.port())
        .args(["-a", "secret", "--no-auth-warning", "--skip", "7"])
        .spawn();
    running.write_stdin(sets(10).as_bytes()).expect("write");
    wait_until(Duration::from_secs(30), "pipeload sent AUTH", || {
        asked.load(Ordering::SeqCst)
    });
    running.signal("INT");
    let exited = running.wait_for_exit(Duration::from_secs(10));
    let outcome = running.finish();
    fake.finish();

    outcome.check(
        exited.is_some(),
        "one SIGINT while connecting must end the run",
    );
    let acknowledged = outcome.assert_stopped(130);
    outcome
        .check(
            acknowledged == 7,
            "nothing was sent: the resume point is the --skip given",
        )
        .assert_stderr_contains("before loading");
}

/// With `CLIENT REPLY OFF`, nothing answers the commands sent: a stop
/// confirms them (a marker the server answers) before the summary, so the
/// resume point passes every command that ran and none is "in flight";
/// over several connections, only those the summary names as answered
/// after the resume point run twice.
fn a_stop_with_replies_off_resumes_without_running_anything_twice(connections: &str) {
    let server = RedisServer::start();
    let count = 200_000;
    let mut input = String::from("CLIENT REPLY OFF\n");
    for i in 0..count {
        input.push_str(&format!("INCR counter:{i}\n"));
    }
    let input = input.into_bytes();
    let args = ["--connections", connections];
    let mut running = Pipeload::new()
        .port(server.port())
        .args(args)
        .guard(Duration::from_secs(60))
        .spawn();
    let half = middle_line_end(&input);
    running.write_stdin(&input[..half]).expect("write");
    let mut client = server.client();
    wait_until(Duration::from_secs(30), "a quarter of the counters", || {
        client.dbsize() >= count / 4
    });
    running.signal("TERM");
    let first = running.finish();
    let acknowledged = first.assert_stopped(143);
    first.check(
        summary_line(&first, "in flight").is_none(),
        "the commands sent with replies off were confirmed at the stop",
    );
    let twice: i64 = summary_line(&first, "answered after it")
        .map_or(0, |line| line.split(' ').next().unwrap().parse().unwrap());
    let second = Pipeload::new()
        .port(server.port())
        .args(args)
        .args(["--skip", &acknowledged.to_string()])
        .stdin(input)
        .run();
    second.assert_code(0);
    let values = client
        .cmd(&[
            "EVAL",
            "local ones, twos = 0, 0 \
             for i = 0, tonumber(ARGV[1]) - 1 do \
               local value = redis.call('GET', 'counter:' .. i) \
               if value == '1' then ones = ones + 1 elseif value == '2' then twos = twos + 1 end \
             end return {ones, twos}",
            "0",
            &count.to_string(),
        ])
        .into_array();
    let (ones, twos) = (values[0].as_int(), values[1].as_int());
    assert_eq!(
        (ones, twos),
        (count - twos, twice),
        "every counter once but those named as answered after the resume point\n{first}\n{second}"
    );
}

#[test]
fn a_stop_with_replies_off_resumes_without_running_anything_twice_over_one_connection() {
    a_stop_with_replies_off_resumes_without_running_anything_twice("1");
}

#[test]
fn a_stop_with_replies_off_resumes_without_running_anything_twice_over_four_connections() {
    a_stop_with_replies_off_resumes_without_running_anything_twice("4");
}

// --- --max-errors ----------------------------------------------------------------

/// Every key `key:i` for i in 0..count holds `value:i`.
fn assert_every_set_applied(server: &RedisServer, count: usize, outcome: &Outcome) {
    let mut client = server.client();
    assert_eq!(client.dbsize(), count as i64, "{outcome}");
    for i in (0..count).step_by(97).chain([count - 1]) {
        assert_eq!(
            client.get(format!("key:{i}")),
            Some(format!("value:{i}").into_bytes()),
            "key:{i} after following the advice\n{outcome}"
        );
    }
}

#[test]
fn following_the_advice_after_max_errors_applies_every_command() {
    const COMMANDS: usize = 200_000;
    let server = RedisServer::start();
    let mut client = server.client();
    // Room for a few thousand keys, then every SET fails with OOM.
    client.ok(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    let used: u64 = String::from_utf8_lossy(
        &client
            .cmd(&["INFO", "memory"])
            .into_bulk()
            .unwrap_or_default(),
    )
    .lines()
    .find_map(|line| line.strip_prefix("used_memory:")?.trim().parse().ok())
    .expect("INFO memory has used_memory");
    client.ok(&[
        "CONFIG",
        "SET",
        "maxmemory",
        &(used + 512 * 1024).to_string(),
    ]);
    let dir = TempDir::new("max-errors");
    let errors_file = dir.path().join("failed.txt");
    let input = sets(COMMANDS);

    let stopped = Pipeload::new()
        .port(server.port())
        .args(["--max-errors", "100", "--errors-file"])
        .arg(&errors_file)
        .guard(Duration::from_secs(240))
        .stdin(input.clone())
        .run();

    let acknowledged = stopped.assert_stopped(1);
    let failed = summary_line(&stopped, "failed")
        .unwrap_or_else(|| stopped.fail("the summary must name the failed commands"));
    stopped.check(
        failed.contains(&errors_file.display().to_string()),
        "the `failed:` line must say the failed commands are in the errors file",
    );
    // The cause is fixed; then the advice is followed: the errors file,
    // then the input from the resume point.
    client.ok(&["CONFIG", "SET", "maxmemory", "0"]);
    let reloaded = Pipeload::new()
        .port(server.port())
        .arg(&errors_file)
        .guard(Duration::from_secs(240))
        .run();
    reloaded.assert_code(0);
    let resumed = Pipeload::new()
        .port(server.port())
        .args(["--skip", &acknowledged.to_string()])
        .guard(Duration::from_secs(240))
        .stdin(input)
        .run();
    resumed.assert_code(0);
    assert_every_set_applied(&server, COMMANDS, &stopped);
}

#[test]
fn max_errors_after_every_command_was_answered_is_no_early_stop() {
    // The whole input is in flight before the limit is reached: it all
    // gets answered, so nothing is left to resume.
    let server = RedisServer::start();
    let mut input = String::from("SET s notanumber\n");
    input.push_str(&"INCR s\n".repeat(298));
    input.push_str("SET last 1\n");

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--max-errors", "5"])
        .stdin(input)
        .run();

    outcome
        .assert_code(1)
        .assert_stderr_contains("stopping after")
        .check(
            summary_line(&outcome, "resume with").is_none(),
            "every command was answered: there is nothing to resume",
        )
        .assert_summary(298, 300);
    assert!(server.client().exists("last"), "{outcome}");
}

// --- --pipe-timeout -----------------------------------------------------------------

#[test]
fn after_a_pipe_timeout_the_commands_in_flight_are_named() {
    const BEFORE: usize = 300;
    const AFTER: usize = 300;
    let server = RedisServer::start();
    let incrs = |range: std::ops::Range<usize>| -> String {
        range.map(|i| format!("INCR counter:{i}\n")).collect()
    };
    // A DEBUG answered first, so that the window knows its reply is small
    // and sends what follows the long one along with it.
    let answered_first = format!("DEBUG SLEEP 0\n{}", incrs(0..BEFORE));
    let caught_in_sleep = format!("DEBUG SLEEP 2\n{}", incrs(BEFORE..BEFORE + AFTER));
    let input = format!("{answered_first}{caught_in_sleep}");

    let mut running = Pipeload::new()
        .port(server.port())
        .args(["--pipe-timeout", "1"])
        .spawn();
    running
        .write_stdin(answered_first.as_bytes())
        .expect("write");
    let mut client = server.client();
    wait_until(Duration::from_secs(30), "the first INCRs ran", || {
        client.exists(format!("counter:{}", BEFORE - 1))
    });
    running
        .write_stdin(caught_in_sleep.as_bytes())
        .expect("write");
    let stopped = running.finish();

    let acknowledged = stopped.assert_stopped(1) as usize;
    let in_flight: usize = summary_line(&stopped, "in flight")
        .and_then(|line| line.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| stopped.fail("the summary must count the commands in flight"));
    stopped.check(
        acknowledged + in_flight == 1 + BEFORE + 1 + AFTER,
        "every command after the resume point was sent, so in flight",
    );
    // The server ran them after pipeload gave up; the resume runs them again.
    let resumed = Pipeload::new()
        .port(server.port())
        .args(["--skip", &acknowledged.to_string(), "--pipe-timeout", "30"])
        .stdin(input)
        .run();
    resumed.assert_code(0);
    for i in 0..BEFORE + AFTER {
        let seq = if i < BEFORE { i + 2 } else { i + 3 };
        let named_in_flight = (acknowledged + 1..=acknowledged + in_flight).contains(&seq);
        let runs = client
            .get(format!("counter:{i}"))
            .and_then(|value| String::from_utf8(value).ok());
        let expected: &[&str] = match named_in_flight {
            true => &["1", "2"],
            false => &["1"],
        };
        assert!(
            runs.as_deref().is_some_and(|runs| expected.contains(&runs)),
            "counter:{i} (command {seq}) is {runs:?}: only commands named in flight may run twice\n{stopped}"
        );
    }
}

// --- MULTI -------------------------------------------------------------------------

#[test]
fn an_input_that_ends_inside_multi_is_not_complete() {
    let server = RedisServer::start();
    let cut = "INCR m0\nMULTI\nSET m1 1\n";

    let stopped = Pipeload::new().port(server.port()).stdin(cut).run();

    let acknowledged = stopped.assert_stopped(1);
    stopped
        .check(acknowledged == 1, "only the INCR before MULTI was applied")
        .assert_stderr_contains("line 2: the input ended inside this MULTI");
    let mut client = server.client();
    assert!(!client.exists("m1"), "{stopped}");
    // The file is mended, then the load resumed as advised.
    let resumed = Pipeload::new()
        .port(server.port())
        .args(["--skip", &acknowledged.to_string()])
        .stdin(format!("{cut}EXEC\n"))
        .run();
    resumed.assert_complete_summary(0, 3);
    assert_eq!(client.get("m0"), Some(b"1".to_vec()), "{resumed}");
    assert_eq!(client.get("m1"), Some(b"1".to_vec()), "{resumed}");
}
