//! The target on a Redis Cluster: a connection per master (opened when first used), the slot
//! map (from CLUSTER SLOTS: at start, after MOVED, after a lost connection and every few
//! seconds), and commands sent where their slot lives.
//!
//! Every command becomes a `Job`: what to send, where its reply goes, and what is needed to send
//! it again. A client's commands on one slot go to one connection (the slot's master,
//! `maxConnections` per master, picked by client), so they run in order; `holds` keeps that
//! order when a command must be sent again (`replies`: MOVED, ASK, TRYAGAIN, CLUSTERDOWN,
//! LOADING, a lost connection).

use crate::cluster::gather::{merge, scan_cursor, scan_tag, Merge};
use crate::cluster::topology::{Node, SlotMap};
use crate::endpoint::TargetAddr;
use crate::endpoint::TargetKind;
use crate::error::RelayerError;
use crate::redis::backend::identity;
use crate::redis::backend::*;
use crate::redis::messages::{Forward, Replies, ReplyTo, Request};
use crate::resp::reply::{error_text, is_error};
use crate::resp::request::{Command, RequestParser};
use crate::resp::write;
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use slog::{debug, error, info, warn};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use super::hold::{hold_key, Flight, Hold, Job};

/// Ticks between periodic map refreshes (5 s).
const REFRESH_TICKS: u64 = 50;
/// A refresh asked for by MOVED is not repeated sooner than this.
const REFRESH_GAP: Duration = Duration::from_millis(500);
/// Ticks a node may take to answer CLUSTER SLOTS before another is asked (3 s), whatever the
/// relayer's `timeout` (none at all: a node that hangs would stop every refresh for good).
const REFRESH_TIMEOUT_TICKS: u64 = 30;
/// Ticks a command for every master may wait for its client's earlier commands when there is
/// no `timeout` (30 s): those may be smart-mode writes retried until a slot is served again,
/// and everything the client sends after it waits too.
const BARRIER_TICKS_WITHOUT_TIMEOUT: u64 = 300;
const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";
/// What Redis answers for a slot no master serves.
const CLUSTERDOWN: &str = "CLUSTERDOWN Hash slot not served";

pub(crate) struct Cluster {
    pub(crate) seeds: Vec<TargetAddr>,
    pub(crate) map: Option<SlotMap>,
    /// The first connection of each master of `map`, by its index there (a node's connections
    /// are contiguous): finding a command's connection allocates nothing.
    pub(crate) master_conns: Vec<usize>,
    /// The connections of each node, and the node of each connection.
    pub(crate) node_conns: HashMap<Node, Vec<usize>>,
    pub(crate) conn_node: Vec<Node>,
    pub(crate) refreshing: Option<usize>,
    /// The tick the refresh under way was asked.
    pub(crate) refresh_since: u64,
    pub(crate) refresh_again: bool,
    pub(crate) last_refresh: Option<Instant>,
    /// Turn of the next node asked for the map (masters, replicas, seeds).
    pub(crate) next_candidate: usize,
    /// A node that just named itself the new master of a slot (MOVED): it knows the change,
    /// so the next refresh asks it rather than a node that may not have heard yet.
    pub(crate) refresh_hint: Option<Node>,
    /// Why the last refresh failed, for the error clients get before any map.
    pub(crate) last_error: String,
    /// By slot (`holds::hold_key`): commands kept back so that none overtakes an older one.
    pub(crate) holds: HashMap<u16, Hold>,
    pub(crate) gathers: HashMap<u64, Gather>,
    pub(crate) next_gather: u64,
    /// Requests that came before the first map, while it was being asked for.
    pub(crate) waiting: VecDeque<Forward>,
    /// Redirections that cannot be followed (bad slot or address), logged.
    pub(crate) bad_redirect_log: crate::log_limit::LogLimit,
    /// The number of the next job.
    pub(crate) next_order: u64,
    /// By slot: its commands in flight not counted as displaced.
    pub(crate) flight: Vec<Flight>,
    /// By client: its jobs not finished yet (held, in flight, waiting to be sent again).
    pub(crate) open: HashMap<u64, u32, BySession>,
    /// By client: a command for every master that waits until the client's earlier jobs are
    /// all finished (one of them could still be sent again after it), and whatever the
    /// client sent after it, with the tick each came.
    pub(crate) barriers: HashMap<u64, VecDeque<(u64, Forward)>, BySession>,
}

/// Hashing of session ids (sequential numbers) for the per-command maps: a multiply, not
/// SipHash, on the path of every command.
#[derive(Default, Clone, Copy)]
pub(crate) struct BySession;

impl std::hash::BuildHasher for BySession {
    type Hasher = SessionHasher;
    fn build_hasher(&self) -> SessionHasher {
        SessionHasher(0)
    }
}

