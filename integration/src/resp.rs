//! A tiny synchronous Redis client for the tests (RESP2 requests; RESP2 and RESP3 replies): raw
//! bytes in, parsed (or raw) replies out.
//!
//! It never interprets what it sends (tests send malformed input on purpose), and it reads replies
//! with a read timeout so that a relayer that hangs fails the test instead of blocking it.

use crate::timeouts::HANG;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// One reply: RESP2, and the RESP3 types a client gets after HELLO 3.
#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+text`
    Status(String),
    /// `-text` (without the `-`)
    Error(String),
    /// `:n`
    Int(i64),
    /// `$n` with its payload
    Bulk(Vec<u8>),
    /// `$-1`
    Nil,
    /// `*n` with its elements
    Array(Vec<Reply>),
    /// `*-1`
    NilArray,
    /// RESP3 `%n`: n key/value pairs
    Map(Vec<(Reply, Reply)>),
    /// RESP3 `~n`
    Set(Vec<Reply>),
    /// RESP3 `>n`: out-of-band data (pub/sub messages, invalidations)
    Push(Vec<Reply>),
    /// RESP3 `_`
    Null,
    /// RESP3 `#t` / `#f`
    Bool(bool),
    /// RESP3 `,`: a double, as written
    Double(String),
    /// RESP3 `(`: a big number, as written
    BigNumber(String),
    /// RESP3 `=n`: the format (`txt`, `mkd`) and the text
    Verbatim(String, Vec<u8>),
}

impl Reply {
    pub fn status(s: &str) -> Reply {
        Reply::Status(s.to_string())
    }
    pub fn ok() -> Reply {
        Reply::status("OK")
    }
    pub fn error(s: &str) -> Reply {
        Reply::Error(s.to_string())
    }
    pub fn bulk(b: impl AsRef<[u8]>) -> Reply {
        Reply::Bulk(b.as_ref().to_vec())
    }
    pub fn int(n: i64) -> Reply {
        Reply::Int(n)
    }
    pub fn array(items: Vec<Reply>) -> Reply {
        Reply::Array(items)
    }

