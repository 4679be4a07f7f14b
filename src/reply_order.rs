//! `--replies`: the one place replies are written out, in input order,
//! whichever connection they came back on.
//!
//! Place in the data flow: the replies-out handler of every reply reader
//! gathers, for each input command settled, the command's number in the
//! input (`Batch::seq`) and its formatted reply, or no line (a refused
//! line, a command sent while `CLIENT REPLY OFF|SKIP` was in effect), in a
//! `LaneLines` of its own, and hands them over together (`hand_over`)
//! before its reader waits for the socket, so the shared state is locked
//! once per read, not once per reply. It writes the line of the next
//! command in input order at once and keeps a later one until every
//! earlier command has been settled: with one connection replies come in
//! input order and nothing waits (a run of lines that follows on what was
//! written goes out as it is, no copy); with `-c` a node ahead of the
//! others waits for them here. A connection settles its commands in input
//! order but for a redirect or a resend, so its held lines queue in the
//! buffers its reader handed over (kept as they are, a few reused), and
//! the line due is at the head of one queue (or in a map, for the few out
//! of order).
//!
//! Invariants:
//! - Each input command's line is written at most once: a command settled
//!   again (a transaction resent from its `MULTI` after a reconnect) finds
//!   its number already passed and is dropped.
//! - Memory stays bounded: the router calls `wait_for_room` before it hands
//!   out the next input batch, so the lines held here are at most
//!   `HELD_BYTES_LIMIT` plus the replies of what was handed out before
//!   (bounded by each connection's window and batch channel). The reply
//!   readers themselves never wait here, so the command everyone waits for
//!   is always being read.
//! - Lines due are gathered into 256 KiB chunks that a thread of its own
//!   writes to the file, so the reply readers do not wait on each write; a
//!   bounded channel of chunks keeps the memory flat, so a file (or a
//!   `--replies -` reader) slower than the server holds the load back
//!   rather than grow. A quit (second Ctrl-C) is not held back by it. When
//!   replies come slowly, what is due is written within `IDLE_FLUSH`.
//! - A failure to write is reported once, stops the load, and nothing more
//!   is written: the summary then says where to resume. A reader that went
//!   away (a broken pipe: `--replies - | head`) stops the load the same
//!   way, but is no error: it had what it wanted.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, bounded};

use crate::config::{RepliesFormat, RepliesOptions, RepliesTarget, Source};
use crate::io_error::describe_io_error;
use crate::output_file::{Readers, create_output};
use crate::stop::{Stop, StopReason};
use crate::summary::report;

/// Bytes of formatted lines held for an earlier command before the router
/// waits: a few windows' worth of replies.
const HELD_BYTES_LIMIT: usize = 8 * 1024 * 1024;

/// How long the router sleeps between looks at a stop while it waits.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Lines due are handed to the file writer in chunks of this size...
const CHUNK: usize = 256 * 1024;
/// The room a buffer of lines is made with: a chunk, and what the line
/// that fills it may need beyond it, so that it rarely has to grow.
const BUFFER: usize = CHUNK + CHUNK / 4;
/// ...at most this many waiting for it.
const CHUNKS_WAITING: usize = 4;
/// When no chunk has filled for this long, what is due is written anyway.
const IDLE_FLUSH: Duration = Duration::from_millis(100);

/// The lines one reply reader settled since it last handed them over, in
/// the order it settled them, back to back in one buffer.
#[derive(Default)]
pub struct LaneLines {
    bytes: Vec<u8>,
    /// Per command: its input number and the offset of its line's end; an
    /// empty line is no line.
    lines: Vec<(u64, usize)>,
    /// Whether each command's number is the one before it plus one...
    consecutive: bool,
    /// ...or at least above it.
    increasing: bool,
}

impl LaneLines {
    /// Appends command `seq`'s line, which `format` writes.
    #[inline]
    pub fn push_line(&mut self, seq: u64, format: impl FnOnce(&mut Vec<u8>)) {
        format(&mut self.bytes);
        self.push_no_line(seq);
    }

