//! A single Redis: each connection writes its clients' commands in the order they came, and
//! holds them back while the backend refuses writes for a while.
//!
//! A command goes straight to the connection's output when it can be written now; otherwise it
//! waits in the connection's `queue`, in order: while the connection is not up, while a SELECT
//! of a DB not known to exist on this server is being checked (`select_check`; when refused,
//! the commands for that DB are never sent and get its error), or during a stall.
//!
//! ## Stall lifecycle
//!
//! A write acknowledged early (or a client's barrier) refused with an error that may pass
//! (`delivery::is_transient`: LOADING, BUSY, OOM, READONLY...) did not run. Sending it again
//! later must not let anything newer overtake it, so the connection stalls:
//!
//! - **Draining**: nothing more is written; the replies of what was already written still come.
//!   Writes refused the same way join `again`, in order; writes safe to repeat that ran anyway
//!   (the refusal ended meanwhile) join it too, to run again after the older ones; everything
//!   else is answered as it comes. When nothing written is left unanswered: Waiting.
//! - **Waiting**: a delay (doubling up to `STALL_BACKOFF_MAX`). Then `again` goes to the front
//!   of the queue and the stall probes; after a READONLY (the connection reached a replica) the
//!   connection is opened again first, so that a name that now leads to the new primary is
//!   resolved again, and the probe goes on the new connection.
//! - **Probing**: the first command of the queue is written alone (after its SELECT, itself
//!   checked first when needed). Refused again: Draining (then a longer wait). Accepted: the
//!   stall ends and the queue is written.
//!
//! A new connection with commands queued starts in Probing too, so a backend that restarts
//! and is loading its dataset gets one command, not the whole backlog. Waited commands held by
//! a stall keep their `timeout` (they then get the last refusal, as Redis would have answered);
//! writes acknowledged early held by a stall, or waiting for a backend that cannot be reached,
//! are given up after `retryTimeout` and counted. A connection lost meanwhile cuts off what it
//! owed as ever (`single_cut_off`), and the stall's writes keep their place at the front.

use super::*;
use std::time::Instant;

/// The longest wait between two probes of a stalled connection.
const STALL_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A command accepted for a connection and not written yet.
pub(crate) struct Queued {
    pub body: Body,
    pub dest: Dest,
    /// The DB it runs on (a SELECT goes first when the connection is on another one); None
    /// for a client's own SELECT and for a barrier.
    pub db: Option<u32>,
    /// After it, the connection's DB is not known (a client's SELECT, or one in its MULTI block).
    pub leaves_db_unknown: bool,
    /// The tick it came in.
    pub tick: u64,
}

impl Queued {
    pub fn new(body: Body, dest: Dest, db: Option<u32>, tick: u64) -> Self {
        Queued {
            body,
            dest,
            db,
            leaves_db_unknown: false,
            tick,
        }
    }

    /// A write acknowledged early or a barrier, as it is written again.
    fn again(dest: Dest, tick: u64) -> Self {
        let (body, db) = match &dest {
            Dest::Background { frame, db, .. } => (Body::One(frame.clone()), Some(*db)),
            _ => (Body::One(Bytes::from_static(PING)), None),
        };
        Queued::new(body, dest, db, tick)
    }

    fn is_waited(&self) -> bool {
        matches!(self.dest, Dest::Session { .. } | Dest::SelectCheck { .. })
    }
}

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// The `run_id:` field of an `INFO server` reply's text.
pub(super) fn run_id(text: &str) -> Option<String> {
    identity::field(text, "run_id").map(str::to_string)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Draining,
    Waiting,
    /// `sent`: the probe is written (one command; see the module notes).
    Probing {
        sent: bool,
    },
}

/// See the module notes.
pub(crate) struct Stall {
    /// Written again first, in this order.
    again: VecDeque<Queued>,
    /// The latest refusal: what a waited command held past its timeout gets, and why a write
    /// held past `retryTimeout` is given up. None for a new connection's first probe.
    last: Option<Bytes>,
    phase: Phase,
    backoff: Duration,
    /// A READONLY came: the connection is opened again before the next probe.
    reopen: bool,
    /// A part of the probe (its SELECT, a command of its MULTI block) was refused.
    probe_refused: bool,
    started: Instant,
    /// Writes and barriers sent again, for the log when it ends.
    resent: u64,
}

