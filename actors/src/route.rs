//! What a listener's clients talk to: the backend actor and the session settings of the entry.
//! A reload that changes the entry replaces them here, and each session picks the new ones up
//! at its next command; its connection stays. Generic over what the backend is (a Redis
//! target, a Firehose batcher) and over the session actor.

use crate::io::{ReadHalf, WriteHalf};
use actix::{Actor, Context, Handler, Message, WeakAddr};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

pub struct Route<C, S: Actor> {
    current: RefCell<C>,
    /// Bumped by every replacement; sessions compare it with the one they hold.
    generation: Cell<u64>,
    sessions: RefCell<HashMap<u64, WeakAddr<S>>>,
}

/// The listener was removed: finish the replies owed, then close.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseClient;

/// The relayer is stopping: what the client sent before gets its replies, what it sends from
/// now on gets `RelayerError::ShuttingDown` (not sent anywhere), until the drain closes it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stopping;

impl<C: Clone, S: Actor> Route<C, S> {
    pub fn new(current: C) -> Rc<Self> {
        Rc::new(Route {
            current: RefCell::new(current),
            generation: Cell::new(0),
            sessions: RefCell::new(HashMap::new()),
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    pub fn current(&self) -> C {
        self.current.borrow().clone()
    }

    /// Installs a new backend and settings; returns what they replace.
    pub fn replace(&self, next: C) -> C {
        let old = std::mem::replace(&mut *self.current.borrow_mut(), next);
        self.generation.set(self.generation.get() + 1);
        old
    }

    pub fn register(&self, id: u64, session: WeakAddr<S>) {
        self.sessions.borrow_mut().insert(id, session);
    }

    pub fn unregister(&self, id: u64) {
        self.sessions.borrow_mut().remove(&id);
    }

    pub fn clients(&self) -> usize {
        self.sessions.borrow().len()
    }
}

impl<C, S> Route<C, S>
where
    S: Actor<Context = Context<S>> + Handler<CloseClient> + Handler<Stopping>,
{
    /// Asks every client session to finish its replies and close.
    pub fn close_all(&self) {
        for s in self.sessions.borrow().values() {
            if let Some(addr) = s.upgrade() {
                addr.do_send(CloseClient);
            }
        }
    }

    /// Tells every client session that the relayer is stopping (see `Stopping`).
    pub fn stopping_all(&self) {
        for s in self.sessions.borrow().values() {
            if let Some(addr) = s.upgrade() {
                addr.do_send(Stopping);
            }
        }
    }
}

/// What a listener needs of its entry, whatever the protocol.
pub trait Frontend {
    fn clients(&self) -> usize;
    fn max_clients(&self) -> usize;
    /// Starts the session actor of an accepted client.
    fn start_session(self: Rc<Self>, id: u64, read: ReadHalf, write: WriteHalf);
    /// Asks every client session to finish its replies and close.
    fn close_all(&self);
    /// Tells every client session that the relayer is stopping.
    fn stopping(&self);
}
