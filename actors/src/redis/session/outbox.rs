//! A session's outbox: one slot per request, filled in any order and written to the client in
//! request order (a local reply never overtakes a forwarded one), and the commands for the
//! backend gathered from one read of the client and sent as one message, with the smart-mode
//! acknowledgments that wait for the backend to take them.

use crate::redis::messages::Forward;
use bytes::Bytes;
use std::collections::VecDeque;

/// The replies owed to the client, in request order.
#[derive(Default)]
pub struct Slots {
    slots: VecDeque<Option<Bytes>>,
    /// The request number of `slots[0]`.
    first: u64,
    /// Requests whose replies are not written (CLIENT REPLY OFF or SKIP), in order.
    silenced: VecDeque<u64>,
}

impl Slots {
    /// The number the next request gets.
    pub fn next_seq(&self) -> u64 {
        self.first + self.slots.len() as u64
    }

    /// The request whose reply is the next to write.
    pub fn next_to_write(&self) -> u64 {
        self.first
    }

    /// Requests whose replies are not written to the client yet.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// A request answered at once (by the relayer).
    pub fn push_ready(&mut self, data: Bytes) {
        self.slots.push_back(Some(data));
    }

    /// A request whose reply comes later; its number.
    pub fn push_owed(&mut self) -> u64 {
        self.slots.push_back(None);
        self.next_seq() - 1
    }

    /// Whether request `seq` is still owed a slot (its reply not written yet).
    pub fn holds(&self, seq: u64) -> bool {
        seq >= self.first && seq < self.next_seq()
    }

    /// The reply to request `seq`; ignored when that request is gone.
    pub fn fill(&mut self, seq: u64, data: Bytes) {
        if let Some(slot) = seq
            .checked_sub(self.first)
            .and_then(|i| self.slots.get_mut(i as usize))
        {
            *slot = Some(data);
        }
    }

    /// The reply to request `seq` (the next one, or one already numbered) is dropped when it
    /// comes, not written.
    pub fn silence(&mut self, seq: u64) {
        if self.silenced.back().is_none_or(|&last| last < seq) {
            self.silenced.push_back(seq);
        }
    }

    /// The next reply in request order to write, if it is there (silenced ones are dropped
    /// on the way).
    pub fn pop_ready(&mut self) -> Option<Bytes> {
        loop {
            let data = self.slots.front_mut()?.take()?;
            self.slots.pop_front();
            let seq = self.first;
            self.first += 1;
            if self.silenced.front() == Some(&seq) {
                self.silenced.pop_front();
                continue;
            }
            return Some(data);
        }
    }
}

/// A smart-mode acknowledgment waiting for the backend to take its write: the request number,
/// the early reply, and the bytes taken from the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub seq: u64,
    pub reply: &'static [u8],
    pub len: u64,
}

/// Where a batch goes: the backend's mailbox (a test's vector).
pub trait Sink {
    /// Hands over one command; Err gives it back (the backend is gone).
    fn take_one(&self, f: Forward) -> Result<(), Forward>;
    /// Hands over several, in order, as one message; Err gives them back.
    fn take_many(&self, fs: Vec<Forward>) -> Result<(), Vec<Forward>>;
}

impl Sink for crate::redis::backend::BackendAddr {
    fn take_one(&self, f: Forward) -> Result<(), Forward> {
        self.try_send(f)
    }

    fn take_many(&self, fs: Vec<Forward>) -> Result<(), Vec<Forward>> {
        self.try_send_many(fs)
    }
}

/// What a send of the batch did.
pub enum Sent {
    /// Nothing was waiting.
    Nothing,
    /// The backend took everything: these acknowledgments may be given.
    Taken(Vec<Ack>),
    /// The backend is gone (a reload retired it): these commands and acknowledgments were not
    /// taken, and their requests must get an error.
    Refused(Vec<Forward>, Vec<Ack>),
}

/// The commands gathered from one read of the client, sent as one message (an actix envelope
/// and channel push per command saved), and the acknowledgments of the smart writes among them,
/// given once the backend took them.
pub struct Batch {
    outgoing: Vec<Forward>,
    acks: Vec<Ack>,
    /// The size of the last batch sent, to size the next one at once.
    hint: usize,
    /// While the only request of a read is handled and nothing was gathered before it: its
    /// command is sent at once, without the vector.
    direct: bool,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            outgoing: Vec::new(),
            acks: Vec::new(),
            hint: 1,
            direct: false,
        }
    }
}