impl Stall {
    fn new(phase: Phase, last: Option<Bytes>) -> Self {
        Stall {
            again: VecDeque::new(),
            last,
            phase,
            backoff: BACKOFF_FIRST,
            reopen: false,
            probe_refused: false,
            started: Instant::now(),
            resent: 0,
        }
    }

    fn probing(&self) -> bool {
        matches!(self.phase, Phase::Probing { .. })
    }

    /// Nothing waits in it to be written again.
    pub fn is_empty(&self) -> bool {
        self.again.is_empty()
    }
}

/// A single Redis: its connections (`maxConnections` shared ones, each client always on the
/// same one, and the side connection), each writing its clients' commands in order (see
/// above).
pub(crate) struct Single {
    /// The connection for commands that must reach a busy server (`Request::Side`), the last
    /// of `conns`.
    side: usize,
    /// The run_id of the server the connections reached last (None: not known, as when INFO
    /// was refused); the DBs known to exist are forgotten when it changes.
    pub(super) run_id: Option<Option<String>>,
}

impl Backend<Single> {
    /// A backend for the single Redis `settings.addr`.
    pub(crate) fn single(settings: BackendSettings, known: Arc<KnownDbs>) -> Self {
        let n = settings.connections.max(1);
        let mut conns: Vec<Conn> = (0..n).map(|_| Conn::new(settings.addr.clone())).collect();
        let mut side = Conn::new(settings.addr.clone());
        side.state = State::Idle;
        conns.push(side);
        Backend::with(
            Single {
                side: n,
                run_id: None,
            },
            settings,
            known,
            conns,
        )
    }
}

impl Shape for Single {
    fn started(b: &mut Backend<Self>, ctx: &mut Context<Backend<Self>>) {
        for idx in 0..b.conns.len() {
            // The side connection opens when first used.
            if !matches!(b.conns[idx].state, State::Idle) {
                b.connect(idx, ctx);
            }
        }
    }

    fn forward(b: &mut Backend<Self>, msg: Forward, ctx: &mut Context<Backend<Self>>) {
        let side = b.shape.side;
        let idx = match msg.request {
            Request::Side(_) => side,
            _ => (msg.session % side as u64) as usize,
        };
        b.forward_on(idx, msg, ctx);
    }

    fn connected(b: &mut Backend<Self>, idx: usize, ctx: &mut Context<Backend<Self>>) {
        b.single_connected(idx, ctx);
    }

    fn reply(b: &mut Backend<Self>, idx: usize, p: Pending, data: Bytes, ctx: &mut Context<Backend<Self>>) {
        if let Some((dest, data)) = b.single_reply(idx, p, data, ctx) {
            b.deliver(idx, dest, data, ctx);
        }
        b.stall_progress(idx, ctx);
    }

    fn swallowed(
        b: &mut Backend<Self>,
        idx: usize,
        what: Swallowed,
        data: &Bytes,
        ctx: &mut Context<Backend<Self>>,
    ) {
        match what {
            Swallowed::Select(db) if is_error(data) => b.select_refused(idx, db, data, ctx),
            Swallowed::Select(db) => b.select_accepted(idx, db, ctx),
            Swallowed::Info => {
                let text = identity::info_text(data);
                b.identity_reply(text.as_deref());
                b.identified(idx, text.as_deref().and_then(run_id), ctx);
            }
            Swallowed::Commands => b.commands_reply(idx, data),
            // The rest is the cluster's, or a MULTI block's part that ran.
            Swallowed::Slots | Swallowed::Asking | Swallowed::BlockPart => {}
        }
    }

    fn part(_: &mut Backend<Self>, _: u64, _: usize, _: Bytes) {
        unreachable!("requests are split only on a cluster")
    }

    fn cut_off(b: &mut Backend<Self>, lost: Lost, _ctx: &mut Context<Backend<Self>>) -> usize {
        b.single_cut_off(lost.idx, lost.owed, lost.written, &lost.err)
    }

    fn conn_failed(_: &mut Backend<Self>, _: usize, _: &mut Context<Backend<Self>>) {}

    fn tick(b: &mut Backend<Self>, ctx: &mut Context<Backend<Self>>) {
        if b.tick % 10 == 0 {
            b.single_tick(ctx);
        }
    }

    fn has_waiters(_: &Backend<Self>) -> bool {
        false
    }

