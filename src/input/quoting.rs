//! The server's quoting rules for a text line: one command line → its
//! arguments, split with the server's own inline rules (redis `sds.c`
//! `sdssplitargs`), so a line means to pipeload exactly what it means to
//! `redis-cli --pipe`.
//!
//! Place in the data flow: the text framer finds a line, `split_line` turns
//! it into `Args`, encode turns `Args` into RESP. `Args` is reused from line
//! to line so the hot path allocates nothing once it has warmed up.
//!
//! Invariants and the one deliberate difference from the server:
//! - Splitting works on bytes: bytes ≥ 0x80 and invalid UTF-8 are ordinary
//!   argument bytes, and there is no line-length limit.
//! - The server reads the line as a C string and silently stops at a NUL byte.
//!   A literal NUL anywhere in the line is `SplitError::NulByte` here (and wins
//!   over any other error in the same line), because dropping the rest of a
//!   line without a word loses data. `\x00` inside double quotes is fine.
//! - An argument never holds more bytes than the line it came from (quotes
//!   and escapes only shrink), so reserving the line length once per line is
//!   enough for `Args::bytes` to never grow mid-line.

use std::fmt;

use memchr::{memchr, memchr3};

/// The arguments of one line: all argument bytes back to back in `bytes`,
/// argument `i` ending at `ends[i]`. Cleared, not reallocated, per line.
#[derive(Debug, Default, Clone)]
pub struct Args {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Args {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    /// Argument `index`; panics if out of range, like slice indexing.
    pub fn get(&self, index: usize) -> &[u8] {
        let start = match index {
            0 => 0,
            _ => self.ends[index - 1],
        };
        &self.bytes[start..self.ends[index]]
    }
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|index| self.get(index))
    }
    /// Appends one argument.
    pub fn push(&mut self, arg: &[u8]) {
        self.bytes.extend_from_slice(arg);
        self.end_arg();
    }
    /// The bytes of the argument being built, to append to (a template
    /// builds one argument from several pieces); `end_arg` closes it.
    pub fn building(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }
    /// Sum of the argument lengths.
    pub fn total_len(&self) -> usize {
        // The arguments are stored back to back with nothing in between.
        self.bytes.len()
    }

    /// Ends the argument being built: everything appended since the previous
    /// end belongs to it (possibly nothing, for `""`).
    pub fn end_arg(&mut self) {
        self.ends.push(self.bytes.len());
    }
}

/// Why a line cannot be split. `Display` gives the message shown to the user
/// after the `file:line: ` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitError {
    /// A quote was opened and the line ended before it was closed.
    UnbalancedQuotes,
    /// A closing quote was followed by something other than whitespace.
    TextAfterClosingQuote,
    /// A NUL byte outside an escape: the server would cut the line there.
    NulByte,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SplitError::UnbalancedQuotes => "unbalanced quotes",
            SplitError::TextAfterClosingQuote => {
                "closing quote must be followed by a space or the end of the line"
            }
            SplitError::NulByte => {
                "NUL byte in a text line (write it as \\x00 inside double quotes)"
            }
        })
    }
}

impl std::error::Error for SplitError {}

/// Splits one line (without its LF; a trailing CR is whitespace) into `args`,
/// which is cleared first. A blank line gives zero arguments. On error `args`
/// is left empty.
pub fn split_line(line: &[u8], args: &mut Args) -> Result<(), SplitError> {
    args.clear();
    args.bytes.reserve(line.len());
    split_into(line, args).map_err(|error| {
        args.clear();
        // The scan stops at the first problem, but a NUL later in the line
        // is the more important thing to tell the user: it is why the line
        // could never mean the same to the server.
        if error != SplitError::NulByte && memchr(0, line).is_some() {
            SplitError::NulByte
        } else {
            error
        }
    })
}

/// C `isspace` in the C locale: what the server skips between arguments and
/// accepts after a closing quote.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// Bytes that stop an unquoted run: the four that end an unquoted argument
/// (not `\v` and `\f`, which the server keeps inside an argument), the two
/// quotes, and NUL.
const STOPS_UNQUOTED_RUN: [bool; 256] = {
    let mut table = [false; 256];
    let mut index = 0;
    let stops = b" \t\n\r\"'\0";
    while index < stops.len() {
        table[stops[index] as usize] = true;
        index += 1;
    }
    table
};

