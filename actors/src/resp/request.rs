//! The request parser: reads what clients send the way Redis itself does (`processMultibulkBuffer`
//! and `processInlineBuffer` in `src/networking.c`), with every length bounded and nothing
//! allocated or reserved from a length the client declared beyond [`BULK_AHEAD`] bytes ahead of
//! the bytes that have arrived.
//!
//! A multibulk request is split off the input buffer as it is (zero-copy) and can be forwarded
//! byte for byte; an inline request is split like `sdssplitargs` and re-encoded as multibulk.
//!
//! Every decision depends only on the bytes seen so far, in order, never on how they were cut
//! into reads: the same stream gives the same commands and the same error whatever the chunking.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::{fmt, io, mem};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// Bounds on what a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk argument (Redis' `proto-max-bulk-len`).
    pub max_bulk_len: usize,
    /// Most arguments in one multibulk request.
    pub max_args: usize,
    /// Longest inline request line, and longest `*<n>` / `$<len>` header line
    /// (Redis' `PROTO_INLINE_MAX_SIZE`).
    pub max_inline_len: usize,
    /// Bytes a client may send ahead while its requests are not parsed (its replies pile up,
    /// a blocking command runs...): Redis' `client-query-buffer-limit`. Not the parser's: see
    /// `io::ClientRequests`.
    pub query_buffer_limit: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_args: 1_048_576,
            max_inline_len: 64 * 1024,
            query_buffer_limit: 1 << 30,
        }
    }
}

/// One client command: the frame bytes to forward (RESP multibulk), and where each argument
/// lies in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    frame: Bytes,
    /// `(start, len)` of each argument inside `frame`.
    args: Vec<(usize, usize)>,
}

impl Command {
    /// Exactly the bytes received for a multibulk request; for an inline request, its multibulk
    /// encoding.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// The frame, without the argument table.
    pub fn into_frame(self) -> Bytes {
        self.frame
    }

    pub fn argc(&self) -> usize {
        self.args.len()
    }

    /// Argument `i` (0 is the command name). Panics when `i >= argc()`.
    pub fn arg(&self, i: usize) -> &[u8] {
        let (start, len) = self.args[i];
        &self.frame[start..start + len]
    }

    pub fn args(&self) -> impl ExactSizeIterator<Item = &[u8]> + DoubleEndedIterator + '_ {
        self.args
            .iter()
            .map(move |&(start, len)| &self.frame[start..start + len])
    }

    /// Whether the command name (argument 0) is `upper`, compared ASCII case-insensitively.
    /// `upper` is expected in upper case, e.g. `cmd.name_is(b"SET")`.
    pub fn name_is(&self, upper: &[u8]) -> bool {
        match self.args.first() {
            Some(&(start, len)) => self.frame[start..start + len].eq_ignore_ascii_case(upper),
            None => false,
        }
    }

    /// Encodes `args` as a multibulk frame: for commands the relayer issues itself, and tests.
    pub fn from_args<A: AsRef<[u8]>>(args: &[A]) -> Command {
        encode(args.len(), args.iter().map(|a| a.as_ref()))
    }
}

/// Builds a multibulk frame in one exactly sized allocation.
fn encode<'a, I>(argc: usize, args: I) -> Command
where
    I: Iterator<Item = &'a [u8]> + Clone,
{
    let size = 3
        + dec_len(argc)
        + args
            .clone()
            .map(|a| 5 + dec_len(a.len()) + a.len())
            .sum::<usize>();
    let mut frame = BytesMut::with_capacity(size);
    let mut offsets = Vec::with_capacity(argc);
    frame.put_u8(b'*');
    put_dec(&mut frame, argc);
    frame.put_slice(b"\r\n");
    for a in args {
        frame.put_u8(b'$');
        put_dec(&mut frame, a.len());
        frame.put_slice(b"\r\n");
        offsets.push((frame.len(), a.len()));
        frame.put_slice(a);
        frame.put_slice(b"\r\n");
    }
    debug_assert_eq!(frame.len(), size);
    Command {
        frame: frame.freeze(),
        args: offsets,
    }
}

fn dec_len(mut n: usize) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

fn put_dec(buf: &mut BytesMut, mut n: usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.put_slice(&tmp[i..]);
}

/// A malformed request. `Display` gives the text that follows `Protocol error: ` in Redis'
/// own error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// `*<n>` where n is not an integer or exceeds `max_args`.
    InvalidMultibulkLength,
    /// `$<len>` where len is not an integer, is negative or exceeds `max_bulk_len`.
    InvalidBulkLength,
    /// A multibulk element that does not start with `$`; holds the byte found.
    ExpectedDollar(u8),
    /// The two bytes after a bulk payload are not `\r\n`.
    ExpectedCrlf,
    /// No `\r\n` within `max_inline_len` bytes of a `*<n>` header.
    TooBigMbulkCount,
    /// No `\r\n` within `max_inline_len` bytes of a `$<len>` header.
    TooBigBulkCount,
    /// No `\n` within `max_inline_len` bytes of an inline request.
    TooBigInline,
    /// An inline request with an unterminated quote, or a closing quote not followed by a space.
    UnbalancedQuotes,
    /// A request starting with another RESP type marker or a control byte.
    UnexpectedByte(u8),
    /// More than 10 arguments before the client authenticated.
    UnauthenticatedMultibulkLength,
    /// An argument over 16 KiB before the client authenticated.
    UnauthenticatedBulkLength,
}

/// Shows a byte as itself when printable ASCII, else as `\xNN`.
struct ShowByte(u8);

