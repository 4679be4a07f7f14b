//! Stop requests: SIGINT/SIGTERM or `--max-errors` ask the load to stop
//! sending, finish what is in flight and print a summary that says where to
//! resume; a second signal quits at once, still with a summary.
//!
//! Place in the data flow: beside the pipeline, from the start of `run`.
//! The writer waits on `woken()` together with the batch channel, so a
//! request reaches it even while the input is blocked on a source that
//! sends nothing. Each connection registers its socket here so that a quit
//! can cut it, which ends every thread of the load at once.
//!
//! Invariant: a signal received before the summary is concluded is never
//! lost. The signal handler itself records the signal (not a thread that may
//! not have run yet), and `conclude` also looks at signals the kernel holds
//! pending for the process, so the summary and the exit status show the
//! stop even when the input ended in the same instant (`producer | pipeload`
//! where Ctrl-C ends the producer too).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::conn::Stream;
use crate::summary::report;

/// How long a quit waits for the load to put its summary together (its
/// connections are cut, so this takes milliseconds) before exiting anyway.
const QUIT_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The signal number.
    Signal(i32),
    MaxErrors(u64),
    /// A node of a cluster load was lost: the others stop too.
    NodeLost,
}

/// Where the run is, as far as a signal is concerned.
const CONNECTING: u8 = 0;
const LOADING: u8 = 1;
/// The summary is being printed (or a quit prints its own): a signal from
/// now on changes nothing.
const CONCLUDED: u8 = 2;

#[derive(Debug)]
pub struct Stop {
    requested: AtomicBool,
    reason: Mutex<Option<StopReason>>,
    /// Dropped on the first request, which wakes every `woken()` waiter.
    wake: Mutex<Option<Sender<()>>>,
    woken: Receiver<()>,
    /// The last SIGINT or SIGTERM, stored by the signal handler itself; 0
    /// for none.
    signal_received: Arc<AtomicUsize>,
    phase: AtomicU8,
    /// A second signal: connections are cut, nothing more is waited for.
    quit: AtomicBool,
    connections: Mutex<Vec<(u64, Stream)>>,
    next_connection_id: AtomicU64,
}

impl Default for Stop {
    fn default() -> Self {
        let (wake, woken) = bounded(0);
        Stop {
            requested: AtomicBool::new(false),
            reason: Mutex::new(None),
            wake: Mutex::new(Some(wake)),
            woken,
            signal_received: Arc::new(AtomicUsize::new(0)),
            phase: AtomicU8::new(CONNECTING),
            quit: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
            next_connection_id: AtomicU64::new(0),
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

    /// Why the load is stopping: a signal received outranks any other cause,
    /// since the exit status must show it.
    pub fn reason(&self) -> Option<StopReason> {
        match self.signal_received.load(Ordering::SeqCst) {
            0 => *self.reason.lock().unwrap_or_else(PoisonError::into_inner),
            signal => Some(StopReason::Signal(signal as i32)),
        }
    }

    /// Ready (disconnected) once a stop was requested.
    pub fn woken(&self) -> &Receiver<()> {
        &self.woken
    }

    /// Whether a second signal asked to quit at once.
    pub fn is_quit(&self) -> bool {
        self.quit.load(Ordering::SeqCst)
    }

    /// Called once the connections are up and commands are about to be
    /// sent. Returns false when a signal came first and is ending the run
    /// itself (nothing may be sent then).
    pub fn begin_loading(&self) -> bool {
        self.phase
            .compare_exchange(CONNECTING, LOADING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Whether `begin_loading` was called: commands may have been sent.
    pub fn has_begun_loading(&self) -> bool {
        self.phase.load(Ordering::SeqCst) != CONNECTING
    }

    /// Called just before the summary is printed: from here on a signal
    /// changes nothing. Returns why the load stopped, counting a signal the
    /// handler has recorded or the kernel still holds pending; `None` when
    /// the run is already being ended by a signal (the caller prints
    /// nothing then and waits for the exit).
    pub fn conclude(&self) -> Option<Option<StopReason>> {
        if self.phase.swap(CONCLUDED, Ordering::SeqCst) == CONCLUDED {
            return None;
        }
        if let Some(signal) = pending_termination_signal() {
            self.signal_received
                .compare_exchange(0, signal as usize, Ordering::SeqCst, Ordering::SeqCst)
                .ok();
        }
        Some(self.reason())
    }

    /// Keeps a handle on a connection's socket so that a quit can cut it;
    /// the registration ends when the returned guard is dropped.
    pub fn register(&self, socket: Stream) -> Registration<'_> {
        let id = self.next_connection_id.fetch_add(1, Ordering::SeqCst);
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.is_quit() {
            socket.shutdown();
        }
        connections.push((id, socket));
        Registration { stop: self, id }
    }

    /// Cuts every registered connection: their threads end at once, with
    /// what they have not acknowledged in hand.
    fn quit(&self) {
        let connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.quit.store(true, Ordering::SeqCst);
        for (_, socket) in connections.iter() {
            socket.shutdown();
        }
    }
}

/// A connection registered with `Stop::register`.
pub struct Registration<'a> {
    stop: &'a Stop,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.stop
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(id, _)| *id != self.id);
    }
}

