//! RESP framing, check-then-consume: the input framer (`scan_command`) finds
//! where one RESP command of the input ends, and the reply scanner
//! (`scan_reply`) finds where one server reply ends and which errors it holds.
//!
//! Place in the data flow: input uses `scan_command` to validate RESP frames
//! and pass their bytes through unchanged; the reply reader uses `scan_reply`
//! to count replies. Both take the bytes received so far and return lengths
//! and ranges: no copies, no value trees, and `Incomplete` is a normal answer
//! (the caller reads more and calls again from the same start). Neither
//! allocates in proportion to a declared length, so `$99999999999` costs
//! nothing until its bytes arrive.
//!
//! Invariants: no input makes either scanner panic; a `Complete` length is
//! never 0 and never past the end of the buffer; every offset and range is
//! relative to the scanned buffer's start. Bulk data is jumped over by its
//! declared length, never walked byte by byte. Nesting is followed with an
//! explicit stack of remaining element counts, not recursion, so a hostile
//! server cannot overflow the thread's stack with `*1\r\n*1\r\n…`.

use std::fmt;
use std::ops::Range;

use memchr::memchr2;

/// Largest bulk argument the input framer accepts: the server's default
/// `proto-max-bulk-len`.
pub const MAX_BULK_LEN: u64 = 512 * 1024 * 1024;

/// One complete RESP command at the start of the scanned buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFrame {
    /// Bytes of the whole frame, header to the last CRLF.
    pub len: usize,
    /// Number of arguments (`*N`); 0 for `*0` and `*-1`.
    pub arg_count: usize,
    /// Byte ranges (relative to the frame start) of the first
    /// `min(3, arg_count)` arguments' contents; the unused ones are `0..0`.
    /// Enough to recognise `CLIENT REPLY OFF`, `MULTI`, `SUBSCRIBE`…
    pub head: [Range<usize>; 3],
}

/// What is wrong with a RESP command in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// Offset of the offending byte, relative to the scanned buffer's start.
    pub offset: usize,
    pub kind: FrameErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameErrorKind {
    /// Count after `*` is not a number, or negative other than -1.
    BadArrayLength,
    /// An element does not start with `$`.
    ExpectedBulk,
    /// Length after `$` is not a number or is negative.
    BadBulkLength,
    /// Length after `$` is above `MAX_BULK_LEN`.
    BulkTooLong,
    /// A header line or a bulk's data is not followed by CRLF.
    MissingCrlf,
}

pub enum CommandScan {
    Complete(CommandFrame),
    /// The buffer ends inside the frame: read more and scan again. The frame
    /// needs at least `at_least` more bytes: the rest of a bulk's data when
    /// the buffer ends inside it, else 1.
    Incomplete {
        at_least: usize,
    },
    Invalid(FrameError),
}

/// Scans one RESP command (an array of bulk strings) at the start of `buf`,
/// which must start with `*`.
pub fn scan_command(buf: &[u8]) -> CommandScan {
    frame_command(buf).unwrap_or_else(CommandScan::Invalid)
}

/// `scan_command` in `?`-friendly form: it never returns `Ok(Invalid)`.
fn frame_command(buf: &[u8]) -> Result<CommandScan, FrameError> {
    const SHORT: CommandScan = CommandScan::Incomplete { at_least: 1 };
    match buf.first() {
        None => return Ok(SHORT),
        Some(b'*') => {}
        // The caller only hands over frames starting with `*`; anything else
        // is reported as a bad array header at its first byte.
        Some(_) => {
            return Err(FrameError {
                offset: 0,
                kind: FrameErrorKind::BadArrayLength,
            });
        }
    }
    let Some(count) =
        read_header_number(buf, 1, NullAllowed::Yes, MAX_SLICE_LEN).map_err(array_header_error)?
    else {
        return Ok(SHORT);
    };
    let arg_count = count.value.map_or(0, to_usize);
    let mut head = [0..0, 0..0, 0..0];
    let mut pos = count.end;
    for arg_index in 0..arg_count {
        match buf.get(pos) {
            None => return Ok(SHORT),
            Some(b'$') => {}
            Some(_) => {
                return Err(FrameError {
                    offset: pos,
                    kind: FrameErrorKind::ExpectedBulk,
                });
            }
        }
        let Some(length) = read_header_number(buf, pos + 1, NullAllowed::No, MAX_BULK_LEN)
            .map_err(bulk_header_error)?
        else {
            return Ok(SHORT);
        };
        let data_start = length.end;
        let data_end = data_start.saturating_add(length.value.map_or(0, to_usize));
        let Some(next) = expect_crlf(buf, data_end).map_err(|offset| FrameError {
            offset,
            kind: FrameErrorKind::MissingCrlf,
        })?
        else {
            let at_least = data_end.saturating_add(2).saturating_sub(buf.len());
            return Ok(CommandScan::Incomplete {
                at_least: at_least.max(1),
            });
        };
        if let Some(slot) = head.get_mut(arg_index) {
            *slot = data_start..data_end;
        }
        pos = next;
    }
    Ok(CommandScan::Complete(CommandFrame {
        len: pos,
        arg_count,
        head,
    }))
}

fn array_header_error(error: NumberError) -> FrameError {
    let kind = match error.problem {
        NumberProblem::NotANumber | NumberProblem::TooLarge => FrameErrorKind::BadArrayLength,
        NumberProblem::MissingCrlf => FrameErrorKind::MissingCrlf,
    };
    FrameError {
        offset: error.offset,
        kind,
    }
}

fn bulk_header_error(error: NumberError) -> FrameError {
    let kind = match error.problem {
        NumberProblem::NotANumber => FrameErrorKind::BadBulkLength,
        NumberProblem::TooLarge => FrameErrorKind::BulkTooLong,
        NumberProblem::MissingCrlf => FrameErrorKind::MissingCrlf,
    };
    FrameError {
        offset: error.offset,
        kind,
    }
}

/// The arguments of one command already framed by `scan_command` (or
/// encoded by pipeload), in order. Stops early, without panicking, at
/// anything that is not a well-formed frame.
pub fn command_args(frame: &[u8]) -> Vec<&[u8]> {
    let mut args = Vec::new();
    command_args_into(frame, &mut args);
    args
}

/// `command_args` into `args` (cleared first), so that a caller that reads
/// many commands reuses one vector.
pub fn command_args_into<'f>(frame: &'f [u8], args: &mut Vec<&'f [u8]>) {
    args.clear();
    let Some(header_end) = frame.iter().position(|&byte| byte == b'\n') else {
        return;
    };
    let mut position = header_end + 1;
    while let Some((arg, next)) = bulk_at(frame, position) {
        args.push(arg);
        position = next;
    }
}

/// The first two arguments of `frame` (a command's name and, when it has
/// one, its first argument): what a route reads of most commands.
#[inline]
pub fn name_and_first_arg(frame: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let header_end = frame.iter().position(|&byte| byte == b'\n')?;
    let (name, next) = bulk_at(frame, header_end + 1)?;
    Some((name, bulk_at(frame, next).map(|(first, _)| first)))
}

/// The bulk string whose `$` is at `position` of `frame`, and where what
/// follows it starts; `None` at anything else. Its length is read digit by
/// digit: a command's lengths are a few digits, shorter than a search for
/// the line end would pay for.
#[inline]
fn bulk_at(frame: &[u8], position: usize) -> Option<(&[u8], usize)> {
    if frame.get(position) != Some(&b'$') {
        return None;
    }
    let mut at = position + 1;
    let mut length = 0usize;
    while let Some(&byte) = frame.get(at)
        && byte.is_ascii_digit()
    {
        length = length
            .checked_mul(10)?
            .checked_add(usize::from(byte - b'0'))?;
        at += 1;
    }
    if at == position + 1 {
        return None;
    }
    if frame.get(at) == Some(&b'\r') {
        at += 1;
    }
    if frame.get(at) != Some(&b'\n') {
        return None;
    }
    let start = at + 1;
    let arg = frame.get(start..start.checked_add(length)?)?;
    Some((arg, start + length + 2))
}

/// The kind of one complete reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// A reply that is not an error (it may hold errors, as an EXEC reply can).
    Value,
    /// A top-level error (`-…` or `!…`).
    Error,
    /// A RESP3 push frame (`>…`): out of band, not a reply to any command.
    Push,
}

