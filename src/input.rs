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
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::batch::{Batch, CommandKind, Expect, Rejection, describe_line};
use crate::config::{Format, Source};
use crate::encode::{append_command, command_bytes};
use crate::io_error::describe_io_error;
use crate::progress::Counters;
use crate::readbuf::ReadBuffer;
use crate::resp::{CommandFrame, CommandScan, scan_command};
use crate::text::{Args, split_line};

/// Bytes read from a source at a time.
const READ_CHUNK: usize = 256 * 1024;
/// A batch is sent once it holds this many bytes…
const BATCH_BYTES: usize = 64 * 1024;
/// …or this many commands, so small commands still move in small steps.
const BATCH_COMMANDS: usize = 2048;

/// Most a big frame's declared length reserves before its bytes arrive.
const BIG_FRAME_RESERVE: usize = 16 * 1024 * 1024;
/// Frames this long have their line ends counted with a vectorised search.
const VECTOR_COUNT_FROM: usize = 256;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// An input source opened for reading, with the name messages use for it.
pub struct OpenSource {
    /// `None` for stdin, whose positions read `line N`.
    pub name: Option<String>,
    reader: Box<dyn Read + Send>,
}

impl OpenSource {
    /// A source over any reader (tests feed byte slices through this).
    pub fn from_reader(name: Option<String>, reader: Box<dyn Read + Send>) -> Self {
        OpenSource { name, reader }
    }
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
    /// The input ended inside `MULTI`: the server discards the queued
    /// commands when the connection closes, so none of them is applied.
    UnfinishedTransaction {
        source_name: Option<String>,
        /// Line of the `MULTI`.
        line_no: u64,
        /// The `MULTI`'s ordinal in the whole input, `--skip` included.
        seq: u64,
    },
    /// The batch channel was closed: the pipeline stopped downstream.
    Stopped,
    /// The input thread panicked (a bug: reported, never hidden).
    Panicked,
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
            InputError::UnfinishedTransaction {
                source_name,
                line_no,
                ..
            } => write!(
                f,
                "{}: the input ended inside this MULTI (no EXEC or DISCARD): its commands were discarded, not applied",
                describe_line(source_name.as_deref(), *line_no)
            ),
            InputError::Stopped => write!(f, "input stopped: the pipeline ended early"),
            InputError::Panicked => write!(f, "internal error: the input thread panicked"),
        }
    }
}

impl std::error::Error for InputError {}

#[derive(Debug, Clone)]
pub struct InputOptions {
    pub format: Format,
    /// Append the `CLIENT REPLY ON` marker when the input ends with commands
    /// the server does not answer (only when talking to a server).
    pub confirm_unanswered_tail: bool,
    /// Commands at the start of the input not to send (`--skip`).
    pub skip: u64,
    /// Keep each command's input bytes in its batch (`--errors-file`).
    pub keep_originals: bool,
    /// Where to count the bytes read, for the progress display.
    pub progress: Option<Arc<Counters>>,
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
    Other(CommandKind),
    ClientReply(ReplyMode),
    /// Refused before sending: a line that cannot be split, or a command
    /// that would stop replies from being one per command.
    Refused(Rejection),
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
        return CommandRole::Other(CommandKind::Plain);
    }
    if is("MULTI") {
        return CommandRole::Other(CommandKind::Multi);
    }
    if is("EXEC") || is("DISCARD") {
        return CommandRole::Other(CommandKind::EndMulti);
    }
    if is("SELECT") && arg_count == 2 {
        return CommandRole::Other(CommandKind::Select);
    }
    if is("AUTH") {
        return CommandRole::Other(CommandKind::Auth);
    }
    if is("HELLO") {
        return CommandRole::Other(CommandKind::Hello);
    }
    if is("SUBSCRIBE") || is("PSUBSCRIBE") || is("SSUBSCRIBE") {
        return CommandRole::Refused(Rejection::SubscriberMode);
    }
    if is("MONITOR") {
        return CommandRole::Refused(Rejection::Monitor);
    }
    CommandRole::Other(CommandKind::Plain)
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

    fn expect(&mut self, role: CommandRole) -> (Expect, CommandKind) {
        let plain = CommandKind::Plain;
        let expect = match role {
            CommandRole::Refused(why) => return (Expect::Rejected(why), plain),
            CommandRole::ClientReply(_) if self.in_multi => {
                return (Expect::Rejected(Rejection::ClientReplyInMulti), plain);
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
            CommandRole::Other(kind) => {
                match kind {
                    CommandKind::Multi => self.in_multi = true,
                    CommandKind::EndMulti => self.in_multi = false,
                    _ => {}
                }
                let expect = match self.mode {
                    ReplyMode::On => Expect::Reply,
                    ReplyMode::Off => Expect::NoReply,
                    ReplyMode::SkipNext => {
                        self.mode = ReplyMode::On;
                        Expect::NoReply
                    }
                };
                self.unanswered_tail = expect == Expect::NoReply;
                return (expect, kind);
            }
        };
        self.unanswered_tail = expect == Expect::NoReply;
        (expect, plain)
    }
}