    /// Command `seq` was settled with no line.
    #[inline]
    pub fn push_no_line(&mut self, seq: u64) {
        (self.consecutive, self.increasing) = match self.lines.last() {
            Some(&(last, _)) => (
                self.consecutive && last.checked_add(1) == Some(seq),
                self.increasing && seq > last,
            ),
            None => (true, true),
        };
        self.lines.push((seq, self.bytes.len()));
    }

    /// Whether the bytes gathered are enough to hand over now.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.bytes.len() >= CHUNK
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Room for a chunk of lines.
    pub fn with_room() -> Self {
        LaneLines::with_capacity(BUFFER)
    }

    fn with_capacity(bytes: usize) -> Self {
        LaneLines {
            bytes: Vec::with_capacity(bytes),
            ..LaneLines::default()
        }
    }

    /// Where line `index` starts in `bytes`.
    fn start_of(&self, index: usize) -> usize {
        match index.checked_sub(1) {
            Some(before) => self.lines.get(before).map_or(0, |&(_, end)| end),
            None => 0,
        }
    }

    /// The command number and line (`None`: no line) at `index`.
    fn line(&self, index: usize) -> Option<(u64, Option<&[u8]>)> {
        let &(seq, end) = self.lines.get(index)?;
        let line = self
            .bytes
            .get(self.start_of(index)..end)
            .unwrap_or_default();
        Some((seq, (!line.is_empty()).then_some(line)))
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.lines.clear();
    }
}

pub struct RepliesOut {
    pub format: RepliesFormat,
    /// Shared with the file writer, which takes a chunk not yet full when
    /// replies stop coming for a moment.
    state: Arc<Mutex<Order>>,
    /// Signalled when held lines were written.
    room: Condvar,
    /// Chunks the file writer is done with, to fill again.
    spare: Receiver<Vec<u8>>,
    file_writer: Mutex<Option<JoinHandle<()>>>,
    /// Why writing failed (reported already).
    failure: Arc<Mutex<Option<String>>>,
    /// The input number up to which every command's line was written (the
    /// commands `--skip` passed over count as written).
    written_through: Arc<AtomicU64>,
    stop: Arc<Stop>,
}

struct Order {
    /// The input number of the next command whose line is due.
    next: u64,
    /// Lines of later commands, per connection, in the order it settled
    /// them (input order, but for a redirected or resent command).
    lanes: Vec<LaneQueue>,
    /// Lines of later commands that came out of their lane's order, by
    /// input number; `None`: no line.
    out_of_order: BTreeMap<u64, Option<Vec<u8>>>,
    /// Bytes of the lines held, in `lanes` and `out_of_order`.
    held_bytes: usize,
    /// Lines due, not yet handed to the file writer.
    chunk: Vec<u8>,
    /// Buffers of held lines, all written, for the next lines held.
    spare_lines: Vec<LaneLines>,
    /// To the file writer; `None` once it failed or was finished.
    to_file: Option<Sender<Chunk>>,
}

/// Lines for the file writer: every line of the commands up to input
/// number `through` not in an earlier chunk.
struct Chunk {
    bytes: Vec<u8>,
    through: u64,
}

