//! `--retry N`: how long pipeload keeps trying a server it cannot use.
//!
//! Place in the data flow: around `conn::connect`, before the first batch
//! (a server still starting) and between the sessions of a connection (a
//! dropped one). Invariants:
//! - Every wait is 100 ms, doubling, at most 5 s, is reported on stderr,
//!   and ends at once on a stop request.
//! - Only a server that cannot be reached is waited for: one that refuses
//!   the handshake (a wrong password) fails at once.
//! - An outage, from a drop until a session gets further than where that
//!   drop cut the connection, gets N attempts in all, so a server that
//!   keeps hanging up gives up after N tries, not never.

use std::fmt;
use std::time::Duration;

use crate::batch::InFlight;
use crate::config::Config;
use crate::conn::{self, ConnectError, Connection, SessionReplay};
use crate::stop::Stop;
use crate::summary::report;
use crate::tls::TlsConfig;

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
/// `replay`: what the input set up on the load's other connections, for
/// a cluster node that joins mid-load.
pub fn connect_first(
    config: &Config,
    tls: Option<&TlsConfig>,
    stop: &Stop,
    replay: Option<&SessionReplay>,
) -> Result<Connection, ConnectError> {
    let mut attempts = Attempts::new(config.retry);
    loop {
        let unreachable = match conn::connect(config, tls, replay) {
            Ok(connection) => return Ok(connection),
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

/// One outage of a connection: it begins with a drop and lasts until a
/// session has settled every command the connection held at that drop.
/// A drop before that is the same outage going on, not a new one.
#[derive(Debug)]
pub struct Outage {
    /// Commands acknowledged on the connection when the outage began.
    acknowledged: u64,
    /// The input position (`Batch::seq`) of the last command the connection
    /// held then, if it held any.
    last_held: Option<u64>,
}

impl Outage {
    /// An outage that begins with a drop that left `held` unacknowledged.
    pub fn begin(acknowledged: u64, held: &[InFlight]) -> Self {
        Outage {
            acknowledged,
            last_held: held.iter().map(last_seq).max(),
        }
    }

    /// Whether a later drop, leaving `held`, ends a session that got
    /// further than where this outage began: it acknowledged something, and
    /// nothing up to the last command held at the first drop is still held.
    pub fn is_over(&self, acknowledged: u64, held: &[InFlight]) -> bool {
        acknowledged > self.acknowledged
            && self.last_held.is_none_or(|last_held| {
                held.iter()
                    .all(|in_flight| in_flight.batch.seq(in_flight.first) > last_held)
            })
    }
}

/// The input position of the last command of `in_flight`.
fn last_seq(in_flight: &InFlight) -> u64 {
    in_flight.batch.seq(in_flight.end.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::batch::{Batch, CommandKind, Expect};

    /// Commands `first_seq ..` (`count` of them), held from `first`.
    fn held(first_seq: u64, count: usize, first: usize) -> InFlight {
        let mut batch = Batch::new(0, 0, first_seq, 0);
        for line_no in 0..count as u64 {
            batch.push_command(line_no + 1, false, Expect::Reply, CommandKind::Plain);
        }
        InFlight {
            batch: Arc::new(batch),
            first,
            end: count,
            reply_estimate: 0,
        }
    }

    #[test]
    fn an_outage_lasts_until_a_session_gets_past_where_it_began() {
        // Dropped holding commands 11 to 30, 10 acknowledged.
        let outage = Outage::begin(10, &[held(11, 10, 0), held(21, 10, 0)]);
        // Two more answered, then dropped again: the same outage.
        assert!(!outage.is_over(12, &[held(11, 10, 2), held(21, 10, 0)]));
        assert!(!outage.is_over(29, &[held(21, 10, 9), held(31, 10, 0)]));
        // Commands up to 30 all answered: a new session got further.
        assert!(outage.is_over(30, &[held(31, 10, 0)]));
        assert!(outage.is_over(30, &[]));
        // Dropped holding nothing: over once anything more is answered.
        let idle = Outage::begin(30, &[]);
        assert!(!idle.is_over(30, &[held(31, 10, 0)]));
        assert!(idle.is_over(31, &[held(31, 10, 1)]));
    }

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