impl fmt::Display for ShowByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if (0x20..0x7f).contains(&self.0) {
            write!(f, "{}", self.0 as char)
        } else {
            write!(f, "\\x{:02x}", self.0)
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ProtocolError::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            ProtocolError::InvalidBulkLength => f.write_str("invalid bulk length"),
            ProtocolError::ExpectedDollar(b) => write!(f, "expected '$', got '{}'", ShowByte(b)),
            ProtocolError::ExpectedCrlf => f.write_str("expected CRLF after bulk payload"),
            ProtocolError::TooBigMbulkCount => f.write_str("too big mbulk count string"),
            ProtocolError::TooBigBulkCount => f.write_str("too big bulk count string"),
            ProtocolError::TooBigInline => f.write_str("too big inline request"),
            ProtocolError::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            ProtocolError::UnexpectedByte(b) => {
                write!(f, "unexpected byte '{}' at start of request", ShowByte(b))
            }
            ProtocolError::UnauthenticatedMultibulkLength => f.write_str("unauthenticated multibulk length"),
            ProtocolError::UnauthenticatedBulkLength => f.write_str("unauthenticated bulk length"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// The error of the [`Decoder`]: reading failed, or the client sent a malformed request.
#[derive(Debug)]
pub enum RequestError {
    Io(io::Error),
    Protocol(ProtocolError),
}

impl From<io::Error> for RequestError {
    fn from(e: io::Error) -> Self {
        RequestError::Io(e)
    }
}

impl From<ProtocolError> for RequestError {
    fn from(e: ProtocolError) -> Self {
        RequestError::Protocol(e)
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Io(e) => write!(f, "I/O error: {e}"),
            RequestError::Protocol(e) => write!(f, "Protocol error: {e}"),
        }
    }
}

impl std::error::Error for RequestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RequestError::Io(e) => Some(e),
            RequestError::Protocol(e) => Some(e),
        }
    }
}

/// Where the parser stands in the request at the front of the buffer. Positions are offsets
/// from the start of the buffer, which is the start of the request until it is split off.
#[derive(Debug, Clone)]
enum State {
    /// Between requests.
    Idle,
    /// Reading the `*<n>` line at offset 0.
    Count,
    /// Reading the `$<len>` line at `pos`; `left` arguments to go, this one included.
    BulkHeader { pos: usize, left: usize },
    /// Waiting for `len` payload bytes at `pos`, and their `\r\n`.
    BulkData { pos: usize, len: usize, left: usize },
    /// Reading an inline request line starting at offset 0.
    Inline,
    /// An error was returned; it is returned again.
    Failed(ProtocolError),
}

enum Line {
    /// Offset of the byte looked for.
    Found(usize),
    Partial,
    TooLong,
}

/// Parses client requests from the front of a buffer, resuming where it stopped.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    state: State,
    /// Where the search for the end of the current line resumes.
    scan: usize,
    /// Arguments of the multibulk request being read; grows as they arrive.
    args: Vec<(usize, usize)>,
    /// Set while the client must still authenticate: Redis' tighter limits apply.
    unauthenticated: Option<Arc<AtomicBool>>,
}

/// Before AUTH, as in Redis: at most this many arguments, and arguments of at most this size.
const UNAUTH_MAX_ARGS: usize = 10;
const UNAUTH_MAX_BULK: usize = 16 * 1024;

