//! The redis-server the bench loads into. It is started on a free loopback
//! port (never 6379) with persistence off and its files in the scratch
//! directory, and `RedisServer` is its guard: dropping it stops the server by
//! pid, so a failed or panicking bench leaves no server behind and never
//! touches one it did not start. A cluster node (see `cluster`) is the same
//! server started with cluster mode on, on a port whose cluster bus port
//! (+10000) is free too.
//!
//! Also here: the few requests the bench sends itself (PING, FLUSHALL, DBSIZE,
//! INFO, CONFIG SET, CLUSTER …) over a fresh connection each, and the
//! server's CPU time from `/proc/PID/stat`, which the report divides by wall
//! time; and `MemoryWatch`, which polls `INFO memory` over a connection of
//! its own while a tool runs, for the peaks of the server's memory.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

/// How long a fresh server gets to answer PING.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// FLUSHALL of ten million keys takes seconds; nothing the bench asks takes
/// longer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How often `MemoryWatch` asks for `INFO memory`.
const MEMORY_POLL: Duration = Duration::from_millis(5);
/// How long SIGTERM gets before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Another process can take the free port between our probe and the
/// server's bind; a new port is tried this many times.
const START_ATTEMPTS: usize = 3;
/// A cluster node also listens on its port plus this, for the cluster bus.
const CLUSTER_BUS_OFFSET: u16 = 10000;
/// Cluster nodes' ports come from here, so that the bus ports (22000 to
/// 31999) stay below the kernel's ephemeral range (32768 and up by default),
/// where the kernel's own pick for 127.0.0.1:0 could not leave room for them.
const CLUSTER_PORTS: Range<u16> = 12000..22000;

pub struct RedisServer {
    child: Child,
    port: u16,
    log_path: PathBuf,
}

/// How a server is started.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Standalone,
    /// `cluster-enabled yes`, its node configuration in its own directory.
    ClusterNode,
}

/// A reply to one of the bench's own requests.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
}

impl RedisServer {
    /// Starts a server whose working directory and log live in `dir` and
    /// waits until it answers PING.
    pub fn start(dir: &Path) -> Result<Self> {
        Self::start_retrying(dir, Mode::Standalone)
    }

    /// Starts a cluster node (`cluster-enabled yes`, no slots, knowing no
    /// other node yet) whose working directory, node configuration and log
    /// live in `dir`, and waits until it answers PING.
    pub fn start_cluster_node(dir: &Path) -> Result<Self> {
        Self::start_retrying(dir, Mode::ClusterNode)
    }

