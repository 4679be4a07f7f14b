//! Stop requests: SIGINT/SIGTERM or `--max-errors` ask the load to stop
//! sending, finish what is in flight and print a summary that says where to
//! resume.
//!
//! Place in the data flow: beside the pipeline. The writer waits on
//! `woken()` together with the batch channel, so a request reaches it even
//! while the input is blocked on a source that sends nothing. A second
//! signal exits at once.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use crossbeam_channel::{Receiver, Sender, bounded};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::summary::report;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The signal number.
    Signal(i32),
    MaxErrors(u64),
    /// A node of a cluster load was lost: the others stop too.
    NodeLost,
}

#[derive(Debug)]
pub struct Stop {
    requested: AtomicBool,
    reason: Mutex<Option<StopReason>>,
    /// Dropped on the first request, which wakes every `woken()` waiter.
    wake: Mutex<Option<Sender<()>>>,
    woken: Receiver<()>,
}

impl Default for Stop {
    fn default() -> Self {
        let (wake, woken) = bounded(0);
        Stop {
            requested: AtomicBool::new(false),
            reason: Mutex::new(None),
            wake: Mutex::new(Some(wake)),
            woken,
        }
    }
}

impl Stop {
    /// Asks the load to stop; only the first request counts. Returns whether
    /// this one was the first.
    pub fn request(&self, reason: StopReason) -> bool {
        let mut current = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        if current.is_some() {
            return false;
        }
        *current = Some(reason);
        self.requested.store(true, Ordering::SeqCst);
        drop(
            self.wake
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        true
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    pub fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ready (disconnected) once a stop was requested.
    pub fn woken(&self) -> &Receiver<()> {
        &self.woken
    }
}

/// Turns the first SIGINT or SIGTERM into a stop request and the second into
/// an immediate exit (130 or 143, as shells report them).
pub fn watch_signals(stop: Arc<Stop>) -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if stop.request(StopReason::Signal(signal)) {
                    report(
                        "pipeload: interrupted: finishing the commands in flight \
                         (interrupt again to quit at once)",
                    );
                } else {
                    std::process::exit(128 + signal);
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_wins_and_wakes_waiters() {
        let stop = Stop::default();
        assert!(!stop.is_requested());
        assert!(stop.woken().try_recv().is_err());
        assert!(stop.request(StopReason::MaxErrors(3)));
        assert!(!stop.request(StopReason::Signal(SIGINT)));
        assert_eq!(stop.reason(), Some(StopReason::MaxErrors(3)));
        assert!(stop.woken().recv().is_err());
    }
}
