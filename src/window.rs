//! The window: how much may be in flight between a writer and its reply
//! reader, bounded in commands, in request bytes, and in the reply bytes the
//! server may still owe (which it holds in its output buffer for us).
//!
//! Place in the data flow: the writer `acquire`s room for the next part of a
//! batch before writing it; the reply reader `release`s the part once every
//! command of it is answered, and tells the window the reply sizes it
//! measured. The bound keeps memory flat on both sides and the server's
//! output buffer small, while the defaults are large enough to keep a link
//! with a 20 ms round trip busy.
//!
//! Reply sizes are not known before the replies come, so the window counts
//! each command as an estimate kept per `ReplyClass` (a hash of the
//! command's name), per connection:
//! - a class with no reply measured yet counts as the whole limit: its first
//!   command goes alone, and its reply, of any size, is the only one owed
//!   (a load of 16 KiB `GET`s starts with one of them, not with a batch of
//!   2048 owing 32 MiB; `GET`s after a million `SET`s are not counted at
//!   `+OK`'s size). This costs one round trip per command name; but the
//!   commands whose reply is small whatever their arguments (`SET`, `HSET`,
//!   `RPUSH`…: writes, mostly) count as 64 bytes until measured, so that a
//!   load of writes never waits for a first reply;
//! - once measured, a class counts as the largest reply the reader saw for
//!   it in a part: at once when that is larger than the estimate, and when
//!   smaller, down by a quarter of the difference per part (one outlier does
//!   not throttle the rest for long).
//!
//! A batch is sent in parts of at most an eighth of the reply-byte limit, so
//! that room comes back in steps and the server never waits for the writer;
//! small replies (`SET`'s `+OK`) never cut a batch. A part never cuts a
//! transaction (`MULTI` … `EXEC`), which a reconnect resends whole. A part
//! larger than the whole window (one command with a huge reply) goes when
//! nothing is owed, so nothing deadlocks; and reply bytes are owed no more
//! once every reply due has come, even while commands sent without a reply
//! (`CLIENT REPLY OFF|SKIP`) wait in flight for a later reply to show they
//! ran. So the server owes pipeload at most the limit, or one reply larger
//! than it; except when the replies of a measured class suddenly grow: what
//! is in flight at the old estimate overshoots once.
//!
//! Either side `close`s the window when it stops, which wakes the other.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::batch::{Batch, Command, CommandKind, InFlight, ReplyClass};

/// Limits of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    pub commands: usize,
    /// Request bytes written and not yet answered.
    pub bytes: usize,
    /// Reply bytes, as estimated, the server may still owe.
    pub reply_bytes: usize,
}

impl Default for WindowLimits {
    /// At a million commands per second a 20 ms round trip holds 20,000
    /// commands; 4 MiB holds that many small commands several times over.
    /// 8 MiB of replies keep a 20 ms link busy at 400 MB/s, and the server's
    /// output buffer for pipeload near 8 MiB (plus one reply larger than
    /// that), under the 16 MiB hard limit some servers set for clients.
    fn default() -> Self {
        WindowLimits {
            commands: 100_000,
            bytes: 4 * 1024 * 1024,
            reply_bytes: 8 * 1024 * 1024,
        }
    }
}

/// The least a connection's window is cut to when several connections
/// share one server's: still a few milliseconds of commands at a million
/// a second.
const SHARED_WINDOW_FLOOR: WindowLimits = WindowLimits {
    commands: 10_000,
    bytes: 512 * 1024,
    reply_bytes: 1024 * 1024,
};

impl WindowLimits {
    /// The window of each of `connections` connections to one server
    /// (`--connections`): together about what one connection would hold,
    /// so pipeload's memory and the server's output buffers for it stay
    /// near those of one connection; never below `SHARED_WINDOW_FLOOR`.
    pub fn shared_by(self, connections: usize) -> Self {
        let share = |limit: usize, floor: usize| (limit / connections.max(1)).max(floor.min(limit));
        WindowLimits {
            commands: share(self.commands, SHARED_WINDOW_FLOOR.commands),
            bytes: share(self.bytes, SHARED_WINDOW_FLOOR.bytes),
            reply_bytes: share(self.reply_bytes, SHARED_WINDOW_FLOOR.reply_bytes),
        }
    }
}

