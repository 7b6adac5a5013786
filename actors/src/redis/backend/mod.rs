//! Target actor: the upstream connections to one Redis, shared by every session of a relayer.
//!
//! Each connection has a write buffer, filled by the sessions' messages and flushed once per
//! mailbox drain, and a FIFO of the replies it owes, in the order the commands were written.
//! A session is pinned to one connection, so its commands reach Redis in the order it sent them.

use super::delivery::{self, Delivery};
use super::messages::{Forward, Forwards, Replies, ReplyTo, Request};
use super::smart::Budget;
use super::upstream::{when_writable, Flush, Flushed, Upstream, READ_BUFFER};
use crate::endpoint::TargetAddr;
pub(crate) use crate::error::secs;
use crate::error::RelayerError;
use crate::io::{OutBuf, ReadHalf};
use crate::learned_commands::Learned;
use crate::log_limit::LogLimit;
use crate::metrics::RelayerMetrics;
use crate::resp::reply::{error_text, is_error, ReplyBatches};
use crate::resp::request::RequestParser;
use crate::resp::write;
use crate::tls::TlsClient;
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use slog::{debug, error, info, warn, Logger};
use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::codec::FramedRead;

mod addr;
mod commands;
pub(crate) mod identity;
mod single;
pub use addr::BackendAddr;
pub use identity::{Identity, Server};
use single::{Queued, Stall};

/// Writes not delivered logged one by one, with their command and key, before summaries.
pub(crate) const DETAILED_LOGS: u32 = 10;
/// Ticks between summaries of the writes not delivered (10 s).
pub(crate) const SUMMARY_TICKS: u64 = 100;
pub(crate) const BACKOFF_FIRST: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// The clock that ages pending replies; timeouts are checked at this granularity.
pub(crate) const TICK: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct BackendSettings {
    pub addr: TargetAddr,
    /// For a `rediss://` addr.
    pub tls: Option<TlsClient>,
    pub connections: usize,
    /// How long a written command may wait for its reply; None waits forever.
    pub timeout: Option<Duration>,
    pub connect_timeout: Duration,
    /// The longest status or error line a reply may have (`maxBulkLength`).
    pub max_reply_line: usize,
    /// How long a write acknowledged early may be sent again after refusals that may pass
    /// (LOADING, BUSY...), or wait for an unreachable backend, before it is given up.
    pub retry_timeout: Duration,
    /// Smart mode: the bytes acknowledged early, shared with the sessions.
    pub budget: Option<Arc<Budget>>,
    pub metrics: RelayerMetrics,
    pub log: Logger,
    /// What the backend says of its commands (COMMAND), asked once and shared with the
    /// sessions (`commands.rs`).
    pub commands: Arc<Learned>,
    /// What it says of itself (`identity.rs`), shared with the sessions.
    pub identity: Arc<Identity>,
    /// The connections speak RESP3 (`HELLO 3` when they open): those of RESP3 clients.
    pub resp3: bool,
}

/// DB indices (0..63) that the backend has accepted, shared with the sessions so a SELECT of
/// a known DB is answered locally. Higher indices are checked upstream every time.
#[derive(Default, Debug)]
pub struct KnownDbs(AtomicU64);

impl KnownDbs {
    pub fn new() -> Arc<Self> {
        Arc::new(KnownDbs(AtomicU64::new(1)))
    }
    pub fn contains(&self, db: u32) -> bool {
        db < 64 && self.0.load(Ordering::Relaxed) & (1 << db) != 0
    }
    pub(crate) fn insert(&self, db: u32) {
        if db < 64 {
            self.0.fetch_or(1 << db, Ordering::Relaxed);
        }
    }
    pub(crate) fn forget(&self, db: u32) {
        if db < 64 && db != 0 {
            self.0.fetch_and(!(1 << db), Ordering::Relaxed);
        }
    }
    /// Another server answers now (restarted, or a failover): only DB 0 is sure to exist.
    pub(crate) fn forget_all(&self) {
        self.0.store(1, Ordering::Relaxed);
    }
}