pub(crate) struct SessionHasher(u64);

impl std::hash::Hasher for SessionHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) struct Gather {
    pub(crate) to: ReplyTo,
    pub(crate) seq: u64,
    pub(crate) merge: Merge,
    pub(crate) parts: Vec<Option<Bytes>>,
    pub(crate) left: usize,
}

impl Cluster {
    pub(crate) fn new(seeds: Vec<TargetAddr>) -> Self {
        Cluster {
            seeds,
            map: None,
            master_conns: Vec::new(),
            node_conns: HashMap::new(),
            conn_node: Vec::new(),
            refreshing: None,
            refresh_since: 0,
            refresh_again: false,
            last_refresh: None,
            next_candidate: 0,
            refresh_hint: None,
            last_error: "no node asked yet".into(),
            holds: HashMap::new(),
            gathers: HashMap::new(),
            next_gather: 0,
            waiting: VecDeque::new(),
            bad_redirect_log: Default::default(),
            next_order: 0,
            flight: vec![Flight::default(); crate::cluster::slot::SLOTS],
            open: HashMap::default(),
            barriers: HashMap::default(),
        }
    }

    pub(crate) fn held(&self) -> impl Iterator<Item = &Job> {
        self.holds.values().flat_map(|h| h.front.values().chain(&h.back))
    }

    pub(crate) fn queued(&self) -> impl Iterator<Item = &Forward> {
        let behind = self.barriers.values().flat_map(|q| q.iter().map(|(_, m)| m));
        self.waiting.iter().chain(behind)
    }

    /// Writes acknowledged early that wait here (in a hold, for the first map, or behind a
    /// command for every master), not counting those that already ran once
    /// (`background_applied`).
    pub(crate) fn background_waiting(&self) -> usize {
        let held = self
            .held()
            .filter(|j| matches!(j.dest, Dest::Background { .. }) && !j.r.applied)
            .count();
        let queued = self
            .queued()
            .filter(|m| matches!(m.request, Request::Background { .. }))
            .count();
        held + queued
    }

    /// Writes acknowledged early that ran once and wait to be sent again after an older
    /// write of their client (so that it cannot overwrite them): not lost.
    pub(crate) fn background_applied(&self) -> usize {
        self.held().filter(|j| j.r.applied).count()
    }

    /// Some client waits for a reply that is not on a connection yet.
    pub(crate) fn has_waiters(&self) -> bool {
        !self.gathers.is_empty()
            || self
                .queued()
                .any(|m| !matches!(m.request, Request::Background { .. }))
            || self.held().any(|j| !matches!(j.dest, Dest::Background { .. }))
    }
}

fn node_of(addr: &TargetAddr) -> Option<Node> {
    match &addr.kind {
        TargetKind::Tcp { host, port } => Some(Node {
            host: host.clone(),
            port: *port,
        }),
        TargetKind::Unix(_) => None,
    }
}

/// The address of a node, with the credentials and TLS of the seeds.
fn addr_of(seed: &TargetAddr, node: &Node) -> TargetAddr {
    let scheme = if seed.tls { "rediss" } else { "redis" };
    let user = match (&seed.user, &seed.password) {
        (Some(u), Some(_)) => format!("{u}:***@"),
        (None, Some(_)) => ":***@".to_string(),
        _ => String::new(),
    };
    TargetAddr {
        kind: TargetKind::Tcp {
            host: node.host.clone(),
            port: node.port,
        },
        user: seed.user.clone(),
        password: seed.password.clone(),
        db: 0,
        tls: seed.tls,
        display: format!("{scheme}://{user}{node}"),
    }
}

impl Backend<Cluster> {
    pub(crate) fn cl(&mut self) -> &mut Cluster {
        &mut self.shape
    }

    pub(crate) fn cluster_started(&mut self, ctx: &mut Context<Self>) {
        let seeds = self.cl().seeds.clone();
        for s in &seeds {
            if let Some(n) = node_of(s) {
                self.conns_of(&n);
            }
        }
        self.refresh(ctx);
    }

    /// The connections of `node`, created (not opened) the first time.
    pub(crate) fn conns_of(&mut self, node: &Node) -> Vec<usize> {
        if let Some(c) = self.cl().node_conns.get(node) {
            return c.clone();
        }
        let addr = addr_of(&self.cl().seeds[0], node);
        let k = self.settings.connections.max(1);
        let first = self.conns.len();
        for _ in 0..k {
            let mut u = Conn::new(addr.clone());
            u.state = State::Idle;
            self.conns.push(u);
            self.cl().conn_node.push(node.clone());
        }
        let idxs: Vec<usize> = (first..first + k).collect();
        self.cl().node_conns.insert(node.clone(), idxs.clone());
        idxs
    }

