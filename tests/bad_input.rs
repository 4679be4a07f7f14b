//! Bad input, case by case: each with its exact stderr line and what the
//! database holds around it. Text lines that cannot be split are reported
//! and skipped; control bytes and invalid UTF-8 load as they are; a BOM at
//! the start of a text input is skipped; a malformed RESP frame or a source
//! that fails mid-read stops the load where it is (what came before is
//! loaded, and the resume point is printed); a FILE that cannot be opened
//! stops the run before anything is sent.

use std::borrow::Cow;
use std::time::Duration;

use crate::common::{Client, Outcome, Pipeload, RedisServer, TempDir, resp_command};

const BOM: &[u8] = b"\xEF\xBB\xBF";
const UNBALANCED: &str = "not sent: unbalanced quotes";
const AFTER_QUOTE: &str =
    "not sent: closing quote must be followed by a space or the end of the line";
const NUL: &str = "not sent: NUL byte in a text line (write it as \\x00 inside double quotes)";

/// Lines refused before sending, each with its reason, among lines that
/// load: (input, position of each refused line → its message).
fn refused_lines_input(ending: &[u8]) -> (Vec<u8>, Vec<(u64, &'static str)>) {
    let lines: [&[u8]; 10] = [
        b"SET before 1",
        b"SET q1 \"unbalanced",
        b"SET q2 'also unbalanced",
        b"SET q3 \"closed\"x",
        b"SET q4 'closed'x",
        b"SET n1 a\0b",
        b"SET n2 \"a\0b\"",
        b"SET n3 \"a\\x00b\"",
        b"SET q5 \"closed\"\"again\"",
        b"SET after 2",
    ];
    let mut input = Vec::new();
    for line in lines {
        input.extend_from_slice(line);
        input.extend_from_slice(ending);
    }
    let refused = vec![
        (2, UNBALANCED),
        (3, UNBALANCED),
        (4, AFTER_QUOTE),
        (5, AFTER_QUOTE),
        (6, NUL),
        (7, NUL),
        (9, AFTER_QUOTE),
    ];
    (input, refused)
}

/// The three lines that load did, and nothing else.
fn assert_only_good_lines_loaded(client: &mut Client, outcome: &Outcome) {
    assert_eq!(client.get("before"), Some(b"1".to_vec()), "{outcome}");
    assert_eq!(client.get("n3"), Some(b"a\0b".to_vec()), "{outcome}");
    assert_eq!(client.get("after"), Some(b"2".to_vec()), "{outcome}");
    assert_eq!(
        client.dbsize(),
        3,
        "only the good lines may load\n{outcome}"
    );
}

#[test]
fn refused_text_lines_on_stdin_are_reported_with_their_line() {
    for ending in [&b"\n"[..], b"\r\n"] {
        let server = RedisServer::start();
        let (input, refused) = refused_lines_input(ending);

        let outcome = Pipeload::new().port(server.port()).stdin(input).run();

        outcome.assert_summary(refused.len() as u64, 3);
        for (line_no, message) in &refused {
            outcome.assert_stderr_line(&format!("line {line_no}: {message}"));
        }
        outcome.check(
            outcome
                .stderr_lines()
                .iter()
                .filter(|line| !line.is_empty())
                .count()
                == refused.len(),
            "stderr must hold exactly one line per refused line",
        );
        assert_only_good_lines_loaded(&mut server.client(), &outcome);
    }
}

#[test]
fn refused_text_lines_in_a_file_are_reported_with_file_and_line() {
    let server = RedisServer::start();
    let dir = TempDir::new("bad-input");
    let (input, refused) = refused_lines_input(b"\r\n");
    std::fs::create_dir(dir.path().join("in")).expect("create in/");
    dir.write("in/data.txt", &input);

    let outcome = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .arg("in/data.txt")
        .run();

    outcome.assert_summary(refused.len() as u64, 3);
    for (line_no, message) in &refused {
        outcome.assert_stderr_line(&format!("in/data.txt:{line_no}: {message}"));
    }
    assert_only_good_lines_loaded(&mut server.client(), &outcome);
}

#[test]
fn control_bytes_and_invalid_utf8_load_as_they_are() {
    let server = RedisServer::start();
    // (key, value as written on the line, value stored)
    let cases: &[(&[u8], &[u8], &[u8])] = &[
        (b"c:soh", b"a\x01b", b"a\x01b"),
        (b"c:del", b"\x7f", b"\x7f"),
        (b"c:esc", b"\x1b[31mred\x1b[0m", b"\x1b[31mred\x1b[0m"),
        (b"c:bs", b"back\x08space", b"back\x08space"),
        (b"c:us", b"\x1f\x02\x03", b"\x1f\x02\x03"),
        (b"u:ff", b"\xff\xfe", b"\xff\xfe"),
        (b"u:cut", b"caf\xc3", b"caf\xc3"),
        (b"u:overlong", b"\xc0\xaf", b"\xc0\xaf"),
        (b"u:surrogate", b"\xed\xa0\x80", b"\xed\xa0\x80"),
        (b"u:quoted", b"\"\xff \x01\"", b"\xff \x01"),
        (b"\xff\x01key", b"v", b"v"),
        (b"u:bom-inside", b"\xEF\xBB\xBFv", b"\xEF\xBB\xBFv"),
    ];
    let mut input = Vec::new();
    for (key, written, _) in cases {
        input.extend_from_slice(b"SET ");
        input.extend_from_slice(key);
        input.push(b' ');
        input.extend_from_slice(written);
        input.push(b'\n');
    }

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    outcome.assert_summary(0, cases.len() as u64);
    let mut client = server.client();
    for (key, _, stored) in cases {
        assert_eq!(
            client.get(key).as_deref(),
            Some(*stored),
            "key {:?}\n{outcome}",
            key.escape_ascii().to_string()
        );
    }
    assert_eq!(client.dbsize(), cases.len() as i64, "{outcome}");
}

#[test]
fn a_bom_at_the_start_of_stdin_is_skipped() {
    let server = RedisServer::start();
    let mut input = BOM.to_vec();
    input.extend_from_slice(b"SET bom:first 1\nSET bom:second 2\n");

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    outcome.assert_summary(0, 2);
    let mut client = server.client();
    assert_eq!(client.get("bom:first"), Some(b"1".to_vec()), "{outcome}");
    assert_eq!(client.get("bom:second"), Some(b"2".to_vec()), "{outcome}");
    assert_eq!(client.dbsize(), 2, "{outcome}");
}

#[test]
fn a_bom_at_the_start_of_each_file_is_skipped() {
    let server = RedisServer::start();
    let dir = TempDir::new("bad-input");
    let mut first = BOM.to_vec();
    first.extend_from_slice(b"SET one 1\r\nSET two 2\r\n");
    let mut second = BOM.to_vec();
    second.extend_from_slice(b"RPUSH list \"a b\"\n");
    let first = dir.write("first.txt", first);
    let second = dir.write("second.txt", second);

    let outcome = Pipeload::new()
        .port(server.port())
        .arg(&first)
        .arg(&second)
        .run();

    outcome.assert_summary(0, 3);
    let mut client = server.client();
    assert_eq!(client.get("one"), Some(b"1".to_vec()), "{outcome}");
    assert_eq!(client.get("two"), Some(b"2".to_vec()), "{outcome}");
    assert_eq!(client.lrange("list"), [b"a b".to_vec()], "{outcome}");
    assert_eq!(client.dbsize(), 3, "{outcome}");
}

#[test]
fn a_hundred_megabyte_text_line_loads() {
    const LEN: usize = 100_000_000;
    let server = RedisServer::start();
    let mut input = b"SET small 1\nSET big ".to_vec();
    input.reserve(LEN + 32);
    input.extend((0..LEN).map(|i| b'a' + (i % 26) as u8));
    input.extend_from_slice(b"\nSET after 2\n");

    let outcome = Pipeload::new()
        .port(server.port())
        .guard(Duration::from_secs(300))
        .stdin(input)
        .run();

    outcome.assert_summary(0, 3);
    let mut client = server.client();
    assert_eq!(
        client.ok(&["STRLEN", "big"]).as_int(),
        LEN as i64,
        "{outcome}"
    );
    for at in [0, 1, LEN / 2, LEN - 1] {
        let byte = client
            .ok(&["GETRANGE", "big", &at.to_string(), &at.to_string()])
            .into_bulk();
        assert_eq!(byte, Some(vec![b'a' + (at % 26) as u8]), "byte {at}");
    }
    assert_eq!(client.get("small"), Some(b"1".to_vec()));
    assert_eq!(client.get("after"), Some(b"2".to_vec()));
}

/// A malformed frame and where its offending byte is.
#[derive(Clone)]
struct Malformed {
    frame: Cow<'static, [u8]>,
    /// Offset of the offending byte from the frame's start; `None` when the
    /// input ends inside the frame (the offset is then the end of input).
    bad_byte: Option<usize>,
    reason: &'static str,
}

const ARRAY_HEADER: &str =
    "invalid array header: expected '*', an argument count (digits or -1) and CRLF";
const BULK_LENGTH: &str = "invalid bulk length: expected digits and CRLF";

const MALFORMED: &[Malformed] = &[
    Malformed {
        frame: Cow::Borrowed(b"*x\r\n$3\r\nGET\r\n"),
        bad_byte: Some(1),
        reason: ARRAY_HEADER,
    },
    Malformed {
        frame: Cow::Borrowed(b"*-2\r\n"),
        bad_byte: Some(2),
        reason: ARRAY_HEADER,
    },
    Malformed {
        frame: Cow::Borrowed(b"*2\r\n:5\r\n"),
        bad_byte: Some(4),
        reason: "expected '$' (a bulk string argument)",
    },
    Malformed {
        frame: Cow::Borrowed(b"*2\r\n$3\r\nGET\r\n+key\r\n"),
        bad_byte: Some(13),
        reason: "expected '$' (a bulk string argument)",
    },
    Malformed {
        frame: Cow::Borrowed(b"*1\r\n$x\r\nabc\r\n"),
        bad_byte: Some(5),
        reason: BULK_LENGTH,
    },
    Malformed {
        frame: Cow::Borrowed(b"*1\r\n$-3\r\nabc\r\n"),
        bad_byte: Some(5),
        reason: BULK_LENGTH,
    },
    Malformed {
        frame: Cow::Borrowed(b"*1\r\n$99999999999\r\n"),
        bad_byte: Some(5),
        reason: "bulk string longer than 536870912 bytes (the server's proto-max-bulk-len)",
    },
    Malformed {
        frame: Cow::Borrowed(b"*1\r\n$3\r\nGETX\r\n"),
        bad_byte: Some(11),
        reason: "expected CRLF",
    },
    Malformed {
        frame: Cow::Borrowed(b"*1\n$3\r\nGET\r\n"),
        bad_byte: Some(2),
        reason: "expected CRLF",
    },
    Malformed {
        frame: Cow::Borrowed(b"*2\r\n$3\r\nGET\r\n$5\r\nab"),
        bad_byte: None,
        reason: "input ends inside a RESP command",
    },
    Malformed {
        frame: Cow::Borrowed(b"*1\r\n$3\r\nGET\r"),
        bad_byte: None,
        reason: "input ends inside a RESP command",
    },
];

/// Every case of `MALFORMED`, then frames whose bulk data is too big for the
/// read buffer (the input reads those around it): the bad byte's offset and
/// line must come out the same.
fn malformed_cases() -> Vec<Malformed> {
    const BIG: usize = 200_000;
    // Line ends inside the data count as input lines.
    let data: Vec<u8> = (0..BIG).map(|i| b"ab\ncd\r\n"[i % 7]).collect();
    let big_frame = |declared: usize, data: &[u8]| {
        let mut frame = format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${declared}\r\n").into_bytes();
        frame.extend_from_slice(data);
        frame
    };
    let mut no_crlf = big_frame(BIG, &data);
    let no_crlf_at = no_crlf.len();
    no_crlf.extend_from_slice(b"XY");
    let cut = big_frame(BIG, &data[..BIG / 2]);
    // A big argument, then a bad header after it.
    let mut bad_after = big_frame(BIG, &data);
    bad_after[1] = b'4';
    bad_after.extend_from_slice(b"\r\n");
    let bad_after_at = bad_after.len();
    bad_after.extend_from_slice(b"+x\r\n");
    let big = [
        (no_crlf, Some(no_crlf_at), "expected CRLF"),
        (cut, None, "input ends inside a RESP command"),
        (
            bad_after,
            Some(bad_after_at),
            "expected '$' (a bulk string argument)",
        ),
    ];
    let big = big.into_iter().map(|(frame, bad_byte, reason)| Malformed {
        frame: Cow::Owned(frame),
        bad_byte,
        reason,
    });
    MALFORMED.iter().cloned().chain(big).collect()
}

/// `SET good 1` as text, `SET good2 2` as RESP, then lots of text lines so
/// the bad frame lies beyond the first read chunks: its offset and line
/// must be counted across them. Returns the input and its line count.
fn before_malformed() -> (Vec<u8>, u64) {
    let mut input = b"SET good 1\n".to_vec();
    input.extend_from_slice(&resp_command(&["SET", "good2", "2"]));
    let mut lines = 1 + 7;
    for i in 0..30_000 {
        input.extend_from_slice(format!("SET filler:{i:05} {i:05}\n").as_bytes());
        lines += 1;
    }
    (input, lines)
}

fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&byte| byte == b'\n').count() as u64
}