impl RequestParser {
    pub fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            state: State::Idle,
            scan: 0,
            args: Vec::new(),
            unauthenticated: None,
        }
    }

    /// Applies Redis' pre-authentication limits while `flag` is true (the session clears it
    /// once the client authenticates, and sets it again on RESET).
    pub fn with_auth_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.unauthenticated = Some(flag);
        self
    }

    fn unauthenticated(&self) -> bool {
        self.unauthenticated
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Parses at most one command from the front of `buf`, removing its bytes (and those of any
    /// empty request before it). `Ok(None)`: more bytes are needed; the next call resumes where
    /// this one stopped, so `buf` must only be appended to in between. After an error the parser
    /// keeps returning it.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Command>, ProtocolError> {
        loop {
            match self.state {
                State::Idle => {
                    let Some(&first) = buf.first() else {
                        return Ok(None);
                    };
                    if first == b'*' {
                        if let Some(cmd) = self.complete_multibulk(buf) {
                            return Ok(Some(cmd));
                        }
                        self.state = State::Count;
                        self.scan = 1;
                    } else if bad_start(first) {
                        return self.fail(ProtocolError::UnexpectedByte(first));
                    } else {
                        self.state = State::Inline;
                        self.scan = 0;
                    }
                }
                State::Count => {
                    let cr = match self.find(buf, 0, b'\r') {
                        Line::Found(cr) => cr,
                        Line::Partial => return Ok(None),
                        Line::TooLong => return self.fail(ProtocolError::TooBigMbulkCount),
                    };
                    let Some(&lf) = buf.get(cr + 1) else {
                        return Ok(None);
                    };
                    let n = match parse_i64(&buf[1..cr]) {
                        Some(n) if lf == b'\n' => n,
                        _ => return self.fail(ProtocolError::InvalidMultibulkLength),
                    };
                    let end = cr + 2;
                    if n <= 0 {
                        // An empty request: Redis skips it silently.
                        buf.advance(end);
                        self.state = State::Idle;
                        continue;
                    }
                    let n = match usize::try_from(n) {
                        Ok(n) if n > UNAUTH_MAX_ARGS && self.unauthenticated() => {
                            return self.fail(ProtocolError::UnauthenticatedMultibulkLength)
                        }
                        Ok(n) if n <= self.limits.max_args => n,
                        _ => return self.fail(ProtocolError::InvalidMultibulkLength),
                    };
                    self.args.reserve(n.min(8));
                    self.state = State::BulkHeader { pos: end, left: n };
                    self.scan = end + 1;
                }
                State::BulkHeader { pos, left } => {
                    let Some(&dollar) = buf.get(pos) else {
                        return Ok(None);
                    };
                    if dollar != b'$' {
                        return self.fail(ProtocolError::ExpectedDollar(dollar));
                    }
                    let cr = match self.find(buf, pos, b'\r') {
                        Line::Found(cr) => cr,
                        Line::Partial => return Ok(None),
                        Line::TooLong => return self.fail(ProtocolError::TooBigBulkCount),
                    };
                    let Some(&lf) = buf.get(cr + 1) else {
                        return Ok(None);
                    };
                    let len = match parse_i64(&buf[pos + 1..cr]).map(usize::try_from) {
                        Some(Ok(len)) if lf == b'\n' && len > UNAUTH_MAX_BULK && self.unauthenticated() => {
                            return self.fail(ProtocolError::UnauthenticatedBulkLength)
                        }
                        Some(Ok(len)) if lf == b'\n' && len <= self.limits.max_bulk_len => len,
                        _ => return self.fail(ProtocolError::InvalidBulkLength),
                    };
                    self.state = State::BulkData {
                        pos: cr + 2,
                        len,
                        left,
                    };
                }
                State::BulkData { pos, len, left } => {
                    let end = pos.saturating_add(len);
                    if buf.len() < end.saturating_add(2) {
                        return Ok(None);
                    }
                    if buf[end..end + 2] != *b"\r\n" {
                        return self.fail(ProtocolError::ExpectedCrlf);
                    }
                    self.args.push((pos, len));
                    if left > 1 {
                        self.state = State::BulkHeader {
                            pos: end + 2,
                            left: left - 1,
                        };
                        self.scan = end + 3;
                        continue;
                    }
                    self.state = State::Idle;
                    let frame = buf.split_to(end + 2).freeze();
                    let args = mem::take(&mut self.args);
                    return Ok(Some(Command { frame, args }));
                }
                State::Inline => {
                    let nl = match self.find(buf, 0, b'\n') {
                        Line::Found(nl) => nl,
                        Line::Partial => return Ok(None),
                        Line::TooLong => return self.fail(ProtocolError::TooBigInline),
                    };
                    let mut line = &buf[..nl];
                    if let [rest @ .., b'\r'] = line {
                        line = rest;
                    }
                    let mut bytes = Vec::new();
                    let mut ranges = Vec::new();
                    if split_inline(line, &mut bytes, &mut ranges).is_err() {
                        return self.fail(ProtocolError::UnbalancedQuotes);
                    }
                    buf.advance(nl + 1);
                    self.state = State::Idle;
                    if ranges.is_empty() {
                        continue; // a blank line
                    }
                    let args = ranges.iter().map(|&(s, l)| &bytes[s..s + l]);
                    return Ok(Some(encode(ranges.len(), args)));
                }
                State::Failed(ref e) => return Err(e.clone()),
            }
        }
    }

    /// The common case in one pass: a whole, well-formed multibulk request within every limit
    /// at the front of `buf`, split off. Anything else (incomplete, malformed, empty, over a
    /// limit) gives None and leaves `buf` and the parser untouched, for the state machine to
    /// handle byte by byte; so this only saves work, it never decides differently.
    ///
    /// Why: the resumable state machine stores and matches its state at every line, which
    /// made it a large share of the relayer's own work per pipelined command; almost every
    /// request arrives whole, and this pass reads it without that bookkeeping.
    fn complete_multibulk(&mut self, buf: &mut BytesMut) -> Option<Command> {
        /// `<digits>\r\n` at `at`, with `<digits>` as `parse_i64` reads a non-negative number of
        /// at most 18 digits (so it cannot overflow a u64); the value (None if it does not fit
        /// a usize) and the offset after `\n`.
        fn number(b: &[u8], at: usize) -> Option<(usize, usize)> {
            let first = *b.get(at)?;
            if first == b'0' {
                return (b.get(at + 1..at + 3)? == b"\r\n").then_some((0, at + 3));
            }
            if !(b'1'..=b'9').contains(&first) {
                return None;
            }
            let mut v = u64::from(first - b'0');
            let mut i = at + 1;
            loop {
                match *b.get(i)? {
                    d @ b'0'..=b'9' if i - at < 18 => v = v * 10 + u64::from(d - b'0'),
                    b'\r' if *b.get(i + 1)? == b'\n' => return Some((usize::try_from(v).ok()?, i + 2)),
                    _ => return None,
                }
                i += 1;
            }
        }
        let b = &buf[..];
        let (n, mut at) = number(b, 1)?;
        let unauthenticated = self.unauthenticated();
        let (max_args, max_bulk) = if unauthenticated {
            (
                UNAUTH_MAX_ARGS.min(self.limits.max_args),
                UNAUTH_MAX_BULK.min(self.limits.max_bulk_len),
            )
        } else {
            (self.limits.max_args, self.limits.max_bulk_len)
        };
        // Header lines are at most 20 bytes here, far under any `max_inline_len` in use.
        if n == 0 || n > max_args || self.limits.max_inline_len < 20 {
            return None;
        }
        let mut args = Vec::with_capacity(n.min(8));
        for _ in 0..n {
            if *b.get(at)? != b'$' {
                return None;
            }
            let (len, start) = number(b, at + 1)?;
            let end = start.checked_add(len).filter(|_| len <= max_bulk)?;
            if b.get(end..end + 2)? != b"\r\n" {
                return None;
            }
            args.push((start, len));
            at = end + 2;
        }
        let frame = buf.split_to(at).freeze();
        Some(Command { frame, args })
    }

    fn fail(&mut self, e: ProtocolError) -> Result<Option<Command>, ProtocolError> {
        self.state = State::Failed(e.clone());
        Err(e)
    }

    /// Looks for `needle` in the line starting at `start`, from where the last search stopped.
    /// The line may hold at most `max_inline_len` bytes before `needle`.
    fn find(&mut self, buf: &[u8], start: usize, needle: u8) -> Line {
        let window_end = start.saturating_add(self.limits.max_inline_len).saturating_add(1);
        let end = buf.len().min(window_end);
        let from = self.scan.max(start);
        if from < end {
            if let Some(i) = buf[from..end].iter().position(|&b| b == needle) {
                self.scan = from + i;
                return Line::Found(from + i);
            }
            self.scan = end;
        }
        if end == window_end {
            Line::TooLong
        } else {
            Line::Partial
        }
    }
}

