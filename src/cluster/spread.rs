//! `--connections N` into one server: the route that spreads the input over
//! N connections ("lanes") by the cluster's own rule, the hash slot of the
//! keys (lane = slot mod N), so one key always takes one lane and its writes
//! keep input order there.
//!
//! Place in the data flow: the router thread between the input's batch
//! channel and the lanes (`engine::run_lanes`), like the cluster's slot
//! router; the reply readers count what settles in `Outstanding`. The data
//! set must equal a one-connection load for any input, so each unit (a
//! command, or a whole `MULTI … EXEC`) goes:
//! - with every key on one lane (or keyless and read-only: `PING`, `ECHO`,
//!   `TIME`, `INFO`…): to that lane (lane 0 for the keyless);
//! - per-connection state (`AUTH`, `HELLO`, `SELECT`, `CLIENT SETNAME`):
//!   to every lane at its input position, the reply of lane 0's copy
//!   counted, the others' copies `Expect::Marker` (each lane's reader keeps
//!   what it needs for a reconnect);
//! - anything else (keys on several lanes, a keyless command that may change
//!   the data: `FLUSHDB`, `SWAPDB`, `SCRIPT LOAD`, `EVAL … 0`, unknown
//!   commands): a BARRIER: routing stops until every lane has settled all
//!   it was given, the unit goes alone to lane 0, and routing goes on once
//!   it has settled too.
//!
//! `CLIENT REPLY`: `OFF` is a barrier, and while replies are off every
//! command takes lane 0, the one told to be silent (per-connection state
//! still reaches every lane, whose copies are answered); `ON` then goes to
//! lane 0 and is waited for, which proves lane 0's silent commands ran.
//! `SKIP` is held back and sent just before the next command that is sent,
//! on that command's lane. A lane whose last command had no reply due is
//! sent a `PING` marker at the end of each input batch and before a
//! barrier, so its commands settle.

use crossbeam_channel::{Receiver, Sender};

use super::keys::KeyPositions;
use super::outstanding::Outstanding;
use super::slot::key_slot;
use crate::batch::{Batch, CommandKind, Expect};
use crate::control::{Value, query};
use crate::reply_order::RepliesOut;
use crate::resp::{command_args, command_args_into, name_and_first_arg};
use crate::route::{BatchRouter, Routed, Stopped, run_router};
use crate::stop::Stop;
use crate::stream::Stream;

/// Keyless commands that cannot change the data set: any lane will do.
/// Kept small on purpose; every other keyless command is a barrier.
const READ_ONLY_KEYLESS: [&[u8]; 6] = [b"PING", b"ECHO", b"TIME", b"INFO", b"LASTSAVE", b"COMMAND"];

/// Where one unit of the input goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Every key on this lane (a read-only keyless command: lane 0).
    Lane(usize),
    /// Read-only and keyless: wherever its neighbours go.
    AnyLane,
    /// Per-connection state: a copy to every lane.
    EveryLane,
    /// `CLIENT REPLY OFF`.
    RepliesOff,
    /// `CLIENT REPLY ON`.
    RepliesOn,
    /// `CLIENT REPLY SKIP`.
    SkipNext,
    /// `WATCH`: a barrier, then lane 0 until the watch ends.
    Watch,
    /// Ordered after everything before it and before everything after it.
    Barrier,
}

/// Vectors reused for every command of an input batch, rather than two
/// allocations per command.
#[derive(Default)]
struct Scratch<'b> {
    args: Vec<&'b [u8]>,
    keys: Vec<&'b [u8]>,
}

/// A `CLIENT REPLY SKIP` not sent yet: it goes just before the next command
/// sent, on that command's lane.
enum PendingSkip {
    /// At this index of the batch being routed.
    InBatch(usize),
    /// Its input batch was routed already: held as a batch of its own.
    Held(Batch),
}

pub struct SpreadRouter<'a> {
    keys: KeyPositions,
    /// For `COMMAND GETKEYS`, when the metadata cannot find the keys.
    control: Stream,
    lanes: Vec<Sender<Batch>>,
    outstanding: &'a Outstanding,
    /// `--replies`: replies held for input order wait for room here.
    replies_out: Option<&'a RepliesOut>,
    /// `CLIENT REPLY OFF` is in effect (on lane 0, where everything goes).
    replies_off: bool,
    /// A `WATCH` is in effect: everything takes lane 0 (where it was sent)
    /// until the transaction, `UNWATCH` or `RESET` that ends it, since the
    /// watched keys and the transaction must share one connection.
    watching: bool,
    /// A transaction set connection state (`SELECT`, `AUTH`…) on lane 0,
    /// which the other lanes cannot follow without knowing whether it ran:
    /// lane 0 takes the rest of the input.
    lane_zero_for_good: bool,
    pending_skip: Option<PendingSkip>,
    /// Per lane: its last command has no reply due, so nothing proves yet
    /// that it ran.
    unanswered_tail: Vec<bool>,
}