    pub fn is_ok(&self) -> bool {
        matches!(self, Reply::Status(s) if s == "OK")
    }
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
    /// The text of an error reply (without the leading `-`).
    pub fn error_text(&self) -> Option<&str> {
        match self {
            Reply::Error(s) => Some(s),
            _ => None,
        }
    }
    /// True for an error reply whose text starts with `prefix`.
    pub fn is_error_starting(&self, prefix: &str) -> bool {
        self.error_text().is_some_and(|t| t.starts_with(prefix))
    }
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(b) => Some(b),
            Reply::Status(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
    /// A bulk or status reply as (lossy) text.
    pub fn as_str(&self) -> Option<String> {
        self.as_bytes().map(|b| String::from_utf8_lossy(b).into_owned())
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The reply in wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Status(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Reply::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            Reply::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Bulk(b) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
            Reply::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for i in items {
                    i.encode_into(out);
                }
            }
            Reply::NilArray => out.extend_from_slice(b"*-1\r\n"),
            Reply::Map(pairs) => {
                out.extend_from_slice(format!("%{}\r\n", pairs.len()).as_bytes());
                for (k, v) in pairs {
                    k.encode_into(out);
                    v.encode_into(out);
                }
            }
            Reply::Set(items) | Reply::Push(items) => {
                let kind = if matches!(self, Reply::Set(_)) { '~' } else { '>' };
                out.extend_from_slice(format!("{kind}{}\r\n", items.len()).as_bytes());
                for i in items {
                    i.encode_into(out);
                }
            }
            Reply::Null => out.extend_from_slice(b"_\r\n"),
            Reply::Bool(b) => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Reply::Double(d) => out.extend_from_slice(format!(",{d}\r\n").as_bytes()),
            Reply::BigNumber(n) => out.extend_from_slice(format!("({n}\r\n").as_bytes()),
            Reply::Verbatim(fmt, text) => {
                out.extend_from_slice(format!("={}\r\n{fmt}:", text.len() + 4).as_bytes());
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Status(s) => write!(f, "+{s:?}"),
            Reply::Error(s) => write!(f, "-{s:?}"),
            Reply::Int(n) => write!(f, ":{n}"),
            Reply::Bulk(b) => write!(f, "${}", show_bytes(b, 200)),
            Reply::Nil => f.write_str("$nil"),
            Reply::Array(items) => f.debug_list().entries(items).finish(),
            Reply::NilArray => f.write_str("*nil"),
            Reply::Map(pairs) => f.debug_map().entries(pairs.iter().map(|(k, v)| (k, v))).finish(),
            Reply::Set(items) => write!(f, "~{items:?}"),
            Reply::Push(items) => write!(f, ">{items:?}"),
            Reply::Null => f.write_str("_null"),
            Reply::Bool(b) => write!(f, "#{b}"),
            Reply::Double(d) => write!(f, ",{d}"),
            Reply::BigNumber(n) => write!(f, "({n}"),
            Reply::Verbatim(fmt, t) => write!(f, "={fmt}:{}", show_bytes(t, 200)),
        }
    }
}

/// Bytes as an escaped string for messages, cut after `max` bytes (with the total length).
pub fn show_bytes(b: &[u8], max: usize) -> String {
    let cut = &b[..b.len().min(max)];
    let mut s = String::from("\"");
    for &c in cut {
        s.extend(std::ascii::escape_default(c).map(char::from));
    }
    s.push('"');
    if b.len() > max {
        s.push_str(&format!("... ({} bytes)", b.len()));
    }
    s
}

/// A RESP2 request (multibulk) for these arguments.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses one reply at the start of `buf`: `Ok(None)` if more bytes are needed, else the reply
/// and the number of bytes it took.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    parse_at(buf, 0)
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

fn parse_int(line: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad integer in reply: {}", show_bytes(line, 40)))
}

fn parse_at(buf: &[u8], pos: usize) -> Result<Option<(Reply, usize)>, String> {
    if pos >= buf.len() {
        return Ok(None);
    }
    let Some(eol) = find_crlf(buf, pos + 1) else {
        return Ok(None);
    };
    let line = &buf[pos + 1..eol];
    let next = eol + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    Ok(Some(match buf[pos] {
        b'+' => (Reply::Status(text()), next),
        b'-' => (Reply::Error(text()), next),
        b':' => (Reply::Int(parse_int(line)?), next),
        b'$' => {
            let n = parse_int(line)?;
            if n == -1 {
                (Reply::Nil, next)
            } else if n < 0 {
                return Err(format!("bad bulk length {n} in reply"));
            } else {
                let n = n as usize;
                if buf.len() < next + n + 2 {
                    return Ok(None);
                }
                if &buf[next + n..next + n + 2] != b"\r\n" {
                    return Err("bulk reply not followed by CRLF".into());
                }
                (Reply::Bulk(buf[next..next + n].to_vec()), next + n + 2)
            }
        }
        b'*' => {
            let n = parse_int(line)?;
            if n == -1 {
                (Reply::NilArray, next)
            } else if n < 0 {
                return Err(format!("bad array length {n} in reply"));
            } else {
                let mut items = Vec::with_capacity((n as usize).min(1024));
                let mut at = next;
                for _ in 0..n {
                    match parse_at(buf, at)? {
                        Some((r, end)) => {
                            items.push(r);
                            at = end;
                        }
                        None => return Ok(None),
                    }
                }
                (Reply::Array(items), at)
            }
        }
        b'%' | b'~' | b'>' => {
            let n = parse_int(line)?;
            if n < 0 {
                return Err(format!("bad aggregate length {n} in reply"));
            }
            let per = if buf[pos] == b'%' { 2 } else { 1 };
            let mut items = Vec::with_capacity((n as usize * per).min(1024));
            let mut at = next;
            for _ in 0..n as usize * per {
                match parse_at(buf, at)? {
                    Some((r, end)) => {
                        items.push(r);
                        at = end;
                    }
                    None => return Ok(None),
                }
            }
            let reply = match buf[pos] {
                b'%' => {
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Reply::Map(pairs)
                }
                b'~' => Reply::Set(items),
                _ => Reply::Push(items),
            };
            (reply, at)
        }
        b'_' => (Reply::Null, next),
        b'#' => (Reply::Bool(line == b"t"), next),
        b',' => (Reply::Double(text()), next),
        b'(' => (Reply::BigNumber(text()), next),
        b'=' | b'!' => {
            let n = parse_int(line)?;
            if n < 0 {
                return Err(format!("bad blob length {n} in reply"));
            }
            let n = n as usize;
            if buf.len() < next + n + 2 {
                return Ok(None);
            }
            let body = &buf[next..next + n];
            let reply = if buf[pos] == b'!' {
                Reply::Error(String::from_utf8_lossy(body).into_owned())
            } else {
                let (fmt, t) = body.split_at(body.len().min(4));
                Reply::Verbatim(
                    String::from_utf8_lossy(fmt.strip_suffix(b":").unwrap_or(fmt)).into_owned(),
                    t.to_vec(),
                )
            };
            (reply, next + n + 2)
        }
        other => {
            return Err(format!(
                "unexpected reply type byte {} in {}",
                show_bytes(&[other], 4),
                show_bytes(&buf[pos..], 80)
            ))
        }
    }))
}

/// A TCP or unix stream.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(d),
            Stream::Unix(s) => s.set_read_timeout(d),
        }
    }
    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(d),
            Stream::Unix(s) => s.set_write_timeout(d),
        }
    }
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// A synchronous RESP client connection. Methods without `try_` panic on I/O errors, timeouts and
/// malformed replies (with what was expected), which is what a test wants.
pub struct Client {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
    name: String,
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe
    )
}