/// The splitting loop. Errors are reported at the first problem found; the
/// caller gives a NUL byte precedence.
fn split_into(line: &[u8], args: &mut Args) -> Result<(), SplitError> {
    let mut pos = 0;
    loop {
        while pos < line.len() && is_space(line[pos]) {
            pos += 1;
        }
        if pos == line.len() {
            return Ok(());
        }
        // One argument: an unquoted run, then at most one quoted part.
        // Nothing can follow a quoted part, because the server requires
        // whitespace or the end of the line after a closing quote.
        let run_start = pos;
        while pos < line.len() && !STOPS_UNQUOTED_RUN[usize::from(line[pos])] {
            pos += 1;
        }
        args.bytes.extend_from_slice(&line[run_start..pos]);
        match line.get(pos) {
            Some(b'"') => pos = read_double_quoted(line, pos + 1, &mut args.bytes)?,
            Some(b'\'') => pos = read_single_quoted(line, pos + 1, &mut args.bytes)?,
            Some(0) => return Err(SplitError::NulByte),
            // Space, tab, LF, CR or the end of the line: the argument is
            // complete.
            _ => {}
        }
        args.end_arg();
    }
}

/// Reads the inside of a double-quoted part starting at `pos` (just after the
/// opening quote) into `out`; returns the position just after the closing
/// quote.
fn read_double_quoted(line: &[u8], mut pos: usize, out: &mut Vec<u8>) -> Result<usize, SplitError> {
    loop {
        let rest = &line[pos..];
        let Some(offset) = memchr3(b'"', b'\\', 0, rest) else {
            return Err(SplitError::UnbalancedQuotes);
        };
        out.extend_from_slice(&rest[..offset]);
        pos += offset;
        match line[pos] {
            b'"' => return after_closing_quote(line, pos + 1),
            0 => return Err(SplitError::NulByte),
            _backslash => {
                let escaped = match line.get(pos + 1) {
                    // The server appends a final backslash literally and
                    // then finds the line over inside the quotes.
                    None => return Err(SplitError::UnbalancedQuotes),
                    Some(&escaped) => escaped,
                };
                if let (b'x', Some(&high), Some(&low)) =
                    (escaped, line.get(pos + 2), line.get(pos + 3))
                    && let (Some(high), Some(low)) = (hex_value(high), hex_value(low))
                {
                    out.push(high << 4 | low);
                    pos += 4;
                    continue;
                }
                out.push(match escaped {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => b'\x08',
                    b'a' => b'\x07',
                    0 => return Err(SplitError::NulByte),
                    // `\\`, `\"`, and `\x` without two hex digits: the byte
                    // itself.
                    other => other,
                });
                pos += 2;
            }
        }
    }
}

/// Reads the inside of a single-quoted part starting at `pos` (just after the
/// opening quote) into `out`; returns the position just after the closing
/// quote. Only `\'` is an escape here; any other backslash is literal.
fn read_single_quoted(line: &[u8], mut pos: usize, out: &mut Vec<u8>) -> Result<usize, SplitError> {
    loop {
        let rest = &line[pos..];
        let Some(offset) = memchr3(b'\'', b'\\', 0, rest) else {
            return Err(SplitError::UnbalancedQuotes);
        };
        out.extend_from_slice(&rest[..offset]);
        pos += offset;
        match line[pos] {
            b'\'' => return after_closing_quote(line, pos + 1),
            0 => return Err(SplitError::NulByte),
            _backslash => {
                if line.get(pos + 1) == Some(&b'\'') {
                    out.push(b'\'');
                    pos += 2;
                } else {
                    out.push(b'\\');
                    pos += 1;
                }
            }
        }
    }
}