    fn background_held(b: &Backend<Self>) -> usize {
        b.single_background_held()
    }

    fn background_applied(_: &Backend<Self>) -> usize {
        0
    }

    fn retire(b: &mut Backend<Self>, err: &Arc<RelayerError>) {
        b.single_retire(err);
    }
}

impl Backend<Single> {
    /// Writes `msg` on connection `idx` of a single Redis (queued first when the connection
    /// cannot take it now, see `single`).
    pub(crate) fn forward_on(&mut self, idx: usize, msg: Forward, ctx: &mut Context<Self>) {
        if matches!(self.conns[idx].state, State::Idle) {
            self.connect(idx, ctx);
        }
        let (to, seq) = (msg.reply_to, msg.seq);
        // While the backend is down, commands waited on fail fast; what must reach it later
        // (writes acknowledged early, a client's barrier) waits.
        let waits = matches!(msg.request, Request::Background { .. } | Request::Barrier);
        if let (State::Down { reason }, false) = (&self.conns[idx].state, waits) {
            let err = Arc::new(RelayerError::Unavailable {
                backend: self.conns[idx].addr.to_string(),
                reason: reason.clone(),
            });
            self.send_failure(to, seq, &err);
            return;
        }
        let tick = self.tick;
        let db = Some(msg.db);
        let q = match msg.request {
            // Copied apart from the client's read buffer, which it would otherwise pin while
            // it waits.
            Request::Background { frame, idempotent } => {
                let frame = Bytes::copy_from_slice(&frame);
                let dest = Dest::Background {
                    frame: frame.clone(),
                    db: msg.db,
                    idempotent,
                    since: tick,
                };
                Queued::new(Body::One(frame), dest, db, tick)
            }
            Request::One(frame) | Request::Side(frame) => {
                Queued::new(Body::One(frame), Dest::Session { to, seq }, db, tick)
            }
            // A PING behind everything the client sent before on this connection.
            Request::Barrier => Queued::new(
                Body::One(Bytes::from_static(b"*1\r\n$4\r\nPING\r\n")),
                Dest::Barrier { to, seq },
                None,
                tick,
            ),
            // Until the answer, the connection's DB is whatever Redis decided.
            Request::Select(db, frame) => {
                let mut q = Queued::new(Body::One(frame), Dest::SelectCheck { to, seq, db }, None, tick);
                q.leaves_db_unknown = true;
                q
            }
            Request::Block { frames, changes_db } => {
                let mut q = Queued::new(Body::Block(frames), Dest::Session { to, seq }, db, tick);
                q.leaves_db_unknown = changes_db;
                q
            }
            Request::Gather { .. } | Request::FanOut { .. } => {
                unreachable!("gathered requests only exist on a cluster")
            }
        };
        self.submit(idx, q, ctx);
    }
}

impl Conn {
    /// Whether a command may be written now (see the module notes).
    fn can_write(&self) -> bool {
        matches!(self.state, State::Up)
            && self.select_check.is_none()
            && self
                .stall
                .as_ref()
                .is_none_or(|s| s.phase == Phase::Probing { sent: false })
    }
}

impl Backend<Single> {
    /// Writes `q` on connection `idx` now if it can, else queues it behind what waits.
    pub(super) fn submit(&mut self, idx: usize, q: Queued, ctx: &mut Context<Self>) {
        let c = &mut self.conns[idx];
        if c.queue.is_empty() && c.can_write() {
            self.write_entry(idx, q);
        } else {
            c.queue.push_back(q);
        }
        self.schedule_flush(idx, ctx);
    }

    /// Writes what the queue holds, as far as the connection can take it.
    fn pump(&mut self, idx: usize, ctx: &mut Context<Self>) {
        while self.conns[idx].can_write() {
            let Some(q) = self.conns[idx].queue.pop_front() else {
                break;
            };
            self.write_entry(idx, q);
        }
        self.schedule_flush(idx, ctx);
    }

