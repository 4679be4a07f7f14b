//! The CSV and TSV framer: finds each record with `csv_core` (the parser of
//! the `csv` crate, RFC 4180: quoted fields, `""`, delimiters and line ends
//! inside quotes, LF, CRLF or CR line ends), checks its field count, and
//! hands its fields to the templates through `Record`.
//!
//! Place in the data flow: one of the input's framers (`--format csv|tsv`),
//! over the same read buffer as the others; `records` turns each record
//! into commands. The parser is driven over the read buffer directly and
//! the buffer is consumed only once a record is complete, so a record's
//! exact input bytes (for `--errors-file`) and first line are known without
//! a second buffer.
//!
//! Field bytes are copied out unescaped (quotes removed, `""` → `"`) and
//! never checked as UTF-8; blank lines between records are skipped, as
//! Python's `csv.DictReader` does.
//!
//! Most records are one line without a quote: such a line is split at its
//! delimiters in one pass and copied out whole, without `csv_core`'s
//! byte-by-byte state machine (which reads it the same way; the tests
//! compare the two). Anything else, a quote, a lone CR, a blank line, a
//! record at the end of the input without a line end, goes to `csv_core`.

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

use super::count_newlines;
use super::template::{Field, Record, Template};
use crate::encode::EncodedCommand;

/// Where the parser is in the input.
pub(super) enum CsvStep {
    /// A record ends `len` bytes into the input given (its fields are in
    /// the parser until the next call); `unterminated` when the input ended
    /// inside a quoted field.
    Record { len: usize, unterminated: bool },
    /// The record goes on past the input given.
    NeedMore,
    /// No record left.
    End,
}

/// A `csv_core` reader and the fields of its last record.
pub(super) struct CsvParser {
    parser: Reader,
    delimiter: u8,
    /// The fields' bytes back to back, field `i` ending at `ends[i]`; or,
    /// for a line split at its delimiters (`split_line`), the line with
    /// its delimiters, each field then starting one byte after the end of
    /// the previous one.
    fields: Vec<u8>,
    ends: Vec<usize>,
    split_line: bool,
    /// The bytes that end a plain field: the delimiter, quote, CR, LF.
    ends_plain: [bool; 256],
    /// Records found so far: the first goes to `csv_core`, which alone
    /// skips a byte order mark at the start of the input.
    records: u64,
    field_bytes: usize,
    field_count: usize,
    /// Input bytes of the current record already given to the parser.
    fed: usize,
    /// The last call returned a record: the next one starts afresh.
    complete: bool,
}

impl CsvParser {
    pub(super) fn new(delimiter: u8) -> Self {
        CsvParser {
            parser: ReaderBuilder::new().delimiter(delimiter).build(),
            delimiter,
            fields: vec![0; 4096],
            ends: vec![0; 64],
            split_line: false,
            ends_plain: std::array::from_fn(|byte| {
                [delimiter, b'"', b'\r', b'\n'].contains(&(byte as u8))
            }),
            records: 0,
            field_bytes: 0,
            field_count: 0,
            fed: 0,
            complete: false,
        }
    }

    /// The next record of `input`, the unconsumed input, which starts where
    /// the previous record ended; `eof` when no more input will come.
    pub(super) fn next_record(&mut self, input: &[u8], eof: bool) -> CsvStep {
        if self.complete {
            self.complete = false;
            self.fed = 0;
            self.field_bytes = 0;
            self.field_count = 0;
            self.split_line = false;
            if self.records > 0
                && let Some(len) = self.split_plain_line(input)
            {
                self.complete = true;
                self.records += 1;
                return CsvStep::Record {
                    len,
                    unterminated: false,
                };
            }
        }
        loop {
            let rest = input.get(self.fed..).unwrap_or_default();
            // An empty input tells the parser the data has ended.
            if rest.is_empty() && !eof {
                return CsvStep::NeedMore;
            }
            let (result, read, written, ended) = self.parser.read_record(
                rest,
                &mut self.fields[self.field_bytes..],
                &mut self.ends[self.field_count..],
            );
            self.fed += read;
            self.field_bytes += written;
            self.field_count += ended;
            match result {
                ReadRecordResult::InputEmpty if !eof => return CsvStep::NeedMore,
                // At the end of the input, an empty call ends the record.
                ReadRecordResult::InputEmpty if read > 0 || !rest.is_empty() => {}
                ReadRecordResult::InputEmpty | ReadRecordResult::End => return CsvStep::End,
                ReadRecordResult::OutputFull => {
                    let grown = self.fields.len() * 2;
                    self.fields.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                ReadRecordResult::Record => {
                    self.complete = true;
                    self.records += 1;
                    let len = self.fed;
                    let unterminated = eof
                        && len == input.len()
                        && ends_inside_quotes(&input[..len], self.delimiter);
                    return CsvStep::Record { len, unterminated };
                }
            }
        }
    }

    /// A record that is one whole line of `input` (LF or CRLF) with no
    /// quote and no other CR: its fields are found at its delimiters and
    /// the line is copied out whole. Returns the line's length with its
    /// line end; `None` leaves the record to `csv_core`.
    fn split_plain_line(&mut self, input: &[u8]) -> Option<usize> {
        if matches!(input.first(), None | Some(b'\n' | b'\r'))
            || matches!(self.delimiter, b'"' | b'\n' | b'\r')
        {
            return None;
        }
        // One pass, byte by byte: the lines are short, and a table lookup
        // per byte costs less than a vector search started per field.
        let mut count = 0;
        let mut found = |end: usize, ends: &mut Vec<usize>| {
            if count == ends.len() {
                let grown = ends.len() * 2;
                ends.resize(grown, 0);
            }
            ends[count] = end;
            count += 1;
        };
        let mut line = None;
        for (at, &byte) in input.iter().enumerate() {
            if !self.ends_plain[usize::from(byte)] {
                continue;
            }
            match byte {
                b'\n' => {
                    line = Some((at, at + 1));
                    break;
                }
                b'\r' if input.get(at + 1) == Some(&b'\n') => {
                    line = Some((at, at + 2));
                    break;
                }
                byte if byte == self.delimiter => found(at, &mut self.ends),
                // A quote or a lone CR: csv_core knows what they mean.
                _ => return None,
            }
        }
        let (content_end, line_end) = line?;
        found(content_end, &mut self.ends);
        self.field_count = count;
        if self.fields.len() < content_end {
            self.fields.resize(content_end, 0);
        }
        self.fields[..content_end].copy_from_slice(&input[..content_end]);
        self.field_bytes = content_end;
        self.split_line = true;
        Some(line_end)
    }

    pub(super) fn field_count(&self) -> usize {
        self.field_count
    }

    /// Field `index` of the last record.
    pub(super) fn field(&self, index: usize) -> &[u8] {
        let start = match index {
            0 => 0,
            _ => self.ends[index - 1] + usize::from(self.split_line),
        };
        &self.fields[start..self.ends[index]]
    }

    /// The fields of the last record, in order.
    pub(super) fn fields(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.field_count).map(|index| self.field(index))
    }
}

