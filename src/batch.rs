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
//! Invariants: every command of a batch comes from one input batch (of one
//! source, whose commands are consecutive there): all of them as the input
//! packed them, command `i` being the source's command
//! `first_command_no + i`, or those a route picked out of it for one
//! connection (`Members::Routed`: the cluster router's share of an input
//! batch for one primary, a redirect's resend), each knowing which it is.
//! `commands[i].end` never decreases and the last one equals `bytes.len()`;
//! a command's bytes are `bytes[previous end..end]`; a rejected input line
//! has an empty byte range. A `Command` is kept small (24 bytes), and so is
//! a `RoutedCommand` (8): a full window holds a hundred thousand of them.
//!
//! Each command also carries its `ReplyClass`, the key under which the
//! window estimates how big its reply is (see `window`): a hash of its name,
//! computed once here, where its bytes were just appended.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use crate::encode::command_bytes;
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
    /// `CLIENT REPLY SKIP` in a cluster load: it would skip the reply of
    /// whatever its node's connection gets next, not the input's next
    /// command.
    ClientReplySkipInCluster,
    /// A CSV, TSV or JSON Lines record the templates cannot use; the reason
    /// is the batch's (`Batch::refusal_reason`).
    Record,
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
            Rejection::ClientReplySkipInCluster => {
                f.write_str("CLIENT REPLY SKIP is not supported in cluster mode")
            }
            Rejection::Record => f.write_str("the record cannot be used"),
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
    /// Which reply-size estimate the window counts it by.
    pub reply_class: ReplyClass,
    /// Of a record's commands, when there are several templates: which
    /// template made it, from 1 (0: any other command).
    pub template: u8,
}

impl Command {
    /// One of pipeload's own commands (a marker, a confirmation, `ASKING`),
    /// not the input's: they have line 0, input lines start at 1.
    pub fn is_inserted(&self) -> bool {
        self.line_no == 0
    }
}

/// The key of a reply-size estimate: commands with one name (`GET`,
/// `HGETALL`…) usually get replies of one size, whatever their keys.
/// `ReplyClass::NONE` is for a command with no reply due (not sent, or sent
/// while replies are off), which owes no reply bytes.
///
/// The name is hashed into 4096 classes rather than kept: two names in one
/// class share a (conservative) estimate; among the commands of
/// `tests::common_commands_have_classes_of_their_own` none do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ReplyClass(u16);

impl ReplyClass {
    /// How many classes there are; `index()` is below it.
    pub const COUNT: usize = 4096;
    pub const NONE: ReplyClass = ReplyClass(0);

    /// The class of an encoded command (`*N\r\n$L\r\nNAME\r\n…`): a hash of
    /// its name with ASCII letters folded to one case. Bytes that are not
    /// such a command get a class too, never a panic.
    #[inline]
    pub fn of_command(encoded: &[u8]) -> ReplyClass {
        let hash = match short_name(encoded) {
            Some((word, len)) => mix_name_word(len as u64, word, len),
            None => hash_name_found(encoded),
        };
        ReplyClass::from_hash(hash)
    }

    /// The class of the commands named `name`, in any case.
    pub fn of_name(name: &[u8]) -> ReplyClass {
        ReplyClass::from_hash(hash_name(name))
    }

    #[inline]
    fn from_hash(hash: u64) -> ReplyClass {
        // The top 12 bits, the best mixed: below COUNT. 0 is NONE's.
        ReplyClass(((hash >> 52) as u16).max(1))
    }

    /// Its position in a table of `COUNT` entries.
    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.0) % Self::COUNT
    }
}

/// Multiplier of the name hash: splitmix64's second. With it, no two of the
/// commands in `tests::common_commands_have_classes_of_their_own` share a
/// class (with some other constants, two of them do).
const NAME_HASH_MULTIPLIER: u64 = 0x94d0_49bb_1331_11eb;

/// `*?\r\n$?\r\n` as a little-endian word, and the mask of its fixed bytes.
const SHORT_HEADER: u64 = u64::from_le_bytes(*b"*\0\r\n$\0\r\n");
const SHORT_HEADER_MASK: u64 = u64::from_le_bytes([0xff, 0, 0xff, 0xff, 0xff, 0, 0xff, 0xff]);