impl RepliesOut {
    /// Creates (truncates) the file, or takes stdout, and starts the thread
    /// that writes to it. `skip`: commands at the start of the input not
    /// sent (`--skip`).
    /// Refuses a file that is one of the `sources`: emptying it would
    /// lose the input.
    pub fn create(
        options: &RepliesOptions,
        sources: &[Source],
        skip: u64,
        stop: Arc<Stop>,
    ) -> Result<Self> {
        let (writer, file, name): (Box<dyn Write + Send>, _, String) = match &options.target {
            RepliesTarget::Stdout => (Box::new(io::stdout()), None, "stdout".to_owned()),
            RepliesTarget::File(path) => {
                let file = create_output(path, "--replies", sources, Readers::Anyone)?;
                let to_cut = file.try_clone().ok();
                (Box::new(file), to_cut, path.display().to_string())
            }
        };
        let mut out = ChunkWriter {
            writer,
            file,
            written_through: Arc::new(AtomicU64::new(skip)),
            bytes_written: 0,
        };
        let written_through = Arc::clone(&out.written_through);
        let (to_file, chunks) = bounded::<Chunk>(CHUNKS_WAITING);
        let (give_back, spare) = bounded::<Vec<u8>>(CHUNKS_WAITING + 1);
        let failure = Arc::new(Mutex::new(None));
        let state = Arc::new(Mutex::new(Order {
            next: skip.saturating_add(1),
            lanes: Vec::new(),
            out_of_order: BTreeMap::new(),
            held_bytes: 0,
            chunk: Vec::with_capacity(BUFFER),
            spare_lines: Vec::new(),
            to_file: Some(to_file),
        }));
        let file_writer = {
            let (failure, stop) = (Arc::clone(&failure), Arc::clone(&stop));
            let state = Arc::clone(&state);
            thread::Builder::new()
                .name("replies".into())
                .spawn(move || match write_chunks(&mut out, &chunks, &give_back, &state) {
                    Ok(()) => {}
                    // `--replies - | head`: the reader has what it wanted.
                    Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                        report(&format!(
                            "pipeload: the reader of the replies ({name}) stopped reading: no more commands are sent"
                        ));
                        stop.request(StopReason::RepliesReaderGone);
                    }
                    Err(error) => {
                        out.cut_to_whole_chunks();
                        let message = format!(
                            "cannot write the replies to {name}: {}",
                            describe_io_error(&error)
                        );
                        report(&format!("pipeload: {message}"));
                        *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(message);
                        stop.request(StopReason::RepliesUnwritable);
                    }
                })
                .context("cannot start the replies writer thread")?
        };
        Ok(RepliesOut {
            format: options.format,
            state,
            room: Condvar::new(),
            spare,
            file_writer: Mutex::new(Some(file_writer)),
            failure,
            written_through,
            stop,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Order> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The commands in `lines` are settled on connection `lane`: their
    /// lines are written if due, else held; `lines` is left empty. A run of
    /// consecutive commands that starts with the one due (every load with
    /// one connection) becomes the chunk itself, with no copy.
    pub fn hand_over(&self, lane: usize, lines: &mut LaneLines) {
        if lines.is_empty() {
            return;
        }
        let mut guard = self.lock();
        let order = &mut *guard;
        let mut released = false;
        match lines.lines.first() {
            Some(&(first, _)) if lines.consecutive && first == order.next => {
                let commands = lines.lines.len() as u64;
                self.take_run(order, &mut lines.bytes, commands);
            }
            _ => {
                // The lines due (or written already) go one by one; at the
                // first one ahead, the rest is held.
                let mut index = 0;
                while let Some((seq, line)) = lines.line(index)
                    && seq <= order.next
                {
                    released |= self.settled(order, lane, seq, line);
                    index += 1;
                }
                if index < lines.lines.len() {
                    released |= self.hold_rest(order, lane, lines, index);
                }
            }
        }
        lines.clear();
        while order.write_next() {
            released = true;
            self.chunk_written(order);
        }
        drop(guard);
        if released {
            self.room.notify_all();
        }
    }

    /// Input command `seq` is settled on connection `lane`, with `line` or
    /// none: written if due, else held. Returns whether held lines were
    /// written after it.
    fn settled(&self, order: &mut Order, lane: usize, seq: u64, line: Option<&[u8]>) -> bool {
        if seq < order.next {
            return false;
        }
        if seq > order.next {
            order.hold(lane, seq, line);
            return false;
        }
        order.next += 1;
        if let Some(line) = line {
            order.chunk.extend_from_slice(line);
            self.chunk_written(order);
        }
        let mut released = false;
        while order.write_next() {
            released = true;
            self.chunk_written(order);
        }
        released
    }

    /// Holds the lines of `lines` from `from` on, the first of them ahead
    /// of the one due: when they follow on what the lane holds in order (a
    /// lane settles in input order but for a redirect or a resend) and
    /// fill a good part of their buffer, the buffer itself joins the lane's
    /// queue, replaced by a spare one; otherwise each is settled alone (so
    /// small runs are copied together, and what is held stays close to the
    /// memory it takes). Returns whether held lines were written.
    fn hold_rest(
        &self,
        order: &mut Order,
        lane: usize,
        lines: &mut LaneLines,
        from: usize,
    ) -> bool {
        let queue = order.lane(lane);
        let first_ahead = lines.line(from).map(|(seq, _)| seq);
        let rest_bytes = lines.bytes.len() - lines.start_of(from);
        if lines.increasing
            && rest_bytes >= lines.bytes.capacity() / 4
            && first_ahead.is_some_and(|first| queue.last_seq.is_none_or(|last| first > last))
        {
            let spare = order.spare_lines.pop().unwrap_or_else(LaneLines::with_room);
            let held = std::mem::replace(lines, spare);
            order.held_bytes += order.lane(lane).push_run(held, from);
            return false;
        }
        let mut released = false;
        let mut index = from;
        while let Some((seq, line)) = lines.line(index) {
            released |= self.settled(order, lane, seq, line);
            index += 1;
        }
        released
    }

    /// Puts the lines of a run due (of `commands` commands, the first the
    /// one due) at the end of what is to be written: they become the chunk
    /// (the chunk so far is handed to the file writer first), but for a
    /// small run after a small chunk, which is copied there (each hand-over
    /// to the writer wakes it). `run` is left empty, with room for a chunk.
    fn take_run(&self, order: &mut Order, run: &mut Vec<u8>, commands: u64) {
        let small = CHUNK / 4;
        if !order.chunk.is_empty() && (order.chunk.len() >= small || run.len() >= small) {
            let before = std::mem::take(&mut order.chunk);
            self.send_chunk(order, before);
        }
        order.next = order.next.saturating_add(commands);
        if order.chunk.is_empty() {
            std::mem::swap(&mut order.chunk, run);
        } else {
            order.chunk.extend_from_slice(run);
            run.clear();
        }
        self.chunk_written(order);
        if run.capacity() < BUFFER {
            *run = self.spare_chunk();
        }
    }

    /// An empty buffer for a chunk: one the file writer is done with, if
    /// there is one.
    fn spare_chunk(&self) -> Vec<u8> {
        self.spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BUFFER))
    }

