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
//! One framer per format turns bytes into commands: `text` (a line, split
//! with the server's `quoting` rules, encoded as RESP), `resp` (a RESP
//! array, checked and copied), and for `--format csv|tsv|jsonl` `csv` and
//! `jsonl` (a record, which `records` makes into one command per
//! `template`). Every framed command then takes the one shared step,
//! `admit` (skip, reply tracking, refusals, transactions), and
//! `SourceReader::push_admitted` puts it in the batch; this module reads the
//! sources, keeps line numbers and batches. A new format is a new framer
//! file and one arm in `frame_available`.
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

use crate::batch::{Batch, CommandKind, Expect, describe_line};
use crate::config::{Format, RecordOptions, Source};
use crate::encode::command_bytes;
use crate::io_error::describe_io_error;
use crate::progress::Counters;
use crate::readbuf::ReadBuffer;
use crate::summary::report;
use admit::{InputState, ReplyTracker};
use quoting::Args;

mod admit;
mod csv;
mod jsonl;
pub mod quoting;
pub mod records;
mod resp;
pub mod template;
mod text;

use records::{Header, RecordFramer};
use template::{Template, TemplateError, compile_all};

/// Bytes read from a source at a time.
const READ_CHUNK: usize = 256 * 1024;
/// A batch is sent once it holds this many bytes…
const BATCH_BYTES: usize = 64 * 1024;
/// …or this many commands, so small commands still move in small steps.
const BATCH_COMMANDS: usize = 2048;
/// A route splitting batches between connections gets batches up to this
/// many times bigger.
const MOST_BATCHES_PER_INPUT_BATCH: usize = 4;

/// How big the batches the input sends grow before they are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSize {
    pub bytes: usize,
    pub commands: usize,
}

impl BatchSize {
    /// For a load whose route splits each batch between `lanes`
    /// connections: each connection's share is about the batch one
    /// connection would get (up to four connections' worth, a read
    /// chunk), so that more connections do not mean more, smaller writes
    /// and more thread wake-ups for the same input.
    pub fn for_lanes(lanes: usize) -> Self {
        let scale = lanes.clamp(1, MOST_BATCHES_PER_INPUT_BATCH);
        BatchSize {
            bytes: BATCH_BYTES * scale,
            commands: BATCH_COMMANDS * scale,
        }
    }

    /// What a new batch reserves: its size and room for the command that
    /// crosses it.
    fn reserve(self) -> usize {
        self.bytes + self.bytes / 4
    }
}

impl Default for BatchSize {
    fn default() -> Self {
        BatchSize::for_lanes(1)
    }
}

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
    /// A CSV or TSV source's header row, read before loading.
    pub header: Option<Header>,
    /// Line number of the first byte `reader` gives.
    first_line: u64,
    /// Bytes of the source read before `reader` (its header row).
    bytes_before: u64,
    /// Whether a UTF-8 byte order mark may still start `reader`.
    skip_bom: bool,
}

impl OpenSource {
    /// A source over any reader (tests feed byte slices through this).
    pub fn from_reader(name: Option<String>, reader: Box<dyn Read + Send>) -> Self {
        OpenSource {
            name,
            reader,
            header: None,
            first_line: 1,
            bytes_before: 0,
            skip_bom: true,
        }
    }
}