/// Room made in a client's read buffer while a request is incomplete.
const READ_CHUNK: usize = 16 * 1024;
/// The room made instead while a large value (from [`LARGE_VALUE`] bytes) is read: a pipeline
/// of them is read several values a read, and the part of the next one that a read ends in is
/// copied (into the next buffer) less often.
const LARGE_CHUNK: usize = 64 * 1024;
const LARGE_VALUE: usize = 4096;
/// The most room made for the rest of a bulk argument being read, beyond the bytes that came:
/// a value up to this size is read into a buffer that holds it whole (one read, no copy as it
/// grows), a larger one in steps of this; a client that declares a large length and sends
/// nothing makes the relayer hold no more than this.
pub const BULK_AHEAD: usize = 256 * 1024;

impl Decoder for RequestParser {
    type Item = Command;
    type Error = RequestError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Command>, RequestError> {
        let parsed = self.parse(src)?;
        if parsed.is_none() {
            if !src.is_empty() {
                // A request is on its way: read it in large chunks, and a bulk being read whole
                // (the reader itself would only add a byte of room).
                let want = match self.state {
                    // Not before AUTH: such a client must not make the relayer hold much.
                    State::BulkData { pos, len, .. } if len >= LARGE_VALUE && !self.unauthenticated() => {
                        let rest = (pos + len + 2).saturating_sub(src.len());
                        rest.clamp(LARGE_CHUNK, BULK_AHEAD)
                    }
                    _ => READ_CHUNK,
                };
                if src.capacity() - src.len() < want {
                    if src.len() < want {
                        // A buffer of just this size: the client's bytes may be a view of the
                        // thread's shared read buffer (`io::ClientFrames`), which `reserve`
                        // would copy into one as large as that whole buffer.
                        let mut grown = BytesMut::with_capacity(src.len() + want);
                        grown.extend_from_slice(src);
                        *src = grown;
                    } else {
                        src.reserve(want);
                    }
                }
            }
        } else if src.is_empty() && src.capacity() > 0 {
            // Drained: the memory goes back; a client that idles holds none (`io::ClientFrames`
            // reads its next request into the thread's shared read buffer).
            *src = BytesMut::new();
        }
        Ok(parsed)
    }

    /// At end of input, a trailing incomplete request (the client went away mid-command) is
    /// dropped, not an error: it is discarded from `src` and the parser is reset.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Command>, RequestError> {
        match self.decode(src)? {
            Some(cmd) => Ok(Some(cmd)),
            None => {
                src.clear();
                self.state = State::Idle;
                self.scan = 0;
                self.args.clear();
                Ok(None)
            }
        }
    }
}

