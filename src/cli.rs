//! The command line, with clap: flags → one validated `Config`, or text to
//! print (help, version, completions, the man page), or a usage error.
//! Flags and their spelling follow `redis-cli` wherever the two overlap; no
//! clap type leaves this module, and it neither prints nor exits: `main`
//! does both.
//!
//! Place in the data flow: before `run`; everything downstream reads the
//! `Config`.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{ArgAction, CommandFactory, Parser, ValueEnum};
use clap_complete::Shell;

use crate::config::{
    Config, Credentials, Endpoint, FieldNames, Format, IpFamily, PaceOptions, RecordOptions,
    RepliesFormat, RepliesOptions, RepliesTarget, Source, TlsOptions,
};
use crate::input::template::compile_all;
use crate::window::WindowLimits;

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    Load(Box<Config>),
    /// Text for stdout, then exit 0: help, version, a completion script,
    /// the man page.
    Print(Vec<u8>),
}

/// A command line that cannot run; `Display` is the whole message for
/// stderr (clap's error, usage and hint, or pipeload's own line); the exit
/// status is 2.
#[derive(Debug)]
pub struct UsageError(String);

impl UsageError {
    /// The message's first line, without its `error: ` or `pipeload: `.
    pub fn headline(&self) -> &str {
        let first = self.0.lines().next().unwrap_or_default();
        ["error: ", "pipeload: "]
            .iter()
            .find_map(|prefix| first.strip_prefix(prefix))
            .unwrap_or(first)
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.trim_end())
    }
}

/// How input commands are recognised (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    /// Per command, as the server does: a first byte `*` starts a RESP
    /// array, anything else is a text line.
    Auto,
    /// Every line is a text line, even one starting with `*`.
    Text,
    /// Every command must be a RESP array.
    Resp,
    /// CSV records, made into commands by --template
    Csv,
    /// Tab-separated records, made into commands by --template
    Tsv,
    /// One JSON object per line, made into commands by --template
    Jsonl,
}

impl From<FormatArg> for Format {
    fn from(format: FormatArg) -> Format {
        match format {
            FormatArg::Auto => Format::Auto,
            FormatArg::Text => Format::Text,
            FormatArg::Resp => Format::Resp,
            FormatArg::Csv => Format::Csv,
            FormatArg::Tsv => Format::Tsv,
            FormatArg::Jsonl => Format::Jsonl,
        }
    }
}

/// How `--replies` writes each reply (`--replies-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RepliesFormatArg {
    /// As `redis-cli --raw` prints replies
    Raw,
    /// One JSON object a line: {"line":N,"reply":...}
    Json,
    /// Each reply's bytes exactly as received
    Resp,
}

impl From<RepliesFormatArg> for RepliesFormat {
    fn from(format: RepliesFormatArg) -> RepliesFormat {
        match format {
            RepliesFormatArg::Raw => RepliesFormat::Raw,
            RepliesFormatArg::Json => RepliesFormat::Json,
            RepliesFormatArg::Resp => RepliesFormat::Resp,
        }
    }
}

const EXAMPLES: &str = "\
Examples:
  cat data.txt | pipeload --pipe
  pipeload -h 10.0.0.5 -p 6380 -a secret seed.txt more.resp
  pipeload -u redis://loader:secret@127.0.0.1:6379/2 data.txt
  pipeload --tls -h my.redis.example -p 6380 -a secret data.txt
  pipeload --emit-resp data.txt > data.resp
  pipeload --format csv --template 'HSET user:{id} {*}' --template 'SADD users {id}' users.csv
  pipeload --format jsonl --template 'JSON.SET doc:{id} $ {.}' docs.jsonl
  pipeload --replies - --replies-format json gets.txt | jq -r .reply";

#[derive(Debug, Parser)]
#[command(
    name = "pipeload",
    version,
    about = "Load Redis commands into Redis, Valkey or a Redis Cluster as fast as the server can execute them.",
    long_about = "Load Redis commands into Redis, Valkey or a Redis Cluster as fast as the server can execute them.\n\n\
        Reads text command lines (the server's quoting rules) or raw RESP from stdin or \
        files, pipelines them (with -c, to every primary of a cluster), reports every error with the input \
        line it came from, and prints the summary `redis-cli --pipe` prints.",
    after_help = EXAMPLES,
    // Not clap's usage built around a misspelt flag's suggestion
    // (`pipeload --help [FILE]...` after `--hep`).
    override_usage = "pipeload [OPTIONS] [FILE]...",
    disable_help_flag = true,
    disable_version_flag = true
)]
struct Flags {
    /// Server hostname
    #[arg(short = 'h', value_name = "HOSTNAME", help_heading = "Connection")]
    host: Option<String>,

