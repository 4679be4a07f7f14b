//! The step every framer shares: for each command framed, whether it is
//! skipped (`--skip`), what the server will send back for it (following
//! `CLIENT REPLY OFF|SKIP|ON` and `MULTI`), whether it is refused before
//! sending (`SUBSCRIBE`, `MONITOR`, a line that cannot be split), and where
//! an open transaction started.
//!
//! Place in the data flow: inside the input thread, between a framer (which
//! finds a command and its first arguments) and the batch it goes into.

use std::sync::Arc;

use super::InputError;
use crate::batch::{CommandKind, Expect, Rejection, ReplyClass, command_name};
use crate::progress::Counters;

/// Whether the server answers, as set by `CLIENT REPLY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReplyMode {
    On,
    Off,
    /// `CLIENT REPLY SKIP` was sent: the next command gets no reply.
    SkipNext,
}

/// What a command means for the connection, from its first arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CommandRole {
    Other(CommandKind),
    ClientReply(ReplyMode),
    /// Refused before sending: a line that cannot be split, or a command
    /// that would stop replies from being one per command.
    Refused(Rejection),
}

pub(super) fn command_role(arg_count: usize, head: [&[u8]; 3]) -> CommandRole {
    let name = head[0];
    let is = |word: &str| name.eq_ignore_ascii_case(word.as_bytes());
    if is("CLIENT") && arg_count == 3 && head[1].eq_ignore_ascii_case(b"REPLY") {
        let mode = head[2];
        if mode.eq_ignore_ascii_case(b"ON") {
            return CommandRole::ClientReply(ReplyMode::On);
        }
        if mode.eq_ignore_ascii_case(b"OFF") {
            return CommandRole::ClientReply(ReplyMode::Off);
        }
        if mode.eq_ignore_ascii_case(b"SKIP") {
            return CommandRole::ClientReply(ReplyMode::SkipNext);
        }
        return CommandRole::Other(CommandKind::Plain);
    }
    if is("MULTI") {
        return CommandRole::Other(CommandKind::Multi);
    }
    if is("EXEC") || is("DISCARD") {
        return CommandRole::Other(CommandKind::EndMulti);
    }
    if is("SELECT") && arg_count == 2 {
        return CommandRole::Other(CommandKind::Select);
    }
    if is("AUTH") {
        return CommandRole::Other(CommandKind::Auth);
    }
    if is("HELLO") {
        return CommandRole::Other(CommandKind::Hello);
    }
    if is("SUBSCRIBE") || is("PSUBSCRIBE") || is("SSUBSCRIBE") {
        return CommandRole::Refused(Rejection::SubscriberMode);
    }
    if is("MONITOR") {
        return CommandRole::Refused(Rejection::Monitor);
    }
    CommandRole::Other(CommandKind::Plain)
}

/// Commands that always block until their timeout or data (the server's
/// COMMAND info flags them `blocking`); `XREAD` and `XREADGROUP` block only
/// with a `BLOCK` argument.
const BLOCKING_COMMANDS: [&str; 10] = [
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BLMOVE",
    "BLMPOP",
    "BZPOPMIN",
    "BZPOPMAX",
    "BZMPOP",
    "WAIT",
    "WAITAOF",
];

/// The reply classes of the commands that can block, as a bit set: a load's
/// commands are checked by the class their batch already computed (a hash
/// of the name), a few instructions each; only a class in the set has its
/// name compared.
#[derive(Debug)]
pub(super) struct BlockingClasses([u64; ReplyClass::COUNT / 64]);

impl BlockingClasses {
    pub(super) fn new() -> Self {
        let mut bits = [0u64; ReplyClass::COUNT / 64];
        let names = BLOCKING_COMMANDS.iter().chain(&["XREAD", "XREADGROUP"]);
        for name in names {
            let index = ReplyClass::of_name(name.as_bytes()).index();
            bits[index / 64] |= 1 << (index % 64);
        }
        BlockingClasses(bits)
    }

    #[inline]
    pub(super) fn may_block(&self, class: ReplyClass) -> bool {
        let index = class.index();
        self.0[index / 64] & (1 << (index % 64)) != 0
    }
}

/// Whether an encoded command (`*N\r\n$L\r\nNAME…`) can block the
/// connection: the server answers nothing after it until it returns.
pub(super) fn can_block(encoded: &[u8]) -> bool {
    let name = command_name(encoded);
    let is = |word: &str| name.eq_ignore_ascii_case(word.as_bytes());
    if is("XREAD") || is("XREADGROUP") {
        return asks_to_block(encoded);
    }
    BLOCKING_COMMANDS.iter().any(|blocking| is(blocking))
}