/// A byte that cannot start a request: another RESP type marker, or a control byte. A client
/// sending these is broken, and binary garbage must not be forwarded as an inline command.
fn bad_start(b: u8) -> bool {
    matches!(
        b,
        b'$' | b'+'
            | b'-'
            | b':'
            | b'_'
            | b','
            | b'#'
            | b'%'
            | b'~'
            | b'>'
            | b'!'
            | b'='
            | b'('
            | b'|'
            | 0x7f
    ) || (b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n'))
}

/// A decimal integer as Redis' `string2ll` accepts it: an optional `-`, then `0` alone or digits
/// not starting with `0`; nothing else, and it must fit an i64.
fn parse_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    match digits {
        [b'0'] if !negative => return Some(0),
        [b'1'..=b'9', ..] => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        // -(2^63) is i64::MIN; `as` and wrapping_neg map it there.
        (v <= 1 << 63).then(|| (v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

/// C's `isspace` in the C locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

struct Unbalanced;

/// Splits an inline request like Redis' `sdssplitargs`: arguments separated by whitespace,
/// `"double quoted"` with `\n \r \t \b \a \xHH` and `\<any>` escapes, `'single quoted'` with
/// `\'`; a closing quote must be followed by whitespace or the end of the line. The argument
/// bytes are appended to `out`, their `(start, len)` in it to `ranges`.
///
/// One difference: `sdssplitargs` works on a C string, so a NUL byte ends the line there; here
/// it is an ordinary byte.
fn split_inline(line: &[u8], out: &mut Vec<u8>, ranges: &mut Vec<(usize, usize)>) -> Result<(), Unbalanced> {
    let n = line.len();
    let mut i = 0;
    loop {
        while i < n && is_space(line[i]) {
            i += 1;
        }
        if i == n {
            return Ok(());
        }
        let start = out.len();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            if in_double {
                let Some(&c) = line.get(i) else {
                    return Err(Unbalanced);
                };
                let hex = || {
                    if line.get(i + 1) != Some(&b'x') {
                        return None;
                    }
                    let hi = hex_value(*line.get(i + 2)?)?;
                    let lo = hex_value(*line.get(i + 3)?)?;
                    Some(hi * 16 + lo)
                };
                if c == b'\\' && i + 1 < n {
                    if let Some(byte) = hex() {
                        out.push(byte);
                        i += 4;
                    } else {
                        out.push(match line[i + 1] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                        i += 2;
                    }
                } else if c == b'"' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return Err(Unbalanced);
                    }
                    i += 1;
                    break;
                } else {
                    out.push(c);
                    i += 1;
                }
            } else if in_single {
                let Some(&c) = line.get(i) else {
                    return Err(Unbalanced);
                };
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    out.push(b'\'');
                    i += 2;
                } else if c == b'\'' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return Err(Unbalanced);
                    }
                    i += 1;
                    break;
                } else {
                    out.push(c);
                    i += 1;
                }
            } else {
                let Some(&c) = line.get(i) else {
                    break;
                };
                i += 1;
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' => break,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => out.push(c),
                }
            }
        }
        ranges.push((start, out.len() - start));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> RequestParser {
        RequestParser::new(Limits::default())
    }

    fn args_of(cmd: &Command) -> Vec<Vec<u8>> {
        cmd.args().map(<[u8]>::to_vec).collect()
    }

    fn v(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    /// Parses everything in `input` (given at once); returns the commands and the error if any.
    fn parse_all(input: &[u8]) -> (Vec<Command>, Option<ProtocolError>) {
        let mut p = parser();
        let mut buf = BytesMut::from(input);
        let mut cmds = Vec::new();
        loop {
            match p.parse(&mut buf) {
                Ok(Some(c)) => cmds.push(c),
                Ok(None) => return (cmds, None),
                Err(e) => return (cmds, Some(e)),
            }
        }
    }

    fn error_text(input: &[u8]) -> String {
        match parse_all(input) {
            (_, Some(e)) => e.to_string(),
            (cmds, None) => panic!("no error for {input:?}, got {cmds:?}"),
        }
    }

    /// Feeds `input` one byte at a time.
    fn parse_bytewise(input: &[u8]) -> (Vec<Command>, Option<ProtocolError>) {
        let mut p = parser();
        let mut buf = BytesMut::new();
        let mut cmds = Vec::new();
        for &b in input {
            buf.put_u8(b);
            loop {
                match p.parse(&mut buf) {
                    Ok(Some(c)) => cmds.push(c),
                    Ok(None) => break,
                    Err(e) => return (cmds, Some(e)),
                }
            }
        }
        (cmds, None)
    }

    #[test]
    fn multibulk_complete() {
        let input = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
        let mut buf = BytesMut::from(&input[..]);
        let cmd = parser().parse(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        assert_eq!(cmd.frame().as_ref(), input);
        assert_eq!(cmd.argc(), 3);
        assert_eq!(cmd.arg(0), b"SET");
        assert_eq!(cmd.arg(1), b"key");
        assert_eq!(cmd.arg(2), b"value");
        assert_eq!(args_of(&cmd), v(&["SET", "key", "value"]));
        assert!(cmd.name_is(b"SET"));
        assert!(!cmd.name_is(b"GET"));
        assert!(!cmd.name_is(b"SETX"));
        assert_eq!(cmd, Command::from_args(&["SET", "key", "value"]));
    }

    #[test]
    fn multibulk_binary_and_empty_args() {
        let input = b"*3\r\n$0\r\n\r\n$4\r\n\r\n\0\xff\r\n$1\r\n*\r\n";
        let (cmds, err) = parse_all(input);
        assert_eq!(err, None);
        assert_eq!(cmds.len(), 1);
        assert_eq!(
            args_of(&cmds[0]),
            vec![b"".to_vec(), b"\r\n\0\xff".to_vec(), b"*".to_vec()]
        );
        assert_eq!(cmds[0].frame().as_ref(), input);
    }

    #[test]
    fn frame_is_zero_copy_slice_of_input() {
        let mut buf = BytesMut::from(&b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n"[..]);
        let base = buf.as_ptr();
        let cmd = parser().parse(&mut buf).unwrap().unwrap();
        assert_eq!(cmd.frame().as_ptr(), base);
        assert_eq!(buf.len(), 14);
    }

    #[test]
    fn pipelined_commands_in_one_buffer() {
        let input = b"*1\r\n$4\r\nPING\r\nECHO hi\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nQUIT\n";
        let (cmds, err) = parse_all(input);
        assert_eq!(err, None);
        let got: Vec<_> = cmds.iter().map(args_of).collect();
        assert_eq!(
            got,
            vec![v(&["PING"]), v(&["ECHO", "hi"]), v(&["GET", "k"]), v(&["QUIT"])]
        );
        assert_eq!(cmds[0].frame().as_ref(), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(cmds[1].frame().as_ref(), b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n");
        assert_eq!(cmds[2].frame().as_ref(), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }

    #[test]
    fn partial_reads_byte_by_byte() {
        let input: &[u8] = b"*3\r\n$3\r\nSET\r\n$10\r\n0123456789\r\n$0\r\n\r\n\
              set \"a b\" 'c\\'d' \"\\x41\\n\"\r\n*0\r\n\r\n  \n*-1\r\n*1\r\n$4\r\nPING\r\n";
        let (at_once, err) = parse_all(input);
        assert_eq!(err, None);
        let (bytewise, err) = parse_bytewise(input);
        assert_eq!(err, None);
        assert_eq!(at_once, bytewise);
        let got: Vec<_> = bytewise.iter().map(args_of).collect();
        assert_eq!(
            got,
            vec![
                vec![b"SET".to_vec(), b"0123456789".to_vec(), b"".to_vec()],
                vec![b"set".to_vec(), b"a b".to_vec(), b"c'd".to_vec(), b"A\n".to_vec()],
                v(&["PING"]),
            ]
        );
    }

    #[test]
    fn incomplete_request_keeps_bytes_and_resumes() {
        let mut p = parser();
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$5\r\nab"[..]);
        assert_eq!(p.parse(&mut buf), Ok(None));
        assert_eq!(buf.len(), 19);
        buf.put_slice(b"cde\r");
        assert_eq!(p.parse(&mut buf), Ok(None));
        buf.put_slice(b"\n");
        let cmd = p.parse(&mut buf).unwrap().unwrap();
        assert_eq!(args_of(&cmd), v(&["GET", "abcde"]));
        assert!(buf.is_empty());
        assert_eq!(p.parse(&mut buf), Ok(None));
    }

    #[test]
    fn empty_requests_are_skipped() {
        let (cmds, err) = parse_all(b"*0\r\n*-1\r\n\r\n\n   \t \r\n*-5\r\n");
        assert_eq!(err, None);
        assert!(cmds.is_empty());
        let mut buf = BytesMut::from(&b"*0\r\n*-1\r\n\r\n*1\r\n$1\r\nx\r\n"[..]);
        let cmd = parser().parse(&mut buf).unwrap().unwrap();
        assert_eq!(cmd.frame().as_ref(), b"*1\r\n$1\r\nx\r\n");
        assert!(buf.is_empty());
    }

    #[test]
    fn inline_simple_and_line_endings() {
        let (cmds, err) = parse_all(b"PING\r\nset  k\tv \n  get k\r\n");
        assert_eq!(err, None);
        let got: Vec<_> = cmds.iter().map(args_of).collect();
        assert_eq!(got, vec![v(&["PING"]), v(&["set", "k", "v"]), v(&["get", "k"])]);
        assert_eq!(cmds[0].frame().as_ref(), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(cmds[1], Command::from_args(&["set", "k", "v"]));
        assert!(cmds[2].name_is(b"GET"));
    }

    #[test]
    fn inline_quotes() {
        let cases: &[(&[u8], &[&[u8]])] = &[
            (b"set \"hello world\" x\n", &[b"set", b"hello world", b"x"]),
            (b"\"\" ''\n", &[b"", b""]),
            (
                b"echo \"\\n\\r\\t\\b\\a\\\\\\\"\\q\"\n",
                &[b"echo", b"\n\r\t\x08\x07\\\"q"],
            ),
            (b"echo \"\\x00\\xfF\\x4g\"\n", &[b"echo", b"\x00\xffx4g"]),
            (b"echo 'it\\'s' '\\n'\n", &[b"echo", b"it's", b"\\n"]),
            (b"echo 'a \"b\" c'\n", &[b"echo", b"a \"b\" c"]),
            (b"a\"b c\" e\n", &[b"ab c", b"e"]),
            (b"x \"q\"\x0by\n", &[b"x", b"q", b"y"]),
            (b"x a\x0bb\n", &[b"x", b"a\x0bb"]),
            (b"x \"a\\\" b\"\r\n", &[b"x", b"a\" b"]),
            (b"x \"a\rb\"\r\n", &[b"x", b"a\rb"]),
            (b"\xc3\xa9t\xc3\xa9\n", &[b"\xc3\xa9t\xc3\xa9"]),
        ];
        for (input, want) in cases {
            let (cmds, err) = parse_all(input);
            assert_eq!(err, None, "{input:?}");
            assert_eq!(cmds.len(), 1, "{input:?}");
            let want: Vec<Vec<u8>> = want.iter().map(|a| a.to_vec()).collect();
            assert_eq!(args_of(&cmds[0]), want, "{input:?}");
            assert_eq!(cmds[0], Command::from_args(&want));
        }
    }

    #[test]
    fn inline_unbalanced_quotes() {
        for input in [
            &b"set \"abc\n"[..],
            b"set 'abc\n",
            b"set \"abc\"def\n",
            b"set 'abc'def\n",
            b"a\"b c\"d e\n",
            b"set \"abc\\\"\n",
            b"set \"abc\\\n",
            b"\"\n",
        ] {
            assert_eq!(error_text(input), "unbalanced quotes in request", "{input:?}");
        }
    }

    #[test]
    fn error_texts() {
        let cases: &[(&[u8], &str)] = &[
            (b"*abc\r\n", "invalid multibulk length"),
            (b"*\r\n", "invalid multibulk length"),
            (b"*+1\r\n", "invalid multibulk length"),
            (b"* 1\r\n", "invalid multibulk length"),
            (b"*01\r\n", "invalid multibulk length"),
            (b"*-0\r\n", "invalid multibulk length"),
            (b"*1x\r\n", "invalid multibulk length"),
            (b"*1\rx", "invalid multibulk length"),
            (b"*99999999999999999999\r\n", "invalid multibulk length"),
            (b"*1048577\r\n", "invalid multibulk length"),
            (b"*1\r\n$-1\r\n", "invalid bulk length"),
            (b"*1\r\n$abc\r\n", "invalid bulk length"),
            (b"*1\r\n$\r\n", "invalid bulk length"),
            (b"*1\r\n$+3\r\n", "invalid bulk length"),
            (b"*1\r\n$3 \r\n", "invalid bulk length"),
            (b"*1\r\n$3\rx", "invalid bulk length"),
            (b"*1\r\n$536870913\r\n", "invalid bulk length"),
            (b"*1\r\n$9223372036854775808\r\n", "invalid bulk length"),
            (b"*1\r\nfoo\r\n", "expected '$', got 'f'"),
            (b"*1\r\n\x01", "expected '$', got '\\x01'"),
            (b"*2\r\n$1\r\na\r\n:1\r\n", "expected '$', got ':'"),
            (b"*1\r\n$3\r\nabcde", "expected CRLF after bulk payload"),
            (b"*1\r\n$3\r\nabc\n\r", "expected CRLF after bulk payload"),
            (b"*1\r\n$3\r\nabc\r\r", "expected CRLF after bulk payload"),
            (b"$3\r\nabc\r\n", "unexpected byte '$' at start of request"),
            (b"+OK\r\n", "unexpected byte '+' at start of request"),
            (b"-ERR\r\n", "unexpected byte '-' at start of request"),
            (b":1\r\n", "unexpected byte ':' at start of request"),
            (b"\x00\x01\x02", "unexpected byte '\\x00' at start of request"),
            (b"\x1b[A", "unexpected byte '\\x1b' at start of request"),
            (b"\x7f", "unexpected byte '\\x7f' at start of request"),
            (b"PING\r\n|1\r\n", "unexpected byte '|' at start of request"),
        ];
        for (input, want) in cases {
            assert_eq!(error_text(input), *want, "{input:?}");
            // The same error whatever the chunking.
            let (_, err) = parse_bytewise(input);
            assert_eq!(err.map(|e| e.to_string()).as_deref(), Some(*want), "{input:?}");
        }
        for b in b"$+-:_,#%~>!=(|" {
            assert_eq!(
                error_text(&[*b, b'x', b'\n']),
                format!("unexpected byte '{}' at start of request", *b as char)
            );
        }
    }

    #[test]
    fn allowed_start_bytes() {
        for start in [b'\t', b'\r', b'\n', b' ', b'"', b'\'', b'a', b'Z', 0x80, 0xff] {
            let mut input = vec![start];
            input.extend_from_slice(b"x\n");
            if start == b'"' || start == b'\'' {
                input = vec![start, b'x', start, b'\n'];
            }
            let (cmds, err) = parse_all(&input);
            assert_eq!(err, None, "{input:?}");
            assert!(cmds.len() <= 1);
        }
    }

    #[test]
    fn unauthenticated_limits_apply_until_the_flag_clears() {
        let flag = Arc::new(AtomicBool::new(true));
        let parse = |input: &[u8]| {
            let mut p = RequestParser::new(Limits::default()).with_auth_flag(flag.clone());
            p.parse(&mut BytesMut::from(input)).map(|c| c.map(|c| c.argc()))
        };
        let eleven = b"*11\r\n".to_vec();
        assert_eq!(parse(&eleven), Err(ProtocolError::UnauthenticatedMultibulkLength));
        assert_eq!(
            ProtocolError::UnauthenticatedMultibulkLength.to_string(),
            "unauthenticated multibulk length"
        );
        assert_eq!(
            parse(b"*2\r\n$4\r\nAUTH\r\n$16385\r\n"),
            Err(ProtocolError::UnauthenticatedBulkLength)
        );
        assert_eq!(
            ProtocolError::UnauthenticatedBulkLength.to_string(),
            "unauthenticated bulk length"
        );
        // At the limits themselves: accepted (still incomplete).
        assert_eq!(parse(b"*10\r\n"), Ok(None));
        assert_eq!(parse(b"*2\r\n$4\r\nAUTH\r\n$16384\r\n"), Ok(None));
        flag.store(false, Ordering::Relaxed);
        assert_eq!(parse(&eleven), Ok(None));
        assert_eq!(parse(b"*2\r\n$4\r\nAUTH\r\n$16385\r\n"), Ok(None));
    }

    #[test]
    fn header_lines_too_long() {
        let mut input = b"*".to_vec();
        input.resize(70_000, b'1');
        assert_eq!(error_text(&input), "too big mbulk count string");
        let mut input = b"*1\r\n$".to_vec();
        input.resize(70_000, b'1');
        assert_eq!(error_text(&input), "too big bulk count string");
        // Not yet too long: wait for more.
        let mut input = b"*".to_vec();
        input.resize(65_536, b'1');
        let (cmds, err) = parse_all(&input);
        assert!(cmds.is_empty() && err.is_none());
    }

    #[test]
    fn header_line_limit_is_exact() {
        let limits = Limits {
            max_inline_len: 4,
            ..Limits::default()
        };
        // "*123" is 4 bytes before the CR: allowed; "*1234" is not.
        let mut p = RequestParser::new(limits);
        let mut buf = BytesMut::from(&b"*123\r\n"[..]);
        assert_eq!(p.parse(&mut buf), Ok(None));
        let mut p = RequestParser::new(limits);
        let mut buf = BytesMut::from(&b"*1234"[..]);
        assert_eq!(p.parse(&mut buf), Err(ProtocolError::TooBigMbulkCount));
        let mut p = RequestParser::new(limits);
        let mut buf = BytesMut::from(&b"*1234"[..4]);
        assert_eq!(p.parse(&mut buf), Ok(None));
        // The same limit bounds an inline line (without its LF).
        let mut p = RequestParser::new(limits);
        let mut buf = BytesMut::from(&b"PING\nPINGS\n"[..]);
        assert!(p.parse(&mut buf).unwrap().is_some());
        assert_eq!(p.parse(&mut buf), Err(ProtocolError::TooBigInline));
    }

    #[test]
    fn huge_multibulk_count_rejected_without_allocation() {
        let mut p = parser();
        let mut buf = BytesMut::from(&b"*1000000000\r\n"[..]);
        let cap = buf.capacity();
        assert_eq!(p.parse(&mut buf), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(p.args.capacity(), 0);
        assert_eq!(buf.capacity(), cap);
        // Allowed but large: the argument table starts small.
        let mut p = parser();
        let mut buf = BytesMut::from(&b"*1000000\r\n$1\r\n"[..]);
        assert_eq!(p.parse(&mut buf), Ok(None));
        assert!(p.args.capacity() <= 8);
    }

    #[test]
    fn huge_bulk_length_rejected_at_header() {
        let mut p = parser();
        let mut buf = BytesMut::from(&b"*2\r\n$600000000\r\n"[..]);
        let cap = buf.capacity();
        assert_eq!(p.parse(&mut buf), Err(ProtocolError::InvalidBulkLength));
        assert_eq!(buf.capacity(), cap);
        assert_eq!(p.parse(&mut buf), Err(ProtocolError::InvalidBulkLength));
    }

    #[test]
    fn huge_allowed_bulk_length_waits_without_reserving() {
        let mut p = parser();
        let mut buf = BytesMut::with_capacity(64);
        buf.put_slice(b"*2\r\n$3\r\nSET\r\n$100000000\r\n0123456789");
        assert_eq!(p.parse(&mut buf), Ok(None));
        assert_eq!(buf.capacity(), 64);
        assert!(p.args.capacity() <= 8);
        buf.put_slice(b"more");
        assert_eq!(p.parse(&mut buf), Ok(None));
        assert!(buf.capacity() < 4096);
    }

    /// The reader's buffer: room for the whole of a bulk being read (one read for a 10 KB value,
    /// no copy as it grows), never more than BULK_AHEAD beyond what came for a huge declared
    /// length, and no buffer at all once drained.
    #[test]
    fn decode_sizes_the_buffer_for_the_bulk_being_read() {
        let mut p = parser();
        let mut buf = BytesMut::with_capacity(1024);
        buf.put_slice(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$300000\r\n");
        let header = buf.len();
        buf.put_slice(&[b'v'; 1000]);
        assert!(p.decode(&mut buf).unwrap().is_none());
        let room = buf.capacity() - buf.len();
        assert!(
            room >= BULK_AHEAD,
            "room for the value's next {BULK_AHEAD} bytes: {room}"
        );
        assert!(room < BULK_AHEAD * 2, "no more than that: {room}");
        buf.put_slice(&vec![b'v'; 300_000 - 1000]);
        buf.put_slice(b"\r\n");
        let cmd = p.decode(&mut buf).unwrap().unwrap();
        assert_eq!(cmd.frame.len(), header + 300_002);
        assert_eq!(buf.capacity(), 0, "given back once drained");

        let mut buf = BytesMut::with_capacity(1024);
        buf.put_slice(b"*2\r\n$3\r\nGET\r\n$10240\r\nxx");
        assert!(p.decode(&mut buf).unwrap().is_none());
        assert!(
            buf.capacity() - buf.len() >= 10240,
            "the rest of a 10 KB value fits at once"
        );

        // A partial request read as a view of a large shared buffer gets a buffer of its own
        // sized for what comes, not one as large as the shared one.
        let mut shared = BytesMut::with_capacity(256 * 1024);
        shared.put_slice(b"*2\r\n$3\r\nGET\r\n$3\r\nke");
        let mut buf = shared.split();
        let mut p = parser();
        assert!(p.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() <= buf.len() + READ_CHUNK, "{}", buf.capacity());

        // Before AUTH, a declared large value gets no more room than any request on its way.
        let flag = Arc::new(AtomicBool::new(true));
        let mut p = RequestParser::new(Limits::default()).with_auth_flag(flag.clone());
        let mut buf = BytesMut::from(&b"*2\r\n$4\r\nAUTH\r\n$16000\r\nxx"[..]);
        assert!(p.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() <= buf.len() + READ_CHUNK, "{}", buf.capacity());
        flag.store(false, Ordering::Relaxed);
        let mut p = RequestParser::new(Limits::default()).with_auth_flag(flag);
        let mut buf = BytesMut::from(&b"*2\r\n$4\r\nECHO\r\n$16000\r\nxx"[..]);
        assert!(p.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() - buf.len() >= LARGE_CHUNK, "{}", buf.capacity());
    }

    #[test]
    fn too_big_inline_request() {
        let line = vec![b'a'; 100 * 1024];
        assert_eq!(error_text(&line), "too big inline request");
        let mut with_newline = line.clone();
        with_newline.push(b'\n');
        assert_eq!(error_text(&with_newline), "too big inline request");
        // A line at the limit is fine.
        let mut ok = vec![b'a'; 65_536];
        ok.push(b'\n');
        let (cmds, err) = parse_all(&ok);
        assert_eq!(err, None);
        assert_eq!(cmds[0].arg(0).len(), 65_536);
    }

    #[test]
    fn error_is_sticky() {
        let mut p = parser();
        let mut buf = BytesMut::from(&b"*x\r\n*1\r\n$1\r\na\r\n"[..]);
        assert_eq!(p.parse(&mut buf), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(p.parse(&mut buf), Err(ProtocolError::InvalidMultibulkLength));
    }

    #[test]
    fn decoder_and_decode_eof() {
        let mut p = parser();
        let mut buf = BytesMut::from(&b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$3\r\nke"[..]);
        let cmd = p.decode(&mut buf).unwrap().unwrap();
        assert!(cmd.name_is(b"PING"));
        assert!(p.decode(&mut buf).unwrap().is_none());
        // The client went away mid-command: no error, the tail is dropped.
        assert!(p.decode_eof(&mut buf).unwrap().is_none());
        assert!(buf.is_empty());
        // A complete command still comes out at EOF, and an inline one without its LF does not.
        let mut p = parser();
        let mut buf = BytesMut::from(&b"PING\r\nPING"[..]);
        assert!(p.decode_eof(&mut buf).unwrap().is_some());
        assert!(p.decode_eof(&mut buf).unwrap().is_none());
        // A protocol error is still an error at EOF.
        let mut p = parser();
        let mut buf = BytesMut::from(&b"*x\r\n"[..]);
        let err = p.decode_eof(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            RequestError::Protocol(ProtocolError::InvalidMultibulkLength)
        ));
        assert_eq!(err.to_string(), "Protocol error: invalid multibulk length");
        let io: RequestError = io::Error::other("boom").into();
        assert!(matches!(io, RequestError::Io(_)));
    }

    #[test]
    fn from_args_encoding() {
        let cmd = Command::from_args(&[&b"SET"[..], b"", b"a\r\nb"]);
        assert_eq!(
            cmd.frame().as_ref(),
            b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\na\r\nb\r\n"
        );
        assert_eq!(cmd.argc(), 3);
        assert_eq!(cmd.arg(2), b"a\r\nb");
        let empty = Command::from_args::<&[u8]>(&[]);
        assert_eq!(empty.frame().as_ref(), b"*0\r\n");
        assert_eq!(empty.argc(), 0);
        assert!(!empty.name_is(b""));
        let long_args = vec![vec![b'x'; 1234]; 12];
        let long = Command::from_args(&long_args[..]);
        let (cmds, err) = parse_all(long.frame());
        assert_eq!(err, None);
        assert_eq!(cmds, vec![long.clone()]);
        assert_eq!(long.args().len(), 12);
        assert_eq!(long.clone().into_frame(), *long.frame());
    }

    #[test]
    #[should_panic]
    fn arg_out_of_range_panics() {
        Command::from_args(&["PING"]).arg(1);
    }

    #[test]
    fn integers_like_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"123"), Some(123));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"1 ",
            b"01",
            b"-0",
            b"-01",
            b"1a",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn display_of_bytes() {
        assert_eq!(
            ProtocolError::ExpectedDollar(b'\n').to_string(),
            "expected '$', got '\\x0a'"
        );
        assert_eq!(
            ProtocolError::UnexpectedByte(0xff).to_string(),
            "unexpected byte '\\xff' at start of request"
        );
    }
}
