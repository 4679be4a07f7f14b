//! `--replies`: the one place replies are written out, in input order,
//! whichever connection they came back on.
//!
//! Place in the data flow: the replies-out handler of every reply reader
//! hands it, for each input command settled, the command's number in the
//! input (`Batch::seq`) and its formatted reply, or no line (a refused
//! line, a command sent while `CLIENT REPLY OFF|SKIP` was in effect). It
//! writes the line of the next command in input order at once and keeps a
//! later one until every earlier command has been settled: with one
//! connection replies come in input order and nothing waits; with `-c` a
//! node ahead of the others waits for them here.
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
//! - Lines due are gathered into chunks that a thread of its own writes to
//!   the file, so that a slow disk never stops the reply readers for long;
//!   a bounded channel of chunks keeps the memory flat.
//! - A failure to write is reported once, stops the load, and nothing more
//!   is written: the summary then says where to resume.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender, bounded};

use crate::config::{RepliesFormat, RepliesOptions, RepliesTarget};
use crate::io_error::describe_io_error;
use crate::stop::{Stop, StopReason};
use crate::summary::report;

/// Bytes of formatted lines held for an earlier command before the router
/// waits: a few windows' worth of replies.
const HELD_BYTES_LIMIT: usize = 8 * 1024 * 1024;

/// How long the router sleeps between looks at a stop while it waits.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Lines due are handed to the file writer in chunks of this size...
const CHUNK: usize = 1024 * 1024;
/// ...at most this many waiting for it.
const CHUNKS_WAITING: usize = 4;

/// Appends one command's line to the buffer it is given.
pub type LineWriter<'f> = &'f mut dyn FnMut(&mut Vec<u8>);

pub struct RepliesOut {
    pub format: RepliesFormat,
    state: Mutex<Order>,
    /// Signalled when held lines were written.
    room: Condvar,
    /// Chunks the file writer is done with, to fill again.
    spare: Receiver<Vec<u8>>,
    file_writer: Mutex<Option<JoinHandle<()>>>,
    /// Why writing failed (reported already).
    failure: Arc<Mutex<Option<String>>>,
    stop: Arc<Stop>,
}

struct Order {
    /// The input number of the next command whose line is due.
    next: u64,
    /// Lines of later commands, by input number; `None`: no line.
    held: BTreeMap<u64, Option<Vec<u8>>>,
    held_bytes: usize,
    /// Lines due, not yet handed to the file writer.
    chunk: Vec<u8>,
    /// To the file writer; `None` once it failed or was finished.
    to_file: Option<Sender<Vec<u8>>>,
}

