//! Volume: big values (as RESP from a file, and as text lines far over the
//! server's 64 KiB inline limit) and a million commands, every value read
//! back; big replies (bulk `GET`s) loaded under a server's output buffer
//! limit, which holds only if pipeload bounds the reply bytes it is owed.

use std::io::Write;
use std::time::Duration;

use crate::common::{Client, Outcome, Pipeload, RedisServer, TempDir, Value, resp_command, sets};

const BIG_VALUES: usize = 100;
const BIG_VALUE_LEN: usize = 512 * 1024;

/// Slow debug builds move a lot of bytes here: a wider hang guard.
const VOLUME_GUARD: Duration = Duration::from_secs(300);

/// Deterministic pseudo-random bytes (xorshift64).
fn noise(len: usize, mut state: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Value `index`: a rotation of `base`, stamped with its index so no two
/// values are equal.
fn big_value(base: &[u8], index: usize) -> Vec<u8> {
    let mut value = base.to_vec();
    value.rotate_left(index * 5003 % base.len());
    let stamp = format!("<{index}>");
    value[..stamp.len()].copy_from_slice(stamp.as_bytes());
    value
}

/// Reads every `key:i` back and compares it with `values[i]`.
fn assert_values(client: &mut Client, prefix: &str, values: &[Vec<u8>]) {
    assert_eq!(client.dbsize(), values.len() as i64);
    for (index, value) in values.iter().enumerate() {
        let got = client.get(format!("{prefix}:{index}"));
        assert!(
            got.as_ref() == Some(value),
            "{prefix}:{index}: expected {} bytes, got {:?} bytes (first difference at {:?})",
            value.len(),
            got.as_ref().map(Vec::len),
            got.as_ref()
                .and_then(|got| got.iter().zip(value).position(|(a, b)| a != b))
        );
    }
}

#[test]
fn big_binary_values_as_resp_from_a_file() {
    let server = RedisServer::start();
    let base = noise(BIG_VALUE_LEN, 0x1234_5678_9ABC_DEF1);
    let values: Vec<Vec<u8>> = (0..BIG_VALUES).map(|i| big_value(&base, i)).collect();
    let mut input = Vec::with_capacity(BIG_VALUES * (BIG_VALUE_LEN + 64));
    for (index, value) in values.iter().enumerate() {
        input.extend_from_slice(&resp_command(&[
            b"SET".as_slice(),
            format!("big:{index}").as_bytes(),
            value,
        ]));
    }

    let dir = TempDir::new("volume");
    dir.write("big.resp", input);

    let outcome = Pipeload::new()
        .port(server.port())
        .current_dir(dir.path())
        .arg("big.resp")
        .guard(VOLUME_GUARD)
        .run();

    outcome.assert_summary(0, BIG_VALUES as u64);
    assert_values(&mut server.client(), "big", &values);
}

/// `value` as one double-quoted text argument: printable ASCII as is,
/// `"` and `\` escaped, every other byte as `\xHH`.
fn quoted(value: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(value.len() * 2 + 2);
    text.push(b'"');
    for &byte in value {
        match byte {
            b'"' | b'\\' => text.extend_from_slice(&[b'\\', byte]),
            b' '..=b'~' => text.push(byte),
            _ => write!(text, "\\x{byte:02x}").expect("write to a Vec"),
        }
    }
    text.push(b'"');
    text
}

#[test]
fn big_values_as_text_lines() {
    let server = RedisServer::start();
    let binary_base = noise(BIG_VALUE_LEN, 0x0F1E_2D3C_4B5A_6978);
    const ALPHANUMERIC: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let bare_base: Vec<u8> = binary_base
        .iter()
        .map(|byte| ALPHANUMERIC[usize::from(*byte) % ALPHANUMERIC.len()])
        .collect();
    let mut values = Vec::with_capacity(BIG_VALUES);
    let mut input = Vec::new();
    for index in 0..BIG_VALUES {
        // Even: one bare word; odd: any bytes, quoted with escapes (a line
        // of well over a megabyte).
        let (value, argument) = if index % 2 == 0 {
            let value = big_value(&bare_base, index);
            (value.clone(), value)
        } else {
            let value = big_value(&binary_base, index);
            let argument = quoted(&value);
            (value, argument)
        };
        input.extend_from_slice(format!("SET text:{index} ").as_bytes());
        input.extend_from_slice(&argument);
        input.extend_from_slice(if index % 3 == 0 { b"\r\n" } else { b"\n" });
        values.push(value);
    }

    let outcome = Pipeload::new()
        .port(server.port())
        .stdin(input)
        .guard(VOLUME_GUARD)
        .run();

    outcome.assert_summary(0, BIG_VALUES as u64);
    assert_values(&mut server.client(), "text", &values);
}

#[test]
fn one_million_sets_from_stdin() {
    const COMMANDS: usize = 1_000_000;
    const KEYS_PER_MGET: usize = 1_000;
    const MGETS_PER_ROUND_TRIP: usize = 10;
    let server = RedisServer::start();
    let input = sets(COMMANDS);

    let outcome = Pipeload::new()
        .port(server.port())
        .stdin(input)
        .guard(VOLUME_GUARD)
        .run();

    outcome.assert_summary(0, COMMANDS as u64);
    let mut client = server.client();
    assert_eq!(client.dbsize(), COMMANDS as i64);
    let keys_per_round = KEYS_PER_MGET * MGETS_PER_ROUND_TRIP;
    for first in (0..COMMANDS).step_by(keys_per_round) {
        let mgets: Vec<Vec<Vec<u8>>> = (first..first + keys_per_round)
            .step_by(KEYS_PER_MGET)
            .map(|start| {
                std::iter::once(b"MGET".to_vec())
                    .chain((start..start + KEYS_PER_MGET).map(|i| format!("key:{i}").into_bytes()))
                    .collect()
            })
            .collect();
        let values = client
            .pipeline(&mgets)
            .into_iter()
            .flat_map(|reply| reply.into_array());
        for (i, value) in (first..).zip(values) {
            let expected = format!("value:{i}").into_bytes();
            if value.into_bulk().as_ref() != Some(&expected) {
                outcome.fail(format!("key:{i} does not hold value:{i}"));
            }
        }
    }
}

/// Values of 16 KiB: 2048 `GET`s of them (one input batch) owe 32 MiB.
const REPLY_VALUE_LEN: usize = 16 * 1024;
const REPLY_VALUES: usize = 1000;
const GETS: usize = 20_000;
/// What `redis-server` logs when it drops a client over its output buffer.
const OUTPUT_BUFFER_DROP: &str = "output buffer limit";

/// A server that drops a normal client whose output buffer passes 16 MiB,
/// or stays over 8 MiB for 10 seconds.
fn server_with_output_buffer_limit() -> RedisServer {
    let server = RedisServer::start();
    server.client().ok(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "normal 16mb 8mb 10",
    ]);
    server
}

