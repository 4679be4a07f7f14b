//! A tiny RESP client over a raw `TcpStream`: enough to set a server up and
//! read back what pipeload loaded. Replies are parsed into [`Value`] trees
//! (RESP2 and RESP3), which is fine here: tests read little.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// Hang guard for every read from a server: far above anything a test needs.
const READ_GUARD: Duration = Duration::from_secs(60);

/// One reply from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Simple(String),
    /// `-…` or RESP3 `!…`: the error text without the type byte.
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
    /// RESP3 `_`.
    Null,
    Bool(bool),
    Double(String),
    BigNumber(String),
    /// RESP3 `=`: the text including its `txt:` prefix.
    Verbatim(Vec<u8>),
    Map(Vec<(Value, Value)>),
    Set(Vec<Value>),
    Push(Vec<Value>),
}

impl Value {
    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }

    pub fn as_int(&self) -> i64 {
        match self {
            Value::Int(n) => *n,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    /// The elements of an array reply (a nil array has none).
    pub fn into_array(self) -> Vec<Value> {
        match self {
            Value::Array(Some(items)) | Value::Set(items) | Value::Push(items) => items,
            Value::Array(None) => Vec::new(),
            other => panic!("expected an array reply, got {other:?}"),
        }
    }

    /// The content of a bulk reply (`None` for nil).
    pub fn into_bulk(self) -> Option<Vec<u8>> {
        match self {
            Value::Bulk(bytes) => bytes,
            Value::Null => None,
            other => panic!("expected a bulk reply, got {other:?}"),
        }
    }

    /// The text of a bulk or verbatim reply (`INFO`, `CLUSTER NODES`).
    pub fn into_text(self) -> String {
        match self {
            Value::Bulk(Some(bytes)) | Value::Verbatim(bytes) => {
                String::from_utf8_lossy(&bytes).into_owned()
            }
            other => panic!("expected a text reply, got {other:?}"),
        }
    }
}

/// The value of `name` in the `name:value` lines of an `INFO` or `CLUSTER
/// INFO` reply (`used_memory` is not `used_memory_rss`).
pub fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Encodes one command as a RESP array of bulk strings.
pub fn resp_command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        let arg = arg.as_ref();
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one reply (any RESP2 or RESP3 type; attributes are skipped).
pub fn read_value(reader: &mut impl BufRead) -> io::Result<Value> {
    let line = read_line(reader)?;
    let (kind, rest) = line
        .split_first()
        .ok_or_else(|| invalid("empty reply line"))?;
    let text = String::from_utf8_lossy(rest).into_owned();
    Ok(match kind {
        b'+' => Value::Simple(text),
        b'-' => Value::Error(text),
        b':' => Value::Int(parse_number(&text)?),
        b'$' => Value::Bulk(read_blob(reader, parse_number(&text)?)?),
        b'!' => {
            let blob = read_blob(reader, parse_number(&text)?)?.unwrap_or_default();
            Value::Error(String::from_utf8_lossy(&blob).into_owned())
        }
        b'=' => Value::Verbatim(read_blob(reader, parse_number(&text)?)?.unwrap_or_default()),
        b'*' => match parse_number(&text)? {
            n if n < 0 => Value::Array(None),
            n => Value::Array(Some(read_values(reader, n)?)),
        },
        b'~' => Value::Set(read_values(reader, parse_number(&text)?)?),
        b'>' => Value::Push(read_values(reader, parse_number(&text)?)?),
        b'%' => {
            let pairs = read_values(reader, 2 * parse_number(&text)?)?;
            let mut map = Vec::with_capacity(pairs.len() / 2);
            let mut items = pairs.into_iter();
            while let (Some(key), Some(value)) = (items.next(), items.next()) {
                map.push((key, value));
            }
            Value::Map(map)
        }
        b'|' => {
            // An attribute precedes the reply it describes: skip it.
            read_values(reader, 2 * parse_number(&text)?)?;
            return read_value(reader);
        }
        b'_' => Value::Null,
        b'#' => Value::Bool(rest == b"t"),
        b',' => Value::Double(text),
        b'(' => Value::BigNumber(text),
        other => return Err(invalid(&format!("unknown reply type byte {other:#04x}"))),
    })
}

fn read_values(reader: &mut impl BufRead, count: i64) -> io::Result<Vec<Value>> {
    (0..count).map(|_| read_value(reader)).collect()
}

fn read_blob(reader: &mut impl BufRead, len: i64) -> io::Result<Option<Vec<u8>>> {
    let Ok(len) = usize::try_from(len) else {
        return Ok(None);
    };
    let mut blob = vec![0; len + 2];
    reader.read_exact(&mut blob)?;
    if !blob.ends_with(b"\r\n") {
        return Err(invalid("bulk not followed by CRLF"));
    }
    blob.truncate(len);
    Ok(Some(blob))
}

/// One CRLF-terminated line, without the CRLF.
fn read_line(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(invalid("reply line not terminated by CRLF"));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn parse_number(text: &str) -> io::Result<i64> {
    text.parse()
        .map_err(|_| invalid(&format!("bad number {text:?}")))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Sends `line` (with its own line ending) as an inline command on a fresh
/// connection and returns the server's reply. A fresh connection each time
/// because the server hangs up after an inline protocol error.
pub fn send_inline(port: u16, line: &[u8]) -> Value {
    let mut stream =
        connect_stream(port).unwrap_or_else(|err| panic!("connect to redis on port {port}: {err}"));
    stream
        .write_all(line)
        .unwrap_or_else(|err| panic!("send inline {:?}: {err}", line.escape_ascii().to_string()));
    let reply = read_value(&mut BufReader::new(&stream)).unwrap_or_else(|err| {
        panic!(
            "reply to inline {:?}: {err}",
            line.escape_ascii().to_string()
        )
    });
    let _ = stream.shutdown(Shutdown::Both);
    reply
}

fn connect_stream(port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(READ_GUARD))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A connection to one server on 127.0.0.1. Every method panics on I/O
/// errors: the harness talks only to servers it started.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        Client::try_connect(port)
            .unwrap_or_else(|err| panic!("connect to redis on port {port}: {err}"))
    }

    pub fn try_connect(port: u16) -> io::Result<Client> {
        let writer = connect_stream(port)?;
        let reader = BufReader::with_capacity(1 << 16, writer.try_clone()?);
        Ok(Client { reader, writer })
    }

    /// Connects and authenticates (`user` `None` = the default user).
    pub fn connect_auth(port: u16, user: Option<&str>, password: &str) -> Client {
        let mut client = Client::connect(port);
        match user {
            Some(user) => client.ok(&["AUTH", user, password]),
            None => client.ok(&["AUTH", password]),
        };
        client
    }

    /// Sends one command and returns its reply, errors included.
    pub fn try_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<Value> {
        self.writer.write_all(&resp_command(args))?;
        read_value(&mut self.reader)
    }

    /// Sends one command and returns its reply (which may be an error).
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Value {
        self.try_cmd(args).unwrap_or_else(|err| {
            panic!("command {}: {err}", describe(args));
        })
    }

    /// Sends one command that must not fail.
    pub fn ok<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Value {
        let reply = self.cmd(args);
        if let Value::Error(message) = &reply {
            panic!("command {} failed: {message}", describe(args));
        }
        reply
    }

    /// Sends all commands at once, then reads one reply per command.
    pub fn pipeline(&mut self, commands: &[Vec<Vec<u8>>]) -> Vec<Value> {
        let mut wire = Vec::new();
        for command in commands {
            wire.extend_from_slice(&resp_command(command));
        }
        self.writer
            .write_all(&wire)
            .unwrap_or_else(|err| panic!("send a pipeline of {} commands: {err}", commands.len()));
        (0..commands.len())
            .map(|_| {
                read_value(&mut self.reader)
                    .unwrap_or_else(|err| panic!("read a pipelined reply: {err}"))
            })
            .collect()
    }

    pub fn select(&mut self, db: u32) {
        self.ok(&["SELECT", &db.to_string()]);
    }

    pub fn dbsize(&mut self) -> i64 {
        self.ok(&["DBSIZE"]).as_int()
    }

    /// `INFO section` as text; read fields with [`info_field`].
    pub fn info(&mut self, section: &str) -> String {
        self.ok(&["INFO", section]).into_text()
    }

    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        self.ok(&[b"GET".as_slice(), key.as_ref()]).into_bulk()
    }

    pub fn exists(&mut self, key: impl AsRef<[u8]>) -> bool {
        self.ok(&[b"EXISTS".as_slice(), key.as_ref()]).as_int() == 1
    }

    pub fn lrange(&mut self, key: impl AsRef<[u8]>) -> Vec<Vec<u8>> {
        self.ok(&[b"LRANGE".as_slice(), key.as_ref(), b"0", b"-1"])
            .into_array()
            .into_iter()
            .map(|item| item.into_bulk().unwrap_or_default())
            .collect()
    }

    pub fn hgetall(&mut self, key: impl AsRef<[u8]>) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let flat = self.ok(&[b"HGETALL".as_slice(), key.as_ref()]).into_array();
        let mut map = BTreeMap::new();
        let mut items = flat.into_iter();
        while let (Some(field), Some(value)) = (items.next(), items.next()) {
            map.insert(
                field.into_bulk().unwrap_or_default(),
                value.into_bulk().unwrap_or_default(),
            );
        }
        map
    }

    /// The pid of the server process, to tell our server from another one
    /// that grabbed the same port first.
    pub fn server_pid(&mut self) -> io::Result<u32> {
        process_id(self.try_cmd(&["INFO", "server"])?)
    }
}

