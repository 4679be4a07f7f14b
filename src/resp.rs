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

use std::fmt;
use std::ops::Range;

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
    /// The buffer ends inside the frame: read more and scan again.
    Incomplete,
    Invalid(FrameError),
}

/// Scans one RESP command (an array of bulk strings) at the start of `buf`,
/// which must start with `*`.
pub fn scan_command(buf: &[u8]) -> CommandScan {
    todo!()
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
    todo!()
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}