    /// The connection of `session` to `node`: a client always uses the same one, so its
    /// commands to a node run in the order it sent them.
    pub(crate) fn conn_for(&mut self, node: &Node, session: u64) -> usize {
        let conns = self.conns_of(node);
        conns[(session % conns.len() as u64) as usize]
    }

    pub(crate) fn open_if_idle(&mut self, idx: usize, ctx: &mut Context<Self>) {
        if matches!(self.conns[idx].state, State::Idle) {
            self.connect(idx, ctx);
        }
    }

    /// Where the map may be read: its masters, then its replicas, then the seeds, so a
    /// relayer whose every known master went away still finds the cluster.
    pub(crate) fn refresh_candidates(&mut self) -> Vec<Node> {
        let cl = self.cl();
        let mut nodes: Vec<Node> = Vec::new();
        if let Some(m) = &cl.map {
            nodes.extend(m.masters.iter().cloned());
            nodes.extend(m.replicas.iter().cloned());
        }
        for s in &cl.seeds {
            if let Some(n) = node_of(s).filter(|n| !nodes.contains(n)) {
                nodes.push(n);
            }
        }
        nodes
    }

    /// Asks a node for the slot map, unless a refresh is under way: the one a MOVED named if
    /// any, else the next one in turn; one whose connection is not known to be down.
    pub(crate) fn refresh(&mut self, ctx: &mut Context<Self>) {
        let cl = self.cl();
        if cl.refreshing.is_some() {
            cl.refresh_again = true;
            return;
        }
        cl.last_refresh = Some(Instant::now());
        let candidates = self.refresh_candidates();
        if candidates.is_empty() {
            return;
        }
        let n = candidates.len();
        let start = self.cl().next_candidate;
        let hinted = self
            .cl()
            .refresh_hint
            .take()
            .and_then(|h| candidates.iter().position(|c| *c == h));
        let mut pick = start % n;
        for at in hinted.into_iter().chain((0..n).map(|i| (start + i) % n)) {
            let idx = self.conns_of(&candidates[at])[0];
            if !matches!(self.conns[idx].state, State::Down { .. }) {
                pick = at;
                break;
            }
        }
        if hinted != Some(pick) {
            self.cl().next_candidate = pick + 1;
        }
        let idx = self.conns_of(&candidates[pick])[0];
        let tick = self.tick;
        let cl = self.cl();
        cl.refreshing = Some(idx);
        cl.refresh_since = tick;
        self.open_if_idle(idx, ctx);
        let cmd = Bytes::from_static(b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n");
        self.push(idx, cmd, Dest::Swallow(Swallowed::Slots));
        self.schedule_flush(idx, ctx);
    }

    pub(crate) fn refresh_soon(&mut self, ctx: &mut Context<Self>) {
        let recent = self.cl().last_refresh.is_some_and(|t| t.elapsed() < REFRESH_GAP);
        if recent {
            self.cl().refresh_again = true;
        } else {
            self.refresh(ctx);
        }
    }

    pub(crate) fn cluster_tick(&mut self, ctx: &mut Context<Self>) {
        let tick = self.tick;
        let cl = self.cl();
        if let Some(idx) = cl
            .refreshing
            .filter(|_| tick >= cl.refresh_since + REFRESH_TIMEOUT_TICKS)
        {
            // Its answer, if it ever comes, is still applied.
            cl.refreshing = None;
            cl.refresh_again = true;
            let node = cl.conn_node[idx].clone();
            warn!(self.settings.log, "cluster node did not answer CLUSTER SLOTS: asking another"; "node" => %node);
        }
        let cl = self.cl();
        let due = cl.map.is_none() || tick % REFRESH_TICKS == 0;
        // Writes waiting for their node to come back: ask again until the map says where.
        let parked = cl.holds.values().any(|h| !h.front.is_empty());
        let again =
            (cl.refresh_again || parked) && cl.last_refresh.is_none_or(|t| t.elapsed() >= REFRESH_GAP);
        if (due || again) && cl.refreshing.is_none() {
            let waited = cl.last_refresh.is_none_or(|t| t.elapsed() >= REFRESH_GAP);
            if waited {
                cl.refresh_again = false;
                self.refresh(ctx);
            }
        }
        self.hold_tick(ctx);
        // Not only when a slot is held: the client's earlier command may just be slow.
        let limit = self.timeout_ticks.unwrap_or(BARRIER_TICKS_WITHOUT_TIMEOUT);
        self.expire_barriers(limit, ctx);
    }

    pub(crate) fn slots_reply(&mut self, idx: usize, data: &Bytes, ctx: &mut Context<Self>) {
        let asked = self.cl().conn_node[idx].clone();
        match SlotMap::from_cluster_slots(data, &asked) {
            Ok(map) if !map.masters.is_empty() => self.apply_map(map, idx, ctx),
            Ok(_) => self.slots_failed(idx, "CLUSTER SLOTS lists no master", ctx),
            Err(e) => self.slots_failed(idx, &e, ctx),
        }
    }

    /// The CLUSTER SLOTS asked on connection `idx` failed.
    pub(crate) fn slots_failed(&mut self, idx: usize, reason: &str, ctx: &mut Context<Self>) {
        let cl = self.cl();
        if cl.refreshing.is_some_and(|r| r != idx) {
            // An attempt given up on (no answer in time) failing late: the one under way
            // decides.
            return;
        }
        cl.refreshing = None;
        if cl.map.is_none() && cl.last_error != reason {
            error!(self.settings.log, "cluster map not available"; "seeds" => %self.settings.addr, "reason" => reason);
        }
        let cl = self.cl();
        cl.last_error = reason.to_string();
        cl.refresh_again = true;
        self.release_waiting(ctx);
    }

    /// Requests that waited for the first map go on: routed, or answered with the error.
    pub(crate) fn release_waiting(&mut self, ctx: &mut Context<Self>) {
        let waiting = std::mem::take(&mut self.cl().waiting);
        for msg in waiting {
            self.cluster_forward(msg, ctx);
        }
    }

    /// `from`: the connection whose CLUSTER SLOTS it answers.
    pub(crate) fn apply_map(&mut self, map: SlotMap, from: usize, ctx: &mut Context<Self>) {
        // The node answered: it works.
        self.ask_commands(from, ctx);
        self.ask_identity(from, ctx);
        let changed = self.cl().map.as_ref() != Some(&map);
        if changed {
            info!(self.settings.log, "cluster map"; "masters" => map.masters.len(), "complete" => map.covers_all());
            for m in &map.masters {
                self.conns_of(m);
            }
            // Commands in flight on a node that no longer serves their slot come back MOVED:
            // newer ones of the slot wait for them.
            let old = self.cl().map.take();
            self.mark_moved(old.as_ref(), &map);
        }
        self.set_map(map);
        if changed {
            self.close_departed(ctx);
        }
        let cl = self.cl();
        // A late answer of an attempt given up on is still a map, but the attempt under way
        // goes on.
        if cl.refreshing.is_none_or(|r| r == from) {
            cl.refreshing = None;
        }
        let again = std::mem::take(&mut cl.refresh_again);
        self.release_waiting(ctx);
        // Writes parked for want of a map or of their node go now, if they can.
        self.retry_holds_now(ctx);
        if again {
            self.refresh_soon(ctx);
        }
    }

    /// Closes the idle connections to nodes that neither the map nor the seeds name any more
    /// (they would reconnect for ever); they open again if a redirection names them.
    pub(crate) fn close_departed(&mut self, ctx: &mut Context<Self>) {
        let cl = &self.shape;
        let Some(map) = &cl.map else { return };
        let seeds: Vec<Node> = cl.seeds.iter().filter_map(node_of).collect();
        let known = |n: &Node| map.masters.contains(n) || map.replicas.contains(n) || seeds.contains(n);
        let departed: Vec<usize> = cl
            .node_conns
            .iter()
            .filter(|(n, _)| !known(n))
            .flat_map(|(_, idxs)| idxs.iter().copied())
            .filter(|&i| cl.refreshing != Some(i))
            .collect();
        for idx in departed {
            let c = &mut self.conns[idx];
            if matches!(c.state, State::Idle) || !c.up.pending.is_empty() {
                continue;
            }
            debug!(self.settings.log, "connection to a node that left the cluster closed"; "backend" => %c.addr, "conn" => idx);
            // A newer generation: its reconnection timer and stream events are ignored.
            c.up.close();
            c.state = State::Idle;
            c.db = Some(0);
            c.block_note = None;
            c.backoff = BACKOFF_FIRST;
            if let Some(h) = c.reader.take() {
                ctx.cancel_future(h);
            }
        }
    }

    /// Makes `map` the map, with the connections of its masters.
    pub(crate) fn set_map(&mut self, map: SlotMap) {
        let firsts = map.masters.iter().map(|m| self.conns_of(m)[0]).collect();
        let cl = self.cl();
        cl.master_conns = firsts;
        cl.map = Some(map);
    }

    /// The connection of `session` to the master of `slot` (None: any master, spread by
    /// session).
    /// Err: the answer of a command that cannot be sent (the relayer's, or Redis' own
    /// CLUSTERDOWN for a slot nobody serves).
    pub(crate) fn owner_conn(&mut self, slot: Option<u16>, session: u64) -> Result<usize, Bytes> {
        let k = self.settings.connections.max(1) as u64;
        let cl = self.cl();
        let Some(map) = &cl.map else {
            return Err(RelayerError::ClusterUnavailable(cl.last_error.clone()).resp());
        };
        let master = match slot {
            Some(s) => map.owner_index(s).ok_or_else(|| write::error(CLUSTERDOWN))?,
            None => (session % map.masters.len() as u64) as usize,
        };
        Ok(cl.master_conns[master] + (session % k) as usize)
    }

    pub(crate) fn cluster_forward(&mut self, msg: Forward, ctx: &mut Context<Self>) {
        // Before the first map, requests wait for the attempt under way to end.
        let cl = self.cl();
        if cl.map.is_none() && cl.refreshing.is_some() {
            cl.waiting.push_back(msg);
            return;
        }
        let since = self.tick;
        let cl = self.cl();
        // Behind a command for every master that waits, the client's next ones wait too.
        if !cl.barriers.is_empty() {
            if let Some(q) = cl.barriers.get_mut(&msg.session) {
                q.push_back((since, msg));
                return;
            }
        }
        let waits_for_earlier = matches!(msg.request, Request::FanOut { .. } | Request::Barrier);
        if waits_for_earlier && cl.open.contains_key(&msg.session) {
            cl.barriers.insert(msg.session, VecDeque::from([(since, msg)]));
            return;
        }
        self.start(msg, since, ctx);
    }

    /// A request on its way: jobs for its slots, or parts for every master.
    pub(crate) fn start(&mut self, msg: Forward, since: u64, ctx: &mut Context<Self>) {
        let Forward {
            reply_to: to,
            session,
            seq,
            request,
            slot,
            ..
        } = msg;
        let (body, dest) = match request {
            Request::One(frame) | Request::Side(frame) => (Body::One(frame), Dest::Session { to, seq }),
            // Its client's earlier jobs are all finished (`cluster_forward` held it until then).
            Request::Barrier => return self.send_reply(to, seq, Bytes::from_static(write::PONG)),
            // SELECT 0 inside the block leaves the connection on DB 0, the only one.
            Request::Block { frames, .. } => (Body::Block(frames), Dest::Session { to, seq }),
            Request::Background { frame, idempotent } => {
                // Copied apart from the client's read buffer, which it would otherwise pin
                // while it waits.
                let frame = Bytes::copy_from_slice(&frame);
                let dest = Dest::Background {
                    frame: frame.clone(),
                    db: 0,
                    idempotent,
                    since,
                };
                (Body::One(frame), dest)
            }
            Request::Gather { parts, merge } => {
                return self.gather(to, seq, session, since, parts, merge, ctx)
            }
            Request::FanOut { frame, merge } => return self.fan_out(to, seq, session, frame, merge, ctx),
            Request::Select(..) => {
                let data = write::error("ERR SELECT is not allowed in cluster mode");
                return self.send_reply(to, seq, data);
            }
        };
        self.start_job(slot, session, body, since, dest, ctx);
    }

    /// A new job, numbered in arrival order, sent (or held) for its slot.
    pub(crate) fn start_job(
        &mut self,
        slot: Option<u16>,
        session: u64,
        body: Body,
        since: u64,
        dest: Dest,
        ctx: &mut Context<Self>,
    ) {
        let order = self.new_job(session);
        let r = Resend::new(slot, session, body, since, order);
        self.dispatch(Job { r, dest, ask: None }, ctx);
    }

    /// A new job of `session`: its number, and the client has one more job open.
    pub(crate) fn new_job(&mut self, session: u64) -> u64 {
        let cl = self.cl();
        let order = cl.next_order;
        cl.next_order += 1;
        *cl.open.entry(session).or_default() += 1;
        order
    }

    /// A job of `session` is finished (answered, confirmed, given up): once its client has
    /// none left, a command for every master waiting for that goes.
    pub(crate) fn job_done(&mut self, session: u64, ctx: &mut Context<Self>) {
        let cl = self.cl();
        let Some(n) = cl.open.get_mut(&session) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            cl.open.remove(&session);
            if cl.barriers.contains_key(&session) {
                // Later, from the mailbox: not in the middle of what finished the job.
                ctx.notify(ReleaseBarrier(session));
            }
        }
    }