    /// Hands the chunk to the file writer once it is full (waiting while
    /// the writer has enough to do).
    fn chunk_written(&self, order: &mut Order) {
        if order.chunk.len() >= CHUNK {
            let full = std::mem::replace(&mut order.chunk, self.spare_chunk());
            self.send_chunk(order, full);
        }
    }

    /// Hands a chunk, every line due so far, to the file writer, waiting
    /// while it has enough to do (the reply readers wait with it: a slow
    /// file holds the load back, and the reply-byte window bounds what the
    /// server holds meanwhile). A quit (a second Ctrl-C) drops the chunk
    /// rather than wait on.
    fn send_chunk(&self, order: &mut Order, bytes: Vec<u8>) {
        let mut chunk = Chunk {
            bytes,
            through: order.next - 1,
        };
        let mut handed = false;
        while let Some(to_file) = &order.to_file {
            match to_file.send_timeout(chunk, STOP_CHECK) {
                Ok(()) => handed = true,
                Err(SendTimeoutError::Timeout(unsent)) if !self.stop.is_quit() => {
                    chunk = unsent;
                    continue;
                }
                Err(_) => {}
            }
            break;
        }
        if !handed {
            // The writer failed (and said so): nothing more is written.
            order.to_file = None;
            order.chunk = Vec::new();
        }
    }

