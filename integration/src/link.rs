//! A TCP forwarder that delays the bytes in each direction: a backend "in another availability
//! zone" on loopback.
//!
//! Every accepted connection gets its own connection to the target and, per direction, a reader
//! thread that stamps each chunk it reads with the time it arrived and a writer thread that writes
//! the chunk once `delay` has passed since then. Chunks keep their order and are never merged or
//! split differently from how they were read, so the byte stream is exactly the one sent, only
//! later. Pipelined chunks are delayed from their own arrival, not one after the other: the link
//! adds latency, not a bandwidth limit. A bounded queue per direction holds what is in flight; when
//! it is full the reader stops reading (TCP backpressure, like a real link).
//!
//! End of stream is forwarded after the delay too (a half close); a reset or read error on one side
//! closes both sides of that connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Chunks in flight per direction before the reader stops reading.
const QUEUE_CHUNKS: usize = 1024;
/// The largest chunk one read takes.
const CHUNK: usize = 64 * 1024;
/// The last part of a wait is spun rather than slept: a sleep overshoots by tens of microseconds.
const SPIN: Duration = Duration::from_micros(150);

/// One forwarded connection: both sockets, to close them from outside.
struct Conn {
    client: TcpStream,
    server: TcpStream,
}

impl Conn {
    fn close(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

struct Shared {
    /// Where new connections go (`set_target`: a name that now leads elsewhere).
    target_port: AtomicU16,
    /// While set, nothing is written on either side: the bytes wait (a stalled link).
    held: AtomicBool,
    delay: Duration,
    stop: AtomicBool,
    next_id: AtomicU64,
    conns: Mutex<Vec<(u64, Arc<Conn>)>>,
    accepted: AtomicUsize,
}

/// A delaying TCP forwarder on 127.0.0.1; stops and closes all its connections when dropped.
pub struct DelayLink {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl DelayLink {
    /// A link on a free 127.0.0.1 port to 127.0.0.1:`target_port`, delaying each direction by
    /// `delay`. The target does not need to be up yet: each accepted connection connects to it
    /// (and is closed at once if it cannot).
    pub fn start(target_port: u16, delay: Duration) -> DelayLink {
        // Bind port 0 directly: no window in which someone else takes the port.
        DelayLink::try_start_on(0, target_port, delay).expect("start a delay link")
    }

    /// Like `start`, listening on 127.0.0.1:`listen_port` (0: any free port).
    pub fn try_start_on(listen_port: u16, target_port: u16, delay: Duration) -> io::Result<DelayLink> {
        let listener = TcpListener::bind(("127.0.0.1", listen_port))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            target_port: AtomicU16::new(target_port),
            held: AtomicBool::new(false),
            delay,
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("link-{port}-accept"))
                .spawn(move || accept_loop(listener, shared))?
        };
        Ok(DelayLink {
            port,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The port the link listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `tcp://127.0.0.1:PORT`, for relayer configs.
    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// The delay of each direction.
    pub fn delay(&self) -> Duration {
        self.shared.delay
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.shared.conns.lock().unwrap().len()
    }

    /// New connections go to 127.0.0.1:`port` from now on (a DNS name that now leads to another
    /// server); open ones stay where they are.
    pub fn set_target(&self, port: u16) {
        self.shared.target_port.store(port, Ordering::SeqCst);
    }

    /// Holds every byte in both directions (`true`) until released (`false`): the link stalls,
    /// connections stay open, and what was held is then delivered in order.
    pub fn hold(&self, on: bool) {
        self.shared.held.store(on, Ordering::SeqCst);
    }

    /// Closes every current connection (both sides see the connection closed); new connections are
    /// still accepted. Returns how many were closed.
    pub fn cut_all(&self) -> usize {
        let conns: Vec<_> = self.shared.conns.lock().unwrap().drain(..).collect();
        for (_, c) in &conns {
            c.close();
        }
        conns.len()
    }
}

impl Drop for DelayLink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        self.cut_all();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(client) = stream else {
            // EMFILE and the like: do not spin on it.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let _ = std::thread::Builder::new()
            .name("link-conn".into())
            .spawn(move || start_conn(client, shared));
    }
}

fn start_conn(client: TcpStream, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", shared.target_port.load(Ordering::SeqCst))) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let clones = (|| {
        Some((
            client.try_clone().ok()?,
            client.try_clone().ok()?,
            client.try_clone().ok()?,
            server.try_clone().ok()?,
            server.try_clone().ok()?,
            server.try_clone().ok()?,
        ))
    })();
    let Some((c_read, c_write, c_reg, s_read, s_write, s_reg)) = clones else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
        return;
    };
    let conn = Arc::new(Conn {
        client: c_reg,
        server: s_reg,
    });
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    {
        let mut conns = shared.conns.lock().unwrap();
        if shared.stop.load(Ordering::SeqCst) {
            conn.close();
            return;
        }
        conns.push((id, conn.clone()));
    }
    // Both directions done: forget the connection.
    let remaining = Arc::new(AtomicUsize::new(2));
    let delay = shared.delay;
    for (from, to, name) in [(c_read, s_write, "up"), (s_read, c_write, "down")] {
        let (conn, shared, remaining) = (conn.clone(), shared.clone(), remaining.clone());
        let (tx, rx) = sync_channel::<Option<(Instant, Vec<u8>)>>(QUEUE_CHUNKS);
        let reader_conn = conn.clone();
        let _ = std::thread::Builder::new()
            .name(format!("link-{name}-r"))
            .spawn(move || read_side(from, tx, &reader_conn));
        let _ = std::thread::Builder::new()
            .name(format!("link-{name}-w"))
            .spawn(move || {
                write_side(to, rx, delay, &conn, &shared.held);
                if remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                    shared.conns.lock().unwrap().retain(|(i, _)| *i != id);
                }
            });
    }
    drop(client);
    drop(server);
}