    /// What waits behind a command for every master goes, in order, up to the next such
    /// command that must wait again.
    pub(crate) fn release_barrier(&mut self, session: u64, ctx: &mut Context<Self>) {
        loop {
            let cl = self.cl();
            let busy = cl.open.contains_key(&session);
            let Some(q) = cl.barriers.get_mut(&session) else {
                return;
            };
            let Some((since, msg)) = q.pop_front() else {
                cl.barriers.remove(&session);
                return;
            };
            if busy && matches!(msg.request, Request::FanOut { .. } | Request::Barrier) {
                q.push_front((since, msg));
                return;
            }
            if q.is_empty() {
                cl.barriers.remove(&session);
            }
            self.start(msg, since, ctx);
        }
    }

    /// A command for every master that waited longer than the relayer's timeout for its
    /// client's earlier commands gets an error; what came after it goes on.
    pub(crate) fn expire_barriers(&mut self, limit: u64, ctx: &mut Context<Self>) {
        let tick = self.tick;
        let cl = self.cl();
        if cl.barriers.is_empty() {
            return;
        }
        let late: Vec<u64> = cl
            .barriers
            .iter()
            .filter(|(_, q)| q.front().is_some_and(|(since, _)| tick >= since + limit))
            .map(|(s, _)| *s)
            .collect();
        let t = TICK * limit as u32;
        for session in late {
            let Some((_, msg)) = self.cl().barriers.get_mut(&session).and_then(|q| q.pop_front()) else {
                continue;
            };
            let err = Arc::new(RelayerError::StillResending(t));
            self.send_failure(msg.reply_to, msg.seq, &err);
            self.release_barrier(session, ctx);
        }
        // What waited may have been the last thing a reload's drain waits for.
        self.check_drained();
    }