impl Batch {
    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.outgoing.is_empty() && self.acks.is_empty()
    }

    /// The request about to be handled is the only one of its read (`on`), or that is over.
    pub fn set_direct(&mut self, on: bool) {
        self.direct = on && self.outgoing.is_empty();
    }

    /// Several messages for one request (a smart write split by slot) go together: all or none
    /// are taken, so the budget is given back right.
    pub fn several(&mut self, parts: usize) {
        self.direct &= parts == 1;
    }

    /// Adds `f`: sent at once when there is nothing to gather it with (see `direct`); refused
    /// then, it is gathered, and the next `send` reports it refused.
    pub fn add(&mut self, f: Forward, to: &impl Sink) {
        let f = match self.direct && self.outgoing.is_empty() {
            true => match to.take_one(f) {
                Ok(()) => return,
                Err(f) => f,
            },
            false => f,
        };
        if self.outgoing.capacity() == 0 {
            self.outgoing.reserve(self.hint);
        }
        self.outgoing.push(f);
    }

    /// A smart write's acknowledgment, given once the backend has taken what was added before.
    pub fn ack(&mut self, ack: Ack) {
        self.acks.push(ack);
    }

    /// Sends what was gathered, in one message.
    pub fn send(&mut self, to: &impl Sink) -> Sent {
        let refused = match self.outgoing.len() {
            // Nothing left to send: what `acks` holds went at once (`direct`).
            0 => None,
            // Alone: the plain message, and the vector's room is kept for the next batch.
            1 => {
                let f = self.outgoing.pop().expect("one");
                to.take_one(f).err().map(|f| vec![f])
            }
            n => {
                self.hint = n.min(64);
                to.take_many(std::mem::take(&mut self.outgoing)).err()
            }
        };
        if refused.is_none() && self.acks.is_empty() {
            return Sent::Nothing;
        }
        let acks = std::mem::take(&mut self.acks);
        match refused {
            None => Sent::Taken(acks),
            Some(fs) => Sent::Refused(fs, acks),
        }
    }

    /// Gives back the vector of a `Sent`, emptied, so that its room serves the next batch.
    pub fn recycle(&mut self, mut acks: Vec<Ack>) {
        acks.clear();
        if self.acks.capacity() == 0 {
            self.acks = acks;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::messages::{Replies, Request};
    use actix::prelude::*;
    use std::cell::RefCell;
    use std::sync::Arc;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn replies_leave_in_request_order_whatever_order_they_come_in() {
        let mut s = Slots::default();
        let a = s.push_owed();
        s.push_ready(b("local"));
        let c = s.push_owed();
        assert_eq!((a, c, s.next_seq()), (0, 2, 3));
        assert_eq!(s.pop_ready(), None, "the first is owed");
        s.fill(c, b("third"));
        assert_eq!(s.pop_ready(), None);
        s.fill(a, b("first"));
        let out: Vec<Bytes> = std::iter::from_fn(|| s.pop_ready()).collect();
        assert_eq!(out, vec![b("first"), b("local"), b("third")]);
        assert!(s.is_empty());
        // A reply for a request already written (or never made) changes nothing.
        assert!(!s.holds(0) && !s.holds(3));
        s.fill(0, b("late"));
        s.fill(7, b("unknown"));
        assert_eq!(s.pop_ready(), None);
        assert_eq!(s.push_owed(), 3);
        assert!(s.holds(3));
    }

    #[test]
    fn silenced_replies_are_dropped_in_their_turn() {
        let mut s = Slots::default();
        let a = s.push_owed();
        s.silence(s.next_seq());
        s.push_ready(b("silenced"));
        s.silence(s.next_seq());
        s.silence(s.next_seq());
        let c = s.push_owed();
        s.push_ready(b("written"));
        s.fill(c, b("also silenced"));
        assert_eq!(s.pop_ready(), None, "the first is owed");
        s.fill(a, b("first"));
        let out: Vec<Bytes> = std::iter::from_fn(|| s.pop_ready()).collect();
        assert_eq!(out, vec![b("first"), b("written")]);
        assert!(s.is_empty());
    }

    /// A backend that takes what it is given (or refuses it), and says how it came.
    #[derive(Default)]
    struct Mailbox {
        refuse: bool,
        messages: RefCell<Vec<Vec<u64>>>,
    }

    impl Sink for Mailbox {
        fn take_one(&self, f: Forward) -> Result<(), Forward> {
            if self.refuse {
                return Err(f);
            }
            self.messages.borrow_mut().push(vec![f.seq]);
            Ok(())
        }
        fn take_many(&self, fs: Vec<Forward>) -> Result<(), Vec<Forward>> {
            if self.refuse {
                return Err(fs);
            }
            self.messages
                .borrow_mut()
                .push(fs.iter().map(|f| f.seq).collect());
            Ok(())
        }
    }

    struct Nowhere;
    impl Actor for Nowhere {
        type Context = Context<Self>;
    }
    impl Handler<Replies> for Nowhere {
        type Result = ();
        fn handle(&mut self, _: Replies, _: &mut Context<Self>) {}
    }

    #[test]
    fn a_read_goes_as_one_message_and_a_lone_request_at_once() {
        actix::System::new().block_on(async {
            let to = Arc::new(Nowhere.start().recipient());
            let fwd = |seq| Forward {
                reply_to: to.clone(),
                session: 1,
                seq,
                db: 0,
                request: Request::One(b("x")),
                slot: None,
            };
            let mailbox = Mailbox::default();
            let mut batch = Batch::default();
            // Three requests of one read, then its end: one message.
            for seq in 0..3 {
                batch.add(fwd(seq), &mailbox);
            }
            assert!(mailbox.messages.borrow().is_empty());
            assert!(matches!(batch.send(&mailbox), Sent::Nothing));
            // The lone request of a read: at once, nothing gathered.
            batch.set_direct(true);
            batch.add(fwd(3), &mailbox);
            batch.set_direct(false);
            assert!(batch.is_empty());
            // A smart write's acknowledgment waits for the send.
            batch.add(fwd(4), &mailbox);
            batch.ack(Ack {
                seq: 4,
                reply: b"+OK\r\n",
                len: 1,
            });
            let Sent::Taken(acks) = batch.send(&mailbox) else {
                panic!("taken")
            };
            assert_eq!(acks.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![4]);
            batch.recycle(acks);
            assert_eq!(*mailbox.messages.borrow(), vec![vec![0, 1, 2], vec![3], vec![4]]);
            // A gone backend: what was gathered comes back, with its acknowledgments.
            let gone = Mailbox {
                refuse: true,
                ..Mailbox::default()
            };
            batch.add(fwd(5), &gone);
            batch.add(fwd(6), &gone);
            batch.ack(Ack {
                seq: 6,
                reply: b":1\r\n",
                len: 2,
            });
            let Sent::Refused(fs, acks) = batch.send(&gone) else {
                panic!("refused")
            };
            assert_eq!(fs.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![5, 6]);
            assert_eq!(acks.len(), 1);
        });
    }
}
