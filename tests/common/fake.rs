//! A scripted fake server on 127.0.0.1:0, one connection, one thread: only
//! for what a real server cannot do on cue (never answer, hang up
//! mid-stream, answer garbage).

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::client::{Value, read_value};

/// Hang guard for waiting on pipeload (to connect, to send).
const GUARD: Duration = Duration::from_secs(60);

pub struct FakeServer {
    port: u16,
    script: Option<thread::JoinHandle<()>>,
}

impl FakeServer {
    /// Listens on a free loopback port and runs `script` on the first
    /// connection accepted.
    pub fn start(script: impl FnOnce(FakeConn) + Send + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        let script = thread::spawn(move || {
            if let Some(stream) = accept_guarded(&listener) {
                script(FakeConn::new(stream));
            }
        });
        FakeServer {
            port,
            script: Some(script),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for the script to end and re-raises its panic, if any.
    pub fn finish(mut self) {
        if let Some(script) = self.script.take()
            && let Err(panic) = script.join()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

fn accept_guarded(listener: &TcpListener) -> Option<TcpStream> {
    listener.set_nonblocking(true).ok()?;
    let deadline = Instant::now() + GUARD;
    while Instant::now() < deadline {
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
