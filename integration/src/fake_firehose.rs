//! A Firehose endpoint of our own that can fail on demand: moto never fails a record, this one
//! answers some entries, some calls or every connection with the errors AWS gives.
//!
//! It is a plain HTTP/1.1 server on 127.0.0.1 (std threads, one per connection, keep-alive,
//! `Content-Length` and chunked request bodies, `Expect: 100-continue`) speaking the Firehose JSON
//! protocol (awsJson1_1) the way AWS does:
//!
//! - `X-Amz-Target: Firehose_20150804.PutRecordBatch`, body
//!   `{"DeliveryStreamName":"s","Records":[{"Data":"<base64>"},...]}`: HTTP 200 with
//!   `{"FailedPutCount":N,"Encrypted":false,"RequestResponses":[...]}`, one response per record in
//!   order, `{"RecordId":"..."}` or `{"ErrorCode":"ServiceUnavailableException","ErrorMessage":
//!   "Slow down."}`. A call over the service limits (more than 500 records, more than 4 MiB of
//!   record data, a record over 1,000 KiB, no records) is refused as AWS does: HTTP 400
//!   `InvalidArgumentException`, nothing stored.
//! - `PutRecord` (one `Record`) and a minimal `DescribeDeliveryStream`.
//! - Injected faults ([`Faults`]): HTTP 400 `ThrottlingException`, HTTP 500 `InternalFailure`,
//!   HTTP 503 `ServiceUnavailableException`, HTTP 400 `ResourceNotFoundException` (a stream that
//!   does not exist), a delay before every answer; for every call or only the next few.
//! - Anything else: HTTP 400 `UnknownOperationException`.
//!
//! Errors carry `{"__type":"...","message":"..."}` and the `x-amzn-ErrorType` header, which is what
//! botocore and the AWS SDK for Rust read for awsJson1_1 (checked against boto3).
//!
//! What was accepted is kept in arrival order ([`FakeFirehose::records`], [`FakeFirehose::lines`]),
//! and every call is described ([`FakeFirehose::calls`]: records, bytes, outcome, arrival time,
//! the region it was signed for). The records of a call are stored when it
//! is answered with success, before the delay: a client that gives up on a slow call and sends it
//! again makes duplicates, as with the real service. For long benchmarks,
//! [`FakeFirehose::discard_records`] keeps the counts only.

use crate::Rng;
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Firehose limits, as AWS enforces them.
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// Bytes of record data (decoded) in one PutRecordBatch call: 4 MiB.
pub const MAX_BYTES_PER_CALL: usize = 4 * 1024 * 1024;
/// Bytes of one record (decoded): 1,000 KiB.
pub const MAX_RECORD_BYTES: usize = 1_024_000;

/// Largest request head and body the server reads (a 4 MiB call is about 5.6 MB of JSON).
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

/// What the endpoint does wrong, from the next call on. Fractions are in 0.0..=1.0 and drawn from
/// a deterministic generator seeded with `seed`; a call is first checked for `throttle`, then
/// `server_error`, then `unavailable`, and only a call that passes all three has its entries
/// failed at the rate `fail_entries`.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Fraction of the entries of a successful call answered with `ErrorCode`
    /// `ServiceUnavailableException` (not stored).
    pub fail_entries: f64,
    /// Fraction of calls answered HTTP 400 `ThrottlingException` (nothing stored).
    pub throttle: f64,
    /// Fraction of calls answered HTTP 500 `InternalFailure` (nothing stored).
    pub server_error: f64,
    /// Fraction of calls answered HTTP 503 `ServiceUnavailableException` (nothing stored).
    pub unavailable: f64,
    /// Fraction of calls answered HTTP 400 `ResourceNotFoundException` (nothing stored), as
    /// for a stream that does not exist.
    pub not_found: f64,
    /// The faults apply to this many PutRecordBatch/PutRecord calls from `set_faults` on,
    /// then none (the delay included); None: to every call.
    pub calls: Option<usize>,
    /// Wait before answering any request (the outcome, and the storing, is decided before).
    pub delay: Duration,
    pub seed: u64,
}