/// What carries over from one source to the next.
#[derive(Debug)]
struct InputState {
    tracker: ReplyTracker,
    /// Commands still to skip (`--skip`).
    to_skip: u64,
    progress: Option<Arc<Counters>>,
    /// Commands in the sources read so far.
    commands_before_source: u64,
    keep_originals: bool,
    /// Where the open transaction's `MULTI` was, while one is open.
    open_transaction: Option<InputError>,
}

impl InputState {
    /// Decides what becomes of the next command: `None` when it is skipped
    /// (not sent, so it changes nothing on the connection either).
    fn admit(&mut self, role: CommandRole) -> Option<(Expect, CommandKind)> {
        if self.to_skip > 0 {
            self.to_skip -= 1;
            return None;
        }
        Some(self.tracker.expect(role))
    }

    /// Keeps where a transaction opened by an admitted command starts, until
    /// it is closed.
    fn note_transaction(
        &mut self,
        kind: CommandKind,
        expect: Expect,
        source_name: &Option<String>,
        line_no: u64,
        seq: u64,
    ) {
        match kind {
            CommandKind::Multi if !matches!(expect, Expect::Rejected(_)) => {
                self.open_transaction = Some(InputError::UnfinishedTransaction {
                    source_name: source_name.clone(),
                    line_no,
                    seq,
                });
            }
            CommandKind::EndMulti => self.open_transaction = None,
            _ => {}
        }
    }
}

/// Reads every source in order and sends its commands as batches.
pub fn read_input(
    sources: Vec<OpenSource>,
    options: InputOptions,
    batches: &Sender<Batch>,
) -> Result<(), InputError> {
    let mut state = InputState {
        tracker: ReplyTracker::new(),
        to_skip: options.skip,
        progress: options.progress.clone(),
        commands_before_source: 0,
        keep_originals: options.keep_originals,
        open_transaction: None,
    };
    let mut last_source = 0;
    for (index, source) in sources.into_iter().enumerate() {
        let mut reader = SourceReader::new(
            index,
            state.commands_before_source,
            source,
            options.format,
            batches,
        );
        reader.read_all(&mut state)?;
        state.commands_before_source += reader.command_no;
        last_source = index;
    }
    if let Some(unfinished) = state.open_transaction {
        return Err(unfinished);
    }
    if options.confirm_unanswered_tail && state.tracker.unanswered_tail {
        let mut batch = Batch::new(last_source, state.commands_before_source, 0, 0);
        batch.bytes = command_bytes(&[b"CLIENT", b"REPLY", b"ON"]);
        batch.push_command(0, true, Expect::Marker, CommandKind::Plain);
        batches.send(batch).map_err(|_| InputError::Stopped)?;
    }
    Ok(())
}

/// Frames the commands of one source.
struct SourceReader<'a> {
    index: usize,
    /// Commands in the sources before this one.
    seq_offset: u64,
    name: Option<String>,
    reader: Box<dyn Read + Send>,
    format: Format,
    batches: &'a Sender<Batch>,
    buffer: ReadBuffer,
    /// How many unread bytes are known to hold no LF, so a huge text line
    /// arriving in many chunks is searched once.
    searched_without_newline: usize,
    eof: bool,
    line_no: u64,
    command_no: u64,
    args: Args,
    batch: Batch,
}

impl<'a> SourceReader<'a> {
    fn new(
        index: usize,
        seq_offset: u64,
        source: OpenSource,
        format: Format,
        batches: &'a Sender<Batch>,
    ) -> Self {
        SourceReader {
            index,
            seq_offset,
            name: source.name,
            reader: source.reader,
            format,
            batches,
            buffer: ReadBuffer::new(READ_CHUNK),
            searched_without_newline: 0,
            eof: false,
            line_no: 1,
            command_no: 0,
            args: Args::default(),
            batch: Batch::new(index, seq_offset, 1, BATCH_BYTES + BATCH_BYTES / 4),
        }
    }