impl RepliesOut {
    /// Creates (truncates) the file, or takes stdout, and starts the thread
    /// that writes to it. `skip`: commands at the start of the input not
    /// sent (`--skip`).
    pub fn create(options: &RepliesOptions, skip: u64, stop: Arc<Stop>) -> Result<Self> {
        let (writer, name): (Box<dyn Write + Send>, String) = match &options.target {
            RepliesTarget::Stdout => (Box::new(io::stdout()), "stdout".to_owned()),
            RepliesTarget::File(path) => {
                let file = File::create(path).map_err(|error| {
                    anyhow::anyhow!(
                        "cannot create {}: {}",
                        path.display(),
                        describe_io_error(&error)
                    )
                })?;
                (Box::new(file), path.display().to_string())
            }
        };
        let (to_file, chunks) = bounded::<Vec<u8>>(CHUNKS_WAITING);
        let (give_back, spare) = bounded::<Vec<u8>>(CHUNKS_WAITING + 1);
        let failure = Arc::new(Mutex::new(None));
        let file_writer = {
            let (failure, stop) = (Arc::clone(&failure), Arc::clone(&stop));
            thread::Builder::new()
                .name("replies".into())
                .spawn(move || {
                    if let Err(error) = write_chunks(writer, &chunks, &give_back) {
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
            state: Mutex::new(Order {
                next: skip.saturating_add(1),
                held: BTreeMap::new(),
                held_bytes: 0,
                chunk: Vec::with_capacity(CHUNK),
                to_file: Some(to_file),
            }),
            room: Condvar::new(),
            spare,
            file_writer: Mutex::new(Some(file_writer)),
            failure,
            stop,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Order> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Input command `seq` is settled; `format` appends its line, if it
    /// has one. A line due is formatted straight into the chunk for the
    /// file, a later one into a buffer of its own, held.
    pub fn settled(&self, seq: u64, format: Option<LineWriter<'_>>) {
        let mut guard = self.lock();
        let order = &mut *guard;
        if seq < order.next {
            return;
        }
        if seq > order.next {
            if !order.held.contains_key(&seq) {
                let line = format.map(|format| {
                    let mut line = Vec::new();
                    format(&mut line);
                    line
                });
                order.held_bytes += line.as_ref().map_or(0, Vec::len);
                order.held.insert(seq, line);
            }
            return;
        }
        order.next += 1;
        if let Some(format) = format {
            format(&mut order.chunk);
            self.chunk_written(order);
        }
        let mut released = false;
        while let Some(entry) = order.held.first_entry() {
            if *entry.key() != order.next {
                break;
            }
            let line = entry.remove();
            order.next += 1;
            released = true;
            if let Some(line) = line {
                order.held_bytes -= line.len();
                order.chunk.extend_from_slice(&line);
                self.chunk_written(order);
            }
        }
        drop(guard);
        if released {
            self.room.notify_all();
        }
    }

    /// Hands the chunk to the file writer once it is full (waiting while
    /// the writer has enough to do).
    fn chunk_written(&self, order: &mut Order) {
        if order.chunk.len() >= CHUNK {
            let empty = self
                .spare
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
            let full = std::mem::replace(&mut order.chunk, empty);
            self.hand_over(order, full);
        }
    }

    fn hand_over(&self, order: &mut Order, chunk: Vec<u8>) {
        let handed = order
            .to_file
            .as_ref()
            .is_some_and(|to_file| to_file.send(chunk).is_ok());
        if !handed {
            // The writer failed (and said so): nothing more is written.
            order.to_file = None;
            order.chunk = Vec::new();
        }
    }

    /// Waits while the lines held for earlier commands are over the limit,
    /// or until the load stops.
    pub fn wait_for_room(&self, stop: &Stop) {
        let mut order = self.lock();
        while order.held_bytes > HELD_BYTES_LIMIT && !stop.is_requested() {
            order = self
                .room
                .wait_timeout(order, STOP_CHECK)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// At the end of the load: writes what is due, waits for the file
    /// writer to finish, and reports the lines held for commands after one
    /// that was never settled. Returns the write failure, if writing
    /// failed (reported already).
    pub fn finish(&self) -> Option<String> {
        let mut order = self.lock();
        let last = std::mem::take(&mut order.chunk);
        if !last.is_empty() {
            self.hand_over(&mut order, last);
        }
        // Closing the channel ends the file writer once it has written all.
        order.to_file = None;
        let held = order.held.values().filter(|line| line.is_some()).count();
        if held > 0 {
            report(&format!(
                "pipeload: {held} replies not written: they answer commands after input command {}, which was never answered",
                order.next
            ));
        }
        order.held.clear();
        order.held_bytes = 0;
        drop(order);
        let file_writer = self
            .file_writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(file_writer) = file_writer
            && file_writer.join().is_err()
        {
            self.stop.request(StopReason::RepliesUnwritable);
            return Some("internal error: the replies writer thread panicked".into());
        }
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The file writer's life: every chunk in order, then a flush.
fn write_chunks(
    mut writer: Box<dyn Write + Send>,
    chunks: &Receiver<Vec<u8>>,
    give_back: &Sender<Vec<u8>>,
) -> io::Result<()> {
    for mut chunk in chunks {
        writer.write_all(&chunk)?;
        chunk.clear();
        let _ = give_back.try_send(chunk);
    }
    writer.flush()
}