impl Default for Faults {
    /// No faults.
    fn default() -> Faults {
        Faults {
            fail_entries: 0.0,
            throttle: 0.0,
            server_error: 0.0,
            unavailable: 0.0,
            not_found: 0.0,
            calls: None,
            delay: Duration::ZERO,
            seed: 1,
        }
    }
}

/// How a PutRecordBatch (or PutRecord) call was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// HTTP 200; `failed` entries answered with an ErrorCode (the others stored).
    Ok { failed: usize },
    /// HTTP 400 ThrottlingException.
    Throttled,
    /// HTTP 500 InternalFailure.
    ServerError,
    /// HTTP 503 ServiceUnavailableException.
    Unavailable,
    /// HTTP 400 ResourceNotFoundException.
    NotFound,
    /// HTTP 400 for a malformed call or one over the limits (the text says why).
    Invalid(String),
}

/// One PutRecordBatch or PutRecord call as the endpoint saw it.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// `PutRecordBatch` or `PutRecord`.
    pub operation: String,
    pub stream: String,
    /// Records in the call.
    pub records: usize,
    /// Bytes of record data in the call (decoded).
    pub bytes: usize,
    /// Size of its largest record (decoded).
    pub max_record: usize,
    pub outcome: Outcome,
    /// Where the records of this call that were stored are in `records()` (empty if none, or if
    /// records are discarded).
    pub accepted: Range<usize>,
    /// When the request was complete.
    pub at: Instant,
    /// The region of the request's SigV4 signature (`Credential=<key>/<date>/<region>/...` in
    /// its Authorization header); empty if unsigned.
    pub region: String,
}

struct State {
    faults: Faults,
    rng: Rng,
    records: Vec<Vec<u8>>,
    /// Records and lines stored since the start, kept or not.
    record_count: usize,
    line_count: usize,
    /// False: records are counted, not kept (`discard_records`).
    keep: bool,
    calls: Vec<CallInfo>,
    next_id: u64,
    /// Open connections, to be shut down by `go_down` and on drop.
    conns: HashMap<u64, TcpStream>,
    next_conn: u64,
    /// The acceptor thread while up.
    acceptor: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    /// While down: a socket bound to the port without listening, so that connections are refused
    /// and no other process (another test) takes the port meanwhile.
    placeholder: Option<OwnedFd>,
}

struct Shared {
    port: u16,
    state: Mutex<State>,
    /// Bumped by `go_down`: a request read on an older connection is not served.
    generation: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The fault-injecting Firehose endpoint. Stopped (listener closed, connections shut) on drop.
pub struct FakeFirehose {
    shared: Arc<Shared>,
}

impl FakeFirehose {
    /// Starts listening on 127.0.0.1 and a free port, with no faults.
    pub fn start() -> FakeFirehose {
        let port = crate::free_port();
        let shared = Arc::new(Shared {
            port,
            state: Mutex::new(State {
                faults: Faults::default(),
                rng: Rng::new(Faults::default().seed),
                records: Vec::new(),
                record_count: 0,
                line_count: 0,
                keep: true,
                calls: Vec::new(),
                next_id: 0,
                conns: HashMap::new(),
                next_conn: 0,
                acceptor: None,
                placeholder: None,
            }),
            generation: AtomicU64::new(0),
        });
        let fake = FakeFirehose { shared };
        fake.come_up();
        fake
    }

    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// `http://127.0.0.1:PORT`, for the relayer's `endpoint`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.shared.port)
    }

    /// Replaces the faults (and restarts the generator from their seed) for the calls that
    /// arrive from now on.
    pub fn set_faults(&self, f: Faults) {
        let mut st = self.shared.lock();
        st.rng = Rng::new(f.seed);
        st.faults = f;
    }