/// The exact message, the counts, the stop lines, and the data: what came
/// before the bad frame loaded, nothing after it.
fn assert_malformed_reported(
    outcome: &Outcome,
    server: &RedisServer,
    position: &str,
    byte: usize,
    reason: &str,
) {
    outcome.assert_stderr_line(&format!(
        "pipeload: {position} (byte {byte}): malformed RESP: {reason}; stopped reading there"
    ));
    let acknowledged = outcome.assert_stopped(1);
    let summary = outcome.summary();
    outcome.check(
        summary.errors == 1 && summary.replies == 30_002,
        "expected `errors: 1, replies: 30002`: the commands before the bad frame",
    );
    outcome.check(
        acknowledged == 30_002,
        "expected `acknowledged: 30002`: every command before the bad frame",
    );
    let mut client = server.client();
    assert_eq!(client.get("good"), Some(b"1".to_vec()), "{outcome}");
    assert_eq!(client.get("good2"), Some(b"2".to_vec()), "{outcome}");
    assert_eq!(
        client.get("filler:29999"),
        Some(b"29999".to_vec()),
        "{outcome}"
    );
    assert_eq!(
        client.dbsize(),
        30_002,
        "nothing at or after the bad frame may load\n{outcome}"
    );
}

/// Where the bad byte of `case` is once appended to `before`: its offset
/// and its line.
fn bad_position(case: &Malformed, before: &[u8], before_lines: u64) -> (usize, u64) {
    let in_frame = case.bad_byte.unwrap_or(case.frame.len());
    let byte = before.len() + in_frame;
    let line_no = before_lines + 1 + newlines(&case.frame[..in_frame]);
    (byte, line_no)
}