/// Where a reply goes.
pub(crate) enum Dest {
    Session {
        to: ReplyTo,
        seq: u64,
    },
    SelectCheck {
        to: ReplyTo,
        seq: u64,
        db: u32,
    },
    /// A client's barrier (`Request::Barrier`): answered once what came before it on the
    /// connection is done; sent again like a write acknowledged early, never failed fast.
    Barrier {
        to: ReplyTo,
        seq: u64,
    },
    /// A reply nobody waits for, read and checked.
    Swallow(Swallowed),
    /// A write acknowledged early, kept until confirmed so that it can be sent again after a
    /// dropped connection.
    Background {
        frame: Bytes,
        db: u32,
        idempotent: bool,
        /// The tick it was taken (`retryTimeout` counts from there).
        since: u64,
    },
    /// One part of a gathered request.
    Part {
        gather: u64,
        index: usize,
    },
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Swallowed {
    Select(u32),
    /// CLUSTER SLOTS, asked by the relayer.
    Slots,
    /// `INFO server`, asked by the relayer on a new connection to a single Redis: who answers.
    Info,
    /// ASKING before a command redirected by ASK.
    Asking,
    /// MULTI and the commands queued in it: their errors reach the client through EXEC.
    BlockPart,
    /// COMMAND, asked by the relayer once (`commands.rs`).
    Commands,
}

pub(crate) struct Pending {
    pub(crate) dest: Dest,
    /// On a cluster: what is needed to send the command again after a redirection.
    pub(crate) resend: Option<Resend>,
    /// On a cluster: newer commands of its slot wait until this one has come back (see
    /// `cluster::holds`).
    pub(crate) displaced: bool,
    pub(crate) tick: u64,
    /// Where the command ends in the bytes queued on this connection: it has been written
    /// once `Upstream::written` reaches this.
    pub(crate) end: u64,
    /// Written alone, to learn whether a backend that refused writes accepts them again (see
    /// `single::Stall`).
    pub(crate) probe: bool,
    /// On a single Redis, a command waited on: its frame and DB, to write it again when it is
    /// refused for a while behind a write that must be sent again (see `single`).
    pub(crate) again: Option<(Bytes, Option<u32>)>,
}

/// A command as the backend sends it (and, on a cluster, sends again).
pub(crate) enum Body {
    One(Bytes),
    /// MULTI, the queued commands, EXEC: sent and sent again as one.
    Block(Vec<Bytes>),
}

/// On a cluster: what a command needs to be sent again elsewhere, kept with its pending reply.
pub(crate) struct Resend {
    pub slot: Option<u16>,
    /// The client: its connection to a node is `session % maxConnections`.
    pub session: u64,
    pub body: Body,
    /// Redirections followed so far.
    pub hops: u8,
    /// Times sent again after TRYAGAIN, CLUSTERDOWN or LOADING.
    pub tries: u8,
    /// The tick it came in, for the timeout of a waited command while it is held.
    pub since: u64,
    /// The job's number, in the order jobs came to the relayer: what waits to be sent again
    /// goes in this order, whatever order the replies came back in.
    pub order: u64,
    /// The mark of its slot when it was sent (see `holds::Flight`).
    pub mark: u32,
    /// It ran once, and waits to be sent again after an older write of its client.
    pub applied: bool,
    /// The last refusal that made it wait to be sent again: why it is given up if it waits
    /// past `retryTimeout` (a write acknowledged early).
    pub last: Option<Bytes>,
}

impl Resend {
    /// A job as it comes in: not yet sent, redirected or retried.
    pub fn new(slot: Option<u16>, session: u64, body: Body, since: u64, order: u64) -> Self {
        Resend {
            slot,
            session,
            body,
            hops: 0,
            tries: 0,
            since,
            order,
            mark: 0,
            applied: false,
            last: None,
        }
    }
}

/// What connection `idx` owed when it was lost (`written` of its bytes had left), and why.
pub(crate) struct Lost {
    pub(crate) idx: usize,
    pub(crate) owed: VecDeque<Pending>,
    pub(crate) written: u64,
    /// What the commands waited on get.
    pub(crate) err: Arc<RelayerError>,
    pub(crate) reason: String,
}

pub(crate) enum State {
    /// Not opened yet (cluster nodes are connected when first used).
    Idle,
    Connecting,
    Up,
    Down {
        reason: String,
    },
}

/// One of the backend's connections: what is written and owed on it (`up`), and what the
/// backend keeps about it across reconnections.
pub(crate) struct Conn {
    /// Where it connects (cluster nodes have one each).
    pub(crate) addr: TargetAddr,
    pub(crate) state: State,
    pub(crate) up: Upstream<Pending>,
    /// The DB the connection is on after what is queued; None when the relayer cannot know.
    pub(crate) db: Option<u32>,
    pub(crate) backoff: Duration,
    /// The connection failure last logged as an error: a new reason is logged again.
    pub(crate) logged_failure: Option<String>,
    pub(crate) reader: Option<SpawnHandle>,
    /// On a cluster: the first redirection or retryable error a command of the MULTI block
    /// under way got while queued, which is why its EXEC will abort.
    pub(crate) block_note: Option<Bytes>,
    /// On a single Redis: commands accepted and not written yet, in order (see `single`).
    pub(crate) queue: VecDeque<Queued>,
    /// On a single Redis: the backend refused a write with an error that may pass, and nothing
    /// more is written until it accepts one again.
    pub(crate) stall: Option<Stall>,
    /// On a single Redis: a SELECT of a DB not known to exist on this server is written, and
    /// nothing follows it until its answer.
    pub(crate) select_check: Option<u32>,
    /// On a single Redis: the server has not said who it is yet (`Swallowed::Info`), so it may
    /// not be the one whose DBs are known: every SELECT is checked meanwhile.
    pub(crate) identifying: bool,
    /// A reply came on this connection: it works (until then a loss is retried with backoff).
    pub(crate) proven: bool,
}

impl Conn {
    pub(crate) fn new(addr: TargetAddr) -> Self {
        Conn {
            addr,
            state: State::Connecting,
            up: Upstream::windowed(),
            db: Some(0),
            backoff: BACKOFF_FIRST,
            logged_failure: None,
            reader: None,
            block_note: None,
            queue: VecDeque::new(),
            stall: None,
            select_check: None,
            identifying: false,
            proven: false,
        }
    }
}

/// The upstream connections of one relayer entry (per worker), shared by all its sessions:
/// one type for what a single Redis and a cluster backend share, `S` for what differs.
pub(crate) struct Backend<S: Shape> {
    /// What differs: a single Redis (`Single`) or a cluster (`crate::cluster::backend::Cluster`).
    pub(crate) shape: S,
    pub(crate) settings: BackendSettings,
    pub(crate) known: Arc<KnownDbs>,
    pub(crate) conns: Vec<Conn>,
    pub(crate) tick: u64,
    pub(crate) timeout_ticks: Option<u64>,
    /// `retryTimeout` in ticks.
    pub(crate) retry_ticks: u64,
    /// What became of the writes acknowledged early.
    pub(crate) delivery: Delivery,
    /// Writes not delivered that were logged with their command and key; past
    /// `DETAILED_LOGS`, a summary with the totals is logged every `SUMMARY_TICKS`.
    pub(crate) detailed_logs: u32,
    pub(crate) summary_due: bool,
    /// Stalls begun and ended (see `single`), logged a few a second at most.
    pub(crate) stall_log: LogLimit,
    /// The drain's time ran out: what was left is counted lost, and nothing of it counted
    /// again if it comes after all.
    pub(crate) given_up: bool,
    pub(crate) drain_waiter: Option<oneshot::Sender<()>>,
    /// The drain also waits for the replies clients wait on, not only background writes.
    pub(crate) drain_everything: bool,
    /// While the replies of one upstream read are handled: consecutive replies to the same
    /// session, sent as one message when the session changes or the read is done.
    pub(crate) batching: bool,
    pub(crate) batch_to: Option<ReplyTo>,
    /// The run's reply while it is the only one (then no vector is filled).
    pub(crate) one: Option<(u64, Bytes)>,
    pub(crate) batch: Vec<(u64, Bytes)>,
    /// Given to the readers' decoders, which take it for a read's replies; put back emptied.
    pub(crate) spare: Rc<Cell<Vec<Bytes>>>,
    /// The size of the last run sent as one message, to size the next one at once.
    pub(crate) batch_hint: usize,
    /// The connection (and its generation) that COMMAND was asked on and not answered yet.
    pub(crate) commands_asked: Option<(usize, u64)>,
    /// A cluster node asked `INFO server` on connection (index, generation) (`identity.rs`).
    pub(crate) identity_asked: Option<(usize, u64)>,
}

/// What a backend is in front of: each keeps its own state and does what differs; `Backend`
/// has the connections, the replies to sessions, the counts and the drain they share.
pub(crate) trait Shape: Sized + Unpin + 'static {
    /// Opens what it needs when the actor starts.
    fn started(b: &mut Backend<Self>, ctx: &mut Context<Backend<Self>>);
    /// A request from a session.
    fn forward(b: &mut Backend<Self>, msg: Forward, ctx: &mut Context<Backend<Self>>);
    /// Connection `idx` is up, its reader running.
    fn connected(b: &mut Backend<Self>, idx: usize, ctx: &mut Context<Backend<Self>>);
    /// A reply on connection `idx`, for `p`: goes where it goes, or is held to be sent again.
    fn reply(b: &mut Backend<Self>, idx: usize, p: Pending, data: Bytes, ctx: &mut Context<Backend<Self>>);
    /// A reply nobody waits for (`Swallowed`), read and checked.
    fn swallowed(
        b: &mut Backend<Self>,
        idx: usize,
        what: Swallowed,
        data: &Bytes,
        ctx: &mut Context<Backend<Self>>,
    );
    /// A reply to one part of a request split over several nodes.
    fn part(b: &mut Backend<Self>, gather: u64, index: usize, data: Bytes);
    /// What a lost connection owed: replies to give its error, writes to send again. Returns
    /// how many go again.
    fn cut_off(b: &mut Backend<Self>, lost: Lost, ctx: &mut Context<Backend<Self>>) -> usize;
    /// After connection `idx` failed (what it owed handled, its state known).
    fn conn_failed(b: &mut Backend<Self>, idx: usize, ctx: &mut Context<Backend<Self>>);
    /// Every tick of the clock.
    fn tick(b: &mut Backend<Self>, ctx: &mut Context<Backend<Self>>);
    /// Some client waits for a reply that is not on a connection yet.
    fn has_waiters(b: &Backend<Self>) -> bool;
    /// Writes acknowledged early not written to a connection yet (queued, held to be sent
    /// again): those written are counted from the connections.
    fn background_held(b: &Backend<Self>) -> usize;
    /// Writes acknowledged early that ran and wait to be sent again after an older write of
    /// their client (not lost).
    fn background_applied(b: &Backend<Self>) -> usize;
    /// The drain is over: what still waits gets `err`, writes acknowledged early are let go.
    fn retire(b: &mut Backend<Self>, err: &Arc<RelayerError>);
}

