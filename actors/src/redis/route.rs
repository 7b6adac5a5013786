//! What a listener's clients talk to: the target and the session settings. A reload that
//! changes the entry replaces them here, and each session picks the new ones up at its next
//! command; its connection stays.

use super::session::{CloseClient, Session, SessionSettings};
use super::target::Target;
use actix::{Addr, WeakAddr};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

pub struct Route {
    current: RefCell<Current>,
    /// Bumped by every replacement; sessions compare it with the one they hold.
    generation: Cell<u64>,
    sessions: RefCell<HashMap<u64, WeakAddr<Session>>>,
}

#[derive(Clone)]
pub struct Current {
    pub target: Addr<Target>,
    pub settings: Arc<SessionSettings>,
    pub max_clients: usize,
}

impl Route {
    pub fn new(current: Current) -> Rc<Self> {
        Rc::new(Route {
            current: RefCell::new(current),
            generation: Cell::new(0),
            sessions: RefCell::new(HashMap::new()),
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    pub fn current(&self) -> Current {
        self.current.borrow().clone()
    }

    /// Installs a new target and settings; returns the target they replace.
    pub fn replace(&self, next: Current) -> Addr<Target> {
        let old = std::mem::replace(&mut *self.current.borrow_mut(), next);
        self.generation.set(self.generation.get() + 1);
        old.target
    }

    pub fn register(&self, id: u64, session: WeakAddr<Session>) {
        self.sessions.borrow_mut().insert(id, session);
    }

    pub fn unregister(&self, id: u64) {
        self.sessions.borrow_mut().remove(&id);
    }

    pub fn clients(&self) -> usize {
        self.sessions.borrow().len()
    }

    /// Asks every client session to finish its replies and close.
    pub fn close_all(&self) {
        for s in self.sessions.borrow().values() {
            if let Some(addr) = s.upgrade() {
                addr.do_send(CloseClient);
            }
        }
    }
}
