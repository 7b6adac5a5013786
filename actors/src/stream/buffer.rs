//! The buffer of one stream batcher, shared with its sessions: it bounds the lines held (queued,
//! in flight, waiting to be resent or being written to the dead-letter file) in number (`buffer`)
//! and in bytes (`bufferBytes`), and holds the inbox where sessions leave accepted lines for the
//! batcher.
//!
//! The batcher is woken (a message to its thread, an eventfd write and a context switch) only
//! when it has to look: the first line while it has no flush timer set, a call's worth of lines,
//! or a buffer with no room left. Otherwise its flush timer, or the answer of a call in flight,
//! brings it to the inbox soon enough. Waking it for every line cost a third of the relayer's
//! CPU per line under load (perf: eventfd_write and the task switches it causes).
//!
//! A session takes a line's room first (both bounds), then pushes the line; the batcher gives the
//! room back when the line is delivered, dead-lettered or counted lost. Once the batcher drains
//! (stop, reload) the buffer is closed: taking room fails, a session waiting for room is woken
//! with an error, and a push is refused, so that nothing is acknowledged that the batcher will
//! not see. The push and the close take the same lock: a line is either in the inbox when the
//! batcher empties it for the last time, or refused.

use super::call::Limits;
use super::firehose::LIMITS as FIREHOSE;
use bytes::Bytes;
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::{Semaphore, TryAcquireError};

/// The most a bound may be (tokio's semaphore limit).
pub const MAX_BOUND: usize = Semaphore::MAX_PERMITS;

pub struct Buffer {
    lines: Semaphore,
    bytes: Semaphore,
    inbox: Mutex<Inbox>,
    /// Lines in the inbox that make a call's worth: the batcher is woken for them.
    wake_lines: usize,
    /// Bytes that make a call's worth, and the longest line: the service's.
    call_bytes: usize,
    max_line: usize,
}

#[derive(Default)]
struct Inbox {
    lines: Vec<Bytes>,
    /// When the oldest line in `lines` arrived: its flush interval runs from then, not from
    /// when the batcher takes it.
    since: Option<Instant>,
    bytes: usize,
    closed: bool,
    /// A wake is on its way to the batcher.
    woken: bool,
    /// The batcher will come to the inbox by itself within a flush interval (its timer is set,
    /// or it waits for calls in flight to answer), so a line needs no wake.
    looking: bool,
    /// Lines and bytes the batcher holds packed for a call that could leave at once: with the
    /// inbox's, they may make a call's worth (None: no call can leave before its timer or an
    /// answer, whatever arrives).
    packed: Option<(usize, usize)>,
}

/// Why no room was taken.
#[derive(Debug, PartialEq, Eq)]
pub enum NoRoom {
    /// Full: try again later.
    Full,
    /// The batcher is draining or gone.
    Closed,
}

/// Where a pushed line went.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued, and the batcher must be woken to look (see the module's comment).
    Wake,
    /// Queued behind others: the batcher is already woken.
    Queued,
}

impl Buffer {
    /// `lines` and `bytes` at most `MAX_BOUND` (checked by the configuration); calls and lines
    /// as Firehose has them until `for_service` says otherwise.
    pub fn new(lines: usize, bytes: usize) -> Buffer {
        Buffer {
            lines: Semaphore::new(lines),
            bytes: Semaphore::new(bytes),
            inbox: Mutex::default(),
            wake_lines: FIREHOSE.call_entries,
            call_bytes: FIREHOSE.call_bytes,
            max_line: FIREHOSE.line,
        }
    }

    /// A call's bytes and the longest line, as the service has them.
    pub fn for_service(mut self, limits: Limits) -> Self {
        self.call_bytes = limits.call_bytes;
        self.max_line = limits.line;
        self
    }

    /// Wakes the batcher once `lines` lines wait in the inbox (a call's worth: its entries of
    /// `maxRecords` lines), whatever its timer.
    pub fn wake_after(mut self, lines: usize) -> Self {
        self.wake_lines = lines.max(1);
        self
    }

    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes room for one line of `len` bytes (at most a record, so it fits a u32), if there is.
    pub fn try_take(&self, len: usize) -> Result<(), NoRoom> {
        let no_room = |e| match e {
            TryAcquireError::NoPermits => NoRoom::Full,
            TryAcquireError::Closed => NoRoom::Closed,
        };
        let line = self.lines.try_acquire().map_err(no_room)?;
        let bytes = self.bytes.try_acquire_many(len as u32).map_err(no_room)?;
        line.forget();
        bytes.forget();
        Ok(())
    }