impl<S: Shape> Backend<S> {
    /// Starts the backend on the current thread. Sessions bound themselves (maxPendingReplies,
    /// maxPendingBytes), so its mailbox has no bound (capacity 0 in actix), set before the
    /// address exists: with actix's default of 16, sessions forwarding before the backend's
    /// first run would be refused.
    pub(crate) fn launch(self) -> Addr<Backend<S>> {
        Backend::create(|ctx| {
            ctx.set_mailbox_capacity(0);
            self
        })
    }

    /// A backend with `conns` (the connections it starts with) and its shape.
    pub(crate) fn with(shape: S, settings: BackendSettings, known: Arc<KnownDbs>, conns: Vec<Conn>) -> Self {
        let timeout_ticks = settings
            .timeout
            .map(|t| (t.as_millis() as u64).div_ceil(TICK.as_millis() as u64) + 1);
        let retry_ticks = (settings.retry_timeout.as_millis() as u64).div_ceil(TICK.as_millis() as u64);
        Backend {
            shape,
            conns,
            known,
            tick: 0,
            timeout_ticks,
            retry_ticks,
            delivery: Delivery::default(),
            detailed_logs: 0,
            summary_due: false,
            stall_log: LogLimit::default(),
            given_up: false,
            drain_waiter: None,
            drain_everything: false,
            batching: false,
            batch_to: None,
            one: None,
            batch: Vec::new(),
            spare: Rc::default(),
            batch_hint: 1,
            commands_asked: None,
            identity_asked: None,
            settings,
        }
    }