impl Client {
    fn new(stream: Stream, name: String) -> io::Result<Client> {
        // A reply (or room to write) that does not come is a hang: fail instead of blocking.
        stream.set_read_timeout(Some(HANG))?;
        stream.set_write_timeout(Some(HANG))?;
        Ok(Client {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
            name,
        })
    }

    /// Connects to 127.0.0.1:`port`.
    pub fn connect_tcp(port: u16) -> io::Result<Client> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        Client::new(Stream::Tcp(s), format!("127.0.0.1:{port}"))
    }

    /// Connects to 127.0.0.1:`port`, or panics.
    pub fn tcp(port: u16) -> Client {
        Client::connect_tcp(port).unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"))
    }

    pub fn connect_unix(path: impl AsRef<Path>) -> io::Result<Client> {
        let path = path.as_ref();
        let s = UnixStream::connect(path)?;
        Client::new(Stream::Unix(s), format!("unix:{}", path.display()))
    }

    /// Connects to the unix socket at `path`, or panics.
    pub fn unix(path: impl AsRef<Path>) -> Client {
        let path = path.as_ref();
        Client::connect_unix(path).unwrap_or_else(|e| panic!("connect to unix:{}: {e}", path.display()))
    }

    /// Connects to a listen address in the relayer's config syntax: `tcp://host:port`,
    /// `tcp://:port` (127.0.0.1), `unix:/path` or `unix:///path`.
    pub fn connect(listen: &str) -> io::Result<Client> {
        match crate::parse_listen(listen) {
            Some(crate::ListenAddr::Tcp(addr)) => {
                let s = TcpStream::connect(addr.as_str())?;
                s.set_nodelay(true)?;
                Client::new(Stream::Tcp(s), listen.to_string())
            }
            Some(crate::ListenAddr::Unix(p)) => Client::connect_unix(p),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot parse listen address {listen:?}"),
            )),
        }
    }

    /// The address this client is connected to, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn set_read_timeout(&mut self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
    }

    /// A second handle on the same connection (e.g. a writer thread while this one reads).
    pub fn try_clone_stream(&self) -> io::Result<Stream> {
        self.stream.try_clone()
    }

    /// Half-closes the connection for writing (the server sees EOF).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes these bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.try_send_raw(bytes)
            .unwrap_or_else(|e| panic!("{}: write failed: {e}", self.name));
    }

    /// Sends one command (multibulk) without reading its reply.
    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        self.send_raw(&encode_command(args));
    }

    /// Sends many commands in one write, without reading.
    pub fn send_many<A: AsRef<[u8]>>(&mut self, cmds: &[Vec<A>]) {
        let mut out = Vec::new();
        for c in cmds {
            out.extend_from_slice(&encode_command(c));
        }
        self.send_raw(&out);
    }

    /// Sends one command and reads its reply.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        self.send(args);
        self.read_reply()
    }

    /// `cmd` with the arguments split on whitespace: `c.q("SET k v")`.
    pub fn q(&mut self, line: &str) -> Reply {
        let args: Vec<&str> = line.split_whitespace().collect();
        self.cmd(&args)
    }

    /// Sends all the commands in one write, then reads as many replies.
    pub fn pipeline<A: AsRef<[u8]>>(&mut self, cmds: &[Vec<A>]) -> Vec<Reply> {
        self.send_many(cmds);
        self.read_replies(cmds.len())
    }

    pub fn read_replies(&mut self, n: usize) -> Vec<Reply> {
        (0..n).map(|_| self.read_reply()).collect()
    }

    /// Reads one reply; panics on timeout, EOF or a malformed reply.
    pub fn read_reply(&mut self) -> Reply {
        self.try_read_reply()
            .unwrap_or_else(|e| panic!("{}: reading a reply: {e}", self.name))
    }

    /// Reads one reply and returns its exact bytes.
    pub fn read_raw_reply(&mut self) -> Vec<u8> {
        self.try_read_raw_reply()
            .unwrap_or_else(|e| panic!("{}: reading a reply: {e}", self.name))
    }

    pub fn try_read_reply(&mut self) -> io::Result<Reply> {
        self.read_frame().map(|(r, _)| r)
    }

    pub fn try_read_raw_reply(&mut self) -> io::Result<Vec<u8>> {
        self.read_frame().map(|(_, raw)| raw)
    }

    /// Sends a command and returns the exact bytes of its reply.
    pub fn cmd_raw<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Vec<u8> {
        self.send(args);
        self.read_raw_reply()
    }

    fn read_frame(&mut self) -> io::Result<(Reply, Vec<u8>)> {
        loop {
            match parse_reply(&self.buf[self.start..]) {
                Ok(Some((reply, len))) => {
                    let raw = self.buf[self.start..self.start + len].to_vec();
                    self.start += len;
                    if self.start == self.buf.len() {
                        self.buf.clear();
                        self.start = 0;
                    }
                    return Ok((reply, raw));
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            match self.fill() {
                Ok(0) => {
                    let pending = &self.buf[self.start..];
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed by the server (after {} unparsed bytes: {})",
                            pending.len(),
                            show_bytes(pending, 80)
                        ),
                    ));
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no complete reply within the read timeout (have {} bytes: {})",
                            self.buf.len() - self.start,
                            show_bytes(&self.buf[self.start..], 80)
                        ),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + 64 * 1024, 0);
        let r = self.stream.read(&mut self.buf[old..]);
        let n = *r.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        r
    }

    /// Waits until the server closes the connection (EOF or reset), within `timeout`. Bytes that
    /// arrive meanwhile make it an error (they are returned in the message).
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        if self.start < self.buf.len() {
            return Err(format!(
                "unexpected bytes before close: {}",
                show_bytes(&self.buf[self.start..], 200)
            ));
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("connection still open after {timeout:?}"));
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.fill() {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(format!(
                        "unexpected bytes instead of close: {}",
                        show_bytes(&self.buf[self.start..], 200)
                    ))
                }
                Err(e) if is_reset(&e) => return Ok(()),
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(format!("read error: {e}")),
            }
        }
    }

    /// Panics unless the server closes the connection (within `HANG`).
    pub fn expect_closed(&mut self) {
        if let Err(e) = self.wait_closed(HANG) {
            panic!("{}: expected the server to close the connection: {e}", self.name);
        }
    }
}