/// A router gone adds no more commands.
impl Drop for SpreadRouter<'_> {
    fn drop(&mut self) {
        self.outstanding.router_finished();
    }
}

impl<'a> SpreadRouter<'a> {
    /// A router into `lanes`, one channel per connection.
    pub fn new(
        keys: KeyPositions,
        control: Stream,
        lanes: Vec<Sender<Batch>>,
        outstanding: &'a Outstanding,
        replies_out: Option<&'a RepliesOut>,
    ) -> Self {
        let unanswered_tail = vec![false; lanes.len()];
        SpreadRouter {
            keys,
            control,
            lanes,
            outstanding,
            replies_out,
            replies_off: false,
            watching: false,
            lane_zero_for_good: false,
            pending_skip: None,
            unanswered_tail,
        }
    }

    /// Routes every batch until the input ends or a stop is requested.
    pub fn run(mut self, input: &Receiver<Batch>, stop: &Stop) -> Routed {
        run_router(&mut self, input, stop)
    }
}

impl BatchRouter for SpreadRouter<'_> {
    fn before_batch(&mut self, stop: &Stop) {
        if let Some(replies_out) = self.replies_out {
            replies_out.wait_for_room(stop, &|| None);
        }
    }

    /// A `CLIENT REPLY SKIP` with no command after it is sent all the
    /// same, as one connection sends it.
    fn input_ended(&mut self, stop: &Stop) -> Result<(), Stopped> {
        match self.pending_skip.take() {
            Some(PendingSkip::Held(skip)) => self.send_to(0, skip, stop),
            _ => Ok(()),
        }
    }

    fn route_batch(&mut self, batch: &Batch, stop: &Stop) -> Result<(), Stopped> {
        let lanes = self.lanes.len();
        let mut split: Vec<Batch> = (0..lanes)
            .map(|_| Batch::routed_share(batch, lanes))
            .collect();
        let mut scratch = Scratch::default();
        let mut index = 0;
        while index < batch.commands.len() {
            let unit = unit_at(batch, index);
            index = unit.end;
            self.route_unit(batch, unit, &mut split, &mut scratch, stop)?;
        }
        if let Some(PendingSkip::InBatch(at)) = self.pending_skip {
            let mut held = Batch::routed_from(batch);
            held.push_copy(batch, at, None, None);
            self.pending_skip = Some(PendingSkip::Held(held));
        }
        if !self.replies_off {
            self.confirm_tails(&mut split, batch, batch.commands.len() - 1);
        }
        self.send_split(&mut split, stop)
    }
}

