//! Input: reads stdin and files in large chunks, finds where each command
//! ends, turns text lines into RESP and passes RESP frames through unchanged,
//! and packs the results into `Batch`es for the bounded batch channel.
//!
//! Place in the data flow: the first thread. It also knows, better than
//! anyone downstream, how many replies the server will send: it follows
//! `CLIENT REPLY OFF|SKIP|ON` and marks each command `Expect::Reply` or
//! `Expect::NoReply`, refuses commands that would change the connection's
//! mode (`SUBSCRIBE`, `MONITOR`) and, when the input ended with commands the
//! server does not answer, appends a `CLIENT REPLY ON` marker whose reply
//! confirms them.
//!
//! Positions are absolute within each source: line numbers from 1, byte
//! offsets from 0, command numbers from 1. A text line that cannot be split
//! goes downstream as `Expect::Rejected` (never sent, reported in order); a
//! malformed RESP frame stops the input there, since nothing after it can be
//! framed safely.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};

use crossbeam_channel::Sender;

use crate::batch::{Batch, Expect, Rejection, describe_line};
use crate::cli::{Format, Source};
use crate::conn::describe_io_error;
use crate::encode::{append_command, command_bytes};
use crate::resp::{CommandScan, scan_command};
use crate::text::{Args, split_line};

/// Bytes read from a source at a time.
const READ_CHUNK: usize = 256 * 1024;
/// A batch is sent once it holds this many bytes…
const BATCH_BYTES: usize = 64 * 1024;
/// …or this many commands, so small commands still move in small steps.
const BATCH_COMMANDS: usize = 2048;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// An input source opened for reading, with the name messages use for it.
pub struct OpenSource {
    /// `None` for stdin, whose positions read `line N`.
    pub name: Option<String>,
    reader: Box<dyn Read + Send>,
}

/// Opens every source before anything is sent, so a missing file is reported
/// before connecting.
pub fn open_sources(sources: &[Source]) -> anyhow::Result<Vec<OpenSource>> {
    sources
        .iter()
        .map(|source| match source {
            Source::Stdin => Ok(OpenSource {
                name: None,
                reader: Box::new(io::stdin()),
            }),
            Source::File(path) => {
                let shown = path.display().to_string();
                let file = File::open(path).map_err(|error| {
                    anyhow::anyhow!("cannot read {shown}: {}", describe_io_error(&error))
                })?;
                let is_dir = file.metadata().map(|meta| meta.is_dir()).unwrap_or(false);
                if is_dir {
                    anyhow::bail!("cannot read {shown}: Is a directory");
                }
                Ok(OpenSource {
                    name: Some(shown),
                    reader: Box::new(file),
                })
            }
        })
        .collect()
}

/// Names of the sources, by index, for the threads that report positions.
pub fn source_names(sources: &[OpenSource]) -> Vec<Option<String>> {
    sources.iter().map(|source| source.name.clone()).collect()
}

/// Why the input stopped before its end.
#[derive(Debug)]
pub enum InputError {
    /// A RESP frame is malformed; nothing at or after `byte_offset` was read.
    Malformed {
        source_name: Option<String>,
        line_no: u64,
        byte_offset: u64,
        reason: String,
    },
    /// Reading a source failed.
    Read {
        source_name: Option<String>,
        error: io::Error,
    },
    /// The batch channel was closed: the pipeline stopped downstream.
    Stopped,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Malformed {
                source_name,
                line_no,
                byte_offset,
                reason,
            } => write!(
                f,
                "{} (byte {byte_offset}): malformed RESP: {reason}; stopped reading there",
                describe_line(source_name.as_deref(), *line_no)
            ),
            InputError::Read { source_name, error } => write!(
                f,
                "cannot read {}: {}",
                source_name.as_deref().unwrap_or("stdin"),
                describe_io_error(error)
            ),
            InputError::Stopped => write!(f, "input stopped: the pipeline ended early"),
        }
    }
}

impl std::error::Error for InputError {}

#[derive(Debug, Clone, Copy)]
pub struct InputOptions {
    pub format: Format,
    /// Append the `CLIENT REPLY ON` marker when the input ends with commands
    /// the server does not answer (only when talking to a server).
    pub confirm_unanswered_tail: bool,
}