    /// Waits for room for one line of `len` bytes; fails once the buffer is closed. Dropped
    /// while waiting, it takes nothing.
    pub async fn take(&self, len: usize) -> Result<(), NoRoom> {
        let line = self.lines.acquire().await.map_err(|_| NoRoom::Closed)?;
        let bytes = self
            .bytes
            .acquire_many(len as u32)
            .await
            .map_err(|_| NoRoom::Closed)?;
        line.forget();
        bytes.forget();
        Ok(())
    }

    /// Gives back the room of `lines` lines of `bytes` bytes in all.
    pub fn give_back(&self, lines: usize, bytes: usize) {
        self.lines.add_permits(lines);
        self.bytes.add_permits(bytes);
    }

    /// Leaves a line (its room taken) for the batcher; gives it back if the buffer is closed
    /// (and the room taken for it must be given back too).
    pub fn push(&self, line: Bytes) -> Result<Pushed, Bytes> {
        let mut inbox = self.inbox();
        if inbox.closed {
            return Err(line);
        }
        if inbox.lines.is_empty() {
            inbox.since = Some(Instant::now());
        }
        inbox.bytes += line.len();
        inbox.lines.push(line);
        let (packed_lines, packed_bytes) = inbox.packed.unwrap_or((0, 0));
        let must_look = !inbox.looking
            || inbox.lines.len() + packed_lines >= self.wake_lines
            || inbox.bytes + packed_bytes >= self.call_bytes
            || self.no_room();
        Ok(if must_look && !inbox.woken {
            inbox.woken = true;
            Pushed::Wake
        } else {
            Pushed::Queued
        })
    }

    /// The lines left since the last call, and when the oldest of them arrived. The batcher is
    /// looking now: a wake sent before is spent.
    pub fn take_lines(&self) -> (Vec<Bytes>, Option<Instant>) {
        let mut inbox = self.inbox();
        inbox.woken = false;
        inbox.bytes = 0;
        (std::mem::take(&mut inbox.lines), inbox.since.take())
    }

    /// The batcher says whether it will come back to the inbox by itself, and what it holds
    /// packed for a call that could leave at once (lines, bytes: see `Inbox::packed`). True
    /// when it will not come back, yet lines arrived since it last looked (and no wake is on
    /// its way): it must look again now.
    pub fn settle(&self, looking: bool, packed: Option<(usize, usize)>) -> bool {
        let mut inbox = self.inbox();
        inbox.looking = looking;
        inbox.packed = packed;
        if !looking && !inbox.lines.is_empty() && !inbox.woken {
            inbox.woken = true;
            return true;
        }
        false
    }

    /// Accepts nothing more; returns the lines still in the inbox.
    pub fn close(&self) -> Vec<Bytes> {
        self.lines.close();
        self.bytes.close();
        let mut inbox = self.inbox();
        inbox.closed = true;
        inbox.bytes = 0;
        inbox.since = None;
        std::mem::take(&mut inbox.lines)
    }