    /// Every record stored, decoded, in arrival order.
    pub fn records(&self) -> Vec<Vec<u8>> {
        self.shared.lock().records.clone()
    }

    /// The stored records split into lines, without their `\n`, in arrival order. A record's
    /// bytes after its last `\n` (there should be none) count as one more line.
    pub fn lines(&self) -> Vec<Vec<u8>> {
        split_lines(&self.shared.lock().records)
    }

    /// Number of lines stored so far, kept or not (cheaper than `lines().len()`).
    pub fn line_count(&self) -> usize {
        self.shared.lock().line_count
    }

    /// Number of records stored so far, kept or not.
    pub fn record_count(&self) -> usize {
        self.shared.lock().record_count
    }

    /// From now on, only count the records stored (`line_count`, `record_count`), do not keep
    /// them (`records`, `lines` and `CallInfo::accepted` then miss them): for long benchmarks.
    pub fn discard_records(&self) {
        self.shared.lock().keep = false;
    }

    /// Every PutRecordBatch/PutRecord call so far, in arrival order.
    pub fn calls(&self) -> Vec<CallInfo> {
        self.shared.lock().calls.clone()
    }

    /// Stops listening (connections are refused from now on) and shuts every open connection; a
    /// request still being read is not served, one waiting for its delay is not answered (its
    /// records, if it was a success, are already stored, as when an answer is lost). The port
    /// stays reserved (bound, not listening) until `come_up`: tests run in parallel processes
    /// would otherwise take it for their own endpoint.
    pub fn go_down(&self) {
        self.stop();
        self.reserve_port();
    }

    /// Stops the acceptor and resets every open connection.
    fn stop(&self) {
        // The acceptor first: a connection it accepts until it stops is in `conns` below.
        let acceptor = self.shared.lock().acceptor.take();
        if let Some((stop, handle)) = acceptor {
            stop.store(true, Ordering::SeqCst);
            let _ = handle.join();
        }
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        let conns = std::mem::take(&mut self.shared.lock().conns);
        for (_, c) in conns {
            // Reset rather than close: no TIME_WAIT left on the port, which `reserve_port` binds.
            set_linger_zero(&c);
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Binds the placeholder. The connections just reset may take a moment to go (their threads
    /// close them); if the port still cannot be bound after 5 s, it is left unreserved.
    fn reserve_port(&self) {
        let port = self.shared.port;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match bind_without_listening(port) {
                Ok(fd) => {
                    self.shared.lock().placeholder = Some(fd);
                    return;
                }
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    eprintln!("fake firehose: port {port} not reserved while down: {e}");
                    return;
                }
            }
        }
    }

    /// Listens again on the same port (does nothing if up). Panics if the port cannot be bound
    /// again within `HANG`.
    pub fn come_up(&self) {
        if self.shared.lock().acceptor.is_some() {
            return;
        }
        let port = self.shared.port;
        drop(self.shared.lock().placeholder.take());
        let deadline = Instant::now() + crate::timeouts::HANG;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("fake firehose: cannot listen on 127.0.0.1:{port} again: {e}"),
            }
        };
        listener.set_nonblocking(true).expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (stop, shared) = (stop.clone(), self.shared.clone());
            std::thread::Builder::new()
                .name(format!("fake-firehose-{port}"))
                .spawn(move || accept_loop(listener, stop, shared))
                .expect("spawn the fake firehose acceptor")
        };
        self.shared.lock().acceptor = Some((stop, handle));
    }

    /// True while listening.
    pub fn is_up(&self) -> bool {
        self.shared.lock().acceptor.is_some()
    }
}

impl Drop for FakeFirehose {
    fn drop(&mut self) {
        self.stop();
        drop(self.shared.lock().placeholder.take());
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

/// Splits records into lines (without `\n`); bytes after a record's last `\n` are one more line.
pub fn split_lines(records: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    for r in records {
        let mut rest = &r[..];
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(p) => {
                    lines.push(rest[..p].to_vec());
                    rest = &rest[p + 1..];
                }
                None => {
                    lines.push(rest.to_vec());
                    rest = &[];
                }
            }
        }
    }
    lines
}