/// One complete reply at the start of the scanned buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Bytes of the whole reply (an attribute before it included).
    pub len: usize,
    pub kind: ReplyKind,
}

/// An error found in a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorSpan {
    /// `None` for a top-level error reply; for an error nested in an
    /// aggregate, the index of the top-level element that holds it (an EXEC
    /// reply's element i is the reply to the i-th queued command).
    pub element: Option<usize>,
    /// The error text (without the type byte, length or CRLF), relative to
    /// the scanned buffer's start.
    pub message: Range<usize>,
}

/// The server sent bytes that are not RESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// Offset of the offending byte, relative to the scanned buffer's start.
    pub offset: usize,
    pub reason: &'static str,
}

/// How many bytes of a reply that is not RESP a message shows.
const SHOWN_OF_NOT_RESP: usize = 40;

impl ProtocolError {
    /// The error with the first bytes of what came (`received`, from the
    /// start of the reply), escaped, and the question it raises: a port
    /// that speaks something else (an HTTP proxy, TLS without `--tls`) is
    /// the usual cause.
    pub fn describe_with(&self, received: &[u8]) -> String {
        let shown = &received[..received.len().min(SHOWN_OF_NOT_RESP)];
        let more = match received.len() > SHOWN_OF_NOT_RESP {
            true => "...",
            false => "",
        };
        format!(
            "{}; it sent \"{}\"{more}: is this a Redis server?",
            self.reason,
            shown.escape_ascii()
        )
    }
}

pub enum ReplyScan {
    Complete(Reply),
    Incomplete,
    Invalid(ProtocolError),
}

/// Scans one reply (any RESP2 or RESP3 type, nested to any depth, without
/// recursion) at the start of `buf`. On `Complete`, appends to `errors` every
/// error the reply holds: its own text if it is an error, else the errors
/// nested in it. Errors inside attributes and push frames are not appended.
/// On `Incomplete` or `Invalid`, `errors` is left as it was.
pub fn scan_reply(buf: &[u8], errors: &mut Vec<ErrorSpan>) -> ReplyScan {
    let Some(&type_byte) = buf.first() else {
        return ReplyScan::Incomplete;
    };
    if is_aggregate(type_byte) {
        return scan_nested_reply(buf, errors);
    }
    // Fast path for the common `+OK`, `:1`, `$-1`: no stack, no bookkeeping.
    match scan_scalar(buf, 0) {
        Ok(Some(scalar)) => {
            let kind = match scalar.error_message {
                Some(message) => {
                    errors.push(ErrorSpan {
                        element: None,
                        message,
                    });
                    ReplyKind::Error
                }
                None => ReplyKind::Value,
            };
            ReplyScan::Complete(Reply {
                len: scalar.end,
                kind,
            })
        }
        Ok(None) => ReplyScan::Incomplete,
        Err(error) => ReplyScan::Invalid(error),
    }
}

/// The slow path of `scan_reply`, for replies that start with an aggregate
/// or an attribute header.
fn scan_nested_reply(buf: &[u8], errors: &mut Vec<ErrorSpan>) -> ReplyScan {
    let errors_before = errors.len();
    let outcome = walk_nested_reply(buf, errors);
    if !matches!(outcome, Ok(Some(_))) {
        errors.truncate(errors_before);
    }
    match outcome {
        Ok(Some(reply)) => ReplyScan::Complete(reply),
        Ok(None) => ReplyScan::Incomplete,
        Err(error) => ReplyScan::Invalid(error),
    }
}

/// One aggregate whose elements are still being scanned.
struct OpenAggregate {
    /// Elements left to scan; a map or attribute entry counts as two.
    remaining: u64,
    /// An attribute is metadata in front of a value, not a value itself: its
    /// completion does not fill a slot of the aggregate around it.
    is_attribute: bool,
    /// Inside an attribute or a push frame, whose errors are not reported.
    quiet: bool,
}

/// Walks one reply item by item; `Ok(None)` is `Incomplete`. May append to
/// `errors` before failing: the caller truncates.
fn walk_nested_reply(
    buf: &[u8],
    errors: &mut Vec<ErrorSpan>,
) -> Result<Option<Reply>, ProtocolError> {
    let mut open: Vec<OpenAggregate> = Vec::new();
    let mut pos = 0;
    let mut kind = ReplyKind::Value;
    // Index of the element of the outermost aggregate being scanned.
    let mut top_element = 0;
    loop {
        let Some(&type_byte) = buf.get(pos) else {
            return Ok(None);
        };
        let quiet = open.last().is_some_and(|aggregate| aggregate.quiet);
        if open.is_empty() {
            // Set again after a top-level attribute: the value decides.
            kind = match type_byte {
                b'-' | b'!' => ReplyKind::Error,
                b'>' => ReplyKind::Push,
                _ => ReplyKind::Value,
            };
        }
        if is_aggregate(type_byte) {
            let Some(header) = scan_aggregate_header(buf, pos)? else {
                return Ok(None);
            };
            pos = header.end;
            let is_attribute = type_byte == b'|';
            match header.elements {
                Some(elements) if elements > 0 => {
                    open.push(OpenAggregate {
                        remaining: elements,
                        is_attribute,
                        quiet: quiet || is_attribute || type_byte == b'>',
                    });
                    continue;
                }
                // An empty attribute stands in front of nothing yet.
                _ if is_attribute => continue,
                // An empty or null aggregate is a complete value.
                _ => {}
            }
        } else {
            let Some(scalar) = scan_scalar(buf, pos)? else {
                return Ok(None);
            };
            if let Some(message) = scalar.error_message
                && !quiet
            {
                let element = if open.is_empty() {
                    None
                } else {
                    Some(top_element)
                };
                errors.push(ErrorSpan { element, message });
            }
            pos = scalar.end;
        }
        // A value ended at `pos`: close every aggregate it completes.
        loop {
            let depth = open.len();
            let Some(innermost) = open.last_mut() else {
                return Ok(Some(Reply { len: pos, kind }));
            };
            innermost.remaining -= 1;
            if depth == 1 && !innermost.is_attribute {
                top_element += 1;
            }
            if innermost.remaining > 0 {
                break;
            }
            let closed_attribute = innermost.is_attribute;
            open.pop();
            if closed_attribute {
                // The value the attribute annotates comes next.
                break;
            }
        }
    }
}

fn is_aggregate(type_byte: u8) -> bool {
    matches!(type_byte, b'*' | b'%' | b'~' | b'|' | b'>')
}

/// A scanned non-aggregate reply item.
struct Scalar {
    /// Offset just past its last CRLF.
    end: usize,
    /// The message of a simple (`-`) or blob (`!`) error.
    error_message: Option<Range<usize>>,
}

/// Scans the non-aggregate item whose type byte is at `start`; `Ok(None)` is
/// `Incomplete`.
fn scan_scalar(buf: &[u8], start: usize) -> Result<Option<Scalar>, ProtocolError> {
    let Some(&type_byte) = buf.get(start) else {
        return Ok(None);
    };
    let content_start = start + 1;
    match type_byte {
        b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {
            let Some(cr) = find_line_end(buf, content_start)? else {
                return Ok(None);
            };
            let content = buf.get(content_start..cr).unwrap_or_default();
            let problem = match type_byte {
                b':' | b'(' => first_non_integer_byte(content).map(|at| (at, "invalid integer")),
                b'#' if !matches!(content, b"t" | b"f") => Some((0, "invalid boolean")),
                b'_' if !content.is_empty() => Some((0, "null with content")),
                _ => None,
            };
            if let Some((at, reason)) = problem {
                return Err(ProtocolError {
                    offset: content_start + at,
                    reason,
                });
            }
            Ok(Some(Scalar {
                end: cr + 2,
                error_message: (type_byte == b'-').then_some(content_start..cr),
            }))
        }
        b'$' | b'=' | b'!' => {
            let null_allowed = if type_byte == b'$' {
                NullAllowed::Yes
            } else {
                NullAllowed::No
            };
            let Some(length) = read_reply_header_number(buf, content_start, null_allowed)? else {
                return Ok(None);
            };
            let Some(data_len) = length.value.map(to_usize) else {
                return Ok(Some(Scalar {
                    end: length.end,
                    error_message: None,
                }));
            };
            let data_start = length.end;
            let data_end = data_start.saturating_add(data_len);
            if type_byte == b'=' {
                check_verbatim_format(buf, content_start, data_start, data_len)?;
            }
            let Some(end) = expect_crlf(buf, data_end).map_err(|offset| ProtocolError {
                offset,
                reason: "expected CRLF after bulk data",
            })?
            else {
                return Ok(None);
            };
            Ok(Some(Scalar {
                end,
                error_message: (type_byte == b'!').then_some(data_start..data_end),
            }))
        }
        _ => Err(ProtocolError {
            offset: start,
            reason: "unknown reply type byte",
        }),
    }
}