    fn start_retrying(dir: &Path, mode: Mode) -> Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::start_on_free_port(dir, mode) {
                Ok(server) => return Ok(server),
                Err(_) if attempt < START_ATTEMPTS => attempt += 1,
                Err(error) => return Err(error),
            }
        }
    }

    fn start_on_free_port(dir: &Path, mode: Mode) -> Result<Self> {
        let port = match mode {
            Mode::Standalone => free_loopback_port()?,
            Mode::ClusterNode => free_cluster_port()?,
        };
        let cluster_arguments: &[&str] = match mode {
            Mode::Standalone => &[],
            Mode::ClusterNode => &[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
            ],
        };
        let log_path = dir.join("redis-server.log");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(cluster_arguments)
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "cannot start redis-server (is it on the PATH? apt-get install redis-server)",
            )?;
        // From here on the guard owns the process: any failure below stops it.
        let mut server = RedisServer {
            child,
            port,
            log_path,
        };
        server.wait_until_ready()?;
        Ok(server)
    }

    fn wait_until_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "redis-server exited at start ({status}); its log:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(Reply::Simple(pong)) = self.request(&["PING"])
                && pong == "PONG"
            {
                return Ok(());
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                bail!(
                    "redis-server on port {} did not answer PING within {STARTUP_TIMEOUT:?}; its log:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Empties the server (synchronously: FLUSHALL without ASYNC).
    pub fn flush_all(&self) -> Result<()> {
        self.request_ok(&["FLUSHALL"])
    }

    /// Sends a command that must answer `+OK`.
    pub fn request_ok(&self, arguments: &[&str]) -> Result<()> {
        match self.request(arguments)? {
            Reply::Simple(ok) if ok == "OK" => Ok(()),
            other => bail!("{} answered {other:?}", arguments.join(" ")),
        }
    }

    /// A command's bulk-string reply as text (INFO, CLUSTER INFO).
    pub fn request_text(&self, arguments: &[&str]) -> Result<String> {
        match self.request(arguments)? {
            Reply::Bulk(Some(text)) => Ok(String::from_utf8_lossy(&text).into_owned()),
            other => bail!("{} answered {other:?}", arguments.join(" ")),
        }
    }

    pub fn key_count(&self) -> Result<u64> {
        match self.request(&["DBSIZE"])? {
            Reply::Integer(count) => Ok(count.try_into()?),
            other => bail!("DBSIZE answered {other:?}"),
        }
    }

    /// `redis_version` from INFO server.
    pub fn version(&self) -> Result<String> {
        info_field(&self.request_text(&["INFO", "server"])?, "redis_version")
            .map(str::to_owned)
            .context("INFO server has no redis_version")
    }

    /// The end of the server's log, to explain a failure.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path)
    }

    /// How long the server's log is now, for `log_since`.
    pub fn log_len(&self) -> u64 {
        fs::metadata(&self.log_path).map_or(0, |metadata| metadata.len())
    }

    /// What the server logged after its log was `offset` bytes long (empty
    /// if it cannot be read).
    pub fn log_since(&self, offset: u64) -> String {
        let log = fs::read(&self.log_path).unwrap_or_default();
        let start = usize::try_from(offset).map_or(log.len(), |offset| offset.min(log.len()));
        String::from_utf8_lossy(&log[start..]).into_owned()
    }

    /// `CONFIG SET name value`.
    pub fn set_config(&self, name: &str, value: &str) -> Result<()> {
        self.request_ok(&["CONFIG", "SET", name, value])
    }

    /// User plus system CPU time the server has used since it started:
    /// fields 14 and 15 of `/proc/PID/stat`, in clock ticks.
    pub fn cpu_time(&self) -> Result<Duration> {
        let path = format!("/proc/{}/stat", self.child.id());
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

    /// Sends one command on a fresh connection and reads its reply. Error
    /// replies become errors.
    pub fn request(&self, arguments: &[&str]) -> Result<Reply> {
        let stream = TcpStream::connect(self.address())
            .with_context(|| format!("cannot connect to redis-server on port {}", self.port))?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        let mut encoded = format!("*{}\r\n", arguments.len());
        for argument in arguments {
            encoded.push_str(&format!("${}\r\n{argument}\r\n", argument.len()));
        }
        (&stream)
            .write_all(encoded.as_bytes())
            .with_context(|| format!("cannot send {}", arguments.join(" ")))?;
        read_reply(&mut BufReader::new(&stream))
            .with_context(|| format!("no valid reply to {}", arguments.join(" ")))
    }

    /// SIGTERM, then SIGKILL when the server does not exit in time.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on the pid of our own child, which has not been
            // reaped yet (try_wait above), so the pid cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let asked = Instant::now();
        while asked.elapsed() < STOP_TIMEOUT {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nothing listens on right now: the kernel's pick for 127.0.0.1:0.
pub fn free_loopback_port() -> Result<u16> {
    let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind 127.0.0.1:0")?;
    Ok(probe.local_addr()?.port())
}

/// A port for a cluster node: it and its bus port are free right now. The
/// search starts at a point that differs from run to run, so that two benches
/// (or a bench and the tests, which use the same range) rarely probe alike.
fn free_cluster_port() -> Result<u16> {
    let span = CLUSTER_PORTS.end - CLUSTER_PORTS.start;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    let start = (nanos ^ std::process::id()) % u32::from(span);
    let is_free = |port: u16| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
    (0..u32::from(span))
        .map(|offset| {
            let offset = u16::try_from((start + offset) % u32::from(span)).expect("below span");
            CLUSTER_PORTS.start + offset
        })
        .find(|&port| is_free(port) && is_free(port + CLUSTER_BUS_OFFSET))
        .with_context(|| {
            format!(
                "no port in {CLUSTER_PORTS:?} is free together with its port + {CLUSTER_BUS_OFFSET}"
            )
        })
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
        let stream = TcpStream::connect(server.address())
            .with_context(|| format!("cannot connect to redis-server on port {}", server.port))?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        let mut peaks = MemoryPeaks::default();
        let mut read = move |peaks: &mut MemoryPeaks| -> Result<()> {
            writer.write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nmemory\r\n")?;
            let Reply::Bulk(Some(info)) = read_reply(&mut reader)? else {
                bail!("INFO memory is not a bulk string");
            };
            let info = String::from_utf8_lossy(&info);
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

/// The value of `name:` in the `name:value` lines of INFO or CLUSTER INFO.
pub fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

fn clock_ticks_per_second() -> Result<u64> {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks)
        .ok()
        .filter(|&ticks| ticks > 0)
        .context("sysconf(_SC_CLK_TCK) failed")
}

/// The few reply types the bench's own requests get; arrays never come back.
fn read_reply(reader: &mut impl BufRead) -> Result<Reply> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line
        .strip_suffix("\r\n")
        .context("connection closed before a full reply")?;
    let (kind, rest) = line.split_at_checked(1).context("empty reply line")?;
    match kind {
        "+" => Ok(Reply::Simple(rest.to_owned())),
        "-" => bail!("server error: {rest}"),
        ":" => Ok(Reply::Integer(rest.parse()?)),
        "$" => {
            let length: i64 = rest.parse()?;
            let Ok(length) = usize::try_from(length) else {
                return Ok(Reply::Bulk(None));
            };
            let mut bulk = vec![0; length + 2];
            reader.read_exact(&mut bulk)?;
            bulk.truncate(length);
            Ok(Reply::Bulk(Some(bulk)))
        }
        _ => bail!("unexpected reply {line:?}"),
    }
}

/// The end of the server's log, to explain a failed start.
fn log_tail(log_path: &Path) -> String {
    let log = fs::read_to_string(log_path)
        .unwrap_or_else(|error| format!("(cannot read {}: {error})", log_path.display()));
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