/// Number of lines `split_lines` makes of one record.
pub fn count_lines(r: &[u8]) -> usize {
    let n = r.iter().filter(|&&b| b == b'\n').count();
    n + usize::from(!r.is_empty() && !r.ends_with(b"\n"))
}

fn accept_loop(listener: TcpListener, stop: Arc<AtomicBool>, shared: Arc<Shared>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_nodelay(true);
                let generation = shared.generation.load(Ordering::SeqCst);
                let id = {
                    let mut st = shared.lock();
                    let id = st.next_conn;
                    st.next_conn += 1;
                    match stream.try_clone() {
                        Ok(c) => {
                            st.conns.insert(id, c);
                        }
                        Err(_) => continue,
                    }
                    id
                };
                let conn_shared = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("fake-firehose-conn-{id}"))
                    .spawn(move || {
                        let _ = serve_connection(&stream, &conn_shared, generation);
                        conn_shared.lock().conns.remove(&id);
                        let _ = stream.shutdown(Shutdown::Both);
                    });
                if spawned.is_err() {
                    shared.lock().conns.remove(&id);
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

/// One HTTP request.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// HTTP/1.1 keeps the connection unless `Connection: close`.
    fn keep_alive(&self) -> bool {
        !self
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads a line ending in `\n` (at most `MAX_HEAD` bytes) without the line end. `Ok(None)` at
/// EOF before any byte.
fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = r.by_ref().take(MAX_HEAD as u64).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") {
        return Err(bad("header line too long or cut"));
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| bad("header line is not UTF-8"))
}

