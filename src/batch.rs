//! `Batch`: the unit that crosses threads. Tens of KiB of encoded commands,
//! back to back, plus for each command where it came from and whether the
//! server will answer it.
//!
//! Place in the data flow: input fills a batch and sends it on the bounded
//! batch channel; the writer registers it in the window and writes its bytes;
//! the reply reader matches replies to its commands in order. The bytes stay
//! with the batch until every command is answered, so a command can be sent
//! again (redirects, retry) without going back to the input.
//!
//! Invariants: `commands[i].end` never decreases and the last one equals
//! `bytes.len()`; a command's bytes are `bytes[previous end..end]`; a rejected
//! input line has an empty byte range.

use std::ops::Range;

/// Where a command came from, for error messages and `--skip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Line of the command's first byte in its source, from 1.
    pub line_no: u64,
    /// Ordinal of the command in its source, from 1.
    pub command_no: u64,
    /// Offset of the command's first byte in its source.
    pub byte_offset: u64,
    /// Whether the command was a RESP array in the input.
    pub is_resp: bool,
}

/// What the reply reader is to expect for a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The server answers it with one reply.
    Reply,
    /// The server sends no reply (`CLIENT REPLY OFF|SKIP` in effect, or the
    /// `CLIENT REPLY OFF|SKIP` command itself).
    NoReply,
    /// Added by pipeload after the input so that commands sent without
    /// replies are confirmed too; its reply is not counted.
    Marker,
    /// The input line was refused before sending; the text says why.
    Rejected(Box<str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// End of the command's bytes in `Batch::bytes`.
    pub end: usize,
    pub origin: Origin,
    pub expect: Expect,
}

#[derive(Debug, Default)]
pub struct Batch {
    /// Index of the source (file argument) every command came from.
    pub source: usize,
    /// Encoded commands, back to back.
    pub bytes: Vec<u8>,
    pub commands: Vec<Command>,
}

impl Batch {
    pub fn new(source: usize, byte_capacity: usize) -> Self {
        Batch {
            source,
            bytes: Vec::with_capacity(byte_capacity),
            commands: Vec::new(),
        }
    }

    /// Records the command whose bytes were just appended to `bytes`.
    pub fn push_command(&mut self, origin: Origin, expect: Expect) {
        self.commands.push(Command {
            end: self.bytes.len(),
            origin,
            expect,
        });
    }

    /// Byte range of command `index` in `bytes`.
    pub fn command_range(&self, index: usize) -> Range<usize> {
        let start = match index {
            0 => 0,
            _ => self.commands[index - 1].end,
        };
        start..self.commands[index].end
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}
