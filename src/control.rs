//! Control exchanges: one command sent, its reply read whole and parsed
//! into a small tree. Used for the handshake (AUTH, HELLO, SELECT), the
//! cluster layout (`CLUSTER SHARDS`, `CLUSTER SLOTS`), the command table
//! (`COMMAND`) and the rare `COMMAND GETKEYS`.
//!
//! Place in the data flow: before any input is sent, and beside the router.
//! Never on the per-reply hot path, which only counts replies
//! (`resp::scan_reply`).

use std::io::{self, Write};

use anyhow::{Result, anyhow, bail};

use crate::encode::command_bytes;
use crate::io_error::describe_io_error;
use crate::readbuf::ReadBuffer;
use crate::resp::{ReplyKind, ReplyScan, scan_reply};
use crate::stream::Stream;

/// Nesting deeper than any control reply has: a guard against a hostile
/// server, since parsing recurses.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Simple string, bulk string, verbatim string, big number, double or
    /// boolean: the bytes as sent.
    Text(Vec<u8>),
    Int(i64),
    Error(String),
    Null,
    /// Array, set or push.
    Array(Vec<Value>),
    /// RESP3 map (RESP2 sends maps as flat arrays; `field` reads both).
    Map(Vec<(Value, Value)>),
}

impl Value {
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Text(bytes) => Some(bytes),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(number) => Some(*number),
            Value::Text(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The value under `name` in a map, or in a flat `[name, value, …]`
    /// array as RESP2 sends maps.
    pub fn field(&self, name: &str) -> Option<&Value> {
        let matches = |key: &Value| {
            key.as_bytes()
                .is_some_and(|key| key.eq_ignore_ascii_case(name.as_bytes()))
        };
        match self {
            Value::Map(pairs) => pairs
                .iter()
                .find(|(key, _)| matches(key))
                .map(|(_, value)| value),
            Value::Array(items) => items
                .chunks_exact(2)
                .find(|pair| matches(&pair[0]))
                .map(|pair| &pair[1]),
            _ => None,
        }
    }
}

/// Parses one complete reply (already delimited by `scan_reply`).
pub fn parse(reply: &[u8]) -> Result<Value> {
    let (value, _) = parse_at(reply, 0, 0)?;
    Ok(value)
}

fn line_end(buf: &[u8], start: usize) -> Result<usize> {
    memchr::memchr(b'\r', &buf[start.min(buf.len())..])
        .map(|at| start + at)
        .ok_or_else(|| anyhow!("truncated reply"))
}

fn parse_at(buf: &[u8], start: usize, depth: usize) -> Result<(Value, usize)> {
    if depth > MAX_DEPTH {
        bail!("reply nested too deeply");
    }
    let type_byte = *buf.get(start).ok_or_else(|| anyhow!("truncated reply"))?;
    let end = line_end(buf, start + 1)?;
    let line = &buf[start + 1..end];
    let next = end + 2;
    let number = || -> Result<i64> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| anyhow!("invalid number in reply"))
    };
    match type_byte {
        b'+' | b'(' | b',' | b'#' => Ok((Value::Text(line.to_vec()), next)),
        b'-' => Ok((
            Value::Error(String::from_utf8_lossy(line).into_owned()),
            next,
        )),
        b':' => Ok((Value::Int(number()?), next)),
        b'_' => Ok((Value::Null, next)),
        b'$' | b'=' | b'!' => {
            let length = number()?;
            if length < 0 {
                return Ok((Value::Null, next));
            }
            let data_end = next
                .checked_add(length as usize)
                .ok_or_else(|| anyhow!("truncated reply"))?;
            let data = buf
                .get(next..data_end)
                .ok_or_else(|| anyhow!("truncated reply"))?;
            let value = match type_byte {
                b'!' => Value::Error(String::from_utf8_lossy(data).into_owned()),
                // Verbatim strings start with a 4-byte format, `txt:`.
                b'=' => Value::Text(data.get(4..).unwrap_or_default().to_vec()),
                _ => Value::Text(data.to_vec()),
            };
            Ok((value, data_end + 2))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count = number()?;
            if count < 0 {
                return Ok((Value::Null, next));
            }
            let elements = match type_byte {
                b'%' | b'|' => count as usize * 2,
                _ => count as usize,
            };
            let mut items = Vec::with_capacity(elements.min(1024));
            let mut position = next;
            for _ in 0..elements {
                let (item, after) = parse_at(buf, position, depth + 1)?;
                items.push(item);
                position = after;
            }
            match type_byte {
                b'%' => {
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut items = items.into_iter();
                    while let (Some(key), Some(value)) = (items.next(), items.next()) {
                        pairs.push((key, value));
                    }
                    Ok((Value::Map(pairs), position))
                }
                // An attribute decorates the value after it.
                b'|' => parse_at(buf, position, depth + 1),
                _ => Ok((Value::Array(items), position)),
            }
        }
        other => bail!("unexpected reply type byte 0x{other:02x}"),
    }
}

/// Sends one command and returns its reply; push frames are skipped. An
/// error reply is returned as `Value::Error`, for the caller to judge.
pub fn query(stream: &mut Stream, args: &[&[u8]]) -> Result<Value, String> {
    query_encoded(stream, &command_bytes(args))
}

/// `query` for a command already encoded (such as a command of the input
/// replayed after a reconnect). Fails, in one phrase, when no reply came.
pub fn query_encoded(stream: &mut Stream, encoded: &[u8]) -> Result<Value, String> {
    stream
        .write_all(encoded)
        .map_err(|error| describe_io_error(&error))?;
    let mut buffer = ReadBuffer::new(64 * 1024);
    let mut errors = Vec::new();
    loop {
        match scan_reply(buffer.unread(), &mut errors) {
            ReplyScan::Complete(reply) if reply.kind == ReplyKind::Push => {
                buffer.consume(reply.len);
            }
            ReplyScan::Complete(reply) => {
                return parse(&buffer.unread()[..reply.len])
                    .map_err(|error| format!("bad reply: {error}"));
            }
            ReplyScan::Invalid(error) => {
                return Err(format!(
                    "bad reply: {}",
                    error.describe_with(buffer.unread())
                ));
            }
            ReplyScan::Incomplete => match buffer.read_from(stream) {
                Ok(0) => return Err("server closed the connection".into()),
                Ok(_) => {}
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err("no reply from the server".into());
                }
                Err(error) => return Err(describe_io_error(&error)),
            },
        }
        errors.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_replies_and_maps() {
        let reply = b"*2\r\n%2\r\n+slots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*0\r\n_\r\n";
        let value = parse(reply).unwrap();
        let shards = value.as_array().unwrap();
        let slots = shards[0].field("slots").unwrap().as_array().unwrap();
        assert_eq!(slots[1].as_int(), Some(5460));
        assert_eq!(shards[0].field("nodes"), Some(&Value::Array(vec![])));
        assert_eq!(shards[1], Value::Null);
    }

    #[test]
    fn flat_arrays_read_as_maps() {
        let value = parse(b"*4\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$4\r\nport\r\n:7000\r\n").unwrap();
        assert_eq!(
            value.field("IP").and_then(Value::as_bytes),
            Some(&b"127.0.0.1"[..])
        );
        assert_eq!(value.field("port").and_then(Value::as_int), Some(7000));
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        for bad in [
            &b"*3\r\n:1\r\n"[..],
            b"$5\r\nab\r\n",
            b"?x\r\n",
            b"",
            b"*99999999999\r\n",
        ] {
            assert!(parse(bad).is_err());
        }
    }
}
