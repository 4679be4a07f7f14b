//! The commands of a cluster load routed and not yet settled, over every
//! primary, and the wake-up that tells the writers no redirect can come
//! any more.
//!
//! Place in the data flow: the router counts what it hands to the nodes,
//! the reply readers count what settles (answered where it finally ran, or
//! refused); a redirect counts its resend before the redirected command
//! settles. A writer whose input has ended must not stop while a `MOVED` or
//! `ASK` may still send it a command, that is while any command routed
//! anywhere is unsettled: it waits on `all_settled`, which disconnects once
//! the router has finished and the count has reached 0. A router that
//! orders a command after everything routed before it (a barrier of
//! `--connections`) waits for the count to reach 0 with `wait_all_settled`;
//! the routers hand their batches over through `send` and `send_split`,
//! which count them.
//!
//! Invariant: after the router has finished, the count never rises from 0
//! again, so once it is 0 no redirect can come any more. Only the router
//! adds commands of its own; a redirect adds its resend while the command it
//! resends is still counted; a reader that undoes the settling of a
//! transaction its lost connection discarded adds to a count that still
//! holds the transaction's unanswered `EXEC`. (Only a transaction the input
//! left open at its end has no `EXEC`: the input reports it, and the summary
//! never counts it applied.)

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, bounded};

use crate::batch::Batch;
use crate::route::Stopped;
use crate::stop::Stop;

/// How often a router waiting for room in a lane looks at a stop.
const STOP_CHECK: Duration = Duration::from_millis(50);
/// How long a stopping router waits for room in a lane to finish handing
/// out its input batch.
const FINISH_BATCH_WAIT: Duration = Duration::from_secs(1);

pub struct Outstanding {
    count: AtomicUsize,
    router_finished: AtomicBool,
    /// Dropped, which disconnects `all_settled`, once the router has
    /// finished and `count` is 0. Nothing is ever sent on it.
    wake_writers: Mutex<Option<Sender<Infallible>>>,
    all_settled: Receiver<Infallible>,
    /// The router waits for the count to reach 0 (`wait_all_settled`).
    router_waiting: AtomicBool,
    /// Holds at most one wake-up for it; extra ones are dropped.
    wake_router: Sender<()>,
    router_woken: Receiver<()>,
    /// Dropped, which disconnects `router_done`, once the router has
    /// finished. Nothing is ever sent on it.
    router_running: Mutex<Option<Sender<Infallible>>>,
    router_done: Receiver<Infallible>,
}

impl Default for Outstanding {
    fn default() -> Self {
        let (wake_writers, all_settled) = bounded(0);
        let (wake_router, router_woken) = bounded(1);
        let (router_running, router_done) = bounded(0);
        Outstanding {
            count: AtomicUsize::new(0),
            router_finished: AtomicBool::new(false),
            wake_writers: Mutex::new(Some(wake_writers)),
            all_settled,
            router_waiting: AtomicBool::new(false),
            wake_router,
            router_woken,
            router_running: Mutex::new(Some(router_running)),
            router_done,
        }
    }
}

// The handshake between "the router finished" and "the count reached 0":
// each side writes its own, then reads the other's, all SeqCst: the
// operations fall in one total order, and a read sees the last write before
// it in that order. The router sets the flag, then reads the count: 0, and
// it wakes the writers; more, and the subtraction that later brings the
// count to 0 writes after that read, so after the flag was set, and the
// reader that made it, reading the flag next, sees it set and wakes them.
// A reader that brings the count to 0 before the router has finished wakes
// nobody: the router may still add commands.
impl Outstanding {
    /// `commands` more are on their way to a node.
    pub fn add(&self, commands: usize) {
        self.count.fetch_add(commands, Ordering::SeqCst);
    }

    /// `commands` are settled (or were never sent after all).
    pub fn settle(&self, commands: usize) {
        let before = self.count.fetch_sub(commands, Ordering::SeqCst);
        if before == commands {
            if self.router_finished.load(Ordering::SeqCst) {
                self.wake_writers();
            }
            // The same handshake with a router that waits: it says so, then
            // reads the count; a reader brings the count to 0, then reads
            // whether it waits.
            if self.router_waiting.load(Ordering::SeqCst) {
                let _ = self.wake_router.try_send(());
            }
        }
    }

    /// The router waits until every command routed so far is settled; fails
    /// when the load is stopping.
    pub fn wait_all_settled(&self, stop: &Stop) -> Result<(), Stopped> {
        let stopped = stop.woken();
        self.router_waiting.store(true, Ordering::SeqCst);
        let drained = loop {
            if self.count.load(Ordering::SeqCst) == 0 {
                break true;
            }
            crossbeam_channel::select! {
                recv(self.router_woken) -> _ => {}
                recv(stopped) -> _ => break false,
            }
        };
        self.router_waiting.store(false, Ordering::SeqCst);
        match drained {
            true => Ok(()),
            false => Err(Stopped),
        }
    }

