//! One child process, measured: wall time from spawn until it is reaped, and
//! from the kernel's accounting of that child alone (`wait4` rusage) its user
//! plus system CPU time and its peak resident set.
//!
//! The tool is not spawned by the bench itself but by a measuring helper: the
//! bench binary run again in a hidden mode, which spawns the tool, reaps it
//! with `wait4` and writes the figures to a file. The reason is peak RSS:
//! Linux carries the spawning process's high-water RSS into the child's
//! `ru_maxrss` at exec (the fork or vfork copy counts), so a tool spawned by
//! the bench, which holds data sets and proxy queues, would report at least
//! the bench's own peak. The helper has allocated almost nothing when it
//! spawns; `rss_floor` measures what it still adds.
//!
//! Standard input is the data file itself and standard output and error go
//! to files, so no bench process copies a byte of the load or can deadlock
//! on a full pipe when a tool prints many errors.
//!
//! A tool that runs longer than its time limit is killed (SIGKILL) and the
//! run marked timed out: the helper waits for its end without reaping it
//! (`waitid` with `WNOWAIT`), so the watchdog never signals a pid that could
//! have been reused, and only then reaps it with `wait4`.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// First argument that makes `pipeload-bench` the measuring helper:
/// `pipeload-bench HELPER_MODE RESULT_FILE TIME_LIMIT_MS PROGRAM [ARGS...]`.
pub const HELPER_MODE: &str = "--internal-measure-child";

