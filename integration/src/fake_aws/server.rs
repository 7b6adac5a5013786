//! The server under every fake endpoint: listens on 127.0.0.1, a std thread per connection
//! (keep-alive), and can go down (connections refused, open ones reset) and come up again on the
//! same port.

use super::http::{read_request, write_answer, Answer, Request};
use std::collections::HashMap;
use std::io::{self, BufReader};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a service is spoken.
pub(crate) struct Protocol {
    /// For thread names and messages: "firehose", "kinesis", "sqs".
    pub name: &'static str,
    /// The Content-Type of every answer.
    pub content_type: &'static str,
    /// The `X-Amz-Target` prefix of its operations (`Firehose_20150804`).
    pub target_prefix: &'static str,
    /// True if POSTs to any path are served (SQS clients post to the queue URL); else only to `/`.
    pub any_path: bool,
}

/// What a fake endpoint answers; called from the connection threads, in parallel.
pub(crate) trait Service: Send + Sync + 'static {
    /// The delay before answering a request that arrives now.
    fn delay(&self) -> Duration;
    /// The answer to `operation` (storing what it accepts); None for an operation it does not
    /// know.
    fn answer(&self, operation: &str, req: &Request) -> Option<Answer>;
}

struct Conns {
    /// Open connections, to be shut down by `go_down` and on drop.
    open: HashMap<u64, TcpStream>,
    next: u64,
    /// The acceptor thread while up.
    acceptor: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    /// While down: a socket bound to the port without listening, so that connections are refused
    /// and no other process (another test) takes the port meanwhile.
    placeholder: Option<OwnedFd>,
}

struct Inner {
    port: u16,
    protocol: &'static Protocol,
    service: Arc<dyn Service>,
    conns: Mutex<Conns>,
    /// Bumped by `go_down`: a request read on an older connection is not served.
    generation: AtomicU64,
    /// For the `x-amzn-RequestId` of each answer.
    requests: AtomicU64,
}

impl Inner {
    fn conns(&self) -> MutexGuard<'_, Conns> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The server of a fake endpoint (each fake dereferences to its own): its port, and going down
/// and up. Stopped (listener closed, connections reset) on drop.
pub struct Endpoint {
    inner: Arc<Inner>,
}

impl Endpoint {
    /// Starts listening on 127.0.0.1 and a free port.
    pub(crate) fn start(protocol: &'static Protocol, service: Arc<dyn Service>) -> Endpoint {
        let server = Endpoint {
            inner: Arc::new(Inner {
                port: crate::free_port(),
                protocol,
                service,
                conns: Mutex::new(Conns {
                    open: HashMap::new(),
                    next: 0,
                    acceptor: None,
                    placeholder: None,
                }),
                generation: AtomicU64::new(0),
                requests: AtomicU64::new(0),
            }),
        };
        server.come_up();
        server
    }

    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// `http://127.0.0.1:PORT`, for the relayer's `endpoint`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.inner.port)
    }

    /// Stops listening (connections are refused from now on) and shuts every open connection; a
    /// request still being read is not served, one waiting for its delay is not answered (what it
    /// carried, if it was a success, is already stored, as when an answer is lost). The port
    /// stays reserved (bound, not listening) until `come_up`: tests run in parallel processes
    /// would otherwise take it for their own endpoint.
    pub fn go_down(&self) {
        self.stop();
        self.reserve_port();
    }

    /// Stops the acceptor and resets every open connection.
    fn stop(&self) {
        // The acceptor first: a connection it accepts until it stops is in `open` below.
        let acceptor = self.inner.conns().acceptor.take();
        if let Some((stop, handle)) = acceptor {
            stop.store(true, Ordering::SeqCst);
            let _ = handle.join();
        }
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        let open = std::mem::take(&mut self.inner.conns().open);
        for (_, c) in open {
            // Reset rather than close: no TIME_WAIT left on the port, which `reserve_port` binds.
            // Shutting down only the reading wakes the connection's thread without sending a FIN
            // (the client would answer with its own, and the port would stay in TIME_WAIT); the
            // thread's close then resets the connection.
            set_linger_zero(&c);
            let _ = c.shutdown(Shutdown::Read);
        }
    }

