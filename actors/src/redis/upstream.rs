//! One connection to a backend as the relayer writes to it: the bytes waiting to be written,
//! the replies owed in the order the commands were written, whether a flush is due, and which
//! connection attempt it is. The backend's shared connections (`backend::Conn`, reconnected
//! with backoff) and a client's dedicated connection (`dedicated::Dedicated`, one attempt)
//! each hold one; `P` is what they need to know about an owed reply.
//!
//! Lifecycle: `attempt` (not open: frames wait in `early`) -> `open` (early frames go first)
//! -> `flush` as often as `needs_flush` says -> `close` (what was owed is handed back, what was
//! not written is dropped) -> `attempt` again, or the end of its actor.

use crate::io::{OutBuf, WriteHalf};
use actix::prelude::*;
use bytes::Bytes;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

/// The read buffer of an upstream connection (grown to this when it runs out): replies of many
/// clients arrive together, and a large value (10 KB and more) would otherwise take several
/// reads of the default 8 KB.
pub const READ_BUFFER: usize = 64 * 1024;

/// How many bytes of replies a shared connection may owe before it holds further commands
/// back (see [`Window`]).
const WINDOW_BYTES: usize = 1 << 20;
/// Commands a windowed connection may always have in flight, however large their replies.
const WINDOW_MIN: usize = 16;
/// What a reply is taken to weigh before any came back.
const FIRST_REPLY_GUESS: usize = 64;

/// How far ahead of its replies a shared connection writes. Redis runs every command it reads
/// at once and keeps the replies until the socket takes them: one connection carrying the
/// pipelines of many clients can make it hold megabytes for that one client, which costs it
/// far more than the same bytes spread over many clients (with 800 GETs of 10 KB in flight on
/// one connection, redis-server spent twice the CPU per command, much of it faulting pages in
/// and out). So commands are written while the replies they owe, estimated
/// from the mean size of recent replies, stay under [`WINDOW_BYTES`]; the rest wait in the
/// output buffer for replies to come back. Small replies never reach it (16,000 replies of 64
/// bytes).
#[derive(Default)]
struct Window {
    /// Where each frame queued and not yet written whole ends (each owes one reply).
    ends: VecDeque<u64>,
    /// Mean size of the last replies (a moving average), in bytes.
    reply_mean: usize,
    /// Frames are held back: a reply makes room.
    held: bool,
}

impl Window {
    /// Commands that may be in flight now.
    fn size(&self) -> usize {
        (WINDOW_BYTES / self.reply_mean.max(1)).max(WINDOW_MIN)
    }

    /// Frames written whole whose reply has not come back, of the `owed` entries of `pending`:
    /// every frame has its entry, so those not written whole are the rest.
    fn in_flight(&self, owed: usize) -> usize {
        owed.saturating_sub(self.ends.len())
    }
}

pub(crate) struct Upstream<P> {
    /// Bumped at each attempt and each close: events of an older connection are ignored.
    pub(crate) generation: u64,
    out: Option<OutBuf>,
    /// Frames written before the connection is open, in order.
    early: Vec<Bytes>,
    early_len: usize,
    /// What each written command's reply is for, oldest first.
    pub(crate) pending: VecDeque<P>,
    flush_scheduled: bool,
    write_blocked: bool,
    /// Bytes queued since the connection opened, and bytes the socket took: a command whose
    /// frame ended at `queued` = n has been written once `written` reaches n.
    pub(crate) queued: u64,
    pub(crate) written: u64,
    /// Set on the backend's shared connections, where every frame owes one reply.
    window: Option<Window>,
}

/// The message an actor sends itself to flush its upstream connection of that index (a
/// dedicated connection has one, 0): once per mailbox run, so that what arrives together leaves in
/// one write.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Flush(pub(crate) usize);

/// What a flush did.
pub(crate) enum Flushed {
    /// Everything was written, or there is no connection to write to.
    Done,
    /// The socket took less than everything: flush again once it is writable.
    Blocked(Rc<WriteHalf>),
    Failed(io::Error),
}

impl<P> Default for Upstream<P> {
    fn default() -> Self {
        Upstream {
            generation: 0,
            out: None,
            early: Vec::new(),
            early_len: 0,
            pending: VecDeque::new(),
            flush_scheduled: false,
            write_blocked: false,
            queued: 0,
            written: 0,
            window: None,
        }
    }
}