/// Whether the server answers, as set by `CLIENT REPLY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyMode {
    On,
    Off,
    /// `CLIENT REPLY SKIP` was sent: the next command gets no reply.
    SkipNext,
}

/// What a command means for the connection, from its first arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CommandRole {
    Plain,
    ClientReply(ReplyMode),
    Multi,
    EndMulti,
    /// Switches the connection to a mode where replies are no longer one per
    /// command.
    Unpipelinable(Rejection),
}

fn command_role(arg_count: usize, head: [&[u8]; 3]) -> CommandRole {
    let name = head[0];
    let is = |word: &str| name.eq_ignore_ascii_case(word.as_bytes());
    if is("CLIENT") && arg_count == 3 && head[1].eq_ignore_ascii_case(b"REPLY") {
        let mode = head[2];
        if mode.eq_ignore_ascii_case(b"ON") {
            return CommandRole::ClientReply(ReplyMode::On);
        }
        if mode.eq_ignore_ascii_case(b"OFF") {
            return CommandRole::ClientReply(ReplyMode::Off);
        }
        if mode.eq_ignore_ascii_case(b"SKIP") {
            return CommandRole::ClientReply(ReplyMode::SkipNext);
        }
        return CommandRole::Plain;
    }
    if is("MULTI") {
        return CommandRole::Multi;
    }
    if is("EXEC") || is("DISCARD") {
        return CommandRole::EndMulti;
    }
    if is("SUBSCRIBE") || is("PSUBSCRIBE") || is("SSUBSCRIBE") {
        return CommandRole::Unpipelinable(Rejection::SubscriberMode);
    }
    if is("MONITOR") {
        return CommandRole::Unpipelinable(Rejection::Monitor);
    }
    CommandRole::Plain
}

/// Tracks `CLIENT REPLY` and `MULTI` along the input to decide what each
/// command will get back.
#[derive(Debug)]
struct ReplyTracker {
    mode: ReplyMode,
    in_multi: bool,
    /// Some command sent after the last answered one gets no reply.
    unanswered_tail: bool,
}

impl ReplyTracker {
    fn new() -> Self {
        ReplyTracker {
            mode: ReplyMode::On,
            in_multi: false,
            unanswered_tail: false,
        }
    }

    fn expect(&mut self, role: CommandRole) -> Expect {
        let expect = match role {
            CommandRole::Unpipelinable(why) => return Expect::Rejected(why),
            CommandRole::ClientReply(_) if self.in_multi => {
                return Expect::Rejected(Rejection::ClientReplyInMulti);
            }
            // ON clears OFF and SKIP before the server writes its +OK.
            CommandRole::ClientReply(ReplyMode::On) => {
                self.mode = ReplyMode::On;
                Expect::Reply
            }
            CommandRole::ClientReply(ReplyMode::Off) => {
                self.mode = ReplyMode::Off;
                Expect::NoReply
            }
            // SKIP is ignored while replies are off.
            CommandRole::ClientReply(ReplyMode::SkipNext) => {
                if self.mode != ReplyMode::Off {
                    self.mode = ReplyMode::SkipNext;
                }
                Expect::NoReply
            }
            CommandRole::Plain | CommandRole::Multi | CommandRole::EndMulti => {
                let expect = match self.mode {
                    ReplyMode::On => Expect::Reply,
                    ReplyMode::Off => Expect::NoReply,
                    ReplyMode::SkipNext => {
                        self.mode = ReplyMode::On;
                        Expect::NoReply
                    }
                };
                match role {
                    CommandRole::Multi => self.in_multi = true,
                    CommandRole::EndMulti => self.in_multi = false,
                    _ => {}
                }
                expect
            }
        };
        self.unanswered_tail = expect == Expect::NoReply;
        expect
    }
}

