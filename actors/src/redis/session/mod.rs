//! Session actor: one client connection. Parses its requests, keeps its own state (DB, MULTI
//! block, name), answers what the relayer answers itself and forwards the rest to the target.
//!
//! Replies leave in request order through `slots`, one per request: a local reply waits
//! behind the forwarded ones before it.

mod control;
mod local;
mod multi;
mod outbox;
mod own;

use super::auth::{self, Password};
use super::backend::{BackendAddr, Identity, KnownDbs};
use super::dedicated::{self, Pool, ReplyFor};
use super::messages::{Forward, FromDedicated, Replies, ReplyTo, Request};
use super::smart::{Budget, Table};
use crate::cluster::placement::{self, Placement};
use crate::command::{self, Kind, Role, Spec};
use crate::compress::{decode_reply_logged, Compression};
use crate::error::RelayerError;
use crate::io::{
    flush_client, is_query_buffer_limit, ClientOut, ClientRequests, FlushClient, Gate, Parsed, ReadAhead,
    ReadHalf, WriteHalf, WritesToClient,
};
use crate::learned_commands::Learned;
use crate::metrics::RelayerMetrics;
use crate::resp::request::{Command, Limits, RequestError, RequestParser};
use crate::resp::write::{self, error, unknown_subcommand, wrong_arity};
use crate::route::{CloseClient, Frontend, Stopping};
use actix::prelude::*;
use bytes::Bytes;
use local::ReplyMode;
use multi::{Multi, Queued};
use outbox::{Ack, Batch, Sent, Slots};
use own::{Held, Own};
use slog::{debug, info, Logger};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Replies buffered for a client that does not read them; above this the session stops
/// reading its requests.
const OUT_HIGH: usize = 1024 * 1024;

pub struct SessionSettings {
    /// Requests whose replies are not yet written; above it the client is not read.
    pub max_pending: usize,
    pub limits: Limits,
    /// The DB a new client starts on (the `/db` of a redis:// URL).
    pub initial_db: u32,
    pub known_dbs: Arc<KnownDbs>,
    /// Smart mode: writes acknowledged at once.
    pub smart: Option<Smart>,
    /// Clients must AUTH with it first (the listener's `password`).
    pub password: Option<Password>,
    /// The backend is a Redis Cluster: commands are routed by the slot of their keys.
    pub cluster: bool,
    /// What the backend said of its commands (its COMMAND), once it did: where the keys of a
    /// command the built-in table does not know are.
    pub commands: Arc<Learned>,
    /// What the backend said of itself (its version, for HELLO).
    pub identity: Arc<Identity>,
    /// compress/uncompress/gzip/gunzip: requests compressed as the original did, replies decoded.
    pub compression: Option<Compression>,
    pub metrics: RelayerMetrics,
    pub log: Logger,
}

/// What a Redis listener's clients talk to; a reload may replace it.
#[derive(Clone)]
pub struct Current {
    pub target: BackendAddr,
    pub settings: Arc<SessionSettings>,
    /// Connections of the target's backend held for one client each.
    pub dedicated: Rc<Pool>,
    pub max_clients: usize,
}

pub type Route = crate::route::Route<Current, Session>;

impl Frontend for Route {
    fn clients(&self) -> usize {
        crate::route::Route::clients(self)
    }

    fn max_clients(&self) -> usize {
        self.current().max_clients
    }

    fn start_session(self: Rc<Self>, id: u64, read: ReadHalf, write: WriteHalf) {
        Session::start(id, read, write, self);
    }

    fn close_all(&self) {
        crate::route::Route::close_all(self)
    }

    fn stopping(&self) {
        crate::route::Route::stopping_all(self)
    }
}

pub struct Smart {
    pub table: Table,
    pub budget: Arc<Budget>,
}

const RESET_REPLY: &[u8] = b"+RESET\r\n";

/// The request numbers of barriers start here: a barrier is a PING through the shared
/// connection whose reply says that every command the client sent before has run. Each has a
/// number of its own, so that the reply to one whose command failed meanwhile (its dedicated
/// connection lost) cannot release the command of the next.
const BARRIER_BASE: u64 = 1 << 63;

/// A reply the session must see before it reads further: it decides the session's DB.
enum Awaiting {
    Select {
        seq: u64,
        db: u32,
    },
    /// EXEC of a block that changes the client's DB or name, or whose array gets the
    /// relayer's own replies (`multi::splice`), if it runs.
    Exec {
        seq: u64,
        db: Option<u32>,
        local: Vec<(usize, Bytes)>,
        name: Option<Option<Bytes>>,
    },
}

pub struct Session {
    id: u64,
    /// Its entry among the relayer's clients (CLIENT KILL, CLIENT UNBLOCK). First, so that it
    /// is gone before the client's socket closes.
    registration: crate::redis::clients::Registration,
    /// Where the target and settings below come from; a reload may replace them.
    route: Rc<Route>,
    route_generation: u64,
    settings: Arc<SessionSettings>,
    target: BackendAddr,
    out: ClientOut,
    slots: Slots,
    db: u32,
    multi: Option<Box<Multi>>,
    name: Option<Bytes>,
    /// CLIENT REPLY's mode.
    reply_mode: ReplyMode,
    /// A CLIENT UNBLOCK (request number, whom, with an error) waiting for the client's
    /// earlier commands (`control.rs`).
    unblock_after: Option<(u64, Recipient<crate::redis::clients::Unblock>, bool)>,
    gate: Rc<Gate>,
    awaiting: Option<Box<Awaiting>>,
    /// No more requests are read; the session ends once every reply is written.
    closing: bool,
    /// The relayer is stopping: new commands get `RelayerError::ShuttingDown`.
    stopping: bool,
    /// Something was sent to `target`: when a reload replaces it, a barrier goes there first.
    sent_to_target: bool,
    /// The client speaks RESP3 (its HELLO 3): its commands go to the target's RESP3 twin, and
    /// the relayer's own replies are written in RESP3.
    resp3: bool,
    /// Its protocol changed since `target` was taken: the next command goes to the other twin,
    /// after a barrier on this one.
    protocol_changed: bool,
    /// A reload replaced the target: the request number of the barrier sent to the old one,
    /// and the command that waits for its answer before it goes to the new one.
    switching: Option<Box<(u64, Command)>>,
    /// The client closed its side (its request stream ended).
    input_ended: bool,
    /// True until the client authenticates, when the listener has a password; shared with the
    /// parser, which applies Redis' tighter limits meanwhile.
    unauthenticated: Arc<AtomicBool>,
    pool: Rc<Pool>,
    /// The client's own connection, while it needs one.
    own: Option<Box<Own>>,
    /// Barriers sent so far (see `BARRIER_BASE`).
    barriers: u64,
    /// The connection holding the client's WATCH was lost (why): its next EXEC fails, as the
    /// keys are no longer watched.
    watch_lost: Option<String>,
    /// This session's address, made once: `ctx.address()` allocates a new sender each time
    /// (and drops it after), and every forwarded command carries one.
    me: ReplyTo,
    /// Commands for the target gathered from the requests of one read, sent as one message
    /// at `Parsed::Idle`, and before anything else leaves for the target or the dedicated
    /// connection (`flush_forwards`). Each has its slot, so the session cannot end while they
    /// wait.
    batch: Batch,
}