/// Most commands: `*N\r\n$L\r\n` with N in 1..=9 and L in 1..=8, then at
/// least 8 bytes. Their name's first 8 bytes (little endian, with what
/// follows the name) and its length, read without a search.
#[inline]
fn short_name(encoded: &[u8]) -> Option<(u64, usize)> {
    let &[
        h0,
        h1,
        h2,
        h3,
        h4,
        h5,
        h6,
        h7,
        n0,
        n1,
        n2,
        n3,
        n4,
        n5,
        n6,
        n7,
    ] = encoded.first_chunk::<16>()?;
    let header = u64::from_le_bytes([h0, h1, h2, h3, h4, h5, h6, h7]);
    let name_len = h5.wrapping_sub(b'0');
    let short = header & SHORT_HEADER_MASK == SHORT_HEADER
        && h1.wrapping_sub(b'1') < 9
        && name_len.wrapping_sub(1) < 8;
    let word = u64::from_le_bytes([n0, n1, n2, n3, n4, n5, n6, n7]);
    short.then_some((word, usize::from(name_len)))
}

/// The name hash of a command `short_name` does not read.
#[cold]
#[inline(never)]
fn hash_name_found(encoded: &[u8]) -> u64 {
    hash_name(command_name(encoded))
}

/// The name hash: its length, then each 8 bytes of it in turn.
fn hash_name(name: &[u8]) -> u64 {
    name.chunks(8).fold(name.len() as u64, |hash, chunk| {
        let mut bytes = [0; 8];
        bytes[..chunk.len()].copy_from_slice(chunk);
        mix_name_word(hash, u64::from_le_bytes(bytes), chunk.len())
    })
}

/// One step of the name hash: the first `len` bytes of `word` (little
/// endian), case folded; the bytes after them do not count.
#[inline]
fn mix_name_word(hash: u64, word: u64, len: usize) -> u64 {
    let ignored_bits = 64u32.saturating_sub(8 * len.min(8) as u32);
    let kept = u64::MAX.checked_shr(ignored_bits).unwrap_or(0);
    (hash ^ ((word | 0x2020_2020_2020_2020) & kept)).wrapping_mul(NAME_HASH_MULTIPLIER)
}

/// The name of an encoded command: the first bulk string of its array, or
/// nothing when the bytes do not start like one.
pub fn command_name(encoded: &[u8]) -> &[u8] {
    // `*N\r\n`, then `$L\r\n`: find the end of each header line.
    let Some(count_end) = encoded.iter().position(|&byte| byte == b'\n') else {
        return &[];
    };
    let rest = &encoded[count_end + 1..];
    let Some(digits) = rest.strip_prefix(b"$") else {
        return &[];
    };
    let mut length = 0usize;
    let mut digit_count = 0;
    for &byte in digits.iter().take_while(|byte| byte.is_ascii_digit()) {
        length = length
            .saturating_mul(10)
            .saturating_add(usize::from(byte - b'0'));
        digit_count += 1;
    }
    let name_start = digit_count + 2;
    match digits.get(digit_count..name_start) {
        Some(b"\r\n") => digits
            .get(name_start..name_start.saturating_add(length))
            .unwrap_or_default(),
        _ => &[],
    }
}

/// Which commands of an input batch a batch holds.
#[derive(Debug, Default)]
pub enum Members {
    /// All of them, in order: it is the input batch.
    #[default]
    All,
    /// Those a route picked for one connection, the `i`th entry telling
    /// which command `i` is: the per-node commands of a cluster load.
    Routed(Vec<RoutedCommand>),
}

/// A command a route picked out of an input batch: which one, and the hash
/// slot it was routed by (`None`: keyless, or not routed by its key).
#[derive(Debug, Clone, Copy)]
pub struct RoutedCommand {
    /// Its index in the input batch. An input batch holds at most a few
    /// thousand commands, or one transaction: 2^32 commands would need
    /// 96 GiB of `Command`s.
    input_index: u32,
    slot: Option<u16>,
}