/// The server insists that a closing quote ends the argument: what follows
/// must be whitespace (any `isspace`, including `\v` and `\f`) or nothing.
fn after_closing_quote(line: &[u8], pos: usize) -> Result<usize, SplitError> {
    match line.get(pos) {
        Some(&next) if !is_space(next) => Err(SplitError::TextAfterClosingQuote),
        _ => Ok(pos),
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(line: &[u8]) -> Result<Vec<Vec<u8>>, SplitError> {
        let mut args = Args::default();
        split_line(line, &mut args)?;
        Ok(args.iter().map(<[u8]>::to_vec).collect())
    }

    fn ok(expected: &[&[u8]]) -> Result<Vec<Vec<u8>>, SplitError> {
        Ok(expected.iter().map(|arg| arg.to_vec()).collect())
    }

    #[test]
    fn plain_words() {
        assert_eq!(split(b"SET key value"), ok(&[b"SET", b"key", b"value"]));
    }

    #[test]
    fn blank_and_whitespace_only_lines_give_no_arguments() {
        assert_eq!(split(b""), ok(&[]));
        assert_eq!(split(b"   "), ok(&[]));
        assert_eq!(split(b" \t\r\x0b\x0c\n"), ok(&[]));
        assert_eq!(split(b"\r"), ok(&[]));
    }

    #[test]
    fn whitespace_around_and_between_arguments() {
        assert_eq!(split(b"  GET   key  "), ok(&[b"GET", b"key"]));
        assert_eq!(split(b"\tGET\tkey\t"), ok(&[b"GET", b"key"]));
        assert_eq!(split(b"GET \t \t key"), ok(&[b"GET", b"key"]));
    }

    #[test]
    fn trailing_cr_of_crlf_is_whitespace() {
        assert_eq!(split(b"GET key\r"), ok(&[b"GET", b"key"]));
        assert_eq!(split(b"GET \"key\"\r"), ok(&[b"GET", b"key"]));
        assert_eq!(split(b"GET 'key'\r"), ok(&[b"GET", b"key"]));
    }

    #[test]
    fn vertical_tab_and_form_feed_are_skipped_between_but_kept_inside() {
        assert_eq!(split(b"\x0bGET\x0bkey"), ok(&[b"GET\x0bkey"]));
        assert_eq!(split(b"\x0cGET\x0ckey\x0c"), ok(&[b"GET\x0ckey\x0c"]));
        assert_eq!(split(b"a \x0b\x0c b"), ok(&[b"a", b"b"]));
        // After a closing quote they count as whitespace.
        assert_eq!(split(b"\"a\"\x0bb"), ok(&[b"a", b"b"]));
        assert_eq!(split(b"'a'\x0cb"), ok(&[b"a", b"b"]));
    }

    #[test]
    fn double_quotes_keep_spaces() {
        assert_eq!(split(b"SET k \"a b\tc\""), ok(&[b"SET", b"k", b"a b\tc"]));
    }

    #[test]
    fn single_quotes_keep_spaces() {
        assert_eq!(split(b"SET k 'a b\tc'"), ok(&[b"SET", b"k", b"a b\tc"]));
    }

    #[test]
    fn empty_quotes_give_an_empty_argument() {
        assert_eq!(split(b"SET k \"\""), ok(&[b"SET", b"k", b""]));
        assert_eq!(split(b"SET k ''"), ok(&[b"SET", b"k", b""]));
        assert_eq!(split(b"\"\" ''"), ok(&[b"", b""]));
    }

    #[test]
    fn quote_may_start_inside_an_argument() {
        assert_eq!(split(b"x\"y z\""), ok(&[b"xy z"]));
        assert_eq!(split(b"x'y z'"), ok(&[b"xy z"]));
        assert_eq!(split(b"a\"\" b"), ok(&[b"a", b"b"]));
    }

    #[test]
    fn double_quote_escapes() {
        assert_eq!(split(b"\"\\n\""), ok(&[b"\n"]));
        assert_eq!(split(b"\"\\r\""), ok(&[b"\r"]));
        assert_eq!(split(b"\"\\t\""), ok(&[b"\t"]));
        assert_eq!(split(b"\"\\b\""), ok(&[b"\x08"]));
        assert_eq!(split(b"\"\\a\""), ok(&[b"\x07"]));
        assert_eq!(split(b"\"\\\\\""), ok(&[b"\\"]));
        assert_eq!(split(b"\"\\\"\""), ok(&[b"\""]));
        assert_eq!(split(b"\"\\'\""), ok(&[b"'"]));
        assert_eq!(split(b"\"\\q\\N\\ \""), ok(&[b"qN "]));
    }

    #[test]
    fn hex_escapes() {
        assert_eq!(split(b"\"\\x41\""), ok(&[b"A"]));
        assert_eq!(split(b"\"\\x4a\\x4A\""), ok(&[b"JJ"]));
        assert_eq!(split(b"\"\\xff\\x00\""), ok(&[b"\xff\x00"]));
        assert_eq!(split(b"\"a\\x41b\""), ok(&[b"aAb"]));
    }

    #[test]
    fn hex_escape_without_two_hex_digits_is_a_literal_x() {
        assert_eq!(split(b"\"\\xZZ\""), ok(&[b"xZZ"]));
        assert_eq!(split(b"\"\\x4g\""), ok(&[b"x4g"]));
        assert_eq!(split(b"\"\\x4\""), ok(&[b"x4"]));
        assert_eq!(split(b"\"\\x\""), ok(&[b"x"]));
        // `\x4` and then the line ends inside the quotes.
        assert_eq!(split(b"\"\\x4"), Err(SplitError::UnbalancedQuotes));
    }

    #[test]
    fn escapes_are_literal_outside_quotes() {
        assert_eq!(split(b"a\\nb \\x41"), ok(&[b"a\\nb", b"\\x41"]));
    }

    #[test]
    fn single_quote_escapes() {
        assert_eq!(split(b"'it\\'s'"), ok(&[b"it's"]));
        assert_eq!(split(b"'a\\nb\\\\c'"), ok(&[b"a\\nb\\\\c"]));
        // `\\` is not an escape: its second backslash escapes the quote.
        assert_eq!(split(b"'a\\\\'"), Err(SplitError::UnbalancedQuotes));
        assert_eq!(split(b"'\\x41\\\"'"), ok(&[b"\\x41\\\""]));
    }

    #[test]
    fn closing_quote_followed_by_text_is_an_error() {
        assert_eq!(split(b"\"a\"b"), Err(SplitError::TextAfterClosingQuote));
        assert_eq!(split(b"'a'b"), Err(SplitError::TextAfterClosingQuote));
        assert_eq!(split(b"\"a\"\"b\""), Err(SplitError::TextAfterClosingQuote));
        assert_eq!(split(b"'a''b'"), Err(SplitError::TextAfterClosingQuote));
        assert_eq!(split(b"SET \"\"x"), Err(SplitError::TextAfterClosingQuote));
    }

    #[test]
    fn unterminated_quotes_are_an_error() {
        assert_eq!(split(b"SET k \"abc"), Err(SplitError::UnbalancedQuotes));
        assert_eq!(split(b"SET k 'abc"), Err(SplitError::UnbalancedQuotes));
        assert_eq!(split(b"\""), Err(SplitError::UnbalancedQuotes));
        assert_eq!(split(b"'"), Err(SplitError::UnbalancedQuotes));
        assert_eq!(split(b"\"abc\\\""), Err(SplitError::UnbalancedQuotes));
        assert_eq!(split(b"'abc\\'"), Err(SplitError::UnbalancedQuotes));
    }

    #[test]
    fn backslash_at_the_end_inside_quotes_is_unbalanced() {
        assert_eq!(split(b"\"abc\\"), Err(SplitError::UnbalancedQuotes));
        assert_eq!(split(b"'abc\\"), Err(SplitError::UnbalancedQuotes));
    }

    #[test]
    fn nul_byte_anywhere_is_an_error() {
        assert_eq!(split(b"\0"), Err(SplitError::NulByte));
        assert_eq!(split(b"SET k\0 v"), Err(SplitError::NulByte));
        assert_eq!(split(b"SET k v \0"), Err(SplitError::NulByte));
        assert_eq!(split(b"SET \"a\0b\""), Err(SplitError::NulByte));
        assert_eq!(split(b"SET 'a\0b'"), Err(SplitError::NulByte));
        assert_eq!(split(b"SET \"a\\\0\""), Err(SplitError::NulByte));
        // It wins over errors found earlier in the line.
        assert_eq!(split(b"\"a\"b \0"), Err(SplitError::NulByte));
        assert_eq!(split(b"\"abc \0"), Err(SplitError::NulByte));
    }

    #[test]
    fn escaped_nul_is_fine() {
        assert_eq!(split(b"SET k \"\\x00\""), ok(&[b"SET", b"k", b"\0"]));
    }

    #[test]
    fn invalid_utf8_passes_through() {
        assert_eq!(
            split(b"SET \xff\xfe \"\xc3\x28\" '\x80'"),
            ok(&[b"SET", b"\xff\xfe", b"\xc3\x28", b"\x80"])
        );
    }

    #[test]
    fn args_are_cleared_between_lines_and_on_error() {
        let mut args = Args::default();
        split_line(b"a b c", &mut args).unwrap();
        assert_eq!(args.len(), 3);
        split_line(b"d", &mut args).unwrap();
        assert_eq!(args.iter().collect::<Vec<_>>(), [b"d"]);
        assert_eq!(
            split_line(b"e \"f", &mut args),
            Err(SplitError::UnbalancedQuotes)
        );
        assert!(args.is_empty());
        assert_eq!(args.total_len(), 0);
    }

    #[test]
    fn args_accessors() {
        let mut args = Args::default();
        split_line(b"HSET h \"\" field", &mut args).unwrap();
        assert_eq!(args.len(), 4);
        assert!(!args.is_empty());
        assert_eq!(args.get(0), b"HSET");
        assert_eq!(args.get(2), b"");
        assert_eq!(args.get(3), b"field");
        assert_eq!(args.iter().len(), 4);
        assert_eq!(args.total_len(), 4 + 1 + 5);
    }

    #[test]
    fn push_appends_arguments_after_split_ones() {
        let mut args = Args::default();
        split_line(b"SET k", &mut args).unwrap();
        args.push(b"v w");
        args.push(b"");
        assert_eq!(
            args.iter().collect::<Vec<_>>(),
            [&b"SET"[..], b"k", b"v w", b""]
        );
        assert_eq!(args.total_len(), 3 + 1 + 3);
    }

    #[test]
    #[should_panic]
    fn get_out_of_range_panics() {
        let mut args = Args::default();
        split_line(b"a", &mut args).unwrap();
        args.get(1);
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            SplitError::UnbalancedQuotes.to_string(),
            "unbalanced quotes"
        );
        assert_eq!(
            SplitError::TextAfterClosingQuote.to_string(),
            "closing quote must be followed by a space or the end of the line"
        );
        assert_eq!(
            SplitError::NulByte.to_string(),
            "NUL byte in a text line (write it as \\x00 inside double quotes)"
        );
    }

    /// A literal transliteration of the server's `sdssplitargs` loop, with a
    /// C string's terminating NUL simulated by `at`, plus our NUL rule. Slow
    /// and obviously faithful: the model `split_line` is checked against.
    fn reference_split(line: &[u8]) -> Option<Vec<Vec<u8>>> {
        if line.contains(&0) {
            return None;
        }
        let at = |index: usize| line.get(index).copied().unwrap_or(0);
        let is_hex_digit = |c: u8| c.is_ascii_hexdigit();
        let hex_digit_to_int = |c: u8| match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => 0,
        };
        let mut p = 0;
        let mut vector = Vec::new();
        loop {
            while at(p) != 0 && is_space(at(p)) {
                p += 1;
            }
            if at(p) == 0 {
                return Some(vector);
            }
            let mut inq = false;
            let mut insq = false;
            let mut done = false;
            let mut current = Vec::new();
            while !done {
                if inq {
                    if at(p) == b'\\'
                        && at(p + 1) == b'x'
                        && is_hex_digit(at(p + 2))
                        && is_hex_digit(at(p + 3))
                    {
                        current
                            .push(hex_digit_to_int(at(p + 2)) * 16 + hex_digit_to_int(at(p + 3)));
                        p += 3;
                    } else if at(p) == b'\\' && at(p + 1) != 0 {
                        p += 1;
                        current.push(match at(p) {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => other,
                        });
                    } else if at(p) == b'"' {
                        if at(p + 1) != 0 && !is_space(at(p + 1)) {
                            return None;
                        }
                        done = true;
                    } else if at(p) == 0 {
                        return None;
                    } else {
                        current.push(at(p));
                    }
                } else if insq {
                    if at(p) == b'\\' && at(p + 1) == b'\'' {
                        p += 1;
                        current.push(b'\'');
                    } else if at(p) == b'\'' {
                        if at(p + 1) != 0 && !is_space(at(p + 1)) {
                            return None;
                        }
                        done = true;
                    } else if at(p) == 0 {
                        return None;
                    } else {
                        current.push(at(p));
                    }
                } else {
                    match at(p) {
                        b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                        b'"' => inq = true,
                        b'\'' => insq = true,
                        other => current.push(other),
                    }
                }
                if at(p) != 0 {
                    p += 1;
                }
            }
            vector.push(current);
        }
    }

    /// Bytes that matter to the splitter, so random lines hit every rule.
    const SPECIAL_BYTES: &[u8] = b" \t\r\n\x0b\x0c\"'\\x0123456789abcdefABCDEFnrtbaqz\0\xff";

    fn line_strategy() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            9 => prop::sample::select(SPECIAL_BYTES),
            1 => any::<u8>(),
        ];
        prop::collection::vec(byte, 0..40)
    }

    /// Lines assembled from whole pieces (separators, words, quoted parts
    /// made of escapes, stray special bytes), so that most of them split
    /// successfully and every escape reaches a compared result.
    fn structured_line_strategy() -> impl Strategy<Value = Vec<u8>> {
        fn pieces(choices: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
            prop::sample::select(choices).prop_map(<[u8]>::to_vec)
        }
        fn quoted(quote: u8, body: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(prop::sample::select(body), 0..5)
                .prop_map(move |parts| [&[quote][..], &parts.concat(), &[quote]].concat())
        }
        let piece = prop_oneof![
            3 => pieces(&[b" ", b"\t", b"\r", b"\x0b", b"\x0c", b"  ", b" \r\t"]),
            3 => prop::collection::vec(prop::sample::select(b"abxnrt09AF\\\x0b\x0c\xff".as_slice()), 1..5),
            3 => quoted(b'"', &[
                b"a", b" ", b"'", b"\\x41", b"\\xfF", b"\\xA0", b"\\xZZ", b"\\x4", b"\\x",
                b"\\n", b"\\r", b"\\t", b"\\b", b"\\a", b"\\\\", b"\\\"", b"\\'", b"\\q",
                b"\\x00", b"\xff",
            ]),
            2 => quoted(b'\'', &[b"a", b" ", b"\\'", b"\\\\", b"\\n", b"\"", b"\\x41", b"\\"]),
            1 => prop::sample::select(SPECIAL_BYTES).prop_map(|byte| vec![byte]),
        ];
        prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
    }

    /// Raw and structured lines, half and half.
    fn any_line_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![line_strategy(), structured_line_strategy()]
    }

    fn quote_every_byte(arg: &[u8]) -> Vec<u8> {
        let mut quoted = vec![b'"'];
        for byte in arg {
            quoted.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
        }
        quoted.push(b'"');
        quoted
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn agrees_with_the_server_loop(line in any_line_strategy()) {
            let ours = split(&line);
            // Our extra rule decides exactly when the error is `NulByte`.
            prop_assert_eq!(ours == Err(SplitError::NulByte), line.contains(&0));
            match reference_split(&line) {
                Some(expected) => prop_assert_eq!(ours, Ok(expected)),
                None => prop_assert!(ours.is_err(), "reference fails, ours gave {:?}", ours),
            }
        }

        #[test]
        fn accessors_agree(line in any_line_strategy()) {
            let mut args = Args::default();
            if split_line(&line, &mut args).is_ok() {
                let lengths: usize = args.iter().map(<[u8]>::len).sum();
                prop_assert_eq!(args.total_len(), lengths);
                prop_assert_eq!(args.iter().len(), args.len());
                prop_assert_eq!(args.is_empty(), args.iter().next().is_none());
                for (index, arg) in args.iter().enumerate() {
                    prop_assert_eq!(args.get(index), arg);
                }
            }
        }

        #[test]
        fn hex_escaped_arguments_round_trip(
            expected in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..6),
            separators in prop::collection::vec(
                prop::sample::select(vec![" ", "\t", "  ", " \r ", "\x0b", "\x0c"]), 7),
        ) {
            let mut line = separators[6].as_bytes().to_vec();
            for (arg, separator) in expected.iter().zip(&separators) {
                line.extend_from_slice(&quote_every_byte(arg));
                line.extend_from_slice(separator.as_bytes());
            }
            prop_assert_eq!(split(&line), Ok(expected));
        }
    }
}