impl Session {
    pub fn start(id: u64, read: ReadHalf, write: WriteHalf, route: Rc<Route>) -> Addr<Session> {
        Session::create(move |ctx| {
            route.register(id, ctx.address().downgrade());
            let registration = control::register(id, &read, route.current().dedicated.backend(), ctx);
            route.current().settings.metrics.clients.increment(1);
            let current = route.current();
            let (target, settings, pool) = (current.target, current.settings, current.dedicated);
            let gate = Gate::new();
            let unauthenticated = Arc::new(AtomicBool::new(settings.password.is_some()));
            let parser = RequestParser::new(settings.limits).with_auth_flag(unauthenticated.clone());
            let limit = settings.limits.query_buffer_limit;
            let requests = ClientRequests::new(ReadAhead::new(read), parser, gate.clone(), limit)
                .with_auth_flag(unauthenticated.clone());
            ctx.add_stream(requests);
            Session {
                id,
                route_generation: route.generation(),
                route,
                db: settings.initial_db,
                settings,
                target,
                out: ClientOut::new(write),
                slots: Slots::default(),
                multi: None,
                name: None,
                reply_mode: ReplyMode::On,
                unblock_after: None,
                gate,
                awaiting: None,
                closing: false,
                stopping: false,
                sent_to_target: false,
                resp3: false,
                protocol_changed: false,
                switching: None,
                input_ended: false,
                unauthenticated,
                pool,
                own: None,
                barriers: 0,
                watch_lost: None,
                me: Arc::new(ctx.address().recipient()),
                batch: Batch::default(),
                registration,
            }
        })
    }

    /// A reply of the relayer's own.
    fn reply(&mut self, data: impl Into<Bytes>, ctx: &mut Context<Self>) {
        self.settings.metrics.local.increment(1);
        self.push_reply(data.into(), ctx);
    }

    fn push_reply(&mut self, data: Bytes, ctx: &mut Context<Self>) {
        self.slots.push_ready(data);
        self.drain(ctx);
    }

    fn reply_static(&mut self, data: &'static [u8], ctx: &mut Context<Self>) {
        self.reply(Bytes::from_static(data), ctx);
    }

    fn forward(&mut self, request: Request, ctx: &mut Context<Self>) -> u64 {
        self.forward_to(request, None, ctx)
    }

    /// `forward`, for the keys of `slot` on a cluster.
    fn forward_to(&mut self, request: Request, slot: Option<u16>, ctx: &mut Context<Self>) -> u64 {
        self.forward_after(Vec::new(), request, slot, ctx)
    }

    /// `forward_to`, with frames of the relayer's own written first on the dedicated
    /// connection (there is one when `before` is not empty).
    fn forward_after(
        &mut self,
        before: Vec<(Bytes, ReplyFor)>,
        request: Request,
        slot: Option<u16>,
        ctx: &mut Context<Self>,
    ) -> u64 {
        self.settings.metrics.forwarded.increment(1);
        if self.own.is_some() {
            // What the shared connection was sent first leaves first.
            self.flush_forwards(ctx);
        }
        let seq = self.slots.next_seq();
        if let Some(own) = &mut self.own {
            let mut frames = before;
            match request {
                Request::One(f)
                | Request::Select(_, f)
                | Request::Side(f)
                | Request::Background { frame: f, .. } => frames.push((f, ReplyFor::Client(seq))),
                Request::Barrier => unreachable!("barriers go to the target itself"),
                // Cluster relayers have no dedicated connections; but one taken before a reload
                // that switched this relayer to a cluster is kept until released.
                Request::Gather { .. } | Request::FanOut { .. } => {
                    self.slots.push_ready(RelayerError::DedicatedOnCluster.resp());
                    self.drain(ctx);
                    return seq;
                }
                Request::Block { frames: block, .. } => {
                    let last = block.len() - 1;
                    frames.extend(block.into_iter().enumerate().map(|(i, f)| {
                        let dest = if i == last {
                            ReplyFor::Client(seq)
                        } else {
                            ReplyFor::Swallow("MULTI")
                        };
                        (f, dest)
                    }));
                }
            };
            own.send(frames, seq);
            self.slots.push_owed();
            self.update_gate();
            return seq;
        }
        self.queue_forward(seq, request, slot);
        self.slots.push_owed();
        self.update_gate();
        seq
    }

    fn queue_forward(&mut self, seq: u64, request: Request, slot: Option<u16>) {
        self.sent_to_target = true;
        let f = Forward {
            reply_to: self.me.clone(),
            session: self.id,
            seq,
            db: self.db,
            request,
            slot,
        };
        self.batch.add(f, &self.target);
    }