    /// Server port
    #[arg(short = 'p', value_name = "PORT", help_heading = "Connection")]
    port: Option<u16>,

    /// Server unix socket (overrides hostname and port)
    #[arg(short = 's', value_name = "SOCKET", help_heading = "Connection")]
    socket: Option<PathBuf>,

    /// Server URI: redis://[[user]:password@]host[:port][/db] (or valkey://;
    /// rediss:// and valkeys:// use TLS); -h, -p, -a, --user and -n given as
    /// well take precedence
    #[arg(short = 'u', value_name = "URI", help_heading = "Connection")]
    uri: Option<String>,

    /// Password to use when connecting (REDISCLI_AUTH is used when not given)
    #[arg(
        short = 'a',
        long = "pass",
        value_name = "PASSWORD",
        help_heading = "Connection"
    )]
    password: Option<String>,

    /// Username to send with the password (ACL)
    #[arg(long, value_name = "USERNAME", help_heading = "Connection")]
    user: Option<String>,

    /// Don't warn about a password given with -a or -u
    #[arg(long, help_heading = "Connection")]
    no_auth_warning: bool,

    /// Database number
    #[arg(short = 'n', value_name = "DB", help_heading = "Connection")]
    db: Option<u32>,

    /// Start the session in RESP3 protocol mode (HELLO 3)
    #[arg(short = '3', overrides_with = "resp2", help_heading = "Connection")]
    resp3: bool,

    /// Cluster mode: load a Redis Cluster through any of its nodes
    #[arg(short = 'c', help_heading = "Connection")]
    cluster: bool,

    /// Load over N connections to the server (1 to 64), each key always
    /// on the same one, so its writes keep input order; commands that
    /// span connections or change shared state wait for the others
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=64),
        conflicts_with = "emit_resp",
        help_heading = "Connection"
    )]
    connections: u16,

    /// Server connection timeout in seconds (decimals allowed)
    #[arg(short = 't', value_name = "SECONDS", help_heading = "Connection")]
    connect_timeout: Option<f64>,

    /// Establish a secure TLS connection
    #[arg(long, help_heading = "TLS")]
    tls: bool,

    /// Server name to send (SNI) and to verify the certificate against,
    /// instead of the host
    #[arg(long, value_name = "HOST", help_heading = "TLS")]
    sni: Option<String>,

    /// CA certificate file to verify the server with (default: the
    /// system's CA store)
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    cacert: Option<PathBuf>,

    /// Directory of trusted CA certificates (PEM files)
    #[arg(long, value_name = "DIR", help_heading = "TLS")]
    cacertdir: Option<PathBuf>,

    /// Allow an insecure TLS connection: skip certificate verification
    #[arg(long, help_heading = "TLS")]
    insecure: bool,

    /// Client certificate to authenticate with (needs --key)
    #[arg(long, value_name = "FILE", requires = "key", help_heading = "TLS")]
    cert: Option<PathBuf>,

    /// Private key of the client certificate (needs --cert)
    #[arg(long, value_name = "FILE", requires = "cert", help_heading = "TLS")]
    key: Option<PathBuf>,

    /// Load the input's commands into the server (the only mode; taken for
    /// redis-cli compatibility, also when repeated)
    #[arg(long, overrides_with = "pipe", help_heading = "Loading")]
    pipe: bool,

    /// Give up when no reply has come for this many seconds while commands
    /// wait for one (decimals allowed; 0 waits forever)
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 30.0,
        help_heading = "Loading"
    )]
    pipe_timeout: f64,

    /// How commands are written in the input
    #[arg(long, value_enum, default_value_t = FormatArg::Auto, help_heading = "Loading")]
    format: FormatArg,

    /// Write the input's commands as RESP to stdout instead of sending them
    #[arg(long, help_heading = "Loading")]
    emit_resp: bool,

    /// With --format csv|tsv|jsonl: the command each record gives, written
    /// like a text line, {field} standing for a field's bytes ({0} by
    /// position, {a.b} a JSON path, {field:-default}, {*} every field as
    /// name/value pairs, {.} the record as JSON, {{ and }} braces); repeat
    /// for several commands per record
    #[arg(long, value_name = "TEMPLATE", help_heading = "Records")]
    template: Vec<String>,

    /// CSV field delimiter, one character (default ',' for csv, tab for tsv)
    #[arg(long, value_name = "CHAR", help_heading = "Records")]
    delimiter: Option<String>,

    /// CSV/TSV: the first row is data, fields go by position ({0}, {1}…)
    #[arg(long, conflicts_with = "fields", help_heading = "Records")]
    no_header: bool,

    /// CSV/TSV: the field names, comma-separated; the first row is data
    #[arg(long, value_name = "NAMES", help_heading = "Records")]
    fields: Option<String>,

    // Pacing (`pace`): gentle on a live server.
    /// Send at most N commands per second in total (over all connections
    /// and cluster nodes), evenly
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Pacing")]
    rate: Option<u64>,

    /// Slow down whenever a PING probe on a connection of its own takes
    /// longer than MS milliseconds (its recent 99.5th percentile); speed up
    /// again while it does not (decimals allowed)
    #[arg(long, value_name = "MS", help_heading = "Pacing")]
    max_latency: Option<f64>,

    /// Skip the first N commands of the input (resume a stopped load with
    /// the value it printed)
    #[arg(long, value_name = "N", default_value_t = 0, help_heading = "Faults")]
    skip: u64,

    /// On a lost connection, reconnect up to N times per outage and resend
    /// every command not yet acknowledged (at-least-once)
    #[arg(long, value_name = "N", default_value_t = 0, help_heading = "Faults")]
    retry: u32,

    /// Stop sending after N errors
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Faults")]
    max_errors: Option<u64>,

    /// Write each failed command's input bytes to FILE, in input order
    /// (created readable by its owner only: it may hold AUTH lines)
    #[arg(long, value_name = "FILE", help_heading = "Faults")]
    errors_file: Option<PathBuf>,

    /// Write every reply to FILE in input order ("-" is stdout; the summary
    /// then goes to stderr)
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "emit_resp",
        help_heading = "Output"
    )]
    replies: Option<PathBuf>,

    /// How --replies writes each reply
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = RepliesFormatArg::Raw, help_heading = "Output")]
    replies_format: RepliesFormatArg,

    /// Print the summary as one JSON object on stdout
    #[arg(long, help_heading = "Output")]
    json: bool,

    /// Print the first N error lines, then only count the rest (0: all)
    #[arg(long, value_name = "N", default_value_t = 100, help_heading = "Output")]
    error_lines: u64,

    /// Input files, read in order ("-" is stdin; none reads stdin)
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,

    /// Show progress on stderr (the default when stderr is a terminal and
    /// the commands are not typed there; a line a second into a log)
    #[arg(long, overrides_with = "no_progress", help_heading = "Output")]
    progress: bool,

    /// Never show progress
    #[arg(long, help_heading = "Output")]
    no_progress: bool,

    /// Print a completion script for SHELL and exit
    #[arg(long, value_name = "SHELL", help_heading = "Output")]
    completions: Option<Shell>,

    /// Print the manual page (roff) and exit: pipeload --man > pipeload.1
    #[arg(long, help_heading = "Output")]
    man: bool,

    // redis-cli flags taken for parity (grouped here to keep merges easy).
    /// Start the session in RESP2 protocol mode (the default)
    #[arg(short = '2', overrides_with = "resp3", help_heading = "Connection")]
    resp2: bool,

    /// Prefer IPv4 over IPv6 when the host name has both
    #[arg(
        short = '4',
        overrides_with = "prefer_ipv6",
        help_heading = "Connection"
    )]
    prefer_ipv4: bool,

    /// Prefer IPv6 over IPv4 when the host name has both
    #[arg(
        short = '6',
        overrides_with = "prefer_ipv4",
        help_heading = "Connection"
    )]
    prefer_ipv6: bool,

    /// Read the password from the terminal without echo (from stdin's first
    /// line when there is no terminal); -a and REDISCLI_AUTH are ignored
    #[arg(long, help_heading = "Connection")]
    askpass: bool,

    /// TLS 1.2 ciphers to offer, OpenSSL names separated by ':'
    /// (e.g. ECDHE-RSA-AES256-GCM-SHA384)
    #[arg(long, value_name = "LIST", help_heading = "TLS")]
    tls_ciphers: Option<String>,

    /// TLS 1.3 cipher suites to offer, separated by ':'
    /// (e.g. TLS_AES_256_GCM_SHA384)
    #[arg(long, value_name = "LIST", help_heading = "TLS")]
    tls_ciphersuites: Option<String>,

    /// Print help
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,

    /// Print version
    #[arg(short = 'v', long, action = ArgAction::Version)]
    version: Option<bool>,
}