    pub(crate) fn display_addr(&self, idx: usize) -> &TargetAddr {
        &self.conns[idx].addr
    }

    /// Every reply to a session goes through here, so that a batch keeps the order of all
    /// of them: one message per run of replies to the same session while `batching`, one per
    /// reply otherwise. Saves an actix envelope and channel push per reply in a run.
    pub(crate) fn send_reply(&mut self, to: ReplyTo, seq: u64, data: Bytes) {
        if !self.batching {
            debug_assert!(self.batch_to.is_none());
            return to.do_send(Replies::One { seq, data });
        }
        if !self.batch_to.as_ref().is_some_and(|b| Arc::ptr_eq(b, &to)) {
            self.flush_replies();
            self.batch_to = Some(to);
            self.one = Some((seq, data));
            return;
        }
        if let Some(first) = self.one.take() {
            if self.batch.capacity() == 0 {
                self.batch.reserve(self.batch_hint);
            }
            self.batch.push(first);
        }
        self.batch.push((seq, data));
    }

    /// The relayer's own error to a session's request, after the replies before it.
    pub(crate) fn send_failure(&mut self, to: ReplyTo, seq: u64, error: &Arc<RelayerError>) {
        self.flush_replies();
        to.do_send(Replies::Failed {
            seq,
            error: error.clone(),
        });
    }

    pub(crate) fn flush_replies(&mut self) {
        let Some(to) = self.batch_to.take() else { return };
        if let Some((seq, data)) = self.one.take() {
            to.do_send(Replies::One { seq, data });
        } else {
            self.batch_hint = self.batch.len().min(64);
            to.do_send(Replies::Run(std::mem::take(&mut self.batch)));
        }
    }