    /// Smart mode: `request` (the background write, or its parts) is queued for the target, and
    /// `reply` takes its place among the client's replies once the target has it.
    fn acknowledge<P>(&mut self, parts: P, reply: &'static [u8], len: u64)
    where
        P: ExactSizeIterator<Item = (Request, Option<u16>)>,
    {
        self.batch.several(parts.len());
        for (request, slot) in parts {
            self.queue_forward(0, request, slot);
        }
        let seq = self.slots.push_owed();
        self.batch.ack(Ack { seq, reply, len });
        self.update_gate();
    }

    /// Sends what the batch gathered, in one message; see `send_outgoing`.
    fn flush_forwards(&mut self, ctx: &mut Context<Self>) {
        if !self.batch.is_empty() && self.send_outgoing() {
            self.drain(ctx);
        }
    }

    /// Sends the batch to the target and fills the slots that this answers: the
    /// acknowledgments of smart writes, or, from a target a reload retired (its replacement is
    /// in the route already), the error every command gets. Returns whether a slot was filled.
    fn send_outgoing(&mut self) -> bool {
        let acks = match self.batch.send(&self.target) {
            Sent::Nothing => return false,
            Sent::Taken(acks) => {
                for a in &acks {
                    self.settings.metrics.acknowledged.increment(1);
                    self.set_reply(a.seq, Bytes::from_static(a.reply));
                }
                acks
            }
            Sent::Refused(refused, acks) => {
                for f in refused {
                    if !matches!(f.request, Request::Background { .. }) {
                        self.set_reply(f.seq, RelayerError::TargetReplaced.resp());
                    }
                }
                for a in &acks {
                    if let Some(smart) = &self.settings.smart {
                        smart.budget.give_back(a.len);
                    }
                    self.set_reply(a.seq, RelayerError::TargetReplaced.resp());
                }
                acks
            }
        };
        self.batch.recycle(acks);
        true
    }

    /// Moves the replies that are ready, in order, to the output buffer.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        while let Some(data) = self.slots.pop_ready() {
            self.out.push_bytes(data, ctx);
        }
        self.send_unblock_when_due(ctx);
        self.update_gate();
        self.maybe_close(ctx);
    }

    fn update_gate(&self) {
        let out_full = self.out.len() >= OUT_HIGH;
        let full = self.slots.len() >= self.settings.max_pending || out_full;
        let own_waits = self.own.as_deref().is_some_and(Own::holds_client);
        let waits = self.awaiting.is_some() || self.switching.is_some() || self.unblock_after.is_some();
        if self.closing || waits || own_waits || full {
            self.gate.pause();
        } else {
            self.gate.resume();
        }
        // Paused while blocked or in push mode on its own backend connection (a blocking
        // command then QUIT or a full pipeline, its barrier, pass-through waiting for RESET's
        // answer): the client leaving is still seen, so that what runs for it there ends
        // (`finished`). Other pauses end: what it sent before leaving is answered, as by Redis.
        self.gate.watch_close(self.drops_on_close());
        // Its replies wait for it to read them: past queryBufferLimit, it gets an error.
        self.gate.waits_for_client(out_full);
        // A client that does not read its replies stops the reading of its dedicated
        // connection: the backlog stays in Redis (under its client-output-buffer-limit).
        if let Some(own) = &self.own {
            own.handle.pause_reading(out_full);
        }
    }

    /// Whether the client closing ends what runs for it at once, replies owed included (see
    /// `Own::drops_on_close`).
    fn drops_on_close(&self) -> bool {
        self.own.as_deref().is_some_and(Own::drops_on_close)
    }

    fn maybe_close(&mut self, ctx: &mut Context<Self>) {
        // A command waiting for a reload's barrier is still to be sent and answered.
        if self.closing
            && self.slots.is_empty()
            && self.out.is_empty()
            && self.switching.is_none()
            && self.out.may_end(&self.gate, self.input_ended, ctx)
        {
            ctx.stop();
        }
    }

    fn close_after_replies(&mut self, ctx: &mut Context<Self>) {
        self.closing = true;
        // What it still sends is dropped: a client that reads only once it has written
        // everything then gets its replies.
        self.gate.drop_input();
        self.maybe_close(ctx);
    }

    fn on_command(&mut self, cmd: Command, ctx: &mut Context<Self>) {
        if self.route.generation() != self.route_generation || self.protocol_changed {
            // What was gathered goes to the target it was meant for.
            self.flush_forwards(ctx);
            if self.sent_to_target && self.send_switch_barrier(cmd.clone()) {
                return;
            }
            self.follow_route();
        }
        let spec = command::lookup(cmd.arg(0));
        let kind = spec.kind;
        if self.stopping && kind != Kind::Quit {
            self.reply(RelayerError::ShuttingDown.resp(), ctx);
            return;
        }
        if self.unauthenticated.load(Ordering::Relaxed)
            && !matches!(kind, Kind::Auth | Kind::Hello | Kind::Quit | Kind::Reset)
        {
            self.reply(error(auth::NOAUTH), ctx);
            return;
        }
        if self.own.as_deref().is_some_and(Own::in_push) {
            self.flush_forwards(ctx);
            return self.pass_through(spec, cmd);
        }
        let asked = match kind {
            Kind::Client if self.multi.is_none() => local::client_reply(&cmd),
            // RESET turns replies on before it answers.
            Kind::Reset if cmd.argc() == 1 => Some(ReplyMode::On),
            _ => None,
        };
        if asked.is_some() || self.reply_mode != ReplyMode::On {
            // Subscription confirmations are pushes, which Redis writes whatever the mode.
            let pushes = matches!(kind, Kind::Subscribe | Kind::Unsubscribe);
            self.apply_reply_mode(asked, pushes);
        }
        // What goes to the backend is compressed; what the relayer answers itself is not.
        let cmd = match &self.settings.compression {
            Some(c) if self.multi.is_some() || kind.reaches_backend() => c.compress_command(cmd, spec),
            _ => cmd,
        };
        if self.multi.is_some() && self.queue_in_multi(spec, &cmd, ctx) {
            return;
        }
        let argc = cmd.argc();
        let entry = spec.resolve((argc > 1).then(|| cmd.arg(1)));
        if let Some(why) = entry.role.refused() {
            if kind == Kind::Client {
                // NO-TOUCH before Redis 7.2 is its unknown subcommand.
                if !self.backend_has(&cmd) {
                    return self.reply(unknown_subcommand(cmd.arg(0), cmd.arg(1)), ctx);
                }
                if let Some(answer) = local::client_without_mode(entry.name, &cmd) {
                    return self.reply(answer, ctx);
                }
                // CLIENT TRACKING of a RESP3 client: on its own connection, where invalidation
                // pushes may come at any time, so in pass-through from then on, like HELLO 3.
                if self.resp3 && matches!(entry.role, Role::OwnConnectionOnly(_)) && !self.settings.cluster {
                    return self.on_own_connection(cmd, Kind::Hello, ctx);
                }
            }
            return self.reply(refused(entry, why), ctx);
        }
        match kind {
            Kind::Forward if !self.settings.cluster && entry.role == Role::Side => {
                self.forward(Request::Side(cmd.into_frame()), ctx);
            }
            Kind::Forward => self.forward_or_acknowledge(cmd, spec, ctx),
            Kind::Ping => match argc {
                1 => self.reply_static(write::PONG, ctx),
                2 => self.reply(write::bulk(cmd.arg(1)), ctx),
                _ => self.reply(wrong_arity(cmd.arg(0)), ctx),
            },
            Kind::Echo if argc == 2 => self.reply(write::bulk(cmd.arg(1)), ctx),
            Kind::Quit => {
                self.reply_static(write::OK, ctx);
                self.close_after_replies(ctx);
            }
            Kind::Select if argc == 2 => self.select(cmd, ctx),
            Kind::Multi if argc == 1 => {
                self.multi = Some(Box::new(Multi::new(cmd.frame().clone())));
                self.reply_static(write::OK, ctx);
            }
            Kind::Exec if argc == 1 && self.multi.is_some() => self.exec(ctx),
            Kind::Exec if argc == 1 => self.reply(error("ERR EXEC without MULTI"), ctx),
            // As Redis aborts a transaction, there is none: WATCH ends too.
            Kind::Exec => self.exec_aborted(multi::exec_with_arguments(), ctx),
            Kind::Discard if argc == 1 => match self.multi.take() {
                Some(_) => {
                    self.watch_lost = None;
                    // DISCARD also unwatches, in Redis.
                    if self.own.as_deref().is_some_and(Own::watching) {
                        self.unwatch(ctx);
                    } else {
                        self.reply_static(write::OK, ctx);
                    }
                }
                None => self.reply(error("ERR DISCARD without MULTI"), ctx),
            },
            Kind::Hello => self.hello(&cmd, ctx),
            Kind::Client if argc >= 2 => self.client(cmd, entry, ctx),
            Kind::Auth => {
                let answer = self.auth(&cmd);
                self.reply(answer, ctx);
            }
            Kind::Reset if argc == 1 => {
                self.reset_dedicated();
                self.forget_client_state();
                self.reply_static(b"+RESET\r\n", ctx);
            }
            Kind::Unwatch if argc == 1 && self.own.as_deref().is_some_and(Own::watching) => self.unwatch(ctx),
            Kind::Unwatch if argc == 1 => {
                self.watch_lost = None;
                self.reply_static(write::OK, ctx)
            }
            Kind::Replication => self.reply(not_relayed(&cmd), ctx),
            // Subscribed to nothing (it would be in push mode): Redis' answer needs no connection.
            Kind::Unsubscribe if self.own.as_deref().is_none_or(Own::settled) => {
                self.reply(local::unsubscribed(&cmd, self.resp3), ctx)
            }
            k if k.needs_own_connection() => self.dedicated(cmd, kind, ctx),
            Kind::StreamRead if cmd.args().skip(1).any(|a| a.eq_ignore_ascii_case(b"BLOCK")) => {
                self.dedicated(cmd, kind, ctx)
            }
            Kind::StreamRead => match self.place(&cmd, spec) {
                Placement::Slot(slot) => {
                    self.forward_to(Request::One(cmd.into_frame()), slot, ctx);
                }
                Placement::Split(request) | Placement::FanOut(request) => {
                    self.forward(request, ctx);
                }
                Placement::Refused(answer) => self.reply(answer, ctx),
            },
            _ => self.reply(wrong_arity(cmd.arg(0)), ctx),
        }
    }

    /// A reload replaced the target: `cmd` and what follows wait until the old target has
    /// answered (or counted) everything the client sent it, so that nothing overtakes an older
    /// command. False when the old target is gone already.
    fn send_switch_barrier(&mut self, cmd: Command) -> bool {
        self.barriers += 1;
        let barrier = BARRIER_BASE + self.barriers;
        let sent = self.target.try_send(Forward {
            reply_to: self.me.clone(),
            session: self.id,
            seq: barrier,
            db: self.db,
            request: Request::Barrier,
            slot: None,
        });
        if sent.is_err() {
            return false;
        }
        self.switching = Some(Box::new((barrier, cmd)));
        self.update_gate();
        true
    }

    /// Takes the target and settings a reload installed. A connection held now stays until
    /// released; the next one comes from the new pool.
    fn follow_route(&mut self) {
        let current = self.route.current();
        (self.target, self.settings, self.pool) = (current.target, current.settings, current.dedicated);
        if self.resp3 {
            self.target = self.target.resp3();
        }
        self.route_generation = self.route.generation();
        self.sent_to_target = false;
        self.protocol_changed = false;
    }

    /// In smart mode a write from the table is acknowledged now and sent in the background,
    /// while the budget allows; otherwise it waits for its real reply like any command.
    fn forward_or_acknowledge(&mut self, cmd: Command, spec: &'static Spec, ctx: &mut Context<Self>) {
        let slot = match self.place(&cmd, spec) {
            Placement::Slot(slot) => slot,
            Placement::Split(request) => return self.split_or_acknowledge(&cmd, spec, request, ctx),
            Placement::FanOut(request) => {
                self.forward(request, ctx);
                return;
            }
            Placement::Refused(answer) => return self.reply(answer, ctx),
        };
        // On a dedicated connection everything is waited on: it keeps the client's order.
        if let Some(smart) = self.settings.smart.as_ref().filter(|_| self.own.is_none()) {
            if let Some(early) = smart.table.early(&cmd, spec) {
                let len = cmd.frame().len() as u64;
                if smart.budget.try_take(len) {
                    let request = Request::Background {
                        frame: cmd.into_frame(),
                        idempotent: early.idempotent,
                    };
                    self.acknowledge(std::iter::once((request, slot)), early.reply, len);
                    return;
                }
            }
        }
        self.forward_to(Request::One(cmd.into_frame()), slot, ctx);
    }

    /// A multi-key command split by slot. In smart mode, a write of the table is acknowledged
    /// now and its parts sent in the background, each to its slot, while the budget allows.
    fn split_or_acknowledge(
        &mut self,
        cmd: &Command,
        spec: &'static Spec,
        request: Request,
        ctx: &mut Context<Self>,
    ) {
        let early = self
            .settings
            .smart
            .as_ref()
            .filter(|_| self.own.is_none())
            .and_then(|s| s.table.early(cmd, spec).map(|e| (e, s.budget.clone())));
        let (Some((early, budget)), Request::Gather { parts, .. }) = (early, &request) else {
            self.forward(request, ctx);
            return;
        };
        let len: u64 = parts.iter().map(|(_, f)| f.len() as u64).sum();
        if !budget.try_take(len) {
            self.forward(request, ctx);
            return;
        }
        let Request::Gather { parts, .. } = request else {
            unreachable!("matched above")
        };
        let idempotent = early.idempotent;
        let parts = parts
            .into_iter()
            .map(|(slot, frame)| (Request::Background { frame, idempotent }, slot));
        self.acknowledge(parts, early.reply, len);
    }

    /// CLIENT REPLY as Redis applies it: the reply to this command (CLIENT REPLY `asked`, or
    /// any other) is dropped in its turn while replies are off or skipped; SKIP covers the
    /// next command, ON is answered.
    fn apply_reply_mode(&mut self, asked: Option<ReplyMode>, pushes: bool) {
        let silenced = !pushes
            && match asked {
                Some(mode) => mode != ReplyMode::On,
                None => self.reply_mode != ReplyMode::On,
            };
        if silenced {
            self.slots.silence(self.slots.next_seq());
        }
        self.reply_mode = match (asked, self.reply_mode) {
            (Some(ReplyMode::Skip), ReplyMode::Off) => ReplyMode::Off,
            (Some(mode), _) => mode,
            (None, ReplyMode::Skip) => ReplyMode::On,
            (None, mode) => mode,
        };
    }

    /// RESET: the client's state as a new connection has it (no MULTI, no lost WATCH, replies
    /// on, the initial DB, no name) and, as in Redis, the default user, who must authenticate again.
    fn forget_client_state(&mut self) {
        self.multi = None;
        self.watch_lost = None;
        self.reply_mode = ReplyMode::On;
        self.db = self.settings.initial_db;
        self.name = None;
        self.set_protocol(false);
        self.unauthenticated
            .store(self.settings.password.is_some(), Ordering::Relaxed);
    }

    /// Where `cmd` goes: on a cluster, as `cluster::placement` decides; on a single Redis,
    /// to the one server.
    fn place(&self, cmd: &Command, spec: &'static Spec) -> Placement {
        if !self.settings.cluster {
            return Placement::Slot(None);
        }
        placement::place(cmd, spec, self.settings.commands.table())
    }

    /// Inside MULTI: queues the command and returns true, or returns false for the commands
    /// that end or act on the block itself.
    fn queue_in_multi(&mut self, spec: &'static Spec, cmd: &Command, ctx: &mut Context<Self>) -> bool {
        let at = multi::Where {
            cluster: self.settings.cluster,
            client_id: self.id,
            client_name: self.name.as_ref(),
            resp3: self.resp3,
            known_dbs: &self.settings.known_dbs,
            learned: self.settings.commands.table(),
        };
        match self.multi.as_deref_mut().expect("in MULTI").queue(spec, cmd, &at) {
            Queued::Yes => self.reply_static(write::QUEUED, ctx),
            Queued::No(e) => self.reply(e, ctx),
            Queued::Outside => return false,
            Queued::Abort(reply) => {
                self.multi = None;
                self.exec_aborted(reply, ctx);
            }
        }
        true
    }

    /// EXEC aborted by the relayer, as Redis would abort it: the block is gone and, as an EXEC
    /// does, it ends WATCH.
    fn exec_aborted(&mut self, reply: Bytes, ctx: &mut Context<Self>) {
        self.watch_lost = None;
        if let Some(own) = &mut self.own {
            own.unwatch();
        }
        self.reply(reply, ctx);
        self.maybe_release();
    }

    fn exec(&mut self, ctx: &mut Context<Self>) {
        let Some(multi) = self.multi.take() else {
            return;
        };
        // EXEC ends WATCH, aborted or not.
        if let Some(why) = self.watch_lost.take() {
            let text = format!(
                "EXECABORT Transaction discarded because the relayer lost the connection holding WATCH ({why})"
            );
            return self.reply(error(&text), ctx);
        }
        let block = match multi.exec() {
            Ok(block) => block,
            Err(abort) => return self.exec_aborted(abort, ctx),
        };
        // EXEC ends WATCH.
        if let Some(own) = &mut self.own {
            own.unwatched();
        }
        let request = Request::Block {
            frames: block.frames,
            changes_db: block.select.is_some(),
        };
        let seq = self.forward_to(request, block.slot, ctx);
        if block.select.is_some() || !block.local.is_empty() || block.name.is_some() {
            self.awaiting = Some(Box::new(Awaiting::Exec {
                seq,
                db: block.select,
                local: block.local,
                name: block.name,
            }));
            self.update_gate();
        }
    }

    fn select(&mut self, cmd: Command, ctx: &mut Context<Self>) {
        let db = match local::select(cmd.arg(1), self.settings.cluster) {
            Ok(db) => db,
            Err(e) => return self.reply(e, ctx),
        };
        // A dedicated connection must switch too: it is the one the client's commands use.
        // On a cluster, DB 0 is all there is.
        if self.settings.cluster || (self.settings.known_dbs.contains(db) && self.own.is_none()) {
            self.db = db;
            self.reply_static(write::OK, ctx);
            return;
        }
        let seq = self.forward(Request::Select(db, cmd.frame().clone()), ctx);
        self.awaiting = Some(Box::new(Awaiting::Select { seq, db }));
        self.update_gate();
    }

    fn hello(&mut self, cmd: &Command, ctx: &mut Context<Self>) {
        let hello = match self.hello_options(cmd) {
            Ok(h) => h,
            Err(e) => return self.reply(e, ctx),
        };
        // A server before Redis 6 has no RESP3 (its connections would refuse HELLO 3): the
        // client hears so now, as Redis answers a version it does not speak, and nothing of
        // the HELLO applies.
        let server = self.settings.identity.get();
        if hello.version == Some(3) && server.as_ref().is_some_and(|s| !local::speaks_resp3(&s.version)) {
            return self.reply(error("NOPROTO unsupported protocol version"), ctx);
        }
        if let Some(n) = hello.name {
            if !local::valid_name(n) {
                return self.reply(error(local::BAD_NAME), ctx);
            }
            self.name = (!n.is_empty()).then(|| Bytes::copy_from_slice(n));
        }
        if hello.version == Some(3) && self.own.is_some() {
            // Replies pass through as Redis writes them, so this RESP3 client gets a connection
            // of its own that speaks RESP3, from this HELLO (answered by Redis) on: it holds one
            // already (its WATCH, say), which would go on speaking RESP2.
            let hello = local::hello3(self.name.as_ref());
            return self.on_own_connection(hello, Kind::Hello, ctx);
        }
        if let Some(v) = hello.version {
            self.set_protocol(v == 3);
        }
        self.reply(local::hello_reply(self.id, server, self.resp3), ctx);
    }

    /// The client speaks RESP3 (`resp3`) or RESP2 from now on: its next command goes to the
    /// target's twin of that protocol, after the commands it sent before (a barrier).
    fn set_protocol(&mut self, resp3: bool) {
        if self.resp3 != resp3 {
            self.resp3 = resp3;
            self.protocol_changed = true;
        }
    }

    /// HELLO's version and options, its AUTH checked against the listener's password (the
    /// client is authenticated when it passes); Err: the error reply.
    fn hello_options<'c>(&mut self, cmd: &'c Command) -> Result<local::Hello<'c>, Bytes> {
        let hello = local::hello(cmd)?;
        match hello.auth(cmd) {
            // User names are case-sensitive, as in Redis: only `default` is the default user.
            Some((user, password)) => self.authenticate(Some(user), password)?,
            None if self.unauthenticated.load(Ordering::Relaxed) => return Err(error(auth::HELLO_NOAUTH)),
            None => {}
        }
        Ok(hello)
    }

    /// Checks `password` (of `user`) against the listener's; the client is authenticated when
    /// it passes. Err: the error reply.
    fn authenticate(&mut self, user: Option<&[u8]>, password: &[u8]) -> Result<(), Bytes> {
        let expected = self.settings.password.as_ref();
        if let Err(e) = auth::check(expected, user, password) {
            if expected.is_some() {
                self.settings.metrics.auth_failures.increment(1);
            }
            return Err(error(e));
        }
        self.unauthenticated.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// CLIENT and its subcommand, whose entry in the command table is `entry`.
    fn client(&mut self, cmd: Command, entry: &'static Spec, ctx: &mut Context<Self>) {
        match entry.name {
            "CLIENT SETNAME" => match local::client_setname(&cmd) {
                Ok(name) => {
                    self.name = name;
                    self.reply_static(write::OK, ctx);
                }
                Err(e) => self.reply(e, ctx),
            },
            "CLIENT GETNAME" if cmd.argc() != 2 => self.reply(local::client_arity("getname"), ctx),
            "CLIENT GETNAME" => self.reply(local::client_name(self.name.as_ref(), self.resp3), ctx),
            "CLIENT SETINFO" => {
                let answer = self.setinfo(&cmd);
                self.reply(answer, ctx);
            }
            "CLIENT ID" if cmd.argc() == 2 => self.reply(local::client_id(self.id), ctx),
            // Applied before it ran (`apply_reply_mode`).
            "CLIENT REPLY" if local::client_reply(&cmd).is_some() => self.reply_static(write::OK, ctx),
            "CLIENT REPLY" => self.reply(local::client_reply_refusal(&cmd), ctx),
            "CLIENT KILL" => self.client_kill(&cmd, ctx),
            "CLIENT UNBLOCK" => self.client_unblock(&cmd, ctx),
            _ => {
                self.forward(Request::One(cmd.frame().clone()), ctx);
            }
        }
    }

    /// CLIENT SETINFO's answer: the relayer's, unless the backend does not have it (Redis
    /// before 7.2), whose error it then is.
    fn setinfo(&self, cmd: &Command) -> Bytes {
        if self.backend_has(cmd) {
            local::client_setinfo(cmd)
        } else {
            unknown_subcommand(cmd.arg(0), cmd.arg(1))
        }
    }

    /// Whether the backend has `cmd`'s subcommand, by its COMMAND (true until it said).
    fn backend_has(&self, cmd: &Command) -> bool {
        let Some(table) = self.settings.commands.table() else {
            return true;
        };
        table.get(cmd.arg(0)).is_some_and(|e| e.sub(cmd.arg(1)).is_some())
    }

    /// The answer to AUTH, checked against the listener's password (as Redis' requirepass).
    fn auth(&mut self, cmd: &Command) -> Bytes {
        match local::auth(cmd).and_then(|(user, password)| self.authenticate(user, password)) {
            Ok(()) => Bytes::from_static(write::OK),
            Err(e) => e,
        }
    }

    /// A command that needs the client's own connection: it goes there, once every command
    /// the client sent before has run on the shared one (the barrier).
    fn dedicated(&mut self, cmd: Command, kind: Kind, ctx: &mut Context<Self>) {
        if kind == Kind::Watch && cmd.argc() < 2 {
            return self.reply(wrong_arity(cmd.arg(0)), ctx);
        }
        self.on_own_connection(cmd, kind, ctx);
    }

    /// Sends `cmd` on the client's dedicated connection, taking one first if needed. `kind`:
    /// how the command table has it (HELLO for HELLO 3, which enters push mode).
    fn on_own_connection(&mut self, cmd: Command, kind: Kind, ctx: &mut Context<Self>) {
        if self.settings.cluster {
            let err = RelayerError::NoDedicatedOnCluster(upper_name(&cmd));
            return self.reply(err.resp(), ctx);
        }
        if self.own.is_some() {
            return self.send_dedicated(cmd, kind, ctx);
        }
        let Some(handle) = self.pool.acquire(ctx.address().recipient(), self.db, self.resp3) else {
            let err = RelayerError::TooManyDedicated {
                max: self.pool.max(),
                command: upper_name(&cmd),
            };
            return self.reply(err.resp(), ctx);
        };
        self.barriers += 1;
        let barrier = BARRIER_BASE + self.barriers;
        // Sent on its own, after what was gathered: it must follow every earlier command.
        self.flush_forwards(ctx);
        let sent = self.target.try_send(Forward {
            reply_to: self.me.clone(),
            session: self.id,
            seq: barrier,
            db: self.db,
            request: Request::One(Bytes::from_static(b"*1\r\n$4\r\nPING\r\n")),
            slot: None,
        });
        let mut own = Own::taking(handle, Held { cmd, kind, barrier }, self.registration.pubsub());
        if sent.is_err() {
            let held = own.barrier_answered(barrier).expect("its own barrier");
            self.own = Some(Box::new(own));
            return self.send_dedicated(held.cmd, kind, ctx);
        }
        self.own = Some(Box::new(own));
        self.update_gate();
    }

    fn send_dedicated(&mut self, cmd: Command, kind: Kind, ctx: &mut Context<Self>) {
        self.flush_forwards(ctx);
        if own::enters_push(kind) {
            let Some(own) = &mut self.own else { return };
            own.enter_push(cmd, kind, self.name.as_ref());
            self.settings.metrics.forwarded.increment(1);
            self.update_gate();
            return;
        }
        let seq = if kind == Kind::Wait {
            let publish = vec![(dedicated::wait_offset_frame(), ReplyFor::WaitOffset)];
            self.forward_after(publish, Request::One(cmd.into_frame()), None, ctx)
        } else {
            self.forward(Request::One(cmd.into_frame()), ctx)
        };
        if let Some(own) = &mut self.own {
            own.sent(kind, seq);
        }
        self.update_gate();
    }

    /// Push mode (pub/sub, MONITOR, RESP3): the connection is the client's until RESET, QUIT or
    /// disconnect; commands go through as they are (compressed like any) and replies come back
    /// as the connection gives them. The relayer's guards still apply: AUTH and HELLO's AUTH
    /// are checked against the listener's password (never sent: they would switch the backend
    /// user), CLIENT KILL and the like and replication commands are refused; those answers
    /// take their place among the replies.
    fn pass_through(&mut self, spec: &'static Spec, cmd: Command) {
        let argc = cmd.argc();
        let kind = spec.kind;
        let entry = spec.resolve((argc > 1).then(|| cmd.arg(1)));
        match kind {
            // Both go through as RESET, followed by a token of the connection's whose reply
            // marks the end of what it owed the client (`dedicated::Ending`); nothing is read
            // meanwhile (see `PushEnded`).
            Kind::Quit | Kind::Reset if kind == Kind::Quit || argc == 1 => {
                let Some(own) = &mut self.own else { return };
                own.end_push(kind);
                if kind == Kind::Reset {
                    self.forget_client_state();
                }
                self.update_gate();
            }
            Kind::Auth => {
                let answer = self.auth(&cmd);
                self.answer_in_order(answer);
            }
            Kind::Hello => match self.hello_options(&cmd) {
                Err(e) => self.answer_in_order(e),
                Ok(hello) => {
                    // Redis answers the rest (and switches the protocol); the AUTH was ours.
                    let args: Vec<&[u8]> = cmd
                        .args()
                        .enumerate()
                        .filter(|(i, _)| hello.auth_at.is_none_or(|at| !(at..at + 3).contains(i)))
                        .map(|(_, a)| a)
                        .collect();
                    if let Some(n) = hello.name.filter(|n| local::valid_name(n)) {
                        self.name = (!n.is_empty()).then(|| Bytes::copy_from_slice(n));
                    }
                    self.pass(Command::from_args(&args), true);
                }
            },
            // Refused as elsewhere: the connection goes back to the pool for other clients
            // afterwards.
            _ if matches!(entry.role, Role::Refused(_)) => {
                let Role::Refused(why) = entry.role else {
                    unreachable!("matched")
                };
                self.answer_in_order(refused(entry, why));
            }
            // The relayer's as elsewhere: sent, it would stay on the connection (RESET keeps
            // it) for whoever takes it next.
            Kind::Client if entry.name == "CLIENT SETINFO" => {
                let answer = self.setinfo(&cmd);
                self.answer_in_order(answer);
            }
            // The id CLIENT KILL and UNBLOCK know the client by: the relayer's, not the
            // connection's on the backend.
            Kind::Client if entry.name == "CLIENT ID" && argc == 2 => {
                self.answer_in_order(local::client_id(self.id));
            }
            // The relayer's clients, not the backend's. Killed itself, it goes at once.
            Kind::Client if entry.name == "CLIENT KILL" => {
                let (answer, me) = self.kill_clients(&cmd);
                self.answer_in_order(answer);
                if me {
                    self.kill_self();
                }
            }
            // Its answer comes later than the replies after it would.
            Kind::Client if entry.name == "CLIENT UNBLOCK" => {
                self.answer_in_order(refused(entry, control::UNBLOCK_IN_PUSH));
            }
            Kind::Replication => {
                let answer = not_relayed(&cmd);
                self.answer_in_order(answer);
            }
            _ => {
                let open = !kind.is_pubsub();
                let cmd = match &self.settings.compression {
                    Some(c) => c.compress_command(cmd, spec),
                    None => cmd,
                };
                self.pass(cmd, open);
            }
        }
    }

    /// Sends `cmd` through in push mode. `open`: not a pub/sub command, so after it the client
    /// may have anything running on the connection.
    fn pass(&mut self, cmd: Command, open: bool) {
        let Some(own) = &mut self.own else { return };
        self.settings.metrics.forwarded.increment(1);
        own.pass(cmd.into_frame(), open);
        self.update_gate();
    }

    /// Push mode: `answer` goes to the client after the replies to everything it sent before.
    fn answer_in_order(&mut self, answer: Bytes) {
        self.settings.metrics.local.increment(1);
        if let Some(own) = &self.own {
            own.answer(answer);
        }
    }

    fn unwatch(&mut self, ctx: &mut Context<Self>) {
        self.watch_lost = None;
        if let Some(own) = &mut self.own {
            own.unwatched();
        }
        self.forward(Request::One(Bytes::from_static(write::UNWATCH)), ctx);
    }

    /// RESET outside pub/sub: what the dedicated connection owes still comes (its slots are
    /// ahead of RESET's); the WATCH and DB it holds are undone, and it is given back once idle.
    fn reset_dedicated(&mut self) {
        let (db, initial) = (self.db, self.settings.initial_db);
        if let Some(own) = &mut self.own {
            own.reset(db, initial);
        }
        self.maybe_release();
    }

    /// Gives the dedicated connection back once nothing needs it any more.
    fn maybe_release(&mut self) {
        if self.own.as_deref().is_some_and(Own::idle) {
            self.release_dedicated(None);
        }
    }

    /// `reset`: push mode ended (`PushEnded`), by the client's own RESET if true; None: the
    /// connection may be reused unless the client could have left a command running there.
    fn release_dedicated(&mut self, reset: Option<bool>) {
        if let Some(own) = self.own.take() {
            own.release(reset);
            self.update_gate();
        }
    }

    /// `data` with its compressed values decoded, when the relayer compresses.
    fn decoded(&self, data: Bytes) -> Bytes {
        match self.settings.compression {
            Some(_) => decode_reply_logged(data, self.settings.limits.max_bulk_len, &self.settings.log),
            None => data,
        }
    }

    /// A reply for the request numbered `seq`, from the target or the dedicated connection.
    fn on_reply(&mut self, seq: u64, data: Bytes, ctx: &mut Context<Self>) {
        if !self.slots.holds(seq) {
            return;
        }
        let data = self.decoded(data);
        self.set_reply(seq, data);
        self.drain(ctx);
    }

    /// Puts the reply in its slot (not yet drained), and notes what it decides.
    fn set_reply(&mut self, seq: u64, mut data: Bytes) {
        let ok = !data.starts_with(b"-");
        match self.awaiting.as_deref() {
            Some(Awaiting::Select { seq: s, db }) if *s == seq => {
                if ok {
                    self.db = *db;
                }
                self.awaiting = None;
            }
            Some(Awaiting::Exec { seq: s, .. }) if *s == seq => {
                let Some(Awaiting::Exec { db, local, name, .. }) = self.awaiting.take().map(|a| *a) else {
                    unreachable!("matched")
                };
                // An array: the block ran (not aborted, WATCH held).
                let ran = if local.is_empty() {
                    data.starts_with(b"*") && !data.starts_with(b"*-1")
                } else {
                    match multi::splice(&data, &local) {
                        Some(spliced) => {
                            data = spliced;
                            true
                        }
                        None => false,
                    }
                };
                if ran {
                    self.db = db.unwrap_or(self.db);
                    if let Some(n) = name {
                        self.name = n;
                    }
                }
            }
            _ => {}
        }
        self.slots.fill(seq, data);
    }
}