impl SpreadRouter<'_> {
    fn route_unit<'b>(
        &mut self,
        batch: &'b Batch,
        unit: std::ops::Range<usize>,
        split: &mut [Batch],
        scratch: &mut Scratch<'b>,
        stop: &Stop,
    ) -> Result<(), Stopped> {
        let first = unit.start;
        if let Expect::Rejected(_) = batch.commands[first].expect {
            // Never sent: only its place in lane 0's order matters.
            split[0].push_copy(batch, first, None, None);
            return Ok(());
        }
        let placement = self.placement(batch, unit.clone(), scratch);
        if self.lane_zero_for_good {
            match placement {
                Placement::RepliesOff => self.replies_off = true,
                Placement::RepliesOn => self.replies_off = false,
                _ if is_reset(batch, first) => self.replies_off = false,
                _ => {}
            }
            return self.push_unit(split, 0, batch, unit, stop);
        }
        if self.watching && !self.replies_off {
            return self.route_while_watching(batch, unit, placement, split, stop);
        }
        if self.replies_off {
            return match placement {
                Placement::EveryLane => {
                    self.push_everywhere(split, batch, first);
                    if is_reset(batch, first) {
                        self.replies_off = false;
                        self.watching = false;
                    }
                    Ok(())
                }
                Placement::RepliesOn => {
                    self.push_unit(split, 0, batch, unit, stop)?;
                    self.replies_off = false;
                    self.send_split(split, stop)?;
                    self.outstanding.wait_all_settled(stop)
                }
                _ => {
                    self.lane_zero_for_good |= sets_up_connection(batch, unit.clone());
                    self.push_unit(split, 0, batch, unit, stop)
                }
            };
        }
        match placement {
            Placement::Lane(lane) => self.push_unit(split, lane, batch, unit, stop),
            Placement::AnyLane | Placement::RepliesOn => {
                self.push_unit(split, 0, batch, unit, stop)
            }
            Placement::EveryLane => {
                self.place_pending_skip(split, 0, batch, stop)?;
                self.push_everywhere(split, batch, first);
                Ok(())
            }
            Placement::SkipNext => {
                self.pending_skip = Some(PendingSkip::InBatch(first));
                Ok(())
            }
            Placement::RepliesOff => {
                self.drain(split, batch, first, stop)?;
                self.push_unit(split, 0, batch, unit, stop)?;
                self.replies_off = true;
                Ok(())
            }
            Placement::Watch => {
                self.drain(split, batch, first, stop)?;
                self.watching = true;
                self.push_unit(split, 0, batch, unit, stop)
            }
            Placement::Barrier => {
                self.drain(split, batch, first, stop)?;
                let last = unit.end - 1;
                self.lane_zero_for_good |= sets_up_connection(batch, unit.clone());
                self.push_unit(split, 0, batch, unit, stop)?;
                // Skipped by a `CLIENT REPLY SKIP`: the marker's reply
                // proves it ran.
                self.confirm_tails(split, batch, last);
                self.send_split(split, stop)?;
                self.outstanding.wait_all_settled(stop)
            }
        }
    }

    /// While a `WATCH` is in effect: lane 0 takes every unit (per-connection
    /// state still reaches every lane); the transaction, `UNWATCH` or
    /// `RESET` that ends the watch is waited for like a barrier.
    fn route_while_watching(
        &mut self,
        batch: &Batch,
        unit: std::ops::Range<usize>,
        placement: Placement,
        split: &mut [Batch],
        stop: &Stop,
    ) -> Result<(), Stopped> {
        let first = unit.start;
        let last = unit.end - 1;
        let ends_watch = batch.commands[last].kind == CommandKind::EndMulti
            || is_named(batch, first, b"UNWATCH")
            || is_reset(batch, first);
        match placement {
            Placement::EveryLane if unit.len() == 1 => {
                self.place_pending_skip(split, 0, batch, stop)?;
                self.push_everywhere(split, batch, first);
            }
            Placement::RepliesOff => {
                self.push_unit(split, 0, batch, unit, stop)?;
                self.replies_off = true;
            }
            _ => {
                self.lane_zero_for_good |= sets_up_connection(batch, unit.clone());
                self.push_unit(split, 0, batch, unit, stop)?;
            }
        }
        if !ends_watch {
            return Ok(());
        }
        self.watching = false;
        self.confirm_tails(split, batch, last);
        self.send_split(split, stop)?;
        self.outstanding.wait_all_settled(stop)
    }

    /// Where the unit `unit` of `batch` goes.
    fn placement<'b>(
        &mut self,
        batch: &'b Batch,
        unit: std::ops::Range<usize>,
        scratch: &mut Scratch<'b>,
    ) -> Placement {
        if unit.len() == 1 {
            return self.command_placement(batch, unit.start, scratch);
        }
        // A transaction: whole to the one lane of all its keys.
        let mut lane = None;
        for index in unit {
            let command = batch.commands[index];
            if matches!(command.kind, CommandKind::Multi | CommandKind::EndMulti)
                || matches!(command.expect, Expect::Rejected(_))
            {
                continue;
            }
            match self.command_placement(batch, index, scratch) {
                Placement::AnyLane => {}
                Placement::Lane(this) if lane.is_none_or(|lane| lane == this) => {
                    lane = Some(this);
                }
                _ => return Placement::Barrier,
            }
        }
        lane.map_or(Placement::AnyLane, Placement::Lane)
    }

    fn command_placement<'b>(
        &mut self,
        batch: &'b Batch,
        index: usize,
        scratch: &mut Scratch<'b>,
    ) -> Placement {
        let command = batch.commands[index];
        if matches!(
            command.kind,
            CommandKind::Auth | CommandKind::Hello | CommandKind::Select
        ) {
            return Placement::EveryLane;
        }
        let Scratch { args, keys } = scratch;
        let lanes = self.lanes.len();
        let lane_of = |slot: u16| usize::from(slot) % lanes;
        let frame = &batch.bytes[batch.command_range(index)];
        // Most commands: the name and one key, the first argument; the
        // rest of the command need not be read.
        if let Some((name, Some(key))) = name_and_first_arg(frame)
            && self.keys.key_is_first_argument_only(name)
        {
            return Placement::Lane(lane_of(key_slot(key)));
        }
        command_args_into(frame, args);
        let name = args.first().copied().unwrap_or_default();
        if name.eq_ignore_ascii_case(b"RESET") {
            return Placement::EveryLane;
        }
        if name.eq_ignore_ascii_case(b"WATCH") {
            return Placement::Watch;
        }
        if name.eq_ignore_ascii_case(b"CLIENT") {
            let sub = args.get(1).copied().unwrap_or_default();
            if sub.eq_ignore_ascii_case(b"SETNAME") || sub.eq_ignore_ascii_case(b"SETINFO") {
                return Placement::EveryLane;
            }
            if sub.eq_ignore_ascii_case(b"REPLY") && args.len() == 3 {
                let mode = args[2];
                if mode.eq_ignore_ascii_case(b"ON") {
                    return Placement::RepliesOn;
                }
                if mode.eq_ignore_ascii_case(b"OFF") {
                    return Placement::RepliesOff;
                }
                if mode.eq_ignore_ascii_case(b"SKIP") {
                    return Placement::SkipNext;
                }
            }
        }
        let lane = match self.keys.all_keys(args, keys) {
            true => one_lane(keys.iter().map(|key| lane_of(key_slot(key)))),
            false => match self.slots_from_server(args) {
                Some(slots) => one_lane(slots.into_iter().map(lane_of)),
                None => return Placement::Barrier,
            },
        };
        match lane {
            Some(Some(lane)) => Placement::Lane(lane),
            Some(None) => Placement::Barrier,
            None if READ_ONLY_KEYLESS
                .iter()
                .any(|read_only| name.eq_ignore_ascii_case(read_only))
                && self.keys.knows(args) =>
            {
                Placement::AnyLane
            }
            None => Placement::Barrier,
        }
    }

    /// `COMMAND GETKEYS`: the server's own answer for commands whose keys
    /// the metadata cannot locate, as hash slots; `None` when it will not
    /// say.
    fn slots_from_server(&mut self, args: &[&[u8]]) -> Option<Vec<u16>> {
        let mut request: Vec<&[u8]> = vec![b"COMMAND", b"GETKEYS"];
        request.extend_from_slice(args);
        match query(&mut self.control, &request).ok()? {
            Value::Array(keys) => keys
                .iter()
                .map(|key| key.as_bytes().map(key_slot))
                .collect(),
            _ => None,
        }
    }

    /// Adds the unit to `lane`, after a `CLIENT REPLY SKIP` held for it.
    fn push_unit(
        &mut self,
        split: &mut [Batch],
        lane: usize,
        batch: &Batch,
        unit: std::ops::Range<usize>,
        stop: &Stop,
    ) -> Result<(), Stopped> {
        self.place_pending_skip(split, lane, batch, stop)?;
        for index in unit {
            split[lane].push_copy(batch, index, None, None);
            self.unanswered_tail[lane] = batch.commands[index].expect == Expect::NoReply;
        }
        Ok(())
    }

    /// Lane 0's copy counts for the input's command; the others' replies
    /// count for nothing.
    fn push_everywhere(&mut self, split: &mut [Batch], batch: &Batch, index: usize) {
        for (lane, target) in split.iter_mut().enumerate() {
            let expect = (lane > 0).then_some(Expect::Marker);
            target.push_copy(batch, index, expect, None);
        }
        self.unanswered_tail[0] = batch.commands[index].expect == Expect::NoReply;
    }

    /// Sends a `CLIENT REPLY SKIP` held back to `lane`, just before the
    /// command it is for.
    fn place_pending_skip(
        &mut self,
        split: &mut [Batch],
        lane: usize,
        batch: &Batch,
        stop: &Stop,
    ) -> Result<(), Stopped> {
        match self.pending_skip.take() {
            None => Ok(()),
            Some(PendingSkip::InBatch(at)) => {
                split[lane].push_copy(batch, at, None, None);
                Ok(())
            }
            // Nothing of this batch was sent to `lane` yet: the held batch
            // goes before it.
            Some(PendingSkip::Held(held)) => self.send_to(lane, held, stop),
        }
    }

    /// A `PING` marker for every lane whose last command had no reply due,
    /// placed at the input position of command `index` of `batch`.
    fn confirm_tails(&mut self, split: &mut [Batch], batch: &Batch, index: usize) {
        for (lane, target) in split.iter_mut().enumerate() {
            if std::mem::take(&mut self.unanswered_tail[lane]) {
                target.push_own(&[b"PING"], Expect::Marker, batch, index);
            }
        }
    }

    /// Before a barrier: sends what is split and waits until every lane has
    /// settled everything it was given.
    fn drain(
        &mut self,
        split: &mut [Batch],
        batch: &Batch,
        index: usize,
        stop: &Stop,
    ) -> Result<(), Stopped> {
        self.confirm_tails(split, batch, index);
        self.send_split(split, stop)?;
        self.outstanding.wait_all_settled(stop)
    }

    /// Hands every non-empty per-lane batch of `split` to its lane.
    fn send_split(&self, split: &mut [Batch], stop: &Stop) -> Result<(), Stopped> {
        self.outstanding.send_split(&self.lanes, split, stop)
    }

    fn send_to(&self, lane: usize, batch: Batch, stop: &Stop) -> Result<(), Stopped> {
        self.outstanding.send(&self.lanes[lane], batch, stop)
    }
}

