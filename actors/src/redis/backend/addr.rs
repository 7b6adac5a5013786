//! A backend's address, whatever it is in front of: what sessions and the worker hold, so that
//! neither names the kind of backend. It holds the backend's RESP3 twin too: the same backend
//! with connections that said `HELLO 3`, for the clients that did, started when the first of
//! them needs it; draining, reporting and retiring the address covers both.

use super::single::Single;
use super::{Backend, BackendSettings, Drain, GiveUp, KnownDbs, Report, Retire};
use crate::cluster::backend::Cluster;
use crate::endpoint::TargetAddr;
use crate::redis::delivery::Delivery;
use crate::redis::messages::{Forward, Forwards};
use actix::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// A backend's address, whatever it is in front of: where sessions send their requests, and
/// what the worker drains and retires.
#[derive(Clone)]
pub struct BackendAddr {
    kind: Kind,
    /// The RESP3 twin; None in the twin itself.
    resp3: Option<Rc<Twin>>,
}

#[derive(Clone)]
enum Kind {
    Single(Addr<Backend<Single>>),
    Cluster(Addr<Backend<Cluster>>),
}

impl Kind {
    fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Backend<Single>: Handler<M>,
        Backend<Cluster>: Handler<M>,
    {
        match self {
            Kind::Single(a) => a.do_send(msg),
            Kind::Cluster(a) => a.do_send(msg),
        }
    }
}

/// A backend started on first use, on the thread that first uses it (the worker's).
struct Twin {
    started: RefCell<Option<Kind>>,
    start: Box<dyn Fn() -> Kind>,
}

impl Twin {
    fn new(start: impl Fn() -> Kind + 'static) -> Rc<Twin> {
        Rc::new(Twin {
            started: RefCell::new(None),
            start: Box::new(start),
        })
    }

    fn get(&self) -> Kind {
        self.started
            .borrow_mut()
            .get_or_insert_with(|| (self.start)())
            .clone()
    }
}

/// `settings` for the twin's connections.
fn resp3(settings: &BackendSettings) -> BackendSettings {
    BackendSettings {
        resp3: true,
        ..settings.clone()
    }
}

impl BackendAddr {
    /// Starts the backend of a single Redis on the current thread.
    pub fn single(settings: BackendSettings, known: Arc<KnownDbs>) -> Self {
        let kind = Kind::Single(Backend::single(settings.clone(), known.clone()).launch());
        let twin = Twin::new(move || Kind::Single(Backend::single(resp3(&settings), known.clone()).launch()));
        BackendAddr {
            kind,
            resp3: Some(twin),
        }
    }

    /// Starts the backend of a Redis Cluster, reached first through `seeds`, on the current
    /// thread.
    pub fn cluster(settings: BackendSettings, known: Arc<KnownDbs>, seeds: Vec<TargetAddr>) -> Self {
        let kind = Kind::Cluster(Backend::cluster(settings.clone(), known.clone(), seeds.clone()).launch());
        let twin = Twin::new(move || {
            Kind::Cluster(Backend::cluster(resp3(&settings), known.clone(), seeds.clone()).launch())
        });
        BackendAddr {
            kind,
            resp3: Some(twin),
        }
    }

    /// Where the requests of a client that said `HELLO 3` go: the RESP3 twin, started now if
    /// it was not yet.
    pub fn resp3(&self) -> BackendAddr {
        match &self.resp3 {
            None => self.clone(),
            Some(twin) => BackendAddr {
                kind: twin.get(),
                resp3: None,
            },
        }
    }

    /// The backends started: this one, and its twin once it was.
    fn started(&self) -> Vec<Kind> {
        let twin = self.resp3.as_ref().and_then(|t| t.started.borrow().clone());
        std::iter::once(self.kind.clone()).chain(twin).collect()
    }

    /// Hands over one request; Err gives it back (the backend is gone).
    pub fn try_send(&self, f: Forward) -> Result<(), Forward> {
        match &self.kind {
            Kind::Single(a) => a.try_send(f),
            Kind::Cluster(a) => a.try_send(f),
        }
        .map_err(|e| e.into_inner())
    }

    /// Hands over several, in order, as one message; Err gives them back.
    pub fn try_send_many(&self, fs: Vec<Forward>) -> Result<(), Vec<Forward>> {
        match &self.kind {
            Kind::Single(a) => a.try_send(Forwards(fs)),
            Kind::Cluster(a) => a.try_send(Forwards(fs)),
        }
        .map_err(|e| e.into_inner().0)
    }

    /// Stop: resolves once every write acknowledged early (`everything`: and every reply a
    /// client waits on) is confirmed, on this backend and its twin.
    pub async fn drain(&self, everything: bool) {
        let mut waits = vec![];
        for kind in self.started() {
            let (done, rx) = tokio::sync::oneshot::channel();
            kind.do_send(Drain { done, everything });
            waits.push(rx);
        }
        for rx in waits {
            let _ = rx.await;
        }
    }

    /// The drain's time ran out: what is left is counted lost; what became of every write.
    pub async fn give_up(&self) -> Delivery {
        self.total(|| GiveUp).await
    }

    /// What became of the writes acknowledged early, so far.
    pub async fn report(&self) -> Delivery {
        self.total(|| Report).await
    }

    pub fn retire(&self) {
        for kind in self.started() {
            kind.do_send(Retire);
        }
    }

    /// What became of the writes of this backend and its twin, as `msg` asks each of them.
    async fn total<M>(&self, msg: impl Fn() -> M) -> Delivery
    where
        M: Message<Result = Delivery> + Send + 'static,
        Backend<Single>: Handler<M>,
        Backend<Cluster>: Handler<M>,
    {
        let mut total = Delivery::default();
        for kind in self.started() {
            let r = match kind {
                Kind::Single(a) => a.send(msg()).await,
                Kind::Cluster(a) => a.send(msg()).await,
            };
            total += &r.unwrap_or_default();
        }
        total
    }
}
