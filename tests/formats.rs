//! Input formats: RESP passed through byte for byte, text lines with any
//! line ending, both mixed in one input, malformed RESP stopping the load at
//! its offset, and `--emit-resp` writing the encoding instead of sending it.

use std::ops::RangeInclusive;

use crate::common::{Outcome, Pipeload, RedisServer, resp_command};

/// Every byte value, with CRLFs and lone CRs/LFs among them.
fn binary_value() -> Vec<u8> {
    let mut value: Vec<u8> = (0..=255u8).collect();
    value.extend_from_slice(b"\r\n\r\nmiddle\r\n\n\r\0end\r\n");
    value
}

#[test]
fn resp_text_and_stray_newlines_mix_in_one_input() {
    let server = RedisServer::start();
    let mut input = Vec::new();
    input.extend_from_slice(&resp_command(&[
        b"SET".as_slice(),
        b"resp:binary",
        &binary_value(),
    ]));
    input.extend_from_slice(b"\r\n\n\r\n\n");
    input.extend_from_slice(&resp_command(&["SET", "resp:crlf", "a\r\nb\r\n"]));
    input.extend_from_slice(b"*0\r\n*-1\r\n");
    input.extend_from_slice(b"SET text:lf hello\n");
    input.extend_from_slice(b"SET text:crlf \"hello world\"\r\n");
    input.extend_from_slice(b"\n   \t  \n\r\n \r\n");
    input.extend_from_slice(b"RPUSH text:list a 'b c' \"d\\te\"\r\n");
    input.extend_from_slice(&resp_command(&["INCR", "resp:counter"]));
    input.extend_from_slice(b"   SET text:indented yes\n");
    input.extend_from_slice(b"\tSET text:tabbed \"x y\"\n");
    input.extend_from_slice(&resp_command(&["HSET", "resp:hash", "f\r\n", "v\0"]));
    input.extend_from_slice(b"SET text:last end");

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    outcome.assert_summary(0, 10);
    let mut client = server.client();
    assert_eq!(client.dbsize(), 10);
    assert_eq!(client.get("resp:binary"), Some(binary_value()));
    assert_eq!(client.get("resp:crlf"), Some(b"a\r\nb\r\n".to_vec()));
    assert_eq!(client.get("text:lf"), Some(b"hello".to_vec()));
    assert_eq!(client.get("text:crlf"), Some(b"hello world".to_vec()));
    assert_eq!(
        client.lrange("text:list"),
        [b"a".to_vec(), b"b c".to_vec(), b"d\te".to_vec()]
    );
    assert_eq!(client.get("resp:counter"), Some(b"1".to_vec()));
    assert_eq!(client.get("text:indented"), Some(b"yes".to_vec()));
    assert_eq!(client.get("text:tabbed"), Some(b"x y".to_vec()));
    assert_eq!(
        client.hgetall("resp:hash").into_iter().collect::<Vec<_>>(),
        [(b"f\r\n".to_vec(), b"v\0".to_vec())]
    );
    assert_eq!(client.get("text:last"), Some(b"end".to_vec()));
}

#[test]
fn resp_frames_split_anywhere_by_the_reader_still_pass_through() {
    // Values around typical buffer sizes, so frames straddle read chunks.
    let server = RedisServer::start();
    let sizes = [
        0usize, 1, 2, 3, 4095, 4096, 4097, 16_383, 16_384, 65_535, 65_536, 65_537, 200_001,
    ];
    let mut input = Vec::new();
    let values: Vec<Vec<u8>> = sizes
        .iter()
        .map(|&size| (0..size).map(|i| b"\r\n*$\0x"[i % 6]).collect())
        .collect();
    for (index, value) in values.iter().enumerate() {
        input.extend_from_slice(&resp_command(&[
            b"SET".as_slice(),
            format!("v:{index}").as_bytes(),
            value,
        ]));
        input.extend_from_slice(format!("SET t:{index} {index}\n").as_bytes());
    }

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    outcome.assert_summary(0, 2 * sizes.len() as u64);
    let mut client = server.client();
    for (index, value) in values.iter().enumerate() {
        assert_eq!(
            client.get(format!("v:{index}")).as_ref(),
            Some(value),
            "value {index} ({} bytes)",
            value.len()
        );
        assert_eq!(
            client.get(format!("t:{index}")),
            Some(index.to_string().into_bytes())
        );
    }
}