/// Parses the command line.
pub fn parse_args<I, T>(args: I) -> Result<Invocation, UsageError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let flags = match Flags::try_parse_from(args) {
        Ok(flags) => flags,
        // --help and --version come this way too, for stdout.
        Err(error) if !error.use_stderr() => {
            return Ok(Invocation::Print(error.render().to_string().into_bytes()));
        }
        Err(error) => return Err(UsageError(error.render().to_string())),
    };
    if let Some(shell) = flags.completions {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Flags::command(), "pipeload", &mut script);
        return Ok(Invocation::Print(script));
    }
    if flags.man {
        let page = crate::manual::render(Flags::command())
            .map_err(|error| UsageError(format!("error: cannot render the man page: {error}")))?;
        return Ok(Invocation::Print(page));
    }
    config_from_flags(flags, std::env::var("REDISCLI_AUTH").ok())
        .map(|config| Invocation::Load(Box::new(config)))
        .map_err(|error| UsageError(format!("pipeload: {error:#}")))
}

fn config_from_flags(flags: Flags, env_password: Option<String>) -> Result<Config> {
    let uri = match &flags.uri {
        Some(uri) => Some(parse_uri(uri)?),
        None => None,
    };
    let uri_has_password = uri.as_ref().is_some_and(|uri| uri.password.is_some());

    let endpoint = match (&flags.socket, &uri) {
        (Some(path), _) => Endpoint::Unix(path.clone()),
        (None, uri) => Endpoint::Tcp {
            host: flags
                .host
                .clone()
                .or_else(|| uri.as_ref().map(|uri| uri.host.clone()))
                .unwrap_or_else(|| "127.0.0.1".to_owned()),
            port: flags
                .port
                .or(uri.as_ref().and_then(|uri| uri.port))
                .unwrap_or(6379),
        },
    };

    let tls = tls_options(&flags, uri.as_ref(), &endpoint)?;

    // --askpass: the password is read when the run starts; redis-cli
    // ignores -a and REDISCLI_AUTH then.
    let password = match flags.askpass {
        true => Some(String::new()),
        false => flags
            .password
            .clone()
            .or_else(|| uri.as_ref().and_then(|uri| uri.password.clone()))
            .or(env_password),
    };
    let user = flags
        .user
        .clone()
        .or_else(|| uri.as_ref().and_then(|uri| uri.user.clone()));
    let credentials = match (password, user) {
        (Some(password), user) => Some(Credentials { user, password }),
        (None, Some(_)) => bail!("--user needs a password: give it with -a, -u or REDISCLI_AUTH"),
        (None, None) => None,
    };

    let db = flags
        .db
        .or(uri.as_ref().and_then(|uri| uri.db))
        .unwrap_or(0);
    let connect_timeout = match flags.connect_timeout {
        None => None,
        Some(seconds) if seconds > 0.0 && Duration::try_from_secs_f64(seconds).is_ok() => {
            Some(Duration::from_secs_f64(seconds))
        }
        Some(seconds) => bail!("-t needs a positive number of seconds, got {seconds}"),
    };
    let pipe_timeout = match flags.pipe_timeout {
        0.0 => None,
        seconds if seconds > 0.0 => match Duration::try_from_secs_f64(seconds) {
            Ok(timeout) => Some(timeout),
            Err(_) => bail!("--pipe-timeout: too many seconds (0 waits forever)"),
        },
        seconds => {
            bail!("--pipe-timeout needs a number of seconds (0 waits forever), got {seconds}")
        }
    };

    let max_latency = match flags.max_latency {
        None => None,
        Some(ms) if ms > 0.0 => match Duration::try_from_secs_f64(ms / 1000.0) {
            Ok(latency) if !latency.is_zero() => Some(latency),
            _ => bail!("--max-latency: {ms} ms is out of range"),
        },
        Some(ms) => bail!("--max-latency needs a positive number of milliseconds, got {ms}"),
    };

    if flags.cluster && db != 0 {
        bail!("-n {db}: a cluster has only database 0");
    }

    let replies = flags.replies.as_ref().map(|path| RepliesOptions {
        target: match path.as_os_str() == "-" {
            true => RepliesTarget::Stdout,
            false => RepliesTarget::File(path.clone()),
        },
        format: flags.replies_format.into(),
    });
    if flags.json && replies.as_ref().map(|replies| &replies.target) == Some(&RepliesTarget::Stdout)
    {
        bail!(
            "--json prints the summary on stdout, where --replies - writes the replies: give --replies a file"
        );
    }

    let sources = if flags.files.is_empty() {
        vec![Source::Stdin]
    } else {
        flags
            .files
            .iter()
            .map(|path| match path.as_os_str() == "-" {
                true => Source::Stdin,
                false => Source::File(path.clone()),
            })
            .collect()
    };

    Ok(Config {
        endpoint,
        warn_about_password: (flags.password.is_some() || uri_has_password)
            && !flags.no_auth_warning
            && !flags.askpass,
        ask_password: flags.askpass,
        prefer_ip: match (flags.prefer_ipv4, flags.prefer_ipv6) {
            (true, _) => Some(IpFamily::V4),
            (_, true) => Some(IpFamily::V6),
            _ => None,
        },
        credentials,
        db,
        resp3: flags.resp3,
        connect_timeout,
        pipe_timeout,
        tls,
        format: flags.format.into(),
        records: record_options(&flags)?,
        emit_resp: flags.emit_resp,
        sources,
        window: WindowLimits::default(),
        skip: flags.skip,
        retry: flags.retry,
        max_errors: flags.max_errors,
        errors_file: flags.errors_file,
        replies,
        cluster: flags.cluster,
        connections: usize::from(flags.connections),
        json: flags.json,
        error_lines: (flags.error_lines > 0).then_some(flags.error_lines),
        progress: match (flags.progress, flags.no_progress) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        pace: PaceOptions {
            rate: flags.rate,
            max_latency,
        },
    })
}