/// The lane every item of `lanes` names (`Some(Some(lane))`), several
/// (`Some(None)`), or none: an empty `lanes`.
fn one_lane(mut lanes: impl Iterator<Item = usize>) -> Option<Option<usize>> {
    let first = lanes.next()?;
    Some(lanes.all(|lane| lane == first).then_some(first))
}

/// The unit that starts at `index`: the command, or its whole transaction
/// (to its `EXEC` or `DISCARD`, or the end of the batch: the input keeps a
/// transaction in one batch).
fn unit_at(batch: &Batch, index: usize) -> std::ops::Range<usize> {
    let command = batch.commands[index];
    if command.kind != CommandKind::Multi || matches!(command.expect, Expect::Rejected(_)) {
        return index..index + 1;
    }
    let end = batch.commands[index + 1..]
        .iter()
        .position(|command| command.kind == CommandKind::EndMulti)
        .map_or(batch.commands.len(), |offset| index + 1 + offset + 1);
    index..end
}

/// A transaction (sent to lane 0 alone) sets connection state: the other
/// lanes cannot be set up alike, as it may not have run (`DISCARD`, an
/// aborted `EXEC`).
fn sets_up_connection(batch: &Batch, unit: std::ops::Range<usize>) -> bool {
    unit.len() > 1 && unit.into_iter().any(|index| is_session(batch, index))
}