fn reply_values() -> Vec<Vec<u8>> {
    let base = noise(REPLY_VALUE_LEN, 0x5151_7A7A_0F0F_3C3C);
    (0..REPLY_VALUES).map(|i| big_value(&base, i)).collect()
}

/// `GET value:i` for `count` commands, over the values in turn.
fn gets(count: usize) -> Vec<u8> {
    let mut input = Vec::with_capacity(count * 16);
    for i in 0..count {
        writeln!(input, "GET value:{}", i % REPLY_VALUES).expect("write to a Vec");
    }
    input
}

/// The server kept pipeload's connection to the end: nothing in its log
/// or, where the server counts them, in its stats.
fn assert_not_dropped(server: &RedisServer, outcome: &Outcome) {
    let log = server.log();
    if log.contains(OUTPUT_BUFFER_DROP) {
        outcome.fail(format!(
            "the server dropped a client over its output buffer:\n{log}"
        ));
    }
    let Value::Bulk(Some(stats)) = server.client().ok(&["INFO", "stats"]) else {
        outcome.fail("INFO stats is not a bulk string");
    };
    let stats = String::from_utf8_lossy(&stats).into_owned();
    let disconnections = stats
        .lines()
        .find_map(|line| line.strip_prefix("client_output_buffer_limit_disconnections:"));
    if let Some(count) = disconnections
        && count.trim() != "0"
    {
        outcome.fail(format!(
            "client_output_buffer_limit_disconnections: {count}"
        ));
    }
}

#[test]
fn bulk_gets_of_big_values_stay_under_the_output_buffer_limit() {
    let server = server_with_output_buffer_limit();
    let values = reply_values();
    let sets: Vec<Vec<Vec<u8>>> = values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            vec![
                b"SET".to_vec(),
                format!("value:{i}").into_bytes(),
                value.clone(),
            ]
        })
        .collect();
    server.client().pipeline(&sets);

    let outcome = Pipeload::new()
        .port(server.port())
        .stdin(gets(GETS))
        .guard(VOLUME_GUARD)
        .run();

    outcome.assert_summary(0, GETS as u64);
    assert_not_dropped(&server, &outcome);
}

#[test]
fn big_gets_after_small_replies_in_one_input_stay_under_the_limit() {
    // A thousand SETs answer `+OK`; the GETs after them must not go out
    // counted at that size.
    let server = server_with_output_buffer_limit();
    let mut input = Vec::new();
    for (i, value) in reply_values().iter().enumerate() {
        input.extend_from_slice(&resp_command(&[
            b"SET".as_slice(),
            format!("value:{i}").as_bytes(),
            value,
        ]));
    }
    input.extend_from_slice(&gets(GETS));

    let outcome = Pipeload::new()
        .port(server.port())
        .stdin(input)
        .guard(VOLUME_GUARD)
        .run();

    outcome.assert_summary(0, (REPLY_VALUES + GETS) as u64);
    assert_not_dropped(&server, &outcome);
}

#[test]
fn replies_larger_than_the_window_still_come_back() {
    // Two 12 MiB values, over the 8 MiB of replies pipeload lets the server
    // owe: each GET goes alone, the small commands between them still load,
    // and so does a SET sent without a reply, which only a later reply (a
    // GET's) can show to have run.
    const HUGE_VALUE_LEN: usize = 12 * 1024 * 1024;
    let server = RedisServer::start();
    let base = noise(HUGE_VALUE_LEN, 0x0BAD_CAFE_F00D_D00D);
    let mut client = server.client();
    for i in 0..2 {
        client.ok(&[
            b"SET".as_slice(),
            format!("huge:{i}").as_bytes(),
            &big_value(&base, i),
        ]);
    }
    let mut input = String::new();
    for round in 0..3 {
        input.push_str(&format!(
            "GET huge:0\nSET small:{round} x\nCLIENT REPLY SKIP\nSET skipped:{round} x\n\
             GET huge:1\nGET huge:0\n"
        ));
    }

    let outcome = Pipeload::new()
        .port(server.port())
        .stdin(input)
        .guard(VOLUME_GUARD)
        .run();

    outcome.assert_summary(0, 12);
    assert_eq!(client.dbsize(), 8);
}