#[test]
fn commands_with_a_hundred_thousand_arguments() {
    const MEMBERS: usize = 100_000;
    let server = RedisServer::start();
    let members: Vec<String> = (0..MEMBERS).map(|i| format!("member:{i}")).collect();
    let mut resp_args = vec!["RPUSH".to_string(), "resp:list".to_string()];
    resp_args.extend(members.iter().cloned());
    let mut input = resp_command(&resp_args);
    input.extend_from_slice(format!("RPUSH text:list {}\n", members.join(" ")).as_bytes());

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    outcome.assert_summary(0, 2);
    let mut client = server.client();
    let expected: Vec<Vec<u8>> = members.into_iter().map(String::into_bytes).collect();
    assert_eq!(client.lrange("resp:list"), expected);
    assert_eq!(client.lrange("text:list"), expected);
}

#[test]
fn format_text_reads_every_line_as_text() {
    let server = RedisServer::start();
    // Forced text: `*1`, `$4` are commands the server does not know.
    let input = b"*1\r\n$4\r\nPING\r\nSET k v\n";

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--format", "text"])
        .stdin(input.to_vec())
        .run();

    outcome
        .assert_summary(2, 4)
        .assert_stderr_line_starts("line 1: ERR unknown command '*1'")
        .assert_stderr_line_starts("line 2: ERR unknown command '$4'");
    assert_eq!(server.client().get("k"), Some(b"v".to_vec()));
}

#[test]
fn format_resp_refuses_text_as_malformed() {
    let server = RedisServer::start();
    let first = resp_command(&["SET", "a", "1"]);
    let mut input = first.clone();
    input.extend_from_slice(b"SET b 2\n");
    input.extend_from_slice(&resp_command(&["SET", "c", "3"]));

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--format", "resp"])
        .stdin(input)
        .run();

    assert_malformed_at(&outcome, first.len()..=first.len());
    assert_eq!(outcome.summary().replies, 1);
    let mut client = server.client();
    assert_eq!(client.get("a"), Some(b"1".to_vec()));
    assert_eq!(client.dbsize(), 1);
}

#[test]
fn format_resp_loads_resp() {
    let server = RedisServer::start();
    let mut input = resp_command(&["SET", "a", "1"]);
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(&resp_command(&["RPUSH", "l", "x", "y"]));

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--pipe", "--format", "resp"])
        .stdin(input)
        .run();

    outcome.assert_summary(0, 2);
    let mut client = server.client();
    assert_eq!(client.get("a"), Some(b"1".to_vec()));
    assert_eq!(client.lrange("l"), [b"x".to_vec(), b"y".to_vec()]);
}

/// stderr reports malformed RESP at a `byte N` with N in `offsets`, exit 1,
/// the malformed input counted as an error. The contract names "the byte
/// offset" without saying whether of the frame or of the bad byte inside
/// it, so any offset from the frame's first byte to the offending byte is
/// right.
fn assert_malformed_at(outcome: &Outcome, offsets: RangeInclusive<usize>) {
    let reported = outcome.stderr_lines().iter().any(|line| {
        line.contains("malformed RESP")
            && numbers_after(line, "byte ").any(|offset| offsets.contains(&offset))
    });
    outcome.check(
        reported,
        format!("expected a `malformed RESP` line with `byte N`, N in {offsets:?}"),
    );
    outcome.assert_code(1);
    outcome.check(
        outcome.summary().errors >= 1,
        "errors must count the malformed input",
    );
}

/// The numbers written right after each occurrence of `label` in `text`.
fn numbers_after<'a>(text: &'a str, label: &'a str) -> impl Iterator<Item = usize> + 'a {
    text.match_indices(label).filter_map(move |(at, _)| {
        let rest = &text[at + label.len()..];
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..digits].parse().ok()
    })
}

#[test]
fn malformed_resp_stops_the_load_at_its_offset() {
    let server = RedisServer::start();
    let mut input = resp_command(&["SET", "good:1", "one"]);
    input.extend_from_slice(b"SET good:2 two\n");
    let frame_start = input.len();
    let bad_header = b"*2\r\n$3\r\nSET\r\n";
    input.extend_from_slice(bad_header);
    let bad_byte = input.len();
    input.extend_from_slice(b"xyz\r\n");
    input.extend_from_slice(&resp_command(&["SET", "after:1", "lost"]));
    input.extend_from_slice(b"SET after:2 lost\n");

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    assert_malformed_at(&outcome, frame_start..=bad_byte);
    // The bad frame starts on line 9 (the first frame takes lines 1-7, the
    // text line is line 8); the bad byte is on line 12.
    outcome.check(
        outcome.stderr_lines().iter().any(|line| {
            line.contains("malformed RESP")
                && numbers_after(line, "line ").any(|line_no| line_no == 9 || line_no == 12)
        }),
        "the malformed RESP line must name its line number",
    );
    let summary = outcome.summary();
    outcome.check(
        summary.errors == 1 && summary.replies == 2,
        "expected `errors: 1, replies: 2`",
    );
    let mut client = server.client();
    assert_eq!(client.get("good:1"), Some(b"one".to_vec()));
    assert_eq!(client.get("good:2"), Some(b"two".to_vec()));
    assert_eq!(
        client.dbsize(),
        2,
        "nothing after the malformed frame may load"
    );
}