    /// Writes `q`, after a SELECT when the connection is on another DB. A SELECT of a DB not
    /// known to exist is written alone: `q` goes back to the front of the queue until its
    /// answer.
    fn write_entry(&mut self, idx: usize, q: Queued) {
        if let Some(db) = q.db.filter(|&db| self.conns[idx].db != Some(db)) {
            self.push(idx, write::select(db), Dest::Swallow(Swallowed::Select(db)));
            let c = &mut self.conns[idx];
            c.db = Some(db);
            if c.identifying || !self.known.contains(db) {
                c.select_check = Some(db);
                c.queue.push_front(q);
                return;
            }
        }
        let Queued {
            body,
            dest,
            leaves_db_unknown,
            ..
        } = q;
        match body {
            Body::One(frame) if matches!(dest, Dest::Session { .. }) => {
                let db = self.conns[idx].db;
                self.push(idx, frame.clone(), dest);
                if let Some(p) = self.conns[idx].up.pending.back_mut() {
                    p.again = Some((frame, db));
                }
            }
            Body::One(frame) => self.push(idx, frame, dest),
            Body::Block(frames) => {
                let last = frames.len() - 1;
                let mut dest = Some(dest);
                for (i, f) in frames.into_iter().enumerate() {
                    let d = match i == last {
                        true => dest.take().expect("the last frame"),
                        false => Dest::Swallow(Swallowed::BlockPart),
                    };
                    self.push(idx, f, d);
                }
            }
        }
        let c = &mut self.conns[idx];
        if leaves_db_unknown {
            c.db = None;
        }
        if let Some(st) = c
            .stall
            .as_mut()
            .filter(|s| s.phase == Phase::Probing { sent: false })
        {
            st.phase = Phase::Probing { sent: true };
            if let Some(p) = c.up.pending.back_mut() {
                p.probe = true;
            }
        }
    }

    /// The server the connection reached says who it is (None: INFO refused, an ACL user
    /// without it): a restarted server (or another one behind the same name) may have fewer
    /// databases, so the DBs known to exist are forgotten.
    pub(super) fn identified(&mut self, idx: usize, run_id: Option<String>, ctx: &mut Context<Self>) {
        self.conns[idx].identifying = false;
        let changed = match &self.shape.run_id {
            None => false,
            Some(before) => run_id.is_none() || *before != run_id,
        };
        if changed {
            info!(self.settings.log, "the backend is another server (or a restarted one) now: DBs other than 0 are checked again";
                "backend" => %self.conns[idx].addr, "run_id" => run_id.as_deref().unwrap_or("(not known)"));
            self.known.forget_all();
        }
        self.shape.run_id = Some(run_id);
        // The connection answered: it works.
        self.ask_commands(idx, ctx);
    }

    /// A connection is up: what waits for it is written, the first command alone (a probe).
    pub(super) fn single_connected(&mut self, idx: usize, ctx: &mut Context<Self>) {
        // Who answers, asked first and not waited for: only SELECTs wait (see `identifying`).
        self.push(
            idx,
            Bytes::from_static(identity::INFO_SERVER),
            Dest::Swallow(Swallowed::Info),
        );
        let c = &mut self.conns[idx];
        c.identifying = true;
        c.db = Some(0);
        match c.stall.as_mut() {
            // Opened again after a READONLY: the stall's writes go first.
            Some(st) => {
                for q in std::mem::take(&mut st.again).into_iter().rev() {
                    c.queue.push_front(q);
                }
                st.phase = Phase::Probing { sent: false };
                st.probe_refused = false;
            }
            None if !c.queue.is_empty() => c.stall = Some(Stall::new(Phase::Probing { sent: false }, None)),
            None => {}
        }
        self.pump(idx, ctx);
    }