/// A record's input bytes without the blank lines before it and its line
/// end, and how many lines those blank lines take.
pub(super) fn trim_record(raw: &[u8]) -> (&[u8], u64) {
    let start = raw
        .iter()
        .position(|&byte| byte != b'\n' && byte != b'\r')
        .unwrap_or(raw.len());
    let mut end = raw.len();
    if raw[start..end].ends_with(b"\n") {
        end -= 1;
    }
    if raw[start..end].ends_with(b"\r") {
        end -= 1;
    }
    (&raw[start..end], count_newlines(&raw[..start]))
}

/// Whether a record that reached the end of the input was still inside a
/// quoted field there (an unterminated quote, which swallowed the rest of
/// the input): the parser accepts it, pipeload refuses it.
fn ends_inside_quotes(raw: &[u8], delimiter: u8) -> bool {
    let (mut at_field_start, mut in_quotes) = (true, false);
    let mut index = 0;
    while let Some(&byte) = raw.get(index) {
        index += 1;
        if in_quotes {
            if byte == b'"' {
                match raw.get(index) {
                    Some(b'"') => index += 1,
                    _ => in_quotes = false,
                }
            }
            continue;
        }
        if at_field_start && byte == b'"' {
            in_quotes = true;
            at_field_start = false;
            continue;
        }
        at_field_start = byte == delimiter || byte == b'\n' || byte == b'\r';
    }
    in_quotes
}

/// A parsed CSV record as the templates see it.
pub(super) struct CsvRecord<'a> {
    pub(super) parser: &'a CsvParser,
    /// The column of each field the templates name, by field id.
    pub(super) columns: &'a [usize],
    /// The fields' names, when there are any (header row or `--fields`).
    pub(super) names: Option<&'a [Vec<u8>]>,
}

impl Record for CsvRecord<'_> {
    fn append_field(&self, field: &Field, out: &mut Vec<u8>) -> Result<bool, String> {
        let column = self.columns.get(field.id).copied().unwrap_or(usize::MAX);
        if column >= self.parser.field_count() {
            return Ok(false);
        }
        out.extend_from_slice(self.parser.field(column));
        Ok(true)
    }

    fn push_all_fields(&self, args: &mut EncodedCommand) -> Result<(), String> {
        let names = self.names.unwrap_or_default();
        for (name, value) in names.iter().zip(self.parser.fields()) {
            args.push(name);
            args.push(value);
        }
        Ok(())
    }

    fn append_whole(&self, out: &mut Vec<u8>) -> Result<(), String> {
        let names = self.names.unwrap_or_default();
        out.push(b'{');
        for (index, (name, value)) in names.iter().zip(self.parser.fields()).enumerate() {
            if index > 0 {
                out.push(b',');
            }
            append_json_string(out, name)?;
            out.push(b':');
            append_json_string(out, value).map_err(|_| {
                format!(
                    "field '{}' is not valid UTF-8: it cannot be a JSON string for {{.}}",
                    String::from_utf8_lossy(name)
                )
            })?;
        }
        out.push(b'}');
        Ok(())
    }
}