/// What one run of a child cost, and what it printed.
pub struct Measurement {
    pub wall: Duration,
    /// User plus system CPU time of the child.
    pub cpu: Duration,
    pub peak_rss_kib: u64,
    pub status: ExitStatus,
    /// Killed after its time limit.
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program` with `arguments` and `stdin_path` as its standard input,
/// its output kept in `output_dir`, and waits for it, at most `time_limit`.
pub fn run_measured(
    program: &Path,
    arguments: &[String],
    stdin_path: &Path,
    output_dir: &Path,
    time_limit: Duration,
) -> Result<Measurement> {
    let stdin =
        File::open(stdin_path).with_context(|| format!("cannot open {}", stdin_path.display()))?;
    let stdout_path = output_dir.join("stdout.txt");
    let stderr_path = output_dir.join("stderr.txt");
    let result_path = output_dir.join("measurement.txt");
    let stdout = File::create(&stdout_path)
        .with_context(|| format!("cannot create {}", stdout_path.display()))?;
    let stderr = File::create(&stderr_path)
        .with_context(|| format!("cannot create {}", stderr_path.display()))?;
    let _ = fs::remove_file(&result_path);

    let helper = std::env::current_exe().context("cannot find the bench's own binary")?;
    let helper_status = Command::new(helper)
        .arg(HELPER_MODE)
        .arg(&result_path)
        .arg(time_limit.as_millis().to_string())
        .arg(program)
        .args(arguments)
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .status()
        .context("cannot start the measuring helper")?;
    let stderr = read_lossy(&stderr_path)?;
    if !helper_status.success() {
        bail!(
            "the measuring helper for {} failed ({helper_status}):\n{stderr}",
            program.display()
        );
    }
    let figures = fs::read_to_string(&result_path)
        .with_context(|| format!("cannot read {}", result_path.display()))?;
    let (wall, cpu, peak_rss_kib, status, timed_out) = parse_figures(&figures)
        .with_context(|| format!("malformed {}: {figures:?}", result_path.display()))?;

    Ok(Measurement {
        wall,
        cpu,
        peak_rss_kib,
        status,
        timed_out,
        stdout: read_lossy(&stdout_path)?,
        stderr,
    })
}

/// Peak RSS the measuring itself adds: `true`, measured the same way. Every
/// peak RSS in the report includes it.
pub fn rss_floor(output_dir: &Path) -> Result<u64> {
    let measurement = run_measured(
        Path::new("true"),
        &[],
        Path::new("/dev/null"),
        output_dir,
        Duration::from_secs(10),
    )?;
    Ok(measurement.peak_rss_kib)
}

/// The measuring helper's whole life, called from `main` before anything
/// else allocates: spawn the program with the inherited standard streams,
/// reap it, write the figures.
pub fn helper_main() -> ExitCode {
    let arguments: Vec<OsString> = std::env::args_os().skip(2).collect();
    match measure_as_helper(&arguments) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pipeload-bench measuring helper: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn measure_as_helper(arguments: &[OsString]) -> Result<()> {
    let [result_path, time_limit_ms, program, tool_arguments @ ..] = arguments else {
        bail!("usage: pipeload-bench {HELPER_MODE} RESULT_FILE TIME_LIMIT_MS PROGRAM [ARGS...]");
    };
    let time_limit = time_limit_ms
        .to_str()
        .and_then(|text| text.parse().ok())
        .map(Duration::from_millis)
        .context("the time limit is not a number of milliseconds")?;
    let started = Instant::now();
    let child = Command::new(program)
        .args(tool_arguments)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    // Only now, so that the child's peak RSS does not include this.
    let watchdog = Watchdog::start(child.id(), time_limit);
    let exited = wait_for_exit(child.id());
    let wall = started.elapsed();
    let timed_out = watchdog.stand_down();
    exited.with_context(|| format!("cannot wait for {}", program.display()))?;
    let (status, usage) = wait_with_usage(child.id())
        .with_context(|| format!("cannot reap {}", program.display()))?;
    let cpu = timeval_duration(usage.ru_utime) + timeval_duration(usage.ru_stime);
    // Linux reports ru_maxrss in KiB.
    let peak_rss_kib = u64::try_from(usage.ru_maxrss).unwrap_or(0);
    let figures = format!(
        "{} {} {peak_rss_kib} {} {}\n",
        wall.as_nanos(),
        cpu.as_nanos(),
        status.into_raw(),
        u8::from(timed_out)
    );
    fs::write(result_path, figures)
        .with_context(|| format!("cannot write {}", Path::new(result_path).display()))
}

/// Reads back what `measure_as_helper` wrote: wall and CPU in nanoseconds,
/// peak RSS in KiB, the raw wait status, 1 if it timed out.
fn parse_figures(figures: &str) -> Option<(Duration, Duration, u64, ExitStatus, bool)> {
    let mut fields = figures.split_whitespace();
    let wall = Duration::from_nanos(fields.next()?.parse().ok()?);
    let cpu = Duration::from_nanos(fields.next()?.parse().ok()?);
    let peak_rss_kib = fields.next()?.parse().ok()?;
    let status = ExitStatus::from_raw(fields.next()?.parse().ok()?);
    let timed_out = fields.next()? == "1";
    Some((wall, cpu, peak_rss_kib, status, timed_out))
}

/// Kills a child that outlives its time limit, unless stood down first.
struct Watchdog {
    /// Whether the child has exited (its pid still reserved, not reaped),
    /// and whether the watchdog killed it.
    state: Arc<(Mutex<(bool, bool)>, Condvar)>,
    thread: thread::JoinHandle<()>,
}

impl Watchdog {
    fn start(pid: u32, time_limit: Duration) -> Self {
        let state = Arc::new((Mutex::new((false, false)), Condvar::new()));
        let thread = {
            let state = Arc::clone(&state);
            thread::spawn(move || {
                let (lock, exited) = &*state;
                let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
                let (mut guard, _) = exited
                    .wait_timeout_while(guard, time_limit, |(exited, _)| !*exited)
                    .unwrap_or_else(PoisonError::into_inner);
                if !guard.0
                    && let Ok(pid) = libc::pid_t::try_from(pid)
                {
                    // SAFETY: kill(2) on our own child, which has not been
                    // reaped (the helper reaps it only after standing the
                    // watchdog down), so the pid cannot have been reused.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    guard.1 = true;
                }
            })
        };
        Watchdog { state, thread }
    }

    /// Called once the child has exited and before it is reaped; returns
    /// whether the watchdog killed it.
    fn stand_down(self) -> bool {
        let (lock, exited) = &*self.state;
        lock.lock().unwrap_or_else(PoisonError::into_inner).0 = true;
        exited.notify_all();
        let _ = self.thread.join();
        lock.lock().unwrap_or_else(PoisonError::into_inner).1
    }
}

/// Waits until the child has exited, leaving it unreaped (`WNOWAIT`).
fn wait_for_exit(pid: u32) -> Result<()> {
    let pid = libc::id_t::try_from(pid)?;
    loop {
        // SAFETY: siginfo_t is a plain C struct for which all zeroes is a
        // valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: the pointer is to a live local of the right type, and pid
        // is our own child.
        let waited =
            unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if waited == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error.into());
        }
    }
}

/// Reaps the child with `wait4`, which also hands back its resource usage.
/// `std::process::Child` is not told; that is fine, as its drop neither
/// waits nor kills.
fn wait_with_usage(pid: u32) -> Result<(ExitStatus, libc::rusage)> {
    let pid = libc::pid_t::try_from(pid)?;
    let mut raw_status = 0;
    // SAFETY: rusage is a plain C struct of integers, for which all zeroes is
    // a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals of the right types, and
        // pid is our own child, not reaped yet.
        let reaped = unsafe { libc::wait4(pid, &mut raw_status, 0, &mut usage) };
        if reaped == pid {
            return Ok((ExitStatus::from_raw(raw_status), usage));
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error.into());
        }
    }
}

fn timeval_duration(time: libc::timeval) -> Duration {
    let seconds = u64::try_from(time.tv_sec).unwrap_or(0);
    let micros = u64::try_from(time.tv_usec).unwrap_or(0);
    Duration::from_secs(seconds) + Duration::from_micros(micros)
}

fn read_lossy(path: &Path) -> Result<String> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Whether this process was started as the measuring helper.
pub fn is_helper_invocation() -> bool {
    std::env::args_os().nth(1).as_deref() == Some(OsStr::new(HELPER_MODE))
}