/// A batch is sent in parts of at most this share of the reply-byte limit.
const PARTS_PER_WINDOW: usize = 8;

/// Commands whose reply is a status, an integer or a short string whatever
/// their arguments (`SET … GET`, rare in a load, is the exception: it is
/// measured like any other). Their classes count as `SMALL_REPLY` bytes
/// until a reply is measured.
const SMALL_REPLY_COMMANDS: [&str; 60] = [
    "SET",
    "SETEX",
    "PSETEX",
    "SETNX",
    "MSET",
    "MSETNX",
    "APPEND",
    "SETRANGE",
    "SETBIT",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "DECR",
    "DECRBY",
    "DEL",
    "UNLINK",
    "EXPIRE",
    "PEXPIRE",
    "EXPIREAT",
    "PEXPIREAT",
    "PERSIST",
    "RENAME",
    "RENAMENX",
    "COPY",
    "RESTORE",
    "HSET",
    "HSETNX",
    "HMSET",
    "HDEL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "LPUSH",
    "RPUSH",
    "LPUSHX",
    "RPUSHX",
    "LINSERT",
    "LSET",
    "LREM",
    "LTRIM",
    "SADD",
    "SREM",
    "SMOVE",
    "ZADD",
    "ZINCRBY",
    "ZREM",
    "ZREMRANGEBYSCORE",
    "ZREMRANGEBYRANK",
    "PFADD",
    "GEOADD",
    "XADD",
    "XTRIM",
    "XDEL",
    "PUBLISH",
    "SELECT",
    "AUTH",
    "PING",
    "MULTI",
    "DISCARD",
    "FLUSHALL",
    "FLUSHDB",
];
const SMALL_REPLY: usize = 64;

/// The next part of a batch the writer may send: commands `first..end`,
/// counted in the window as owing `reply_estimate` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub end: usize,
    pub reply_estimate: usize,
}

/// What the window holds, and the estimates it counts replies by.
#[derive(Debug)]
struct State {
    commands: usize,
    bytes: usize,
    reply_bytes: usize,
    closed: bool,
    /// Per class, the reply bytes one command counts as.
    reply_estimates: Box<[usize; ReplyClass::COUNT]>,
    /// Per class, whether a reply was measured yet.
    measured: Box<[bool; ReplyClass::COUNT]>,
}

impl State {
    fn new(limits: &WindowLimits) -> Self {
        // Unmeasured: the whole limit, so alone; unless small by nature.
        let mut reply_estimates = Box::new([limits.reply_bytes; ReplyClass::COUNT]);
        for name in SMALL_REPLY_COMMANDS {
            let index = ReplyClass::of_name(name.as_bytes()).index();
            reply_estimates[index] = SMALL_REPLY.min(limits.reply_bytes);
        }
        reply_estimates[ReplyClass::NONE.index()] = 0;
        State {
            commands: 0,
            bytes: 0,
            reply_bytes: 0,
            closed: false,
            reply_estimates,
            measured: Box::new([false; ReplyClass::COUNT]),
        }
    }

    /// Where the part of `batch` that starts at `first` ends: before the
    /// command that would take its reply estimate over `budget`, but never
    /// inside a transaction and never before one command.
    fn next_part(&self, batch: &Batch, first: usize, end: usize, budget: usize) -> Part {
        let commands = batch.commands.get(first..end).unwrap_or_default();
        let estimate_of = |command: &Command| self.reply_estimates[command.reply_class.index()];
        // Small replies, the usual case: one tight pass, no cut.
        let whole = commands.iter().fold(0usize, |sum, command| {
            sum.saturating_add(estimate_of(command))
        });
        if whole <= budget {
            return Part {
                end: first + commands.len(),
                reply_estimate: whole,
            };
        }
        let mut reply_estimate = 0usize;
        let mut in_transaction = false;
        for (offset, command) in commands.iter().enumerate() {
            let total = reply_estimate.saturating_add(estimate_of(command));
            if total > budget && offset > 0 && !in_transaction {
                return Part {
                    end: first + offset,
                    reply_estimate,
                };
            }
            reply_estimate = total;
            match command.kind {
                CommandKind::Multi => in_transaction = true,
                CommandKind::EndMulti => in_transaction = false,
                _ => {}
            }
        }
        Part {
            end: first + commands.len(),
            reply_estimate,
        }
    }