impl<P> Upstream<P> {
    /// A connection whose every frame owes one reply, written at most a window ahead of its
    /// replies (see [`Window`]); [`Upstream::answered`] is told of each reply.
    pub(crate) fn windowed() -> Self {
        Upstream {
            window: Some(Window {
                reply_mean: FIRST_REPLY_GUESS,
                ..Window::default()
            }),
            ..Upstream::default()
        }
    }

    /// A reply of `len` bytes came back for the oldest owed command (its entry taken off
    /// `pending`): whether a flush is now due (commands held back by the window may go).
    pub(crate) fn answered(&mut self, len: usize) -> bool {
        let owed = self.pending.len();
        let Some(w) = self.window.as_mut() else {
            return false;
        };
        // A moving average over about the last 8 replies.
        w.reply_mean = w.reply_mean - w.reply_mean / 8 + len / 8;
        let room = w.held && w.in_flight(owed) < w.size();
        if room {
            w.held = false;
        }
        room && self.needs_flush()
    }

    pub(crate) fn is_open(&self) -> bool {
        self.out.is_some()
    }

    /// Queues a frame, to be written once open; returns where it ends among the bytes queued.
    pub(crate) fn write(&mut self, frame: Bytes) -> u64 {
        self.queued += frame.len() as u64;
        if let Some(w) = self.window.as_mut() {
            w.ends.push_back(self.queued);
        }
        match &mut self.out {
            Some(out) => out.push_bytes(frame),
            None => {
                self.early_len += frame.len();
                self.early.push(frame);
            }
        }
        self.queued
    }

    /// Bytes queued and not written yet.
    pub(crate) fn unsent(&self) -> usize {
        self.out.as_ref().map_or(self.early_len, OutBuf::len)
    }

    /// A new connection attempt; returns its generation.
    pub(crate) fn attempt(&mut self) -> u64 {
        self.generation += 1;
        self.out = None;
        self.write_blocked = false;
        self.generation
    }

    /// The connection is open: what was written before goes first.
    pub(crate) fn open(&mut self, mut out: OutBuf) {
        for frame in self.early.drain(..) {
            out.push_bytes(frame);
        }
        self.early_len = 0;
        self.out = Some(out);
    }

    /// The connection is gone: returns what it owed; what was not written is dropped, and
    /// events of this connection are ignored from now on.
    pub(crate) fn close(&mut self) -> VecDeque<P> {
        self.out = None;
        self.early.clear();
        self.early_len = 0;
        self.generation += 1;
        self.queued = 0;
        self.written = 0;
        if let Some(w) = self.window.as_mut() {
            w.ends.clear();
            w.held = false;
        }
        std::mem::take(&mut self.pending)
    }

    /// True when a flush is due and none is scheduled: the caller schedules one now.
    pub(crate) fn needs_flush(&mut self) -> bool {
        let held = self.window.as_ref().is_some_and(|w| w.held);
        if self.flush_scheduled || self.write_blocked || held || self.out.is_none() {
            return false;
        }
        self.flush_scheduled = true;
        true
    }

    /// Writes what the socket takes now (the scheduled flush).
    pub(crate) fn flush(&mut self) -> Flushed {
        self.flush_scheduled = false;
        let Some(out) = self.out.as_mut() else {
            return Flushed::Done;
        };
        // The bytes the window lets go: up to the end of the last frame it has room for.
        let mut limit = usize::MAX;
        if let Some(w) = self.window.as_ref() {
            let room = w.size().saturating_sub(w.in_flight(self.pending.len()));
            if room < w.ends.len() {
                limit = match room.checked_sub(1) {
                    Some(last) => (w.ends[last] - self.written) as usize,
                    None => 0,
                };
            }
        }
        let before = out.len();
        let res = out.flush_up_to(limit);
        self.written += (before - out.len()) as u64;
        if let Some(w) = self.window.as_mut() {
            while w.ends.front().is_some_and(|&end| end <= self.written) {
                w.ends.pop_front();
            }
            // Held only once the window's share is written whole: its frames are in flight, so
            // a reply will come and make room. A write the socket cut short is resumed when it
            // is writable, as without the window (held then, with nothing in flight, nothing
            // would ever resume it).
            w.held = matches!(res, Ok(true)) && !w.ends.is_empty();
        }
        match res {
            Ok(true) => Flushed::Done,
            Ok(false) => {
                self.write_blocked = true;
                Flushed::Blocked(out.writer())
            }
            Err(e) => Flushed::Failed(e),
        }
    }