/// The `process_id` field of a reply to `INFO server`.
pub fn process_id(info: Value) -> io::Result<u32> {
    let info = match info {
        Value::Bulk(Some(info)) | Value::Verbatim(info) => info,
        other => return Err(invalid(&format!("INFO server replied {other:?}"))),
    };
    info_field(&String::from_utf8_lossy(&info), "process_id")
        .and_then(|pid| pid.parse().ok())
        .ok_or_else(|| invalid("INFO server has no process_id"))
}

fn describe<A: AsRef<[u8]>>(args: &[A]) -> String {
    let words: Vec<String> = args
        .iter()
        .map(|arg| {
            let arg = arg.as_ref();
            if arg.len() > 60 {
                format!("<{} bytes>", arg.len())
            } else {
                arg.escape_ascii().to_string()
            }
        })
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::info_field;

    #[test]
    fn info_field_matches_whole_names_only() {
        let info = "# Memory\r\nused_memory:1024\r\nused_memory_rss:4096\r\n";
        assert_eq!(info_field(info, "used_memory"), Some("1024"));
        assert_eq!(info_field(info, "used_memory_rss"), Some("4096"));
        assert_eq!(info_field(info, "used"), None);
        assert_eq!(info_field(info, "mem_clients_normal"), None);
    }
}