    /// No room for another line of any size: waiting for a call to fill would only keep clients
    /// waiting.
    pub fn no_room(&self) -> bool {
        self.lines.available_permits() == 0 || self.bytes.available_permits() < self.max_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_RECORD: usize = FIREHOSE.line;
    const MAX_CALL_BYTES: usize = FIREHOSE.call_bytes;

    #[test]
    fn both_bounds_hold_and_room_comes_back() {
        let b = Buffer::new(2, 100);
        assert_eq!(b.try_take(60), Ok(()));
        assert_eq!(b.try_take(60), Err(NoRoom::Full), "bytes bound");
        assert_eq!(b.try_take(40), Ok(()));
        assert_eq!(b.try_take(0), Err(NoRoom::Full), "lines bound");
        b.give_back(1, 60);
        assert_eq!(b.try_take(50), Ok(()));
        assert_eq!(b.try_take(1), Err(NoRoom::Full));
    }

    #[test]
    fn no_room_when_a_line_of_any_size_would_not_fit() {
        let b = Buffer::new(3, 2 * MAX_RECORD);
        assert!(!b.no_room());
        b.try_take(MAX_RECORD).unwrap();
        assert!(!b.no_room());
        b.try_take(1).unwrap();
        assert!(b.no_room(), "less than a record's bytes left");
        b.give_back(1, 1);
        assert!(!b.no_room());
        b.try_take(0).unwrap();
        b.try_take(0).unwrap();
        assert!(b.no_room(), "no line left");
    }

    #[test]
    fn a_refused_take_keeps_nothing() {
        let b = Buffer::new(1, 10);
        assert_eq!(b.try_take(11), Err(NoRoom::Full));
        assert_eq!(b.try_take(10), Ok(()), "the line's room was not kept");
    }

    #[test]
    fn close_refuses_pushes_and_returns_the_inbox() {
        let b = Buffer::new(10, 100);
        assert_eq!(b.push(Bytes::from_static(b"a\n")), Ok(Pushed::Wake));
        assert_eq!(b.push(Bytes::from_static(b"b\n")), Ok(Pushed::Queued));
        assert_eq!(
            b.close(),
            vec![Bytes::from_static(b"a\n"), Bytes::from_static(b"b\n")]
        );
        assert_eq!(
            b.push(Bytes::from_static(b"c\n")),
            Err(Bytes::from_static(b"c\n"))
        );
        assert_eq!(b.try_take(1), Err(NoRoom::Closed));
        assert!(b.take_lines().0.is_empty());
    }

    #[test]
    fn the_batcher_is_woken_only_when_it_must_look() {
        let line = || Bytes::from_static(b"x\n");
        let b = Buffer::new(100, 10 * MAX_RECORD).wake_after(3);
        assert_eq!(
            b.push(line()),
            Ok(Pushed::Wake),
            "not looking: the first line wakes"
        );
        assert_eq!(b.push(line()), Ok(Pushed::Queued), "a wake is on its way");
        assert_eq!(b.take_lines().0.len(), 2);
        assert!(!b.settle(true, None), "nothing new since it looked");
        assert_eq!(b.push(line()), Ok(Pushed::Queued), "its timer will bring it");
        assert_eq!(b.push(line()), Ok(Pushed::Queued));
        assert_eq!(b.push(line()), Ok(Pushed::Wake), "a call's worth of lines");
        assert_eq!(b.push(line()), Ok(Pushed::Queued));
        assert_eq!(b.take_lines().0.len(), 4);
        assert_eq!(b.push(line()), Ok(Pushed::Queued), "still looking");
        assert!(
            b.settle(false, None),
            "no timer any more, and a line waits: look again"
        );
        assert!(!b.settle(false, None), "once");
        assert_eq!(b.take_lines().0.len(), 1);
        assert!(!b.settle(false, None));
        assert_eq!(b.push(line()), Ok(Pushed::Wake));
    }

    /// Lines the batcher packed already count toward a call's worth: a full call does not
    /// wait for the flush timer because part of it was packed before.
    #[test]
    fn packed_lines_and_the_inbox_make_a_call_together() {
        let line = || Bytes::from_static(b"x\n");
        let b = Buffer::new(100, 10 * MAX_RECORD).wake_after(10);
        assert!(!b.settle(true, Some((7, 14))));
        assert_eq!(b.push(line()), Ok(Pushed::Queued));
        assert_eq!(b.push(line()), Ok(Pushed::Queued));
        assert_eq!(
            b.push(line()),
            Ok(Pushed::Wake),
            "7 packed and 3 here make a call"
        );
        b.take_lines();
        // With the calls in flight at their limit, no call could leave: the inbox alone.
        assert!(!b.settle(true, None));
        for _ in 0..9 {
            assert_eq!(b.push(line()), Ok(Pushed::Queued));
        }
        assert_eq!(b.push(line()), Ok(Pushed::Wake));
        b.take_lines();
        assert!(!b.settle(true, Some((0, MAX_CALL_BYTES - 2))));
        assert_eq!(b.push(line()), Ok(Pushed::Wake), "a call's worth of bytes");
    }

    #[test]
    fn a_full_buffer_or_a_call_of_bytes_wakes_the_batcher() {
        let b = Buffer::new(2, 10 * MAX_CALL_BYTES);
        b.settle(true, None);
        b.try_take(1).unwrap();
        assert_eq!(b.push(Bytes::from_static(b"\n")), Ok(Pushed::Queued));
        b.try_take(1).unwrap();
        assert_eq!(
            b.push(Bytes::from_static(b"\n")),
            Ok(Pushed::Wake),
            "no room left"
        );
        b.take_lines();
        b.give_back(2, 2);
        b.settle(true, None);
        let big = Bytes::from(vec![b'a'; MAX_CALL_BYTES]);
        assert_eq!(b.push(big), Ok(Pushed::Wake), "4 MiB waiting");
    }

    #[actix_rt::test]
    async fn a_waiter_is_woken_by_room_or_by_the_close() {
        let b = std::sync::Arc::new(Buffer::new(1, 100));
        b.try_take(10).unwrap();
        let waiter = {
            let b = b.clone();
            actix_rt::spawn(async move { b.take(10).await })
        };
        tokio::task::yield_now().await;
        b.give_back(1, 10);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        let waiter = {
            let b = b.clone();
            actix_rt::spawn(async move { b.take(10).await })
        };
        tokio::task::yield_now().await;
        b.close();
        assert_eq!(waiter.await.unwrap(), Err(NoRoom::Closed));
    }
}