/// A verbatim string's data starts with a three-byte format and a colon
/// (`txt:`); checks what of it has arrived.
fn check_verbatim_format(
    buf: &[u8],
    length_start: usize,
    data_start: usize,
    data_len: usize,
) -> Result<(), ProtocolError> {
    if data_len < 4 {
        return Err(ProtocolError {
            offset: length_start,
            reason: "verbatim string shorter than its format prefix",
        });
    }
    match buf.get(data_start + 3) {
        Some(b':') | None => Ok(()),
        Some(_) => Err(ProtocolError {
            offset: data_start + 3,
            reason: "verbatim string without ':' after its format",
        }),
    }
}

/// Position of the first byte of `content` that keeps it from being an
/// optionally signed run of at least one digit.
fn first_non_integer_byte(content: &[u8]) -> Option<usize> {
    let digits_start = usize::from(matches!(content.first(), Some(b'-' | b'+')));
    let digits = content.get(digits_start..).unwrap_or_default();
    if digits.is_empty() {
        return Some(digits_start);
    }
    digits
        .iter()
        .position(|byte| !byte.is_ascii_digit())
        .map(|at| digits_start + at)
}

/// The header of an aggregate or attribute at `start`.
struct AggregateHeader {
    /// Offset just past the header's CRLF.
    end: usize,
    /// Elements to scan (twice the entries of a map or attribute); `None`
    /// for the RESP2 null array `*-1`.
    elements: Option<u64>,
}

fn scan_aggregate_header(
    buf: &[u8],
    start: usize,
) -> Result<Option<AggregateHeader>, ProtocolError> {
    let type_byte = buf.get(start).copied();
    let null_allowed = if type_byte == Some(b'*') {
        NullAllowed::Yes
    } else {
        NullAllowed::No
    };
    let Some(count) = read_reply_header_number(buf, start + 1, null_allowed)? else {
        return Ok(None);
    };
    let elements = match count.value {
        Some(entries) if matches!(type_byte, Some(b'%' | b'|')) => {
            Some(entries.checked_mul(2).ok_or(ProtocolError {
                offset: start + 1,
                reason: "aggregate length too large",
            })?)
        }
        other => other,
    };
    Ok(Some(AggregateHeader {
        end: count.end,
        elements,
    }))
}

/// `read_header_number` with the reply scanner's reasons.
fn read_reply_header_number(
    buf: &[u8],
    start: usize,
    null_allowed: NullAllowed,
) -> Result<Option<HeaderNumber>, ProtocolError> {
    if buf.get(start) == Some(&b'?') {
        return Err(ProtocolError {
            offset: start,
            reason: "streamed strings and aggregates are not supported",
        });
    }
    read_header_number(buf, start, null_allowed, MAX_SLICE_LEN).map_err(|error| ProtocolError {
        offset: error.offset,
        reason: match error.problem {
            NumberProblem::NotANumber => "invalid length",
            NumberProblem::TooLarge => "length too large",
            NumberProblem::MissingCrlf => "expected CRLF after length",
        },
    })
}

/// The longest length that can describe bytes in memory; larger declared
/// lengths are refused rather than waited for.
const MAX_SLICE_LEN: u64 = isize::MAX as u64;

/// Lengths are checked against `MAX_SLICE_LEN` or `MAX_BULK_LEN` first, so
/// this never saturates in practice.
fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// Whether a header accepts `-1`, RESP2's null.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NullAllowed {
    Yes,
    No,
}

/// A count or length read from a header line (`*3\r\n`, `$-1\r\n`…).
struct HeaderNumber {
    /// `None` for `-1`.
    value: Option<u64>,
    /// Offset just past the header's CRLF.
    end: usize,
}

struct NumberError {
    offset: usize,
    problem: NumberProblem,
}

enum NumberProblem {
    /// Empty, not digits, overflowing, or negative where not allowed.
    NotANumber,
    /// Above the caller's maximum.
    TooLarge,
    /// The digits are not followed by CRLF.
    MissingCrlf,
}

/// Reads the number starting at `start` (just after a type byte) and the
/// CRLF after it. `Ok(None)` means the bytes end before the header does
/// with nothing wrong so far.
fn read_header_number(
    buf: &[u8],
    start: usize,
    null_allowed: NullAllowed,
    max: u64,
) -> Result<Option<HeaderNumber>, NumberError> {
    let not_a_number = |offset| NumberError {
        offset,
        problem: NumberProblem::NotANumber,
    };
    let mut pos = start;
    let value = if buf.get(pos) == Some(&b'-') {
        if null_allowed == NullAllowed::No {
            return Err(not_a_number(pos));
        }
        match buf.get(pos + 1) {
            None => return Ok(None),
            Some(b'1') => {}
            Some(_) => return Err(not_a_number(pos + 1)),
        }
        pos += 2;
        None
    } else {
        let mut total: u64 = 0;
        while let Some(&byte) = buf.get(pos)
            && byte.is_ascii_digit()
        {
            total = total
                .checked_mul(10)
                .and_then(|tens| tens.checked_add(u64::from(byte - b'0')))
                .ok_or_else(|| not_a_number(pos))?;
            pos += 1;
        }
        if pos == start && pos < buf.len() {
            return Err(not_a_number(pos));
        }
        // The server's parser refuses `$03` and would drop the connection.
        if buf.get(start) == Some(&b'0') && pos > start + 1 {
            return Err(not_a_number(start + 1));
        }
        Some(total)
    };
    match buf.get(pos) {
        None => return Ok(None),
        Some(b'\r' | b'\n') => {}
        Some(_) => return Err(not_a_number(pos)),
    }
    if value.is_some_and(|number| number > max) {
        return Err(NumberError {
            offset: start,
            problem: NumberProblem::TooLarge,
        });
    }
    let Some(end) = expect_crlf(buf, pos).map_err(|offset| NumberError {
        offset,
        problem: NumberProblem::MissingCrlf,
    })?
    else {
        return Ok(None);
    };
    Ok(Some(HeaderNumber { value, end }))
}

/// Checks for CRLF at `pos`: `Ok(Some(pos + 2))`, `Ok(None)` if the bytes
/// end first, `Err(offset)` of the first byte that is not the expected one.
fn expect_crlf(buf: &[u8], pos: usize) -> Result<Option<usize>, usize> {
    match buf.get(pos) {
        None => Ok(None),
        Some(b'\r') => match buf.get(pos + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some(pos + 2)),
            Some(_) => Err(pos + 1),
        },
        Some(_) => Err(pos),
    }
}

/// Finds the CR of the CRLF ending the line that starts at `start`. A line
/// holds neither CR nor LF, so the first of either must be that CRLF.
/// The first CR or LF in `bytes`. Most reply lines (`+OK`, `:1`) are a few
/// bytes long, where a plain loop beats setting up a vectorised search.
fn find_cr_or_lf(bytes: &[u8]) -> Option<usize> {
    const SHORT_LINE: usize = 16;
    let (short, long) = bytes.split_at(bytes.len().min(SHORT_LINE));
    match short
        .iter()
        .position(|&byte| byte == b'\r' || byte == b'\n')
    {
        Some(at) => Some(at),
        None => memchr2(b'\r', b'\n', long).map(|at| SHORT_LINE + at),
    }
}

