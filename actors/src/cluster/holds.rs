//! Holds: a slot's commands kept back so that none overtakes an older one of the same client.
//!
//! A client's commands on a slot run in order because they share one connection. That order
//! is at risk whenever one of them must be sent again: redirected by MOVED or ASK, refused for
//! now (TRYAGAIN, CLUSTERDOWN, LOADING), or cut off with its connection (a write acknowledged
//! early). Then the slot gets a hold:
//!
//! - `displaced` counts the slot's commands in flight that must come back before newer ones
//!   go: those on a node that no longer serves the slot (they will come back MOVED), those
//!   sent again, and, after a retryable error, every other one of the slot in flight;
//! - `front` holds older commands that wait to be sent again (after a short delay, or for a
//!   map that says where their slot lives), in the order they came to the relayer (each job
//!   is numbered as it comes), whatever the order their replies came back in;
//! - `back` holds the newer commands that came meanwhile, in their order.
//!
//! Once nothing is displaced, `front` goes (counted, so `back` waits for it to come back),
//! then `back`, and the hold ends. Every pending reply marked displaced is counted exactly
//! once and uncounted when it leaves its connection's queue (reply, lost connection, retire);
//! `reconcile` checks that count against the connections now and then, so a mistake cannot
//! hold a slot for ever, and waited commands held longer than the relayer's timeout get an
//! error.
//!
//! Nothing here walks the connections per reply: commands of a slot in flight and not yet
//! displaced are only counted (`Flight`); marking them all displaced bumps the slot's mark,
//! and a reply sent under an older mark is a displaced one.

use super::backend::Cluster;
use super::hold::{hold_key, Hold, Job};
use super::topology::SlotMap;
use crate::cluster::slot::SLOTS;
use crate::error::RelayerError;
use crate::redis::backend::*;
use crate::redis::delivery;
use actix::prelude::*;
use slog::warn;
use std::collections::{HashMap, VecDeque};

/// The longest delay before `front` is sent again (in ticks of 100 ms; the first is
/// `hold::RETRY_FIRST`).
const RETRY_MAX: u64 = 10;
/// A hold whose count has not moved for this long is checked against the connections.
const RECONCILE_TICKS: u64 = 20;

impl Backend<Cluster> {
    pub(crate) fn hold_mut(&mut self, key: u16) -> &mut Hold {
        let tick = self.tick;
        self.cl().holds.entry(key).or_insert_with(|| Hold::new(tick))
    }

    /// A new job: behind its slot's hold if there is one, else sent now. Waited keyless
    /// commands (INFO...) have no order to keep with keyed ones and go at once.
    pub(crate) fn dispatch(&mut self, job: Job, ctx: &mut Context<Self>) {
        let keyless_waited = job.r.slot.is_none() && !matches!(job.dest, Dest::Background { .. });
        let holds = &mut self.cl().holds;
        if !keyless_waited && !holds.is_empty() {
            if let Some(h) = holds.get_mut(&hold_key(job.r.slot)) {
                h.back.push_back(job);
                return;
            }
        }
        self.send_now(job, false, ctx);
    }

    /// An older job to send again later, in order with the others waiting to.
    pub(crate) fn park(&mut self, job: Job) {
        let tick = self.tick;
        let h = self.hold_mut(hold_key(job.r.slot));
        h.wait_in_front(job);
        if h.retry_at.is_none() {
            h.retry_at = Some(tick + h.backoff);
            h.backoff = (h.backoff * 2).min(RETRY_MAX);
        }
    }

    /// A redirected job: after the older ones of its slot still waiting to go again, else now,
    /// counted (newer commands of its slot wait for its reply).
    pub(crate) fn resend(&mut self, job: Job, ctx: &mut Context<Self>) {
        let h = self.hold_mut(hold_key(job.r.slot));
        if h.front.first_key_value().is_some_and(|(&o, _)| o < job.r.order) {
            h.wait_in_front(job);
        } else {
            self.send_now(job, true, ctx);
        }
    }

    /// A displaced reply left its connection.
    pub(crate) fn uncount(&mut self, key: u16) {
        let tick = self.tick;
        if let Some(h) = self.cl().holds.get_mut(&key) {
            h.displaced = h.displaced.saturating_sub(1);
            h.moved = tick;
        }
    }