/// Reads chunks and queues them with their arrival time; `None` is end of stream. A read error
/// closes the whole connection.
fn read_side(mut from: TcpStream, tx: SyncSender<Option<(Instant, Vec<u8>)>>, conn: &Conn) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = tx.send(None);
                return;
            }
            Ok(n) => {
                if tx.send(Some((Instant::now(), buf[..n].to_vec()))).is_err() {
                    conn.close();
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                conn.close();
                return;
            }
        }
    }
}

/// Writes each chunk `delay` after it arrived; forwards end of stream as a half close.
fn write_side(
    mut to: TcpStream,
    rx: Receiver<Option<(Instant, Vec<u8>)>>,
    delay: Duration,
    conn: &Conn,
    held: &AtomicBool,
) {
    while let Ok(item) = rx.recv() {
        while held.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        match item {
            Some((at, chunk)) => {
                wait_until(at + delay);
                if to.write_all(&chunk).is_err() {
                    conn.close();
                    return;
                }
            }
            None => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
        }
    }
    // The reader is gone without an end of stream: it closed the connection already.
}

/// Sleeps until `deadline`, spinning the last few tens of microseconds for accuracy.
pub fn wait_until(deadline: Instant) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        if left > SPIN {
            std::thread::sleep(left - SPIN);
        } else {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on a free port: every connection gets back what it sends.
    fn echo_server() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    let mut r = s.try_clone().unwrap();
                    let _ = io::copy(&mut r, &mut s);
                    let _ = s.shutdown(Shutdown::Write);
                });
            }
        });
        port
    }

    #[test]
    fn delays_each_direction_and_keeps_the_stream() {
        let echo = echo_server();
        let delay = Duration::from_millis(20);
        let link = DelayLink::start(echo, delay);
        let mut c = TcpStream::connect(("127.0.0.1", link.port())).unwrap();
        c.set_nodelay(true).unwrap();
        c.set_read_timeout(Some(crate::timeouts::HANG)).unwrap();

        // One round trip: at least two delays.
        let start = Instant::now();
        c.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
        let rtt = start.elapsed();
        assert!(
            rtt >= 2 * delay,
            "round trip {rtt:?} is less than twice {delay:?}"
        );

        // Many writes in a row are delayed from their own arrival, not one after the other, and
        // come back as the same byte stream.
        let mut sent = Vec::new();
        let mut w = c.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let mut all = Vec::new();
            for i in 0..200u32 {
                let chunk: Vec<u8> = (0..(i * 37 % 5000 + 1)).map(|j| (i + j) as u8).collect();
                w.write_all(&chunk).unwrap();
                all.extend_from_slice(&chunk);
            }
            all
        });
        let start = Instant::now();
        sent.extend(writer.join().unwrap());
        let mut got = vec![0u8; sent.len()];
        c.read_exact(&mut got).unwrap();
        assert!(got == sent, "the byte stream changed on its way through the link");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "200 pipelined chunks took {:?}: delayed one after the other?",
            start.elapsed()
        );

        // End of stream goes through (the echo server closes after it).
        c.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn cut_all_closes_connections_and_drop_stops_the_link() {
        let echo = echo_server();
        let link = DelayLink::start(echo, Duration::from_micros(500));
        let mut c = TcpStream::connect(("127.0.0.1", link.port())).unwrap();
        c.set_read_timeout(Some(crate::timeouts::HANG)).unwrap();
        c.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
        assert_eq!(link.open_connections(), 1);
        assert_eq!(link.cut_all(), 1);
        let mut rest = Vec::new();
        // EOF (or a reset): the connection is gone.
        let _ = c.read_to_end(&mut rest);
        assert!(rest.is_empty());

        // New connections still work.
        let mut c = TcpStream::connect(("127.0.0.1", link.port())).unwrap();
        c.set_read_timeout(Some(crate::timeouts::HANG)).unwrap();
        c.write_all(b"y").unwrap();
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"y");

        let port = link.port();
        drop(link);
        let _ = c.read_to_end(&mut rest);
        assert!(rest.is_empty());
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the link still accepts after drop"
        );
    }
}