    pub(crate) fn connect(&mut self, idx: usize, ctx: &mut Context<Self>) {
        let c = &mut self.conns[idx];
        c.state = State::Connecting;
        let generation = c.up.attempt();
        let fut = super::connect::open(
            c.addr.clone(),
            self.settings.tls.clone(),
            self.settings.log.clone(),
            self.settings.connect_timeout,
            self.settings.resp3,
        );
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            if act.conns[idx].up.generation != generation {
                return;
            }
            match res {
                Ok((r, w)) => act.connected(idx, r, OutBuf::new(w), ctx),
                Err(e) => act.failed(idx, &e.to_string(), None, ctx),
            }
        }));
    }

    pub(crate) fn connected(&mut self, idx: usize, r: ReadHalf, out: OutBuf, ctx: &mut Context<Self>) {
        let generation = self.conns[idx].up.generation;
        let events = FramedRead::with_capacity(
            r,
            ReplyBatches::new(self.spare.clone(), self.settings.max_reply_line),
            READ_BUFFER,
        )
        .map(move |item| Read {
            idx,
            generation,
            item: item.map(Some),
        })
        .chain(futures_util::stream::once(async move {
            Read {
                idx,
                generation,
                item: Ok(None),
            }
        }));
        let handle = ctx.add_stream(events);
        let c = &mut self.conns[idx];
        debug!(self.settings.log, "backend connected"; "backend" => %c.addr, "conn" => idx);
        c.state = State::Up;
        c.block_note = None;
        // The backoff and the failure logged stay until a reply proves the connection works:
        // a server that accepts and closes every connection (a proxy with nothing behind it,
        // Redis at maxclients) is retried with backoff, not at once.
        c.proven = false;
        c.reader = Some(handle);
        // Replies owed from before the connection existed start their wait now.
        for p in c.up.pending.iter_mut() {
            p.tick = self.tick;
        }
        c.up.open(out);
        S::connected(self, idx, ctx);
        self.schedule_flush(idx, ctx);
    }

    /// The connection failed or was lost. The replies it owed become errors (`error`, or one
    /// naming the failure); background writes are queued again for the next connection; it
    /// reconnects at once after a loss, with backoff after a failed attempt.
    pub(crate) fn failed(
        &mut self,
        idx: usize,
        reason: &str,
        error: Option<RelayerError>,
        ctx: &mut Context<Self>,
    ) {
        let addr = self.display_addr(idx).clone();
        let was_up = matches!(self.conns[idx].state, State::Up);
        // Reconnected at once only after a connection that worked (see `proven`).
        let worked = was_up && self.conns[idx].proven;
        let err = Arc::new(error.unwrap_or_else(|| {
            let (backend, reason) = (addr.to_string(), reason.to_string());
            if was_up {
                RelayerError::ConnectionLost { backend, reason }
            } else {
                RelayerError::Unavailable { backend, reason }
            }
        }));
        let c = &mut self.conns[idx];
        let written = c.up.written;
        let owed = c.up.close();
        if let Some(h) = c.reader.take() {
            ctx.cancel_future(h);
        }
        c.db = Some(0);
        let lost = Lost {
            idx,
            owed,
            written,
            err,
            reason: reason.to_string(),
        };
        let again = S::cut_off(self, lost, ctx);
        if again > 0 {
            debug!(self.settings.log, "background writes queued again"; "conn" => idx, "count" => again);
        }
        self.check_drained();
        if worked {
            self.settings.metrics.reconnects.increment(1);
            warn!(self.settings.log, "backend connection lost, reconnecting"; "backend" => %addr, "conn" => idx, "reason" => reason);
            self.connect(idx, ctx);
            S::conn_failed(self, idx, ctx);
            return;
        }
        let c = &mut self.conns[idx];
        let delay = c.backoff;
        c.backoff = (c.backoff * 2).min(BACKOFF_MAX);
        // Once per outage, and again when the reason changes (say from a refused connection to
        // a refused AUTH): not at every retry.
        if delay == BACKOFF_FIRST || c.logged_failure.as_deref() != Some(reason) {
            c.logged_failure = Some(reason.to_string());
            error!(self.settings.log, "cannot connect to backend"; "backend" => %addr, "conn" => idx, "reason" => reason);
        } else {
            debug!(self.settings.log, "backend still unavailable"; "backend" => %addr, "conn" => idx, "reason" => reason, "retry_in_ms" => delay.as_millis() as u64);
        }
        c.state = State::Down {
            reason: reason.to_string(),
        };
        let generation = c.up.generation;
        ctx.run_later(delay, move |act, ctx| {
            if act.conns[idx].up.generation == generation {
                act.connect(idx, ctx);
            }
        });
        // After the state is known (down, or reconnecting), so what is sent again now sees it.
        S::conn_failed(self, idx, ctx);
    }

    /// Connection `idx` answered: it works, and a later loss is retried at once.
    fn proven(&mut self, idx: usize) {
        let c = &mut self.conns[idx];
        if c.proven {
            return;
        }
        c.proven = true;
        if c.backoff > BACKOFF_FIRST {
            info!(self.settings.log, "backend connection restored"; "backend" => %c.addr, "conn" => idx);
        }
        c.backoff = BACKOFF_FIRST;
        c.logged_failure = None;
    }

    pub(crate) fn push(&mut self, idx: usize, frame: Bytes, dest: Dest) {
        self.push_resend(idx, frame, dest, None);
    }

    pub(crate) fn push_resend(&mut self, idx: usize, frame: Bytes, dest: Dest, resend: Option<Resend>) {
        self.push_pending(idx, frame, dest, resend, false);
    }

    pub(crate) fn push_pending(
        &mut self,
        idx: usize,
        frame: Bytes,
        dest: Dest,
        resend: Option<Resend>,
        displaced: bool,
    ) {
        let tick = self.tick;
        let c = &mut self.conns[idx];
        let end = c.up.write(frame);
        c.up.pending.push_back(Pending {
            dest,
            resend,
            displaced,
            tick,
            end,
            probe: false,
            again: None,
        });
    }

    pub(crate) fn schedule_flush(&mut self, idx: usize, ctx: &mut Context<Self>) {
        if self.conns[idx].up.needs_flush() {
            ctx.notify(Flush(idx));
        }
    }

    /// A reply read on connection `idx`: to what its oldest owed entry is for.
    pub(crate) fn match_reply(&mut self, idx: usize, data: Bytes, ctx: &mut Context<Self>) {
        let up = &mut self.conns[idx].up;
        let p = up.pending.pop_front();
        if up.answered(data.len()) {
            ctx.notify(Flush(idx));
        }
        let Some(p) = p else {
            // Redis sent something nobody asked for: the reply stream can no longer be trusted.
            self.failed(idx, "unexpected reply from backend", None, ctx);
            return;
        };
        S::reply(self, idx, p, data, ctx);
    }

    /// A reply to where it goes.
    pub(crate) fn deliver(&mut self, idx: usize, dest: Dest, data: Bytes, ctx: &mut Context<Self>) {
        match dest {
            Dest::Part { gather, index } => S::part(self, gather, index, data),
            Dest::Session { to, seq } | Dest::Barrier { to, seq } => self.send_reply(to, seq, data),
            Dest::SelectCheck { to, seq, db } => {
                if !is_error(&data) {
                    self.known.insert(db);
                    // Only when nothing was written after it does the SELECT still hold.
                    if self.conns[idx].up.pending.is_empty() {
                        self.conns[idx].db = Some(db);
                    }
                }
                self.send_reply(to, seq, data);
            }
            Dest::Background { frame, .. } => {
                self.give_back(&frame);
                if self.given_up {
                    // Counted lost when the drain's time ran out.
                } else if is_error(&data) {
                    self.refused_write(idx, &frame, &data);
                } else {
                    self.delivery.delivered += 1;
                    self.settings.metrics.background_delivered.increment(1);
                }
            }
            Dest::Swallow(Swallowed::BlockPart) if is_error(&data) => {
                debug!(self.settings.log, "command refused inside MULTI"; "error" => error_text(&data))
            }
            Dest::Swallow(what) => S::swallowed(self, idx, what, &data, ctx),
        }
        // Whatever the reply was (a part of a split command, a SELECT's), it may have been
        // the last one a reload's drain waits for.
        self.check_drained();
    }

    /// A write acknowledged early that the backend refused for good (the budget was given
    /// back by the caller).
    pub(crate) fn refused_write(&mut self, idx: usize, frame: &Bytes, reply: &Bytes) {
        if self.given_up {
            return;
        }
        let code = String::from_utf8_lossy(delivery::code(reply)).into_owned();
        self.delivery.add_refused(&code);
        self.settings.metrics.background_errors.increment(1);
        self.settings.metrics.refused(&code);
        if self.detailed() {
            let (name, key) = name_and_key(frame);
            error!(self.settings.log, "background write refused by the backend";
                "backend" => %self.conns[idx].addr, "command" => name, "key" => key,
                "error" => error_text(reply), "refused" => self.delivery.refused_total());
        }
    }

    pub(crate) fn unknown_outcome(&mut self, idx: usize, frame: &Bytes) {
        self.give_back(frame);
        if self.given_up {
            return;
        }
        self.delivery.unknown += 1;
        self.settings.metrics.background_unknown.increment(1);
        if self.detailed() {
            let (name, key) = name_and_key(frame);
            warn!(self.settings.log, "background write of unknown outcome: the connection dropped before the backend confirmed it, and it is not safe to send twice";
                "backend" => %self.conns[idx].addr, "command" => name, "key" => key, "unknown" => self.delivery.unknown);
        }
    }

    /// A write acknowledged early given up at `retryTimeout`: `why` is the code of the last
    /// refusal, or `unavailable`.
    pub(crate) fn expired(&mut self, backend: &TargetAddr, frame: &Bytes, why: &str) {
        self.give_back(frame);
        if self.given_up {
            return;
        }
        self.delivery.add_expired(why);
        self.settings.metrics.expired(why);
        if self.detailed() {
            let (name, key) = name_and_key(frame);
            error!(self.settings.log, "background write given up: not accepted by the backend within retryTimeout";
                "backend" => %backend, "command" => name, "key" => key, "last" => why,
                "retry_timeout_s" => self.settings.retry_timeout.as_secs_f64(), "expired" => self.delivery.expired_total());
        }
    }

    /// Whether a write not delivered is logged with its command and key: the first
    /// `DETAILED_LOGS` are; after them, a summary of the totals every `SUMMARY_TICKS`.
    pub(crate) fn detailed(&mut self) -> bool {
        if self.detailed_logs < DETAILED_LOGS {
            self.detailed_logs += 1;
            return true;
        }
        self.summary_due = true;
        false
    }

    pub(crate) fn log_summary(&mut self) {
        if !std::mem::take(&mut self.summary_due) {
            return;
        }
        let d = &self.delivery;
        warn!(self.settings.log, "background writes not delivered so far";
            "backend" => %self.settings.addr, "delivered" => d.delivered, "refused" => d.refused_total(),
            "refused_by_code" => d.refused_by_code(), "unknown" => d.unknown, "expired" => d.expired_total(),
            "expired_by_code" => d.expired_by_code());
    }

    /// Gives the bytes of a write acknowledged early back to the budget.
    pub(crate) fn give_back(&self, frame: &Bytes) {
        if let Some(b) = &self.settings.budget {
            b.give_back(frame.len() as u64);
        }
    }

    /// Answers a drain once every byte acknowledged early is confirmed (and, for a target a
    /// reload replaced, every reply owed has come).
    pub(crate) fn check_drained(&mut self) {
        if self.drain_waiter.is_none() {
            return;
        }
        let confirmed = self.settings.budget.as_ref().is_none_or(|b| b.pending() == 0);
        let answered = !self.drain_everything
            || (self.conns.iter().all(|c| {
                c.up.pending.is_empty() && c.queue.is_empty() && c.stall.as_ref().is_none_or(Stall::is_empty)
            }) && !S::has_waiters(self));
        if confirmed && answered {
            if let Some(tx) = self.drain_waiter.take() {
                let _ = tx.send(());
            }
        }
    }

    pub(crate) fn check_timeouts(&mut self, ctx: &mut Context<Self>) {
        self.tick += 1;
        if let Some(b) = &self.settings.budget {
            self.settings.metrics.pending_bytes.set(b.pending() as f64);
        }
        S::tick(self, ctx);
        if self.tick % SUMMARY_TICKS == 0 {
            self.log_summary();
        }
        let Some(limit) = self.timeout_ticks else { return };
        for idx in 0..self.conns.len() {
            let c = &self.conns[idx];
            let late = matches!(c.state, State::Up)
                && c.up.pending.front().is_some_and(|p| self.tick >= p.tick + limit);
            if late {
                let t = self.settings.timeout.unwrap_or_default();
                let err = RelayerError::TimedOut {
                    backend: self.conns[idx].addr.to_string(),
                    after: t,
                };
                self.failed(idx, &format!("no reply within {}", secs(t)), Some(err), ctx);
            }
        }
    }
}

