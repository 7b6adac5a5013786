//! Socket halves shared by clients and upstream connections, the output buffer that writes
//! without blocking, and the gate that pauses a read stream (backpressure).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::Stream;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::io::IoSlice;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::{tcp, unix, TcpStream, UnixStream};

pub enum ReadHalf {
    Tcp(tcp::OwnedReadHalf),
    Unix(unix::OwnedReadHalf),
}

pub enum WriteHalf {
    Tcp(tcp::OwnedWriteHalf),
    Unix(unix::OwnedWriteHalf),
}

pub fn split_tcp(s: TcpStream) -> (ReadHalf, WriteHalf) {
    let (r, w) = s.into_split();
    (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
}

pub fn split_unix(s: UnixStream) -> (ReadHalf, WriteHalf) {
    let (r, w) = s.into_split();
    (ReadHalf::Unix(r), WriteHalf::Unix(w))
}

impl ReadHalf {
    /// The client's address and the one it connected to, as Redis writes them in CLIENT LIST
    /// and matches them in CLIENT KILL: `ip:port`, `[ip6]:port`, or for a unix socket its
    /// path followed by `:0` (both).
    pub fn addresses(&self) -> (String, String) {
        fn ip(a: io::Result<std::net::SocketAddr>) -> String {
            match a {
                Ok(std::net::SocketAddr::V4(a)) => a.to_string(),
                Ok(std::net::SocketAddr::V6(a)) => format!("[{}]:{}", a.ip(), a.port()),
                Err(_) => "?:0".to_string(),
            }
        }
        match self {
            ReadHalf::Tcp(r) => (ip(r.peer_addr()), ip(r.local_addr())),
            ReadHalf::Unix(r) => {
                let path = r
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                    .unwrap_or_default();
                (format!("{path}:0"), format!("{path}:0"))
            }
        }
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Unix(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl WriteHalf {
    fn try_write(&self, b: &[u8]) -> io::Result<usize> {
        match self {
            WriteHalf::Tcp(w) => w.try_write(b),
            WriteHalf::Unix(w) => w.try_write(b),
        }
    }

    fn try_write_vectored(&self, b: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            WriteHalf::Tcp(w) => w.try_write_vectored(b),
            WriteHalf::Unix(w) => w.try_write_vectored(b),
        }
    }

    pub async fn writable(&self) -> io::Result<()> {
        match self {
            WriteHalf::Tcp(w) => w.writable().await,
            WriteHalf::Unix(w) => w.writable().await,
        }
    }

    /// Shuts the socket down for writing: the peer reads what was sent, then its end.
    fn shutdown(&self) -> io::Result<()> {
        let sock = match self {
            WriteHalf::Tcp(w) => socket2::SockRef::from(w.as_ref()),
            WriteHalf::Unix(w) => socket2::SockRef::from(w.as_ref()),
        };
        sock.shutdown(std::net::Shutdown::Write)
    }
}

/// Bytes waiting to be written to one socket. Appending never blocks; `flush` writes what the
/// socket takes now, and the caller waits for `writable` when it took less.
///
/// Small writes are copied together; a large frame (`push_bytes`) is kept as it is and written
/// with the rest in one vectored write, so a 10 KB value is not copied (nor the whole backlog
/// re-copied each time the buffer grows).
pub struct OutBuf {
    /// Written before `tail`, in order.
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
    writer: Rc<WriteHalf>,
}

/// Above this, an emptied buffer gives its memory back, so one big reply does not pin it.
const KEEP_CAPACITY: usize = 64 * 1024;
/// From this size a frame is written from where it is instead of being copied.
const ZERO_COPY_MIN: usize = 4096;
/// Slices per vectored write (IOV_MAX is 1024).
const MAX_SLICES: usize = 64;

impl OutBuf {
    pub fn new(writer: WriteHalf) -> Self {
        OutBuf {
            chunks: VecDeque::new(),
            tail: BytesMut::new(),
            len: 0,
            writer: Rc::new(writer),
        }
    }

    /// Bytes not yet written.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.tail.extend_from_slice(data);
        self.len += data.len();
    }

    /// Appends `data`, without copying it when it is large.
    pub fn push_bytes(&mut self, data: Bytes) {
        if data.len() < ZERO_COPY_MIN {
            return self.extend_from_slice(&data);
        }
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
        self.len += data.len();
        self.chunks.push_back(data);
    }

    /// Ok(true) when everything was written, Ok(false) when the socket is full.
    pub fn flush(&mut self) -> io::Result<bool> {
        self.flush_up_to(usize::MAX)
    }

    /// Writes at most `limit` bytes: Ok(true) when they (or everything, if less) were written,
    /// Ok(false) when the socket is full.
    pub fn flush_up_to(&mut self, limit: usize) -> io::Result<bool> {
        let mut left = limit.min(self.len);
        while left > 0 {
            let written = if self.chunks.is_empty() {
                self.writer.try_write(&self.tail[..left])
            } else {
                let mut slices = Vec::with_capacity(MAX_SLICES.min(self.chunks.len() + 1));
                let mut room = left;
                let tail: &[u8] = &self.tail;
                for c in self.chunks.iter().map(|c| &c[..]).chain(std::iter::once(tail)) {
                    if slices.len() == MAX_SLICES || room == 0 {
                        break;
                    }
                    let take = c.len().min(room);
                    if take > 0 {
                        slices.push(IoSlice::new(&c[..take]));
                        room -= take;
                    }
                }
                self.writer.try_write_vectored(&slices)
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    left -= n;
                    self.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.len == 0 && self.tail.capacity() > KEEP_CAPACITY {
            self.tail = BytesMut::new();
        }
        Ok(true)
    }

    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            match self.chunks.front_mut() {
                Some(c) if c.len() <= n => {
                    n -= c.len();
                    self.chunks.pop_front();
                }
                Some(c) => {
                    c.advance(n);
                    return;
                }
                None => {
                    self.tail.advance(n);
                    return;
                }
            }
        }
    }

    pub fn writer(&self) -> Rc<WriteHalf> {
        self.writer.clone()
    }
}

/// A switch shared between an actor and the stream it reads: while closed, the stream is not
/// polled, so the socket is not read and TCP pushes back on the peer (a [`ClientRequests`]
/// stream still reads ahead meanwhile, see there).
#[derive(Default)]
pub struct Gate {
    paused: Cell<bool>,
    waker: RefCell<Option<Waker>>,
    /// While paused, a [`ClientRequests`] stream ends as soon as the peer closes (see there).
    watch_close: Cell<bool>,
    /// The session waits for the client to read its replies (see [`ClientRequests`]).
    waits_for_client: Cell<bool>,
    /// Paused for good: a [`ClientRequests`] stream drops what the client still sends.
    drop_input: Cell<bool>,
    /// Input of the client's was read from its socket and dropped, or the client went over
    /// its query buffer limit (it is likely still sending): see [`ClientOut::may_end`].
    input_dropped: Cell<bool>,
}

impl Gate {
    pub fn new() -> Rc<Self> {
        Rc::new(Gate::default())
    }

    pub fn pause(&self) {
        self.paused.set(true);
    }

    pub fn resume(&self) {
        if self.paused.replace(false) {
            self.wake();
        }
    }

    /// Whether a paused [`ClientRequests`] stream ends as soon as the peer closes.
    pub fn watch_close(&self, on: bool) {
        if !self.watch_close.replace(on) && on && self.paused.get() {
            // Paused already: the stream starts watching when it is polled.
            self.wake();
        }
    }

    /// Whether the session waits for the client to read its replies: a [`ClientRequests`]
    /// stream over its limit then yields its error instead of waiting.
    pub fn waits_for_client(&self, on: bool) {
        if !self.waits_for_client.replace(on) && on && self.paused.get() {
            // The stream may be waiting on a full read-ahead.
            self.wake();
        }
    }

    /// Pauses for good: nothing more is parsed, and a [`ClientRequests`] stream reads and drops
    /// what the client still sends (what it read ahead too), so that a client that writes its
    /// whole pipeline before it reads gets to read the replies it is owed.
    pub fn drop_input(&self) {
        self.paused.set(true);
        if !self.drop_input.replace(true) {
            // The stream may be waiting on a full read-ahead, not on the socket.
            self.wake();
        }
    }

    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

pub struct Gated<S> {
    inner: S,
    gate: Rc<Gate>,
}

impl<S> Gated<S> {
    pub fn new(inner: S, gate: Rc<Gate>) -> Self {
        Gated { inner, gate }
    }
}

impl<S: Stream + Unpin> Stream for Gated<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if self.gate.paused.get() {
            *self.gate.waker.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// The first size of a read-ahead buffer; it doubles from there.
const READ_AHEAD_FIRST: usize = 16 * 1024;
/// What is read at once into the scratch buffer of a client whose input is dropped.
const DROP_CHUNK: usize = 16 * 1024;

/// The query buffer limit of a client that has not authenticated yet (to a listener with a
/// password), whatever `queryBufferLimit` says, as in Redis: before AUTH, a client must not make
/// the relayer hold much.
pub const UNAUTHENTICATED_LIMIT: usize = 1 << 20;

/// The error a [`ClientRequests`] stream yields (as an I/O error, which every decoder's error
/// converts from) when its client sent more than its query buffer limit ahead; see
/// [`is_query_buffer_limit`].
#[derive(Debug)]
pub struct QueryBufferLimit {
    pub limit: usize,
    /// The client had not authenticated: the limit was [`UNAUTHENTICATED_LIMIT`].
    pub unauthenticated: bool,
}

impl std::fmt::Display for QueryBufferLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.unauthenticated {
            false => write!(
                f,
                "query buffer limit reached (queryBufferLimit = {} bytes)",
                self.limit
            ),
            true => write!(f, "query buffer limit reached ({} bytes before AUTH)", self.limit),
        }
    }
}

impl std::error::Error for QueryBufferLimit {}

/// Whether `e` is a [`QueryBufferLimit`].
pub fn is_query_buffer_limit(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|e| e.is::<QueryBufferLimit>())
}

/// A client's socket with what was read from it ahead of the parser (see [`ClientRequests`]):
/// the parser gets those bytes first, then the socket's end or error, then the socket.
pub struct ReadAhead {
    inner: ReadHalf,
    ahead: BytesMut,
    eof: bool,
    error: Option<io::Error>,
    /// Bytes read and dropped since the session stopped parsing (see [`Gate::drop_input`]).
    dropped: usize,
}

impl ReadAhead {
    pub fn new(inner: ReadHalf) -> Self {
        ReadAhead {
            inner,
            ahead: BytesMut::new(),
            eof: false,
            error: None,
            dropped: 0,
        }
    }

    /// Bytes read ahead and not yet handed to the parser.
    pub fn len(&self) -> usize {
        self.ahead.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ahead.is_empty()
    }

    /// Reads into `ahead`, up to `max` bytes; Ready once the socket ended or failed (its end is
    /// then known, whatever data came before it).
    fn poll_fill(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<()> {
        loop {
            if self.eof || self.error.is_some() {
                return Poll::Ready(());
            }
            if self.ahead.len() >= max {
                // Nothing more is read: the session's resuming (or closing) wakes the stream.
                return Poll::Pending;
            }
            if self.ahead.capacity() == self.ahead.len() {
                // Doubled, so that each byte is copied a bounded number of times however far
                // it grows (a 16 KiB step would make a 1 GiB read-ahead quadratic), and grown
                // by hand: `reserve` could take it past `max`.
                let mut grown = BytesMut::with_capacity(grown_size(self.ahead.len(), max));
                grown.extend_from_slice(&self.ahead);
                self.ahead = grown;
            }
            let want = (max - self.ahead.len()).min(self.ahead.capacity() - self.ahead.len());
            // Limited: a read fills all the spare room it is given, which can be more.
            let mut room = (&mut self.ahead).limit(want);
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.inner), cx, &mut room) {
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => self.error = Some(e),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Reads and drops what the client sends, what was read ahead first. Ready(true) once the
    /// socket ended or failed, Ready(false) once more than `max` bytes were dropped.
    fn poll_drop(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<bool> {
        if self.ahead.capacity() > 0 {
            self.ahead = BytesMut::new();
        }
        let mut scratch = [0u8; DROP_CHUNK];
        loop {
            if self.eof || self.error.is_some() {
                return Poll::Ready(true);
            }
            if self.dropped > max {
                return Poll::Ready(false);
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => self.eof = true,
                Poll::Ready(Ok(())) => self.dropped += buf.filled().len(),
                Poll::Ready(Err(e)) => self.error = Some(e),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The next size of a read-ahead buffer holding `len` bytes, none spare.
fn grown_size(len: usize, max: usize) -> usize {
    len.saturating_mul(2).max(READ_AHEAD_FIRST).min(max)
}

impl AsyncRead for ReadAhead {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.ahead.is_empty() {
            let n = this.ahead.len().min(buf.remaining());
            buf.put_slice(&this.ahead[..n]);
            this.ahead.advance(n);
            if this.ahead.is_empty() {
                // Its memory goes back once the parser has it all.
                this.ahead = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = this.error.take() {
            return Poll::Ready(Err(e));
        }
        if this.eof {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

/// The room of the shared read buffer (see [`ClientFrames`]): a new one is taken when less than
/// `SHARED_MIN` is left.
const SHARED_CHUNK: usize = 64 * 1024;
const SHARED_MIN: usize = 16 * 1024;

thread_local! {
    /// The read buffer of this thread's clients while they hold none of their own: each read
    /// takes what came off its front, so the requests in it are split off without a copy, and
    /// the room after it serves the next read, of whichever client.
    static SHARED_READ: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// A client's socket (through its [`ReadAhead`]) cut into requests by the decoder `D`, as
/// tokio-util's `FramedRead` does, with one difference: a client with nothing buffered holds no
/// read buffer at all (most clients idle most of the time). A read then goes into the thread's
/// shared buffer and the client's buffer is the part of it that was read (no copy); a decoder
/// that wants more room (a request on its way) reserves it, and reads go straight into that.
/// The decoder gives the buffer back once it is drained (see `RequestParser`'s `decode`).
pub struct ClientFrames<D> {
    reader: ReadAhead,
    decoder: D,
    buffer: BytesMut,
    /// The buffer may hold a request: false once the decoder said it needs more bytes.
    readable: bool,
    eof: bool,
    errored: bool,
}

impl<D> ClientFrames<D> {
    pub fn new(reader: ReadAhead, decoder: D) -> Self {
        ClientFrames {
            reader,
            decoder,
            buffer: BytesMut::new(),
            readable: false,
            eof: false,
            errored: false,
        }
    }

    /// Bytes read and not parsed yet.
    pub fn read_buffer(&self) -> &BytesMut {
        &self.buffer
    }

    pub fn get_ref(&self) -> &ReadAhead {
        &self.reader
    }

    pub fn get_mut(&mut self) -> &mut ReadAhead {
        &mut self.reader
    }

    /// Reads into the buffer: Ready(n) with the bytes that came (0 at the socket's end).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buffer.capacity() > 0 {
            self.buffer.reserve(1);
            return tokio_util::io::poll_read_buf(Pin::new(&mut self.reader), cx, &mut self.buffer);
        }
        if !self.reader.ahead.is_empty() {
            // Read ahead while paused: that buffer becomes this one, as it is.
            self.buffer = std::mem::take(&mut self.reader.ahead);
            return Poll::Ready(Ok(self.buffer.len()));
        }
        SHARED_READ.with(|shared| {
            let mut shared = shared.borrow_mut();
            if shared.capacity() < SHARED_MIN {
                *shared = BytesMut::with_capacity(SHARED_CHUNK);
            }
            let read = tokio_util::io::poll_read_buf(Pin::new(&mut self.reader), cx, &mut *shared);
            if let Poll::Ready(Ok(_)) = read {
                self.buffer = shared.split();
            }
            read
        })
    }
}

impl<D: tokio_util::codec::Decoder + Unpin> Stream for ClientFrames<D> {
    type Item = Result<D::Item, D::Error>;

    /// `FramedRead`'s loop: decode while the buffer may hold a request, read when it needs more,
    /// `decode_eof` at the end, nothing after an error.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.errored {
                this.errored = false;
                this.readable = false;
                return Poll::Ready(None);
            }
            if this.readable {
                if this.eof {
                    let frame = this.decoder.decode_eof(&mut this.buffer);
                    match frame {
                        Ok(None) => this.readable = false,
                        Err(_) => this.errored = true,
                        Ok(Some(_)) => {}
                    }
                    return Poll::Ready(frame.transpose());
                }
                match this.decoder.decode(&mut this.buffer) {
                    Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                    Ok(None) => this.readable = false,
                    Err(e) => {
                        this.errored = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            let n = match this.poll_fill(cx) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => {
                    this.errored = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                if this.eof {
                    return Poll::Ready(None);
                }
                this.eof = true;
            } else {
                this.eof = false;
            }
            this.readable = true;
        }
    }
}

/// A client's requests, gated like [`Gated`], with one difference: while paused, the socket is
/// still read, into [`ReadAhead`] (nothing parsed), up to the query buffer limit. So a client
/// that writes its whole pipeline before it reads any reply can finish writing while the
/// session waits for room among its replies (TCP pushing back on it would be a deadlock), and
/// the client's end is known.
///
/// Past the limit, the stream yields a [`QueryBufferLimit`] error if the session waits for the
/// client ([`Gate::waits_for_client`]: its replies are not read) or the client is blocked
/// ([`Gate::watch_close`]): nothing the relayer does would make room. Otherwise the session
/// waits for the backend (replies to the requests it sent, as with `maxPendingReplies`), which
/// makes room without the client: the socket is not read meanwhile (TCP pushes back), as Redis
/// reads no faster than it runs commands. After [`Gate::drop_input`], what comes is read and
/// dropped instead, up to the limit again, then that error comes (the session then ends at
/// once), and the stream ends at the socket's end.
///
/// While paused and told to by [`Gate::watch_close`], the stream ends as soon as the client's
/// end is read. A session holding a backend connection for its client (a blocking command,
/// pub/sub) pauses its client for as long as that command runs; Redis sees a blocked client
/// leave and unblocks it, so must the relayer. Other pauses end first: what the client sent
/// before leaving is answered, as by Redis.
///
/// It says which request is the last of what was read ([`Parsed::Last`]), and otherwise yields
/// [`Parsed::Idle`] once after requests, before it waits (paused): the session then sends on
/// what it gathered from them, in one message.
pub struct ClientRequests<D> {
    inner: ClientFrames<D>,
    gate: Rc<Gate>,
    /// Bytes that may be read ahead (or dropped) before the [`QueryBufferLimit`] error.
    limit: usize,
    /// The read-ahead passed `limit`: its error was yielded.
    over: bool,
    /// What was dropped passed `limit`: its error was yielded.
    over_dropped: bool,
    /// A request other than `Last` was yielded since the last `Idle`.
    busy: bool,
    /// Set while the client has not authenticated (see [`UNAUTHENTICATED_LIMIT`]).
    unauthenticated: Option<Arc<AtomicBool>>,
}

/// An item of [`ClientRequests`].
pub enum Parsed<T> {
    Request(T),
    /// A request, and nothing more is buffered: no other can follow before a read.
    Last(T),
    /// No request is ready to be handed over (see [`ClientRequests`]).
    Idle,
}

impl<D> ClientRequests<D> {
    /// `limit`: the query buffer limit, in bytes (see above).
    pub fn new(reader: ReadAhead, decoder: D, gate: Rc<Gate>, limit: usize) -> Self {
        ClientRequests {
            inner: ClientFrames::new(reader, decoder),
            gate,
            limit,
            over: false,
            over_dropped: false,
            busy: false,
            unauthenticated: None,
        }
    }

    /// `flag` is set while the client has not authenticated: its limit is then at most
    /// [`UNAUTHENTICATED_LIMIT`].
    pub fn with_auth_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.unauthenticated = Some(flag);
        self
    }

    /// The limit that applies now, and whether it is the unauthenticated one.
    fn limit(&self) -> QueryBufferLimit {
        let unauthenticated = self
            .unauthenticated
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed) && self.limit > UNAUTHENTICATED_LIMIT);
        QueryBufferLimit {
            limit: if unauthenticated {
                UNAUTHENTICATED_LIMIT
            } else {
                self.limit
            },
            unauthenticated,
        }
    }
}

impl<D: tokio_util::codec::Decoder + Unpin> Stream for ClientRequests<D> {
    type Item = Parsed<Result<D::Item, D::Error>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.poll_request(cx);
        if let Poll::Ready(Some(item)) = polled {
            // The common case with one request per read (no pipeline): no `Idle` after it.
            if self.inner.read_buffer().is_empty() && self.inner.get_ref().is_empty() {
                self.busy = false;
                return Poll::Ready(Some(Parsed::Last(item)));
            }
            self.busy = true;
            return Poll::Ready(Some(Parsed::Request(item)));
        }
        // Pending or ended (`finished` sends what was gathered). After `Idle` the stream is
        // polled afresh (not assumed still waiting): actix may poll it next in a later run,
        // after the waker registered here was used, and only a new poll registers another.
        if polled.is_pending() && std::mem::take(&mut self.busy) {
            return Poll::Ready(Some(Parsed::Idle));
        }
        polled.map(|r| r.map(Parsed::Request))
    }
}

impl<D: tokio_util::codec::Decoder + Unpin> ClientRequests<D> {
    fn poll_request(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<D::Item, D::Error>>> {
        if !self.gate.paused.get() {
            return Pin::new(&mut self.inner).poll_next(cx);
        }
        *self.gate.waker.borrow_mut() = Some(cx.waker().clone());
        let over = self.limit();
        let limit = over.limit;
        if self.gate.drop_input.get() {
            let ahead = self.inner.get_mut();
            let polled = ahead.poll_drop(cx, limit);
            if ahead.dropped > 0 {
                self.gate.input_dropped.set(true);
            }
            return match polled {
                Poll::Ready(false) if !std::mem::replace(&mut self.over_dropped, true) => {
                    Poll::Ready(Some(Err(io::Error::other(over).into())))
                }
                // Nothing more is parsed: the session learns that the client closed its side.
                Poll::Ready(true) => Poll::Ready(None),
                _ => Poll::Pending,
            };
        }
        // One byte past the limit is read, to know it was passed (as Redis closes a client
        // whose query buffer is over its limit, not at it).
        let ahead = self.inner.get_mut();
        let ended = ahead.poll_fill(cx, limit.saturating_add(1)).is_ready();
        let stuck = self.gate.waits_for_client.get() || self.gate.watch_close.get();
        if ahead.len() > limit && stuck && !std::mem::replace(&mut self.over, true) {
            // Its session closes it: what was read ahead is dropped.
            self.gate.input_dropped.set(true);
            return Poll::Ready(Some(Err(io::Error::other(over).into())));
        }
        if ended && self.gate.watch_close.get() {
            // Gone (or failed): what it sent after the point where it was paused is dropped,
            // as Redis drops the input of a client that disconnects while blocked.
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

/// A client's output: the buffer, and whether a flush is scheduled or waits for the socket.
/// Shared by the session actors of every protocol through [`WritesToClient`].
pub struct ClientOut {
    pub out: OutBuf,
    flush_scheduled: bool,
    write_blocked: bool,
    /// Closed, its replies written, the session waits for the client to close (`may_end`).
    lingering: bool,
}

/// How long a closed client whose input was dropped may take to close its side once its
/// replies are written (see [`ClientOut::may_end`]).
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(10);

/// Write what the client's buffer holds.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct FlushClient;

/// A session actor that writes replies to its client through a [`ClientOut`].
pub trait WritesToClient: actix::Actor<Context = actix::Context<Self>> + actix::Handler<FlushClient> {
    fn client_out(&mut self) -> &mut ClientOut;
    /// Everything buffered was written: the session may read again, or finish closing.
    fn written(&mut self, ctx: &mut actix::Context<Self>);
    /// The client's socket failed: the session ends.
    fn write_failed(&mut self, e: io::Error, ctx: &mut actix::Context<Self>);
}

impl ClientOut {
    pub fn new(writer: WriteHalf) -> Self {
        ClientOut {
            out: OutBuf::new(writer),
            flush_scheduled: false,
            write_blocked: false,
            lingering: false,
        }
    }

    /// For a closing session that has written every reply: whether it may end now. Ending
    /// closes the socket, and with input of the client's still coming (sent after the point
    /// where it was closed, before it read its replies), the kernel resets the connection,
    /// which loses the replies the client has not read. So when some of it came already, the
    /// socket is shut for writing instead (the client reads its replies, then the end), the
    /// session goes on dropping the client's input (`Gate::drop_input`), and ends once the
    /// client closes its side (`input_ended`), or after [`LINGER`].
    pub fn may_end<A: WritesToClient>(
        &mut self,
        gate: &Gate,
        input_ended: bool,
        ctx: &mut actix::Context<A>,
    ) -> bool {
        if input_ended || !gate.input_dropped.get() {
            return true;
        }
        if !std::mem::replace(&mut self.lingering, true) {
            if self.out.writer.shutdown().is_err() {
                // Already gone.
                return true;
            }
            actix::AsyncContext::run_later(ctx, LINGER, |_, ctx| actix::ActorContext::stop(ctx));
        }
        false
    }

    /// Bytes not yet written.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Appends `data` and schedules a flush, unless one is scheduled or the socket is full (its
    /// wait flushes). One flush per mailbox turn: the replies of a pipeline leave in one write.
    pub fn push<A: WritesToClient>(&mut self, data: &[u8], ctx: &mut actix::Context<A>) {
        self.out.extend_from_slice(data);
        self.schedule(ctx);
    }

    /// `push` for a reply already in a buffer of its own: a large one (a 10 KB GET) is written
    /// from where it is instead of being copied.
    pub fn push_bytes<A: WritesToClient>(&mut self, data: Bytes, ctx: &mut actix::Context<A>) {
        self.out.push_bytes(data);
        self.schedule(ctx);
    }

    fn schedule<A: WritesToClient>(&mut self, ctx: &mut actix::Context<A>) {
        if !self.flush_scheduled && !self.write_blocked {
            self.flush_scheduled = true;
            actix::AsyncContext::notify(ctx, FlushClient);
        }
    }
}

/// What a session does on [`FlushClient`]: writes what the socket takes, and when it takes
/// less, waits until it is writable and flushes again.
pub fn flush_client<A: WritesToClient>(act: &mut A, ctx: &mut actix::Context<A>) {
    use actix::{ActorFutureExt, AsyncContext, WrapFuture};
    let out = act.client_out();
    out.flush_scheduled = false;
    match out.out.flush() {
        Ok(true) => act.written(ctx),
        Ok(false) => {
            out.write_blocked = true;
            let w = out.out.writer();
            ctx.spawn(
                async move { w.writable().await }
                    .into_actor(act)
                    .map(|res, act, ctx| {
                        let out = act.client_out();
                        out.write_blocked = false;
                        match res {
                            Ok(()) => {
                                out.flush_scheduled = true;
                                ctx.notify(FlushClient);
                            }
                            Err(e) => act.write_failed(e, ctx),
                        }
                    }),
            );
        }
        Err(e) => act.write_failed(e, ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A connected pair: the relayer's end (tokio, must be made within the runtime) and the
    /// peer's (std, blocking).
    fn pair() -> (UnixStream, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        (UnixStream::from_std(a).unwrap(), b)
    }

    /// Small and large pieces, written through a socket that keeps filling up, arrive whole and
    /// in order.
    #[test]
    fn out_buf_keeps_order_across_partial_vectored_writes() {
        runtime().block_on(async {
            let (a, mut b) = pair();
            let (_, w) = split_unix(a);
            let mut out = OutBuf::new(w);
            let mut want = Vec::new();
            for i in 0..400u32 {
                let size = [3, 100, 5000, 70_000, 4096, 1][i as usize % 6];
                let piece: Vec<u8> = (0..size).map(|j| (i as usize * 31 + j) as u8).collect();
                want.extend_from_slice(&piece);
                if i % 2 == 0 {
                    out.push_bytes(Bytes::from(piece));
                } else {
                    out.extend_from_slice(&piece);
                }
            }
            assert_eq!(out.len(), want.len());
            // A reader thread drains the other end; the runtime learns writability from its
            // reactor, so the writer waits for `writable` as the actors do.
            let reader = std::thread::spawn(move || {
                let mut got = Vec::new();
                b.read_to_end(&mut got).unwrap();
                got
            });
            while !out.flush().unwrap() {
                out.writer().writable().await.unwrap();
            }
            assert!(out.is_empty());
            drop(out);
            let got = reader.join().unwrap();
            assert!(got == want, "{} bytes read, {} written", got.len(), want.len());
        });
    }

    /// The request after which nothing is buffered is marked `Last`; after other requests,
    /// `Idle` comes once before the stream waits (here: paused), so the session sends what it
    /// gathered.
    #[test]
    fn client_requests_mark_the_last_of_a_read_and_go_idle_before_waiting() {
        use futures_util::{FutureExt, StreamExt};
        use tokio_util::codec::{LinesCodec, LinesCodecError};
        type Lines = ClientRequests<LinesCodec>;
        fn show(p: Parsed<Result<String, LinesCodecError>>) -> String {
            match p {
                Parsed::Request(r) => format!("request {}", r.unwrap()),
                Parsed::Last(r) => format!("last {}", r.unwrap()),
                Parsed::Idle => "idle".into(),
            }
        }
        async fn next(s: &mut Lines) -> String {
            let item = tokio::time::timeout(Duration::from_secs(5), s.next()).await;
            show(item.expect("an item in time").expect("not ended"))
        }
        runtime().block_on(async {
            let (a, mut b) = pair();
            let (r, _w) = split_unix(a);
            let gate = Gate::new();
            let mut s = ClientRequests::new(ReadAhead::new(r), LinesCodec::new(), gate.clone(), 1 << 20);
            b.write_all(b"a\nb\nc\n").unwrap();
            assert_eq!(next(&mut s).await, "request a");
            assert_eq!(next(&mut s).await, "request b");
            assert_eq!(next(&mut s).await, "last c");
            assert!(s.next().now_or_never().is_none(), "no idle after the last");
            b.write_all(b"d\ne\n").unwrap();
            assert_eq!(next(&mut s).await, "request d");
            gate.pause();
            assert_eq!(next(&mut s).await, "idle");
            assert!(s.next().now_or_never().is_none(), "waits while paused");
            gate.resume();
            assert_eq!(next(&mut s).await, "last e");
        });
    }

    /// A client holds no read buffer while it idles: each request is read through the scratch
    /// buffer, the buffer is given back once drained, and a request larger than the scratch
    /// buffer, arriving in pieces, is whole; requests of one read come in order, the last marked.
    #[test]
    fn an_idle_client_holds_no_read_buffer() {
        use crate::resp::request::{Limits, RequestParser};
        use futures_util::StreamExt;
        runtime().block_on(async {
            let (a, b) = pair();
            let (r, _w) = split_unix(a);
            let parser = RequestParser::new(Limits::default());
            let mut s = ClientRequests::new(ReadAhead::new(r), parser, Gate::new(), 1 << 30);
            assert_eq!(s.inner.read_buffer().capacity(), 0);
            let mut next = async || {
                let item = tokio::time::timeout(Duration::from_secs(5), s.next()).await;
                let (last, cmd) = match item.expect("in time").expect("not ended") {
                    Parsed::Last(c) => (true, c.unwrap()),
                    Parsed::Request(c) => (false, c.unwrap()),
                    Parsed::Idle => panic!("idle"),
                };
                (last, cmd.frame().len(), s.inner.read_buffer().capacity())
            };
            let ping = b"*1\r\n$4\r\nPING\r\n";
            (&b).write_all(ping).unwrap();
            assert_eq!(next().await, (true, ping.len(), 0));
            (&b).write_all(&ping.repeat(3)).unwrap();
            assert_eq!(next().await, (false, ping.len(), ping.len() * 2));
            assert_eq!(next().await, (false, ping.len(), ping.len()));
            assert_eq!(next().await, (true, ping.len(), 0));
            // 100 KB, in pieces of 7 KB from another thread.
            let value = vec![b'v'; 100_000];
            let mut set = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n".to_vec();
            set.extend_from_slice(&value);
            set.extend_from_slice(b"\r\n");
            let want = set.len();
            let writer = std::thread::spawn(move || {
                for piece in set.chunks(7000) {
                    (&b).write_all(piece).unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                }
                b
            });
            assert_eq!(next().await, (true, want, 0));
            drop(writer.join().unwrap());
            assert!(
                tokio::time::timeout(Duration::from_secs(5), s.next())
                    .await
                    .unwrap()
                    .is_none(),
                "ends"
            );
        });
    }

    /// What is read ahead never passes its bound, whatever spare room the buffer has (a buffer
    /// grown by doubling, or left with room by the parser).
    #[test]
    fn read_ahead_stays_within_its_bound() {
        const READ_AHEAD_MAX: usize = 64 * 1024;
        runtime().block_on(async {
            let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            b.set_nonblocking(true).unwrap();
            let mut sent = 0;
            let chunk = vec![b'x'; 64 * 1024];
            while sent < 4 * READ_AHEAD_MAX {
                match (&b).write(&chunk) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
            assert!(sent > 2 * READ_AHEAD_MAX, "only {sent} bytes in the socket");
            let (mut r, _w) = split_unix(UnixStream::from_std(a).unwrap());
            for room in [0, 40 * 1024, 3 * READ_AHEAD_MAX] {
                let mut ahead = ReadAhead::new(r);
                ahead.ahead = BytesMut::with_capacity(room);
                // Pending for good once full (the socket has more).
                let fill = std::future::poll_fn(|cx| ahead.poll_fill(cx, READ_AHEAD_MAX));
                let full = tokio::time::timeout(Duration::from_millis(200), fill).await;
                assert!(full.is_err(), "room {room}: the socket ended");
                assert_eq!(ahead.ahead.len(), READ_AHEAD_MAX, "room {room}");
                assert!(ahead.ahead.capacity() <= READ_AHEAD_MAX.max(room), "room {room}");
                r = ahead.inner;
            }
            drop(b);
        });
    }

    /// A paused client is read ahead (nothing parsed) up to its limit exactly, then one byte,
    /// no more, while its session waits for the backend; once it waits for the client, the
    /// stream yields the `QueryBufferLimit` error, once. Told to drop its input, the stream
    /// gives the read-ahead's memory back and drops what comes (the byte left in the socket
    /// included), up to the limit again, then yields the error again.
    #[test]
    fn paused_client_is_read_ahead_up_to_its_limit_then_gets_the_error() {
        use futures_util::{FutureExt, StreamExt};
        use tokio_util::codec::LinesCodec;
        const LIMIT: usize = 256 * 1024;
        runtime().block_on(async {
            let (a, b) = pair();
            let (r, _w) = split_unix(a);
            let gate = Gate::new();
            let mut s = ClientRequests::new(ReadAhead::new(r), LinesCodec::new(), gate.clone(), LIMIT);
            gate.pause();
            // The peer writes from a thread: the socket's buffer is smaller than what it sends.
            let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
            let writer = std::thread::spawn(move || {
                let mut b = b;
                for data in rx {
                    b.write_all(&data).unwrap();
                }
                b
            });
            let line = b"0123456789abcde\n";
            tx.send(line.repeat(LIMIT / line.len())).unwrap();
            let ahead = |s: &ClientRequests<LinesCodec>| s.inner.get_ref().len();
            for _ in 0..500 {
                assert!(s.next().now_or_never().is_none(), "nothing yielded while paused, within the limit");
                if ahead(&s) == LIMIT {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(ahead(&s), LIMIT, "the whole limit is read ahead");
            assert_eq!(s.inner.read_buffer().len(), 0, "nothing parsed");
            // Paused for the backend's replies, not the client: past the limit the socket is
            // left unread, without an error.
            tx.send(b"xy".to_vec()).unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(s.next().now_or_never().is_none(), "no error while not waiting for the client");
            assert_eq!(ahead(&s), LIMIT + 1, "one byte past the limit, no more");
            // Waiting for the client to read its replies: the error.
            gate.waits_for_client(true);
            let item = tokio::time::timeout(Duration::from_secs(5), s.next()).await.expect("the error in time");
            match item {
                Some(Parsed::Last(Err(e)) | Parsed::Request(Err(e))) => {
                    let io = match e {
                        tokio_util::codec::LinesCodecError::Io(io) => io,
                        e => panic!("not an I/O error: {e}"),
                    };
                    assert!(is_query_buffer_limit(&io), "{io}");
                    assert_eq!(io.to_string(), format!("query buffer limit reached (queryBufferLimit = {LIMIT} bytes)"));
                }
                _ => panic!("expected the query buffer limit error"),
            }
            assert_eq!(ahead(&s), LIMIT + 1, "one byte past the limit, no more");
            assert!(s.inner.get_ref().ahead.capacity() <= LIMIT + 1);
            tokio::time::sleep(Duration::from_millis(50)).await;
            // (`Idle` after it, as after any item that is not `Last`.)
            assert!(matches!(s.next().now_or_never(), None | Some(Some(Parsed::Idle))));
            assert!(s.next().now_or_never().is_none(), "the error comes once");

            gate.drop_input();
            assert!(s.next().now_or_never().is_none(), "dropping yields nothing");
            assert_eq!(s.inner.get_ref().ahead.capacity(), 0, "the read-ahead's memory is given back");
            // One byte ("y") was left in the socket.
            tx.send(vec![b'y'; LIMIT - 1]).unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(s.next().now_or_never().is_none(), "up to the limit is dropped");
            tx.send(b"z".to_vec()).unwrap();
            let item = tokio::time::timeout(Duration::from_secs(5), s.next()).await.expect("the error in time");
            assert!(
                matches!(item, Some(Parsed::Last(Err(tokio_util::codec::LinesCodecError::Io(ref e)))) if is_query_buffer_limit(e)),
                "the error again past the limit of dropped bytes"
            );
            assert_eq!(s.inner.get_ref().ahead.capacity(), 0);
            drop(tx);
            writer.join().unwrap();
        });
    }

    /// What was read ahead while paused is parsed, in order, once the session resumes, the end
    /// of the socket after it; then the read-ahead holds no memory. While paused and watching
    /// for the close, the stream ends at the socket's end instead.
    #[test]
    fn read_ahead_is_parsed_after_resuming_and_its_memory_given_back() {
        use futures_util::StreamExt;
        use tokio_util::codec::LinesCodec;
        runtime().block_on(async {
            for watch in [false, true] {
                let (a, mut b) = pair();
                let (r, _w) = split_unix(a);
                let gate = Gate::new();
                let mut s = ClientRequests::new(ReadAhead::new(r), LinesCodec::new(), gate.clone(), 1 << 20);
                gate.pause();
                gate.watch_close(watch);
                let mut sent = Vec::new();
                for i in 0..50_000 {
                    sent.extend_from_slice(format!("line {i}\n").as_bytes());
                }
                let total = sent.len();
                // More than the socket buffers: the writer finishes only if it is read ahead.
                let writer = std::thread::spawn(move || {
                    b.write_all(&sent).unwrap();
                    drop(b);
                });
                if watch {
                    let next = tokio::time::timeout(Duration::from_secs(5), s.next()).await;
                    assert!(matches!(next, Ok(None)), "paused and watching: ends at the close");
                    writer.join().unwrap();
                    continue;
                }
                for _ in 0..500 {
                    let next = tokio::time::timeout(Duration::from_millis(10), s.next()).await;
                    assert!(next.is_err(), "paused, not watching: waits");
                    if s.inner.get_ref().len() == total {
                        break;
                    }
                }
                writer.join().unwrap();
                assert_eq!(s.inner.get_ref().len(), total, "all read ahead");
                gate.resume();
                let mut got = Vec::new();
                while let Some(item) = tokio::time::timeout(Duration::from_secs(5), s.next())
                    .await
                    .unwrap()
                {
                    match item {
                        Parsed::Request(l) | Parsed::Last(l) => got.push(l.unwrap()),
                        Parsed::Idle => {}
                    }
                }
                assert_eq!(got.len(), 50_000);
                assert!(got.iter().enumerate().all(|(i, l)| *l == format!("line {i}")));
                assert_eq!(s.inner.get_ref().ahead.capacity(), 0, "no memory kept");
            }
        });
    }

    /// The read-ahead buffer doubles up to its limit: filling it copies less than twice the
    /// limit however large (a fixed step would copy quadratically).
    #[test]
    fn read_ahead_grows_by_doubling() {
        for max in [READ_AHEAD_FIRST / 2, 1 << 20, (1 << 30) + 1, 3 << 30] {
            let (mut len, mut copied, mut steps) = (0usize, 0usize, 0);
            while len < max {
                let size = grown_size(len, max);
                assert!(size > len && size <= max, "{len} -> {size} (max {max})");
                copied += len;
                len = size;
                steps += 1;
            }
            assert!(copied < 2 * max, "max {max}: {copied} bytes copied");
            assert!(steps <= 20, "max {max}: {steps} steps");
        }
    }
}
