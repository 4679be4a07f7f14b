//! The window: how much may be in flight between a writer and its reply
//! reader, bounded in commands and in bytes.
//!
//! Place in the data flow: the writer `acquire`s room for a batch before
//! writing it; the reply reader `release`s it once every command of the batch
//! is answered. The bound keeps memory flat on both sides and the server's
//! output buffer small, while the defaults are large enough to keep a link
//! with a 20 ms round trip busy. A batch larger than the whole window is let
//! through alone, so one huge command never deadlocks.
//!
//! Either side `close`s the window when it stops, which wakes the other.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Limits of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    pub commands: usize,
    pub bytes: usize,
}

impl Default for WindowLimits {
    /// At a million commands per second a 20 ms round trip holds 20,000
    /// commands; 4 MiB holds that many small commands several times over.
    fn default() -> Self {
        WindowLimits {
            commands: 100_000,
            bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Default)]
struct InFlight {
    commands: usize,
    bytes: usize,
    closed: bool,
}

/// The window was closed by the other side: stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowClosed;

#[derive(Debug)]
pub struct Window {
    limits: WindowLimits,
    in_flight: Mutex<InFlight>,
    room_freed: Condvar,
}

impl Window {
    pub fn new(limits: WindowLimits) -> Self {
        Window {
            limits,
            in_flight: Mutex::new(InFlight::default()),
            room_freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, InFlight> {
        // The guarded counters are plain numbers, valid even if a holder
        // panicked, so a poisoned lock is still usable.
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `commands` and `bytes` fit, then counts them in flight.
    pub fn acquire(&self, commands: usize, bytes: usize) -> Result<(), WindowClosed> {
        let mut in_flight = self.lock();
        loop {
            if in_flight.closed {
                return Err(WindowClosed);
            }
            let empty = in_flight.commands == 0 && in_flight.bytes == 0;
            let fits = in_flight.commands + commands <= self.limits.commands
                && in_flight.bytes + bytes <= self.limits.bytes;
            if empty || fits {
                in_flight.commands += commands;
                in_flight.bytes += bytes;
                return Ok(());
            }
            in_flight = self
                .room_freed
                .wait(in_flight)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Frees what `acquire` counted for an answered batch.
    pub fn release(&self, commands: usize, bytes: usize) {
        let mut in_flight = self.lock();
        in_flight.commands = in_flight.commands.saturating_sub(commands);
        in_flight.bytes = in_flight.bytes.saturating_sub(bytes);
        drop(in_flight);
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
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn oversized_batch_passes_when_alone() {
        let window = Window::new(WindowLimits {
            commands: 10,
            bytes: 100,
        });
        assert_eq!(window.acquire(1, 1000), Ok(()));
        window.release(1, 1000);
        assert_eq!(window.acquire(5, 50), Ok(()));
    }

    #[test]
    fn acquire_waits_for_release() {
        let window = Arc::new(Window::new(WindowLimits {
            commands: 10,
            bytes: 100,
        }));
        window.acquire(8, 10).unwrap();
        let waiter = {
            let window = Arc::clone(&window);
            thread::spawn(move || window.acquire(5, 10))
        };
        window.release(8, 10);
        assert_eq!(waiter.join().unwrap(), Ok(()));
    }

    #[test]
    fn close_wakes_a_waiting_writer() {
        let window = Arc::new(Window::new(WindowLimits {
            commands: 1,
            bytes: 100,
        }));
        window.acquire(1, 10).unwrap();
        let waiter = {
            let window = Arc::clone(&window);
            thread::spawn(move || window.acquire(1, 10))
        };
        window.close();
        assert_eq!(waiter.join().unwrap(), Err(WindowClosed));
    }
}