/// The command name (upper case) and first argument of a frame, for log lines.
pub(crate) fn name_and_key(frame: &Bytes) -> (String, String) {
    let mut buf = BytesMut::from(&frame[..]);
    match RequestParser::new(Default::default()).parse(&mut buf) {
        Ok(Some(cmd)) => {
            let name = String::from_utf8_lossy(cmd.arg(0)).to_uppercase();
            let key = if cmd.argc() > 1 {
                String::from_utf8_lossy(cmd.arg(1)).into_owned()
            } else {
                String::new()
            };
            (name, key)
        }
        _ => ("?".into(), String::new()),
    }
}

impl<S: Shape> Actor for Backend<S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        S::started(self, ctx);
        ctx.run_interval(TICK, |act, ctx| act.check_timeouts(ctx));
    }
}

impl<S: Shape> Handler<Forward> for Backend<S> {
    type Result = ();

    fn handle(&mut self, msg: Forward, ctx: &mut Context<Self>) {
        S::forward(self, msg, ctx);
    }
}

impl<S: Shape> Handler<Forwards> for Backend<S> {
    type Result = ();

    fn handle(&mut self, Forwards(msgs): Forwards, ctx: &mut Context<Self>) {
        for msg in msgs {
            <Self as Handler<Forward>>::handle(self, msg, ctx);
        }
    }
}

