//! The router thread: takes the input's batches and splits them into one
//! batch per primary, by the hash slot of each command's first key.
//!
//! Place in the data flow: between input and the per-primary writers.
//! Commands keep their input positions (`Batch::command_nos`), so errors
//! still name their line. A `MULTI … EXEC` block goes whole to the node of
//! its first key; `FLUSHALL`/`FLUSHDB` go to every primary (their reply is
//! counted once); other keyless commands go to the first primary; `SELECT`
//! of a database other than 0 is refused, as a cluster has only db 0.

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender, select};

use super::keys::{KeyLookup, KeyPositions};
use super::slot::key_slot;
use super::topology::Topology;
use crate::batch::{Batch, CommandKind, Expect, Rejection};
use crate::conn::Stream;
use crate::control::{Value, query};
use crate::resp::command_args;
use crate::stop::Stop;

/// Where one command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Node(usize),
    EveryPrimary,
    Refused(Rejection),
}

pub struct Router<'a> {
    pub keys: KeyPositions,
    pub topology: &'a Topology,
    /// For `COMMAND GETKEYS`, when the metadata cannot find the keys.
    pub control: Stream,
    pub nodes: Vec<Sender<Batch>>,
    pub outstanding: &'a AtomicUsize,
}

impl Router<'_> {
    /// Routes every batch until the input ends or a stop is requested.
    /// Returns the highest command number (`Batch::seq`) up to which every
    /// command was handed to a node.
    pub fn run(mut self, input: &Receiver<Batch>, stop: &Stop) -> u64 {
        let mut delivered = 0;
        loop {
            let batch = select! {
                recv(input) -> batch => match batch {
                    Ok(batch) => batch,
                    Err(_) => return delivered,
                },
                recv(stop.woken()) -> _ => return delivered,
            };
            let Some(last) = batch.commands.len().checked_sub(1) else {
                continue;
            };
            if self.route_batch(&batch, stop).is_err() {
                // Part of this batch may have gone out; none of it counts.
                return delivered.min(batch.seq(0).saturating_sub(1));
            }
            delivered = delivered.max(batch.seq(last));
        }
    }

    /// Fails when the load is stopping: a stopped node's writer takes no
    /// more batches, so a send to it must not wait forever.
    fn route_batch(&mut self, batch: &Batch, stop: &Stop) -> Result<(), ()> {
        let mut split: Vec<Batch> = (0..self.nodes.len())
            .map(|_| Batch::new(batch.source, batch.seq_offset, 0, 0))
            .collect();
        let mut transaction: Option<Vec<usize>> = None;
        for index in 0..batch.commands.len() {
            let command = batch.commands[index];
            if let Some(block) = transaction.as_mut() {
                block.push(index);
                if command.kind == CommandKind::EndMulti {
                    let block = std::mem::take(block);
                    transaction = None;
                    self.route_transaction(batch, &block, &mut split);
                }
                continue;
            }
            if command.kind == CommandKind::Multi {
                transaction = Some(vec![index]);
                continue;
            }
            match self.route(batch, index) {
                Route::Node(node) => split[node].push_copy(batch, index, None),
                Route::Refused(why) => {
                    split[0].push_copy(batch, index, Some(Expect::Rejected(why)))
                }
                Route::EveryPrimary => {
                    for (node, target) in split.iter_mut().enumerate() {
                        // One reply counts for the input's one command.
                        let expect = match node {
                            0 => None,
                            _ => Some(Expect::Marker),
                        };
                        target.push_copy(batch, index, expect);
                    }
                }
            }
        }
        if let Some(block) = transaction {
            self.route_transaction(batch, &block, &mut split);
        }
        for (node, routed) in split.into_iter().enumerate() {
            if routed.is_empty() {
                continue;
            }
            self.outstanding
                .fetch_add(routed.commands.len(), Ordering::SeqCst);
            select! {
                send(self.nodes[node], routed) -> sent => sent.map_err(|_| ())?,
                recv(stop.woken()) -> _ => return Err(()),
            }
        }
        Ok(())
    }

    /// A transaction goes whole to the node of its first keyed command.
    fn route_transaction(&mut self, batch: &Batch, block: &[usize], split: &mut [Batch]) {
        let node = block
            .iter()
            .find_map(|&index| match self.route(batch, index) {
                Route::Node(node) if self.has_key(batch, index) => Some(node),
                _ => None,
            })
            .unwrap_or(0);
        for &index in block {
            split[node].push_copy(batch, index, None);
        }
    }

    fn has_key(&mut self, batch: &Batch, index: usize) -> bool {
        let bytes = &batch.bytes[batch.command_range(index)];
        let args = command_args(bytes);
        !matches!(self.keys.first_key(&args), KeyLookup::Keyless)
    }

    fn route(&mut self, batch: &Batch, index: usize) -> Route {
        let command = batch.commands[index];
        if let Expect::Rejected(why) = command.expect {
            return Route::Refused(why);
        }
        let args = command_args(&batch.bytes[batch.command_range(index)]);
        let name = args.first().copied().unwrap_or_default();
        if command.kind == CommandKind::Select {
            return match args.get(1).copied() {
                Some(b"0") => Route::Node(0),
                _ => Route::Refused(Rejection::SelectInCluster),
            };
        }
        // Every primary's connection must be set up as the input sets up
        // its one connection.
        if matches!(command.kind, CommandKind::Auth | CommandKind::Hello) {
            return Route::EveryPrimary;
        }
        if name.eq_ignore_ascii_case(b"FLUSHALL") || name.eq_ignore_ascii_case(b"FLUSHDB") {
            return Route::EveryPrimary;
        }
        let key = match self.keys.first_key(&args) {
            KeyLookup::Key(key) => Some(key.to_vec()),
            KeyLookup::Keyless => None,
            KeyLookup::AskServer => self.keys_from_server(&args),
        };
        match key {
            Some(key) => Route::Node(self.topology.slots.owner(key_slot(&key))),
            None => Route::Node(0),
        }
    }

    /// `COMMAND GETKEYS`: the server's own answer for commands whose keys
    /// the metadata cannot locate.
    fn keys_from_server(&mut self, args: &[&[u8]]) -> Option<Vec<u8>> {
        let mut request: Vec<&[u8]> = vec![b"COMMAND", b"GETKEYS"];
        request.extend_from_slice(args);
        match query(&mut self.control, &request).ok()? {
            Value::Array(keys) => keys.first().and_then(Value::as_bytes).map(<[u8]>::to_vec),
            _ => None,
        }
    }
}