fn find_line_end(buf: &[u8], start: usize) -> Result<Option<usize>, ProtocolError> {
    let rest = buf.get(start..).unwrap_or_default();
    let Some(found) = find_cr_or_lf(rest) else {
        return Ok(None);
    };
    let cr = start + found;
    match expect_crlf(buf, cr) {
        Ok(Some(_)) => Ok(Some(cr)),
        Ok(None) => Ok(None),
        Err(offset) => Err(ProtocolError {
            offset,
            reason: "expected CRLF at end of line",
        }),
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FrameErrorKind::BadArrayLength => f.write_str(
                "invalid array header: expected '*', an argument count (digits or -1) and CRLF",
            ),
            FrameErrorKind::ExpectedBulk => f.write_str("expected '$' (a bulk string argument)"),
            FrameErrorKind::BadBulkLength => {
                f.write_str("invalid bulk length: expected digits and CRLF")
            }
            FrameErrorKind::BulkTooLong => write!(
                f,
                "bulk string longer than {MAX_BULK_LEN} bytes (the server's proto-max-bulk-len)"
            ),
            FrameErrorKind::MissingCrlf => f.write_str("expected CRLF"),
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // `CommandScan` and `ReplyScan` derive nothing (their interface is
    // fixed), so the tests compare these mirrors instead.
    #[derive(Debug, PartialEq)]
    enum Framed {
        Complete(CommandFrame),
        Incomplete,
        Invalid(usize, FrameErrorKind),
    }

    fn frame(buf: &[u8]) -> Framed {
        match scan_command(buf) {
            CommandScan::Complete(frame) => Framed::Complete(frame),
            CommandScan::Incomplete { .. } => Framed::Incomplete,
            CommandScan::Invalid(error) => Framed::Invalid(error.offset, error.kind),
        }
    }

    fn invalid_frame(buf: &[u8]) -> (usize, FrameErrorKind) {
        match frame(buf) {
            Framed::Invalid(offset, kind) => (offset, kind),
            other => panic!(
                "{:?}: expected Invalid, got {other:?}",
                buf.escape_ascii().to_string()
            ),
        }
    }

    fn complete_frame(buf: &[u8]) -> CommandFrame {
        match frame(buf) {
            Framed::Complete(frame) => frame,
            other => panic!(
                "{:?}: expected Complete, got {other:?}",
                buf.escape_ascii().to_string()
            ),
        }
    }

    #[derive(Debug, PartialEq)]
    enum Scanned {
        Complete(Reply, Vec<ErrorSpan>),
        Incomplete,
        Invalid(usize),
    }

    /// Scans with an `errors` list that already holds a span, and checks
    /// that it is appended to on Complete and left alone otherwise.
    fn scan(buf: &[u8]) -> Scanned {
        let earlier = ErrorSpan {
            element: Some(usize::MAX),
            message: 0..0,
        };
        let mut errors = vec![earlier.clone()];
        let scanned = scan_reply(buf, &mut errors);
        assert_eq!(errors.first(), Some(&earlier), "earlier span changed");
        match scanned {
            ReplyScan::Complete(reply) => Scanned::Complete(reply, errors.split_off(1)),
            ReplyScan::Incomplete => {
                assert_eq!(errors.len(), 1, "errors appended on Incomplete");
                Scanned::Incomplete
            }
            ReplyScan::Invalid(error) => {
                assert_eq!(errors.len(), 1, "errors appended on Invalid");
                assert!(!error.to_string().is_empty());
                Scanned::Invalid(error.offset)
            }
        }
    }

    fn complete_reply(buf: &[u8]) -> (Reply, Vec<ErrorSpan>) {
        match scan(buf) {
            Scanned::Complete(reply, spans) => {
                assert_eq!(reply.len, buf.len(), "{:?}", buf.escape_ascii().to_string());
                (reply, spans)
            }
            other => panic!(
                "{:?}: expected Complete, got {other:?}",
                buf.escape_ascii().to_string()
            ),
        }
    }

    fn assert_value(buf: &[u8]) {
        assert_eq!(complete_reply(buf), (value(buf.len()), vec![]));
    }

    fn value(len: usize) -> Reply {
        Reply {
            len,
            kind: ReplyKind::Value,
        }
    }

    fn span(element: Option<usize>, message: Range<usize>) -> ErrorSpan {
        ErrorSpan { element, message }
    }

    /// Every strict prefix of a whole reply is `Incomplete`.
    fn assert_prefixes_incomplete(buf: &[u8]) {
        for end in 0..buf.len() {
            let prefix = &buf[..end];
            assert_eq!(
                scan(prefix),
                Scanned::Incomplete,
                "prefix {end} of {:?}",
                buf.escape_ascii().to_string()
            );
        }
    }

    // ---- scan_command ----

    #[test]
    fn command_set_has_three_head_ranges() {
        let buf = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n";
        let frame = complete_frame(buf);
        assert_eq!(frame.len, buf.len());
        assert_eq!(frame.arg_count, 3);
        assert_eq!(frame.head, [8..11, 17..18, 24..29]);
        assert_eq!(&buf[frame.head[0].clone()], b"SET");
        assert_eq!(&buf[frame.head[2].clone()], b"value");
    }

    #[test]
    fn command_head_holds_only_the_first_three_arguments() {
        let buf = b"*4\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$3\r\nOFF\r\n$1\r\nx\r\n";
        let frame = complete_frame(buf);
        assert_eq!(frame.arg_count, 4);
        let head: Vec<&[u8]> = frame.head.iter().map(|range| &buf[range.clone()]).collect();
        assert_eq!(head, [&b"CLIENT"[..], b"REPLY", b"OFF"]);
        assert_eq!(frame.len, buf.len());
    }

    #[test]
    fn command_with_one_argument_leaves_unused_head_empty() {
        let frame = complete_frame(b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            frame,
            CommandFrame {
                len: 14,
                arg_count: 1,
                head: [8..12, 0..0, 0..0],
            }
        );
    }

    #[test]
    fn command_empty_and_null_arrays_have_no_arguments() {
        let empty = [0..0, 0..0, 0..0];
        assert_eq!(
            complete_frame(b"*0\r\n"),
            CommandFrame {
                len: 4,
                arg_count: 0,
                head: empty.clone(),
            }
        );
        assert_eq!(
            complete_frame(b"*-1\r\n*1\r\n"),
            CommandFrame {
                len: 5,
                arg_count: 0,
                head: empty,
            }
        );
    }

    #[test]
    fn command_empty_bulk_argument() {
        let frame = complete_frame(b"*2\r\n$0\r\n\r\n$1\r\nx\r\n");
        assert_eq!(frame.len, 17);
        assert_eq!(frame.head, [8..8, 14..15, 0..0]);
    }

    #[test]
    fn command_bulk_data_may_hold_any_byte() {
        let buf = b"*1\r\n$6\r\n\r\n*$\n\0\r\n";
        assert_eq!(complete_frame(buf).head[0], 8..14);
    }

    #[test]
    fn command_stops_at_the_end_of_the_first_frame() {
        let frame = complete_frame(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI");
        assert_eq!(frame.len, 14);
    }

    #[test]
    fn command_every_strict_prefix_is_incomplete() {
        let buf = b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$12\r\nhello\r\nworld\r\n";
        assert_eq!(complete_frame(buf).len, buf.len());
        for end in 0..buf.len() {
            assert_eq!(frame(&buf[..end]), Framed::Incomplete, "prefix {end}");
        }
        for end in 0..5 {
            assert_eq!(
                frame(&b"*-1\r\n"[..end]),
                Framed::Incomplete,
                "prefix {end}"
            );
        }
    }

    /// The input reads exactly `at_least` bytes straight into a big frame's
    /// batch, so the hint must never reach past the end of the frame.
    #[test]
    fn command_incomplete_asks_for_no_byte_past_the_frame() {
        let buf = b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$12\r\nhello\r\nworld\r\n";
        let data_start = buf.len() - 14;
        for end in 0..buf.len() {
            let CommandScan::Incomplete { at_least } = scan_command(&buf[..end]) else {
                panic!("prefix {end} is not incomplete");
            };
            assert!(at_least >= 1, "prefix {end}");
            assert!(end + at_least <= buf.len(), "prefix {end} asks {at_least}");
            if end >= data_start {
                assert_eq!(end + at_least, buf.len(), "prefix {end} inside the data");
            }
        }
    }

    #[test]
    fn command_bad_array_length() {
        use FrameErrorKind::BadArrayLength;
        assert_eq!(invalid_frame(b"*x\r\n"), (1, BadArrayLength));
        assert_eq!(invalid_frame(b"*\r\n"), (1, BadArrayLength));
        assert_eq!(invalid_frame(b"*+1\r\n"), (1, BadArrayLength));
        assert_eq!(invalid_frame(b"* 1\r\n"), (1, BadArrayLength));
        assert_eq!(invalid_frame(b"*1 \r\n"), (2, BadArrayLength));
        assert_eq!(invalid_frame(b"*12x"), (3, BadArrayLength));
        assert_eq!(invalid_frame(b"*-2\r\n"), (2, BadArrayLength));
        assert_eq!(invalid_frame(b"*-10\r\n"), (3, BadArrayLength));
        assert_eq!(invalid_frame(b"*--1\r\n"), (2, BadArrayLength));
        // u64 overflows at the 20th nine.
        assert_eq!(
            invalid_frame(b"*99999999999999999999\r\n"),
            (20, BadArrayLength)
        );
        // Not a frame at all.
        assert_eq!(invalid_frame(b"PING\r\n"), (0, BadArrayLength));
    }

    #[test]
    fn command_huge_array_count_waits_without_allocating() {
        assert_eq!(frame(b"*9999999999999\r\n$1\r\nx\r\n"), Framed::Incomplete);
    }

    #[test]
    fn command_expected_bulk() {
        use FrameErrorKind::ExpectedBulk;
        assert_eq!(invalid_frame(b"*1\r\n:1\r\n"), (4, ExpectedBulk));
        assert_eq!(
            invalid_frame(b"*2\r\n$1\r\na\r\n+b\r\n"),
            (11, ExpectedBulk)
        );
        assert_eq!(invalid_frame(b"*2\r\n$1\r\na\r\n\r\n"), (11, ExpectedBulk));
    }

    #[test]
    fn command_bad_bulk_length() {
        use FrameErrorKind::BadBulkLength;
        assert_eq!(invalid_frame(b"*1\r\n$x\r\n"), (5, BadBulkLength));
        assert_eq!(invalid_frame(b"*1\r\n$\r\n"), (5, BadBulkLength));
        assert_eq!(invalid_frame(b"*1\r\n$-1\r\n"), (5, BadBulkLength));
        assert_eq!(invalid_frame(b"*1\r\n$+3\r\n"), (5, BadBulkLength));
        assert_eq!(invalid_frame(b"*1\r\n$3 \r\n"), (6, BadBulkLength));
        assert_eq!(invalid_frame(b"*1\r\n$03\r\nabc\r\n"), (6, BadBulkLength));
        assert_eq!(
            invalid_frame(b"*1\r\n$99999999999999999999\r\n"),
            (24, BadBulkLength)
        );
    }

    #[test]
    fn command_bulk_too_long_is_refused_at_its_header() {
        use FrameErrorKind::BulkTooLong;
        assert_eq!(frame(b"*1\r\n$99999999999"), Framed::Incomplete);
        assert_eq!(invalid_frame(b"*1\r\n$99999999999\r"), (5, BulkTooLong));
        assert_eq!(invalid_frame(b"*1\r\n$99999999999\r\n"), (5, BulkTooLong));
        assert_eq!(invalid_frame(b"*1\r\n$536870913\r\n"), (5, BulkTooLong));
        // Exactly the limit is accepted: it waits for the data.
        assert_eq!(frame(b"*1\r\n$536870912\r\nabc"), Framed::Incomplete);
    }

    #[test]
    fn command_missing_crlf() {
        use FrameErrorKind::MissingCrlf;
        assert_eq!(invalid_frame(b"*1\n$4\r\nPING\r\n"), (2, MissingCrlf));
        assert_eq!(invalid_frame(b"*1\rx"), (3, MissingCrlf));
        assert_eq!(invalid_frame(b"*1\r\n$4\n"), (6, MissingCrlf));
        assert_eq!(invalid_frame(b"*1\r\n$4\r\r"), (7, MissingCrlf));
        assert_eq!(invalid_frame(b"*1\r\n$4\r\nPINGX"), (12, MissingCrlf));
        assert_eq!(invalid_frame(b"*1\r\n$4\r\nPING\n"), (12, MissingCrlf));
        assert_eq!(invalid_frame(b"*1\r\n$4\r\nPING\rX"), (13, MissingCrlf));
        assert_eq!(invalid_frame(b"*1\r\n$4\r\nPINGS\r\n"), (12, MissingCrlf));
        assert_eq!(invalid_frame(b"*-1\n"), (3, MissingCrlf));
    }

    #[test]
    fn command_empty_buffer_is_incomplete() {
        assert_eq!(frame(b""), Framed::Incomplete);
    }

    #[test]
    fn frame_error_messages_are_one_line() {
        use FrameErrorKind::*;
        for kind in [
            BadArrayLength,
            ExpectedBulk,
            BadBulkLength,
            BulkTooLong,
            MissingCrlf,
        ] {
            let message = FrameError { offset: 3, kind }.to_string();
            assert!(!message.is_empty() && !message.contains('\n'), "{message}");
            assert!(message.starts_with(|c: char| c.is_lowercase()), "{message}");
        }
        let too_long = FrameError {
            offset: 0,
            kind: BulkTooLong,
        };
        assert!(too_long.to_string().contains("536870912"));
    }

    // ---- scan_reply ----

    #[test]
    fn reply_simple_string_integer_and_null_bulk() {
        assert_value(b"+OK\r\n");
        assert_value(b"+\r\n");
        assert_value(b":1\r\n");
        assert_value(b":-1234\r\n");
        assert_value(b":+7\r\n");
        assert_value(b"$-1\r\n");
        assert_eq!(scan(b"+OK\r\n+OK\r\n"), Scanned::Complete(value(5), vec![]));
    }

    #[test]
    fn reply_bulk_strings() {
        assert_value(b"$0\r\n\r\n");
        assert_value(b"$5\r\nhello\r\n");
        assert_value(b"$4\r\n\r\n\r\n\r\n");
        assert_prefixes_incomplete(b"$5\r\nhello\r\n");
        // A huge declared length waits, allocating nothing.
        assert_eq!(scan(b"$99999999999\r\nabc"), Scanned::Incomplete);
    }

    #[test]
    fn reply_simple_error_is_an_error_reply() {
        let buf = b"-ERR bad\r\n";
        assert_eq!(
            complete_reply(buf),
            (
                Reply {
                    len: 10,
                    kind: ReplyKind::Error
                },
                vec![span(None, 1..8)]
            )
        );
        assert_eq!(&buf[1..8], b"ERR bad");
        assert_prefixes_incomplete(buf);
    }

    #[test]
    fn reply_blob_error_is_an_error_reply() {
        let buf = b"!21\r\nSYNTAX invalid syntax\r\n";
        let (reply, spans) = complete_reply(buf);
        assert_eq!(reply.kind, ReplyKind::Error);
        assert_eq!(spans, [span(None, 5..26)]);
        assert_eq!(&buf[5..26], b"SYNTAX invalid syntax");
    }

    #[test]
    fn reply_resp3_scalars() {
        assert_value(b"_\r\n");
        assert_value(b"#t\r\n");
        assert_value(b"#f\r\n");
        assert_value(b",1.5\r\n");
        assert_value(b",-2e300\r\n");
        assert_value(b",inf\r\n");
        assert_value(b",-inf\r\n");
        assert_value(b",nan\r\n");
        assert_value(b"(3492890328409238509324850943850943825024385\r\n");
        assert_value(b"(-1\r\n");
        assert_value(b"=15\r\ntxt:Some string\r\n");
        assert_value(b"=4\r\nmkd:\r\n");
    }

    #[test]
    fn reply_invalid_scalars() {
        assert_eq!(scan(b"_x\r\n"), Scanned::Invalid(1));
        assert_eq!(scan(b"#x\r\n"), Scanned::Invalid(1));
        assert_eq!(scan(b"#\r\n"), Scanned::Invalid(1));
        assert_eq!(scan(b"#tt\r\n"), Scanned::Invalid(1));
        assert_eq!(scan(b":\r\n"), Scanned::Invalid(1));
        assert_eq!(scan(b":-\r\n"), Scanned::Invalid(2));
        assert_eq!(scan(b":12x\r\n"), Scanned::Invalid(3));
        assert_eq!(scan(b"(1.5\r\n"), Scanned::Invalid(2));
        assert_eq!(scan(b"=3\r\ntxt\r\n"), Scanned::Invalid(1));
        assert_eq!(scan(b"=5\r\ntxt-x\r\n"), Scanned::Invalid(7));
    }

    #[test]
    fn reply_invalid_lengths() {
        assert_eq!(scan(b"$x\r\n"), Scanned::Invalid(1));
        assert_eq!(scan(b"$\r\n"), Scanned::Invalid(1));
        assert_eq!(scan(b"$-2\r\n"), Scanned::Invalid(2));
        assert_eq!(scan(b"!-1\r\n"), Scanned::Invalid(1));
        assert_eq!(scan(b"%-1\r\n"), Scanned::Invalid(1));
        assert_eq!(scan(b"*1x\r\n"), Scanned::Invalid(2));
        assert_eq!(scan(b"$99999999999999999999\r\n"), Scanned::Invalid(20));
        assert_eq!(scan(b"*99999999999999999999\r\n"), Scanned::Invalid(20));
        // Beyond what memory can hold: refused rather than waited for.
        assert_eq!(scan(b"$18446744073709551615\r\n"), Scanned::Invalid(1));
        // Streamed strings and aggregates.
        assert_eq!(scan(b"$?\r\n;4\r\nHell\r\n;0\r\n"), Scanned::Invalid(1));
        assert_eq!(scan(b"*?\r\n:1\r\n.\r\n"), Scanned::Invalid(1));
    }

    #[test]
    fn reply_unknown_type_byte() {
        assert_eq!(scan(b"X\r\n"), Scanned::Invalid(0));
        assert_eq!(scan(b"\r\n"), Scanned::Invalid(0));
        assert_eq!(scan(b"*2\r\n:1\r\nhello\r\n"), Scanned::Invalid(8));
    }

    #[test]
    fn reply_missing_crlf() {
        assert_eq!(scan(b"+OK\n"), Scanned::Invalid(3));
        assert_eq!(scan(b"+OK\rX"), Scanned::Invalid(4));
        assert_eq!(scan(b"+O\rK\r\n"), Scanned::Invalid(3));
        assert_eq!(scan(b"$3\nabc\r\n"), Scanned::Invalid(2));
        assert_eq!(scan(b"$3\r\nabcd\r\n"), Scanned::Invalid(7));
        assert_eq!(scan(b"$3\r\nabc\n"), Scanned::Invalid(7));
        assert_eq!(scan(b"*1\r\n+OK\rX"), Scanned::Invalid(8));
        assert_eq!(scan(b"*1\n"), Scanned::Invalid(2));
    }

    #[test]
    fn reply_empty_and_null_aggregates() {
        assert_value(b"*0\r\n");
        assert_value(b"*-1\r\n");
        assert_value(b"%0\r\n");
        assert_value(b"~0\r\n");
        assert_eq!(
            complete_reply(b">0\r\n").0,
            Reply {
                len: 4,
                kind: ReplyKind::Push
            }
        );
    }

    #[test]
    fn reply_nested_arrays() {
        let buf = b"*3\r\n*2\r\n:1\r\n*0\r\n*-1\r\n*1\r\n*1\r\n$3\r\nabc\r\n";
        assert_value(buf);
        assert_prefixes_incomplete(buf);
        assert_eq!(
            scan(b"*2\r\n*1\r\n:1\r\n+OK\r\n+next\r\n"),
            Scanned::Complete(value(17), vec![])
        );
    }

    #[test]
    fn reply_exec_holds_one_error_at_element_one() {
        let buf = b"*3\r\n+OK\r\n-ERR bad\r\n:1\r\n";
        let (reply, spans) = complete_reply(buf);
        assert_eq!(reply, value(buf.len()));
        assert_eq!(spans, [span(Some(1), 10..17)]);
        assert_eq!(&buf[10..17], b"ERR bad");
        assert_prefixes_incomplete(buf);
    }

    #[test]
    fn reply_errors_nested_deeper_report_their_top_level_element() {
        let buf = b"*3\r\n:0\r\n*2\r\n+a\r\n*1\r\n-E1\r\n!2\r\nE2\r\n";
        let (reply, spans) = complete_reply(buf);
        assert_eq!(reply, value(buf.len()));
        assert_eq!(spans, [span(Some(1), 21..23), span(Some(2), 29..31)]);
        assert_eq!((&buf[21..23], &buf[29..31]), (&b"E1"[..], &b"E2"[..]));
    }

    #[test]
    fn reply_map_counts_keys_and_values_as_elements() {
        let buf = b"%2\r\n+a\r\n-ERR x\r\n-k\r\n:1\r\n";
        let (reply, spans) = complete_reply(buf);
        assert_eq!(reply, value(buf.len()));
        assert_eq!(spans, [span(Some(1), 9..14), span(Some(2), 17..18)]);
        assert_eq!(&buf[17..18], b"k");
        assert_eq!(&buf[9..14], b"ERR x");
    }

    #[test]
    fn reply_set_of_values() {
        assert_value(b"~3\r\n+orange\r\n+apple\r\n:1\r\n");
    }

    #[test]
    fn reply_attribute_before_a_value_is_one_reply() {
        let buf = b"|1\r\n+key-popularity\r\n-ERR inside attribute\r\n+OK\r\n";
        assert_value(buf);
        assert_prefixes_incomplete(buf);
        assert_value(b"|0\r\n:1\r\n");
        assert_value(b"|1\r\n+a\r\n|1\r\n+b\r\n+c\r\n%1\r\n+d\r\n-E\r\n+value\r\n");
    }

    #[test]
    fn reply_attribute_before_an_error_is_an_error_reply() {
        let buf = b"|1\r\n+k\r\n+v\r\n-ERR x\r\n";
        let (reply, spans) = complete_reply(buf);
        assert_eq!(reply.kind, ReplyKind::Error);
        assert_eq!(spans, [span(None, 13..18)]);
        assert_eq!(&buf[13..18], b"ERR x");
    }

    #[test]
    fn reply_attribute_inside_an_array_takes_no_element_slot() {
        let buf = b"*2\r\n|1\r\n+k\r\n-E1\r\n-E2\r\n:1\r\n";
        let (reply, spans) = complete_reply(buf);
        assert_eq!(reply, value(buf.len()));
        assert_eq!(spans, [span(Some(0), 18..20)]);
        assert_eq!(&buf[18..20], b"E2");
    }

    #[test]
    fn reply_push_at_top_level_reports_no_errors() {
        let buf = b">3\r\n$7\r\nmessage\r\n-ERR x\r\n*1\r\n-ERR y\r\n";
        let (reply, spans) = complete_reply(buf);
        assert_eq!(reply.kind, ReplyKind::Push);
        assert_eq!(spans, []);
        assert_prefixes_incomplete(buf);
    }

    #[test]
    fn reply_push_nested_counts_like_an_array_and_hides_its_errors() {
        let buf = b"*2\r\n>1\r\n-E\r\n-F\r\n";
        let (reply, spans) = complete_reply(buf);
        assert_eq!(reply, value(buf.len()));
        assert_eq!(spans, [span(Some(1), 13..14)]);
        assert_eq!(&buf[13..14], b"F");
    }

    #[test]
    fn reply_errors_are_kept_on_incomplete_and_invalid() {
        assert_eq!(scan(b"*2\r\n-ERR\r\n"), Scanned::Incomplete);
        assert_eq!(scan(b"*2\r\n-ERR\r\nX"), Scanned::Invalid(10));
        assert_eq!(scan(b"-ERR"), Scanned::Incomplete);
    }

    #[test]
    fn reply_deep_nesting_uses_no_recursion() {
        let depth = 1_000_000;
        let mut buf = b"*1\r\n".repeat(depth);
        assert_eq!(scan(&buf), Scanned::Incomplete);
        buf.extend_from_slice(b"-ERR deep\r\n");
        let (reply, spans) = complete_reply(&buf);
        assert_eq!(reply, value(buf.len()));
        assert_eq!(spans, [span(Some(0), depth * 4 + 1..depth * 4 + 9)]);
    }

    #[test]
    fn reply_empty_buffer_is_incomplete() {
        assert_eq!(scan(b""), Scanned::Incomplete);
    }

    #[test]
    fn protocol_error_message_is_its_reason() {
        let error = ProtocolError {
            offset: 4,
            reason: "unknown reply type byte",
        };
        assert_eq!(error.to_string(), "unknown reply type byte");
    }

    #[test]
    fn a_reply_that_is_not_resp_is_shown_escaped() {
        let received = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n";
        let mut errors = Vec::new();
        let ReplyScan::Invalid(error) = scan_reply(received, &mut errors) else {
            panic!("HTTP is not RESP");
        };
        assert_eq!(
            error.describe_with(received),
            "unknown reply type byte; it sent \"HTTP/1.1 400 Bad Request\\r\\nContent-Type: \"...: is this a Redis server?"
        );
        let short = error.describe_with(b"\x16\x03\x01");
        assert_eq!(
            short,
            "unknown reply type byte; it sent \"\\x16\\x03\\x01\": is this a Redis server?"
        );
    }

    // ---- property tests: commands ----

    /// A generated command: `None` is the null array `*-1`.
    type Command = Option<Vec<Vec<u8>>>;

    struct EncodedCommand {
        bytes: Vec<u8>,
        frame: CommandFrame,
    }

    fn encode_command(command: &Command) -> EncodedCommand {
        let Some(args) = command else {
            return EncodedCommand {
                bytes: b"*-1\r\n".to_vec(),
                frame: CommandFrame {
                    len: 5,
                    arg_count: 0,
                    head: [0..0, 0..0, 0..0],
                },
            };
        };
        let mut bytes = format!("*{}\r\n", args.len()).into_bytes();
        let mut head = [0..0, 0..0, 0..0];
        for (index, arg) in args.iter().enumerate() {
            bytes.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            if let Some(slot) = head.get_mut(index) {
                *slot = bytes.len()..bytes.len() + arg.len();
            }
            bytes.extend_from_slice(arg);
            bytes.extend_from_slice(b"\r\n");
        }
        let frame = CommandFrame {
            len: bytes.len(),
            arg_count: args.len(),
            head,
        };
        EncodedCommand { bytes, frame }
    }

    fn command_strategy() -> impl Strategy<Value = Command> {
        let arg = prop_oneof![
            4 => prop::collection::vec(any::<u8>(), 0..12),
            1 => prop::collection::vec(any::<u8>(), 0..300),
        ];
        prop_oneof![
            8 => prop::collection::vec(arg, 0..6).prop_map(Some),
            1 => Just(None),
        ]
    }

    /// Checks the invariants that hold for any input.
    fn check_command_invariants(buf: &[u8]) {
        if let CommandScan::Complete(frame) = scan_command(buf) {
            assert!(frame.len > 0 && frame.len <= buf.len());
            for range in &frame.head {
                assert!(range.start <= range.end && range.end <= frame.len);
            }
        }
    }

    // ---- property tests: replies ----

    #[derive(Debug, Clone)]
    enum Resp {
        Simple(Vec<u8>),
        Error(Vec<u8>),
        Integer(i64),
        Bulk(Vec<u8>),
        NullBulk,
        NullArray,
        Null,
        Boolean(bool),
        Double(String),
        BigNumber(String),
        Verbatim(Vec<u8>),
        BlobError(Vec<u8>),
        Array(Vec<Resp>),
        Map(Vec<(Resp, Resp)>),
        Set(Vec<Resp>),
        Push(Vec<Resp>),
        Attributed(Vec<(Resp, Resp)>, Box<Resp>),
    }

    /// Where the errors met while encoding are reported.
    #[derive(Clone, Copy)]
    enum Report {
        Nowhere,
        TopLevel,
        Element(usize),
    }

    struct EncodedReply {
        bytes: Vec<u8>,
        reply: Reply,
        errors: Vec<ErrorSpan>,
    }

    fn encode_reply(value: &Resp) -> EncodedReply {
        let mut bytes = Vec::new();
        let mut errors = Vec::new();
        let kind = encode_top_level(value, &mut bytes, &mut errors);
        let reply = Reply {
            len: bytes.len(),
            kind,
        };
        EncodedReply {
            bytes,
            reply,
            errors,
        }
    }

    fn encode_top_level(value: &Resp, out: &mut Vec<u8>, errors: &mut Vec<ErrorSpan>) -> ReplyKind {
        match value {
            Resp::Error(_) | Resp::BlobError(_) => {
                encode(value, out, Report::TopLevel, errors);
                ReplyKind::Error
            }
            Resp::Push(_) => {
                encode(value, out, Report::Nowhere, errors);
                ReplyKind::Push
            }
            Resp::Attributed(attributes, inner) => {
                encode_entries(b'|', attributes, out, |_| Report::Nowhere, errors);
                encode_top_level(inner, out, errors)
            }
            Resp::Array(items) | Resp::Set(items) => {
                let type_byte = if matches!(value, Resp::Array(_)) {
                    b'*'
                } else {
                    b'~'
                };
                out.extend_from_slice(
                    format!("{}{}\r\n", type_byte as char, items.len()).as_bytes(),
                );
                for (index, item) in items.iter().enumerate() {
                    encode(item, out, Report::Element(index), errors);
                }
                ReplyKind::Value
            }
            Resp::Map(entries) => {
                encode_entries(b'%', entries, out, Report::Element, errors);
                ReplyKind::Value
            }
            _ => {
                encode(value, out, Report::Nowhere, errors);
                ReplyKind::Value
            }
        }
    }

    /// Encodes a map or attribute; `report` gets each key's or value's
    /// position among the elements.
    fn encode_entries(
        type_byte: u8,
        entries: &[(Resp, Resp)],
        out: &mut Vec<u8>,
        report: impl Fn(usize) -> Report,
        errors: &mut Vec<ErrorSpan>,
    ) {
        out.extend_from_slice(format!("{}{}\r\n", type_byte as char, entries.len()).as_bytes());
        for (index, (key, value)) in entries.iter().enumerate() {
            encode(key, out, report(2 * index), errors);
            encode(value, out, report(2 * index + 1), errors);
        }
    }

    fn encode(value: &Resp, out: &mut Vec<u8>, report: Report, errors: &mut Vec<ErrorSpan>) {
        let line = |out: &mut Vec<u8>, type_byte: u8, text: &[u8]| {
            out.push(type_byte);
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        };
        let bulk = |out: &mut Vec<u8>, type_byte: u8, data: &[u8]| -> Range<usize> {
            out.extend_from_slice(format!("{}{}\r\n", type_byte as char, data.len()).as_bytes());
            let start = out.len();
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
            start..start + data.len()
        };
        let mut record = |message: Range<usize>| match report {
            Report::Nowhere => {}
            Report::TopLevel => errors.push(span(None, message)),
            Report::Element(index) => errors.push(span(Some(index), message)),
        };
        match value {
            Resp::Simple(text) => line(out, b'+', text),
            Resp::Error(text) => {
                let start = out.len() + 1;
                line(out, b'-', text);
                record(start..start + text.len());
            }
            Resp::Integer(number) => line(out, b':', number.to_string().as_bytes()),
            Resp::Bulk(data) => {
                bulk(out, b'$', data);
            }
            Resp::NullBulk => out.extend_from_slice(b"$-1\r\n"),
            Resp::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Resp::Null => out.extend_from_slice(b"_\r\n"),
            Resp::Boolean(true) => out.extend_from_slice(b"#t\r\n"),
            Resp::Boolean(false) => out.extend_from_slice(b"#f\r\n"),
            Resp::Double(text) => line(out, b',', text.as_bytes()),
            Resp::BigNumber(text) => line(out, b'(', text.as_bytes()),
            Resp::Verbatim(data) => {
                bulk(out, b'=', &[b"txt:", &data[..]].concat());
            }
            Resp::BlobError(data) => {
                let message = bulk(out, b'!', data);
                record(message);
            }
            Resp::Array(items) | Resp::Set(items) | Resp::Push(items) => {
                let (type_byte, report) = match value {
                    Resp::Array(_) => ('*', report),
                    Resp::Set(_) => ('~', report),
                    _ => ('>', Report::Nowhere),
                };
                out.extend_from_slice(format!("{type_byte}{}\r\n", items.len()).as_bytes());
                for item in items {
                    encode(item, out, report, errors);
                }
            }
            Resp::Map(entries) => encode_entries(b'%', entries, out, |_| report, errors),
            Resp::Attributed(attributes, inner) => {
                encode_entries(b'|', attributes, out, |_| Report::Nowhere, errors);
                encode(inner, out, report, errors);
            }
        }
    }

    fn line_text() -> impl Strategy<Value = Vec<u8>> {
        let byte = any::<u8>().prop_map(|byte| match byte {
            b'\r' | b'\n' => b' ',
            other => other,
        });
        prop::collection::vec(byte, 0..10)
    }

    fn resp_strategy() -> impl Strategy<Value = Resp> {
        let data = || prop::collection::vec(any::<u8>(), 0..10);
        let leaf = prop_oneof![
            2 => line_text().prop_map(Resp::Simple),
            3 => line_text().prop_map(Resp::Error),
            2 => any::<i64>().prop_map(Resp::Integer),
            2 => data().prop_map(Resp::Bulk),
            1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Resp::Bulk),
            1 => Just(Resp::NullBulk),
            1 => Just(Resp::NullArray),
            1 => Just(Resp::Null),
            1 => any::<bool>().prop_map(Resp::Boolean),
            1 => prop_oneof![
                any::<f64>().prop_map(|number| number.to_string()),
                Just("inf".to_string()),
                Just("-inf".to_string()),
                Just("nan".to_string()),
            ]
            .prop_map(Resp::Double),
            1 => "-?[0-9]{1,40}".prop_map(Resp::BigNumber),
            1 => data().prop_map(Resp::Verbatim),
            2 => data().prop_map(Resp::BlobError),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            let items = prop::collection::vec(inner.clone(), 0..5);
            let entries = prop::collection::vec((inner.clone(), inner.clone()), 0..3);
            prop_oneof![
                3 => items.clone().prop_map(Resp::Array),
                2 => entries.clone().prop_map(Resp::Map),
                1 => items.clone().prop_map(Resp::Set),
                1 => items.prop_map(Resp::Push),
                1 => (entries, inner).prop_map(|(attributes, value)| {
                    Resp::Attributed(attributes, Box::new(value))
                }),
            ]
        })
    }

    /// Checks the invariants that hold for any input.
    fn check_reply_invariants(buf: &[u8]) {
        let mut errors = Vec::new();
        match scan_reply(buf, &mut errors) {
            ReplyScan::Complete(reply) => {
                assert!(reply.len > 0 && reply.len <= buf.len());
                for error in &errors {
                    assert!(error.message.start <= error.message.end);
                    assert!(error.message.end <= reply.len);
                }
            }
            ReplyScan::Incomplete => assert!(errors.is_empty()),
            ReplyScan::Invalid(error) => {
                assert!(errors.is_empty());
                assert!(error.offset <= buf.len());
            }
        }
    }

    /// Bytes rich in RESP's own characters, so that random input gets past
    /// the first checks more often than uniform bytes do.
    fn resp_like_bytes() -> impl Strategy<Value = Vec<u8>> {
        let alphabet: &[u8] = b"*$+-:_#,(=!%~|>?\r\n\r\n0123456789tfx";
        prop::collection::vec(prop::sample::select(alphabet), 0..200)
    }

    /// A few overwrites, insertions and deletions at random places.
    fn mutate(mut bytes: Vec<u8>, edits: &[(prop::sample::Index, u8, u8)]) -> Vec<u8> {
        for (place, byte, operation) in edits {
            if bytes.is_empty() {
                bytes.push(*byte);
                continue;
            }
            let at = place.index(bytes.len());
            match operation % 3 {
                0 => bytes[at] = *byte,
                1 => bytes.insert(at, *byte),
                _ => {
                    bytes.remove(at);
                }
            }
        }
        bytes
    }

    fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8, u8)>> {
        let byte = prop_oneof![any::<u8>(), prop::sample::select(&b"*$\r\n-019"[..])];
        prop::collection::vec((any::<prop::sample::Index>(), byte, any::<u8>()), 1..4)
    }

    proptest! {
        #[test]
        fn commands_split_at_every_byte_scan_back_exactly(
            commands in prop::collection::vec(command_strategy(), 1..5)
        ) {
            let encoded: Vec<EncodedCommand> = commands.iter().map(encode_command).collect();
            let stream: Vec<u8> = encoded.iter().flat_map(|command| command.bytes.clone()).collect();
            let mut start = 0;
            for command in &encoded {
                let end = start + command.frame.len;
                for split in start..end {
                    prop_assert_eq!(frame(&stream[start..split]), Framed::Incomplete, "split {}", split);
                }
                prop_assert_eq!(frame(&stream[start..end]), Framed::Complete(command.frame.clone()));
                prop_assert_eq!(frame(&stream[start..]), Framed::Complete(command.frame.clone()));
                start = end;
            }
            prop_assert_eq!(start, stream.len());
        }

        #[test]
        fn replies_split_at_every_byte_scan_back_exactly(
            values in prop::collection::vec(resp_strategy(), 1..5)
        ) {
            let encoded: Vec<EncodedReply> = values.iter().map(encode_reply).collect();
            let stream: Vec<u8> = encoded.iter().flat_map(|reply| reply.bytes.clone()).collect();
            let mut start = 0;
            for reply in &encoded {
                let end = start + reply.reply.len;
                for split in start..end {
                    prop_assert_eq!(scan(&stream[start..split]), Scanned::Incomplete, "split {}", split);
                }
                let expected = Scanned::Complete(reply.reply, reply.errors.clone());
                prop_assert_eq!(scan(&stream[start..end]), expected);
                let expected = Scanned::Complete(reply.reply, reply.errors.clone());
                prop_assert_eq!(scan(&stream[start..]), expected);
                start = end;
            }
            prop_assert_eq!(start, stream.len());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
            check_command_invariants(&bytes);
            check_reply_invariants(&bytes);
            let mut framed = vec![b'*'];
            framed.extend_from_slice(&bytes);
            check_command_invariants(&framed);
        }

        #[test]
        fn resp_like_bytes_never_panic(bytes in resp_like_bytes()) {
            check_command_invariants(&bytes);
            check_reply_invariants(&bytes);
            for start in 0..bytes.len() {
                check_reply_invariants(&bytes[start..]);
            }
        }

        #[test]
        fn mutated_commands_never_panic(
            commands in prop::collection::vec(command_strategy(), 1..3),
            edits in edits(),
        ) {
            let stream: Vec<u8> = commands.iter().flat_map(|command| encode_command(command).bytes).collect();
            let mutated = mutate(stream, &edits);
            for end in 0..=mutated.len() {
                check_command_invariants(&mutated[..end]);
            }
        }

        #[test]
        fn command_args_read_back_what_was_encoded(
            args in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..6),
            edits in edits(),
        ) {
            let bytes = encode_command(&Some(args.clone())).bytes;
            let expected: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(&command_args(&bytes), &expected);
            let two = name_and_first_arg(&bytes).map(|(name, first)| {
                std::iter::once(name).chain(first).collect::<Vec<_>>()
            });
            prop_assert_eq!(&two.unwrap_or_default()[..], &expected[..2.min(expected.len())]);
            // Damaged: never a panic, and the first two arguments are
            // always the start of all of them.
            let mutated = mutate(bytes, &edits);
            let all = command_args(&mutated);
            let two = name_and_first_arg(&mutated).map(|(name, first)| {
                std::iter::once(name).chain(first).collect::<Vec<_>>()
            });
            prop_assert_eq!(&two.unwrap_or_default()[..], &all[..2.min(all.len())]);
        }

        #[test]
        fn mutated_replies_never_panic(value in resp_strategy(), edits in edits()) {
            let mutated = mutate(encode_reply(&value).bytes, &edits);
            for end in 0..=mutated.len() {
                check_reply_invariants(&mutated[..end]);
            }
        }
    }

    #[test]
    fn command_args_lists_every_argument() {
        let frame = b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\na\r\nb\r\n";
        assert_eq!(command_args(frame), vec![&b"SET"[..], b"", b"a\r\nb"]);
        assert_eq!(command_args(b"*2\r\n$3\r\nGE"), Vec::<&[u8]>::new());
    }
}