impl<S: Shape> Handler<Flush> for Backend<S> {
    type Result = ();

    fn handle(&mut self, Flush(idx): Flush, ctx: &mut Context<Self>) {
        let up = &mut self.conns[idx].up;
        match up.flush() {
            Flushed::Done => {}
            Flushed::Blocked(w) => {
                let generation = up.generation;
                when_writable(w, ctx, move |act: &mut Self, res, ctx| {
                    let up = &mut act.conns[idx].up;
                    if up.generation != generation {
                        return;
                    }
                    up.writable();
                    match res {
                        Ok(()) => act.schedule_flush(idx, ctx),
                        Err(e) => act.failed(idx, &e.to_string(), None, ctx),
                    }
                });
            }
            Flushed::Failed(e) => self.failed(idx, &e.to_string(), None, ctx),
        }
    }
}

/// An event of one upstream connection's read side: the replies of one read, end of stream
/// (None), or an error.
pub(crate) struct Read {
    pub(crate) idx: usize,
    pub(crate) generation: u64,
    pub(crate) item: io::Result<Option<Vec<Bytes>>>,
}

impl<S: Shape> StreamHandler<Read> for Backend<S> {
    fn handle(&mut self, ev: Read, ctx: &mut Context<Self>) {
        if self.conns[ev.idx].up.generation != ev.generation {
            return;
        }
        match ev.item {
            Ok(Some(mut replies)) => {
                self.proven(ev.idx);
                self.batching = true;
                for reply in replies.drain(..) {
                    // A reply that failed the connection leaves the rest unread, as before.
                    if self.conns[ev.idx].up.generation != ev.generation {
                        break;
                    }
                    self.match_reply(ev.idx, reply, ctx);
                }
                self.batching = false;
                self.flush_replies();
                // Room for the next read's replies; a huge one is let go.
                if replies.capacity() <= 1024 {
                    self.spare.set(replies);
                }
            }
            Ok(None) => self.failed(ev.idx, "closed by the backend", None, ctx),
            Err(e) => self.failed(ev.idx, &e.to_string(), None, ctx),
        }
    }