    /// Sends `job` now: to the node its ASK named, else to the master of its slot, on its
    /// client's connection. `counted`: its slot's hold waits for its reply before newer
    /// commands of the slot go. A job that cannot go: a waited one gets the error at once, a
    /// write acknowledged early waits in its slot's hold.
    pub(crate) fn send_now(&mut self, job: Job, counted: bool, ctx: &mut Context<Self>) {
        let idx = match &job.ask {
            Some(n) => Ok(self.conn_for(&n.clone(), job.r.session)),
            None => self.owner_conn(job.r.slot, job.r.session),
        };
        let idx = match idx {
            Ok(idx) => idx,
            Err(answer) => return self.cannot_send(job, answer, ctx),
        };
        if let State::Down { reason } = &self.conns[idx].state {
            let err = RelayerError::Unavailable {
                backend: self.conns[idx].addr.to_string(),
                reason: reason.clone(),
            };
            return self.cannot_send(job, err.resp(), ctx);
        }
        self.open_if_idle(idx, ctx);
        let Job { mut r, dest, ask } = job;
        self.sent(&mut r, counted);
        if ask.is_some() {
            self.push(idx, Bytes::from_static(ASKING), Dest::Swallow(Swallowed::Asking));
        }
        let key = hold_key(r.slot);
        let last = match &r.body {
            Body::One(frame) => frame.clone(),
            Body::Block(frames) => {
                let (last, queued) = frames.split_last().expect("a block ends with EXEC");
                for f in queued {
                    self.push(idx, f.clone(), Dest::Swallow(Swallowed::BlockPart));
                }
                last.clone()
            }
        };
        self.push_pending(idx, last, dest, Some(r), counted);
        if counted {
            self.hold_mut(key).displaced += 1;
        }
        self.schedule_flush(idx, ctx);
    }

