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
//!   map that says where their slot lives), in their order;
//! - `back` holds the newer commands that came meanwhile, in their order.
//!
//! Once nothing is displaced, `front` goes (counted, so `back` waits for it to come back),
//! then `back`, and the hold ends. Every pending reply marked displaced is counted exactly
//! once and uncounted when it leaves its connection's queue (reply, lost connection, retire);
//! `reconcile` checks that count against the connections now and then, so a mistake cannot
//! hold a slot for ever, and waited commands held longer than the relayer's timeout get an
//! error.

use super::*;

/// The hold key of a job without a slot (a keyless write acknowledged early).
pub(super) const ANY_SLOT: u16 = u16::MAX;

pub(super) fn hold_key(slot: Option<u16>) -> u16 {
    slot.unwrap_or(ANY_SLOT)
}

/// First delay before `front` is sent again, and the longest (in ticks of 100 ms).
const RETRY_FIRST: u64 = 1;
const RETRY_MAX: u64 = 10;
/// A hold whose count has not moved for this long is checked against the connections.
const RECONCILE_TICKS: u64 = 20;

pub(super) struct Hold {
    pub displaced: usize,
    pub front: VecDeque<Job>,
    pub back: VecDeque<Job>,
    /// When `front` may be sent again.
    retry_at: Option<u64>,
    backoff: u64,
    /// The last tick `displaced` went down (or the hold began).
    moved: u64,
}

impl Hold {
    fn new(tick: u64) -> Self {
        Hold {
            displaced: 0,
            front: VecDeque::new(),
            back: VecDeque::new(),
            retry_at: None,
            backoff: RETRY_FIRST,
            moved: tick,
        }
    }
}

impl Target {
    pub(super) fn hold_mut(&mut self, key: u16) -> &mut Hold {
        let tick = self.tick;
        self.cl().holds.entry(key).or_insert_with(|| Hold::new(tick))
    }

    /// A new job: behind its slot's hold if there is one, else sent now. Waited keyless
    /// commands (INFO...) have no order to keep with keyed ones and go at once.
    pub(super) fn dispatch(&mut self, job: Job, ctx: &mut Context<Self>) {
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
    pub(super) fn park(&mut self, job: Job) {
        let tick = self.tick;
        let h = self.hold_mut(hold_key(job.r.slot));
        h.front.push_back(job);
        if h.retry_at.is_none() {
            h.retry_at = Some(tick + h.backoff);
            h.backoff = (h.backoff * 2).min(RETRY_MAX);
        }
    }

    /// A redirected job: after the older ones of its slot still waiting to go again, else now,
    /// counted (newer commands of its slot wait for its reply).
    pub(super) fn resend(&mut self, job: Job, ctx: &mut Context<Self>) {
        let h = self.hold_mut(hold_key(job.r.slot));
        if h.front.is_empty() {
            self.send_now(job, true, ctx);
        } else {
            h.front.push_back(job);
        }
    }

    /// A displaced reply left its connection.
    pub(super) fn uncount(&mut self, key: u16) {
        let tick = self.tick;
        if let Some(h) = self.cl().holds.get_mut(&key) {
            h.displaced = h.displaced.saturating_sub(1);
            h.moved = tick;
        }
    }

    /// The session of `session` has a job waiting in `front` of the hold of `key`.
    pub(super) fn older_waits(&mut self, key: u16, session: u64) -> bool {
        let holds = &self.cl().holds;
        !holds.is_empty()
            && holds
                .get(&key)
                .is_some_and(|h| h.front.iter().any(|j| j.r.session == session))
    }

    /// Marks the commands of `slot` in flight on every connection: newer ones wait for them
    /// (after a retryable error, any of them may run before the one sent again).
    pub(super) fn mark_all(&mut self, slot: u16) {
        let mut n = 0;
        for c in &mut self.conns {
            for p in c.pending.iter_mut() {
                if !p.displaced && p.resend.as_ref().is_some_and(|r| r.slot == Some(slot)) {
                    p.displaced = true;
                    n += 1;
                }
            }
        }
        if n > 0 {
            self.hold_mut(slot).displaced += n;
        }
    }

    /// Marks the commands in flight on a node that `map` says no longer serves their slot
    /// (only `slot`'s, when given).
    pub(super) fn mark_off_owner(&mut self, map: &SlotMap, only: Option<u16>) {
        let cl = self.cluster.as_mut().expect("cluster target");
        let mut counts: HashMap<u16, usize> = HashMap::new();
        for (idx, c) in self.conns.iter_mut().enumerate() {
            let node = &cl.conn_node[idx];
            for p in c.pending.iter_mut() {
                let Some(s) = p.resend.as_ref().and_then(|r| r.slot) else {
                    continue;
                };
                if p.displaced || only.is_some_and(|o| o != s) || map.owner(s) == Some(node) {
                    continue;
                }
                p.displaced = true;
                *counts.entry(s).or_default() += 1;
            }
        }
        for (s, n) in counts {
            self.hold_mut(s).displaced += n;
        }
    }

    /// Lets the hold of `key` go on once nothing it waits for is in flight: first the older
    /// jobs (when their delay is over), counted; once they are back, the newer ones, and the
    /// hold ends.
    pub(super) fn maybe_release(&mut self, key: u16, ctx: &mut Context<Self>) {
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
            let front = std::mem::take(&mut h.front);
            for job in front {
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
    pub(super) fn retry_holds_now(&mut self, ctx: &mut Context<Self>) {
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
    pub(super) fn hold_tick(&mut self, ctx: &mut Context<Self>) {
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
        if let Some(limit) = self.timeout_ticks {
            self.expire_held(limit, ctx);
        }
        let stale = self
            .cl()
            .holds
            .values()
            .any(|h| h.displaced > 0 && tick >= h.moved + RECONCILE_TICKS);
        if stale {
            self.reconcile(ctx);
        }
    }

    /// Waited jobs held longer than the relayer's timeout get an error; writes acknowledged
    /// early stay (the budget bounds them, the drain counts them).
    fn expire_held(&mut self, limit: u64, ctx: &mut Context<Self>) {
        let tick = self.tick;
        let late = |j: &Job| !matches!(j.dest, Dest::Background { .. }) && tick >= j.r.since + limit;
        let mut expired = Vec::new();
        for (&k, h) in self.cl().holds.iter_mut() {
            for q in [&mut h.front, &mut h.back] {
                if q.iter().any(late) {
                    let (gone, kept): (VecDeque<Job>, VecDeque<Job>) = q.drain(..).partition(late);
                    *q = kept;
                    expired.extend(gone.into_iter().map(|j| (k, j)));
                }
            }
        }
        if expired.is_empty() {
            return;
        }
        let t = secs(self.settings.timeout.unwrap_or_default());
        let mut keys = Vec::new();
        for (k, job) in expired {
            let text = match job.r.slot {
                Some(s) => format!("ERR relayer: no reply within {t}: slot {s} is moving or failing over"),
                None => format!("ERR relayer: no reply within {t}: the cluster is failing over"),
            };
            self.answer(job.dest, write::error(&text));
            keys.push(k);
        }
        for k in keys {
            self.maybe_release(k, ctx);
        }
    }

    /// Sets each hold's count to the displaced replies the connections really owe.
    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let tick = self.tick;
        let mut counts: HashMap<u16, usize> = HashMap::new();
        for c in &self.conns {
            for p in c.pending.iter().filter(|p| p.displaced) {
                if let Some(r) = &p.resend {
                    *counts.entry(hold_key(r.slot)).or_default() += 1;
                }
            }
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
