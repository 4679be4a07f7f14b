//! Pacing: `--rate` and `--max-latency`, one budget of commands per second
//! shared by every connection of a load (every node of a cluster).
//!
//! Place in the data flow: beside the writers. Before a writer acquires
//! window room for a part, it asks the pace how many commands the part may
//! carry (`slice_end`: a few milliseconds' worth, never cutting a
//! transaction), and after acquiring it waits for the part's turn
//! (`wait_turn`). Turns are handed out on one schedule for all writers, so
//! the total is smooth: a part goes no earlier than the previous one's
//! commands allowed, and an idle spell is not saved up for a burst. Without
//! either flag there is no pace at all and the writers never ask.
//!
//! `--max-latency` adds a probe: a connection of its own to the (seed)
//! server, sending `PING` every few milliseconds as a foreground client
//! would, and a `Controller` that sets the rate from the probe's recent
//! high percentile: halving, roughly, when it exceeds the target, and
//! growing again, doubling at first, then by small steps, when it is met.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use crate::batch::{Batch, CommandKind};
use crate::config::{Config, PaceOptions};
use crate::conn::{Connection, connect};
use crate::io_error::describe_io_error;
use crate::progress::Counters;
use crate::retry;
use crate::stop::Stop;
use crate::summary::report;
use crate::tls::TlsConfig;

/// A part carries at most this long's worth of commands at the current
/// rate, so that no connection sends a burst of a whole window.
const SLICE: Duration = Duration::from_millis(5);

/// A writer that woke a little late may catch up this much: without it,
/// every oversleep would be lost and the rate would fall short; with it, an
/// idle spell still saves up no more than this.
const CATCH_UP: Duration = Duration::from_millis(2);

/// The slowest `--max-latency` ever paces down to, in commands per second:
/// the load still moves, and the probe still sees what it does.
const FLOOR_RATE: u64 = 100;

/// Where `--max-latency` starts without `--rate`: low enough to be gentle
/// at once, and doubled every decision up to the first sign of pressure.
const START_RATE: u64 = 10_000;

/// How often the probe sends a PING.
const PROBE_EVERY: Duration = Duration::from_millis(2);

/// How often the controller decides, on the probe's samples since.
const DECIDE_EVERY: Duration = Duration::from_millis(100);

/// Fewer samples than this are no percentile: the decision waits.
const MIN_SAMPLES: usize = 50;

/// The percentile is over at most this many recent samples (a second of
/// them): a few slow PINGs, a busy machine's scheduling hiccups, are not
/// yet a slow server.
const MAX_SAMPLES: usize = 500;

/// The high percentile the controller holds under the target: above the
/// 99th, so that the tooth of each increase, which goes over the target
/// briefly, still leaves a foreground client's 99th percentile under it
/// (measured: `pipeload-bench --pace`).
const PERCENTILE: f64 = 0.995;

/// The shared budget of one load.
#[derive(Debug)]
pub struct Pace {
    /// When the next part may go.
    next_turn: Mutex<Instant>,
    /// Commands per second now allowed.
    rate: AtomicU64,
    /// Commands let through so far, for the controller's view of the rate
    /// actually reached.
    granted: AtomicU64,
    /// What `--json` reports: `--rate`, or the rate `--max-latency` settled
    /// at (a moving average of its decisions).
    settled: AtomicU64,
    /// The progress display, which shows the rate.
    counters: Option<Arc<Counters>>,
}

impl Pace {
    /// The pace the flags ask for, or `None` without `--rate` and
    /// `--max-latency`.
    pub fn new(options: &PaceOptions, counters: Option<Arc<Counters>>) -> Option<Pace> {
        let rate = match (options.rate, options.max_latency) {
            (None, None) => return None,
            (Some(rate), _) => rate,
            (None, Some(_)) => START_RATE,
        };
        let pace = Pace {
            next_turn: Mutex::new(Instant::now()),
            rate: AtomicU64::new(0),
            granted: AtomicU64::new(0),
            settled: AtomicU64::new(rate),
            counters,
        };
        pace.set_rate(rate);
        Some(pace)
    }

