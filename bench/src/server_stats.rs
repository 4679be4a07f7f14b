//! What the bench reads off the servers it loads (started by the harness,
//! `pipeload_harness::RedisServer`): a server's CPU time from
//! `/proc/PID/stat`, which the report divides by wall time; and
//! `MemoryWatch`, which polls `INFO memory` over a connection of its own
//! while a tool runs, for the peaks of the server's memory.

use std::fs;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pipeload_harness::{RedisServer, info_field};

/// How often `MemoryWatch` asks for `INFO memory`.
const MEMORY_POLL: Duration = Duration::from_millis(5);

/// User plus system CPU time the server with process id `pid` has used
/// since it started: fields 14 and 15 of `/proc/PID/stat`, in clock ticks.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces;
    // fields are counted from after its closing parenthesis, which is
    // field 3 at index 0.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{path} has no command name"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |field: usize| -> Result<u64> {
        fields
            .get(field - 3)
            .and_then(|text| text.parse().ok())
            .with_context(|| format!("{path} has no field {field}"))
    };
    let total_ticks = ticks(14)? + ticks(15)?;
    Ok(Duration::from_secs_f64(
        total_ticks as f64 / clock_ticks_per_second()? as f64,
    ))
}

/// The peaks of a server's memory while `MemoryWatch` watched, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryPeaks {
    /// `mem_clients_normal`: the buffers of normal clients, the loading
    /// tool's output buffer among them (and the watch's own, a few KiB).
    pub clients_normal: u64,
    pub used_memory_rss: u64,
    /// `used_memory_rss` at the first reading, before the run.
    pub used_memory_rss_at_start: u64,
}

/// Polls `INFO memory` every `MEMORY_POLL` over a connection of its own,
/// until `finish`.
pub struct MemoryWatch {
    stop: Sender<()>,
    thread: JoinHandle<Result<MemoryPeaks>>,
}

impl MemoryWatch {
    /// Connects and takes the first reading before it returns, so that a
    /// run started after it is watched from its start.
    pub fn start(server: &RedisServer) -> Result<Self> {
        let mut client = server.client();
        let mut peaks = MemoryPeaks::default();
        let mut read = move |peaks: &mut MemoryPeaks| -> Result<()> {
            let info = client.info("memory");
            peaks.clients_normal = peaks
                .clients_normal
                .max(memory_figure(&info, "mem_clients_normal")?);
            peaks.used_memory_rss = peaks
                .used_memory_rss
                .max(memory_figure(&info, "used_memory_rss")?);
            Ok(())
        };
        read(&mut peaks)?;
        peaks.used_memory_rss_at_start = peaks.used_memory_rss;
        let (stop, stopped) = mpsc::channel();
        let thread = thread::spawn(move || {
            // Until told to stop (or the sender is gone).
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(MEMORY_POLL) {
                read(&mut peaks)?;
            }
            // One last reading, after the run.
            read(&mut peaks)?;
            Ok(peaks)
        });
        Ok(MemoryWatch { stop, thread })
    }

    pub fn finish(self) -> Result<MemoryPeaks> {
        let _ = self.stop.send(());
        match self.thread.join() {
            Ok(peaks) => peaks,
            Err(_) => bail!("the INFO memory poller panicked"),
        }
    }
}

/// A number of bytes from INFO memory.
fn memory_figure(info: &str, name: &str) -> Result<u64> {
    info_field(info, name)
        .and_then(|value| value.parse().ok())
        .with_context(|| format!("INFO memory has no {name}"))
}

fn clock_ticks_per_second() -> Result<u64> {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks)
        .ok()
        .filter(|&ticks| ticks > 0)
        .context("sysconf(_SC_CLK_TCK) failed")
}
