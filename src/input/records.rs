//! Records into commands (`--format csv|tsv|jsonl` with `--template`): for
//! each record a framer found (`csv`, `jsonl`), one command per template,
//! in order, each taking the shared admit step like a text line; or, when
//! the record cannot be used, one refused command with the reason, never
//! sent, counted as an error.
//!
//! Place in the data flow: inside the input thread, after the record
//! framers and before the batch. Also, before anything is sent, the header
//! row of every CSV or TSV source is read (`read_headers`), so a template
//! naming a field that a header lacks is a usage error, and the errors file
//! can start with the header.
//!
//! Counting: each command a template makes is one command of the input
//! (what `--skip`, `acknowledged` and the resume hint count), and a refused
//! record is one. Every command of a record carries the record's first line
//! and, with `--errors-file`, the record's input bytes.

use std::fmt;
use std::io::{Cursor, Read};
use std::sync::Arc;

use super::admit::{CommandRole, InputState, command_role};
use super::csv::{CsvParser, CsvRecord, CsvStep, resolve_columns, trim_record};
use super::jsonl::{JsonRecord, JsonScratch};
use super::template::{Record, Template, compile_all};
use super::{OpenSource, SourceReader, UTF8_BOM, count_newlines};
use crate::batch::{Expect, Rejection};
use crate::config::{FieldNames, Format, RecordOptions};
use crate::encode::EncodedCommand;
use crate::io_error::describe_io_error;

/// A source's header row, read before anything is sent.
#[derive(Debug, Clone)]
pub struct Header {
    pub names: Vec<Vec<u8>>,
    /// The header's input bytes, without its line end: the first line of
    /// the errors file.
    pub line: Vec<u8>,
}

/// A template names a field that a source's header lacks: a usage error.
#[derive(Debug)]
pub struct FieldNotInHeader(pub String);

impl fmt::Display for FieldNotInHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FieldNotInHeader {}

/// Reads the header row of every CSV or TSV source (with field names from
/// a header row) and checks the templates against it. Each source then
/// reads on from its first record.
pub fn read_headers(
    sources: &mut [OpenSource],
    format: Format,
    options: &RecordOptions,
) -> anyhow::Result<()> {
    if !matches!(format, Format::Csv | Format::Tsv) || options.names != FieldNames::HeaderRow {
        return Ok(());
    }
    let templates = compile_all(&options.templates)?;
    for source in sources.iter_mut() {
        let shown = source.name.as_deref().unwrap_or("stdin").to_owned();
        let Some(header) = read_header(source, options.delimiter).map_err(|error| {
            anyhow::anyhow!("cannot read {shown}: {}", describe_io_error(&error))
        })?
        else {
            continue;
        };
        if let Err((template, reason)) = resolve_columns(&templates, Some(&header.names)) {
            let names: Vec<_> = header
                .names
                .iter()
                .map(|name| String::from_utf8_lossy(name))
                .collect();
            return Err(FieldNotInHeader(format!(
                "--template '{template}': {reason} in {shown}'s header ({})",
                names.join(", ")
            ))
            .into());
        }
        source.header = Some(header);
    }
    Ok(())
}

/// Reads a source up to the end of its first record and keeps it as the
/// header; the bytes read past it are read again first. `None` for a
/// source with no record at all.
fn read_header(source: &mut OpenSource, delimiter: u8) -> std::io::Result<Option<Header>> {
    let mut parser = CsvParser::new(delimiter);
    let mut bytes = Vec::new();
    let mut eof = false;
    let header_len = loop {
        let start = match bytes.starts_with(UTF8_BOM) {
            true => UTF8_BOM.len(),
            false => 0,
        };
        let waiting_for_bom = !eof && bytes.len() < UTF8_BOM.len();
        if !waiting_for_bom {
            match parser.next_record(&bytes[start..], eof) {
                CsvStep::Record { len, .. } => break Some(start + len),
                CsvStep::End => break None,
                CsvStep::NeedMore => {}
            }
        }
        let filled = bytes.len();
        bytes.resize(filled + 64 * 1024, 0);
        let read = loop {
            match source.reader.read(&mut bytes[filled..]) {
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                read => break read?,
            }
        };
        bytes.truncate(filled + read);
        eof = read == 0;
    };
    let Some(header_len) = header_len else {
        let rest = std::mem::replace(&mut source.reader, Box::new(std::io::empty()));
        source.reader = Box::new(Cursor::new(bytes).chain(rest));
        return Ok(None);
    };
    let raw = bytes[..header_len]
        .strip_prefix(UTF8_BOM)
        .unwrap_or(&bytes[..header_len]);
    let header = Header {
        names: parser.fields().map(<[u8]>::to_vec).collect(),
        line: trim_record(raw).0.to_vec(),
    };
    source.first_line = 1 + count_newlines(&bytes[..header_len]);
    source.bytes_before = header_len as u64;
    source.skip_bom = false;
    let rest = std::mem::replace(&mut source.reader, Box::new(std::io::empty()));
    bytes.drain(..header_len);
    source.reader = Box::new(Cursor::new(bytes).chain(rest));
    Ok(Some(header))
}