    /// Counts the next part of commands `first..end` of `batch` in flight
    /// if it fits, or nothing in flight owes a reply (commands sent while
    /// replies are off wait in flight for a later reply, which must be let
    /// through): in commands and request bytes, and in reply bytes.
    fn admit(
        &mut self,
        limits: &WindowLimits,
        batch: &Batch,
        first: usize,
        end: usize,
    ) -> Option<Part> {
        let budget = limits.reply_bytes / PARTS_PER_WINDOW;
        let part = self.next_part(batch, first, end, budget);
        let commands = part.end.saturating_sub(first);
        let bytes = batch.byte_range(first..part.end).len();
        // Nothing in flight owes a reply (commands sent while replies are
        // off): only a later command's reply can release them, so it must
        // be let through (the input confirms such commands often enough to
        // keep them few).
        let owes_nothing = self.reply_bytes == 0;
        let requests_fit = self.commands == 0
            || owes_nothing
            || (self.commands + commands <= limits.commands && self.bytes + bytes <= limits.bytes);
        let replies_fit =
            self.reply_bytes == 0 || self.reply_bytes + part.reply_estimate <= limits.reply_bytes;
        if !(requests_fit && replies_fit) {
            return None;
        }
        self.commands += commands;
        self.bytes += bytes;
        self.reply_bytes += part.reply_estimate;
        Some(part)
    }

    /// Frees what `admit` counted for `part`, and takes in what the reader
    /// measured (clearing it).
    fn release(&mut self, part: &InFlight, measured: &mut ReplySizes) {
        self.commands = self.commands.saturating_sub(part.command_count());
        self.bytes = self.bytes.saturating_sub(part.bytes().len());
        self.reply_bytes = self.reply_bytes.saturating_sub(part.reply_estimate);
        for class in measured.classes.drain(..) {
            let index = class.index();
            let largest = std::mem::take(&mut measured.largest[index]);
            if class == ReplyClass::NONE {
                continue;
            }
            let estimate = &mut self.reply_estimates[index];
            *estimate = match self.measured[index] {
                true if largest < *estimate => *estimate - (*estimate - largest) / 4,
                _ => largest,
            };
            self.measured[index] = true;
        }
    }
}

/// The reader's side of the estimates: per class, the largest reply it
/// measured since it last told the window. `observe` is on the path of every
/// reply, so it only compares in the common case.
#[derive(Debug)]
pub struct ReplySizes {
    largest: Box<[usize; ReplyClass::COUNT]>,
    /// The classes with a reply in `largest`, each once.
    classes: Vec<ReplyClass>,
}

impl Default for ReplySizes {
    fn default() -> Self {
        ReplySizes {
            largest: Box::new([0; ReplyClass::COUNT]),
            classes: Vec::new(),
        }
    }
}

impl ReplySizes {
    /// Notes a reply of `len` bytes to a command of `class`.
    #[inline]
    pub fn observe(&mut self, class: ReplyClass, len: usize) {
        let largest = &mut self.largest[class.index()];
        if len > *largest {
            if *largest == 0 {
                self.classes.push(class);
            }
            *largest = len;
        }
    }
}

/// The window was closed by the other side: stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowClosed;

#[derive(Debug)]
pub struct Window {
    limits: WindowLimits,
    state: Mutex<State>,
    room_freed: Condvar,
}