#[derive(Debug, Default)]
pub struct Batch {
    /// Index of the source (file argument) every command came from.
    pub source: usize,
    /// Commands in the sources before this one: command number `n` of this
    /// source is command `seq_offset + n` of the whole input.
    pub seq_offset: u64,
    /// Ordinal in the source of the first command of the input batch its
    /// commands come from (this one, unless routed), from 1.
    pub first_command_no: u64,
    /// Which commands of that input batch it holds.
    pub members: Members,
    /// Encoded commands, back to back.
    pub bytes: Vec<u8>,
    pub commands: Vec<Command>,
    /// With `--errors-file` only: each command's bytes as they were in the
    /// input (a text line without its line end), back to back, command `i`
    /// ending at `original_ends[i]`.
    pub originals: Vec<u8>,
    pub original_ends: Vec<usize>,
    /// Why each refused record was refused (`Rejection::Record`), by
    /// command index, in order: rare, so kept aside rather than in every
    /// `Command`.
    pub refusals: Vec<(usize, String)>,
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

    /// An empty batch for commands a route picks out of `from`, or out of
    /// the input batch `from` itself was picked from (`push_copy`).
    pub fn routed_from(from: &Batch) -> Self {
        Batch {
            source: from.source,
            seq_offset: from.seq_offset,
            first_command_no: from.first_command_no,
            members: Members::Routed(Vec::new()),
            ..Batch::default()
        }
    }

    /// `routed_from`, with room for about one `shares`th of `from`'s
    /// commands: a route splitting `from` evenly between `shares` lanes
    /// then seldom grows a batch. At most 1 MiB of bytes each: for an
    /// input batch of one huge command, the lanes that will not get it
    /// reserve little.
    pub fn routed_share(from: &Batch, shares: usize) -> Self {
        const MOST_BYTES_RESERVED: usize = 1024 * 1024;
        let room = |total: usize| {
            let even = total / shares.max(1);
            even + even / 4
        };
        let mut batch = Batch::routed_from(from);
        batch
            .bytes
            .reserve(room(from.bytes.len()).min(MOST_BYTES_RESERVED));
        batch.commands.reserve(room(from.commands.len()));
        batch.members = Members::Routed(Vec::with_capacity(room(from.commands.len())));
        batch
    }

    /// A confirmation for commands sent while `CLIENT REPLY OFF` is in
    /// effect: `CLIENT REPLY ON`, whose reply proves every command before it
    /// ran (a marker: counted as nothing), then `CLIENT REPLY OFF` again
    /// (no reply), both at the input position of the source's command
    /// `command_no`, the last one before them. pipeload's own commands,
    /// like every marker: line 0, an empty original.
    pub fn confirmation(
        source: usize,
        seq_offset: u64,
        command_no: u64,
        keep_originals: bool,
    ) -> Self {
        let mut batch = Batch::new(source, seq_offset, command_no, 0);
        batch.members = Members::Routed(Vec::with_capacity(2));
        for (reply_mode, expect) in [(&b"ON"[..], Expect::Marker), (b"OFF", Expect::NoReply)] {
            batch
                .bytes
                .extend_from_slice(&command_bytes(&[b"CLIENT", b"REPLY", reply_mode]));
            batch.push_command(0, true, expect, CommandKind::Plain);
            if let Members::Routed(routed) = &mut batch.members {
                routed.push(RoutedCommand {
                    input_index: 0,
                    slot: None,
                });
            }
            if keep_originals {
                batch.push_original(b"");
            }
        }
        batch
    }

    /// `CLIENT REPLY ON` as a marker at the input position of command
    /// `index` of `from`: its reply proves every command sent before it ran,
    /// whatever the connection's `CLIENT REPLY` mode (`ON` is answered even
    /// right after `OFF` or `SKIP`).
    pub fn replies_on_marker(from: &Batch, index: usize) -> Self {
        let mut marker = Batch::routed_from(from);
        marker.push_own(&[b"CLIENT", b"REPLY", b"ON"], Expect::Marker, from, index);
        marker
    }

    /// Appends one of pipeload's own commands (a marker, `ASKING`) to a
    /// batch made by `routed_from`, at the input position of command
    /// `index` of `from`: line 0, and an empty original where `from` keeps
    /// originals.
    pub fn push_own(&mut self, args: &[&[u8]], expect: Expect, from: &Batch, index: usize) {
        self.bytes.extend_from_slice(&command_bytes(args));
        self.push_command(0, true, expect, CommandKind::Plain);
        self.routed_as(from, index, None);
        if from.original(index).is_some() {
            self.push_original(b"");
        }
    }