#[test]
fn every_malformed_frame_on_stdin_is_reported_exactly() {
    let (before, before_lines) = before_malformed();
    for case in malformed_cases() {
        let server = RedisServer::start();
        let mut input = before.clone();
        input.extend_from_slice(&case.frame);
        if case.bad_byte.is_some() {
            input.extend_from_slice(b"SET after:text 1\n");
            input.extend_from_slice(&resp_command(&["SET", "after:resp", "1"]));
        }
        let (byte, line_no) = bad_position(&case, &before, before_lines);

        let outcome = Pipeload::new().port(server.port()).stdin(input).run();

        assert_malformed_reported(
            &outcome,
            &server,
            &format!("line {line_no}"),
            byte,
            case.reason,
        );
    }
}

#[test]
fn every_malformed_frame_in_a_file_is_reported_exactly() {
    let (before, before_lines) = before_malformed();
    let dir = TempDir::new("bad-input");
    for (index, case) in malformed_cases().iter().enumerate() {
        let server = RedisServer::start();
        let mut input = before.clone();
        input.extend_from_slice(&case.frame);
        if case.bad_byte.is_some() {
            input.extend_from_slice(&resp_command(&["SET", "after:resp", "1"]));
        }
        let name = format!("case{index}.resp");
        dir.write(&name, &input);
        let (byte, line_no) = bad_position(case, &before, before_lines);

        let outcome = Pipeload::new()
            .port(server.port())
            .current_dir(dir.path())
            .arg(&name)
            .run();

        assert_malformed_reported(
            &outcome,
            &server,
            &format!("{name}:{line_no}"),
            byte,
            case.reason,
        );
    }
}

