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
//! lost, even one that lands in the instant the input ends (`producer |
//! pipeload` where Ctrl-C ends the producer too). SIGINT and SIGTERM are
//! blocked in every thread, so the kernel holds them pending until the
//! signals thread takes one from a signalfd, and it takes and records it
//! under the same lock that `conclude` holds while it looks at what was
//! recorded and at what is still pending: no signal is ever in between.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use libc::{SIGINT, SIGTERM};

use crate::stream::Stream;
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
    /// `--replies` cannot be written: reads whose replies are lost are
    /// not worth sending.
    RepliesUnwritable,
    /// The reader of `--replies` (a pipe: `--replies - | head`) went away:
    /// it has what it wanted, so the load ends there, with no error.
    RepliesReaderGone,
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
    /// The first SIGINT or SIGTERM taken or seen pending, if any. Its lock
    /// is held while a signal is taken from the kernel and recorded, and
    /// while the summary is concluded.
    signal_received: Mutex<Option<i32>>,
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
            signal_received: Mutex::new(None),
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
        let signal = *self.lock_signal_received();
        signal
            .map(StopReason::Signal)
            .or_else(|| *self.reason.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn lock_signal_received(&self) -> std::sync::MutexGuard<'_, Option<i32>> {
        self.signal_received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
        let mut signal_received = self.lock_signal_received();
        if self.phase.swap(CONCLUDED, Ordering::SeqCst) == CONCLUDED {
            return None;
        }
        if signal_received.is_none() {
            *signal_received = pending_termination_signal();
        }
        drop(signal_received);
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

/// SIGINT and SIGTERM, as a signal set.
fn termination_signals() -> libc::sigset_t {
    // SAFETY: `sigemptyset` initialises the set; `sigaddset` only adds
    // valid signal numbers to it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, SIGINT);
        libc::sigaddset(&mut set, SIGTERM);
        set
    }
}

/// SIGINT or SIGTERM sent to the process and not yet taken by any thread.
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

/// A signalfd for SIGINT and SIGTERM, which blocks them in the calling
/// thread and so in every thread it starts afterwards.
fn block_into_signalfd() -> io::Result<File> {
    let signals = termination_signals();
    // SAFETY: `signals` is an initialised set; a new descriptor returned by
    // signalfd is owned by the `File` alone.
    unsafe {
        if libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &signals, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(File::from_raw_fd(fd))
    }
}

/// Waits until a signal is pending on `signals`, without taking it.
fn wait_readable(signals: &File) -> io::Result<()> {
    let mut poll = libc::pollfd {
        fd: signals.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, for a descriptor `signals` keeps open.
        match unsafe { libc::poll(&mut poll, 1, -1) } {
            1 => return Ok(()),
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
}

/// Takes one pending signal from `signals`, if there is one.
fn take_signal(mut signals: &File) -> Option<i32> {
    let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
    match signals.read(&mut info) {
        // `ssi_signo` is the first field, a u32.
        Ok(read) if read == info.len() => {
            let number = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
            i32::try_from(number).ok()
        }
        _ => None,
    }
}

/// Watches SIGINT and SIGTERM. Must be called on the main thread before it
/// starts any other: the signals are blocked in every thread from here on.
/// While connecting, a signal ends the run at once:
/// `interrupted_before_loading` prints its summary (nothing was sent) and
/// the process exits. While loading, the first signal asks the load to stop
/// and the second cuts the connections so that the summary comes at once.
/// Every exit is 128 + the signal (130, 143), as shells report them.
pub fn watch_signals(
    stop: Arc<Stop>,
    interrupted_before_loading: impl Fn(i32) + Send + 'static,
) -> io::Result<()> {
    let signals = block_into_signalfd()?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut taken = 0usize;
            while wait_readable(&signals).is_ok() {
                let signal = {
                    let mut signal_received = stop.lock_signal_received();
                    let Some(signal) = take_signal(&signals) else {
                        continue;
                    };
                    signal_received.get_or_insert(signal);
                    signal
                };
                taken += 1;
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
                    // The summary is being printed: it shows the first
                    // signal. Another one means the user wants out even if
                    // printing is stuck (a stdout nobody reads).
                    Err(CONCLUDED) if taken == 1 => {}
                    Err(CONCLUDED) => std::process::exit(128 + signal),
                    Err(_) if taken == 1 => report(
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
        *stop.lock_signal_received() = Some(SIGTERM);
        assert_eq!(stop.reason(), Some(StopReason::Signal(SIGTERM)));
    }

    #[test]
    fn a_signal_still_pending_is_seen_when_concluding() {
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