    /// A reply on connection `idx` of a single Redis: None when the command is held to be sent
    /// again, else where the reply goes. Drives the stall (see the module notes).
    pub(super) fn single_reply(
        &mut self,
        idx: usize,
        p: Pending,
        data: Bytes,
        _ctx: &mut Context<Self>,
    ) -> Option<(Dest, Bytes)> {
        let transient = delivery::is_transient(&data);
        if transient && delivery::is_readonly(&data) {
            self.stall_begin(idx, &data).reopen = true;
        }
        let tick = self.tick;
        let draining = self.conns[idx]
            .stall
            .as_ref()
            .is_some_and(|s| s.phase == Phase::Draining);
        match &p.dest {
            // Did not run: sent again, in order.
            Dest::Background { .. } | Dest::Barrier { .. } if transient => {
                let code = String::from_utf8_lossy(delivery::code(&data)).into_owned();
                self.settings.metrics.retried(&code);
                let st = self.stall_begin(idx, &data);
                st.again.push_back(Queued::again(p.dest, tick));
                st.resent += 1;
                if p.probe {
                    st.phase = Phase::Draining;
                }
                return None;
            }
            // Ran after an older write of this connection that did not: it runs again after
            // that one, which would otherwise overwrite it. A barrier must not pass either.
            Dest::Background { idempotent: true, .. } | Dest::Barrier { .. }
                if draining && !is_error(&data) =>
            {
                let st = self.conns[idx].stall.as_mut().expect("draining");
                st.again.push_back(Queued::again(p.dest, tick));
                st.resent += 1;
                return None;
            }
            // Did not run either, behind writes that did not: it waits behind them.
            Dest::Session { .. } if transient && draining && p.again.is_some() => {
                let (frame, db) = p.again.expect("checked");
                let st = self.conns[idx].stall.as_mut().expect("draining");
                st.again
                    .push_back(Queued::new(Body::One(frame), p.dest, db, p.tick));
                return None;
            }
            Dest::Swallow(Swallowed::Select(db)) if transient => {
                let db = *db;
                let c = &mut self.conns[idx];
                c.db = None;
                if c.select_check == Some(db) {
                    c.select_check = None;
                }
                let st = self.stall_begin(idx, &data);
                match st.phase {
                    Phase::Probing { sent: false } => st.phase = Phase::Draining,
                    Phase::Probing { sent: true } => st.probe_refused = true,
                    _ => {}
                }
                return None;
            }
            Dest::Swallow(Swallowed::BlockPart) if transient => {
                if let Some(st) = self.conns[idx].stall.as_mut().filter(|s| s.probing()) {
                    st.probe_refused = true;
                }
            }
            _ => {}
        }
        if p.probe {
            let refused = transient || self.conns[idx].stall.as_ref().is_some_and(|s| s.probe_refused);
            if let Some(st) = self.conns[idx].stall.as_mut() {
                if refused {
                    st.phase = Phase::Draining;
                    if transient {
                        st.last = Some(data.clone());
                    }
                } else {
                    self.stall_end(idx);
                }
            }
        }
        Some((p.dest, data))
    }

    /// The connection's stall, begun now if there is none, with `reply` its latest refusal.
    fn stall_begin(&mut self, idx: usize, reply: &Bytes) -> &mut Stall {
        let c = &mut self.conns[idx];
        let st = c.stall.get_or_insert_with(|| Stall::new(Phase::Draining, None));
        // The first refusal of this stall (a new connection's probe has seen none yet).
        if st.last.is_none() {
            if self.stall_log.allow() {
                warn!(self.settings.log, "backend refused a command with an error that may pass: the connection's commands are held and sent again in order once it accepts them";
                    "backend" => %c.addr, "conn" => idx, "error" => error_text(reply));
            }
            self.settings.metrics.stalls.increment(1);
        }
        st.last = Some(reply.clone());
        st
    }

    fn stall_end(&mut self, idx: usize) {
        let Some(st) = self.conns[idx].stall.take() else {
            return;
        };
        if st.last.is_some() && self.stall_log.allow() {
            info!(self.settings.log, "backend accepts commands again";
                "backend" => %self.conns[idx].addr, "conn" => idx, "held_s" => st.started.elapsed().as_secs_f64(),
                "sent_again" => st.resent);
        }
    }

    /// After each reply: a stall whose connection owes nothing more waits, then probes.
    pub(super) fn stall_progress(&mut self, idx: usize, ctx: &mut Context<Self>) {
        let c = &mut self.conns[idx];
        let Some(st) = c.stall.as_mut() else {
            // A probe accepted: what waited goes.
            if !c.queue.is_empty() {
                self.pump(idx, ctx);
            }
            return;
        };
        if st.phase != Phase::Draining || !c.up.pending.is_empty() {
            return;
        }
        st.phase = Phase::Waiting;
        let delay = st.backoff;
        st.backoff = (st.backoff * 2).min(STALL_BACKOFF_MAX);
        let generation = c.up.generation;
        ctx.run_later(delay, move |act, ctx| {
            if act.conns[idx].up.generation == generation {
                act.stall_probe(idx, ctx);
            }
        });
    }