#[test]
fn offsets_and_lines_count_from_the_start_of_each_file() {
    // The second file's bad byte is reported relative to that file.
    let server = RedisServer::start();
    let dir = TempDir::new("bad-input");
    dir.write("a.txt", "SET a 1\nSET b 2\n");
    let mut second = resp_command(&["SET", "c", "3"]); // lines 1-7
    second.extend_from_slice(b"\r\n"); // line 8
    let bad_byte = second.len() + 11;
    second.extend_from_slice(b"*1\r\n$3\r\nGETX\r\n"); // lines 9-11
    dir.write("b.resp", &second);

    let outcome = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args(["a.txt", "b.resp"])
        .run();

    outcome.assert_stderr_line(&format!(
        "pipeload: b.resp:11 (byte {bad_byte}): malformed RESP: expected CRLF; stopped reading there"
    ));
    let acknowledged = outcome.assert_stopped(1);
    outcome.check(acknowledged == 3, "expected `acknowledged: 3`");
    assert_eq!(server.client().dbsize(), 3, "{outcome}");
}

#[test]
fn format_resp_refuses_a_text_line_exactly() {
    let server = RedisServer::start();
    let mut input = resp_command(&["SET", "first", "1"]); // lines 1-7
    input.extend_from_slice(b"\n"); // a stray LF: line 8
    let bad_byte = input.len();
    input.extend_from_slice(b"SET second 2\n"); // line 9

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--format", "resp"])
        .stdin(input)
        .run();

    outcome.assert_stderr_line(&format!(
        "pipeload: line 9 (byte {bad_byte}): malformed RESP: expected '*', found 'S'; stopped reading there"
    ));
    let acknowledged = outcome.assert_stopped(1);
    outcome.check(acknowledged == 1, "expected `acknowledged: 1`");
    let mut client = server.client();
    assert_eq!(client.get("first"), Some(b"1".to_vec()), "{outcome}");
    assert_eq!(client.dbsize(), 1, "{outcome}");
}

