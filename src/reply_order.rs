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
//! - A failure to write is reported once, stops the load, and nothing more
//!   is written: the summary then says where to resume.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Result;

use crate::config::{RepliesFormat, RepliesOptions, RepliesTarget};
use crate::io_error::describe_io_error;
use crate::stop::{Stop, StopReason};
use crate::summary::report;

/// Bytes of formatted lines held for an earlier command before the router
/// waits: several windows' worth of replies.
const HELD_BYTES_LIMIT: usize = 32 * 1024 * 1024;

/// How long the router sleeps between looks at a stop while it waits.
const STOP_CHECK: Duration = Duration::from_millis(50);

const WRITE_BUFFER: usize = 256 * 1024;

pub struct RepliesOut {
    pub format: RepliesFormat,
    state: Mutex<Order>,
    /// Signalled when held lines were written.
    room: Condvar,
    /// The file's name as messages show it.
    name: String,
}

struct Order {
    /// `None` once writing failed.
    writer: Option<BufWriter<Box<dyn Write + Send>>>,
    /// The input number of the next command whose line is due.
    next: u64,
    /// Lines of later commands, by input number; `None`: no line.
    held: BTreeMap<u64, Option<Vec<u8>>>,
    held_bytes: usize,
    /// Lines written so far.
    written: u64,
    /// Why writing failed.
    failure: Option<String>,
}

impl RepliesOut {
    /// Creates (truncates) the file, or takes stdout. `skip`: commands at
    /// the start of the input not sent (`--skip`).
    pub fn create(options: &RepliesOptions, skip: u64) -> Result<Self> {
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
        Ok(RepliesOut {
            format: options.format,
            state: Mutex::new(Order {
                writer: Some(BufWriter::with_capacity(WRITE_BUFFER, writer)),
                next: skip.saturating_add(1),
                held: BTreeMap::new(),
                held_bytes: 0,
                written: 0,
                failure: None,
            }),
            room: Condvar::new(),
            name,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Order> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Input command `seq` is settled, with `line` (or none) to write.
    pub fn settled(&self, seq: u64, line: Option<&[u8]>, stop: &Stop) {
        let mut guard = self.lock();
        let order = &mut *guard;
        if seq < order.next {
            return;
        }
        if seq > order.next {
            if !order.held.contains_key(&seq) {
                order.held_bytes += line.map_or(0, <[u8]>::len);
                order.held.insert(seq, line.map(<[u8]>::to_vec));
            }
            return;
        }
        order.next += 1;
        let mut failed = order.write(line);
        let mut released = false;
        while let Some(entry) = order.held.first_entry() {
            if *entry.key() != order.next {
                break;
            }
            let line = entry.remove();
            order.next += 1;
            order.held_bytes -= line.as_ref().map_or(0, Vec::len);
            released = true;
            if failed.is_none() {
                failed = order.write(line.as_deref());
            }
        }
        drop(guard);
        if released {
            self.room.notify_all();
        }
        if let Some(error) = failed {
            self.failed(&error, stop);
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

    /// Flushes what was written; at the end of the load, reports the lines
    /// held for commands after one that was never settled. Returns the
    /// write failure, if writing failed (reported already).
    pub fn finish(&self, stop: &Stop) -> Option<String> {
        let mut order = self.lock();
        let failed = order
            .writer
            .as_mut()
            .and_then(|writer| writer.flush().err());
        let held = order.held.values().filter(|line| line.is_some()).count();
        if held > 0 {
            report(&format!(
                "pipeload: {held} replies not written to {}: they answer commands after input command {}, which was never answered",
                self.name, order.next
            ));
        }
        order.held.clear();
        order.held_bytes = 0;
        drop(order);
        if let Some(error) = failed {
            self.failed(&error, stop);
        }
        self.lock().failure.clone()
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.lock().written
    }

    fn failed(&self, error: &io::Error, stop: &Stop) {
        let mut order = self.lock();
        if order.writer.take().is_none() {
            return;
        }
        let failure = format!(
            "cannot write the replies to {}: {}",
            self.name,
            describe_io_error(error)
        );
        order.failure = Some(failure.clone());
        drop(order);
        report(&format!("pipeload: {failure}"));
        stop.request(StopReason::RepliesUnwritable);
    }
}

impl Order {
    fn write(&mut self, line: Option<&[u8]>) -> Option<io::Error> {
        let (Some(writer), Some(line)) = (self.writer.as_mut(), line) else {
            return None;
        };
        self.written += 1;
        writer.write_all(line).err()
    }
}
