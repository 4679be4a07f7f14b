//! The validated configuration of a run: what the flags asked for, checked
//! and resolved (URI parts, defaults, `REDISCLI_AUTH`), as plain data.
//!
//! Place in the data flow: made once by `cli`, read by every step after it.
//! It holds no clap type and no rustls type, and opens no file: `run` opens
//! the inputs and loads the TLS files it names.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::window::WindowLimits;

/// How input commands are recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Per command, as the server does: a first byte `*` starts a RESP
    /// array, anything else is a text line.
    Auto,
    /// Every line is a text line, even one starting with `*`.
    Text,
    /// Every command must be a RESP array.
    Resp,
    /// CSV records (RFC 4180), turned into commands by `RecordOptions`'
    /// templates.
    Csv,
    /// Tab-separated records (CSV with a tab delimiter, quotes allowed).
    Tsv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// Records (CSV, TSV, JSON Lines) that templates turn into commands.
    pub fn is_records(self) -> bool {
        matches!(self, Format::Csv | Format::Tsv | Format::Jsonl)
    }
}

/// How `--format csv|tsv|jsonl` records become commands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordOptions {
    /// `--template`, in order: each record gives one command per template.
    pub templates: Vec<String>,
    /// The CSV field separator (`--delimiter`; `\t` for TSV).
    pub delimiter: u8,
    /// Where CSV and TSV fields get their names.
    pub names: FieldNames,
}

/// Where the names of CSV and TSV fields come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FieldNames {
    /// The first record of each file (the header row).
    #[default]
    HeaderRow,
    /// None (`--no-header`): fields by position only.
    Positions,
    /// Given by `--fields`; every record is data.
    Given(Vec<String>),
}

/// How `--replies` writes each reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepliesFormat {
    /// As `redis-cli --raw` prints it.
    Raw,
    /// One JSON object a line: the input position and the reply.
    Json,
    /// The reply's bytes exactly as received.
    Resp,
}

/// Where `--replies` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepliesTarget {
    /// `--replies -`: the summary goes to stderr then.
    Stdout,
    File(PathBuf),
}

/// `--replies` and `--replies-format`: every reply written out, in input
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepliesOptions {
    pub target: RepliesTarget,
    pub format: RepliesFormat,
}

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: Option<String>,
    pub password: String,
}

/// One input source, read in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub endpoint: Endpoint,
    pub credentials: Option<Credentials>,
    /// `-4` / `-6`: try this family's addresses of a host name first.
    pub prefer_ip: Option<IpFamily>,
    /// `--askpass`: `run` reads the password into `credentials` before
    /// connecting.
    pub ask_password: bool,
    /// Print the warning redis-cli prints for a password on the command line.
    pub warn_about_password: bool,
    /// Database to SELECT after connecting; 0 needs no SELECT.
    pub db: u32,
    pub resp3: bool,
    pub connect_timeout: Option<Duration>,
    /// Give up when no reply has come for this long; `None` waits forever.
    pub pipe_timeout: Option<Duration>,
    /// TLS on every TCP connection (`--tls`, `rediss://`): the flags as
    /// given; `run` loads the files they name.
    pub tls: Option<TlsOptions>,
    pub format: Format,
    /// `--format csv|tsv|jsonl`: the templates and field names.
    pub records: RecordOptions,
    pub emit_resp: bool,
    pub sources: Vec<Source>,
    pub window: WindowLimits,
    /// Commands at the start of the input not to send (`--skip`).
    pub skip: u64,
    /// Reconnect attempts per outage (`--retry`); 0 stops at the first loss.
    pub retry: u32,
    /// Stop sending once this many errors were counted.
    pub max_errors: Option<u64>,
    /// Where failed commands' input bytes go.
    pub errors_file: Option<PathBuf>,
    /// Where every reply is written, in input order (`--replies`).
    pub replies: Option<RepliesOptions>,
    /// Cluster mode (`-c`): route each command to the primary of its slot.
    pub cluster: bool,
    /// Connections to the server (`--connections`, 1 to 64); commands are
    /// spread over them by their keys' hash slot.
    pub connections: usize,
    /// Print the summary as one JSON object instead of redis-cli's lines.
    pub json: bool,
    /// Error lines printed before the rest are only counted; `None`: all.
    pub error_lines: Option<u64>,
    /// `Some(true)` forces the progress display, `Some(false)` turns it
    /// off, `None` shows it when stderr is a terminal.
    pub progress: Option<bool>,
    /// `--rate`, `--max-latency`: how gently to load.
    pub pace: PaceOptions,
}

/// How gently to load a live server; both `None`: as fast as it goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PaceOptions {
    /// `--rate`: at most this many commands per second, over all
    /// connections.
    pub rate: Option<u64>,
    /// `--max-latency`: slow down while the server's answer to a probe
    /// takes longer than this (its recent high percentile).
    pub max_latency: Option<Duration>,
}

impl fmt::Display for Endpoint {
    /// `host:port` (`[v6]:port`), or the socket path, as messages show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// An IP address family (`-4`, `-6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    V4,
    V6,
}

/// The TLS flags, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Server name to send and to verify the certificate against, instead
    /// of the host.
    pub sni: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub ca_dir: Option<PathBuf>,
    /// Client certificate chain and its private key (both or neither).
    pub client_auth: Option<(PathBuf, PathBuf)>,
    /// Skip certificate verification.
    pub insecure: bool,
    /// `--tls-ciphers`: TLS 1.2 ciphers to offer (OpenSSL names, `:`-separated).
    pub ciphers: Option<String>,
    /// `--tls-ciphersuites`: TLS 1.3 suites to offer (`:`-separated).
    pub ciphersuites: Option<String>,
}