/// How a source's records are found and named.
enum Framing {
    Csv {
        parser: Box<CsvParser>,
        /// The column of each field the templates name, by field id.
        columns: Vec<usize>,
        names: Option<Vec<Vec<u8>>>,
        /// Fields every record must have, and where that number comes from.
        expected: Option<(usize, &'static str)>,
    },
    Jsonl(JsonScratch),
}

/// A source's record framer.
pub(super) struct RecordFramer {
    framing: Framing,
    expansion: Expansion,
}

/// The templates and the scratch space of their expansions.
struct Expansion {
    templates: Arc<[Template]>,
    /// The record's commands, one per template, each as its arguments and
    /// what it means to the connection: encoded into the batch only once
    /// every template could be expanded.
    commands: Vec<EncodedCommand>,
    roles: Vec<CommandRole>,
    /// The record's input bytes, kept for `--errors-file`.
    original: Vec<u8>,
}

impl RecordFramer {
    /// The framer of one source; `None` for formats without records.
    pub(super) fn for_source(
        format: Format,
        options: &RecordOptions,
        templates: &Arc<[Template]>,
        header: Option<&Header>,
    ) -> Option<RecordFramer> {
        let framing = match format {
            Format::Jsonl => Framing::Jsonl(JsonScratch::default()),
            Format::Csv | Format::Tsv => {
                let (names, expected) = match (&options.names, header) {
                    (FieldNames::HeaderRow, Some(header)) => (
                        Some(header.names.clone()),
                        Some((header.names.len(), "the header has")),
                    ),
                    (FieldNames::Given(given), _) => (
                        Some(given.iter().map(|name| name.as_bytes().to_vec()).collect()),
                        Some((given.len(), "--fields names")),
                    ),
                    // No header: a source without a record, or fields by
                    // position.
                    (_, _) => (None, None),
                };
                // Checked before loading (`read_headers`, the command line):
                // a name that cannot be resolved never reaches here.
                let columns = resolve_columns(templates, names.as_deref()).unwrap_or_default();
                Framing::Csv {
                    parser: Box::new(CsvParser::new(options.delimiter)),
                    columns,
                    names,
                    expected,
                }
            }
            Format::Auto | Format::Text | Format::Resp => return None,
        };
        Some(RecordFramer {
            framing,
            expansion: Expansion {
                templates: Arc::clone(templates),
                commands: vec![EncodedCommand::default(); templates.len()],
                roles: Vec::new(),
                original: Vec::new(),
            },
        })
    }
}

impl Expansion {
    /// Expands every template for `record` into `commands`.
    fn expand<R: Record>(&mut self, record: &R) -> Result<(), String> {
        self.roles.clear();
        for (template, args) in self.templates.iter().zip(&mut self.commands) {
            template.expand(record, args)?;
            // `{*}` of a record without fields: no command at all, which
            // the server would not answer.
            if args.is_empty() {
                return Err(format!("'{}' gives no command here", template.text));
            }
            let mut first = args.iter();
            let head = [(); 3].map(|()| first.next().unwrap_or_default());
            self.roles.push(command_role(args.len(), head));
        }
        Ok(())
    }
}

impl SourceReader<'_> {
    /// Frames one CSV or TSV record; false when its end has not arrived.
    pub(super) fn frame_csv_record(&mut self, state: &mut InputState) -> bool {
        let Some(mut framer) = self.records.take() else {
            return false;
        };
        let progressed = self.csv_record(&mut framer, state);
        self.records = Some(framer);
        progressed
    }