    /// Commands per second now allowed.
    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    /// The rate to report: `--rate`, or where `--max-latency` settled.
    pub fn settled_rate(&self) -> u64 {
        self.settled.load(Ordering::Relaxed)
    }

    fn set_rate(&self, rate: u64) {
        let rate = rate.max(1);
        self.rate.store(rate, Ordering::Relaxed);
        if let Some(counters) = &self.counters {
            counters.paced_rate.store(rate, Ordering::Relaxed);
        }
    }

    /// Where the next paced part of commands `first..end` of `batch` ends:
    /// after a slice's worth of commands, or at the end of the transaction
    /// the slice ends in (a part never cuts one).
    pub fn slice_end(&self, batch: &Batch, first: usize, end: usize) -> usize {
        let slice = slice_commands(self.rate());
        let end = end.min(batch.commands.len());
        let cut = first.saturating_add(slice).min(end);
        let mut in_transaction = false;
        for (index, command) in batch.commands.iter().enumerate().take(end).skip(first) {
            if index >= cut && !in_transaction {
                return index;
            }
            match command.kind {
                CommandKind::Multi => in_transaction = true,
                CommandKind::EndMulti => in_transaction = false,
                _ => {}
            }
        }
        end
    }

    /// Waits for the turn of a part of `commands` commands, and books the
    /// time they take at the current rate for the next part. A stop cuts
    /// the wait short (the part then goes, and the writer stops after it).
    pub fn wait_turn(&self, commands: usize, stop: &Stop) {
        let now = Instant::now();
        let turn = {
            let mut next_turn = self
                .next_turn
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let earliest = now.checked_sub(CATCH_UP).unwrap_or(now);
            let turn = (*next_turn).max(earliest);
            *next_turn = turn + duration_of(commands, self.rate());
            turn
        };
        self.granted.fetch_add(commands as u64, Ordering::Relaxed);
        if let Some(wait) = turn.checked_duration_since(now)
            && !wait.is_zero()
        {
            retry::pause_unless_stopped(stop, wait);
        }
    }
}

/// Commands in one slice at `rate` per second: at least one.
fn slice_commands(rate: u64) -> usize {
    let per_slice = rate.saturating_mul(SLICE.as_micros() as u64) / 1_000_000;
    usize::try_from(per_slice.max(1)).unwrap_or(usize::MAX)
}

/// How long `commands` commands take at `rate` per second.
fn duration_of(commands: usize, rate: u64) -> Duration {
    Duration::from_secs_f64(commands as f64 / rate.max(1) as f64)
}

/// The `--max-latency` controller: the rate from the probe's latency, one
/// decision per interval. Pure logic, so that it is tested with a simulated
/// server.
#[derive(Debug)]
pub struct Controller {
    target: Duration,
    /// `--rate`, if given: never above it.
    ceiling: Option<u64>,
    rate: u64,
    /// Doubling until the first time the target is exceeded.
    starting: bool,
    /// The additive step: a twentieth of the rate where the target was
    /// last exceeded, so that it is found again in about twenty decisions.
    step: u64,
}