/// Reads one request. `Ok(None)` on a clean EOF between requests. Answers
/// `Expect: 100-continue` on `w` before reading the body.
pub(crate) fn read_request(r: &mut impl BufRead, w: &mut impl Write) -> io::Result<Option<Request>> {
    let request_line = loop {
        match read_line(r)? {
            None => return Ok(None),
            // Tolerate empty lines between requests (RFC 9112 2.2).
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad(format!("bad request line {request_line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("unsupported version {version:?}")));
    }
    let mut headers = Vec::new();
    let mut head_bytes = request_line.len();
    loop {
        let line = read_line(r)?.ok_or_else(|| bad("EOF inside the headers"))?;
        if line.is_empty() {
            break;
        }
        head_bytes += line.len();
        if head_bytes > MAX_HEAD {
            return Err(bad("headers too large"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        path: path.to_string(),
        headers,
        body: Vec::new(),
    };
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        w.flush()?;
    }
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let size_line = read_line(r)?.ok_or_else(|| bad("EOF in a chunk size"))?;
            let size = size_line.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size, 16).map_err(|_| bad(format!("bad chunk size {size:?}")))?;
            if req.body.len() + size > MAX_BODY {
                return Err(bad("body too large"));
            }
            if size == 0 {
                // Trailers, up to the empty line.
                while !read_line(r)?
                    .ok_or_else(|| bad("EOF in the trailers"))?
                    .is_empty()
                {}
                break;
            }
            let old = req.body.len();
            req.body.resize(old + size, 0);
            r.read_exact(&mut req.body[old..])?;
            let end = read_line(r)?.ok_or_else(|| bad("EOF after a chunk"))?;
            if !end.is_empty() {
                return Err(bad("chunk not followed by CRLF"));
            }
        }
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
        if len > MAX_BODY {
            return Err(bad("body too large"));
        }
        req.body.resize(len, 0);
        r.read_exact(&mut req.body)?;
    }
    Ok(Some(req))
}

/// An HTTP answer.
struct Answer {
    status: u16,
    /// For the `x-amzn-ErrorType` header.
    error_type: Option<&'static str>,
    body: Vec<u8>,
}

impl Answer {
    fn json(status: u16, body: Value) -> Answer {
        Answer {
            status,
            error_type: None,
            body: body.to_string().into_bytes(),
        }
    }
    fn error(status: u16, error_type: &'static str, message: &str) -> Answer {
        Answer {
            status,
            error_type: Some(error_type),
            body: json!({"__type": error_type, "message": message})
                .to_string()
                .into_bytes(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn write_answer(w: &mut impl Write, a: &Answer, request_id: u64, keep_alive: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\
         x-amzn-RequestId: 00000000-0000-4000-8000-{:012x}\r\n",
        a.status,
        reason(a.status),
        a.body.len(),
        request_id
    );
    if let Some(t) = a.error_type {
        head.push_str(&format!("x-amzn-ErrorType: {t}\r\n"));
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&a.body);
    w.write_all(&out)?;
    w.flush()
}

fn serve_connection(stream: &TcpStream, shared: &Shared, generation: u64) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, stream.try_clone()?);
    let mut writer = stream.try_clone()?;
    loop {
        let Some(req) = read_request(&mut reader, &mut writer)? else {
            return Ok(());
        };
        if shared.generation.load(Ordering::SeqCst) != generation {
            // Went down while this request was coming in: it is never served.
            return Ok(());
        }
        let keep_alive = req.keep_alive();
        let (answer, delay, request_id) = handle(&req, shared);
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if shared.generation.load(Ordering::SeqCst) != generation {
            return Ok(());
        }
        write_answer(&mut writer, &answer, request_id, keep_alive)?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// Decides the answer (storing accepted records) and the delay before it.
fn handle(req: &Request, shared: &Shared) -> (Answer, Duration, u64) {
    let target = req.header("x-amz-target").unwrap_or("");
    let operation = target.strip_prefix("Firehose_20150804.").unwrap_or("");
    // Decoded outside the lock: connections are served in parallel.
    let put = matches!(operation, "PutRecordBatch" | "PutRecord").then(|| parse_put(operation, &req.body));
    let region = req
        .header("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(2))
        .unwrap_or("")
        .to_string();
    let mut st = shared.lock();
    st.next_id += 1;
    let request_id = st.next_id;
    let delay = if st.faults.calls == Some(0) {
        Duration::ZERO
    } else {
        st.faults.delay
    };
    if req.method != "POST" || req.path != "/" {
        let msg = format!("no such resource: {} {}", req.method, req.path);
        return (
            Answer::error(404, "UnknownOperationException", &msg),
            delay,
            request_id,
        );
    }
    let answer = match (operation, put) {
        (_, Some(parsed)) => put_records(operation, parsed, region, &mut st),
        ("DescribeDeliveryStream", _) => describe(&req.body),
        (_, None) => Answer::error(
            400,
            "UnknownOperationException",
            &format!("unknown operation {target:?}"),
        ),
    };
    (answer, delay, request_id)
}

fn describe(body: &[u8]) -> Answer {
    let name = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("DeliveryStreamName")?.as_str().map(str::to_string));
    let Some(name) = name else {
        return Answer::error(400, "SerializationException", "DeliveryStreamName is required");
    };
    Answer::json(
        200,
        json!({"DeliveryStreamDescription": {
            "DeliveryStreamName": name,
            "DeliveryStreamARN": format!("arn:aws:firehose:us-east-1:123456789012:deliverystream/{name}"),
            "DeliveryStreamStatus": "ACTIVE",
            "DeliveryStreamType": "DirectPut",
            "VersionId": "1",
            "Destinations": [],
            "HasMoreDestinations": false
        }}),
    )
}

fn draw(rng: &mut Rng, fraction: f64) -> bool {
    fraction > 0.0 && (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= fraction
}

/// Answers a decoded PutRecordBatch or PutRecord (`parsed`: stream and records), storing what is
/// accepted.
fn put_records(
    operation: &str,
    parsed: Result<(String, Vec<Vec<u8>>), String>,
    region: String,
    st: &mut State,
) -> Answer {
    let at = Instant::now();
    let mut info = CallInfo {
        operation: operation.to_string(),
        stream: String::new(),
        records: 0,
        bytes: 0,
        max_record: 0,
        outcome: Outcome::Invalid(String::new()),
        accepted: st.records.len()..st.records.len(),
        at,
        region,
    };
    let records = match parsed {
        Ok((stream, records)) => {
            info.stream = stream;
            info.records = records.len();
            info.bytes = records.iter().map(Vec::len).sum();
            info.max_record = records.iter().map(Vec::len).max().unwrap_or(0);
            records
        }
        Err(e) => {
            let a = Answer::error(400, "SerializationException", &e);
            info.outcome = Outcome::Invalid(e);
            st.calls.push(info);
            return a;
        }
    };
    let over = if records.is_empty() {
        Some("Records must contain at least 1 record".to_string())
    } else if records.len() > MAX_RECORDS_PER_CALL {
        Some(format!(
            "{} records in one call, over the limit of {MAX_RECORDS_PER_CALL}",
            records.len()
        ))
    } else if info.bytes > MAX_BYTES_PER_CALL {
        Some(format!(
            "{} bytes of record data in one call, over the limit of {MAX_BYTES_PER_CALL}",
            info.bytes
        ))
    } else if info.max_record > MAX_RECORD_BYTES {
        Some(format!(
            "a record of {} bytes, over the limit of {MAX_RECORD_BYTES}",
            info.max_record
        ))
    } else {
        None
    };
    if let Some(e) = over {
        let a = Answer::error(400, "InvalidArgumentException", &e);
        info.outcome = Outcome::Invalid(e);
        st.calls.push(info);
        return a;
    }
    let faults = match st.faults.calls {
        Some(0) => Faults::default(),
        Some(n) => {
            st.faults.calls = Some(n - 1);
            st.faults.clone()
        }
        None => st.faults.clone(),
    };
    let call_fault = if draw(&mut st.rng, faults.not_found) {
        Some((
            400,
            "ResourceNotFoundException",
            "Firehose s under account 123456789012 not found.",
            Outcome::NotFound,
        ))
    } else if draw(&mut st.rng, faults.throttle) {
        Some((400, "ThrottlingException", "Rate exceeded", Outcome::Throttled))
    } else if draw(&mut st.rng, faults.server_error) {
        Some((
            500,
            "InternalFailure",
            "We encountered an internal error.",
            Outcome::ServerError,
        ))
    } else if draw(&mut st.rng, faults.unavailable) {
        Some((
            503,
            "ServiceUnavailableException",
            "Slow down.",
            Outcome::Unavailable,
        ))
    } else {
        None
    };
    if let Some((status, ty, msg, outcome)) = call_fault {
        info.outcome = outcome;
        st.calls.push(info);
        return Answer::error(status, ty, msg);
    }
    let first = st.records.len();
    let mut failed = 0;
    let mut responses = Vec::with_capacity(records.len());
    for r in records {
        if draw(&mut st.rng, faults.fail_entries) {
            failed += 1;
            responses.push(json!({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}));
        } else {
            st.next_id += 1;
            responses.push(json!({"RecordId": format!("{:056x}", st.next_id)}));
            st.record_count += 1;
            st.line_count += count_lines(&r);
            if st.keep {
                st.records.push(r);
            }
        }
    }
    info.accepted = first..st.records.len();
    info.outcome = Outcome::Ok { failed };
    st.calls.push(info);
    if operation == "PutRecord" {
        if failed > 0 {
            return Answer::error(503, "ServiceUnavailableException", "Slow down.");
        }
        let id = responses[0]["RecordId"].clone();
        return Answer::json(200, json!({"RecordId": id, "Encrypted": false}));
    }
    Answer::json(
        200,
        json!({"FailedPutCount": failed, "Encrypted": false, "RequestResponses": responses}),
    )
}

/// The stream name and decoded records of a PutRecordBatch (`Records`) or PutRecord (`Record`).
fn parse_put(operation: &str, body: &[u8]) -> Result<(String, Vec<Vec<u8>>), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let stream = v
        .get("DeliveryStreamName")
        .and_then(Value::as_str)
        .ok_or("DeliveryStreamName missing")?
        .to_string();
    let items: Vec<&Value> = if operation == "PutRecord" {
        vec![v.get("Record").ok_or("Record missing")?]
    } else {
        v.get("Records")
            .and_then(Value::as_array)
            .ok_or("Records missing")?
            .iter()
            .collect()
    };
    let mut records = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let data = item
            .get("Data")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("record {i}: Data missing"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("record {i}: Data is not base64: {e}"))?;
        records.push(bytes);
    }
    Ok((stream, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    fn batch_body(records: &[&[u8]]) -> String {
        let recs: Vec<Value> = records.iter().map(|r| json!({"Data": b64(r)})).collect();
        json!({"DeliveryStreamName": "s", "Records": recs}).to_string()
    }

    fn post(target: &str, body: &str, extra_headers: &str) -> Vec<u8> {
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: {target}\r\nContent-Type: application/x-amz-json-1.1\r\n\
             {extra_headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// Reads one response: status, headers (lowercased names), body.
    fn read_response(r: &mut impl BufRead) -> (u16, Vec<(String, String)>, Value) {
        let status_line = read_line(r).unwrap().expect("a status line");
        let status: u16 = status_line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let l = read_line(r).unwrap().unwrap();
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').unwrap();
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .unwrap()
            .1
            .parse()
            .unwrap();
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        (status, headers, serde_json::from_slice(&body).unwrap())
    }

    #[test]
    fn parses_content_length_chunked_and_expect() {
        let wire = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloPOST /x HTTP/1.1\r\n\
            Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n";
        let mut r = &wire[..];
        let mut out = Vec::new();
        let a = read_request(&mut r, &mut out).unwrap().unwrap();
        assert_eq!(
            (a.method.as_str(), a.path.as_str(), &a.body[..]),
            ("POST", "/", &b"hello"[..])
        );
        assert_eq!(a.header("x-a"), Some("b"));
        assert!(out.is_empty());
        let b = read_request(&mut r, &mut out).unwrap().unwrap();
        assert_eq!((b.path.as_str(), &b.body[..]), ("/x", &b"abcde"[..]));
        assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
        assert!(read_request(&mut r, &mut out).unwrap().is_none(), "clean EOF");
        let mut cut = &wire[..30];
        assert!(
            read_request(&mut cut, &mut out).is_err(),
            "EOF inside the headers"
        );
    }

    #[test]
    fn lines_split_records() {
        let recs = vec![b"a\nbb\n".to_vec(), b"c".to_vec(), Vec::new(), b"\n".to_vec()];
        assert_eq!(
            split_lines(&recs),
            vec![b"a".to_vec(), b"bb".to_vec(), b"c".to_vec(), Vec::new()]
        );
        assert_eq!(recs.iter().map(|r| count_lines(r)).sum::<usize>(), 4);
    }

    /// Over one keep-alive TcpStream: a batch stored, an entry failure, a throttled call, an unknown
    /// operation, and a call over the limits; then down (refused) and up again.
    #[test]
    fn serves_put_record_batch_over_keep_alive() {
        let fake = FakeFirehose::start();
        let s = TcpStream::connect(("127.0.0.1", fake.port())).unwrap();
        s.set_read_timeout(Some(crate::timeouts::HANG)).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let target = "Firehose_20150804.PutRecordBatch";

        w.write_all(&post(target, &batch_body(&[b"a\n", b"b\nc\n"]), ""))
            .unwrap();
        let (status, headers, body) = read_response(&mut r);
        assert_eq!(status, 200);
        assert!(headers.contains(&("content-type".into(), "application/x-amz-json-1.1".into())));
        assert_eq!(body["FailedPutCount"], 0);
        assert_eq!(body["RequestResponses"].as_array().unwrap().len(), 2);
        assert!(body["RequestResponses"][1]["RecordId"].is_string());
        assert_eq!(fake.lines(), vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);

        fake.set_faults(Faults {
            fail_entries: 1.0,
            ..Faults::default()
        });
        w.write_all(&post(target, &batch_body(&[b"x\n"]), "")).unwrap();
        let (status, _, body) = read_response(&mut r);
        assert_eq!(status, 200);
        assert_eq!(body["FailedPutCount"], 1);
        assert_eq!(
            body["RequestResponses"][0]["ErrorCode"],
            "ServiceUnavailableException"
        );

        fake.set_faults(Faults {
            throttle: 1.0,
            ..Faults::default()
        });
        w.write_all(&post(target, &batch_body(&[b"y\n"]), "")).unwrap();
        let (status, headers, body) = read_response(&mut r);
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("ThrottlingException"))
        );
        assert!(headers.contains(&("x-amzn-errortype".into(), "ThrottlingException".into())));

        fake.set_faults(Faults::default());
        w.write_all(&post("Firehose_20150804.Nope", "{}", "")).unwrap();
        let (status, _, body) = read_response(&mut r);
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("UnknownOperationException"))
        );

        let big = vec![b'x'; MAX_RECORD_BYTES + 1];
        w.write_all(&post(target, &batch_body(&[&big]), "")).unwrap();
        let (status, _, body) = read_response(&mut r);
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("InvalidArgumentException"))
        );

        let calls = fake.calls();
        let outcomes: Vec<_> = calls.iter().map(|c| c.outcome.clone()).collect();
        assert_eq!(
            outcomes,
            vec![
                Outcome::Ok { failed: 0 },
                Outcome::Ok { failed: 1 },
                Outcome::Throttled,
                Outcome::Invalid(format!(
                    "a record of {} bytes, over the limit of {MAX_RECORD_BYTES}",
                    MAX_RECORD_BYTES + 1
                )),
            ]
        );
        assert_eq!((calls[0].records, calls[0].bytes, calls[0].max_record), (2, 6, 4));
        assert_eq!(calls[0].accepted, 0..2);
        assert_eq!(
            fake.records().len(),
            2,
            "failed and refused entries are not stored"
        );

        fake.go_down();
        let mut buf = [0u8; 1];
        assert!(
            matches!(r.read(&mut buf), Ok(0) | Err(_)),
            "go_down closes open connections"
        );
        assert!(
            TcpStream::connect(("127.0.0.1", fake.port())).is_err(),
            "refused while down"
        );
        assert!(
            TcpListener::bind(("127.0.0.1", fake.port())).is_err(),
            "the port stays reserved while down"
        );
        fake.come_up();
        let s = TcpStream::connect(("127.0.0.1", fake.port())).unwrap();
        s.set_read_timeout(Some(crate::timeouts::HANG)).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        w.write_all(&post(target, &batch_body(&[b"z\n"]), "Connection: close\r\n"))
            .unwrap();
        let (status, headers, _) = read_response(&mut r);
        assert_eq!(status, 200);
        assert!(headers.contains(&("connection".into(), "close".into())));
        assert_eq!((fake.line_count(), fake.record_count()), (4, 3));
        fake.discard_records();
        let s = TcpStream::connect(("127.0.0.1", fake.port())).unwrap();
        s.set_read_timeout(Some(crate::timeouts::HANG)).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        w.write_all(&post(target, &batch_body(&[b"d\ne\n"]), "")).unwrap();
        assert_eq!(read_response(&mut r).0, 200);
        assert_eq!((fake.line_count(), fake.record_count()), (6, 4), "counted");
        assert_eq!(fake.records().len(), 3, "not kept");
    }
}
