//! A scripted fake server on 127.0.0.1:0, one connection, one thread: only
//! for what a real server cannot do on cue (never answer, hang up
//! mid-stream, answer garbage, answer `-LOADING`). [`FakeServer::serve`]
//! runs the script on every connection, for a client that reconnects.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::client::{Value, read_value};

/// The fake's answer to `INFO`: one server instance, whatever the
/// connection (pipeload asks for the `run_id` under `--retry`).
pub const FAKE_INFO: &[u8] = b"$39\r\n# Server\r\nrun_id:fake-server-instance\r\n\r\n";

/// Hang guard for waiting on pipeload (to connect, to send).
const GUARD: Duration = Duration::from_secs(60);

pub struct FakeServer {
    port: u16,
    script: Option<thread::JoinHandle<()>>,
    /// Set by [`finish`](FakeServer::finish): accept no more connections.
    stop: Arc<AtomicBool>,
}

impl FakeServer {
    /// Listens on a free loopback port and runs `script` on the first
    /// connection accepted.
    pub fn start(script: impl FnOnce(FakeConn) + Send + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepting = Arc::clone(&stop);
        let script = thread::spawn(move || {
            if let Some(stream) = accept_guarded(&listener, &accepting) {
                script(FakeConn::new(stream));
            }
        });
        FakeServer {
            port,
            script: Some(script),
            stop,
        }
    }

    /// Listens on a free loopback port and runs `script` on every
    /// connection, each on its own thread, with the connection's index
    /// (from 0), until [`finish`](FakeServer::finish). Scripts share state
    /// through what they capture.
    pub fn serve(script: impl Fn(FakeConn, usize) + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepting = Arc::clone(&stop);
        let script = Arc::new(script);
        let acceptor = thread::spawn(move || {
            let mut connections = Vec::new();
            while let Some(stream) = accept_guarded(&listener, &accepting) {
                let script = Arc::clone(&script);
                let index = connections.len();
                connections.push(thread::spawn(move || script(FakeConn::new(stream), index)));
            }
            let mut first_panic = None;
            for connection in connections {
                if let Err(panic) = connection.join() {
                    first_panic.get_or_insert(panic);
                }
            }
            if let Some(panic) = first_panic {
                std::panic::resume_unwind(panic);
            }
        });
        FakeServer {
            port,
            script: Some(acceptor),
            stop,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops accepting, waits for the scripts to end and re-raises a
    /// script's panic, if any. Call it once pipeload has exited.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(script) = self.script.take()
            && let Err(panic) = script.join()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        // A test that failed before `finish` must not leave the acceptor
        // polling until its guard.
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The next connection; `None` once `stop` is set or the guard expires.
fn accept_guarded(listener: &TcpListener, stop: &AtomicBool) -> Option<TcpStream> {
    listener.set_nonblocking(true).ok()?;
    let deadline = Instant::now() + GUARD;
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).ok()?;
                stream.set_read_timeout(Some(GUARD)).ok()?;
                return Some(stream);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return None,
        }
    }
    None
}

/// The fake server's side of the one connection.
pub struct FakeConn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// Commands returned by [`next_command`](FakeConn::next_command) so far.
    pub commands: usize,
}

impl FakeConn {
    fn new(stream: TcpStream) -> FakeConn {
        // Each reply leaves at once: a script that hangs up abruptly must
        // not lose replies it wrote that Nagle's algorithm still held back.
        let _ = stream.set_nodelay(true);
        let reader = BufReader::new(stream.try_clone().expect("clone the fake's stream"));
        FakeConn {
            stream,
            reader,
            commands: 0,
        }
    }

    /// The next command of the load, as its arguments; `None` once the
    /// client hangs up. A `PING` before the first command is answered
    /// `+PONG` and not returned, in case pipeload checks the connection
    /// before streaming.
    pub fn next_command(&mut self) -> Option<Vec<Vec<u8>>> {
        loop {
            let args = match read_value(&mut self.reader).ok()? {
                Value::Array(Some(items)) => items
                    .into_iter()
                    .map(|item| match item {
                        Value::Bulk(Some(arg)) => Some(arg),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?,
                _ => return None,
            };
            let is_ping = args
                .first()
                .is_some_and(|name| name.eq_ignore_ascii_case(b"PING"));
            if self.commands == 0 && is_ping {
                self.send(b"+PONG\r\n");
                continue;
            }
            self.commands += 1;
            return Some(args);
        }
    }

    /// [`next_command`](FakeConn::next_command), answering the connection
    /// set-up commands pipeload may send first (`HELLO` with an empty map,
    /// `AUTH` and `SELECT` with `+OK`, `INFO` with [`FAKE_INFO`]) instead of
    /// returning them.
    pub fn next_load_command(&mut self) -> Option<Vec<Vec<u8>>> {
        loop {
            let args = self.next_command()?;
            let name = args.first().map(|name| name.to_ascii_uppercase());
            let reply: &[u8] = match name.as_deref() {
                Some(b"HELLO") => b"%0\r\n",
                Some(b"AUTH") | Some(b"SELECT") => b"+OK\r\n",
                Some(b"INFO") => FAKE_INFO,
                _ => return Some(args),
            };
            self.commands -= 1;
            self.send(reply);
        }
    }

    /// Reads up to `count` raw bytes (fewer if the client hangs up first).
    pub fn read_raw(&mut self, count: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(count);
        let _ = (&mut self.reader)
            .take(count as u64)
            .read_to_end(&mut bytes);
        bytes
    }

    /// Writes raw bytes; a client that is gone is not the script's problem.
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Reads and discards until the client hangs up (or the guard expires).
    pub fn drain(&mut self) {
        let mut sink = [0u8; 64 * 1024];
        while matches!(self.reader.read(&mut sink), Ok(n) if n > 0) {}
    }

    /// Sends FIN (no more replies), then drains until the client closes, so
    /// the client sees a clean end of stream, never a reset.
    pub fn hang_up(mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        self.drain();
    }

    /// Closes at once with unread input pending: the kernel answers with a
    /// reset, as when a server process dies.
    pub fn hang_up_abruptly(self) {
        drop(self);
    }
}
