//! A backend's address, whatever it is in front of: what sessions and the worker hold, so that
//! neither names the kind of backend.

use super::single::Single;
use super::{Backend, BackendSettings, Drain, GiveUp, KnownDbs, Report, Retire};
use crate::cluster::backend::Cluster;
use crate::endpoint::TargetAddr;
use crate::redis::delivery::Delivery;
use crate::redis::messages::{Forward, Forwards};
use actix::prelude::*;
use std::sync::Arc;

/// A backend's address, whatever it is in front of: where sessions send their requests, and
/// what the worker drains and retires.
#[derive(Clone)]
pub struct BackendAddr(Kind);

#[derive(Clone)]
enum Kind {
    Single(Addr<Backend<Single>>),
    Cluster(Addr<Backend<Cluster>>),
}

impl BackendAddr {
    /// Starts the backend of a single Redis on the current thread.
    pub fn single(settings: BackendSettings, known: Arc<KnownDbs>) -> Self {
        BackendAddr(Kind::Single(Backend::single(settings, known).launch()))
    }

    /// Starts the backend of a Redis Cluster, reached first through `seeds`, on the current
    /// thread.
    pub fn cluster(settings: BackendSettings, known: Arc<KnownDbs>, seeds: Vec<TargetAddr>) -> Self {
        BackendAddr(Kind::Cluster(Backend::cluster(settings, known, seeds).launch()))
    }

    /// Hands over one request; Err gives it back (the backend is gone).
    pub fn try_send(&self, f: Forward) -> Result<(), Forward> {
        match &self.0 {
            Kind::Single(a) => a.try_send(f),
            Kind::Cluster(a) => a.try_send(f),
        }
        .map_err(|e| e.into_inner())
    }

    /// Hands over several, in order, as one message; Err gives them back.
    pub fn try_send_many(&self, fs: Vec<Forward>) -> Result<(), Vec<Forward>> {
        match &self.0 {
            Kind::Single(a) => a.try_send(Forwards(fs)),
            Kind::Cluster(a) => a.try_send(Forwards(fs)),
        }
        .map_err(|e| e.into_inner().0)
    }

    pub fn drain(&self, msg: Drain) {
        match &self.0 {
            Kind::Single(a) => a.do_send(msg),
            Kind::Cluster(a) => a.do_send(msg),
        }
    }

    /// The drain's time ran out: what is left is counted lost; what became of every write.
    pub async fn give_up(&self) -> Delivery {
        let r = match &self.0 {
            Kind::Single(a) => a.send(GiveUp).await,
            Kind::Cluster(a) => a.send(GiveUp).await,
        };
        r.unwrap_or_default()
    }

    /// What became of the writes acknowledged early, so far.
    pub async fn report(&self) -> Delivery {
        let r = match &self.0 {
            Kind::Single(a) => a.send(Report).await,
            Kind::Cluster(a) => a.send(Report).await,
        };
        r.unwrap_or_default()
    }

    pub fn retire(&self) {
        match &self.0 {
            Kind::Single(a) => a.do_send(Retire),
            Kind::Cluster(a) => a.do_send(Retire),
        }
    }
}
