//! A delay proxy that turns loopback into a slow network: every chunk read
//! from one side is written to the other side `one_way` later (10 ms each way
//! makes a 20 ms round trip), in the order it was read, in both directions.
//!
//! It adds latency and nothing else: in each direction one thread reads and
//! timestamps chunks into an unbounded queue, and another writes them when
//! they are due, so reading never waits for writing and throughput is
//! whatever the two ends manage. A closed side is passed on as a closed
//! write half once everything read before it has been delivered.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

const CHUNK_BYTES: usize = 64 * 1024;

/// Guard of the listening proxy: dropping it stops accepting. Connections
/// already relayed end when their ends close.
pub struct DelayProxy {
    port: u16,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl DelayProxy {
    /// Listens on a free loopback port and relays each connection to
    /// `upstream`.
    pub fn start(upstream: SocketAddr, one_way: Duration) -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("cannot bind the delay proxy to 127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let stopping = Arc::clone(&stopping);
            thread::spawn(move || accept_loop(listener, upstream, one_way, &stopping))
        };
        Ok(DelayProxy {
            port,
            stopping,
            acceptor: Some(acceptor),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // accept() has no timeout: one last connection wakes it to see the flag.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    one_way: Duration,
    stopping: &AtomicBool,
) {
    for client in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        thread::spawn(move || {
            if let Err(error) = relay_connection(client, upstream, one_way) {
                eprintln!("delay proxy: {error:#}");
            }
        });
    }
}

fn relay_connection(client: TcpStream, upstream: SocketAddr, one_way: Duration) -> Result<()> {
    let server = TcpStream::connect(upstream)
        .with_context(|| format!("cannot connect to the server at {upstream}"))?;
    // Chunks are delivered whole when due; Nagle would hold some back longer.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let replies = {
        let (server, client) = (server.try_clone()?, client.try_clone()?);
        thread::spawn(move || relay_delayed(server, client, one_way))
    };
    relay_delayed(client, server, one_way);
    let _ = replies.join();
    Ok(())
}

/// Copies `from` to `to`, each chunk `delay` after it was read. Returns when
/// `from` is closed and everything is delivered, or when `to` fails.
fn relay_delayed(from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (queue, due_chunks) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reading_side = from.try_clone();
    let reader = thread::spawn(move || {
        let mut from = from;
        let mut buffer = vec![0; CHUNK_BYTES];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(length) => {
                    let due = Instant::now() + delay;
                    if queue.send((due, buffer[..length].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    // Read times only grow, so due times do too: waiting for the head of the
    // queue is waiting for the earliest chunk.
    for (due, chunk) in due_chunks {
        thread::sleep(due.saturating_duration_since(Instant::now()));
        if to.write_all(&chunk).is_err() {
            // Nobody to deliver to: stop reading too, so the reader ends.
            if let Ok(from) = &reading_side {
                let _ = from.shutdown(Shutdown::Read);
            }
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = reader.join();
}