    /// The router hands `batch` to `lane`, its commands counted as routed
    /// and not yet settled. When the load is stopping, the lanes still take
    /// what the router hands them until it finishes (see
    /// `Writer::router_done`), so the rest of an input batch half handed out
    /// goes out too and every lane stops at the same input batch; but a
    /// lane may be waiting on its server, or be gone, so a send then waits
    /// at most `FINISH_BATCH_WAIT` (a quit: not at all) and fails.
    pub fn send(&self, lane: &Sender<Batch>, batch: Batch, stop: &Stop) -> Result<(), Stopped> {
        self.add(batch.commands.len());
        let mut batch = batch;
        let mut stopping_since = None;
        loop {
            match lane.send_timeout(batch, STOP_CHECK) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Disconnected(_)) => return Err(Stopped),
                Err(SendTimeoutError::Timeout(unsent)) => batch = unsent,
            }
            if stop.is_requested() {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if stop.is_quit() || since.elapsed() >= FINISH_BATCH_WAIT {
                    return Err(Stopped);
                }
            }
        }
    }

    /// Hands every non-empty batch of `split` to its lane (`split[i]` to
    /// `lanes[i]`), leaving empty ones in their place.
    pub fn send_split(
        &self,
        lanes: &[Sender<Batch>],
        split: &mut [Batch],
        stop: &Stop,
    ) -> Result<(), Stopped> {
        for (lane, routed) in lanes.iter().zip(split.iter_mut()) {
            if routed.is_empty() {
                continue;
            }
            let fresh = Batch::routed_from(routed);
            self.send(lane, std::mem::replace(routed, fresh), stop)?;
        }
        Ok(())
    }

    /// The router has handed over everything it will: it adds no more.
    pub fn router_finished(&self) {
        drop(
            self.router_running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        self.router_finished.store(true, Ordering::SeqCst);
        if self.count.load(Ordering::SeqCst) == 0 {
            self.wake_writers();
        }
    }

    /// Disconnects once the router has finished: it sends no more batches.
    /// A load that stops takes what the router had handed out up to then,
    /// so that every lane stops at the router's last batch.
    pub fn router_done(&self) -> &Receiver<Infallible> {
        &self.router_done
    }

    /// Disconnects once no command is unsettled and the router has
    /// finished: then no redirect can come any more.
    pub fn all_settled(&self) -> &Receiver<Infallible> {
        &self.all_settled
    }

    fn wake_writers(&self) {
        let mut sender = self
            .wake_writers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        drop(sender.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::TryRecvError;

    fn woken(outstanding: &Outstanding) -> bool {
        outstanding.all_settled().try_recv() == Err(TryRecvError::Disconnected)
    }

    #[test]
    fn writers_wake_once_the_router_finished_and_all_settled() {
        let outstanding = Outstanding::default();
        outstanding.add(3);
        outstanding.settle(3);
        // The router may still route more.
        assert!(!woken(&outstanding));
        outstanding.add(2);
        outstanding.router_finished();
        assert!(!woken(&outstanding));
        // A redirect counts its resend before the original settles.
        outstanding.add(1);
        outstanding.settle(1);
        outstanding.settle(1);
        assert!(!woken(&outstanding));
        outstanding.settle(1);
        assert!(woken(&outstanding));
    }

    #[test]
    fn a_waiting_router_wakes_once_every_command_settled() {
        let outstanding = Outstanding::default();
        let stop = Stop::default();
        for _ in 0..200 {
            outstanding.add(100);
            std::thread::scope(|scope| {
                for _ in 0..4 {
                    scope.spawn(|| (0..25).for_each(|_| outstanding.settle(1)));
                }
                assert_eq!(outstanding.wait_all_settled(&stop), Ok(()));
            });
        }
    }

    #[test]
    fn a_router_finishing_with_all_settled_wakes_the_writers() {
        let outstanding = Outstanding::default();
        outstanding.add(1);
        outstanding.settle(1);
        outstanding.router_finished();
        assert!(woken(&outstanding));
    }

    #[test]
    fn the_last_to_finish_wakes_the_writers_whatever_the_interleaving() {
        for _ in 0..200 {
            let outstanding = Outstanding::default();
            outstanding.add(1000);
            std::thread::scope(|scope| {
                for _ in 0..4 {
                    scope.spawn(|| (0..250).for_each(|_| outstanding.settle(1)));
                }
                scope.spawn(|| outstanding.router_finished());
            });
            assert!(woken(&outstanding));
        }
    }
}