/// Whether a `BLOCK` argument comes before `STREAMS` (after it, every
/// argument is a stream name or an ID).
fn asks_to_block(encoded: &[u8]) -> bool {
    let mut rest = encoded;
    while let Some(at) = memchr::memmem::find(rest, b"\r\n$") {
        rest = &rest[at + 3..];
        let Some(header_end) = memchr::memmem::find(rest, b"\r\n") else {
            return false;
        };
        let argument = rest.get(header_end + 2..).unwrap_or_default();
        let length = std::str::from_utf8(&rest[..header_end])
            .ok()
            .and_then(|digits| digits.parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        let Some(argument) = argument.get(..length) else {
            return false;
        };
        if argument.eq_ignore_ascii_case(b"STREAMS") {
            return false;
        }
        if argument.eq_ignore_ascii_case(b"BLOCK") {
            return true;
        }
        rest = &rest[header_end + 2 + length..];
    }
    false
}

/// While `CLIENT REPLY OFF` is in effect, a confirmation goes out after
/// this many commands sent without a reply…
const CONFIRM_AFTER_COMMANDS: usize = 4096;
/// …or this many of their bytes: well inside the smallest window
/// (`window::SHARED_WINDOW_FLOOR`), which holds them until a reply proves
/// they ran.
const CONFIRM_AFTER_BYTES: usize = 256 * 1024;

/// Tracks `CLIENT REPLY` and `MULTI` along the input to decide what each
/// command will get back.
#[derive(Debug)]
pub(super) struct ReplyTracker {
    mode: ReplyMode,
    pub(super) in_multi: bool,
    /// Some command sent after the last answered one gets no reply.
    pub(super) unanswered_tail: bool,
    /// Commands sent, and their bytes, while replies are off since the last
    /// command answered or the last confirmation.
    unconfirmed_commands: usize,
    unconfirmed_bytes: usize,
}

impl ReplyTracker {
    pub(super) fn new() -> Self {
        ReplyTracker {
            mode: ReplyMode::On,
            in_multi: false,
            unanswered_tail: false,
            unconfirmed_commands: 0,
            unconfirmed_bytes: 0,
        }
    }

    /// Counts a command placed in a batch: one sent while replies are off
    /// is proven run only by a later reply.
    pub(super) fn note_placed(&mut self, expect: Expect, bytes: usize) {
        match expect {
            Expect::NoReply if self.mode == ReplyMode::Off => {
                self.unconfirmed_commands += 1;
                self.unconfirmed_bytes += bytes;
            }
            Expect::Reply => self.confirmed(),
            _ => {}
        }
    }

    /// Enough commands went out with replies off that a confirmation
    /// (`Batch::confirmation`) must follow before the next: without a reply
    /// they would fill the window and hold it full, and the resume point
    /// would not move. Never inside a transaction, where it would be queued.
    pub(super) fn confirmation_due(&self) -> bool {
        !self.in_multi
            && (self.unconfirmed_commands >= CONFIRM_AFTER_COMMANDS
                || self.unconfirmed_bytes >= CONFIRM_AFTER_BYTES)
    }

    pub(super) fn confirmed(&mut self) {
        self.unconfirmed_commands = 0;
        self.unconfirmed_bytes = 0;
    }

    fn expect(&mut self, role: CommandRole) -> (Expect, CommandKind) {
        let plain = CommandKind::Plain;
        let expect = match role {
            CommandRole::Refused(why) => return (Expect::Rejected(why), plain),
            CommandRole::ClientReply(_) if self.in_multi => {
                return (Expect::Rejected(Rejection::ClientReplyInMulti), plain);
            }
            // ON clears OFF and SKIP before the server writes its +OK.
            CommandRole::ClientReply(ReplyMode::On) => {
                self.mode = ReplyMode::On;
                Expect::Reply
            }
            CommandRole::ClientReply(ReplyMode::Off) => {
                self.mode = ReplyMode::Off;
                Expect::NoReply
            }
            // SKIP is ignored while replies are off.
            CommandRole::ClientReply(ReplyMode::SkipNext) => {
                if self.mode != ReplyMode::Off {
                    self.mode = ReplyMode::SkipNext;
                }
                Expect::NoReply
            }
            CommandRole::Other(kind) => {
                match kind {
                    CommandKind::Multi => self.in_multi = true,
                    CommandKind::EndMulti => self.in_multi = false,
                    _ => {}
                }
                let expect = match self.mode {
                    ReplyMode::On => Expect::Reply,
                    ReplyMode::Off => Expect::NoReply,
                    ReplyMode::SkipNext => {
                        self.mode = ReplyMode::On;
                        Expect::NoReply
                    }
                };
                self.unanswered_tail = expect == Expect::NoReply;
                return (expect, kind);
            }
        };
        self.unanswered_tail = expect == Expect::NoReply;
        (expect, plain)
    }
}

/// What carries over from one source to the next.
#[derive(Debug)]
pub(super) struct InputState {
    pub(super) tracker: ReplyTracker,
    /// Commands still to skip (`--skip`).
    pub(super) to_skip: u64,
    pub(super) progress: Option<Arc<Counters>>,
    /// Commands in the sources read so far.
    pub(super) commands_before_source: u64,
    pub(super) keep_originals: bool,
    /// Talking to a server: commands sent while replies are off get a
    /// confirmation now and then (`ReplyTracker::confirmation_due`).
    pub(super) confirm_replies_off: bool,
    /// Where the open transaction's `MULTI` was, while one is open.
    pub(super) open_transaction: Option<InputError>,
    /// A cluster load: `CLIENT REPLY SKIP` is refused.
    pub(super) cluster: bool,
    /// A command that can block was reported (once per run).
    pub(super) warned_blocking: bool,
    pub(super) blocking_classes: BlockingClasses,
}

impl InputState {
    /// Decides what becomes of the next command: `None` when it is skipped
    /// (not sent, so it changes nothing on the connection either).
    pub(super) fn admit(&mut self, role: CommandRole) -> Option<(Expect, CommandKind)> {
        if self.to_skip > 0 {
            self.to_skip -= 1;
            return None;
        }
        let role = match role {
            CommandRole::ClientReply(ReplyMode::SkipNext) if self.cluster => {
                CommandRole::Refused(Rejection::ClientReplySkipInCluster)
            }
            role => role,
        };
        Some(self.tracker.expect(role))
    }

    /// Keeps where a transaction opened by an admitted command starts, until
    /// it is closed.
    pub(super) fn note_transaction(
        &mut self,
        kind: CommandKind,
        expect: Expect,
        source_name: &Option<String>,
        line_no: u64,
        seq: u64,
    ) {
        match kind {
            CommandKind::Multi if !matches!(expect, Expect::Rejected(_)) => {
                self.open_transaction = Some(InputError::UnfinishedTransaction {
                    source_name: source_name.clone(),
                    line_no,
                    seq,
                });
            }
            CommandKind::EndMulti => self.open_transaction = None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::command_bytes;

    fn blocks(args: &[&str]) -> bool {
        let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
        let encoded = command_bytes(&args);
        let class = ReplyClass::of_command(&encoded);
        let may_block = BlockingClasses::new().may_block(class);
        assert!(
            may_block || !can_block(&encoded),
            "{args:?}: its class is in the set"
        );
        may_block && can_block(&encoded)
    }

    #[test]
    fn blocking_commands_are_known_by_name_or_by_their_block_argument() {
        assert!(blocks(&["BLPOP", "list", "0"]));
        assert!(blocks(&["bzpopmin", "z", "1.5"]));
        assert!(blocks(&["WAIT", "1", "0"]));
        assert!(blocks(&[
            "XREAD", "COUNT", "2", "BLOCK", "0", "STREAMS", "s", "$"
        ]));
        assert!(blocks(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "BLOCK",
            "10",
            "STREAMS",
            "s",
            ">"
        ]));
        assert!(
            !blocks(&["XREAD", "STREAMS", "BLOCK", "0"]),
            "BLOCK is a stream here"
        );
        assert!(!blocks(&["XREAD", "COUNT", "2", "STREAMS", "s", "0"]));
        assert!(!blocks(&["SET", "BLPOP", "1"]));
        assert!(!blocks(&["BITCOUNT", "k"]));
        assert!(!blocks(&["LPOP", "list"]));
        // Long names and counts take the slow path to the name.
        let many: Vec<String> = (0..12).map(|i| i.to_string()).collect();
        let mut args = vec!["BLPOP"];
        args.extend(many.iter().map(String::as_str));
        assert!(blocks(&args));
        assert!(!can_block(b"*1\r\n$5\r\nBL"));
    }
}