    /// Waits while the lines held for earlier commands are over the limit,
    /// or until the load stops. `never_settled` tells the first command
    /// known never to settle (a cluster redirect for a lane that had
    /// ended): once the command due is at or past it, nothing that is
    /// held can be written before the end, and waiting would stop the load
    /// for good, so the router goes on (what is held is then reported at
    /// the end, not written).
    pub fn wait_for_room(&self, stop: &Stop, never_settled: &dyn Fn() -> Option<u64>) {
        let mut order = self.lock();
        while order.held_bytes > HELD_BYTES_LIMIT
            && !stop.is_requested()
            && never_settled().is_none_or(|seq| seq > order.next)
        {
            order = self
                .room
                .wait_timeout(order, STOP_CHECK)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The input number up to which every command's line is written; the
    /// resume point is never after it, so a load resumed there writes the
    /// lines this one did not.
    pub fn written_through(&self) -> u64 {
        self.written_through.load(Ordering::Acquire)
    }

    /// At the end of the load: writes what is due, waits for the file
    /// writer to finish, and reports the lines held for commands after one
    /// that was never settled. Returns the write failure, if writing
    /// failed (reported already).
    pub fn finish(&self) -> Option<String> {
        let mut order = self.lock();
        // Sent even empty when commands with no line settled since the
        // last chunk: the writer then knows they are done too.
        let last = std::mem::take(&mut order.chunk);
        if !last.is_empty() || order.next - 1 > self.written_through() {
            self.send_chunk(&mut order, last);
        }
        // Closing the channel ends the file writer once it has written all.
        order.to_file = None;
        let held = order
            .out_of_order
            .values()
            .filter(|line| line.is_some())
            .count()
            + order.lanes.iter().map(LaneQueue::lines).sum::<usize>();
        if held > 0 {
            report(&format!(
                "pipeload: {held} replies not written: they answer commands after input command {}, which was never answered",
                order.next
            ));
        }
        order.out_of_order.clear();
        order.lanes.clear();
        order.held_bytes = 0;
        drop(order);
        let file_writer = self
            .file_writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(file_writer) = file_writer {
            // A file (or a `--replies -` reader) that takes no more would
            // hold the summary back for ever: a quit does not wait for it.
            while !file_writer.is_finished() {
                if self.stop.is_quit() {
                    let dropped = "quit at once: replies still to be written were dropped";
                    report(&format!("pipeload: {dropped}"));
                    return Some(dropped.into());
                }
                thread::sleep(STOP_CHECK);
            }
            if file_writer.join().is_err() {
                self.stop.request(StopReason::RepliesUnwritable);
                return Some("internal error: the replies writer thread panicked".into());
            }
        }
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Spare buffers of held lines kept for reuse, at most.
const SPARE_LINES: usize = 8;

impl Order {
    /// The queue of lines held for connection `lane`.
    fn lane(&mut self, lane: usize) -> &mut LaneQueue {
        if self.lanes.len() <= lane {
            self.lanes.resize_with(lane + 1, LaneQueue::default);
        }
        &mut self.lanes[lane]
    }

    /// Keeps the line of command `seq`, settled on `lane` before its turn.
    fn hold(&mut self, lane: usize, seq: u64, line: Option<&[u8]>) {
        let queue = self.lane(lane);
        if queue.last_seq.is_none_or(|last| seq > last) {
            let len = line.map_or(0, <[u8]>::len);
            let spare = &mut self.spare_lines;
            let queue = &mut self.lanes[lane];
            queue.push(seq, line, || {
                spare.pop().unwrap_or_else(LaneLines::with_room)
            });
            self.held_bytes += len;
            return;
        }
        if self.out_of_order.contains_key(&seq) {
            return;
        }
        self.held_bytes += line.map_or(0, <[u8]>::len);
        self.out_of_order.insert(seq, line.map(<[u8]>::to_vec));
    }

    /// Moves the held line of the command whose turn it is, if it was
    /// settled, to the chunk; false when it was not.
    fn write_next(&mut self) -> bool {
        let next = self.next;
        self.drop_passed(next);
        if let Some(entry) = self.out_of_order.first_entry()
            && *entry.key() == next
        {
            if let Some(line) = entry.remove() {
                self.held_bytes -= line.len();
                self.chunk.extend_from_slice(&line);
            }
            self.next += 1;
            return true;
        }
        let Some(queue) = self
            .lanes
            .iter_mut()
            .find(|queue| queue.front_seq() == Some(next))
        else {
            return false;
        };
        let line = queue.front_line();
        self.chunk.extend_from_slice(line);
        self.held_bytes -= line.len();
        if let Some(done) = queue.pop_front() {
            recycle(&mut self.spare_lines, done);
        }
        self.next += 1;
        true
    }

    /// Drops held lines of commands before `next`: a second settling (a
    /// transaction resent from its `MULTI`) of a command written already.
    fn drop_passed(&mut self, next: u64) {
        while let Some(entry) = self.out_of_order.first_entry()
            && *entry.key() < next
        {
            if let Some(line) = entry.remove() {
                self.held_bytes -= line.len();
            }
        }
        for queue in &mut self.lanes {
            while queue.front_seq().is_some_and(|seq| seq < next) {
                self.held_bytes -= queue.front_line().len();
                if let Some(done) = queue.pop_front() {
                    recycle(&mut self.spare_lines, done);
                }
            }
        }
    }
}

/// Keeps a buffer of held lines, all written, for reuse (a few at most).
fn recycle(spare_lines: &mut Vec<LaneLines>, mut done: LaneLines) {
    if spare_lines.len() < SPARE_LINES {
        done.clear();
        spare_lines.push(done);
    }
}

/// The lines one connection settled before their turn, in the order it
/// settled them: the buffers its reader handed over, kept as they were (no
/// copy, no allocation per line), each read from a cursor on.
#[derive(Default)]
struct LaneQueue {
    buffers: VecDeque<HeldLines>,
    /// The input number of the last line pushed.
    last_seq: Option<u64>,
}

struct HeldLines {
    lines: LaneLines,
    /// The index in `lines` of the first line not taken.
    taken: usize,
}

impl LaneQueue {
    /// Appends the line of command `seq`, to the last buffer while it has
    /// room, else to a new one `spare` gives.
    fn push(&mut self, seq: u64, line: Option<&[u8]>, spare: impl FnOnce() -> LaneLines) {
        if self.buffers.back().is_none_or(|held| held.lines.is_full()) {
            self.buffers.push_back(HeldLines {
                lines: spare(),
                taken: 0,
            });
        }
        if let Some(held) = self.buffers.back_mut() {
            match line {
                Some(line) => held
                    .lines
                    .push_line(seq, |bytes| bytes.extend_from_slice(line)),
                None => held.lines.push_no_line(seq),
            }
        }
        self.last_seq = Some(seq);
    }

    /// Appends the lines of `lines` from `from` on, whose numbers increase
    /// from above `last_seq`; returns their length in bytes.
    fn push_run(&mut self, lines: LaneLines, from: usize) -> usize {
        let len = lines.bytes.len().saturating_sub(lines.start_of(from));
        if let Some(&(last, _)) = lines.lines.last() {
            self.last_seq = Some(last);
        }
        self.buffers.push_back(HeldLines { lines, taken: from });
        len
    }

    fn front(&self) -> Option<(u64, Option<&[u8]>)> {
        let held = self.buffers.front()?;
        held.lines.line(held.taken)
    }

    fn front_seq(&self) -> Option<u64> {
        self.front().map(|(seq, _)| seq)
    }

    /// The first line's bytes (empty: the command has no line).
    fn front_line(&self) -> &[u8] {
        self.front().and_then(|(_, line)| line).unwrap_or_default()
    }

    /// Takes the first line; returns its buffer once all of it is taken.
    fn pop_front(&mut self) -> Option<LaneLines> {
        let held = self.buffers.front_mut()?;
        held.taken += 1;
        if held.taken < held.lines.lines.len() {
            return None;
        }
        self.buffers.pop_front().map(|held| held.lines)
    }

    /// How many lines it holds (commands held with no line not counted).
    fn lines(&self) -> usize {
        self.buffers
            .iter()
            .map(|held| {
                (held.taken..held.lines.lines.len())
                    .filter(|&index| {
                        held.lines
                            .line(index)
                            .is_some_and(|(_, line)| line.is_some())
                    })
                    .count()
            })
            .sum()
    }
}

/// The file (or stdout) and how far the lines written to it reach.
struct ChunkWriter {
    writer: Box<dyn Write + Send>,
    /// The file again (not stdout), to cut a chunk written in part.
    file: Option<File>,
    written_through: Arc<AtomicU64>,
    bytes_written: u64,
}

impl ChunkWriter {
    fn write(&mut self, bytes: &[u8], through: u64) -> io::Result<()> {
        self.writer.write_all(bytes)?;
        self.bytes_written += bytes.len() as u64;
        self.written_through.store(through, Ordering::Release);
        Ok(())
    }

    /// After a failed write (a full disk): the file is cut back to the
    /// chunks written whole, so it holds the lines of every command up to
    /// `written_through`, where the resume point then is, and no part of a
    /// line. Best effort: the failure is reported either way.
    fn cut_to_whole_chunks(&self) {
        if let Some(file) = &self.file {
            let _ = file.set_len(self.bytes_written);
        }
    }
}

/// The file writer's life: every chunk in order, then a flush. When no
/// chunk comes for `IDLE_FLUSH` it writes what is due so far, so that a
/// reader of a slow stream (`tail -f log | pipeload --replies -`) sees
/// each reply soon after it came.
fn write_chunks(
    out: &mut ChunkWriter,
    chunks: &Receiver<Chunk>,
    give_back: &Sender<Vec<u8>>,
    state: &Mutex<Order>,
) -> io::Result<()> {
    loop {
        match chunks.recv_timeout(IDLE_FLUSH) {
            Ok(Chunk { mut bytes, through }) => {
                out.write(&bytes, through)?;
                bytes.clear();
                let _ = give_back.try_send(bytes);
            }
            Err(RecvTimeoutError::Timeout) => {
                // A reader that holds the lock is busy: no need. Chunks are
                // handed over under the lock, so with it held and none
                // waiting, the partial chunk is the next in order.
                let (partial, through) = match state.try_lock() {
                    Ok(mut order) if chunks.is_empty() => {
                        (std::mem::take(&mut order.chunk), order.next - 1)
                    }
                    _ => continue,
                };
                out.write(&partial, through)?;
                if !partial.is_empty() {
                    out.writer.flush()?;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return out.writer.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written_by(settle: impl FnOnce(&RepliesOut)) -> String {
        written_after_skip(0, settle).0
    }

    /// What the file holds after `settle`, the input's first `skip`
    /// commands passed over, and how far the lines written reach.
    fn written_after_skip(skip: u64, settle: impl FnOnce(&RepliesOut)) -> (String, u64) {
        let path = std::env::temp_dir().join(format!(
            "pipeload-reply-order-{}-{:?}",
            std::process::id(),
            thread::current().id()
        ));
        let options = RepliesOptions {
            target: RepliesTarget::File(path.clone()),
            format: RepliesFormat::Raw,
        };
        let out = RepliesOut::create(&options, &[], skip, Arc::new(Stop::default())).unwrap();
        settle(&out);
        assert_eq!(out.finish(), None);
        let written = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        (written, out.written_through())
    }

    fn line(out: &RepliesOut, lane: usize, seq: u64) {
        let mut lines = LaneLines::with_room();
        lines.push_line(seq, |buffer| {
            buffer.extend_from_slice(format!("{seq}\n").as_bytes())
        });
        out.hand_over(lane, &mut lines);
    }

    fn no_line(out: &RepliesOut, lane: usize, seq: u64) {
        let mut lines = LaneLines::with_room();
        lines.push_no_line(seq);
        out.hand_over(lane, &mut lines);
    }

    /// Lines handed over together, as a reader hands them after a read.
    fn lines(out: &RepliesOut, lane: usize, seqs: &[u64]) {
        let mut lines = LaneLines::with_room();
        for &seq in seqs {
            lines.push_line(seq, |buffer| {
                buffer.extend_from_slice(format!("{seq}\n").as_bytes())
            });
        }
        out.hand_over(lane, &mut lines);
    }

    /// A disk that fills after `room` bytes.
    struct FillsUp {
        file: File,
        room: usize,
    }

    impl Write for FillsUp {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from_raw_os_error(28));
            }
            let taken = self.file.write(&bytes[..bytes.len().min(self.room)])?;
            self.room -= taken;
            Ok(taken)
        }

        fn flush(&mut self) -> io::Result<()> {
            self.file.flush()
        }
    }

    #[test]
    fn a_chunk_written_in_part_is_cut_off_and_not_counted() {
        let path = std::env::temp_dir().join(format!("pipeload-reply-cut-{}", std::process::id()));
        let file = File::create(&path).unwrap();
        let mut out = ChunkWriter {
            file: Some(file.try_clone().unwrap()),
            writer: Box::new(FillsUp { file, room: 10 }),
            written_through: Arc::new(AtomicU64::new(3)),
            bytes_written: 0,
        };
        out.write(b"4\n5\n", 5).unwrap();
        assert!(out.write(b"6\n7\n8\n9\n", 9).is_err());
        out.cut_to_whole_chunks();
        assert_eq!(out.written_through.load(Ordering::Acquire), 5);
        assert_eq!(std::fs::read(&path).unwrap(), b"4\n5\n");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn commands_with_no_line_at_the_end_count_as_written() {
        let (written, written_through) = written_after_skip(2, |out| {
            assert_eq!(out.written_through(), 2);
            line(out, 0, 3);
            no_line(out, 0, 4);
            no_line(out, 0, 5);
        });
        assert_eq!(written_through, 5);
        assert_eq!(written, "3\n");
    }

    #[test]
    fn lines_from_several_lanes_come_out_in_input_order() {
        let written = written_by(|out| {
            line(out, 1, 2);
            line(out, 2, 3);
            no_line(out, 2, 5);
            line(out, 1, 4);
            line(out, 1, 6);
            line(out, 0, 1);
            line(out, 0, 7);
        });
        assert_eq!(written, "1\n2\n3\n4\n6\n7\n");
    }

    #[test]
    fn a_line_settled_again_is_written_once() {
        let written = written_by(|out| {
            // A transaction held on lane 1, resent there after a
            // reconnect: its lines come again, out of the lane's order.
            line(out, 1, 2);
            line(out, 1, 3);
            line(out, 1, 2);
            line(out, 1, 3);
            line(out, 1, 4);
            line(out, 0, 1);
            line(out, 0, 1);
            line(out, 1, 3);
            line(out, 0, 5);
        });
        assert_eq!(written, "1\n2\n3\n4\n5\n");
    }

    #[test]
    fn a_redirected_command_settles_on_another_lane_out_of_its_order() {
        let written = written_by(|out| {
            line(out, 1, 5);
            line(out, 1, 2);
            line(out, 2, 4);
            line(out, 0, 1);
            line(out, 2, 3);
        });
        assert_eq!(written, "1\n2\n3\n4\n5\n");
    }

    #[test]
    fn runs_handed_over_together_keep_input_order_and_each_line_once() {
        let written = written_by(|out| {
            lines(out, 1, &[3, 4, 6]);
            lines(out, 0, &[1, 2, 5]);
            // Consecutive and due: taken as a whole.
            lines(out, 0, &[7, 8, 9]);
            // Consecutive but written already, then one due after them.
            lines(out, 1, &[8, 9, 10]);
            lines(out, 2, &[12, 13]);
            lines(out, 0, &[11]);
        });
        let expected: String = (1..=13).map(|seq| format!("{seq}\n")).collect();
        assert_eq!(written, expected);
    }

    #[test]
    fn lines_never_settled_before_others_are_left_out() {
        let written = written_by(|out| {
            line(out, 0, 1);
            line(out, 1, 3);
        });
        assert_eq!(written, "1\n");
    }
}