#[test]
fn every_kind_of_malformed_frame_is_caught() {
    // (bad frame, offset of the offending byte in it)
    let cases: &[(&[u8], usize)] = &[
        (b"*x\r\n$3\r\nGET\r\n", 1),
        (b"*-2\r\n", 2),
        (b"*1\r\n:5\r\n", 4),
        (b"*1\r\n$-3\r\nabc\r\n", 5),
        (b"*1\r\n$abc\r\nabc\r\n", 5),
        (b"*1\r\n$3\r\nGETX\r\n", 11),
        (b"*1\r\n$3\r\nGE\r\n\r\n", 11),
        (b"*1\n$3\r\nGET\r\n", 2),
    ];
    for (bad, bad_offset) in cases {
        let server = RedisServer::start();
        let mut input = resp_command(&["SET", "good", "1"]);
        let frame_start = input.len();
        input.extend_from_slice(bad);
        input.extend_from_slice(&resp_command(&["SET", "after", "2"]));

        let outcome = Pipeload::new().port(server.port()).stdin(input).run();

        assert_malformed_at(&outcome, frame_start..=frame_start + bad_offset);
        let mut client = server.client();
        assert_eq!(client.get("good"), Some(b"1".to_vec()), "{}", outcome);
        assert_eq!(client.dbsize(), 1, "{}", outcome);
    }
}

#[test]
fn a_frame_cut_short_by_the_end_of_input_is_reported() {
    let server = RedisServer::start();
    let mut input = resp_command(&["SET", "good", "1"]);
    input.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$3\r\nbad\r\n$5\r\nval");

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    outcome.assert_code(1);
    outcome.check(outcome.summary().errors == 1, "the cut frame is one error");
    let mut client = server.client();
    assert_eq!(client.get("good"), Some(b"1".to_vec()));
    assert_eq!(client.dbsize(), 1);
}

#[test]
fn emit_resp_writes_the_encoding_and_contacts_no_server() {
    // A port nothing listens on: connecting would fail the run.
    let closed_port = RedisServer::start().stop();
    let mut input = Vec::new();
    input.extend_from_slice(b"SET a \"b c\"\n");
    input.extend_from_slice(b"LPUSH l x '' \"\\x00\\xff\"\r\n");
    input.extend_from_slice(b"\n  \n");
    input.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n");
    input.extend_from_slice(b"\r\nINCR counter");

    let outcome = Pipeload::new()
        .port(closed_port)
        .arg("--emit-resp")
        .stdin(input)
        .run();

    let expected: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$3\r\nb c\r\n\
        *5\r\n$5\r\nLPUSH\r\n$1\r\nl\r\n$1\r\nx\r\n$0\r\n\r\n$2\r\n\x00\xff\r\n\
        *2\r\n$3\r\nGET\r\n$1\r\na\r\n\
        *2\r\n$4\r\nINCR\r\n$7\r\ncounter\r\n";
    outcome.assert_code(0);
    outcome.check(
        outcome.stdout == expected,
        format!(
            "stdout must be exactly the RESP encoding:\n{}\ngot:\n{}",
            expected.escape_ascii(),
            outcome.stdout.escape_ascii()
        ),
    );
}

#[test]
fn emit_resp_reports_refused_lines_and_encodes_the_rest() {
    let closed_port = RedisServer::start().stop();
    let input = b"SET a 1\nSET b \"open\nSET c 3\n";

    let outcome = Pipeload::new()
        .port(closed_port)
        .arg("--emit-resp")
        .stdin(input.to_vec())
        .run();

    outcome
        .assert_code(1)
        .assert_stderr_line("line 2: not sent: unbalanced quotes");
    let mut expected = resp_command(&["SET", "a", "1"]);
    expected.extend_from_slice(&resp_command(&["SET", "c", "3"]));
    outcome.check(
        outcome.stdout == expected,
        format!("stdout must be exactly:\n{}", expected.escape_ascii()),
    );
}