/// Command `index` is `name` (and not refused).
fn is_named(batch: &Batch, index: usize, name: &[u8]) -> bool {
    !matches!(batch.commands[index].expect, Expect::Rejected(_))
        && command_args(&batch.bytes[batch.command_range(index)])
            .first()
            .is_some_and(|first| first.eq_ignore_ascii_case(name))
}

/// `RESET`: back to database 0, replies on, no watch, on its connection.
fn is_reset(batch: &Batch, index: usize) -> bool {
    is_named(batch, index, b"RESET")
}

/// Command `index` sets up its connection (`SELECT`, `AUTH`, `HELLO`,
/// `CLIENT SETNAME`, `RESET`), so every connection must get it.
fn is_session(batch: &Batch, index: usize) -> bool {
    let command = batch.commands[index];
    if matches!(command.expect, Expect::Rejected(_)) {
        return false;
    }
    if matches!(
        command.kind,
        CommandKind::Auth | CommandKind::Hello | CommandKind::Select
    ) {
        return true;
    }
    let args = command_args(&batch.bytes[batch.command_range(index)]);
    let name = args.first().copied().unwrap_or_default();
    name.eq_ignore_ascii_case(b"RESET")
        || name.eq_ignore_ascii_case(b"CLIENT")
            && args.get(1).is_some_and(|sub| {
                sub.eq_ignore_ascii_case(b"SETNAME") || sub.eq_ignore_ascii_case(b"SETINFO")
            })
}
