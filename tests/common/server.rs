//! A throwaway `redis-server` for one test: a free loopback port (and
//! optionally a unix socket), no persistence, its own directory; killed and
//! cleaned up on drop.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::client::Client;
use super::temp::TempDir;

/// How long a server may take to answer its first command.
const STARTUP_GUARD: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 10;

pub struct RedisServer {
    child: Child,
    port: u16,
    unix_socket: Option<PathBuf>,
    dir: TempDir,
}

impl RedisServer {
    /// A server on a free 127.0.0.1 port.
    pub fn start() -> RedisServer {
        RedisServer::start_with(false)
    }

    /// A server on a free 127.0.0.1 port and on a unix socket in its dir.
    pub fn start_with_unix_socket() -> RedisServer {
        RedisServer::start_with(true)
    }

    fn start_with(unix_socket: bool) -> RedisServer {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            // Another test may take the port between our probe and the
            // server's bind: then start again on another port.
            match RedisServer::try_start(free_port(), unix_socket) {
                Ok(server) => return server,
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "could not start redis-server in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    fn try_start(port: u16, unix_socket: bool) -> Result<RedisServer, String> {
        let dir = TempDir::new("redis");
        let socket_path = unix_socket.then(|| dir.path().join("redis.sock"));
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--databases", "16", "--loglevel", "notice"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("redis.log"));
        if let Some(path) = &socket_path {
            command
                .arg("--unixsocket")
                .arg(path)
                .args(["--unixsocketperm", "700"]);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command
            .spawn()
            .map_err(|err| format!("spawn redis-server: {err}"))?;
        // From here on, drop kills the child if startup fails.
        let mut server = RedisServer {
            child,
            port,
            unix_socket: socket_path,
            dir,
        };
        let deadline = Instant::now() + STARTUP_GUARD;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "redis-server on port {port} exited ({status}):\n{}",
                    server.log()
                ));
            }
            if let Ok(mut client) = Client::try_connect(port) {
                return match client.server_pid() {
                    Ok(pid) if pid == server.child.id() => Ok(server),
                    Ok(pid) => Err(format!("port {port} is held by another server (pid {pid})")),
                    Err(err) => Err(format!("redis-server on port {port}: INFO failed: {err}")),
                };
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server on port {port} did not answer within {STARTUP_GUARD:?}:\n{}",
                    server.log()
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The unix socket path; panics if the server was started without one.
    pub fn unix_socket(&self) -> &Path {
        self.unix_socket
            .as_deref()
            .expect("server started without a unix socket")
    }

    /// A new client connection (db 0, default user).
    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
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

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("local_addr of a bound listener")
        .port()
}
