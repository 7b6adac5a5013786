//! The target on a Redis Cluster: a connection per master (opened when first used), the slot
//! map (from CLUSTER SLOTS: at start, after MOVED, after a lost connection and every few
//! seconds), MOVED and ASK followed up to `MAX_HOPS` times, and requests split over nodes.
//!
//! Order: a client's commands on one slot go to one connection, so they run in order. When a
//! slot moves, commands for it still in flight on the old node come back MOVED and are sent
//! again in order; new commands for that slot are held until those have come back, so none
//! overtakes them.

use super::*;
use crate::cluster::gather::{merge, Merge};
use crate::cluster::topology::{Node, SlotMap};
use crate::endpoint::TargetKind;
use std::time::Instant;

/// Redirections followed for one command before its client gets the error.
const MAX_HOPS: u8 = 5;
/// Ticks between periodic map refreshes (5 s).
const REFRESH_TICKS: u64 = 50;
/// A refresh asked for by MOVED is not repeated sooner than this.
const REFRESH_GAP: Duration = Duration::from_millis(500);

/// What a command needs to be sent again elsewhere.
pub(super) struct Resend {
    pub frame: Bytes,
    pub slot: Option<u16>,
    pub hops: u8,
}

pub(super) struct Cluster {
    seeds: Vec<TargetAddr>,
    map: Option<SlotMap>,
    /// The connections of each node, and the node of each connection.
    node_conns: HashMap<Node, Vec<usize>>,
    conn_node: Vec<Node>,
    refreshing: Option<usize>,
    refresh_again: bool,
    last_refresh: Option<Instant>,
    next_seed: usize,
    /// Why the last refresh failed, for the error clients get before any map.
    last_error: String,
    /// Writes acknowledged early whose node cannot be reached: sent where their slot lives
    /// once a new map is known.
    parked: Vec<(Option<u16>, Bytes, bool)>,
    holds: HashMap<u16, Hold>,
    gathers: HashMap<u64, Gather>,
    next_gather: u64,
    /// Requests that came before the first map, while it was being asked for.
    waiting: VecDeque<Forward>,
}

struct Hold {
    /// Commands for the slot still owed by nodes that no longer serve it.
    left: usize,
    queued: VecDeque<Forward>,
}

struct Gather {
    to: Addr<Session>,
    seq: u64,
    merge: Merge,
    parts: Vec<Option<Bytes>>,
    left: usize,
}

impl Cluster {
    pub(super) fn new(seeds: Vec<TargetAddr>) -> Self {
        Cluster {
            seeds,
            map: None,
            node_conns: HashMap::new(),
            conn_node: Vec::new(),
            refreshing: None,
            refresh_again: false,
            last_refresh: None,
            next_seed: 0,
            last_error: "no node asked yet".into(),
            parked: Vec::new(),
            holds: HashMap::new(),
            gathers: HashMap::new(),
            next_gather: 0,
            waiting: VecDeque::new(),
        }
    }

    pub(super) fn park(&mut self, slot: Option<u16>, frame: Bytes, idempotent: bool) {
        self.parked.push((slot, frame, idempotent));
    }

    /// Gathered requests get `err`; parked writes are let go (counted by the drain before).
    pub(super) fn retire(&mut self, err: &Bytes, budget: Option<&Budget>) {
        for (_, g) in self.gathers.drain() {
            g.to.do_send(Reply {
                seq: g.seq,
                data: err.clone(),
            });
        }
        for (_, frame, _) in self.parked.drain(..) {
            if let Some(b) = budget {
                b.give_back(frame.len() as u64);
            }
        }
        for msg in self.waiting.drain(..) {
            msg.reply_to.do_send(Reply {
                seq: msg.seq,
                data: err.clone(),
            });
        }
        for (_, h) in self.holds.drain() {
            for msg in h.queued {
                msg.reply_to.do_send(Reply {
                    seq: msg.seq,
                    data: err.clone(),
                });
            }
        }
    }

