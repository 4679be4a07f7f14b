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
//! Invariants: every command of a batch comes from one source and they are
//! consecutive there, so command `i` is the source's command
//! `first_command_no + i`; `commands[i].end` never decreases and the last one
//! equals `bytes.len()`; a command's bytes are `bytes[previous end..end]`; a
//! rejected input line has an empty byte range. A `Command` is kept small
//! (24 bytes): a full window holds a hundred thousand of them.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use crate::input::quoting::SplitError;

/// Why an input command was refused before sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The text line cannot be split.
    Split(SplitError),
    /// `SUBSCRIBE` and friends: replies would stop being one per command.
    SubscriberMode,
    /// `MONITOR`: the connection would become a feed.
    Monitor,
    /// `CLIENT REPLY` queued in a transaction would change replies at `EXEC`.
    ClientReplyInMulti,
    /// A cluster has only database 0.
    SelectInCluster,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Split(error) => write!(f, "{error}"),
            Rejection::SubscriberMode => f.write_str(
                "subscribe commands switch the connection to subscriber mode and cannot be loaded",
            ),
            Rejection::Monitor => {
                f.write_str("MONITOR turns the connection into a feed and cannot be loaded")
            }
            Rejection::ClientReplyInMulti => {
                f.write_str("CLIENT REPLY inside MULTI is not supported")
            }
            Rejection::SelectInCluster => f.write_str("SELECT is not allowed in cluster mode"),
        }
    }
}

/// What the reply reader is to expect for a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The server answers it with one reply.
    Reply,
    /// The server sends no reply (`CLIENT REPLY OFF|SKIP` in effect, or the
    /// `CLIENT REPLY OFF|SKIP` command itself).
    NoReply,
    /// Added by pipeload after the input so that commands sent without
    /// replies are confirmed too; its reply is not counted.
    Marker,
    /// The input line was refused before sending.
    Rejected(Rejection),
}

/// What a command does to the connection, where that matters to replies,
/// acknowledgement or a reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Plain,
    /// Opens a transaction: nothing in it counts as acknowledged until the
    /// `EXEC` (or `DISCARD`) reply, since a lost connection discards it.
    Multi,
    /// `EXEC` or `DISCARD`.
    EndMulti,
    /// `SELECT db`, `AUTH …` and `HELLO …`: they set up the connection, so
    /// the last of each that succeeded is sent again after a reconnect.
    Select,
    Auth,
    Hello,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    /// End of the command's bytes in `Batch::bytes`.
    pub end: usize,
    /// Line of the command's first byte in its source, from 1.
    pub line_no: u64,
    pub expect: Expect,
    pub kind: CommandKind,
    /// Whether the command was a RESP array in the input.
    pub is_resp: bool,
}

#[derive(Debug, Default)]
pub struct Batch {
    /// Index of the source (file argument) every command came from.
    pub source: usize,
    /// Commands in the sources before this one: command number `n` of this
    /// source is command `seq_offset + n` of the whole input.
    pub seq_offset: u64,
    /// Ordinal in the source of the first command, from 1.
    pub first_command_no: u64,
    /// When not empty (batches split by the cluster router), the ordinal in
    /// the source of each command, which are then not consecutive.
    pub command_nos: Vec<u64>,
    /// When not empty (batches split by the cluster router), the hash slot
    /// each command was routed by, if any.
    pub slots: Vec<Option<u16>>,
    /// Encoded commands, back to back.
    pub bytes: Vec<u8>,
    pub commands: Vec<Command>,
    /// With `--errors-file` only: each command's bytes as they were in the
    /// input (a text line without its line end), back to back, command `i`
    /// ending at `original_ends[i]`.
    pub originals: Vec<u8>,
    pub original_ends: Vec<usize>,
}

impl Batch {
    pub fn new(
        source: usize,
        seq_offset: u64,
        first_command_no: u64,
        byte_capacity: usize,
    ) -> Self {
        Batch {
            source,
            seq_offset,
            first_command_no,
            bytes: Vec::with_capacity(byte_capacity),
            ..Batch::default()
        }
    }

    /// Records the command whose bytes were just appended to `bytes`.
    pub fn push_command(&mut self, line_no: u64, is_resp: bool, expect: Expect, kind: CommandKind) {
        self.commands.push(Command {
            end: self.bytes.len(),
            line_no,
            expect,
            kind,
            is_resp,
        });
    }

    /// Appends command `index` of `from`, keeping its input position (the
    /// cluster router splits batches, redirects resend single commands);
    /// `expect` overrides what the reply reader is to expect.
    /// `slot`: the hash slot it is routed by (cluster mode).
    pub fn push_copy(
        &mut self,
        from: &Batch,
        index: usize,
        expect: Option<Expect>,
        slot: Option<u16>,
    ) {
        let command = from.commands[index];
        let expect = expect.unwrap_or(command.expect);
        if !matches!(expect, Expect::Rejected(_)) {
            self.bytes
                .extend_from_slice(&from.bytes[from.command_range(index)]);
        }
        self.push_command(command.line_no, command.is_resp, expect, command.kind);
        self.command_nos.push(from.command_no(index));
        self.slots.push(slot);
        if let Some(original) = from.original(index) {
            self.push_original(original);
        }
    }