    fn read_all(&mut self, state: &mut InputState) -> Result<(), InputError> {
        self.fill(state)?;
        if self.format != Format::Resp {
            while !self.eof && self.buffer.unread().len() < UTF8_BOM.len() {
                self.fill(state)?;
            }
            if self.buffer.unread().starts_with(UTF8_BOM) {
                self.buffer.consume(UTF8_BOM.len());
            }
        }
        loop {
            if let Err(error) = self.frame_available(state) {
                // What was framed before the bad frame still loads.
                let _ = self.send_batch();
                return Err(error);
            }
            if self.buffer.unread().is_empty() && self.eof {
                break;
            }
            // Whatever is framed goes out before waiting on the source, so a
            // slow producer's commands are not held back; a transaction
            // stays whole in one batch, so that a reconnect can resend it
            // from its MULTI.
            if !state.tracker.in_multi {
                self.send_batch()?;
            }
            self.fill(state)?;
        }
        self.send_batch()
    }

    /// Frames every complete command in the buffer (the last line too once
    /// the source has ended). Returns when more input is needed.
    fn frame_available(&mut self, state: &mut InputState) -> Result<(), InputError> {
        while let Some(&first) = self.buffer.unread().first() {
            let full = self.batch.bytes.len() >= BATCH_BYTES
                || self.batch.commands.len() >= BATCH_COMMANDS;
            if full && !state.tracker.in_multi {
                self.send_batch()?;
            }
            let is_resp = match self.format {
                Format::Auto => first == b'*',
                Format::Text => false,
                Format::Resp => true,
            };
            let progressed = match is_resp {
                true => self.frame_resp(state)?,
                false => self.frame_text_line(state),
            };
            if !progressed {
                break;
            }
        }
        Ok(())
    }

    /// Frames one RESP command; false when it is not complete yet.
    fn frame_resp(&mut self, state: &mut InputState) -> Result<bool, InputError> {
        let rest = self.buffer.unread();
        // Stray line ends between frames (the Redis test suite writes them).
        if rest[0] == b'\n' || rest[0] == b'\r' {
            if rest[0] == b'\n' {
                self.line_no += 1;
            }
            self.buffer.consume(1);
            return Ok(true);
        }
        if rest[0] != b'*' {
            return Err(self.malformed(0, format!("expected '*', found {}", show_byte(rest[0]))));
        }
        let (frame, start) = match scan_command(rest) {
            CommandScan::Complete(frame) => {
                let start = self.batch.bytes.len();
                self.batch.bytes.extend_from_slice(&rest[..frame.len]);
                self.buffer.consume(frame.len);
                (frame, start)
            }
            CommandScan::Incomplete { .. } if self.eof => {
                return Err(self.malformed(rest.len(), "input ends inside a RESP command".into()));
            }
            CommandScan::Incomplete { at_least } if at_least >= BATCH_BYTES => {
                self.read_big_frame(state, at_least)?
            }
            CommandScan::Incomplete { .. } => return Ok(false),
            CommandScan::Invalid(error) => {
                return Err(self.malformed(error.offset, error.to_string()));
            }
        };
        self.admit_frame(state, &frame, start);
        Ok(true)
    }