impl Window {
    pub fn new(limits: WindowLimits) -> Self {
        Window {
            limits,
            state: Mutex::new(State::new(&limits)),
            room_freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The guarded counters are plain numbers, valid even if a holder
        // panicked, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the next part of commands `first..end` of `batch` fits
    /// (at least one command, alone if it must), then counts it in flight.
    pub fn acquire(&self, batch: &Batch, first: usize, end: usize) -> Result<Part, WindowClosed> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return Err(WindowClosed);
            }
            // Cut again after every wait: the reader may have measured
            // replies meanwhile.
            if let Some(part) = state.admit(&self.limits, batch, first, end) {
                return Ok(part);
            }
            state = self
                .room_freed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Frees what `acquire` counted for an answered part, and takes in the
    /// reply sizes measured since the last release.
    pub fn release(&self, part: &InFlight, measured: &mut ReplySizes) {
        self.lock().release(part, measured);
        self.room_freed.notify_all();
    }

    /// Frees reply bytes no longer owed: those of parts whose every reply
    /// came, still in flight for commands sent without a reply.
    pub fn release_reply_bytes(&self, reply_bytes: usize) {
        let mut state = self.lock();
        state.reply_bytes = state.reply_bytes.saturating_sub(reply_bytes);
        drop(state);
        self.room_freed.notify_all();
    }

    /// Whether either side has stopped.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Makes every current and future `acquire` fail.
    pub fn close(&self) {
        self.lock().closed = true;
        self.room_freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Expect;
    use crate::encode::command_bytes;
    use std::sync::Arc;
    use std::thread;

    /// 64 KiB of replies: parts of 8 KiB.
    const LIMITS: WindowLimits = WindowLimits {
        commands: 10_000,
        bytes: 1024 * 1024,
        reply_bytes: 64 * 1024,
    };

    /// A window of 10 commands and 1,000 request bytes.
    const FEW_REQUESTS: WindowLimits = WindowLimits {
        commands: 10,
        bytes: 1000,
        ..LIMITS
    };

    fn batch_of(commands: &[(&str, usize)]) -> Arc<Batch> {
        let mut batch = Batch::new(0, 0, 1, 0);
        for &(name, count) in commands {
            for _ in 0..count {
                batch
                    .bytes
                    .extend_from_slice(&command_bytes(&[name.as_bytes(), b"key"]));
                let kind = match name {
                    "MULTI" => CommandKind::Multi,
                    "EXEC" => CommandKind::EndMulti,
                    _ => CommandKind::Plain,
                };
                batch.push_command(1, true, Expect::Reply, kind);
            }
        }
        Arc::new(batch)
    }

    /// `count` SETs sent while replies are off.
    fn sets_without_replies(count: usize) -> Arc<Batch> {
        let mut batch = Batch::new(0, 0, 1, 0);
        for _ in 0..count {
            batch
                .bytes
                .extend_from_slice(&command_bytes(&[b"SET", b"key", b"value"]));
            batch.push_command(1, true, Expect::NoReply, CommandKind::Plain);
        }
        Arc::new(batch)
    }

    fn part_of(batch: &Arc<Batch>, first: usize, part: Part) -> InFlight {
        InFlight {
            first,
            end: part.end,
            reply_estimate: part.reply_estimate,
            ..InFlight::whole(Arc::clone(batch))
        }
    }

    /// Answers `part` with replies of `reply_len` bytes each and releases it.
    fn answer(state: &mut State, part: &InFlight, reply_len: usize) {
        let mut measured = ReplySizes::default();
        for command in &part.batch.commands[part.first..part.end] {
            measured.observe(command.reply_class, reply_len);
        }
        state.release(part, &mut measured);
    }

    /// Sends and answers one command of `name` with a reply of `reply_len`.
    fn measure(state: &mut State, name: &str, reply_len: usize) {
        let batch = batch_of(&[(name, 1)]);
        let part = state.admit(&LIMITS, &batch, 0, 1).unwrap();
        assert_eq!(part.end, 1);
        answer(state, &part_of(&batch, 0, part), reply_len);
    }

    fn is_empty(state: &State) -> bool {
        state.commands == 0 && state.bytes == 0 && state.reply_bytes == 0
    }

    fn estimate(state: &State, name: &str) -> usize {
        state.reply_estimates[batch_of(&[(name, 1)]).commands[0].reply_class.index()]
    }

    #[test]
    fn connections_to_one_server_share_one_window() {
        let one = WindowLimits::default();
        assert_eq!(one.shared_by(1), one);
        assert_eq!(
            one.shared_by(4),
            WindowLimits {
                commands: 25_000,
                bytes: 1024 * 1024,
                reply_bytes: 2 * 1024 * 1024,
            }
        );
        assert_eq!(one.shared_by(64), SHARED_WINDOW_FLOOR);
        // A limit already under the floor stays as it is.
        assert_eq!(
            LIMITS.shared_by(8),
            WindowLimits {
                commands: 10_000,
                bytes: 512 * 1024,
                reply_bytes: 64 * 1024,
            }
        );
    }

    #[test]
    fn an_unmeasured_command_goes_alone() {
        let mut state = State::new(&LIMITS);
        let batch = batch_of(&[("GET", 2048)]);
        let probe = state.admit(&LIMITS, &batch, 0, 2048).unwrap();
        let alone = Part {
            end: 1,
            reply_estimate: LIMITS.reply_bytes,
        };
        assert_eq!(probe, alone);
        assert_eq!(state.admit(&LIMITS, &batch, 1, 2048), None);
        // Its 4 KiB reply: parts of 2 GETs (8 KiB), eight of them in flight.
        answer(&mut state, &part_of(&batch, 0, probe), 4096);
        assert!(is_empty(&state));
        let mut first = 1;
        for _ in 0..8 {
            let part = state.admit(&LIMITS, &batch, first, 2048).unwrap();
            let two = Part {
                end: first + 2,
                reply_estimate: 8192,
            };
            assert_eq!(part, two);
            first = part.end;
        }
        assert_eq!(state.admit(&LIMITS, &batch, first, 2048), None);
    }

    #[test]
    fn small_replies_never_cut_a_batch() {
        // The default limits, and the largest batch the input makes.
        let limits = WindowLimits::default();
        let mut state = State::new(&limits);
        let batch = batch_of(&[("HGETALL", 2048)]);
        let probe = state.admit(&limits, &batch, 0, 2048).unwrap();
        assert_eq!(probe.end, 1);
        answer(&mut state, &part_of(&batch, 0, probe), 5);
        let part = state.admit(&limits, &batch, 1, 2048).unwrap();
        let rest = Part {
            end: 2048,
            reply_estimate: 2047 * 5,
        };
        assert_eq!(part, rest);
    }

    #[test]
    fn writes_go_out_before_any_reply_is_measured() {
        let limits = WindowLimits::default();
        let mut state = State::new(&limits);
        let batch = batch_of(&[("SET", 2048), ("hset", 2048), ("RPUSH", 2048)]);
        let part = state.admit(&limits, &batch, 0, 6144).unwrap();
        let all = Part {
            end: 6144,
            reply_estimate: 6144 * SMALL_REPLY,
        };
        assert_eq!(part, all);
        // Once measured, a write counts as what it measured.
        answer(&mut state, &part_of(&batch, 0, part), 5);
        assert_eq!(estimate(&state, "SET"), 5);
    }

    #[test]
    fn estimate_grows_at_once_and_shrinks_by_a_quarter_of_the_gap() {
        let mut state = State::new(&LIMITS);
        assert_eq!(estimate(&state, "GET"), LIMITS.reply_bytes);
        measure(&mut state, "GET", 100);
        assert_eq!(estimate(&state, "GET"), 100);
        measure(&mut state, "GET", 1000);
        assert_eq!(estimate(&state, "GET"), 1000);
        measure(&mut state, "GET", 200);
        assert_eq!(estimate(&state, "GET"), 800);
        measure(&mut state, "GET", 200);
        assert_eq!(estimate(&state, "GET"), 650);
        assert!(is_empty(&state));
    }

    #[test]
    fn the_largest_reply_of_a_part_counts() {
        let mut state = State::new(&LIMITS);
        measure(&mut state, "GET", 10);
        let batch = batch_of(&[("GET", 3)]);
        let part = state.admit(&LIMITS, &batch, 0, 3).unwrap();
        assert_eq!(part.end, 3);
        let mut measured = ReplySizes::default();
        for reply_len in [10, 300, 20] {
            measured.observe(batch.commands[0].reply_class, reply_len);
        }
        state.release(&part_of(&batch, 0, part), &mut measured);
        assert_eq!(estimate(&state, "GET"), 300);
        // Told once: the reader starts afresh.
        assert!(measured.classes.is_empty());
        assert!(measured.largest.iter().all(|&largest| largest == 0));
    }

    #[test]
    fn mixed_sizes_are_counted_per_command_name() {
        let mut state = State::new(&LIMITS);
        measure(&mut state, "SET", 5);
        measure(&mut state, "GET", 2048);
        // A thousand SETs, then GETs of 2 KiB: the part takes the SETs and
        // one GET (5000 + 2048 bytes of an 8 KiB part), the next ones four
        // GETs each, however small the SETs were.
        let batch = batch_of(&[("SET", 1000), ("GET", 1000), ("SET", 10)]);
        let part = state.admit(&LIMITS, &batch, 0, 2010).unwrap();
        let sets_and_a_get = Part {
            end: 1001,
            reply_estimate: 1000 * 5 + 2048,
        };
        assert_eq!(part, sets_and_a_get);
        let next = state.admit(&LIMITS, &batch, 1001, 2010).unwrap();
        let four_gets = Part {
            end: 1005,
            reply_estimate: 4 * 2048,
        };
        assert_eq!(next, four_gets);
        // A new name among known ones waits for an empty window.
        let batch = batch_of(&[("SET", 10), ("HGETALL", 1), ("SET", 10)]);
        let known = state.admit(&LIMITS, &batch, 0, 21).unwrap();
        assert_eq!(known.end, 10);
        assert_eq!(state.admit(&LIMITS, &batch, 10, 21), None);
    }

    #[test]
    fn a_reply_larger_than_the_window_goes_alone() {
        let mut state = State::new(&LIMITS);
        measure(&mut state, "SET", 5);
        measure(&mut state, "HGETALL", 1024 * 1024);
        let batch = batch_of(&[("HGETALL", 2), ("SET", 1)]);
        let part = state.admit(&LIMITS, &batch, 0, 3).unwrap();
        assert_eq!(part.end, 1);
        // Nothing joins it, not even a small command.
        assert_eq!(state.admit(&LIMITS, &batch, 1, 3), None);
        assert_eq!(state.admit(&LIMITS, &batch, 2, 3), None);
        state.release(&part_of(&batch, 0, part), &mut ReplySizes::default());
        assert!(is_empty(&state));
        assert_eq!(state.admit(&LIMITS, &batch, 1, 3).map(|p| p.end), Some(2));
    }

    #[test]
    fn commands_waiting_for_a_later_reply_do_not_hold_back_a_big_one() {
        let mut state = State::new(&LIMITS);
        measure(&mut state, "HGETALL", 1024 * 1024);
        let batch = sets_without_replies(1);
        state.admit(&LIMITS, &batch, 0, 1).unwrap();
        // The SET waits for the HGETALL's reply to prove it ran: nothing is
        // owed, so the HGETALL goes, alone in reply bytes.
        let big = batch_of(&[("HGETALL", 2)]);
        assert_eq!(
            state.admit(&LIMITS, &big, 0, 2).map(|part| part.end),
            Some(1)
        );
        assert_eq!(state.admit(&LIMITS, &big, 1, 2), None);
    }

    #[test]
    fn a_part_never_cuts_a_transaction() {
        let mut state = State::new(&LIMITS);
        for name in ["GET", "MULTI", "EXEC"] {
            measure(&mut state, name, 1024);
        }
        // 40 GETs of 1 KiB in a transaction: far over a part's 8 KiB, in
        // one part with the commands before it; after it, parts of 8.
        let batch = batch_of(&[
            ("GET", 2),
            ("MULTI", 1),
            ("GET", 40),
            ("EXEC", 1),
            ("GET", 20),
        ]);
        let with_transaction = state.admit(&LIMITS, &batch, 0, 64).unwrap();
        let whole_transaction = Part {
            end: 44,
            reply_estimate: 44 * 1024,
        };
        assert_eq!(with_transaction, whole_transaction);
        let after = state.admit(&LIMITS, &batch, 44, 64).unwrap();
        let eight_gets = Part {
            end: 52,
            reply_estimate: 8 * 1024,
        };
        assert_eq!(after, eight_gets);
    }

    #[test]
    fn commands_without_a_reply_due_count_no_reply_bytes() {
        let mut state = State::new(&LIMITS);
        let batch = sets_without_replies(1000);
        let part = state.admit(&LIMITS, &batch, 0, 1000).unwrap();
        let whole = Part {
            end: 1000,
            reply_estimate: 0,
        };
        assert_eq!(part, whole);
    }

    #[test]
    fn commands_that_owe_nothing_never_hold_the_window_full() {
        let limits = FEW_REQUESTS;
        let mut state = State::new(&limits);
        let batch = sets_without_replies(30);
        // Past the limits in commands: only a later reply can release
        // them, so what follows (the confirmation) must go out.
        assert!(state.admit(&limits, &batch, 0, 10).is_some());
        assert!(state.admit(&limits, &batch, 10, 30).is_some());
        measure(&mut state, "PING", 5);
        let confirmation = batch_of(&[("PING", 2)]);
        assert_eq!(
            state
                .admit(&limits, &confirmation, 0, 2)
                .map(|part| part.end),
            Some(2)
        );
        // Now a reply is owed: the window is full again until it comes.
        assert_eq!(state.admit(&limits, &confirmation, 0, 2), None);
    }

    #[test]
    fn release_frees_what_was_counted() {
        let mut state = State::new(&LIMITS);
        measure(&mut state, "GET", 1024);
        let batch = batch_of(&[("GET", 100)]);
        let part = state.admit(&LIMITS, &batch, 10, 100).unwrap();
        assert_eq!(state.commands, 8);
        assert_eq!(state.bytes, batch.byte_range(10..18).len());
        assert_eq!(state.reply_bytes, 8 * 1024);
        state.release(&part_of(&batch, 10, part), &mut ReplySizes::default());
        assert!(is_empty(&state));
    }

    #[test]
    fn request_bytes_and_commands_still_bound_the_window() {
        let limits = FEW_REQUESTS;
        let mut state = State::new(&limits);
        measure(&mut state, "SET", 5);
        let batch = batch_of(&[("SET", 6)]);
        assert!(state.admit(&limits, &batch, 0, 6).is_some());
        assert_eq!(state.admit(&limits, &batch, 0, 6), None);
    }

    #[test]
    fn acquire_waits_for_release() {
        let window = Arc::new(Window::new(LIMITS));
        let batch = batch_of(&[("GET", 100)]);
        let probe = window.acquire(&batch, 0, 100).unwrap();
        assert_eq!(probe.end, 1);
        let waiter = {
            let window = Arc::clone(&window);
            let batch = Arc::clone(&batch);
            thread::spawn(move || window.acquire(&batch, 1, 100))
        };
        // The probe's 4 KiB reply frees the window and sizes the next part.
        let mut measured = ReplySizes::default();
        measured.observe(batch.commands[0].reply_class, 4096);
        window.release(&part_of(&batch, 0, probe), &mut measured);
        assert_eq!(waiter.join().unwrap().map(|part| part.end), Ok(3));
    }

    #[test]
    fn close_wakes_a_waiting_writer() {
        let window = Arc::new(Window::new(WindowLimits {
            commands: 1,
            ..LIMITS
        }));
        let batch = batch_of(&[("SET", 2)]);
        window.acquire(&batch, 0, 1).unwrap();
        let waiter = {
            let window = Arc::clone(&window);
            let batch = Arc::clone(&batch);
            thread::spawn(move || window.acquire(&batch, 1, 2))
        };
        window.close();
        assert_eq!(waiter.join().unwrap(), Err(WindowClosed));
    }
}