/// The error of a command the relayer refuses, `why` as the command table says.
fn refused(entry: &Spec, why: &str) -> Bytes {
    RelayerError::Refused {
        command: entry.name.to_string(),
        why: why.to_string(),
    }
    .resp()
}

fn not_relayed(cmd: &Command) -> Bytes {
    RelayerError::NotRelayed(upper_name(cmd)).resp()
}

/// A command's name as the relayer's errors write it.
fn upper_name(cmd: &Command) -> String {
    String::from_utf8_lossy(cmd.arg(0)).to_uppercase()
}

impl Actor for Session {
    type Context = Context<Self>;
}

/// The session's accounts are settled when it is dropped rather than in `stopped`: a panic in
/// one of its handlers (a bug) drops it without `stopped`, and would otherwise leave its entry
/// in the route, a client slot taken for good, and its dedicated connection held.
impl Drop for Session {
    fn drop(&mut self) {
        if std::thread::panicking() {
            slog::error!(self.settings.log, "client connection closed by an internal error"; "session" => self.id);
        }
        // Stopped with commands gathered (its socket failed): they still go, as they did when
        // each was sent at once; smart writes among them hold budget the target gives back.
        self.send_outgoing();
        self.release_dedicated(None);
        self.route.unregister(self.id);
        self.settings.metrics.clients.decrement(1);
        debug!(self.settings.log, "client gone"; "session" => self.id);
    }
}