    /// The wait is over: the stall's writes go to the front of the queue, and the first
    /// command of the queue is written alone (on a new connection after a READONLY).
    fn stall_probe(&mut self, idx: usize, ctx: &mut Context<Self>) {
        self.expire_queued(idx);
        let c = &mut self.conns[idx];
        let Some(st) = c.stall.as_mut().filter(|s| s.phase == Phase::Waiting) else {
            return;
        };
        if std::mem::take(&mut st.reopen) {
            debug!(self.settings.log, "connection reached a replica (READONLY): opening it again"; "backend" => %c.addr, "conn" => idx);
            if let Some(h) = c.reader.take() {
                ctx.cancel_future(h);
            }
            self.connect(idx, ctx);
            return;
        }
        for q in std::mem::take(&mut st.again).into_iter().rev() {
            c.queue.push_front(q);
        }
        st.phase = Phase::Probing { sent: false };
        st.probe_refused = false;
        if c.queue.is_empty() {
            self.stall_end(idx);
        }
        self.pump(idx, ctx);
    }

    /// A SELECT the relayer wrote was answered without error.
    pub(super) fn select_accepted(&mut self, idx: usize, db: u32, ctx: &mut Context<Self>) {
        self.known.insert(db);
        let c = &mut self.conns[idx];
        if c.select_check == Some(db) {
            c.select_check = None;
            self.pump(idx, ctx);
        }
    }

    /// A SELECT the relayer wrote was refused, and not for a while: the DB does not exist on
    /// this server. What waited for it is never sent, and gets its error.
    pub(super) fn select_refused(&mut self, idx: usize, db: u32, reply: &Bytes, ctx: &mut Context<Self>) {
        let c = &mut self.conns[idx];
        c.db = None;
        self.known.forget(db);
        if c.select_check != Some(db) {
            error!(self.settings.log, "backend refused a SELECT issued by the relayer"; "backend" => %c.addr, "db" => db, "error" => error_text(reply));
            return;
        }
        c.select_check = None;
        let n = c.queue.iter().take_while(|q| q.db == Some(db)).count();
        let never_sent: Vec<Queued> = c.queue.drain(..n).collect();
        for q in never_sent {
            match q.dest {
                Dest::Background { frame, .. } => {
                    self.give_back(&frame);
                    self.refused_write(idx, &frame, reply);
                }
                Dest::Session { to, seq } | Dest::SelectCheck { to, seq, .. } | Dest::Barrier { to, seq } => {
                    self.send_reply(to, seq, reply.clone())
                }
                Dest::Swallow(_) | Dest::Part { .. } => {}
            }
        }
        self.pump(idx, &mut *ctx);
    }

    /// What connection `idx` owed when it was lost (`owed`, and `written` of its bytes left):
    /// waited commands get `err`, those still queued too; writes acknowledged early go back to
    /// the front of the queue when sending them again is safe (not written, or idempotent),
    /// after the stall's, and barriers with them. Returns how many went back.
    pub(super) fn single_cut_off(
        &mut self,
        idx: usize,
        owed: VecDeque<Pending>,
        written: u64,
        err: &Arc<RelayerError>,
    ) -> usize {
        let c = &mut self.conns[idx];
        c.select_check = None;
        let held: VecDeque<Queued> = c.stall.take().map(|s| s.again).unwrap_or_default();
        let queued = std::mem::take(&mut c.queue);
        let tick = self.tick;
        let mut again = 0;
        let mut front = VecDeque::new();
        // The stall's are the oldest: waited ones get `err` like those written, the others
        // stay first.
        for q in held {
            match q.dest {
                Dest::Session { to, seq } | Dest::SelectCheck { to, seq, .. } => {
                    self.send_failure(to, seq, err)
                }
                _ => front.push_back(q),
            }
        }
        for p in owed {
            match p.dest {
                Dest::Session { to, seq } | Dest::SelectCheck { to, seq, .. } => {
                    self.send_failure(to, seq, err)
                }
                // A command cut off before all its bytes left never ran: sending it again is safe.
                Dest::Background { idempotent, .. } if idempotent || p.end > written => {
                    again += 1;
                    front.push_back(Queued::again(p.dest, tick));
                }
                Dest::Background { frame, .. } => self.unknown_outcome(idx, &frame),
                Dest::Barrier { .. } => front.push_back(Queued::again(p.dest, tick)),
                Dest::Swallow(_) | Dest::Part { .. } => {}
            }
        }
        for q in queued {
            match q.dest {
                Dest::Session { to, seq } | Dest::SelectCheck { to, seq, .. } => {
                    self.send_failure(to, seq, err)
                }
                _ => front.push_back(q),
            }
        }
        self.conns[idx].queue = front;
        again
    }

