//! Text input: one command line → its arguments, split with the server's own
//! inline rules (redis `sds.c` `sdssplitargs`), so a line means to pipeload
//! exactly what it means to `redis-cli --pipe`.
//!
//! Place in the data flow: input finds a line, `split_line` turns it into
//! `Args`, encode turns `Args` into RESP. `Args` is reused from line to line so
//! the hot path allocates nothing once it has warmed up.

use std::fmt;

/// The arguments of one line: all argument bytes back to back in `bytes`,
/// argument `i` ending at `ends[i]`. Cleared, not reallocated, per line.
#[derive(Debug, Default, Clone)]
pub struct Args {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Args {
    pub fn clear(&mut self) {
        todo!()
    }
    pub fn len(&self) -> usize {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        todo!()
    }
    /// Argument `index`; panics if out of range, like slice indexing.
    pub fn get(&self, index: usize) -> &[u8] {
        todo!()
    }
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        std::iter::empty()
    }
    /// Appends one argument.
    pub fn push(&mut self, arg: &[u8]) {
        self.bytes.extend_from_slice(arg);
        self.ends.push(self.bytes.len());
    }
    /// Sum of the argument lengths.
    pub fn total_len(&self) -> usize {
        todo!()
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
        todo!()
    }
}

/// Splits one line (without its LF; a trailing CR is whitespace) into `args`,
/// which is cleared first. A blank line gives zero arguments.
pub fn split_line(line: &[u8], args: &mut Args) -> Result<(), SplitError> {
    todo!()
}