impl Session {
    fn on_request(&mut self, item: Result<Command, RequestError>, ctx: &mut Context<Self>) {
        if let Err(RequestError::Io(e)) = &item {
            if is_query_buffer_limit(e) {
                return self.query_buffer_full(e, ctx);
            }
        }
        if self.closing {
            return;
        }
        match item {
            Ok(cmd) => self.on_command(cmd, ctx),
            Err(RequestError::Protocol(e)) => {
                info!(self.settings.log, "protocol error, closing client"; "session" => self.id, "error" => %e);
                self.reply(error(&format!("ERR Protocol error: {e}")), ctx);
                self.close_after_replies(ctx);
            }
            Err(RequestError::Io(e)) => {
                debug!(self.settings.log, "client read failed"; "session" => self.id, "error" => %e);
                self.flush_forwards(ctx);
                ctx.stop();
            }
        }
    }
}

impl Session {
    /// The client sent more than `queryBufferLimit` ahead of what the session could take. Redis
    /// closes such a client without a word; here it gets an error after the replies it is owed
    /// (what it sends meanwhile is dropped, so that it can get to reading them), then is
    /// closed. Past the limit again while closing, it is closed at once.
    fn query_buffer_full(&mut self, e: &std::io::Error, ctx: &mut Context<Self>) {
        if self.closing {
            info!(self.settings.log, "client still sending while closed, disconnected"; "session" => self.id, "error" => %e);
            return ctx.stop();
        }
        slog::warn!(self.settings.log, "client over the query buffer limit, closing it"; "session" => self.id, "error" => %e, "pending_replies" => self.slots.len());
        self.reply(error(&format!("ERR Protocol error: {e}")), ctx);
        self.close_after_replies(ctx);
    }
}