impl Controller {
    pub fn new(target: Duration, ceiling: Option<u64>) -> Self {
        let rate = ceiling.unwrap_or(START_RATE);
        Controller {
            target,
            ceiling,
            rate,
            starting: true,
            step: (rate / 20).max(FLOOR_RATE),
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The next rate, given the probe's high percentile over the last
    /// interval and the rate the writers actually reached in it.
    pub fn decide(&mut self, high_latency: Duration, reached: u64) -> u64 {
        if high_latency > self.target {
            // The writers may not have reached the allowed rate: slowing
            // down from a rate never reached would change nothing. But a
            // short interval's count is noisy: never below half the rate,
            // or one slow interval would spiral the rate down.
            let from = self.rate.min(reached.max(self.rate / 2));
            self.rate = (from / 2 + from / 5).max(FLOOR_RATE);
            self.step = (from / 20).max(FLOOR_RATE);
            self.starting = false;
        } else {
            let grown = match self.starting {
                true => self.rate.saturating_mul(2),
                false => self.rate.saturating_add(self.step),
            };
            // Not far above what the writers reach (the input or the
            // server may be the limit): a rate never tried says nothing.
            let tried = reached.saturating_mul(2).max(START_RATE);
            self.rate = grown.min(tried.max(self.rate));
        }
        if let Some(ceiling) = self.ceiling {
            self.rate = self.rate.min(ceiling);
        }
        self.rate
    }
}

/// The `PERCENTILE` of `samples`; `None` with too few.
fn high_percentile(samples: &VecDeque<Duration>) -> Option<Duration> {
    if samples.len() < MIN_SAMPLES {
        return None;
    }
    let mut sorted: Vec<Duration> = samples.iter().copied().collect();
    sorted.sort_unstable();
    let index = ((sorted.len() as f64 * PERCENTILE).ceil() as usize).saturating_sub(1);
    sorted.get(index.min(sorted.len() - 1)).copied()
}

/// The running probe; dropping it ends the probe thread.
pub struct Probe {
    _done: Sender<()>,
}

/// Under `--max-latency`: the probe's connection, to the configured (seed)
/// server, set up as the load's connections are.
pub fn connect_probe(config: &Config, tls: Option<&TlsConfig>) -> Result<Option<Connection>> {
    if config.pace.max_latency.is_none() {
        return Ok(None);
    }
    let probe_config = Config {
        retry: 0,
        ..config.clone()
    };
    let connection = connect(&probe_config, tls, None)
        .map_err(|error| anyhow!("--max-latency: cannot open the probe connection: {error}"))?;
    Ok(Some(connection))
}

/// Starts the probe's thread, which sets `pace`'s rate until the load ends
/// (the `Probe` is dropped) or stops.
pub fn start_probe(
    connection: Connection,
    pace: &Arc<Pace>,
    config: &Config,
    stop: &Arc<Stop>,
) -> Result<Probe> {
    let target = config.pace.max_latency.unwrap_or(Duration::from_millis(1));
    let (done, finished) = bounded(0);
    let controller = Controller::new(target, config.pace.rate);
    let (pace, stop) = (Arc::clone(pace), Arc::clone(stop));
    thread::Builder::new()
        .name("probe".into())
        .spawn(move || {
            if let Err(error) = probe(connection.stream, controller, &pace, &stop, &finished) {
                report(&format!(
                    "pipeload: --max-latency probe lost ({}): the rate stays at {}/s",
                    describe_io_error(&error),
                    pace.rate()
                ));
            }
        })
        .map_err(|error| anyhow!("cannot start the probe thread: {error}"))?;
    Ok(Probe { _done: done })
}

/// PINGs until `finished` disconnects or a stop is requested, and sets the
/// rate every `DECIDE_EVERY`.
fn probe(
    mut stream: crate::stream::Stream,
    mut controller: Controller,
    pace: &Pace,
    stop: &Stop,
    finished: &Receiver<()>,
) -> io::Result<()> {
    stream.set_read_timeout(Some(DECIDE_EVERY))?;
    let mut samples = VecDeque::with_capacity(MAX_SAMPLES + MIN_SAMPLES);
    let mut decided_at = Instant::now();
    let mut granted_then = pace.granted.load(Ordering::Relaxed);
    // The average the summary reports: the last couple of seconds weigh most.
    let mut settled = controller.rate() as f64;
    loop {
        if stop.is_requested() {
            return Ok(());
        }
        let sent = Instant::now();
        stream.write_all(b"*1\r\n$4\r\nPING\r\n")?;
        let mut answered = false;
        while !answered {
            answered = read_reply(&mut stream)?;
            // No answer for a whole interval is latency too, and enough of
            // it to decide on at once.
            let weight = if answered { 1 } else { MIN_SAMPLES };
            samples.extend(std::iter::repeat_n(sent.elapsed(), weight));
            while samples.len() > MAX_SAMPLES {
                samples.pop_front();
            }
            let elapsed = decided_at.elapsed();
            if elapsed < DECIDE_EVERY {
                continue;
            }
            let Some(high) = high_percentile(&samples) else {
                continue;
            };
            let granted = pace.granted.load(Ordering::Relaxed);
            let reached = (granted.saturating_sub(granted_then)) as f64 / elapsed.as_secs_f64();
            let before = controller.rate();
            let rate = controller.decide(high, reached as u64);
            pace.set_rate(rate);
            settled = settled * 0.9 + rate as f64 * 0.1;
            pace.settled.store(settled as u64, Ordering::Relaxed);
            if rate < before {
                // What was measured at the old rate says nothing of the new.
                samples.clear();
            }
            decided_at = Instant::now();
            granted_then = granted;
        }
        match finished.recv_timeout(PROBE_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return Ok(()),
        }
    }
}

/// Reads one short reply (`+PONG`, or an error line: a latency all the
/// same). `Ok(false)` when none came within the read timeout.
fn read_reply(stream: &mut crate::stream::Stream) -> io::Result<bool> {
    let mut reply = [0u8; 256];
    let mut len = 0;
    loop {
        let read = match stream.read(&mut reply[len..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(read) => read,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                match len {
                    0 => return Ok(false),
                    _ => continue,
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        len += read;
        if reply[..len].ends_with(b"\r\n") {
            return Ok(true);
        }
        if len == reply.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the probe's PING got an unexpected reply",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Expect;
    use crate::encode::command_bytes;
    use crate::stop::StopReason;

    const TARGET: Duration = Duration::from_millis(1);

    /// A simulated server: its high-percentile latency is 0.1 ms up to
    /// `knee` commands a second, then grows by 5 ms per `knee` beyond.
    fn latency_at(rate: u64, knee: u64) -> Duration {
        let over = rate.saturating_sub(knee) as f64 / knee as f64;
        Duration::from_secs_f64((0.1 + over * 5.0) / 1000.0)
    }

    /// Runs the controller `decisions` times against the simulated server,
    /// the writers reaching the allowed rate up to `capacity`; returns the
    /// rates it chose.
    fn simulate(
        controller: &mut Controller,
        knee: u64,
        capacity: u64,
        decisions: usize,
    ) -> Vec<u64> {
        let mut rates = Vec::with_capacity(decisions);
        for _ in 0..decisions {
            let reached = controller.rate().min(capacity);
            let latency = latency_at(reached, knee);
            rates.push(controller.decide(latency, reached));
        }
        rates
    }

    #[test]
    fn the_controller_settles_just_under_the_rate_the_server_takes() {
        let knee = 200_000;
        let mut controller = Controller::new(TARGET, None);
        let rates = simulate(&mut controller, knee, 1_000_000, 400);
        let settled = &rates[100..];
        let mean = settled.iter().sum::<u64>() as f64 / settled.len() as f64;
        assert!(
            mean >= 0.7 * knee as f64 && mean <= 1.05 * knee as f64,
            "settled around {mean:.0}/s for a server that takes {knee}/s"
        );
        // The time spent over the target is the short tip of each tooth.
        let over = settled
            .iter()
            .filter(|&&rate| latency_at(rate, knee) > TARGET)
            .count();
        assert!(
            over * 5 <= settled.len(),
            "{over} of {} intervals over the target",
            settled.len()
        );
    }

    #[test]
    fn the_controller_doubles_until_the_first_sign_of_pressure_then_backs_off() {
        let mut controller = Controller::new(TARGET, None);
        let fast = Duration::from_micros(100);
        assert_eq!(controller.decide(fast, START_RATE), START_RATE * 2);
        assert_eq!(controller.decide(fast, START_RATE * 2), START_RATE * 4);
        let slow = Duration::from_millis(3);
        let backed_off = controller.decide(slow, START_RATE * 4);
        assert_eq!(backed_off, START_RATE * 4 * 7 / 10);
        // Then by small steps: a twentieth of where the pressure came.
        let step = controller.decide(fast, backed_off) - backed_off;
        assert_eq!(step, START_RATE * 4 / 20);
    }

    #[test]
    fn the_controller_never_exceeds_rate_nor_goes_below_its_floor() {
        let mut controller = Controller::new(TARGET, Some(5_000));
        let rates = simulate(&mut controller, 1_000_000, 1_000_000, 50);
        assert!(rates.iter().all(|&rate| rate <= 5_000), "{rates:?}");
        // A server slow whatever the rate: down to the floor, not to 0.
        let mut controller = Controller::new(TARGET, None);
        let rates = simulate(&mut controller, 1, 1_000_000, 100);
        assert_eq!(rates.last(), Some(&FLOOR_RATE));
    }

    #[test]
    fn the_controller_does_not_grow_far_beyond_what_the_writers_reach() {
        // The input is the limit (5000/s): latency is fine, but a rate of
        // millions never tried would take many decreases to come back from.
        let mut controller = Controller::new(TARGET, None);
        let rates = simulate(&mut controller, 10_000_000, 5_000, 100);
        assert!(
            rates.iter().all(|&rate| rate <= START_RATE.max(10_000)),
            "{rates:?}"
        );
    }

    #[test]
    fn one_slow_interval_with_a_low_count_does_not_spiral_the_rate_down() {
        let mut controller = Controller::new(TARGET, Some(100_000));
        assert_eq!(controller.rate(), 100_000);
        // The writers sent nothing in the interval (waiting their turn).
        let rate = controller.decide(Duration::from_millis(5), 0);
        assert_eq!(rate, 35_000);
    }

    #[test]
    fn the_high_percentile_waits_for_enough_samples() {
        let mut samples: VecDeque<Duration> = (0..MIN_SAMPLES as u64 - 1)
            .map(Duration::from_micros)
            .collect();
        assert_eq!(high_percentile(&samples), None);
        samples.extend((1..=151).map(|n| Duration::from_micros(1000 + n)));
        // 200 samples: the 99.5th is the second largest.
        assert_eq!(samples.len(), 200);
        assert_eq!(high_percentile(&samples), Some(Duration::from_micros(1150)));
    }

    fn batch_of(names: &[&str]) -> Batch {
        let mut batch = Batch::new(0, 0, 1, 0);
        for name in names {
            batch
                .bytes
                .extend_from_slice(&command_bytes(&[name.as_bytes(), b"key"]));
            let kind = match *name {
                "MULTI" => CommandKind::Multi,
                "EXEC" => CommandKind::EndMulti,
                _ => CommandKind::Plain,
            };
            batch.push_command(1, true, Expect::Reply, kind);
        }
        batch
    }

    fn pace_at(rate: u64) -> Pace {
        let options = PaceOptions {
            rate: Some(rate),
            max_latency: None,
        };
        Pace::new(&options, None).expect("a pace with --rate")
    }

    #[test]
    fn no_flags_no_pace() {
        assert!(Pace::new(&PaceOptions::default(), None).is_none());
    }

    #[test]
    fn a_paced_part_is_a_slice_and_never_cuts_a_transaction() {
        // 5 ms at 20000/s: 100 commands.
        let pace = pace_at(20_000);
        let plain = batch_of(&["SET"; 250]);
        assert_eq!(pace.slice_end(&plain, 0, 250), 100);
        assert_eq!(pace.slice_end(&plain, 200, 250), 250);
        assert_eq!(pace.slice_end(&plain, 10, 50), 50);
        let mut names = vec!["SET"; 95];
        names.push("MULTI");
        names.extend(["SET"; 20]);
        names.push("EXEC");
        names.extend(["SET"; 10]);
        let with_transaction = batch_of(&names);
        // The slice would end inside the transaction: the part takes it whole.
        assert_eq!(pace.slice_end(&with_transaction, 0, names.len()), 117);
        // At 1 command a second a slice is still one command.
        assert_eq!(pace_at(1).slice_end(&plain, 0, 250), 1);
    }

    #[test]
    fn a_stop_cuts_a_turn_short() {
        let pace = pace_at(1);
        let stop = Stop::default();
        // Books a thousand seconds for the next turn.
        pace.wait_turn(1000, &stop);
        stop.request(StopReason::MaxErrors(1));
        pace.wait_turn(1, &stop);
        assert_eq!(pace.granted.load(Ordering::Relaxed), 1001);
    }
}