    pub(crate) fn cannot_send(&mut self, job: Job, answer: Bytes, ctx: &mut Context<Self>) {
        match job.dest {
            Dest::Background { .. } => self.park(job),
            dest => {
                self.answer(dest, answer);
                self.job_done(job.r.session, ctx);
            }
        }
    }

    /// A reply the relayer makes itself, for a command that does not reach a node.
    pub(crate) fn answer(&mut self, dest: Dest, data: Bytes) {
        match dest {
            Dest::Session { to, seq } | Dest::SelectCheck { to, seq, .. } | Dest::Barrier { to, seq } => {
                self.send_reply(to, seq, data)
            }
            Dest::Part { gather, index } => self.part_reply(gather, index, data),
            Dest::Background { .. } | Dest::Swallow(_) => {}
        }
        self.check_drained();
    }

    pub(crate) fn new_gather(&mut self, to: ReplyTo, seq: u64, merge: Merge, n: usize) -> u64 {
        let cl = self.cl();
        let id = cl.next_gather;
        cl.next_gather += 1;
        cl.gathers.insert(
            id,
            Gather {
                to,
                seq,
                merge,
                parts: vec![None; n],
                left: n,
            },
        );
        id
    }

    /// A multi-key command split by slot: each part is a job of its slot, held and
    /// redirected like any.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gather(
        &mut self,
        to: ReplyTo,
        seq: u64,
        session: u64,
        since: u64,
        parts: Vec<(Option<u16>, Bytes)>,
        merge: Merge,
        ctx: &mut Context<Self>,
    ) {
        let id = self.new_gather(to, seq, merge, parts.len());
        for (index, (slot, frame)) in parts.into_iter().enumerate() {
            let dest = Dest::Part { gather: id, index };
            self.start_job(slot, session, Body::One(frame), since, dest, ctx);
        }
    }

    /// A keyless command for every master (DBSIZE, KEYS, FLUSHALL...), or a SCAN for the
    /// master its cursor is on.
    pub(crate) fn fan_out(
        &mut self,
        to: ReplyTo,
        seq: u64,
        session: u64,
        frame: Bytes,
        merge: Merge,
        ctx: &mut Context<Self>,
    ) {
        let (parts, merge) = match merge {
            Merge::Scan => match self.scan_part(&frame) {
                Ok((node, frame, merge)) => (vec![(node, frame)], merge),
                Err(data) => return self.send_reply(to, seq, data),
            },
            merge => {
                let Some(masters) = self.cl().map.as_ref().map(|m| m.masters.clone()) else {
                    let data = RelayerError::ClusterUnavailable(self.cl().last_error.clone()).resp();
                    return self.send_reply(to, seq, data);
                };
                (masters.into_iter().map(|m| (m, frame.clone())).collect(), merge)
            }
        };
        let id = self.new_gather(to, seq, merge, parts.len());
        for (index, (node, frame)) in parts.into_iter().enumerate() {
            let idx = self.conn_for(&node, session);
            let dest = Dest::Part { gather: id, index };
            if let State::Down { reason } = &self.conns[idx].state {
                let err = RelayerError::Unavailable {
                    backend: self.conns[idx].addr.to_string(),
                    reason: reason.clone(),
                };
                self.answer(dest, err.resp());
                continue;
            }
            self.open_if_idle(idx, ctx);
            self.push(idx, frame, dest);
            self.schedule_flush(idx, ctx);
        }
    }

    /// A client's SCAN: to the master serving the slot its cursor names, with that master's
    /// own cursor; the merge gives the cursor of what comes next.
    pub(crate) fn scan_part(&mut self, frame: &Bytes) -> Result<(Node, Bytes, Merge), Bytes> {
        let mut buf = BytesMut::from(&frame[..]);
        let cmd = match RequestParser::new(Default::default()).parse(&mut buf) {
            Ok(Some(c)) => c,
            _ => return Err(RelayerError::BadScan.resp()),
        };
        let Some(cursor) = std::str::from_utf8(cmd.arg(1))
            .ok()
            .and_then(|c| c.parse::<u64>().ok())
        else {
            return Err(write::error("ERR invalid cursor"));
        };
        let Some(map) = self.cl().map.as_ref() else {
            return Err(RelayerError::ClusterUnavailable(self.cl().last_error.clone()).resp());
        };
        let (slot, tag, own) = scan_cursor(cursor);
        let Some(node) = map.owner(slot).cloned() else {
            return Err(write::error(CLUSTERDOWN));
        };
        // Another node serves it now (a failover): from its start, keys seen twice at worst.
        let here = scan_tag(&node.to_string());
        let own = if here == tag { own } else { 0 };
        let next = map.scan_order().into_iter().map(|(s, _)| s).find(|&s| s > slot);
        let own = own.to_string();
        let mut args: Vec<&[u8]> = vec![cmd.arg(0), own.as_bytes()];
        args.extend(cmd.args().skip(2));
        let frame = Command::from_args(&args).into_frame();
        Ok((
            node,
            frame,
            Merge::ScanOn {
                slot,
                tag: here,
                next,
            },
        ))
    }

    pub(crate) fn part_reply(&mut self, id: u64, index: usize, data: Bytes) {
        let cl = &mut self.shape;
        let Some(g) = cl.gathers.get_mut(&id) else { return };
        if g.parts[index].replace(data).is_none() {
            g.left -= 1;
        }
        if g.left == 0 {
            let g = cl.gathers.remove(&id).expect("present");
            let parts: Vec<Bytes> = g.parts.into_iter().map(|p| p.unwrap_or_default()).collect();
            let data = merge(&g.merge, &parts);
            self.send_reply(g.to, g.seq, data);
        }
    }

    /// A connection failed (what it owed was answered or parked): holds go on, and the map is
    /// refreshed (a failover may have happened).
    pub(crate) fn cluster_conn_failed(&mut self, idx: usize, ctx: &mut Context<Self>) {
        self.conns[idx].block_note = None;
        if self.cl().refreshing == Some(idx) {
            self.cl().refreshing = None;
        }
        let keys: Vec<u16> = self.cl().holds.keys().copied().collect();
        for k in keys {
            self.maybe_release(k, ctx);
        }
        self.refresh_soon(ctx);
    }

    /// A reload retired the target: what waits here gets `err`; writes acknowledged early are
    /// let go (the drain before counted them as lost).
    pub(crate) fn cluster_retire(&mut self, err: &Arc<RelayerError>) {
        let holds = std::mem::take(&mut self.cl().holds);
        for (_, h) in holds {
            for job in h.front.into_values().chain(h.back) {
                match job.dest {
                    Dest::Background { frame, .. } => self.give_back(&frame),
                    dest => self.answer(dest, err.resp()),
                }
            }
        }
        let mut waiting = std::mem::take(&mut self.cl().waiting);
        for (_, q) in std::mem::take(&mut self.cl().barriers) {
            waiting.extend(q.into_iter().map(|(_, m)| m));
        }
        for msg in waiting {
            match msg.request {
                Request::Background { frame, .. } => self.give_back(&frame),
                _ => msg.reply_to.do_send(Replies::Failed {
                    seq: msg.seq,
                    error: err.clone(),
                }),
            }
        }
        for (_, g) in self.cl().gathers.drain() {
            g.to.do_send(Replies::Failed {
                seq: g.seq,
                error: err.clone(),
            });
        }
    }
}