    fn csv_record(&mut self, framer: &mut RecordFramer, state: &mut InputState) -> bool {
        let Framing::Csv {
            parser,
            columns,
            names,
            expected,
        } = &mut framer.framing
        else {
            return false;
        };
        let unread = self.buffer.unread();
        let (len, unterminated) = match parser.next_record(unread, self.eof) {
            CsvStep::NeedMore => return false,
            CsvStep::End => {
                // Nothing but blank lines is left.
                let rest = unread.len();
                self.line_no += count_newlines(unread);
                self.buffer.consume(rest);
                return false;
            }
            CsvStep::Record { len, unterminated } => (len, unterminated),
        };
        let raw = &unread[..len];
        let (record_bytes, blank_lines) = trim_record(raw);
        let line_no = self.line_no + blank_lines;
        let field_count = parser.field_count();
        let expanded = match *expected {
            _ if unterminated => {
                Err("unterminated quote: the input ends inside a quoted field".into())
            }
            Some((wanted, source)) if wanted != field_count => {
                Err(format!("{field_count} fields, {source} {wanted}"))
            }
            _ => framer.expansion.expand(&CsvRecord {
                parser,
                columns,
                names: names.as_deref(),
            }),
        };
        let expansion = &mut framer.expansion;
        if state.keep_originals {
            expansion.original.clear();
            expansion.original.extend_from_slice(record_bytes);
        }
        self.line_no += count_newlines(raw);
        self.buffer.consume(len);
        self.admit_record(expansion, state, line_no, expanded);
        true
    }

    /// Frames one JSON Lines record; false when its end has not arrived.
    pub(super) fn frame_json_line(&mut self, state: &mut InputState) -> bool {
        let Some(mut framer) = self.records.take() else {
            return false;
        };
        let progressed = self.json_line(&mut framer, state);
        self.records = Some(framer);
        progressed
    }

    fn json_line(&mut self, framer: &mut RecordFramer, state: &mut InputState) -> bool {
        let RecordFramer {
            framing: Framing::Jsonl(scratch),
            expansion,
        } = framer
        else {
            return false;
        };
        let Some(line_len) = self.next_line_len() else {
            return false;
        };
        let line = &self.buffer.unread()[..line_len];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line_no = self.line_no;
        if !line.iter().all(u8::is_ascii_whitespace) {
            let expanded =
                JsonRecord::parse(line, scratch).and_then(|record| expansion.expand(&record));
            if state.keep_originals {
                expansion.original.clear();
                expansion.original.extend_from_slice(line);
            }
            self.admit_record(expansion, state, line_no, expanded);
        }
        self.buffer.consume(line_len + 1);
        self.searched_without_newline = 0;
        self.line_no += 1;
        true
    }