    /// Whether a pending reply is counted as displaced (`displaced`: counted when sent).
    pub(crate) fn is_displaced(&self, displaced: bool, r: &Resend) -> bool {
        let cl = &self.shape;
        displaced || r.slot.is_some_and(|s| cl.flight[usize::from(s)].mark != r.mark)
    }

    /// A command sent now: its slot counts it in flight, unless it is counted displaced.
    pub(crate) fn sent(&mut self, r: &mut Resend, counted: bool) {
        if let Some(s) = r.slot {
            let f = &mut self.cl().flight[usize::from(s)];
            r.mark = f.mark;
            if !counted {
                f.unmarked += 1;
            }
        }
    }

    /// A pending reply left its connection (reply, lost connection): uncounted.
    pub(crate) fn settle(&mut self, displaced: bool, r: &Resend) {
        if self.is_displaced(displaced, r) {
            self.uncount(hold_key(r.slot));
        } else if let Some(s) = r.slot {
            let f = &mut self.cl().flight[usize::from(s)];
            f.unmarked = f.unmarked.saturating_sub(1);
        }
    }

    /// A job of `session` numbered lower than `order` waits in `front` of the hold of `key`.
    pub(crate) fn older_waits(&mut self, key: u16, session: u64, order: u64) -> bool {
        let holds = &self.cl().holds;
        !holds.is_empty()
            && holds
                .get(&key)
                .and_then(|h| h.front_first.get(&session))
                .is_some_and(|&first| first < order)
    }

    /// Marks the commands of `slot` in flight on every connection: newer ones wait for them
    /// (after a retryable error, any of them may run before the one sent again; after a
    /// MOVED or a new map, those on the old owner come back MOVED). Those already on the new
    /// owner are marked too: they come back soon, and counting them costs nothing.
    pub(crate) fn mark_all(&mut self, slot: u16) {
        let f = &mut self.cl().flight[usize::from(slot)];
        let n = std::mem::take(&mut f.unmarked);
        if n > 0 {
            f.mark = f.mark.wrapping_add(1);
            self.hold_mut(slot).displaced += n as usize;
        }
    }

    /// Marks the commands in flight of every slot whose master `new` changes from `old`.
    pub(crate) fn mark_moved(&mut self, old: Option<&SlotMap>, new: &SlotMap) {
        let Some(old) = old else { return };
        for s in 0..SLOTS as u16 {
            if old.owner(s) != new.owner(s) {
                self.mark_all(s);
            }
        }
    }

    /// Lets the hold of `key` go on once nothing it waits for is in flight: first the older
    /// jobs (when their delay is over), counted; once they are back, the newer ones, and the
    /// hold ends.
    pub(crate) fn maybe_release(&mut self, key: u16, ctx: &mut Context<Self>) {
        let tick = self.tick;
        let holds = &mut self.cl().holds;
        if holds.is_empty() {
            return;
        }
        let Some(h) = holds.get_mut(&key) else { return };
        if h.displaced > 0 {
            return;
        }
        if !h.front.is_empty() {
            if h.retry_at.is_some_and(|t| t > tick) {
                return;
            }
            h.retry_at = None;
            h.front_first.clear();
            let front = std::mem::take(&mut h.front);
            for job in front.into_values() {
                self.send_now(job, true, ctx);
            }
            let Some(h) = self.cl().holds.get(&key) else {
                return;
            };
            if h.displaced > 0 || !h.front.is_empty() {
                return;
            }
        }
        let Some(h) = self.cl().holds.remove(&key) else {
            return;
        };
        // A job parked again on the way makes a new hold: the ones after it queue behind.
        for job in h.back {
            self.dispatch(job, ctx);
        }
    }

    /// Every hold's older jobs may go now (a new map came).
    pub(crate) fn retry_holds_now(&mut self, ctx: &mut Context<Self>) {
        let tick = self.tick;
        let keys: Vec<u16> = self.cl().holds.keys().copied().collect();
        for k in keys {
            if let Some(h) = self.cl().holds.get_mut(&k) {
                if h.retry_at.is_some() {
                    h.retry_at = Some(tick);
                }
            }
            self.maybe_release(k, ctx);
        }
    }