/// Opens every source before anything is sent, so a missing file is reported
/// before connecting; a CSV or TSV source's header row is read then too, to
/// check the templates against it (`records::read_headers`).
pub fn open_sources(
    sources: &[Source],
    format: Format,
    records: &RecordOptions,
) -> anyhow::Result<Vec<OpenSource>> {
    let mut opened = sources
        .iter()
        .map(|source| match source {
            Source::Stdin => Ok(OpenSource::from_reader(None, Box::new(io::stdin()))),
            Source::File(path) => {
                let shown = path.display().to_string();
                let file = File::open(path).map_err(|error| {
                    anyhow::anyhow!("cannot read {shown}: {}", describe_io_error(&error))
                })?;
                let is_dir = file.metadata().map(|meta| meta.is_dir()).unwrap_or(false);
                if is_dir {
                    anyhow::bail!("cannot read {shown}: Is a directory");
                }
                Ok(OpenSource::from_reader(Some(shown), Box::new(file)))
            }
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    records::read_headers(&mut opened, format, records)?;
    Ok(opened)
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
    /// `--skip` asked to leave out more commands than the input has:
    /// usually the wrong file, so not a quiet success.
    SkipBeyondInput { skip: u64, commands: u64 },
    /// A `--template` does not compile (the command line checks them
    /// first, so only a caller that skipped that check meets it).
    Template(TemplateError),
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
            InputError::SkipBeyondInput { skip, commands } => write!(
                f,
                "--skip {skip} is beyond the end of the input, which has {commands} command{}: nothing was sent (is it the right file?)",
                if *commands == 1 { "" } else { "s" }
            ),
            InputError::Template(error) => write!(f, "{error}"),
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
    /// A cluster load: `CLIENT REPLY SKIP` is refused.
    pub cluster: bool,
    /// Where to count the bytes read, for the progress display.
    pub progress: Option<Arc<Counters>>,
    /// `--format csv|tsv|jsonl`: the templates and field names.
    pub records: RecordOptions,
    pub batch_size: BatchSize,
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
        confirm_replies_off: options.confirm_unanswered_tail,
        cluster: options.cluster,
        open_transaction: None,
        warned_blocking: false,
        blocking_classes: admit::BlockingClasses::new(),
    };
    let templates: Arc<[Template]> = compile_all(&options.records.templates)
        .map_err(InputError::Template)?
        .into();
    let mut last_source = 0;
    for (index, source) in sources.into_iter().enumerate() {
        if let Some(progress) = &state.progress {
            Counters::add(&progress.input_bytes, source.bytes_before);
        }
        let framer = RecordFramer::for_source(
            options.format,
            &options.records,
            &templates,
            source.header.as_ref(),
        );
        let mut reader = SourceReader::new(
            index,
            state.commands_before_source,
            source,
            options.format,
            framer,
            options.batch_size,
            batches,
        );
        reader.read_all(&mut state)?;
        state.commands_before_source += reader.command_no;
        last_source = index;
    }
    if let Some(unfinished) = state.open_transaction {
        return Err(unfinished);
    }
    if state.to_skip > 0 {
        return Err(InputError::SkipBeyondInput {
            skip: options.skip,
            commands: state.commands_before_source,
        });
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
    batch_size: BatchSize,
    /// Whether a UTF-8 byte order mark may start the source.
    skip_bom: bool,
    /// `--format csv|tsv|jsonl`: the record framer and its templates.
    records: Option<RecordFramer>,
}

impl<'a> SourceReader<'a> {
    fn new(
        index: usize,
        seq_offset: u64,
        source: OpenSource,
        format: Format,
        records: Option<RecordFramer>,
        batch_size: BatchSize,
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
            line_no: source.first_line,
            command_no: 0,
            args: Args::default(),
            batch: Batch::new(index, seq_offset, 1, batch_size.reserve()),
            batch_size,
            skip_bom: source.skip_bom,
            records,
        }
    }

    /// The length of the next whole line in the buffer, without its `\n`
    /// (at the end of the input, whatever is left), or `None` while its end
    /// has not been read yet; the next call then searches only the bytes
    /// read since.
    fn next_line_len(&mut self) -> Option<usize> {
        let rest = self.buffer.unread();
        let searched = self.searched_without_newline;
        match memchr::memchr(b'\n', &rest[searched..]) {
            Some(at) => Some(searched + at),
            None if self.eof => Some(rest.len()),
            None => {
                self.searched_without_newline = rest.len();
                None
            }
        }
    }

    fn read_all(&mut self, state: &mut InputState) -> Result<(), InputError> {
        self.fill(state)?;
        if self.format != Format::Resp && self.skip_bom {
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
            let full = self.batch.bytes.len() >= self.batch_size.bytes
                || self.batch.commands.len() >= self.batch_size.commands;
            if full && !state.tracker.in_multi {
                self.send_batch()?;
            }
            if state.confirm_replies_off && state.tracker.confirmation_due() {
                self.send_batch()?;
                self.batches
                    .send(Batch::confirmation(
                        self.index,
                        self.seq_offset,
                        self.command_no,
                        state.keep_originals,
                    ))
                    .map_err(|_| InputError::Stopped)?;
                state.tracker.confirmed();
            }
            let progressed = match self.format {
                Format::Auto if first == b'*' => self.frame_resp(state)?,
                Format::Auto | Format::Text => self.frame_text_line(state),
                Format::Resp => self.frame_resp(state)?,
                Format::Csv | Format::Tsv => self.frame_csv_record(state),
                Format::Jsonl => self.frame_json_line(state),
            };
            if !progressed {
                break;
            }
        }
        Ok(())
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

    /// The end every framer shares for an admitted command whose bytes (and
    /// original) it has placed: records it in the batch and notes a
    /// transaction it opens or closes.
    fn push_admitted(
        &mut self,
        state: &mut InputState,
        line_no: u64,
        is_resp: bool,
        expect: Expect,
        kind: CommandKind,
    ) {
        self.batch.push_command(line_no, is_resp, expect, kind);
        let bytes = self
            .batch
            .command_range(self.batch.commands.len() - 1)
            .len();
        state.tracker.note_placed(expect, bytes);
        if let Some(command) = self.batch.commands.last()
            && !state.warned_blocking
            && state.blocking_classes.may_block(command.reply_class)
        {
            self.warn_if_blocking(state, line_no);
        }
        let seq = self.seq_offset + self.command_no;
        state.note_transaction(kind, expect, &self.name, line_no, seq);
    }

    /// One warning line for the first command that can block: in a
    /// pipeline every command after it waits for it, and `--pipe-timeout`
    /// may give up first.
    #[cold]
    fn warn_if_blocking(&self, state: &mut InputState, line_no: u64) {
        let index = self.batch.commands.len() - 1;
        let encoded = &self.batch.bytes[self.batch.command_range(index)];
        if admit::can_block(encoded) {
            state.warned_blocking = true;
            let name = self.batch.name_of(index);
            report(&format!(
                "pipeload: warning: {}: {} can block: no command after it is answered until it returns (further ones are not reported)",
                describe_line(self.name.as_deref(), line_no),
                String::from_utf8_lossy(name).to_ascii_uppercase()
            ));
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
                self.batch_size.reserve(),
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