impl StreamHandler<Parsed<Result<Command, RequestError>>> for Session {
    fn handle(&mut self, item: Parsed<Result<Command, RequestError>>, ctx: &mut Context<Self>) {
        let item = match item {
            Parsed::Request(item) => item,
            Parsed::Last(item) => {
                self.batch.set_direct(true);
                self.on_request(item, ctx);
                self.batch.set_direct(false);
                return self.flush_forwards(ctx);
            }
            // Closing or not: what its requests gathered goes now.
            Parsed::Idle => return self.flush_forwards(ctx),
        };
        self.on_request(item, ctx);
    }

    /// The client closed its side: its outstanding replies are still written, then it ends.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.input_ended = true;
        self.flush_forwards(ctx);
        // A command still waiting for its barrier was not sent, and now never is: Redis would
        // run it and drop it with the client, and a blocking pop not run takes no item that
        // nobody would read. The replies owed before it are still written, as by Redis.
        if self.own.as_deref_mut().is_some_and(Own::drop_held_on_close) {
            self.release_dedicated(None);
        }
        // Like Redis with a client gone while blocked or subscribed: nothing is left running
        // for it (its dedicated connection is closed or reset), and no reply is owed.
        if self.drops_on_close() {
            self.release_dedicated(None);
            return ctx.stop();
        }
        self.close_after_replies(ctx);
    }
}