/// SIGINT or SIGTERM sent to the process and not yet handled by any thread.
fn pending_termination_signal() -> Option<i32> {
    // SAFETY: `sigset_t` is plain data that `sigemptyset` initialises; the
    // calls only read and write that set.
    unsafe {
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pending);
        if libc::sigpending(&mut pending) != 0 {
            return None;
        }
        [SIGINT, SIGTERM]
            .into_iter()
            .find(|&signal| libc::sigismember(&pending, signal) == 1)
    }
}

/// Watches SIGINT and SIGTERM. While connecting, a signal ends the run at
/// once: `interrupted_before_loading` prints its summary (nothing was sent)
/// and the process exits. While loading, the first signal asks the load to
/// stop and the second cuts the connections so that the summary comes at
/// once. Every exit is 128 + the signal (130, 143), as shells report them.
pub fn watch_signals(
    stop: Arc<Stop>,
    interrupted_before_loading: impl Fn(i32) + Send + 'static,
) -> io::Result<()> {
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register_usize(
            signal,
            Arc::clone(&stop.signal_received),
            signal as usize,
        )?;
    }
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for (count, signal) in signals.forever().enumerate() {
                stop.request(StopReason::Signal(signal));
                let phase = stop.phase.compare_exchange(
                    CONNECTING,
                    CONCLUDED,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
                match phase {
                    Ok(_) => {
                        interrupted_before_loading(signal);
                        std::process::exit(128 + signal);
                    }
                    // The summary is being printed: it shows this signal.
                    Err(CONCLUDED) => {}
                    Err(_) if count == 0 => report(
                        "pipeload: interrupted: finishing the commands in flight \
                         (interrupt again to quit at once)",
                    ),
                    Err(_) => {
                        report("pipeload: quitting at once: the commands in flight are not waited for");
                        stop.quit();
                        thread::sleep(QUIT_GRACE);
                        if stop.phase.swap(CONCLUDED, Ordering::SeqCst) != CONCLUDED {
                            report("pipeload: quit before the summary could be put together: what was applied is unknown");
                            std::process::exit(128 + signal);
                        }
                    }
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

    #[test]
    fn a_received_signal_outranks_another_reason() {
        let stop = Stop::default();
        stop.request(StopReason::MaxErrors(3));
        stop.signal_received
            .store(SIGTERM as usize, Ordering::SeqCst);
        assert_eq!(stop.reason(), Some(StopReason::Signal(SIGTERM)));
    }

    #[test]
    fn a_signal_the_handler_has_not_run_for_yet_is_seen() {
        let stop = Stop::default();
        assert!(stop.begin_loading());
        // SAFETY: the set is initialised before use; SIGTERM is blocked in
        // this thread only and sent to this thread only, so it stays
        // pending, and is taken back with sigwait before being unblocked.
        unsafe {
            let mut blocked: libc::sigset_t = std::mem::zeroed();
            let mut before: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut blocked);
            libc::sigaddset(&mut blocked, SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, &mut before);
            libc::pthread_kill(libc::pthread_self(), SIGTERM);
            let concluded = stop.conclude();
            let mut taken = 0;
            libc::sigwait(&blocked, &mut taken);
            libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
            assert_eq!(taken, SIGTERM);
            assert_eq!(concluded, Some(Some(StopReason::Signal(SIGTERM))));
        }
    }

    #[test]
    fn the_summary_is_concluded_once() {
        let stop = Stop::default();
        assert!(stop.begin_loading());
        assert_eq!(stop.conclude(), Some(None));
        assert_eq!(stop.conclude(), None);
        assert!(!stop.begin_loading());
    }
}