/// The record flags (`--format csv|tsv|jsonl`, `--template`, `--delimiter`,
/// `--no-header`, `--fields`), checked together: the templates compile and
/// name only fields that can exist.
fn record_options(flags: &Flags) -> Result<RecordOptions> {
    let format = Format::from(flags.format);
    if !format.is_records() {
        let given = [
            ("--template", !flags.template.is_empty()),
            ("--delimiter", flags.delimiter.is_some()),
            ("--no-header", flags.no_header),
            ("--fields", flags.fields.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
            bail!("{flag} needs --format csv, tsv or jsonl");
        }
        return Ok(RecordOptions::default());
    }
    let name = match format {
        Format::Tsv => "tsv",
        Format::Jsonl => "jsonl",
        _ => "csv",
    };
    if flags.template.is_empty() {
        bail!(
            "--format {name} needs --template, the command each record gives: for example \
             --format {name} --template 'HSET user:{{id}} {{*}}' --template 'SADD users {{id}}'"
        );
    }
    if format == Format::Jsonl
        && let Some(flag) = [
            ("--delimiter", flags.delimiter.is_some()),
            ("--no-header", flags.no_header),
            ("--fields", flags.fields.is_some()),
        ]
        .iter()
        .find_map(|(flag, given)| given.then_some(flag))
    {
        bail!("{flag} is for --format csv or tsv");
    }
    let templates = compile_all(&flags.template)?;
    let names = match (&flags.fields, flags.no_header) {
        (Some(names), _) => FieldNames::Given(
            names
                .split(',')
                .map(|name| name.trim().to_owned())
                .collect(),
        ),
        (None, true) => FieldNames::Positions,
        (None, false) => FieldNames::HeaderRow,
    };
    for template in &templates {
        let known = match &names {
            FieldNames::Given(given) => Some(given),
            FieldNames::Positions => None,
            FieldNames::HeaderRow => continue,
        };
        if let Some(needs) = template.needs_names()
            && known.is_none()
        {
            bail!(
                "--template '{}': {needs} needs field names (a header row or --fields), not --no-header",
                template.text
            );
        }
        for field in template.fields() {
            let named = match known {
                _ if field.position().is_some() => true,
                Some(given) => given.contains(&field.name),
                None => false,
            };
            if !named {
                let reason = match known {
                    Some(given) => {
                        format!("--fields has no '{}' ({})", field.name, given.join(","))
                    }
                    None => format!(
                        "no field '{}': with --no-header, fields go by position ({{0}}, {{1}}…)",
                        field.name
                    ),
                };
                bail!("--template '{}': {reason}", template.text);
            }
        }
    }
    let delimiter = match (flags.delimiter.as_deref(), format) {
        (None, Format::Tsv) => b'\t',
        (None, _) => b',',
        (Some("\\t" | "tab" | "\t"), _) => b'\t',
        (Some(text), _) => match text.as_bytes() {
            [byte] if !matches!(byte, b'"' | b'\n' | b'\r') && byte.is_ascii() => *byte,
            _ => bail!(
                "--delimiter takes one ASCII character other than a quote or a line end (or '\\t'), got '{text}'"
            ),
        },
    };
    Ok(RecordOptions {
        templates: flags.template.clone(),
        delimiter,
        names,
    })
}

/// The TLS settings (`--tls` or a `rediss://` URI), or `None`. A TLS flag
/// without TLS is refused rather than ignored: the connection would
/// silently be plain text.
fn tls_options(
    flags: &Flags,
    uri: Option<&Uri>,
    endpoint: &Endpoint,
) -> Result<Option<TlsOptions>> {
    let options = TlsOptions {
        sni: flags.sni.clone(),
        ca_file: flags.cacert.clone(),
        ca_dir: flags.cacertdir.clone(),
        client_auth: flags.cert.clone().zip(flags.key.clone()),
        insecure: flags.insecure,
        ciphers: flags.tls_ciphers.clone(),
        ciphersuites: flags.tls_ciphersuites.clone(),
    };
    if !flags.tls && !uri.is_some_and(|uri| uri.tls) {
        let given = [
            ("--sni", flags.sni.is_some()),
            ("--cacert", flags.cacert.is_some()),
            ("--cacertdir", flags.cacertdir.is_some()),
            ("--insecure", flags.insecure),
            ("--cert", flags.cert.is_some()),
            ("--tls-ciphers", flags.tls_ciphers.is_some()),
            ("--tls-ciphersuites", flags.tls_ciphersuites.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
            bail!("{flag} needs --tls (or a rediss:// URI)");
        }
        return Ok(None);
    }
    if let Endpoint::Unix(_) = endpoint {
        bail!("TLS runs over TCP: --tls and rediss:// cannot be used with -s");
    }
    Ok(Some(options))
}

/// The parts of a `redis://` URI.
#[derive(Debug, Default, PartialEq, Eq)]
struct Uri {
    host: String,
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    db: Option<u32>,
    /// `rediss://` or `valkeys://`.
    tls: bool,
}

/// Parses `redis://[[user]:password@]host[:port][/db]` (also `valkey://`,
/// and `rediss://`, `valkeys://` for TLS), percent-decoding the user and
/// password as redis-cli does.
fn parse_uri(uri: &str) -> Result<Uri> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        bail!("invalid URI (expected redis://[[user]:password@]host[:port][/db])");
    };
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "redis" | "valkey" => false,
        "rediss" | "valkeys" => true,
        _ => bail!(
            "invalid URI scheme '{scheme}' (expected redis://, valkey://, rediss:// or valkeys://)"
        ),
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let mut parsed = Uri {
        tls,
        ..Uri::default()
    };
    // The password may itself contain '@', so the host starts after the last one.
    let host_port = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => {
            match userinfo.split_once(':') {
                Some((user, password)) => {
                    if !user.is_empty() {
                        parsed.user = Some(percent_decode(user)?);
                    }
                    parsed.password = Some(percent_decode(password)?);
                }
                None => parsed.password = Some(percent_decode(userinfo)?),
            }
            host_port
        }
        None => authority,
    };
    let (host, port) = split_host_port(host_port)?;
    parsed.host = host.to_owned();
    parsed.port = port;
    let db = path.strip_prefix('/').unwrap_or("");
    let db = db.split(['?', '#']).next().unwrap_or("");
    if !db.is_empty() {
        parsed.db = Some(
            db.parse()
                .with_context(|| format!("invalid database number '{db}' in URI"))?,
        );
    }
    Ok(parsed)
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(host_port: &str) -> Result<(&str, Option<u16>)> {
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            bail!("invalid URI host '{host_port}'");
        };
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(port) => Some(
            port.parse()
                .with_context(|| format!("invalid port '{port}' in URI"))?,
        ),
    };
    let host = match host.is_empty() {
        true => "127.0.0.1",
        false => host,
    };
    Ok((host, port))
}