    /// One connection's stream ending says nothing about the actor.
    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

/// Stop: sessions no longer acknowledge early, and the answer comes once every write that
/// was acknowledged is confirmed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain {
    pub done: oneshot::Sender<()>,
    /// Also wait for every reply a client waits on (a target being replaced).
    pub everything: bool,
}

impl<S: Shape> Handler<Drain> for Backend<S> {
    type Result = ();

    fn handle(&mut self, msg: Drain, _ctx: &mut Context<Self>) {
        if let Some(b) = &self.settings.budget {
            b.start_draining();
        }
        self.drain_waiter = Some(msg.done);
        self.drain_everything = msg.everything;
        self.check_drained();
    }
}

/// The drain time is up: what was acknowledged early and is not confirmed is counted lost,
/// logged, and the target's counts returned.
#[derive(Message)]
#[rtype(result = "Delivery")]
pub struct GiveUp;

impl<S: Shape> Handler<GiveUp> for Backend<S> {
    type Result = MessageResult<GiveUp>;

    fn handle(&mut self, _: GiveUp, _ctx: &mut Context<Self>) -> Self::Result {
        // Never written (queued, held): lost. Written and not answered: Redis may have run
        // them, so their outcome is not known.
        let mut lost = S::background_held(self);
        let mut unknown = 0;
        for c in &self.conns {
            for p in
                c.up.pending
                    .iter()
                    .filter(|p| matches!(p.dest, Dest::Background { .. }))
            {
                if p.end <= c.up.written {
                    unknown += 1;
                } else {
                    lost += 1;
                }
            }
        }
        let applied = S::background_applied(self);
        if applied > 0 {
            // They ran; sent again only so that an older write of their client, itself held
            // and now given up, could not overwrite them: not lost.
            warn!(self.settings.log, "background writes already applied were not sent again after an older write of their client";
                "backend" => %self.settings.addr, "count" => applied);
            self.delivery.delivered += applied as u64;
        }
        if !self.given_up {
            self.given_up = true;
            self.delivery.lost += lost as u64;
            self.delivery.unknown += unknown as u64;
            self.settings.metrics.background_lost.increment(lost as u64);
            self.settings.metrics.background_unknown.increment(unknown as u64);
        }
        if lost + unknown > 0 {
            error!(self.settings.log, "background writes lost (never written) or of unknown outcome (written): not confirmed by the backend within the drain timeout";
                "backend" => %self.settings.addr, "lost" => lost, "unknown" => unknown,
                "bytes" => self.settings.budget.as_ref().map_or(0, |b| b.pending()));
        }
        MessageResult(self.delivery.clone())
    }
}

/// What became of the writes this target acknowledged early, so far.
#[derive(Message)]
#[rtype(result = "Delivery")]
pub struct Report;

impl<S: Shape> Handler<Report> for Backend<S> {
    type Result = MessageResult<Report>;

    fn handle(&mut self, _: Report, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.delivery.clone())
    }
}

/// A reload replaced or removed this target and its drain is over: whatever is still owed
/// gets an error, and the actor stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

impl<S: Shape> Handler<Retire> for Backend<S> {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        let err = Arc::new(RelayerError::ClosedByReload);
        for c in &mut self.conns {
            for p in c.up.pending.drain(..) {
                match p.dest {
                    Dest::Session { to, seq }
                    | Dest::SelectCheck { to, seq, .. }
                    | Dest::Barrier { to, seq } => to.do_send(Replies::Failed {
                        seq,
                        error: err.clone(),
                    }),
                    Dest::Background { frame, .. } => {
                        if let Some(b) = &self.settings.budget {
                            b.give_back(frame.len() as u64);
                        }
                    }
                    Dest::Swallow(_) | Dest::Part { .. } => {}
                }
            }
        }
        S::retire(self, &err);
        debug!(self.settings.log, "target retired"; "backend" => %self.settings.addr);
        ctx.stop();
    }
}
