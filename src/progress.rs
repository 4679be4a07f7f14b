//! Progress on stderr while a load runs: commands sent and acknowledged,
//! the rate, errors, and, when the input's size is known (regular files),
//! the percentage read and the time left.
//!
//! Place in the data flow: beside the pipeline. Input, writers and reply
//! readers bump relaxed atomic counters (per chunk, batch or reply: an
//! uncontended add), and a thread of its own redraws a few times a second,
//! so the load does not slow down. Shown when stderr is a terminal, or with
//! `--progress` (as a plain line a second when stderr is a log); never with
//! `--no-progress`.

use std::fs;
use std::io::{self, IsTerminal};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Source;
use crate::summary::{ErrorLog, report};

const REDRAW_EVERY: Duration = Duration::from_millis(200);

/// What the pipeline reports as it goes.
#[derive(Debug, Default)]
pub struct Counters {
    /// Input bytes read, over all sources.
    pub input_bytes: AtomicU64,
    /// Commands written to the server(s).
    pub sent: AtomicU64,
    /// Commands answered (or settled without a reply).
    pub answered: AtomicU64,
    /// Under `--rate` or `--max-latency`: commands per second now allowed.
    pub paced_rate: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }
}

/// Whether to show progress: `--progress` forces it, `--no-progress` and a
/// stderr that is not a terminal (logs, CI) keep it off, and so does input
/// typed at the terminal: a redrawn line would overwrite what is typed.
pub fn wanted(forced: Option<bool>, sources: &[Source]) -> bool {
    forced.unwrap_or_else(|| {
        shown_by_default(io::stderr().is_terminal(), reads_the_terminal(sources))
    })
}

fn shown_by_default(stderr_is_terminal: bool, input_is_typed: bool) -> bool {
    stderr_is_terminal && !input_is_typed
}

/// Whether one of the sources is stdin and stdin is a terminal: the
/// commands are typed.
pub fn reads_the_terminal(sources: &[Source]) -> bool {
    sources.contains(&Source::Stdin) && io::stdin().is_terminal()
}

/// `--progress` into a log (stderr not a terminal): a plain line this often
/// instead of a redrawn bar.
const LOG_LINE_EVERY: Duration = Duration::from_secs(1);

/// The input's total size when every source is a regular file (stdin
/// redirected from a file counts), for a percentage and a time left.
pub fn input_size(sources: &[Source]) -> Option<u64> {
    sources
        .iter()
        .map(|source| {
            let path = match source {
                Source::File(path) => path.clone(),
                Source::Stdin => "/proc/self/fd/0".into(),
            };
            fs::metadata(path)
                .ok()
                .filter(fs::Metadata::is_file)
                .map(|meta| meta.len())
        })
        .sum()
}

/// The redrawing thread; `finish` clears the line before the summary.
pub struct Display {
    /// Dropped by `finish`, which wakes the thread at once.
    done: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Display {
    pub fn start(counters: Arc<Counters>, errors: Arc<ErrorLog>, total: Option<u64>) -> Self {
        let (done, finished) = bounded(0);
        let thread = thread::Builder::new()
            .name("progress".into())
            .spawn(move || redraw(&counters, &errors, total, &finished))
            .ok();
        Display {
            done: Some(done),
            thread,
        }
    }

    pub fn finish(mut self) {
        drop(self.done.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits one redraw period; false once the display is to finish.
fn keep_going(finished: &Receiver<()>) -> bool {
    matches!(
        finished.recv_timeout(REDRAW_EVERY),
        Err(RecvTimeoutError::Timeout)
    )
}

fn redraw(counters: &Counters, errors: &ErrorLog, total: Option<u64>, finished: &Receiver<()>) {
    if !io::stderr().is_terminal() {
        return log_lines(counters, errors, total, finished);
    }
    let bar = match total {
        Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template("{percent:>3}% {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    let started = std::time::Instant::now();
    loop {
        let seconds = started.elapsed().as_secs_f64();
        let read = counters.input_bytes.load(Ordering::Relaxed);
        bar.set_position(read);
        let mut message = status(counters, errors, seconds);
        if let Some(left) = total.and_then(|total| time_left(read, total, seconds)) {
            message.push_str(&format!(" · eta {left}s"));
        }
        bar.set_message(message);
        if !keep_going(finished) {
            break;
        }
    }
    bar.finish_and_clear();
}

/// Seconds left at the rate so far; `None` until there is a rate to go by
/// (not `eta 0s` before anything was read).
fn time_left(read: u64, total: u64, seconds: f64) -> Option<u64> {
    if read == 0 || seconds < 1.0 {
        return None;
    }
    let left = total.saturating_sub(read) as f64 * seconds / read as f64;
    Some(left.ceil() as u64)
}

fn status(counters: &Counters, errors: &ErrorLog, seconds: f64) -> String {
    let sent = counters.sent.load(Ordering::Relaxed);
    let answered = counters.answered.load(Ordering::Relaxed);
    let paced = match counters.paced_rate.load(Ordering::Relaxed) {
        0 => String::new(),
        rate => format!(" (paced at {rate}/s)"),
    };
    format!(
        "sent {sent} · acked {answered} · {:.0}/s{paced} · errors {}",
        answered as f64 / seconds.max(0.001),
        errors.count()
    )
}

/// The progress as one line a second, for a log.
fn log_lines(counters: &Counters, errors: &ErrorLog, total: Option<u64>, finished: &Receiver<()>) {
    let started = std::time::Instant::now();
    let mut next_line = started + LOG_LINE_EVERY;
    while keep_going(finished) {
        if std::time::Instant::now() < next_line {
            continue;
        }
        next_line += LOG_LINE_EVERY;
        let read = counters.input_bytes.load(Ordering::Relaxed);
        let percent = match total {
            Some(total) if total > 0 => format!("{:.0}% · ", read as f64 * 100.0 / total as f64),
            _ => String::new(),
        };
        report(&format!(
            "pipeload: progress: {percent}{}",
            status(counters, errors, started.elapsed().as_secs_f64())
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_input_keeps_the_display_away_unless_asked_for() {
        assert!(shown_by_default(true, false));
        assert!(!shown_by_default(true, true));
        assert!(!shown_by_default(false, false));
    }

    #[test]
    fn no_time_left_is_shown_before_there_is_a_rate() {
        assert_eq!(time_left(0, 1000, 5.0), None);
        assert_eq!(time_left(10, 1000, 0.2), None);
        assert_eq!(time_left(500, 1000, 2.0), Some(2));
        assert_eq!(time_left(1000, 1000, 2.0), Some(0));
    }
}
