//! Text lines mean to pipeload exactly what they mean to the server's inline
//! parser (redis `sdssplitargs`): every tail below is sent once inline to a
//! real server through a raw socket (the reference) and once through
//! pipeload, and the resulting lists must be equal. Lines the server refuses
//! must be refused by pipeload too, with their line number, while every other
//! line still loads.

use crate::common::{Client, Pipeload, RedisServer, Value, send_inline};

/// One argument tail, and whether the server refuses the line it ends
/// (a sanity check of the corpus itself: the server is the judge).
struct Case {
    tail: &'static [u8],
    rejected: bool,
}

const fn ok(tail: &'static [u8]) -> Case {
    Case {
        tail,
        rejected: false,
    }
}

const fn refused(tail: &'static [u8]) -> Case {
    Case {
        tail,
        rejected: true,
    }
}

const CORPUS: &[Case] = &[
    ok(b"plain"),
    ok(b"two words"),
    ok(b"  many   spaces   between  "),
    ok(b"tab\tseparated\targs"),
    ok(b"\"double quoted with spaces\""),
    ok(b"'single quoted with spaces'"),
    ok(b"\"\""),
    ok(b"''"),
    ok(b"a \"\" b '' c"),
    ok(b"\"esc \\n \\r \\t \\b \\a end\""),
    ok(b"\"\\x41\\x42\\x43\""),
    ok(b"\"\\xff\\x00\\x7f\\x0A\""),
    ok(b"\"\\xZZ \\x4 \\x\""),
    ok(b"\"\\X41\""),
    ok(b"\"\\\\x41\""),
    ok(b"\"\\\"inner\\\" quotes\""),
    ok(b"\"\\e\\v\\0\\q\\'\""),
    ok(b"'it\\'s'"),
    ok(b"'\\''"),
    ok(b"'back\\\\slash \\n \\x41 stay'"),
    ok(b"'\"'"),
    ok(b"\"'\""),
    ok(b"x\"y z\""),
    ok(b"ab'cd ef'"),
    ok(b"a\\nb c\\td \\"),
    ok(b"\"raw\ttab inside\""),
    ok(b"\"raw\rcr inside\""),
    ok(b"'raw\rcr single'"),
    ok(b"unquoted\rcr splits"),
    ok(b"\x0bleading-vtab"),
    ok(b"mid\x0bvtab"),
    ok(b"\"quoted\"\x0bafter-vtab"),
    ok(b"\x0cformfeed \"q\"\x0c"),
    ok(b"h\xc3\xa9llo w\xc3\xb6rld"),
    ok(b"\"\xe6\x97\xa5\xe6\x9c\xac\" '\xf0\x9f\x98\x80'"),
    ok(b"\"\\xe2\\x82\\xac\""),
    ok(b"trailing-space "),
    ok(b"trailing-tab\t"),
    ok(b"\"q\"\t\"r\""),
    ok(b"\"a\"\r"),
    ok(b"#not-a-comment ;nor-this"),
    ok(b"a=b&c=d?e*f"),
    ok(b"*star $dollar :colon -minus +plus"),
    ok(b"\"multi\" 'mixed' bare \"\\x20\""),
    ok(b"\"ends in escaped backslash\\\\\""),
    refused(b"\"unterminated"),
    refused(b"'unterminated"),
    refused(b"\"closed\"trailing"),
    refused(b"'closed'trailing"),
    refused(b"\"ends with backslash\\"),
    refused(b"''''"),
    refused(b"\"\"\"\""),
    refused(b"x'y z'w"),
    refused(b"fine \"bad"),
    refused(b"'escaped close\\'"),
];

/// The line endings every tail is tried with.
const ENDINGS: [&[u8]; 2] = [b"\n", b"\r\n"];

/// One input line: `RPUSH <key> <tail><ending>`.
fn line(key: &str, tail: &[u8], ending: &[u8]) -> Vec<u8> {
    let mut line = format!("RPUSH {key} ").into_bytes();
    line.extend_from_slice(tail);
    line.extend_from_slice(ending);
    line
}