    /// Reads the rest of a frame whose bulk data is too big for the read
    /// buffer straight to the end of the batch, so its bytes are copied once
    /// instead of through the buffer. Big bulk data is read exactly as the
    /// scanner asks for it; the small headers and arguments after it in
    /// chunks, whatever comes past the frame going back to the buffer.
    /// Returns the frame and where it starts in the batch.
    fn read_big_frame(
        &mut self,
        state: &InputState,
        mut at_least: usize,
    ) -> Result<(CommandFrame, usize), InputError> {
        // Commands framed before it are not held back while it arrives.
        if !state.tracker.in_multi {
            self.send_batch()?;
        }
        let start = self.batch.bytes.len();
        let frame_offset = self.buffer.offset();
        let buffered = self.buffer.unread();
        // Reserved by what has arrived (a declared length alone reserves at
        // most BIG_FRAME_RESERVE); an empty batch is replaced rather than
        // grown, which would copy its old allocation.
        let wanted = buffered.len() + at_least.min(BIG_FRAME_RESERVE);
        if start == 0 {
            self.batch.bytes = Vec::with_capacity(wanted);
        } else {
            self.batch.bytes.reserve(wanted);
        }
        self.batch.bytes.extend_from_slice(buffered);
        self.buffer.consume(buffered.len());
        let mut read_around = 0u64;
        let failure = loop {
            let read = match self.read_onto_batch(at_least) {
                Ok(read) => read,
                Err(error) => {
                    self.batch.bytes.truncate(start);
                    return Err(error);
                }
            };
            read_around += read as u64;
            if let Some(progress) = &state.progress {
                Counters::add(&progress.input_bytes, read as u64);
            }
            let frame = &self.batch.bytes[start..];
            if read == 0 || (at_least >= BATCH_BYTES && read < at_least) {
                self.eof = true;
                break (frame.len(), "input ends inside a RESP command".to_string());
            }
            match scan_command(frame) {
                CommandScan::Complete(complete) => {
                    let end = start + complete.len;
                    let past = self.batch.bytes.len() - end;
                    self.buffer
                        .resume_after_bypass(read_around - past as u64, &self.batch.bytes[end..]);
                    self.batch.bytes.truncate(end);
                    return Ok((complete, start));
                }
                CommandScan::Incomplete { at_least: more } => at_least = more,
                CommandScan::Invalid(error) => break (error.offset, error.to_string()),
            }
        };
        let (offset, reason) = failure;
        let error = self.malformed_in(&self.batch.bytes[start..], frame_offset, offset, reason);
        self.batch.bytes.truncate(start);
        Err(error)
    }

    /// One step of `read_big_frame`: exactly `at_least` bytes of big bulk
    /// data (fewer only at the end of the source), or else one read of up to
    /// a chunk. Returns how many bytes were appended to the batch.
    fn read_onto_batch(&mut self, at_least: usize) -> Result<usize, InputError> {
        let bytes = &mut self.batch.bytes;
        let read = if at_least >= BATCH_BYTES {
            (&mut self.reader).take(at_least as u64).read_to_end(bytes)
        } else {
            let filled = bytes.len();
            bytes.resize(filled + READ_CHUNK, 0);
            let read = loop {
                match self.reader.read(&mut bytes[filled..]) {
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    read => break read,
                }
            };
            bytes.truncate(filled + *read.as_ref().unwrap_or(&0));
            read
        };
        read.map_err(|error| InputError::Read {
            source_name: self.name.clone(),
            error,
        })
    }

    /// Makes the frame at the end of the batch, from `start` on, a command of
    /// the batch, or takes it back out when it is skipped or refused.
    fn admit_frame(&mut self, state: &mut InputState, frame: &CommandFrame, start: usize) {
        let bytes = &self.batch.bytes[start..];
        let line_no = self.line_no;
        self.line_no += count_newlines(bytes);
        // `*0` and `*-1` get no reply from the server: not commands.
        if frame.arg_count == 0 {
            self.batch.bytes.truncate(start);
            return;
        }
        self.command_no += 1;
        let head = frame.head.clone().map(|range| &bytes[range]);
        match state.admit(command_role(frame.arg_count, head)) {
            None => {
                self.batch.bytes.truncate(start);
                self.batch.first_command_no = self.command_no + 1;
            }
            Some((expect, kind)) => {
                if state.keep_originals {
                    self.batch.keep_original_from(start);
                }
                if matches!(expect, Expect::Rejected(_)) {
                    self.batch.bytes.truncate(start);
                }
                self.batch.push_command(line_no, true, expect, kind);
                let seq = self.seq_offset + self.command_no;
                state.note_transaction(kind, expect, &self.name, line_no, seq);
            }
        }
    }