    /// Records the command whose bytes were just appended to `bytes`.
    // Once per input command: inlined into the framers' loops.
    #[inline(always)]
    pub fn push_command(&mut self, line_no: u64, is_resp: bool, expect: Expect, kind: CommandKind) {
        let start = self.commands.last().map_or(0, |previous| previous.end);
        let reply_class = match expect {
            Expect::Reply | Expect::Marker => {
                ReplyClass::of_command(self.bytes.get(start..).unwrap_or_default())
            }
            Expect::NoReply | Expect::Rejected(_) => ReplyClass::NONE,
        };
        self.commands.push(Command {
            end: self.bytes.len(),
            line_no,
            expect,
            kind,
            is_resp,
            reply_class,
            template: 0,
        });
    }

    /// Appends command `index` of `from` to a batch made by `routed_from`,
    /// keeping its input position (the cluster router splits batches,
    /// redirects resend single commands); `expect` overrides what the reply
    /// reader is to expect. `slot`: the hash slot it is routed by.
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
        if expect == command.expect {
            // The same bytes expecting the same: the same reply class.
            self.commands.push(Command {
                end: self.bytes.len(),
                ..command
            });
        } else {
            self.push_command(command.line_no, command.is_resp, expect, command.kind);
            if let Some(pushed) = self.commands.last_mut() {
                pushed.template = command.template;
            }
        }
        self.routed_as(from, index, slot);
        if let Some(original) = from.original(index) {
            self.push_original(original);
        }
        if let Some((_, reason)) = from.refusals.iter().find(|(at, _)| *at == index) {
            let pushed = self.commands.len() - 1;
            self.refusals.push((pushed, reason.clone()));
        }
    }

    /// Keeps why the next command pushed, a refused record, was refused.
    pub fn note_refusal(&mut self, reason: String) {
        self.refusals.push((self.commands.len(), reason));
    }

    /// Why refused command `index` was refused, as messages show it.
    pub fn refusal_reason(&self, index: usize, why: Rejection) -> String {
        match self.refusals.iter().find(|(at, _)| *at == index) {
            Some((_, reason)) => reason.clone(),
            None => why.to_string(),
        }
    }

    /// Records that the command just pushed to a batch made by
    /// `routed_from` stands at the input position of command `index` of
    /// `from`, routed by `slot`.
    pub fn routed_as(&mut self, from: &Batch, index: usize, slot: Option<u16>) {
        debug_assert_eq!(self.first_command_no, from.first_command_no);
        let input_index = match &from.members {
            Members::All => u32::try_from(index).unwrap_or(u32::MAX),
            Members::Routed(routed) => routed.get(index).map_or(0, |routed| routed.input_index),
        };
        debug_assert!(matches!(self.members, Members::Routed(_)));
        if let Members::Routed(routed) = &mut self.members {
            routed.push(RoutedCommand { input_index, slot });
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

    /// The hash slot command `index` was routed by, if a route picked it.
    pub fn slot(&self, index: usize) -> Option<u16> {
        match &self.members {
            Members::All => None,
            Members::Routed(routed) => routed.get(index).and_then(|routed| routed.slot),
        }
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

    /// The name of command `index` (its first argument), as encoded.
    pub fn name_of(&self, index: usize) -> &[u8] {
        self.bytes
            .get(self.command_range(index))
            .map_or(&[][..], command_name)
    }

    /// Byte range in `bytes` of the commands `commands` (empty for none).
    pub fn byte_range(&self, commands: Range<usize>) -> Range<usize> {
        let start = match commands.start {
            0 => 0,
            first => self
                .commands
                .get(first - 1)
                .map_or(0, |previous| previous.end),
        };
        let end = commands
            .end
            .checked_sub(1)
            .and_then(|last| self.commands.get(last))
            .map_or(start, |last| last.end);
        start..end.max(start)
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Ordinal of command `index` in its source, from 1.
    pub fn command_no(&self, index: usize) -> u64 {
        let input_index = match &self.members {
            Members::All => index as u64,
            Members::Routed(routed) => routed
                .get(index)
                .map_or(0, |routed| u64::from(routed.input_index)),
        };
        self.first_command_no + input_index
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
        if command.template > 0 {
            details.push(format!("template {}", command.template));
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

/// Commands `first..end` of a batch, in flight or still to send: a whole
/// batch, or a part of one (the writer sends a batch in parts that fit the
/// window; a reconnect resends from the first command not acknowledged).
#[derive(Debug, Clone)]
pub struct InFlight {
    pub batch: Arc<Batch>,
    pub first: usize,
    pub end: usize,
    /// The reply bytes the window counted for it when it was sent (0 before).
    pub reply_estimate: usize,
}

impl InFlight {
    pub fn whole(batch: Arc<Batch>) -> Self {
        let end = batch.commands.len();
        InFlight {
            batch,
            first: 0,
            end,
            reply_estimate: 0,
        }
    }

    /// The bytes of commands `first..end`.
    pub fn bytes(&self) -> &[u8] {
        let range = self.batch.byte_range(self.first..self.end);
        self.batch.bytes.get(range).unwrap_or_default()
    }

    pub fn command_count(&self) -> usize {
        self.end.saturating_sub(self.first)
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
            first: 1,
            ..InFlight::whole(Arc::new(batch))
        };
        assert_eq!(resend.bytes(), b"");
        assert_eq!(resend.command_count(), 1);
    }

    #[test]
    fn routed_commands_keep_their_input_positions_and_slots() {
        let mut input = batch_of(&[&["SET", "a", "1"], &["GET", "b"], &["PING"]]);
        input.source = 1;
        input.seq_offset = 100;
        input.first_command_no = 41;
        let mut node = Batch::routed_from(&input);
        node.push_copy(&input, 2, None, None);
        node.push_copy(&input, 1, Some(Expect::Marker), Some(3300));
        assert_eq!(
            node.bytes,
            b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n"
        );
        assert_eq!((node.command_no(0), node.slot(0)), (43, None));
        assert_eq!((node.command_no(1), node.slot(1)), (42, Some(3300)));
        assert_eq!(node.commands[1].expect, Expect::Marker);
        assert_eq!(node.seq(1), 142);
        assert_eq!(input.slot(1), None);

        // A resend of the node's second command, after an `ASKING` that
        // stands at its position.
        let mut resent = Batch::routed_from(&node);
        resent.bytes = crate::encode::command_bytes(&[b"ASKING"]);
        resent.push_command(0, true, Expect::Marker, CommandKind::Plain);
        resent.routed_as(&node, 1, None);
        resent.push_copy(&node, 1, None, node.slot(1));
        assert_eq!((resent.command_no(0), resent.slot(0)), (42, None));
        assert_eq!((resent.command_no(1), resent.slot(1)), (42, Some(3300)));
        let names = [None, Some("data.resp".to_owned())];
        assert_eq!(resent.position(1, &names, None), "data.resp:1 (command 42)");
    }

    #[test]
    fn a_routed_command_stays_small() {
        assert!(std::mem::size_of::<RoutedCommand>() <= 8);
    }

    fn batch_of(commands: &[&[&str]]) -> Batch {
        let mut batch = Batch::new(0, 0, 1, 0);
        for args in commands {
            batch.bytes.extend_from_slice(&crate::encode::command_bytes(
                &args.iter().map(|arg| arg.as_bytes()).collect::<Vec<_>>(),
            ));
            batch.push_command(1, true, Expect::Reply, CommandKind::Plain);
        }
        batch
    }

    #[test]
    fn a_part_holds_the_bytes_of_its_commands_only() {
        let batch = Arc::new(batch_of(&[&["SET", "a", "1"], &["GET", "a"], &["PING"]]));
        let whole = InFlight::whole(Arc::clone(&batch));
        assert_eq!(whole.bytes(), &batch.bytes[..]);
        let middle = InFlight {
            first: 1,
            end: 2,
            ..whole.clone()
        };
        assert_eq!(middle.bytes(), b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n");
        assert_eq!(middle.command_count(), 1);
        let none = InFlight {
            first: 2,
            end: 2,
            ..whole
        };
        assert_eq!(none.bytes(), b"");
        assert_eq!(none.command_count(), 0);
    }

    #[test]
    fn reply_class_is_the_command_name_in_any_case() {
        let batch = batch_of(&[
            &["GET", "a"],
            &["get", "b"],
            &["Get", "c"],
            &["SET", "a", "1"],
        ]);
        let class = |index: usize| batch.commands[index].reply_class;
        assert_eq!(class(0), class(1));
        assert_eq!(class(0), class(2));
        assert_ne!(class(0), class(3));
        assert_ne!(class(0), ReplyClass::NONE);
    }

    #[test]
    fn reply_class_is_the_same_however_the_name_is_found() {
        // One load of 8 bytes for a short name among few arguments; a
        // search otherwise (10 arguments or more, a longer name, a name at
        // the very end).
        let of = |args: &[&str]| {
            let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
            ReplyClass::of_command(&crate::encode::command_bytes(&args))
        };
        let many = ["x"; 11];
        for name in [
            "GET",
            "hgetall",
            "Smembers",
            "ZRANGEBYSCORE",
            "JSON.GET",
            "A",
        ] {
            let mut long = vec![name];
            long.extend(many);
            assert_eq!(of(&[name, "key"]), of(&long), "{name}");
            assert_eq!(of(&[name, "key"]), of(&[name]), "{name}");
        }
    }

    #[test]
    fn commands_without_a_reply_due_have_no_reply_class() {
        let mut batch = batch_of(&[&["SET", "a", "1"]]);
        batch
            .bytes
            .extend_from_slice(&crate::encode::command_bytes(&[b"SET", b"b", b"2"]));
        batch.push_command(2, true, Expect::NoReply, CommandKind::Plain);
        batch.push_command(
            3,
            false,
            Expect::Rejected(Rejection::Monitor),
            CommandKind::Plain,
        );
        assert_ne!(batch.commands[0].reply_class, ReplyClass::NONE);
        assert_eq!(batch.commands[1].reply_class, ReplyClass::NONE);
        assert_eq!(batch.commands[2].reply_class, ReplyClass::NONE);
    }

    #[test]
    fn common_commands_have_classes_of_their_own() {
        let names = "SET GET HSET HGET HGETALL HMSET HMGET HDEL LRANGE RPUSH LPUSH LPOP RPOP \
            SADD SMEMBERS SREM ZADD ZRANGE ZRANGEBYSCORE ZREM INCR INCRBY DECR DEL EXPIRE \
            PEXPIRE MGET MSET EXEC MULTI DISCARD SETEX SETNX XADD XRANGE CLIENT SELECT PING \
            ECHO ASKING FLUSHALL FLUSHDB AUTH HELLO EXISTS TTL TYPE KEYS SCAN APPEND GETRANGE \
            SETRANGE STRLEN LLEN SCARD HLEN ZCARD ZSCORE HINCRBY PUBLISH EVAL EVALSHA UNLINK \
            RESTORE DUMP JSON.SET JSON.GET GETDEL GETEX COPY RENAME LINDEX LSET LTRIM SINTER \
            SUNION ZINCRBY ZREVRANGE HKEYS HVALS PFADD SETBIT GETBIT BITCOUNT GEOADD PSETEX \
            MSETNX DECRBY INCRBYFLOAT EXPIREAT PEXPIREAT PERSIST HSETNX HINCRBYFLOAT LPUSHX \
            RPUSHX LINSERT LREM RENAMENX SMOVE ZREMRANGEBYSCORE ZREMRANGEBYRANK XTRIM XDEL \
            HSTRLEN SINTERSTORE SUNIONSTORE ZUNIONSTORE";
        let mut seen = std::collections::HashMap::new();
        for name in names.split_whitespace() {
            let class = ReplyClass::of_command(&crate::encode::command_bytes(&[name.as_bytes()]));
            assert_eq!(class, ReplyClass::of_name(name.as_bytes()), "{name}");
            assert_ne!(class, ReplyClass::NONE, "{name}");
            assert!(class.index() < ReplyClass::COUNT);
            if let Some(other) = seen.insert(class, name) {
                panic!("{name} and {other} share a reply class");
            }
        }
    }

    #[test]
    fn reply_class_of_any_bytes_does_not_panic() {
        for bytes in [
            &b""[..],
            b"*",
            b"*1\r\n",
            b"*1\r\n$",
            b"*1\r\n$3\r",
            b"*1\r\n$3\r\nGE",
            b"*1\r\n$99999999999999999999999\r\nGET\r\n",
            b"*1\r\nGET\r\n",
            b"PING\n",
        ] {
            let class = ReplyClass::of_command(bytes);
            assert!(class.index() < ReplyClass::COUNT);
        }
    }
}