/// Reads every source in order and sends its commands as batches.
pub fn read_input(
    sources: Vec<OpenSource>,
    options: InputOptions,
    batches: &Sender<Batch>,
) -> Result<(), InputError> {
    let mut tracker = ReplyTracker::new();
    let mut last_source = 0;
    for (index, source) in sources.into_iter().enumerate() {
        let mut reader = SourceReader::new(index, source, options.format, batches);
        reader.read_all(&mut tracker)?;
        last_source = index;
    }
    if options.confirm_unanswered_tail && tracker.unanswered_tail {
        let mut batch = Batch::new(last_source, 0, 0);
        batch.bytes = command_bytes(&[b"CLIENT", b"REPLY", b"ON"]);
        batch.push_command(0, true, Expect::Marker);
        batches.send(batch).map_err(|_| InputError::Stopped)?;
    }
    Ok(())
}

/// Frames the commands of one source.
struct SourceReader<'a> {
    index: usize,
    name: Option<String>,
    reader: Box<dyn Read + Send>,
    format: Format,
    batches: &'a Sender<Batch>,
    /// Bytes read and not yet framed start at `buf[start]`.
    buf: Vec<u8>,
    start: usize,
    /// Offset in the source of `buf[0]`.
    buf_offset: u64,
    /// Where the search for the current text line's LF resumes, so a huge
    /// line arriving in many chunks is scanned once.
    newline_search_from: usize,
    eof: bool,
    line_no: u64,
    command_no: u64,
    args: Args,
    batch: Batch,
}

impl<'a> SourceReader<'a> {
    fn new(index: usize, source: OpenSource, format: Format, batches: &'a Sender<Batch>) -> Self {
        SourceReader {
            index,
            name: source.name,
            reader: source.reader,
            format,
            batches,
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
            buf_offset: 0,
            newline_search_from: 0,
            eof: false,
            line_no: 1,
            command_no: 0,
            args: Args::default(),
            batch: Batch::new(index, 1, BATCH_BYTES + BATCH_BYTES / 4),
        }
    }

    fn read_all(&mut self, tracker: &mut ReplyTracker) -> Result<(), InputError> {
        self.fill()?;
        if self.format != Format::Resp {
            while !self.eof && self.buf.len() < UTF8_BOM.len() {
                self.fill()?;
            }
            if self.buf.starts_with(UTF8_BOM) {
                self.start = UTF8_BOM.len();
            }
        }
        loop {
            if let Err(error) = self.frame_available(tracker) {
                // What was framed before the bad frame still loads.
                let _ = self.send_batch();
                return Err(error);
            }
            if self.start == self.buf.len() && self.eof {
                break;
            }
            // Whatever is framed goes out before waiting on the source, so a
            // slow producer's commands are not held back.
            self.send_batch()?;
            self.fill()?;
        }
        self.send_batch()
    }

    /// Frames every complete command in the buffer (the last line too once
    /// the source has ended). Returns when more input is needed.
    fn frame_available(&mut self, tracker: &mut ReplyTracker) -> Result<(), InputError> {
        while self.start < self.buf.len() {
            if self.batch.bytes.len() >= BATCH_BYTES || self.batch.commands.len() >= BATCH_COMMANDS
            {
                self.send_batch()?;
            }
            let first = self.buf[self.start];
            let is_resp = match self.format {
                Format::Auto => first == b'*',
                Format::Text => false,
                Format::Resp => true,
            };
            let progressed = match is_resp {
                true => self.frame_resp(tracker)?,
                false => self.frame_text_line(tracker),
            };
            if !progressed {
                break;
            }
        }
        Ok(())
    }