    /// Every second: what a stall or an unreachable backend held too long is given up.
    pub(super) fn single_tick(&mut self, _ctx: &mut Context<Self>) {
        for idx in 0..self.conns.len() {
            let c = &self.conns[idx];
            if c.stall.is_some() || !matches!(c.state, State::Up) {
                self.expire_queued(idx);
            }
        }
    }

    /// Writes acknowledged early held past `retryTimeout` are given up (counted, with the last
    /// refusal's code, or `unavailable`); waited commands held by a stall past `timeout` get
    /// the last refusal.
    fn expire_queued(&mut self, idx: usize) {
        let tick = self.tick;
        let retry = self.retry_ticks;
        let timeout = self.timeout_ticks;
        let c = &mut self.conns[idx];
        let last = c.stall.as_ref().and_then(|s| s.last.clone());
        let stalled = c.stall.is_some() && matches!(c.state, State::Up);
        let why = match &last {
            Some(l) if stalled => String::from_utf8_lossy(delivery::code(l)).into_owned(),
            _ => "unavailable".to_string(),
        };
        let expired = |q: &Queued| match &q.dest {
            Dest::Background { since, .. } => tick >= since + retry,
            _ if q.is_waited() => stalled && timeout.is_some_and(|t| tick >= q.tick + t),
            _ => false,
        };
        let mut gone = Vec::new();
        for list in [Some(&mut c.queue), c.stall.as_mut().map(|s| &mut s.again)]
            .into_iter()
            .flatten()
        {
            if list.iter().any(expired) {
                let (out, keep): (VecDeque<Queued>, VecDeque<Queued>) =
                    std::mem::take(list).into_iter().partition(expired);
                *list = keep;
                gone.extend(out);
            }
        }
        for q in gone {
            match q.dest {
                Dest::Background { frame, .. } => {
                    let backend = self.conns[idx].addr.clone();
                    self.expired(&backend, &frame, &why)
                }
                Dest::Session { to, seq } | Dest::SelectCheck { to, seq, .. } => match &last {
                    // The backend's last refusal is the answer it would have given.
                    Some(refusal) => self.send_reply(to, seq, refusal.clone()),
                    None => self.send_failure(to, seq, &Arc::new(RelayerError::QueuedTooLong)),
                },
                _ => {}
            }
        }
        self.check_drained();
    }

    /// Writes acknowledged early not written on a single Redis: queued, or held by a stall.
    pub(super) fn single_background_held(&self) -> usize {
        let bg = |d: &Dest| matches!(d, Dest::Background { .. });
        self.conns
            .iter()
            .map(|c| {
                c.queue.iter().filter(|q| bg(&q.dest)).count()
                    + c.stall
                        .as_ref()
                        .map_or(0, |s| s.again.iter().filter(|q| bg(&q.dest)).count())
            })
            .sum()
    }

    /// A reload retired the target: what is queued or held gets `err`, writes acknowledged
    /// early are let go (the drain counted them as lost).
    pub(super) fn single_retire(&mut self, err: &Arc<RelayerError>) {
        for idx in 0..self.conns.len() {
            let c = &mut self.conns[idx];
            let mut held: Vec<Queued> = std::mem::take(&mut c.queue).into();
            if let Some(st) = c.stall.take() {
                held.extend(st.again);
            }
            for q in held {
                match q.dest {
                    Dest::Background { frame, .. } => self.give_back(&frame),
                    Dest::Session { to, seq }
                    | Dest::SelectCheck { to, seq, .. }
                    | Dest::Barrier { to, seq } => self.send_failure(to, seq, err),
                    Dest::Swallow(_) | Dest::Part { .. } => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_id_of_an_info_reply() {
        let text = "# Server\r\nredis_version:7.0.15\r\nrun_id:4f0e1c\r\ntcp_port:6379\r\n";
        assert_eq!(super::run_id(text).as_deref(), Some("4f0e1c"));
        assert_eq!(super::run_id("# Server\r\nrun_id:\r\n"), None);
        assert_eq!(super::run_id("# Server\r\nrun_idx:1\r\n"), None);
    }
}