    /// Keeps the input bytes of the command just pushed (`--errors-file`).
    pub fn push_original(&mut self, original: &[u8]) {
        self.originals.extend_from_slice(original);
        self.original_ends.push(self.originals.len());
    }

    /// Keeps the encoded bytes from `start` on, a RESP frame passed through
    /// unchanged, as the input bytes of the next command.
    pub fn keep_original_from(&mut self, start: usize) {
        self.originals.extend_from_slice(&self.bytes[start..]);
        self.original_ends.push(self.originals.len());
    }

    /// The hash slot command `index` was routed by, in cluster mode.
    pub fn slot(&self, index: usize) -> Option<u16> {
        self.slots.get(index).copied().flatten()
    }

    /// The input bytes of command `index`, when they were kept.
    pub fn original(&self, index: usize) -> Option<&[u8]> {
        let end = *self.original_ends.get(index)?;
        let start = match index {
            0 => 0,
            _ => self.original_ends[index - 1],
        };
        self.originals.get(start..end)
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

    /// Ordinal of command `index` in its source, from 1.
    pub fn command_no(&self, index: usize) -> u64 {
        match self.command_nos.get(index) {
            Some(command_no) => *command_no,
            None => self.first_command_no + index as u64,
        }
    }

    /// Ordinal of command `index` in the whole input, from 1, counting
    /// skipped commands too: what `--skip` and `acknowledged` count.
    pub fn seq(&self, index: usize) -> u64 {
        self.seq_offset + self.command_no(index)
    }

    /// Where command `index` came from, as messages show it: `data.txt:7`,
    /// `line 7 (command 3)`, `line 9 (EXEC element 2)`. `source_names` is
    /// indexed by source, `None` for stdin.
    pub fn position(
        &self,
        index: usize,
        source_names: &[Option<String>],
        exec_element: Option<usize>,
    ) -> String {
        let command = &self.commands[index];
        let name = source_names.get(self.source).and_then(Option::as_deref);
        let mut position = describe_line(name, command.line_no);
        let mut details = Vec::new();
        if command.is_resp {
            details.push(format!("command {}", self.command_no(index)));
        }
        if let Some(element) = exec_element {
            details.push(format!("EXEC element {}", element + 1));
        }
        if !details.is_empty() {
            position.push_str(&format!(" ({})", details.join(", ")));
        }
        position
    }
}

/// `line 7` for stdin, `data.txt:7` for a file.
pub fn describe_line(source_name: Option<&str>, line_no: u64) -> String {
    match source_name {
        Some(name) => format!("{name}:{line_no}"),
        None => format!("line {line_no}"),
    }
}

/// A batch in flight, from command `first` on (earlier ones were answered
/// on a connection that has since been lost, or before a redirect).
#[derive(Debug, Clone)]
pub struct InFlight {
    pub batch: Arc<Batch>,
    pub first: usize,
}

impl InFlight {
    pub fn whole(batch: Arc<Batch>) -> Self {
        InFlight { batch, first: 0 }
    }

    /// The bytes still to send: those of commands `first..`.
    pub fn bytes(&self) -> &[u8] {
        match self.batch.commands.get(self.first) {
            Some(_) => &self.batch.bytes[self.batch.command_range(self.first).start..],
            None => &[],
        }
    }

    pub fn command_count(&self) -> usize {
        self.batch.commands.len().saturating_sub(self.first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_stays_small() {
        assert!(std::mem::size_of::<Command>() <= 24);
    }

    #[test]
    fn positions_name_source_line_and_command() {
        let mut batch = Batch::new(1, 100, 41, 0);
        batch.bytes.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        batch.push_command(7, true, Expect::Reply, CommandKind::Plain);
        batch.push_command(9, false, Expect::Reply, CommandKind::Plain);
        let names = [None, Some("data.resp".to_owned())];
        assert_eq!(batch.position(0, &names, None), "data.resp:7 (command 41)");
        assert_eq!(
            batch.position(0, &names, Some(1)),
            "data.resp:7 (command 41, EXEC element 2)"
        );
        assert_eq!(batch.position(1, &names, None), "data.resp:9");
        assert_eq!(batch.seq(1), 142);
        assert_eq!(batch.command_range(0), 0..14);
        assert_eq!(batch.command_range(1), 14..14);
        assert_eq!(describe_line(None, 3), "line 3");
        let resend = InFlight {
            batch: Arc::new(batch),
            first: 1,
        };
        assert_eq!(resend.bytes(), b"");
        assert_eq!(resend.command_count(), 1);
    }
}