    /// The socket is writable again after `Flushed::Blocked`.
    pub(crate) fn writable(&mut self) {
        self.write_blocked = false;
    }
}

/// Waits for a socket that took less than everything to be writable again, then calls `then`
/// on the actor (which checks that the connection is still the same one).
pub(crate) fn when_writable<A>(
    w: Rc<WriteHalf>,
    ctx: &mut Context<A>,
    then: impl FnOnce(&mut A, io::Result<()>, &mut Context<A>) + 'static,
) where
    A: Actor<Context = Context<A>>,
{
    let wait = actix::fut::wrap_future::<_, A>(async move { w.writable().await });
    ctx.spawn(wait.map(move |res, act, ctx| then(act, res, ctx)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::split_unix;
    use std::io::Read;

    fn frame(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn early_frames_count_and_wait_for_the_connection() {
        let mut up: Upstream<u32> = Upstream::default();
        assert_eq!(up.attempt(), 1);
        assert_eq!(up.write(frame(10)), 10);
        up.pending.push_back(1);
        assert_eq!(up.write(frame(5000)), 5010);
        assert_eq!(up.unsent(), 5010);
        // Nothing to flush before the connection is open.
        assert!(!up.needs_flush());
        assert!(matches!(up.flush(), Flushed::Done));
        assert_eq!(up.written, 0);
    }

    #[test]
    fn close_hands_back_what_was_owed_and_forgets_the_rest() {
        let mut up: Upstream<u32> = Upstream::default();
        let first = up.attempt();
        up.write(frame(3));
        up.pending.extend([7, 8]);
        let owed = up.close();
        assert_eq!(owed, VecDeque::from([7, 8]));
        assert!(up.pending.is_empty());
        assert_eq!((up.queued, up.written, up.unsent()), (0, 0, 0));
        assert!(
            up.generation > first,
            "events of the closed connection must be ignored"
        );
        assert!(up.attempt() > first + 1);
    }

    /// Frames written before the connection opened go first, and `written` follows what the
    /// socket took, through a socket that fills up.
    #[test]
    fn early_frames_go_first_and_written_follows_the_socket() {
        runtime().block_on(async {
            let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            let (_, w) = split_unix(tokio::net::UnixStream::from_std(a).unwrap());
            let mut w = Some(w);
            let mut up: Upstream<()> = Upstream::default();
            up.attempt();
            let mut want = Vec::new();
            for i in 0..200u8 {
                let piece = vec![i; [3, 9000, 70_000][i as usize % 3]];
                want.extend_from_slice(&piece);
                up.write(Bytes::from(piece));
                if i == 10 {
                    up.open(OutBuf::new(w.take().unwrap()));
                }
            }
            let reader = std::thread::spawn(move || {
                let mut got = Vec::new();
                b.read_to_end(&mut got).unwrap();
                got
            });
            assert!(up.needs_flush());
            assert!(!up.needs_flush(), "one flush scheduled at a time");
            loop {
                match up.flush() {
                    Flushed::Done => break,
                    Flushed::Blocked(w) => {
                        assert!(!up.needs_flush(), "no flush while the socket is full");
                        w.writable().await.unwrap();
                        up.writable();
                    }
                    Flushed::Failed(e) => panic!("{e}"),
                }
            }
            assert_eq!(up.written, want.len() as u64);
            assert_eq!(up.written, up.queued);
            assert_eq!(up.unsent(), 0);
            // Closing drops the socket: the reader sees the end.
            up.close();
            let got = reader.join().unwrap();
            assert!(got == want, "{} bytes read, {} written", got.len(), want.len());
        });
    }

    /// A write that the socket cuts short inside the window's share, with nothing in flight, is
    /// resumed once the socket is writable: the connection is not held waiting for a reply that
    /// cannot come.
    #[test]
    fn a_write_cut_short_is_resumed_not_held() {
        runtime().block_on(async {
            let (mut up, b) = windowed_with_large_replies();
            // A frame far larger than the socket takes, then more than the window's commands.
            let big = 8 << 20;
            up.write(Bytes::from(vec![b'x'; big]));
            for i in 0..2 * WINDOW_MIN {
                up.write(Bytes::from(vec![i as u8; 10]));
            }
            let reader = std::thread::spawn(move || {
                let mut got = 0usize;
                let mut buf = vec![0u8; 1 << 16];
                while got < big {
                    got += (&b).read(&mut buf).unwrap();
                }
                got
            });
            assert!(up.needs_flush());
            let mut flushes = 0;
            while up.written < big as u64 {
                match up.flush() {
                    Flushed::Done => {}
                    Flushed::Blocked(w) => {
                        w.writable().await.unwrap();
                        up.writable();
                        assert!(up.needs_flush(), "writable again: the flush resumes");
                    }
                    Flushed::Failed(e) => panic!("{e}"),
                }
                flushes += 1;
                assert!(flushes < 100_000);
            }
            assert!(reader.join().unwrap() >= big);
            assert_eq!(
                up.written,
                (big + 10 * (WINDOW_MIN - 1)) as u64,
                "the window's share, whole"
            );
        });
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// An open windowed connection over a socket pair (in a runtime), and the socket's other
    /// end; replies taken to weigh 100 KB, so the window is its least, WINDOW_MIN commands.
    fn windowed_with_large_replies() -> (Upstream<usize>, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let (_, w) = split_unix(tokio::net::UnixStream::from_std(a).unwrap());
        let mut up = Upstream::windowed();
        up.attempt();
        up.open(OutBuf::new(w));
        up.window.as_mut().unwrap().reply_mean = 100_000;
        (up, b)
    }

    /// Flushes until the socket took what the flush may write (tokio's socket reports itself
    /// full until its readiness is known).
    async fn flush<P>(up: &mut Upstream<P>) {
        loop {
            match up.flush() {
                Flushed::Done => return,
                Flushed::Blocked(w) => {
                    w.writable().await.unwrap();
                    up.writable();
                }
                Flushed::Failed(e) => panic!("{e}"),
            }
        }
    }

    /// A windowed connection writes commands while the replies they owe stay under the window,
    /// holds the rest in its buffer, and lets one more go for each reply; frames large enough
    /// to be written from where they lie (vectored) are cut at a frame's end like the others.
    #[test]
    fn the_window_holds_commands_until_replies_make_room() {
        runtime().block_on(async {
            let (mut up, b) = windowed_with_large_replies();
            b.set_nonblocking(true).unwrap();
            let sizes = |i: usize| if i % 2 == 0 { 3 } else { 5000 };
            let mut want = Vec::new();
            let mut ends = Vec::new();
            for i in 0..40 {
                let piece = vec![i as u8; sizes(i)];
                want.extend_from_slice(&piece);
                ends.push(up.write(Bytes::from(piece)));
                up.pending.push_back(i);
            }
            let read_all = |b: &std::os::unix::net::UnixStream| {
                let mut got = Vec::new();
                let mut buf = [0u8; 65536];
                while let Ok(n) = (&*b).read(&mut buf) {
                    got.extend_from_slice(&buf[..n]);
                }
                got
            };
            assert!(up.needs_flush());
            flush(&mut up).await;
            assert_eq!(
                up.written,
                ends[WINDOW_MIN - 1],
                "written up to the window's last frame"
            );
            assert!(!up.needs_flush(), "held: nothing to flush before a reply");
            let mut got = read_all(&b);
            assert_eq!(got.len() as u64, up.written);
            // Each reply lets one more command go.
            for i in 0..3 {
                assert_eq!(up.pending.pop_front(), Some(i));
                assert!(up.answered(100_000), "a reply makes room for one more");
                self::flush(&mut up).await;
                assert_eq!(up.written, ends[WINDOW_MIN + i]);
            }
            // Small replies widen the window: everything goes.
            let due: Vec<bool> = (0..40)
                .map(|_| {
                    up.pending.pop_front();
                    up.answered(10)
                })
                .collect();
            assert_eq!(
                due.iter().filter(|&&d| d).count(),
                1,
                "one flush scheduled: {due:?}"
            );
            flush(&mut up).await;
            assert_eq!(up.written, up.queued);
            got.extend(read_all(&b));
            assert!(got == want, "{} bytes read, {} written", got.len(), want.len());
            // A connection that is not windowed writes everything.
            let mut plain: Upstream<()> = Upstream::default();
            assert!(!plain.answered(1));
        });
    }
}