    /// Binds the placeholder. The connections just reset may take a moment to go (their threads
    /// close them); if the port still cannot be bound after 5 s, it is left unreserved.
    fn reserve_port(&self) {
        let port = self.inner.port;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match bind_without_listening(port) {
                Ok(fd) => {
                    self.inner.conns().placeholder = Some(fd);
                    return;
                }
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    let name = self.inner.protocol.name;
                    eprintln!("fake {name}: port {port} not reserved while down: {e}");
                    return;
                }
            }
        }
    }

    /// Listens again on the same port (does nothing if up). Panics if the port cannot be bound
    /// again within `HANG`.
    pub fn come_up(&self) {
        if self.inner.conns().acceptor.is_some() {
            return;
        }
        let (port, name) = (self.inner.port, self.inner.protocol.name);
        drop(self.inner.conns().placeholder.take());
        let deadline = Instant::now() + crate::timeouts::HANG;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => break l,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => panic!("fake {name}: cannot listen on 127.0.0.1:{port} again: {e}"),
            }
        };
        listener.set_nonblocking(true).expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (stop, inner) = (stop.clone(), self.inner.clone());
            std::thread::Builder::new()
                .name(format!("fake-{name}-{port}"))
                .spawn(move || accept_loop(listener, stop, inner))
                .expect("spawn a fake endpoint's acceptor")
        };
        self.inner.conns().acceptor = Some((stop, handle));
    }

    /// True while listening.
    pub fn is_up(&self) -> bool {
        self.inner.conns().acceptor.is_some()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop();
        drop(self.inner.conns().placeholder.take());
    }
}

/// SO_LINGER 0: closing the socket resets the connection (no TIME_WAIT).
fn set_linger_zero(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// A TCP socket bound to 127.0.0.1:`port` that does not listen: connecting to the port is refused.
/// Without SO_REUSEADDR, so that no other socket can bind the port meanwhile.
fn bind_without_listening(port: u16) -> io::Result<OwnedFd> {
    // SAFETY: plain socket calls; the descriptor is owned by the OwnedFd from its creation.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let r = libc::bind(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    }
}

fn accept_loop(listener: TcpListener, stop: Arc<AtomicBool>, inner: Arc<Inner>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_nodelay(true);
                let generation = inner.generation.load(Ordering::SeqCst);
                let id = {
                    let mut conns = inner.conns();
                    let id = conns.next;
                    conns.next += 1;
                    match stream.try_clone() {
                        Ok(c) => {
                            conns.open.insert(id, c);
                        }
                        Err(_) => continue,
                    }
                    id
                };
                let conn_inner = inner.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("fake-{}-conn-{id}", inner.protocol.name))
                    .spawn(move || {
                        let _ = serve_connection(&stream, &conn_inner, generation);
                        conn_inner.conns().open.remove(&id);
                        // Gone down meanwhile: dropped as it is, reset (see `stop`).
                        if conn_inner.generation.load(Ordering::SeqCst) == generation {
                            let _ = stream.shutdown(Shutdown::Both);
                        }
                    });
                if spawned.is_err() {
                    inner.conns().open.remove(&id);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    // The listener is dropped here: connections are refused from now on.
}

fn serve_connection(stream: &TcpStream, inner: &Inner, generation: u64) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, stream.try_clone()?);
    let mut writer = stream.try_clone()?;
    loop {
        let Some(req) = read_request(&mut reader, &mut writer)? else {
            return Ok(());
        };
        if inner.generation.load(Ordering::SeqCst) != generation {
            // Went down while this request was coming in: it is never served.
            return Ok(());
        }
        let keep_alive = req.keep_alive();
        let request_id = inner.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let (answer, delay) = answer(inner, &req);
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if inner.generation.load(Ordering::SeqCst) != generation {
            return Ok(());
        }
        let content_type = inner.protocol.content_type;
        write_answer(&mut writer, &answer, content_type, request_id, keep_alive)?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// The answer to `req` and the delay before it: 404 for another method or path, 400
/// `UnknownOperationException` for an operation the service does not know.
fn answer(inner: &Inner, req: &Request) -> (Answer, Duration) {
    let (protocol, service) = (inner.protocol, &inner.service);
    let delay = service.delay();
    if req.method != "POST" || (!protocol.any_path && req.path != "/") {
        let msg = format!("no such resource: {} {}", req.method, req.path);
        return (Answer::error(404, "UnknownOperationException", &msg), delay);
    }
    let operation = req.operation(protocol.target_prefix);
    let answer = service.answer(operation, req).unwrap_or_else(|| {
        let target = req.header("x-amz-target").unwrap_or("");
        Answer::error(
            400,
            "UnknownOperationException",
            &format!("unknown operation {target:?}"),
        )
    });
    (answer, delay)
}