    /// At each tick: delays that are over, waited jobs held too long, and now and then the
    /// counts checked.
    pub(crate) fn hold_tick(&mut self, ctx: &mut Context<Self>) {
        let tick = self.tick;
        if self.cl().holds.is_empty() {
            return;
        }
        let due: Vec<u16> = self
            .cl()
            .holds
            .iter()
            .filter(|(_, h)| h.displaced == 0 && h.retry_at.is_some_and(|t| t <= tick))
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            self.maybe_release(k, ctx);
        }
        self.expire_held(self.timeout_ticks, ctx);
        let stale = self
            .cl()
            .holds
            .values()
            .any(|h| h.displaced > 0 && tick >= h.moved + RECONCILE_TICKS);
        if stale {
            self.reconcile(ctx);
        }
    }

    /// Waited jobs held longer than the relayer's timeout (`limit`) get an error; writes
    /// acknowledged early held longer than `retryTimeout` are given up, and counted.
    pub(crate) fn expire_held(&mut self, limit: Option<u64>, ctx: &mut Context<Self>) {
        let tick = self.tick;
        let retry = self.retry_ticks;
        let late = |j: &Job| match j.dest {
            Dest::Background { since, .. } => !j.r.applied && tick >= since + retry,
            _ => limit.is_some_and(|limit| tick >= j.r.since + limit),
        };
        let mut expired = Vec::new();
        for (&k, h) in self.cl().holds.iter_mut() {
            if h.front.values().any(late) {
                h.front_first.clear();
                for (order, job) in std::mem::take(&mut h.front) {
                    if late(&job) {
                        expired.push((k, job));
                    } else {
                        h.wait_in_front_at(order, job);
                    }
                }
            }
            if h.back.iter().any(late) {
                let (gone, kept): (VecDeque<Job>, VecDeque<Job>) = h.back.drain(..).partition(late);
                h.back = kept;
                expired.extend(gone.into_iter().map(|j| (k, j)));
            }
        }
        let t = self.settings.timeout.unwrap_or_default();
        let mut keys = Vec::new();
        for (k, job) in expired {
            if let Dest::Background { frame, .. } = &job.dest {
                let why = job.r.last.as_ref().map_or("unavailable".into(), |l| {
                    String::from_utf8_lossy(delivery::code(l)).into_owned()
                });
                let backend = self.settings.addr.clone();
                self.expired(&backend, frame, &why);
                self.job_done(job.r.session, ctx);
                keys.push(k);
                continue;
            }
            let err = RelayerError::SlotMoving {
                after: t,
                slot: job.r.slot,
            };
            let session = job.r.session;
            self.answer(job.dest, err.resp());
            self.job_done(session, ctx);
            keys.push(k);
        }
        for k in keys {
            self.maybe_release(k, ctx);
        }
    }

    /// Sets each hold's count to the displaced replies the connections really owe (and each
    /// slot's count of the others).
    pub(crate) fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let tick = self.tick;
        let mut counts: HashMap<u16, usize> = HashMap::new();
        let mut unmarked = vec![0u32; SLOTS];
        for c in &self.conns {
            for p in &c.up.pending {
                let Some(r) = &p.resend else { continue };
                if self.is_displaced(p.displaced, r) {
                    *counts.entry(hold_key(r.slot)).or_default() += 1;
                } else if let Some(s) = r.slot {
                    unmarked[usize::from(s)] += 1;
                }
            }
        }
        for (f, n) in self.cl().flight.iter_mut().zip(unmarked) {
            f.unmarked = n;
        }
        let keys: Vec<u16> = self.cl().holds.keys().copied().collect();
        for k in keys {
            let owed = counts.get(&k).copied().unwrap_or(0);
            if let Some(h) = self.cl().holds.get_mut(&k) {
                let counted = std::mem::replace(&mut h.displaced, owed);
                h.moved = tick;
                if counted != owed {
                    warn!(self.settings.log, "cluster hold count corrected"; "slot" => k, "counted" => counted, "owed" => owed);
                }
            }
            self.maybe_release(k, ctx);
        }
    }
}