fn percent_decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes
                .get(index + 1..index + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok());
            let Some(byte) = hex else {
                bail!("invalid percent-encoding in URI credentials");
            };
            decoded.push(byte);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).context("URI credentials are not valid UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config> {
        let flags = Flags::try_parse_from(std::iter::once("pipeload").chain(args.iter().copied()))?;
        config_from_flags(flags, None)
    }

    #[test]
    fn defaults_match_redis_cli() {
        let config = config(&["--pipe"]).unwrap();
        assert_eq!(
            config.endpoint,
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 6379
            }
        );
        assert_eq!(config.pipe_timeout, Some(Duration::from_secs(30)));
        assert_eq!(config.sources, vec![Source::Stdin]);
        assert!(config.credentials.is_none());
    }

    #[test]
    fn uri_gives_every_part() {
        let uri = parse_uri("redis://loader:s%40cret@example.org:6380/4").unwrap();
        assert_eq!(
            uri,
            Uri {
                host: "example.org".into(),
                port: Some(6380),
                user: Some("loader".into()),
                password: Some("s@cret".into()),
                db: Some(4),
                tls: false,
            }
        );
        let uri = parse_uri("valkey://:pw@[::1]:7000").unwrap();
        assert_eq!(uri.host, "::1");
        assert_eq!(uri.port, Some(7000));
        assert_eq!(uri.user, None);
        assert_eq!(uri.password.as_deref(), Some("pw"));
    }

    #[test]
    fn tls_uri_means_tls() {
        let uri = parse_uri("rediss://:pw@host:6380/1").unwrap();
        assert!(uri.tls);
        assert_eq!((uri.host.as_str(), uri.port), ("host", Some(6380)));
        assert!(parse_uri("VALKEYS://host").unwrap().tls);
        assert!(!parse_uri("redis://host").unwrap().tls);
        let tls = config(&["-u", "rediss://host", "--insecure"]).unwrap().tls;
        assert!(tls.is_some());
        assert!(
            config(&["--insecure"])
                .unwrap_err()
                .to_string()
                .contains("needs --tls")
        );
    }

    #[test]
    fn tls_flags_need_tls_and_tcp() {
        assert!(config(&["--sni", "example.org"]).is_err());
        assert!(config(&["--tls", "--insecure", "-s", "/tmp/redis.sock"]).is_err());
        // clap refuses a certificate without its key, and the reverse.
        assert!(config(&["--tls", "--cert", "client.pem"]).is_err());
        assert!(config(&["--tls", "--key", "client.key"]).is_err());
        // The files are read when the run starts, not here.
        let tls = config(&["--tls", "--cacert", "/nonexistent/ca.pem"])
            .unwrap()
            .tls;
        assert_eq!(
            tls.and_then(|options| options.ca_file),
            Some(PathBuf::from("/nonexistent/ca.pem"))
        );
    }

    #[test]
    fn flags_override_the_uri() {
        let config = config(&["-u", "redis://a:b@h:1/2", "-p", "9", "-n", "5"]).unwrap();
        assert_eq!(
            config.endpoint,
            Endpoint::Tcp {
                host: "h".into(),
                port: 9
            }
        );
        assert_eq!(config.db, 5);
        assert!(config.warn_about_password);
    }

    #[test]
    fn dash_is_stdin() {
        let config = config(&["a.txt", "-", "b.resp"]).unwrap();
        assert_eq!(
            config.sources,
            vec![
                Source::File("a.txt".into()),
                Source::Stdin,
                Source::File("b.resp".into())
            ]
        );
    }

    #[test]
    fn completions_and_man_page_come_from_the_flags() {
        let mut bash = Vec::new();
        clap_complete::generate(Shell::Bash, &mut Flags::command(), "pipeload", &mut bash);
        assert!(String::from_utf8_lossy(&bash).contains("--pipe-timeout"));
        let mut man = Vec::new();
        clap_mangen::Man::new(Flags::command())
            .render(&mut man)
            .unwrap();
        assert!(String::from_utf8_lossy(&man).contains("pipe\\-timeout"));
    }

    #[test]
    fn redis_cli_parity_flags_are_taken() {
        // -2 is the default protocol; the last of -2 and -3 wins, as in redis-cli.
        assert!(!config(&["-2"]).unwrap().resp3);
        assert!(config(&["-2", "-3"]).unwrap().resp3);
        assert!(!config(&["-3", "-2"]).unwrap().resp3);
        assert!(config(&["--pipe", "--pipe"]).is_ok());
        assert_eq!(config(&["-4"]).unwrap().prefer_ip, Some(IpFamily::V4));
        assert_eq!(config(&["-4", "-6"]).unwrap().prefer_ip, Some(IpFamily::V6));
        assert_eq!(config(&[]).unwrap().prefer_ip, None);
        let timeout = config(&["--pipe-timeout", "0.5"]).unwrap().pipe_timeout;
        assert_eq!(timeout, Some(Duration::from_millis(500)));
        assert_eq!(config(&["--pipe-timeout", "0"]).unwrap().pipe_timeout, None);
        for bad in ["nan", "inf", "1e300"] {
            let error = config(&["--pipe-timeout", bad]).unwrap_err().to_string();
            assert!(error.starts_with("--pipe-timeout"), "{bad}: {error}");
        }
        assert!(config(&["-t", "1e300"]).is_err());
        assert!(config(&["--tls-ciphers", "HIGH"]).is_err());
        let tls = config(&["--tls", "--tls-ciphersuites", "TLS_AES_256_GCM_SHA384"])
            .unwrap()
            .tls
            .unwrap();
        assert_eq!(tls.ciphersuites.as_deref(), Some("TLS_AES_256_GCM_SHA384"));
    }

    #[test]
    fn askpass_ignores_dash_a_and_rediscli_auth() {
        let flags =
            Flags::try_parse_from(["pipeload", "--askpass", "-a", "given", "--user", "u"]).unwrap();
        let config = config_from_flags(flags, Some("from-env".into())).unwrap();
        assert!(config.ask_password);
        assert!(!config.warn_about_password);
        let credentials = config.credentials.unwrap();
        assert_eq!(credentials.user.as_deref(), Some("u"));
        assert_eq!(credentials.password, "", "read when the run starts");
    }

    #[test]
    fn a_misspelt_flag_shows_the_plain_usage() {
        let error = parse_args(["pipeload", "--hep"]).unwrap_err().to_string();
        assert!(error.contains("'--help'"), "{error}");
        assert!(
            error.contains("Usage: pipeload [OPTIONS] [FILE]..."),
            "{error}"
        );
    }

    #[test]
    fn record_flags_become_record_options() {
        let records = |args: &[&str]| config(args).map(|config| config.records);
        let tsv = records(&[
            "--format",
            "tsv",
            "--template",
            "SET {0} {1}",
            "--no-header",
        ])
        .unwrap();
        assert_eq!((tsv.delimiter, tsv.names), (b'\t', FieldNames::Positions));
        let semicolon = records(&[
            "--format",
            "csv",
            "--template",
            "SET {a} x",
            "--delimiter",
            ";",
        ]);
        assert_eq!(semicolon.unwrap().delimiter, b';');
        let tab = records(&[
            "--format",
            "csv",
            "--template",
            "SET {a} x",
            "--delimiter",
            "\\t",
        ]);
        assert_eq!(tab.unwrap().delimiter, b'\t');
        let given = records(&[
            "--format",
            "csv",
            "--template",
            "SET {a} {b}",
            "--fields",
            "a, b",
        ]);
        assert_eq!(
            given.unwrap().names,
            FieldNames::Given(vec!["a".into(), "b".into()])
        );
        for refused in [
            &[
                "--format",
                "csv",
                "--template",
                "SET {a} x",
                "--delimiter",
                "ab",
            ][..],
            &[
                "--format",
                "csv",
                "--template",
                "SET {a} x",
                "--delimiter",
                "\"",
            ],
            &[
                "--format",
                "jsonl",
                "--template",
                "SET {a} x",
                "--no-header",
            ],
            &["--format", "csv", "--no-header", "--template", "HSET k {*}"],
            &[
                "--format",
                "csv",
                "--fields",
                "a",
                "--template",
                "SET {.} {b}",
            ],
            &["--format", "text", "--template", "SET {a} x"],
            &["--format", "csv", "--template", "SET {a} }x"],
        ] {
            assert!(records(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn user_without_password_is_refused() {
        assert!(config(&["--user", "loader"]).is_err());
    }
}