/// Appends `text` as a JSON string; it must be UTF-8.
fn append_json_string(out: &mut Vec<u8>, text: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(text).map_err(|error| error.to_string())?;
    serde_json::to_writer(&mut *out, text).map_err(|error| error.to_string())
}

/// The column of every field the templates name (by id), against the
/// fields' names (`None`: by position only). `Err` gives the template and
/// the field it names that the names lack.
pub(super) fn resolve_columns(
    templates: &[Template],
    names: Option<&[Vec<u8>]>,
) -> Result<Vec<usize>, (String, String)> {
    let mut columns = Vec::new();
    for template in templates {
        for field in template.fields() {
            let column = match (field.position(), names) {
                (Some(position), _) => position,
                (None, Some(names)) => names
                    .iter()
                    .rposition(|name| name == field.name.as_bytes())
                    .ok_or_else(|| (template.text.clone(), format!("no field '{}'", field.name)))?,
                (None, None) => {
                    let reason = format!(
                        "no field '{}': without names, fields go by position ({{0}}, {{1}}…)",
                        field.name
                    );
                    return Err((template.text.clone(), reason));
                }
            };
            if columns.len() <= field.id {
                columns.resize(field.id + 1, usize::MAX);
            }
            columns[field.id] = column;
        }
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record of `input`, fed in pieces of `step` bytes.
    fn records(input: &[u8], step: usize) -> Vec<(Vec<Vec<u8>>, bool)> {
        let mut parser = CsvParser::new(b',');
        let (mut start, mut available) = (0, step.min(input.len()));
        let mut found = Vec::new();
        loop {
            let eof = available == input.len();
            match parser.next_record(&input[start..available], eof) {
                CsvStep::Record { len, unterminated } => {
                    found.push((parser.fields().map(<[u8]>::to_vec).collect(), unterminated));
                    start += len;
                }
                CsvStep::NeedMore => available = (available + step).min(input.len()),
                CsvStep::End => return found,
            }
        }
    }

    /// Every record of `input` as `csv_core` alone reads it, given all at
    /// once.
    fn csv_core_records(input: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut reader = ReaderBuilder::new().build();
        let (mut output, mut ends) = (vec![0; input.len() + 1], vec![0; input.len() + 1]);
        let (mut at, mut fields) = (0, (0, 0));
        let mut found = Vec::new();
        loop {
            let (result, read, written, ended) =
                reader.read_record(&input[at..], &mut output[fields.0..], &mut ends[fields.1..]);
            at += read;
            fields = (fields.0 + written, fields.1 + ended);
            match result {
                ReadRecordResult::Record => {
                    let mut start = 0;
                    found.push(
                        ends[..fields.1]
                            .iter()
                            .map(|&end| {
                                let field = output[start..end].to_vec();
                                start = end;
                                field
                            })
                            .collect(),
                    );
                    fields = (0, 0);
                }
                ReadRecordResult::End => return found,
                ReadRecordResult::InputEmpty if at < input.len() || read > 0 => {}
                ReadRecordResult::InputEmpty if fields != (0, 0) => {}
                _ => return found,
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn split_lines_are_read_as_csv_core_reads_them(
            input in proptest::collection::vec(
                proptest::sample::select(&b"ab,,,\"\n\n\r\xef\xbb\xbf "[..]),
                0..80,
            ),
            step in 1usize..12,
        ) {
            let ours: Vec<Vec<Vec<u8>>> =
                records(&input, step).into_iter().map(|(fields, _)| fields).collect();
            proptest::prop_assert_eq!(ours, csv_core_records(&input));
        }
    }

    #[test]
    fn records_are_the_same_however_the_input_arrives() {
        let input: &[u8] =
            b"id,name\r\n1,\"Smith, John\"\r\n\r\n2,\"say \"\"hi\"\"\nthere\"\n3,\xff\x00\n4,last";
        let expected: Vec<(Vec<Vec<u8>>, bool)> = [
            vec![b"id".to_vec(), b"name".to_vec()],
            vec![b"1".to_vec(), b"Smith, John".to_vec()],
            vec![b"2".to_vec(), b"say \"hi\"\nthere".to_vec()],
            vec![b"3".to_vec(), b"\xff\x00".to_vec()],
            vec![b"4".to_vec(), b"last".to_vec()],
        ]
        .into_iter()
        .map(|fields| (fields, false))
        .collect();
        for step in 1..=input.len() {
            assert_eq!(records(input, step), expected, "step {step}");
        }
    }

    #[test]
    fn an_unterminated_quote_at_the_end_is_flagged() {
        let found = records(b"a,b\n1,\"open\n2,3\n", 4);
        assert_eq!(found.len(), 2);
        assert!(!found[0].1);
        assert!(found[1].1);
        assert!(!records(b"1,\"closed\"", 3)[0].1);
        assert!(!records(b"1,a\"b", 3)[0].1);
    }

    #[test]
    fn trimming_keeps_the_record_and_counts_blank_lines() {
        assert_eq!(
            trim_record(b"\n\r\na,\"b\nc\"\r\n"),
            (&b"a,\"b\nc\""[..], 2)
        );
        assert_eq!(trim_record(b"a,b"), (&b"a,b"[..], 0));
    }
}
