//! `--retry N`: how long pipeload keeps trying a server it cannot use.
//!
//! Place in the data flow: around `conn::connect`, before the first batch
//! (a server still starting) and between the sessions of a connection (a
//! dropped one). Invariants:
//! - Every wait is 100 ms, doubling, at most 5 s, is reported on stderr,
//!   and ends at once on a stop request.
//! - Only a server that cannot be reached is waited for: one that refuses
//!   the handshake (a wrong password) fails at once.

use std::fmt;
use std::time::Duration;

use crate::cli::Config;
use crate::conn::{self, ConnectError, Stream};
use crate::stop::Stop;
use crate::summary::report;

/// First pause before another attempt; it doubles per attempt up to the cap.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The attempts `--retry N` allows for one outage, and the pause before
/// each. `Display` is `attempt K of N` for the attempt last counted.
#[derive(Debug)]
pub struct Attempts {
    used: u32,
    allowed: u32,
}

impl Attempts {
    pub fn new(allowed: u32) -> Self {
        Attempts { used: 0, allowed }
    }

    /// Counts one more attempt and returns the pause before it; `None`
    /// once all are used.
    pub fn next_pause(&mut self) -> Option<Duration> {
        if self.used >= self.allowed {
            return None;
        }
        self.used += 1;
        Some(
            FIRST_BACKOFF
                .saturating_mul(1 << (self.used - 1).min(16))
                .min(MAX_BACKOFF),
        )
    }
}

impl fmt::Display for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt {} of {}", self.used, self.allowed)
    }
}

/// Waits `pause` unless a stop is requested first; returns whether one was.
pub fn pause_unless_stopped(stop: &Stop, pause: Duration) -> bool {
    // Never sent on: it only disconnects, at the first stop request.
    let _ = stop.woken().recv_timeout(pause);
    stop.is_requested()
}

/// Connects for the first time. With `--retry N`, a server that cannot be
/// reached yet (still starting) is tried again up to N times, each wait
/// said on stderr. Fails with the last error when it is not that the server
/// is unreachable, when the attempts are used up, or on a stop request.
pub fn connect_first(config: &Config, stop: &Stop) -> Result<Stream, ConnectError> {
    let mut attempts = Attempts::new(config.retry);
    loop {
        let unreachable = match conn::connect(config, None) {
            Ok(stream) => return Ok(stream),
            Err(error @ ConnectError::Unreachable { .. }) => error,
            Err(refused) => return Err(refused),
        };
        let Some(pause) = attempts.next_pause() else {
            return Err(unreachable);
        };
        report(&format!(
            "pipeload: {unreachable}; retrying in {:.1} s ({attempts})",
            pause.as_secs_f64()
        ));
        if pause_unless_stopped(stop, pause) {
            return Err(unreachable);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_and_stop_at_the_limit() {
        let mut attempts = Attempts::new(8);
        let pauses: Vec<u64> = std::iter::from_fn(|| attempts.next_pause())
            .map(|pause| pause.as_millis() as u64)
            .collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(attempts.to_string(), "attempt 8 of 8");
        assert_eq!(Attempts::new(0).next_pause(), None);
    }
}