    /// Frames one text line; false when its end has not arrived yet.
    fn frame_text_line(&mut self, state: &mut InputState) -> bool {
        let rest = self.buffer.unread();
        let searched = self.searched_without_newline;
        let line_len = match memchr::memchr(b'\n', &rest[searched..]) {
            Some(at) => searched + at,
            None if self.eof => rest.len(),
            None => {
                self.searched_without_newline = rest.len();
                return false;
            }
        };
        let line = &rest[..line_len];
        let split = split_line(line, &mut self.args);
        let blank = matches!(split, Ok(())) && self.args.is_empty();
        if !blank {
            self.command_no += 1;
            let role = match split {
                Ok(()) => {
                    let head = [0, 1, 2].map(|index| match index < self.args.len() {
                        true => self.args.get(index),
                        false => &[][..],
                    });
                    command_role(self.args.len(), head)
                }
                Err(error) => CommandRole::Refused(Rejection::Split(error)),
            };
            match state.admit(role) {
                None => self.batch.first_command_no = self.command_no + 1,
                Some((expect, kind)) => {
                    if !matches!(expect, Expect::Rejected(_)) {
                        append_command(&mut self.batch.bytes, &self.args);
                    }
                    self.batch.push_command(self.line_no, false, expect, kind);
                    let seq = self.seq_offset + self.command_no;
                    state.note_transaction(kind, expect, &self.name, self.line_no, seq);
                    if state.keep_originals {
                        self.batch
                            .push_original(line.strip_suffix(b"\r").unwrap_or(line));
                    }
                }
            }
        }
        self.buffer.consume(line_len + 1);
        self.searched_without_newline = 0;
        self.line_no += 1;
        true
    }

    /// The error for a malformed frame whose bad byte is `offset` bytes into
    /// the unframed input.
    fn malformed(&self, offset: usize, reason: String) -> InputError {
        self.malformed_in(self.buffer.unread(), self.buffer.offset(), offset, reason)
    }

    /// The error for a malformed frame whose bad byte is `offset` bytes into
    /// `unframed`, which starts at `stream_offset` in the source.
    fn malformed_in(
        &self,
        unframed: &[u8],
        stream_offset: u64,
        offset: usize,
        reason: String,
    ) -> InputError {
        InputError::Malformed {
            source_name: self.name.clone(),
            line_no: self.line_no + count_newlines(&unframed[..offset.min(unframed.len())]),
            byte_offset: stream_offset + offset as u64,
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
                self.seq_offset,
                self.command_no + 1,
                BATCH_BYTES + BATCH_BYTES / 4,
            ),
        );
        self.batches.send(full).map_err(|_| InputError::Stopped)
    }

    /// Reads the next chunk of the source.
    fn fill(&mut self, state: &InputState) -> Result<(), InputError> {
        match self.buffer.read_from(&mut self.reader) {
            Ok(read) => {
                self.eof = read == 0;
                if let Some(progress) = &state.progress {
                    Counters::add(&progress.input_bytes, read as u64);
                }
                Ok(())
            }
            Err(error) => Err(InputError::Read {
                source_name: self.name.clone(),
                error,
            }),
        }
    }
}

/// LF bytes in `bytes`: eight at a time for a small command's frame (a few
/// dozen bytes, too short for a vectorised search to pay off), vectorised
/// for anything longer.
fn count_newlines(bytes: &[u8]) -> u64 {
    if bytes.len() >= VECTOR_COUNT_FROM {
        return memchr::memchr_iter(b'\n', bytes).count() as u64;
    }
    const LOW_BITS: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const NEWLINES: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let mut words = bytes.chunks_exact(8);
    let mut count = 0;
    for word in &mut words {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            continue;
        };
        // Bytes equal to LF become zero; the high bit of each zero byte is
        // then set exactly (no carry crosses a byte: 0x7f + 0x7f < 0x100).
        let zeroed = u64::from_le_bytes(word) ^ NEWLINES;
        let zero_bytes = !(((zeroed & LOW_BITS) + LOW_BITS) | zeroed) & !LOW_BITS;
        count += u64::from(zero_bytes.count_ones());
    }
    let tail = words
        .remainder()
        .iter()
        .filter(|&&byte| byte == b'\n')
        .count();
    count + tail as u64
}

/// A byte as a message shows it: `'x'`, or `0x0d` when not printable.
fn show_byte(byte: u8) -> String {
    match byte {
        b'!'..=b'~' => format!("'{}'", byte as char),
        _ => format!("0x{byte:02x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn newline_count_matches_a_plain_count(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let expected = bytes.iter().filter(|&&byte| byte == b'\n').count() as u64;
            prop_assert_eq!(count_newlines(&bytes), expected);
        }
    }

    #[test]
    fn newline_count_on_every_byte_value() {
        let every_byte: Vec<u8> = (0..=255).collect();
        assert_eq!(count_newlines(&every_byte), 1);
        assert_eq!(count_newlines(&[b'\n'; 19]), 19);
    }
}