    /// Frames one RESP command; false when it is not complete yet.
    fn frame_resp(&mut self, tracker: &mut ReplyTracker) -> Result<bool, InputError> {
        let rest = &self.buf[self.start..];
        // Stray line ends between frames (the Redis test suite writes them).
        if rest[0] == b'\n' || rest[0] == b'\r' {
            if rest[0] == b'\n' {
                self.line_no += 1;
            }
            self.start += 1;
            return Ok(true);
        }
        if rest[0] != b'*' {
            return Err(self.malformed(0, format!("expected '*', found {}", show_byte(rest[0]))));
        }
        let frame = match scan_command(rest) {
            CommandScan::Complete(frame) => frame,
            CommandScan::Incomplete if self.eof => {
                return Err(self.malformed(rest.len(), "input ends inside a RESP command".into()));
            }
            CommandScan::Incomplete => return Ok(false),
            CommandScan::Invalid(error) => {
                return Err(self.malformed(error.offset, error.to_string()));
            }
        };
        let frame_range = self.start..self.start + frame.len;
        let newlines = memchr::memchr_iter(b'\n', &self.buf[frame_range.clone()]).count() as u64;
        // `*0` and `*-1` get no reply from the server: not commands.
        let line_no = self.line_no;
        self.start = frame_range.end;
        self.line_no += newlines;
        if frame.arg_count == 0 {
            return Ok(true);
        }
        self.command_no += 1;
        let bytes = &self.buf[frame_range];
        let head = frame.head.clone().map(|range| &bytes[range]);
        let expect = tracker.expect(command_role(frame.arg_count, head));
        if !matches!(expect, Expect::Rejected(_)) {
            self.batch.bytes.extend_from_slice(bytes);
        }
        self.batch.push_command(line_no, true, expect);
        Ok(true)
    }

    /// Frames one text line; false when its end has not arrived yet.
    fn frame_text_line(&mut self, tracker: &mut ReplyTracker) -> bool {
        let search_from = self.newline_search_from.max(self.start);
        let line_end = match memchr::memchr(b'\n', &self.buf[search_from..]) {
            Some(at) => search_from + at,
            None if self.eof => self.buf.len(),
            None => {
                self.newline_search_from = self.buf.len();
                return false;
            }
        };
        let line = &self.buf[self.start..line_end];
        let split = split_line(line, &mut self.args);
        let blank = matches!(split, Ok(())) && self.args.is_empty();
        if !blank {
            self.command_no += 1;
            let expect = match split {
                Ok(()) => {
                    let head = [0, 1, 2].map(|index| match index < self.args.len() {
                        true => self.args.get(index),
                        false => &[][..],
                    });
                    let expect = tracker.expect(command_role(self.args.len(), head));
                    if !matches!(expect, Expect::Rejected(_)) {
                        append_command(&mut self.batch.bytes, &self.args);
                    }
                    expect
                }
                Err(error) => Expect::Rejected(Rejection::Split(error)),
            };
            self.batch.push_command(self.line_no, false, expect);
        }
        self.start = (line_end + 1).min(self.buf.len());
        self.line_no += 1;
        true
    }

    /// The error for a malformed frame whose bad byte is `offset` bytes into
    /// the unframed input.
    fn malformed(&self, offset: usize, reason: String) -> InputError {
        let before = &self.buf[self.start..self.start + offset.min(self.buf.len() - self.start)];
        InputError::Malformed {
            source_name: self.name.clone(),
            line_no: self.line_no + memchr::memchr_iter(b'\n', before).count() as u64,
            byte_offset: self.buf_offset + (self.start + offset) as u64,
            reason,
        }
    }

    fn send_batch(&mut self) -> Result<(), InputError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(
            &mut self.batch,
            Batch::new(
                self.index,
                self.command_no + 1,
                BATCH_BYTES + BATCH_BYTES / 4,
            ),
        );
        self.batches.send(full).map_err(|_| InputError::Stopped)
    }

    /// Reads the next chunk, first dropping what has been framed.
    fn fill(&mut self) -> Result<(), InputError> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.buf_offset += self.start as u64;
            self.newline_search_from = self.newline_search_from.saturating_sub(self.start);
            self.start = 0;
        }
        let filled = self.buf.len();
        self.buf.resize(filled + READ_CHUNK, 0);
        let result = loop {
            match self.reader.read(&mut self.buf[filled..]) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(read) => {
                self.buf.truncate(filled + read);
                self.eof = read == 0;
                Ok(())
            }
            Err(error) => {
                self.buf.truncate(filled);
                Err(InputError::Read {
                    source_name: self.name.clone(),
                    error,
                })
            }
        }
    }
}

/// A byte as a message shows it: `'x'`, or `0x0d` when not printable.
fn show_byte(byte: u8) -> String {
    match byte {
        b'!'..=b'~' => format!("'{}'", byte as char),
        _ => format!("0x{byte:02x}"),
    }
}