#[test]
fn empty_input_loads_nothing_and_succeeds() {
    let server = RedisServer::start();

    let outcome = Pipeload::new().port(server.port()).run();

    outcome.assert_summary(0, 0).assert_stderr_lacks("pipeload");
    assert_eq!(server.client().dbsize(), 0);
}

#[test]
fn blank_lines_only_load_nothing_and_succeed() {
    for input in [
        &b"\n"[..],
        b"\n\n\n",
        b"\r\n\r\n",
        b"   \n\t\n \t \r\n",
        b"\n\n   ",
    ] {
        let server = RedisServer::start();

        let outcome = Pipeload::new().port(server.port()).stdin(input).run();

        outcome.assert_summary(0, 0).assert_stderr_lacks("pipeload");
        assert_eq!(server.client().dbsize(), 0, "{outcome}");
    }
}

#[test]
fn empty_resp_arrays_are_not_commands() {
    let server = RedisServer::start();

    let outcome = Pipeload::new()
        .port(server.port())
        .stdin("*0\r\n*-1\r\n\r\n*0\r\n")
        .run();

    outcome.assert_summary(0, 0);
    assert_eq!(server.client().dbsize(), 0, "{outcome}");
}

#[test]
fn a_read_error_mid_input_stops_with_the_resume_point() {
    // Reading one's own /proc/self/mem from offset 0 fails with EIO: a
    // source that opens fine and then cannot be read.
    let server = RedisServer::start();
    let dir = TempDir::new("bad-input");
    dir.write("first.txt", "SET a 1\n\nSET b 2\n");
    dir.write("last.txt", "SET never 1\n");

    let outcome = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args(["first.txt", "/proc/self/mem", "last.txt"])
        .run();

    let acknowledged = outcome
        .assert_stderr_line_starts("pipeload: cannot read /proc/self/mem: ")
        .assert_stopped(1);
    outcome.check(
        acknowledged == 2,
        "the two commands before the unreadable source were answered: `acknowledged: 2`",
    );
    let mut client = server.client();
    assert_eq!(client.get("b"), Some(b"2".to_vec()), "{outcome}");
    assert_eq!(
        client.dbsize(),
        2,
        "nothing after the read error may load\n{outcome}"
    );
}

#[test]
fn a_missing_file_is_reported_exactly_and_nothing_is_sent() {
    let server = RedisServer::start();
    let dir = TempDir::new("bad-input");
    dir.write("good.txt", "SET good 1\n");

    let outcome = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args(["good.txt", "-", "no/such.txt"])
        .stdin("SET stdin 1\n")
        .run();

    outcome
        .assert_code(1)
        .assert_stderr_line("pipeload: cannot read no/such.txt: No such file or directory");
    assert_eq!(
        server.client().dbsize(),
        0,
        "nothing may be sent\n{outcome}"
    );
}

#[test]
fn a_directory_is_reported_exactly_and_nothing_is_sent() {
    let server = RedisServer::start();
    let dir = TempDir::new("bad-input");
    dir.write("good.txt", "SET good 1\n");
    std::fs::create_dir(dir.path().join("data")).expect("create data/");
    let absolute = dir.path().join("data");

    let relative = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .args(["good.txt", "data"])
        .run();
    let absolute_outcome = Pipeload::new()
        .port(server.port())
        .arg(dir.path().join("good.txt"))
        .arg(&absolute)
        .run();

    relative
        .assert_code(1)
        .assert_stderr_line("pipeload: cannot read data: Is a directory");
    absolute_outcome.assert_code(1).assert_stderr_line(&format!(
        "pipeload: cannot read {}: Is a directory",
        absolute.display()
    ));
    assert_eq!(
        server.client().dbsize(),
        0,
        "nothing may be sent\n{relative}\n{absolute_outcome}"
    );
}