impl Handler<Replies> for Session {
    type Result = ();

    fn handle(&mut self, replies: Replies, ctx: &mut Context<Self>) {
        match replies {
            Replies::One { seq, data } => self.on_target_reply(seq, data, None, ctx),
            Replies::Run(replies) => {
                for (seq, data) in replies {
                    self.on_target_reply(seq, data, None, ctx);
                }
            }
            Replies::Failed { seq, error } => self.on_target_reply(seq, error.resp(), Some(&error), ctx),
        }
        // Nothing these replies set going waits for a `Parsed::Idle`.
        self.flush_forwards(ctx);
    }
}

impl Session {
    /// A reply from the target, to a request or to a barrier; `failure`: the relayer's own
    /// error that `data` renders.
    fn on_target_reply(
        &mut self,
        seq: u64,
        data: Bytes,
        failure: Option<&RelayerError>,
        ctx: &mut Context<Self>,
    ) {
        if self.switching.as_deref().is_some_and(|(b, _)| *b == seq) {
            // Whatever the answer (the old target may have retired, its writes counted):
            // the client goes on with the new one.
            let (_, cmd) = *self.switching.take().expect("checked above");
            self.follow_route();
            self.update_gate();
            self.on_command(cmd, ctx);
            return;
        }
        if seq >= BARRIER_BASE {
            // Another barrier's: its command failed already.
            let Some(held) = self.own.as_deref_mut().and_then(|own| own.barrier_answered(seq)) else {
                return;
            };
            // The shared connection was lost or timed out (the relayer's own errors): the earlier
            // commands may not have run yet (smart-mode writes are even sent again), so this
            // one must not either. An error of Redis' (NOPERM for a url user without PING,
            // LOADING, BUSY) still comes after their replies: the order holds, which is all the
            // barrier is for. So its command need not be one every ACL user may run (ECHO
            // would be refused alike; only AUTH, HELLO and RESET never are).
            if let Some(failure) = failure {
                let err = RelayerError::NotSent {
                    command: upper_name(&held.cmd),
                    because: Box::new(failure.clone()),
                };
                self.reply(err.resp(), ctx);
                self.maybe_release();
            } else {
                self.send_dedicated(held.cmd, held.kind, ctx);
            }
            self.update_gate();
            return;
        }
        self.on_reply(seq, data, ctx);
    }
}