fn is_protocol_error(reply: &Value) -> bool {
    matches!(reply, Value::Error(message) if message.contains("Protocol error"))
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// One input line, and what the server made of it.
struct Probe {
    line_no: usize,
    tail: Vec<u8>,
    ending: &'static [u8],
    /// The server's reply to the line sent inline as `RPUSH ref:<line_no> …`.
    reference: Value,
}

impl Probe {
    fn describe(&self) -> String {
        format!(
            "line {}: tail {} ending {}",
            self.line_no,
            show(&self.tail),
            show(self.ending)
        )
    }
}

/// Sends each tail inline to a fresh server as `RPUSH ref:<n> <tail>` and
/// through pipeload as line n, `RPUSH got:<n> <tail>`; then checks pipeload
/// line by line against the server: the same list, the same error reply, or
/// `not sent` where the server found a protocol error, and a summary that
/// counts exactly that.
fn check_against_server(tails: Vec<(Vec<u8>, &'static [u8])>) -> Vec<Probe> {
    let server = RedisServer::start();
    let mut input = Vec::new();
    let mut probes = Vec::new();
    for (index, (tail, ending)) in tails.into_iter().enumerate() {
        let line_no = index + 1;
        let reference = send_inline(
            server.port(),
            &line(&format!("ref:{line_no}"), &tail, ending),
        );
        input.extend_from_slice(&line(&format!("got:{line_no}"), &tail, ending));
        probes.push(Probe {
            line_no,
            tail,
            ending,
            reference,
        });
    }

    // Every refused line is checked: no limit on error lines.
    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--error-lines", "0"])
        .stdin(input)
        .run();

    let errors = probes
        .iter()
        .filter(|probe| probe.reference.is_error())
        .count();
    let refused = probes
        .iter()
        .filter(|probe| is_protocol_error(&probe.reference))
        .count();
    outcome.assert_summary(errors as u64, (probes.len() - refused) as u64);
    let not_sent = outcome
        .stderr_lines()
        .iter()
        .filter(|line| line.contains(": not sent: "))
        .count();
    outcome.check(
        not_sent == refused,
        format!("expected {refused} `not sent` lines on stderr, found {not_sent}"),
    );
    let keys: Vec<String> = probes
        .iter()
        .flat_map(|probe| {
            [
                format!("ref:{}", probe.line_no),
                format!("got:{}", probe.line_no),
            ]
        })
        .collect();
    let contents = lists(&mut server.client(), &keys);
    for (probe, pair) in probes.iter().zip(contents.chunks(2)) {
        let line_no = probe.line_no;
        match &probe.reference {
            reply if is_protocol_error(reply) => {
                outcome.assert_stderr_line_starts(&format!("line {line_no}: not sent: "));
            }
            Value::Error(message) => {
                outcome.assert_stderr_line(&format!("line {line_no}: {message}"));
            }
            _ => {}
        }
        outcome.check(
            pair[0] == pair[1],
            format!(
                "{}: the server made {:?} of it, pipeload {:?}",
                probe.describe(),
                pair[0],
                pair[1]
            ),
        );
    }
    probes
}

/// The contents of `keys` (a missing list reads as empty), in one round trip.
fn lists(client: &mut Client, keys: &[String]) -> Vec<Vec<Value>> {
    let commands: Vec<Vec<Vec<u8>>> = keys
        .iter()
        .map(|key| {
            vec![
                b"LRANGE".to_vec(),
                key.clone().into_bytes(),
                b"0".to_vec(),
                b"-1".to_vec(),
            ]
        })
        .collect();
    client
        .pipeline(&commands)
        .into_iter()
        .map(Value::into_array)
        .collect()
}

#[test]
fn tails_split_exactly_as_the_server_splits_them() {
    let tails = CORPUS
        .iter()
        .flat_map(|case| ENDINGS.map(|ending| (case.tail.to_vec(), ending)))
        .collect();

    let probes = check_against_server(tails);

    // The corpus means what it says: the server refuses exactly the lines
    // marked refused, and accepts every other one as one RPUSH.
    let expected = CORPUS
        .iter()
        .flat_map(|case| ENDINGS.map(|_| case.rejected));
    for (probe, rejected) in probes.iter().zip(expected) {
        let accepted = matches!(probe.reference, Value::Int(n) if n > 0);
        assert!(
            is_protocol_error(&probe.reference) == rejected && (rejected || accepted),
            "corpus {}: the server replied {:?}",
            probe.describe(),
            probe.reference
        );
    }
}

/// Random tails over the bytes that matter to the quoting rules (from a
/// fixed seed, so a failure replays).
#[test]
fn random_tails_match_the_server() {
    const ALPHABET: &[u8] = b"\"\"''\\\\xx4fZ  \t\r\x0b\x0cabn\xc3";
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let tails = (0..400)
        .map(|_| {
            let tail = (0..1 + rng.below(12))
                .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                .collect();
            (tail, ENDINGS[rng.below(2)])
        })
        .collect();

    check_against_server(tails);
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

#[test]
fn rejection_messages_name_the_reason_and_the_line() {
    let server = RedisServer::start();
    let input = b"SET a 1\n\
        SET b \"unbalanced\n\
        SET c 'also unbalanced\n\
        SET d \"closed\"trailing\n\
        SET e 'closed'trailing\n\
        SET f 6\n";

    let outcome = Pipeload::new()
        .port(server.port())
        .stdin(input.to_vec())
        .run();

    outcome
        .assert_summary(4, 2)
        .assert_stderr_line("line 2: not sent: unbalanced quotes")
        .assert_stderr_line("line 3: not sent: unbalanced quotes")
        .assert_stderr_line(
            "line 4: not sent: closing quote must be followed by a space or the end of the line",
        )
        .assert_stderr_line(
            "line 5: not sent: closing quote must be followed by a space or the end of the line",
        );
    let mut client = server.client();
    assert_eq!(client.dbsize(), 2);
    assert_eq!(client.get("a"), Some(b"1".to_vec()));
    assert_eq!(client.get("f"), Some(b"6".to_vec()));
}

#[test]
fn a_nul_byte_in_a_text_line_is_refused() {
    let server = RedisServer::start();
    let input = b"SET a 1\nSET b \"x\0y\"\nSET c x\0y\nSET d 4\n";

    let outcome = Pipeload::new()
        .port(server.port())
        .stdin(input.to_vec())
        .run();

    outcome
        .assert_summary(2, 2)
        .assert_stderr_line_starts("line 2: not sent: NUL byte")
        .assert_stderr_line_starts("line 3: not sent: NUL byte");
    let mut client = server.client();
    assert_eq!(client.dbsize(), 2);
    assert_eq!(client.get("d"), Some(b"4".to_vec()));
}

#[test]
fn one_unbalanced_line_among_ten_thousand_loses_only_itself() {
    let server = RedisServer::start();
    let bad_line = 5_000;
    let mut input = String::new();
    for line_no in 1..=10_000 {
        if line_no == bad_line {
            input.push_str(&format!("SET key:{line_no} \"unbalanced value\n"));
        } else {
            input.push_str(&format!("SET key:{line_no} value:{line_no}\n"));
        }
    }

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    outcome
        .assert_summary(1, 9_999)
        .assert_stderr_line(&format!("line {bad_line}: not sent: unbalanced quotes"));
    let mut client = server.client();
    assert_eq!(client.dbsize(), 9_999);
    assert!(!client.exists(format!("key:{bad_line}")));
    for line_no in [1, bad_line - 1, bad_line + 1, 10_000] {
        assert_eq!(
            client.get(format!("key:{line_no}")),
            Some(format!("value:{line_no}").into_bytes())
        );
    }
}