    /// Puts a record's commands, or its refusal, through the admit step
    /// into the batch.
    fn admit_record(
        &mut self,
        framer: &Expansion,
        state: &mut InputState,
        line_no: u64,
        expanded: Result<(), String>,
    ) {
        if let Err(problem) = expanded {
            self.command_no += 1;
            match state.admit(CommandRole::Refused(Rejection::Record)) {
                None => self.batch.first_command_no = self.command_no + 1,
                Some((expect, kind)) => {
                    if state.keep_originals {
                        self.batch.push_original(&framer.original);
                    }
                    self.batch.note_refusal(problem);
                    self.push_admitted(state, line_no, false, expect, kind);
                }
            }
            return;
        }
        let several = framer.commands.len() > 1;
        for (number, (args, &role)) in framer.commands.iter().zip(&framer.roles).enumerate() {
            self.command_no += 1;
            match state.admit(role) {
                None => self.batch.first_command_no = self.command_no + 1,
                Some((expect, kind)) => {
                    if !matches!(expect, Expect::Rejected(_)) {
                        args.append_to(&mut self.batch.bytes);
                    }
                    if state.keep_originals {
                        self.batch.push_original(&framer.original);
                    }
                    self.push_admitted(state, line_no, false, expect, kind);
                    if several && let Some(pushed) = self.batch.commands.last_mut() {
                        pushed.template = u8::try_from(number + 1).unwrap_or(u8::MAX);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Batch;
    use crate::input::{BatchSize, InputOptions, read_input};
    use crossbeam_channel::bounded;
    use proptest::prelude::*;

    /// Gives its bytes `chunk` at a time.
    struct Chunked {
        bytes: Vec<u8>,
        at: usize,
        chunk: usize,
    }

    impl Read for Chunked {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let len = self.chunk.min(out.len()).min(self.bytes.len() - self.at);
            out[..len].copy_from_slice(&self.bytes[self.at..self.at + len]);
            self.at += len;
            Ok(len)
        }
    }

    /// What the input thread makes of `input` read `chunk` bytes at a
    /// time: the encoded commands, each command's line and whether it was
    /// refused (with the reason), and the originals.
    fn load(input: &[u8], chunk: usize, format: Format, records: &RecordOptions) -> Vec<String> {
        let reader = Chunked {
            bytes: input.to_vec(),
            at: 0,
            chunk,
        };
        let mut sources = vec![OpenSource::from_reader(None, Box::new(reader))];
        if read_headers(&mut sources, format, records).is_err() {
            return vec!["usage error".into()];
        }
        let options = InputOptions {
            format,
            confirm_unanswered_tail: false,
            skip: 0,
            keep_originals: true,
            cluster: false,
            progress: None,
            records: records.clone(),
            batch_size: BatchSize::default(),
        };
        let (sender, receiver) = bounded::<Batch>(1024);
        let result = read_input(sources, options, &sender);
        drop(sender);
        let mut seen = vec![format!("{result:?}")];
        for batch in receiver.iter() {
            for (index, command) in batch.commands.iter().enumerate() {
                let why = match command.expect {
                    Expect::Rejected(why) => batch.refusal_reason(index, why),
                    _ => String::new(),
                };
                seen.push(format!(
                    "{} {:?} {why} {:?} {:?}",
                    command.line_no,
                    String::from_utf8_lossy(&batch.bytes[batch.command_range(index)]),
                    batch.original(index).map(String::from_utf8_lossy),
                    batch.seq(index),
                ));
            }
        }
        seen
    }

    fn options(templates: &[&str], names: FieldNames) -> RecordOptions {
        RecordOptions {
            templates: templates.iter().map(|text| text.to_string()).collect(),
            delimiter: b',',
            names,
        }
    }

    fn bytes_from(alphabet: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(proptest::sample::select(alphabet), 0..120)
    }

    proptest! {
        #[test]
        fn csv_records_do_not_depend_on_how_the_input_arrives(
            input in bytes_from(b"ab,\"\n\r{}\xff "),
            chunk in 1usize..9,
        ) {
            for names in [FieldNames::HeaderRow, FieldNames::Given(vec!["a".into(), "b".into()])] {
                let templates = match names {
                    FieldNames::HeaderRow => options(&["SET {0} {1:-none}", "HSET h {*}"], names),
                    _ => options(&["SET {a} {b}", "SET {.} {1:-}"], names),
                };
                let whole = load(&input, input.len().max(1), Format::Csv, &templates);
                prop_assert_eq!(load(&input, chunk, Format::Csv, &templates), whole);
            }
        }

        #[test]
        fn jsonl_records_do_not_depend_on_how_the_input_arrives(
            input in bytes_from(b"{}[]\":,ab0.\\u\n\r "),
            chunk in 1usize..9,
        ) {
            let templates = options(&["SET {a} {a.b:-x} {.}", "HSET h {*}"], FieldNames::HeaderRow);
            let whole = load(&input, input.len().max(1), Format::Jsonl, &templates);
            prop_assert_eq!(load(&input, chunk, Format::Jsonl, &templates), whole);
        }
    }

    #[test]
    fn a_template_that_gives_no_arguments_refuses_the_record() {
        let templates = options(&["{*}"], FieldNames::HeaderRow);
        let seen = load(b"{}\n{\"SET\":\"k\"}\n", 64, Format::Jsonl, &templates);
        assert_eq!(
            seen,
            [
                "Ok(())",
                r#"1 "" '{*}' gives no command here Some("{}") 1"#,
                r#"2 "*2\r\n$3\r\nSET\r\n$1\r\nk\r\n"  Some("{\"SET\":\"k\"}") 2"#,
            ]
        );
    }

    #[test]
    fn lines_originals_and_command_numbers_follow_the_records() {
        let templates = options(&["SET {id} {v}", "SADD s {id}"], FieldNames::HeaderRow);
        let seen = load(
            b"\xEF\xBB\xBFid,v\r\n1,\"a\nb\"\r\n\r\n2,x,extra\n3,y",
            3,
            Format::Csv,
            &templates,
        );
        assert_eq!(
            seen,
            [
                "Ok(())",
                r#"2 "*3\r\n$3\r\nSET\r\n$1\r\n1\r\n$3\r\na\nb\r\n"  Some("1,\"a\nb\"") 1"#,
                r#"2 "*3\r\n$4\r\nSADD\r\n$1\r\ns\r\n$1\r\n1\r\n"  Some("1,\"a\nb\"") 2"#,
                r#"5 "" 3 fields, the header has 2 Some("2,x,extra") 3"#,
                r#"6 "*3\r\n$3\r\nSET\r\n$1\r\n3\r\n$1\r\ny\r\n"  Some("3,y") 4"#,
                r#"6 "*3\r\n$4\r\nSADD\r\n$1\r\ns\r\n$1\r\n3\r\n"  Some("3,y") 5"#,
            ]
        );
    }
}