impl Backend<Cluster> {
    /// A backend for the Redis Cluster reached first through `seeds`.
    pub(crate) fn cluster(settings: BackendSettings, known: Arc<KnownDbs>, seeds: Vec<TargetAddr>) -> Self {
        Backend::with(Cluster::new(seeds), settings, known, Vec::new())
    }
}

impl Shape for Cluster {
    fn started(b: &mut Backend<Self>, ctx: &mut Context<Backend<Self>>) {
        b.cluster_started(ctx);
    }

    fn forward(b: &mut Backend<Self>, msg: Forward, ctx: &mut Context<Backend<Self>>) {
        b.cluster_forward(msg, ctx);
    }

    fn connected(_: &mut Backend<Self>, _: usize, _: &mut Context<Backend<Self>>) {}

    fn reply(b: &mut Backend<Self>, idx: usize, p: Pending, data: Bytes, ctx: &mut Context<Backend<Self>>) {
        // MOVED and ASK are followed here; the reply goes on otherwise.
        if let Some((dest, data)) = b.cluster_reply(idx, p, data, ctx) {
            b.deliver(idx, dest, data, ctx);
        }
    }

    fn swallowed(
        b: &mut Backend<Self>,
        idx: usize,
        what: Swallowed,
        data: &Bytes,
        ctx: &mut Context<Backend<Self>>,
    ) {
        match what {
            Swallowed::Slots if is_error(data) => b.slots_failed(idx, &error_text(data), ctx),
            Swallowed::Slots => b.slots_reply(idx, data, ctx),
            Swallowed::Commands => b.commands_reply(idx, data),
            Swallowed::Info => b.identity_reply(identity::info_text(data).as_deref()),
            Swallowed::Asking if is_error(data) => {
                warn!(b.settings.log, "backend refused ASKING"; "backend" => %b.conns[idx].addr, "error" => error_text(data))
            }
            // The rest is a single Redis', or a MULTI block's part that ran.
            Swallowed::Asking | Swallowed::Select(_) | Swallowed::BlockPart => {}
        }
    }