    pub(super) fn parked(&self) -> usize {
        self.parked.len()
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

impl Target {
    fn cl(&mut self) -> &mut Cluster {
        self.cluster.as_mut().expect("cluster target")
    }

    pub(super) fn cluster_started(&mut self, ctx: &mut Context<Self>) {
        let seeds = self.cl().seeds.clone();
        for s in &seeds {
            if let Some(n) = node_of(s) {
                self.conns_of(&n);
            }
        }
        self.refresh(ctx);
    }

    /// The connections of `node`, created (not opened) the first time.
    fn conns_of(&mut self, node: &Node) -> Vec<usize> {
        if let Some(c) = self.cl().node_conns.get(node) {
            return c.clone();
        }
        let addr = addr_of(&self.cl().seeds[0], node);
        let k = self.settings.connections.max(1);
        let first = self.conns.len();
        for _ in 0..k {
            let mut u = Upstream::new(addr.clone());
            u.state = State::Idle;
            self.conns.push(u);
            self.cl().conn_node.push(node.clone());
        }
        let idxs: Vec<usize> = (first..first + k).collect();
        self.cl().node_conns.insert(node.clone(), idxs.clone());
        idxs
    }

    fn open_if_idle(&mut self, idx: usize, ctx: &mut Context<Self>) {
        if matches!(self.conns[idx].state, State::Idle) {
            self.connect(idx, ctx);
        }
    }

    /// Asks a node for the slot map, unless a refresh is under way.
    fn refresh(&mut self, ctx: &mut Context<Self>) {
        let cl = self.cl();
        if cl.refreshing.is_some() {
            cl.refresh_again = true;
            return;
        }
        cl.last_refresh = Some(Instant::now());
        // A master of the current map, else the seeds in turn.
        let node = match &cl.map {
            Some(m) if !m.masters.is_empty() => {
                cl.next_seed += 1;
                Some(m.masters[cl.next_seed % m.masters.len()].clone())
            }
            _ => {
                let n = cl.seeds.len();
                let seed = &cl.seeds[cl.next_seed % n];
                cl.next_seed += 1;
                node_of(seed)
            }
        };
        let Some(node) = node else { return };
        let idx = self.conns_of(&node)[0];
        self.cl().refreshing = Some(idx);
        self.open_if_idle(idx, ctx);
        let cmd = Bytes::from_static(b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n");
        self.push(idx, cmd, Dest::Swallow(Swallowed::Slots));
        self.schedule_flush(idx, ctx);
    }

    fn refresh_soon(&mut self, ctx: &mut Context<Self>) {
        let recent = self.cl().last_refresh.is_some_and(|t| t.elapsed() < REFRESH_GAP);
        if recent {
            self.cl().refresh_again = true;
        } else {
            self.refresh(ctx);
        }
    }

    pub(super) fn cluster_tick(&mut self, ctx: &mut Context<Self>) {
        let tick = self.tick;
        let cl = self.cl();
        let due = cl.map.is_none() || tick % REFRESH_TICKS == 0;
        let again = cl.refresh_again && cl.last_refresh.is_some_and(|t| t.elapsed() >= REFRESH_GAP);
        // Before any map, retry at each tick only when no attempt is under way.
        if (due || again) && self.cl().refreshing.is_none() {
            let waited = self.cl().last_refresh.is_none_or(|t| t.elapsed() >= REFRESH_GAP);
            if waited {
                self.cl().refresh_again = false;
                self.refresh(ctx);
            }
        }
    }

    pub(super) fn slots_reply(&mut self, idx: usize, data: &Bytes, ctx: &mut Context<Self>) {
        let asked = self.cl().conn_node[idx].clone();
        match SlotMap::from_cluster_slots(data, &asked) {
            Ok(map) if !map.masters.is_empty() => self.apply_map(map, ctx),
            Ok(_) => self.slots_failed("CLUSTER SLOTS lists no master", ctx),
            Err(e) => self.slots_failed(&e, ctx),
        }
    }

    pub(super) fn slots_failed(&mut self, reason: &str, ctx: &mut Context<Self>) {
        let cl = self.cl();
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
    fn release_waiting(&mut self, ctx: &mut Context<Self>) {
        let waiting = std::mem::take(&mut self.cl().waiting);
        for msg in waiting {
            self.cluster_forward(msg, ctx);
        }
    }

    fn apply_map(&mut self, map: SlotMap, ctx: &mut Context<Self>) {
        let first = self.cl().map.is_none();
        if first || self.cl().map.as_ref() != Some(&map) {
            info!(self.settings.log, "cluster map"; "masters" => map.masters.len(), "complete" => map.covers_all());
        }
        for m in &map.masters {
            self.conns_of(m);
        }
        // Slots that moved while commands for them are in flight on their old node: hold new
        // ones until those come back.
        let mut counts: HashMap<u16, usize> = HashMap::new();
        for (idx, c) in self.conns.iter().enumerate() {
            let node = &self.cluster.as_ref().expect("cluster").conn_node[idx];
            for p in &c.pending {
                if let Some(s) = p.resend.as_ref().and_then(|r| r.slot) {
                    if map.owner(s) != Some(node) {
                        *counts.entry(s).or_default() += 1;
                    }
                }
            }
        }
        let cl = self.cl();
        for (s, n) in counts {
            cl.holds.entry(s).or_insert_with(|| Hold {
                left: 0,
                queued: VecDeque::new(),
            });
            if let Some(h) = cl.holds.get_mut(&s) {
                h.left = h.left.max(n);
            }
        }
        cl.map = Some(map);
        cl.refreshing = None;
        let again = std::mem::take(&mut cl.refresh_again);
        let parked = std::mem::take(&mut cl.parked);
        for (slot, frame, idempotent) in parked {
            self.send_background(slot, frame, idempotent, ctx);
        }
        self.release_waiting(ctx);
        if again {
            self.refresh_soon(ctx);
        }
    }

    /// The connection for `slot` (None: any master, spread by session).
    fn pick(&mut self, slot: Option<u16>, session: u64) -> Result<usize, String> {
        let cl = self.cl();
        let Some(map) = &cl.map else {
            return Err(format!("ERR relayer: cluster not available ({})", cl.last_error));
        };
        let node = match slot {
            Some(s) => match map.owner(s) {
                Some(n) => n.clone(),
                None => return Err("CLUSTERDOWN Hash slot not served".into()),
            },
            None => map.masters[(session % map.masters.len() as u64) as usize].clone(),
        };
        let conns = self.conns_of(&node);
        Ok(conns[(session % conns.len() as u64) as usize])
    }

    fn send_background(
        &mut self,
        slot: Option<u16>,
        frame: Bytes,
        idempotent: bool,
        ctx: &mut Context<Self>,
    ) {
        match self.pick(slot, 0) {
            Ok(idx) if !matches!(self.conns[idx].state, State::Down { .. }) => {
                self.open_if_idle(idx, ctx);
                let resend = Resend {
                    frame: frame.clone(),
                    slot,
                    hops: 0,
                };
                self.queue_background_resend(idx, frame, 0, idempotent, Some(resend));
                self.schedule_flush(idx, ctx);
            }
            _ => self.cl().park(slot, frame, idempotent),
        }
    }

    pub(super) fn cluster_forward(&mut self, msg: Forward, ctx: &mut Context<Self>) {
        // Before the first map, requests wait for the attempt under way to end.
        let cl = self.cl();
        if cl.map.is_none() && cl.refreshing.is_some() {
            cl.waiting.push_back(msg);
            return;
        }
        if let Request::Gather { .. } | Request::FanOut { .. } = msg.request {
            return self.gather(msg, ctx);
        }
        if let Some(h) = msg.slot.and_then(|s| self.cl().holds.get_mut(&s)) {
            h.queued.push_back(msg);
            return;
        }
        let background = matches!(msg.request, Request::Background { .. });
        let picked = self.pick(msg.slot, msg.session);
        match picked {
            Ok(idx) if !(background && matches!(self.conns[idx].state, State::Down { .. })) => {
                self.forward_on(idx, msg, ctx)
            }
            _ if background => {
                if let Request::Background { frame, idempotent } = msg.request {
                    self.cl()
                        .park(msg.slot, Bytes::copy_from_slice(&frame), idempotent);
                }
            }
            Ok(_) => unreachable!("checked above"),
            Err(text) => msg.reply_to.do_send(Reply {
                seq: msg.seq,
                data: write::error(&text),
            }),
        }
    }

    fn gather(&mut self, msg: Forward, ctx: &mut Context<Self>) {
        let (to, seq, session) = (msg.reply_to, msg.seq, msg.session);
        let (parts, merge) = match msg.request {
            Request::Gather { parts, merge } => {
                let parts = parts
                    .into_iter()
                    .map(|(slot, frame)| (self.pick(slot, session), frame, slot))
                    .collect();
                (parts, merge)
            }
            Request::FanOut {
                frame,
                merge: Merge::Scan,
            } => match self.scan_part(frame, session) {
                Ok((part, merge)) => (vec![part], merge),
                Err(reply) => return to.do_send(Reply { seq, data: reply }),
            },
            Request::FanOut { frame, merge } => {
                let masters = self.cl().map.as_ref().map(|m| m.masters.clone());
                let Some(masters) = masters else {
                    let text = format!("ERR relayer: cluster not available ({})", self.cl().last_error);
                    return to.do_send(Reply {
                        seq,
                        data: write::error(&text),
                    });
                };
                let parts = masters
                    .iter()
                    .map(|m| {
                        let conns = self.conns_of(m);
                        (
                            Ok(conns[(session % conns.len() as u64) as usize]),
                            frame.clone(),
                            None,
                        )
                    })
                    .collect();
                (parts, merge)
            }
            _ => return,
        };
        let id = self.cl().next_gather;
        self.cl().next_gather += 1;
        let n = parts.len();
        self.cl().gathers.insert(
            id,
            Gather {
                to,
                seq,
                merge,
                parts: vec![None; n],
                left: n,
            },
        );
        for (index, (picked, frame, slot)) in parts.into_iter().enumerate() {
            match picked {
                Ok(idx) => {
                    self.open_if_idle(idx, ctx);
                    // Keyed parts follow redirections; fanned-out ones belong where they went.
                    let resend = slot.map(|s| Resend {
                        frame: frame.clone(),
                        slot: Some(s),
                        hops: 0,
                    });
                    self.push_resend(idx, frame, Dest::Part { gather: id, index }, resend);
                    self.schedule_flush(idx, ctx);
                }
                Err(text) => self.part_reply(id, index, write::error(&text)),
            }
        }
    }

    /// A client's SCAN: to the master its cursor names, with that master's own cursor.
    #[allow(clippy::type_complexity)]
    fn scan_part(
        &mut self,
        frame: Bytes,
        session: u64,
    ) -> Result<((Result<usize, String>, Bytes, Option<u16>), Merge), Bytes> {
        let mut buf = BytesMut::from(&frame[..]);
        let cmd = match RequestParser::new(Default::default()).parse(&mut buf) {
            Ok(Some(c)) => c,
            _ => return Err(write::error("ERR relayer: bad SCAN request")),
        };
        let Some(cursor) = std::str::from_utf8(cmd.arg(1))
            .ok()
            .and_then(|c| c.parse::<u64>().ok())
        else {
            return Err(write::error("ERR invalid cursor"));
        };
        let Some(map) = self.cl().map.as_ref() else {
            let text = format!("ERR relayer: cluster not available ({})", self.cl().last_error);
            return Err(write::error(&text));
        };
        let masters = map.masters.len();
        let (master, own) = crate::cluster::gather::scan_cursor(cursor);
        if master >= masters {
            return Err(Bytes::from_static(b"*2\r\n$1\r\n0\r\n*0\r\n"));
        }
        let node = map.masters[master].clone();
        let own = own.to_string();
        let mut args: Vec<&[u8]> = vec![cmd.arg(0), own.as_bytes()];
        args.extend(cmd.args().skip(2));
        let frame = Command::from_args(&args).into_frame();
        let conns = self.conns_of(&node);
        let idx = conns[(session % conns.len() as u64) as usize];
        Ok(((Ok(idx), frame, None), Merge::ScanOn { master, masters }))
    }

    pub(super) fn part_reply(&mut self, id: u64, index: usize, data: Bytes) {
        let Some(cl) = self.cluster.as_mut() else { return };
        let Some(g) = cl.gathers.get_mut(&id) else { return };
        if g.parts[index].replace(data).is_none() {
            g.left -= 1;
        }
        if g.left == 0 {
            let g = cl.gathers.remove(&id).expect("present");
            let parts: Vec<Bytes> = g.parts.into_iter().map(|p| p.unwrap_or_default()).collect();
            g.to.do_send(Reply {
                seq: g.seq,
                data: merge(&g.merge, &parts),
            });
        }
    }

    /// A reply on a cluster connection: MOVED and ASK are followed (None: sent again), holds
    /// are counted down. Anything else goes on to its destination.
    pub(super) fn cluster_reply(
        &mut self,
        idx: usize,
        mut p: Pending,
        data: &Bytes,
        ctx: &mut Context<Self>,
    ) -> Option<Pending> {
        let slot = p.resend.as_ref().and_then(|r| r.slot);
        let redirect = (data.starts_with(b"-MOVED ") || data.starts_with(b"-ASK "))
            .then(|| parse_redirect(data))
            .flatten();
        let result = match (redirect, p.resend.take()) {
            (Some((ask, rslot, node)), Some(r)) if r.hops < MAX_HOPS => {
                if !ask {
                    if let Some(m) = self.cl().map.as_mut() {
                        m.assign(rslot, node.clone());
                    }
                    // Later commands for the slot, queued behind this one, come back MOVED
                    // too and are sent again in order: hold new ones until then.
                    let behind = self.conns[idx]
                        .pending
                        .iter()
                        .filter(|q| q.resend.as_ref().and_then(|r| r.slot) == Some(rslot))
                        .count();
                    if behind > 0 {
                        let h = self.cl().holds.entry(rslot).or_insert_with(|| Hold {
                            left: 0,
                            queued: VecDeque::new(),
                        });
                        h.left = h.left.max(behind);
                    }
                    self.refresh_soon(ctx);
                }
                let to = self.conns_of(&node)[0];
                self.open_if_idle(to, ctx);
                if ask {
                    let asking = Bytes::from_static(b"*1\r\n$6\r\nASKING\r\n");
                    self.push(to, asking, Dest::Swallow(Swallowed::Asking));
                }
                let frame = r.frame.clone();
                let resend = Resend {
                    frame: r.frame,
                    slot: r.slot,
                    hops: r.hops + 1,
                };
                self.push_resend(to, frame, p.dest, Some(resend));
                self.schedule_flush(to, ctx);
                None
            }
            (Some(_), Some(r)) => {
                warn!(self.settings.log, "too many cluster redirections"; "slot" => r.slot, "hops" => r.hops, "reply" => error_text(data));
                Some(p)
            }
            (_, r) => {
                p.resend = r;
                Some(p)
            }
        };
        if let Some(s) = slot {
            self.count_down_hold(idx, s, ctx);
        }
        result
    }

    /// A command for `slot` came back from connection `idx`: if the slot is held and `idx` is
    /// no longer its node, one fewer to wait for.
    fn count_down_hold(&mut self, idx: usize, slot: u16, ctx: &mut Context<Self>) {
        let cl = self.cl();
        let node = &cl.conn_node[idx];
        let owns = cl.map.as_ref().and_then(|m| m.owner(slot)) == Some(node);
        let Some(h) = cl.holds.get_mut(&slot) else { return };
        if owns {
            return;
        }
        h.left = h.left.saturating_sub(1);
        if h.left == 0 {
            let h = cl.holds.remove(&slot).expect("present");
            for msg in h.queued {
                self.cluster_forward(msg, ctx);
            }
        }
    }

    /// A connection failed: its holds are released (what it owed was answered or parked), and
    /// the map is refreshed (a failover may have happened).
    pub(super) fn cluster_conn_failed(&mut self, idx: usize, ctx: &mut Context<Self>) {
        let node = self.cl().conn_node[idx].clone();
        let held: Vec<u16> = self.cl().holds.keys().copied().collect();
        for s in held {
            let owner = self.cl().map.as_ref().and_then(|m| m.owner(s).cloned());
            if owner.as_ref() != Some(&node) {
                if let Some(h) = self.cl().holds.remove(&s) {
                    for msg in h.queued {
                        self.cluster_forward(msg, ctx);
                    }
                }
            }
        }
        if self.cl().refreshing == Some(idx) {
            self.cl().refreshing = None;
        }
        self.refresh_soon(ctx);
    }
}

/// `-MOVED 3999 127.0.0.1:6381` or `-ASK ...` -> (is ASK, slot, node).
fn parse_redirect(data: &[u8]) -> Option<(bool, u16, Node)> {
    let text = std::str::from_utf8(data.get(1..data.len().checked_sub(2)?)?).ok()?;
    let mut it = text.split(' ');
    let ask = match it.next()? {
        "MOVED" => false,
        "ASK" => true,
        _ => return None,
    };
    let slot: u16 = it.next()?.parse().ok()?;
    let (host, port) = it.next()?.rsplit_once(':')?;
    Some((
        ask,
        slot,
        Node {
            host: host.to_string(),
            port: port.parse().ok()?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects() {
        let n = |p| Node {
            host: "127.0.0.1".into(),
            port: p,
        };
        assert_eq!(
            parse_redirect(b"-MOVED 3999 127.0.0.1:6381\r\n"),
            Some((false, 3999, n(6381)))
        );
        assert_eq!(
            parse_redirect(b"-ASK 1 127.0.0.1:7000\r\n"),
            Some((true, 1, n(7000)))
        );
        assert_eq!(parse_redirect(b"-MOVED x 127.0.0.1:1\r\n"), None);
        assert_eq!(parse_redirect(b"-ERR x\r\n"), None);
    }
}