impl Handler<FromDedicated> for Session {
    type Result = ();

    fn handle(&mut self, msg: FromDedicated, ctx: &mut Context<Self>) {
        self.on_dedicated(msg, ctx);
        self.flush_forwards(ctx);
    }
}

impl Session {
    fn on_dedicated(&mut self, msg: FromDedicated, ctx: &mut Context<Self>) {
        match msg {
            FromDedicated::Reply { seq, data } => {
                if let Some(own) = &mut self.own {
                    own.replied();
                }
                self.on_reply(seq, data, ctx);
                self.maybe_release();
            }
            FromDedicated::Pushed(data) => {
                // Only an owner in push mode has pushed replies; anything else would be a reply
                // too many for the client, and shift every later one.
                if !self.own.as_deref().is_some_and(Own::in_push) {
                    slog::warn!(self.settings.log, "a pushed reply outside push mode was dropped"; "session" => self.id);
                    return;
                }
                let data = self.decoded(data);
                self.push_reply(data, ctx);
            }
            FromDedicated::PushEnded { reset } => {
                let Some(kind) = self.own.as_deref().and_then(Own::ending) else {
                    return;
                };
                // Not reset (a backend without RESET, before 6.2): the connection is closed
                // instead, which ends pub/sub all the same.
                self.release_dedicated(Some(reset));
                if kind == Kind::Quit {
                    self.push_reply(Bytes::from_static(write::OK), ctx);
                    self.close_after_replies(ctx);
                } else {
                    self.push_reply(Bytes::from_static(RESET_REPLY), ctx);
                }
            }
            FromDedicated::Entered { data, ok } => {
                let data = self.decoded(data);
                if let Some(own) = &mut self.own {
                    own.entered(ok);
                }
                self.push_reply(data, ctx);
                // Refused (arity, ACL): the client is an ordinary one again.
                self.maybe_release();
                self.update_gate();
            }
            FromDedicated::Lost(err) => {
                let Some(own) = self.own.take() else { return };
                let lost = own.lost();
                if lost.watching {
                    self.watch_lost = Some(err.to_string());
                }
                let error = err.resp();
                for seq in lost.owed {
                    self.on_reply(seq, error.clone(), ctx);
                }
                // A command waiting for the barrier fails the same way.
                if lost.held.is_some() {
                    self.reply(error.clone(), ctx);
                }
                if lost.entering {
                    self.push_reply(error.clone(), ctx);
                }
                if lost.push {
                    // A subscriber cannot be told in band: it reconnects and subscribes again.
                    self.push_reply(error, ctx);
                    self.close_after_replies(ctx);
                }
                self.update_gate();
            }
            FromDedicated::Writable => self.update_gate(),
        }
    }
}

impl Handler<FlushClient> for Session {
    type Result = ();

    fn handle(&mut self, _: FlushClient, ctx: &mut Context<Self>) {
        flush_client(self, ctx);
    }
}

impl WritesToClient for Session {
    fn client_out(&mut self) -> &mut ClientOut {
        &mut self.out
    }

    fn written(&mut self, ctx: &mut Context<Self>) {
        self.update_gate();
        self.maybe_close(ctx);
    }

    fn write_failed(&mut self, e: std::io::Error, ctx: &mut Context<Self>) {
        debug!(self.settings.log, "client write failed"; "session" => self.id, "error" => %e);
        ctx.stop();
    }
}

impl Handler<CloseClient> for Session {
    type Result = ();

    fn handle(&mut self, _: CloseClient, ctx: &mut Context<Self>) {
        self.close_after_replies(ctx);
    }
}

impl Handler<Stopping> for Session {
    type Result = ();

    fn handle(&mut self, _: Stopping, _ctx: &mut Context<Self>) {
        self.stopping = true;
    }
}