    fn part(b: &mut Backend<Self>, gather: u64, index: usize, data: Bytes) {
        b.part_reply(gather, index, data);
    }

    fn cut_off(b: &mut Backend<Self>, lost: Lost, ctx: &mut Context<Backend<Self>>) -> usize {
        let Lost {
            idx,
            owed,
            written,
            err,
            reason,
        } = lost;
        owed.into_iter()
            .map(|p| usize::from(b.cluster_cut_off(idx, p, &err, written, &reason, ctx)))
            .sum()
    }

    fn conn_failed(b: &mut Backend<Self>, idx: usize, ctx: &mut Context<Backend<Self>>) {
        b.cluster_conn_failed(idx, ctx);
    }

    fn tick(b: &mut Backend<Self>, ctx: &mut Context<Backend<Self>>) {
        b.cluster_tick(ctx);
    }

    fn has_waiters(b: &Backend<Self>) -> bool {
        b.shape.has_waiters()
    }

    fn background_held(b: &Backend<Self>) -> usize {
        b.shape.background_waiting()
    }

    fn background_applied(b: &Backend<Self>) -> usize {
        b.shape.background_applied()
    }

    fn retire(b: &mut Backend<Self>, err: &Arc<RelayerError>) {
        b.cluster_retire(err);
    }
}

/// A client's jobs are all finished: what waited behind its command for every master goes.
#[derive(Message)]
#[rtype(result = "()")]
struct ReleaseBarrier(u64);

impl Handler<ReleaseBarrier> for Backend<Cluster> {
    type Result = ();

    fn handle(&mut self, ReleaseBarrier(session): ReleaseBarrier, ctx: &mut Context<Self>) {
        self.release_barrier(session, ctx);
    }
}
