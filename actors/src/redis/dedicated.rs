//! Dedicated upstream connections: one client's own connection to the backend while it runs
//! commands that hold or change the state of the connection they run on (blocking pops,
//! XREAD BLOCK, WAIT, pub/sub, MONITOR, WATCH, RESP3). On the shared connections they would
//! stall or corrupt everyone else's commands.
//!
//! Pub/sub, MONITOR and RESP3 keep the connection in push mode (everything passes through as
//! it comes) until the client resets, quits or leaves.
//!
//! A `Pool` per target and worker keeps released connections for reuse; how many exist is
//! bounded per relayer entry across workers (`maxDedicatedConnections`). A released connection
//! is RESET (which ends pub/sub, MONITOR, WATCH, RESP3 and goes back to DB 0) and authenticated
//! again in the same write, and is back in the pool at once: whoever takes it next has its
//! commands written after those two. That needs a backend that does RESET (6.2 and later): the
//! pool's first connection tries it before anything else, and until one worked, released
//! connections are closed. One released while a command may still be running (a blocking
//! command in flight, or a client in push mode that could have sent one) is closed too: Redis
//! unblocks a client that disconnects, while RESET would only run once the command returned,
//! and the command would still take what it waits for.
//!
//! Buffers: the owner's client not reading pauses the reading of this connection (Redis then
//! holds the backlog, under its client-output-buffer-limit); commands waiting to be written are
//! reported to the owner, which stops reading its client above `BACKLOG_HIGH`.

use super::session::FromDedicated;
use crate::endpoint::TargetAddr;
use crate::io::{Gate, Gated, OutBuf, ReadHalf};
use crate::resp::reply::{is_error, ReplyScanner};
use crate::resp::request::Command;
use crate::resp::write;
use crate::tls::TlsClient;
use actix::prelude::*;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use slog::{debug, warn, Logger};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::codec::FramedRead;

/// A released connection nobody takes within this time is closed.
const IDLE_CLOSE: Duration = Duration::from_secs(60);

/// Bytes of the owner's commands waiting to be written, above which the owner stops reading
/// its client.
pub const BACKLOG_HIGH: usize = 1024 * 1024;

/// The channel of the PUBLISH written before WAIT and WAITAOF. Redis counts WAIT against the
/// replication offset of the last write made on the same connection, and the client's writes
/// went over the shared one: PUBLISH (propagated to replicas, harmless with no subscriber)
/// moves this connection's offset past them.
const WAIT_CHANNEL: &[u8] = b"__smart-relayer:wait";

/// `PUBLISH __smart-relayer:wait ""`
pub fn wait_offset_frame() -> Bytes {
    Command::from_args(&[&b"PUBLISH"[..], WAIT_CHANNEL, b""]).into_frame()
}

/// Live dedicated connections of one relayer entry, counted across its workers (each worker
/// has its own pool), so `maxDedicatedConnections` holds for the listener.
#[derive(Clone, Default)]
pub struct LiveCount(Arc<AtomicUsize>);

impl LiveCount {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// One more, unless `max` are live.
    fn take(&self, max: usize) -> Option<Slot> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.0.clone()))
    }
}

/// Runtime state, not configuration: two entries are the same whatever their counts.
impl PartialEq for LiveCount {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for LiveCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LiveCount({})", self.get())
    }
}

/// A live connection's place in the count, given back when its actor is dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The dedicated connections of one target in one worker.
pub struct Pool {
    addr: TargetAddr,
    tls: Option<TlsClient>,
    connect_timeout: Duration,
    max: usize,
    live: LiveCount,
    idle: RefCell<Vec<Handle>>,
    /// Whether the backend does RESET; refused (Redis before 6.2, a renamed command, an ACL),
    /// released connections are closed instead of reused.
    reset: Cell<ResetSupport>,
    /// The PUBLISH written when a client enters push mode was refused (logged once).
    publish_refused: Cell<bool>,
    log: Logger,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResetSupport {
    Unknown,
    /// A new connection tries it first thing.
    Probing,
    Works,
    Refused,
}

/// A dedicated connection as its owner holds it.
#[derive(Clone)]
pub struct Handle {
    pub addr: Addr<Dedicated>,
    /// Paused by the owner while its client has too much unsent output: the connection is not
    /// read, so the backlog stays in Redis.
    pub gate: Rc<Gate>,
    /// Bytes waiting to be written to the backend (see `BACKLOG_HIGH`): the owner adds what it
    /// sends, the connection sets what is left after each write.
    pub unsent: Rc<Cell<usize>>,
}

impl Pool {
    pub fn new(
        addr: TargetAddr,
        tls: Option<TlsClient>,
        connect_timeout: Duration,
        max: usize,
        live: LiveCount,
        log: Logger,
    ) -> Rc<Self> {
        Rc::new(Pool {
            addr,
            tls,
            connect_timeout,
            max,
            live,
            idle: RefCell::new(Vec::new()),
            reset: Cell::new(ResetSupport::Unknown),
            publish_refused: Cell::new(false),
            log,
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A connection for `owner`, idle or new; None when `max` are live.
    pub fn acquire(self: &Rc<Self>, owner: Recipient<FromDedicated>, db: u32) -> Option<Handle> {
        let idle = self.idle.borrow_mut().pop();
        if let Some(h) = idle {
            h.addr.do_send(Take { owner, db });
            return Some(h);
        }
        let slot = self.live.take(self.max)?;
        let gate = Gate::new();
        let unsent = Rc::new(Cell::new(0));
        let mut d = Dedicated::new(Rc::downgrade(self), slot, gate.clone(), unsent.clone());
        if self.reset.get() == ResetSupport::Unknown {
            // On a new connection RESET changes nothing but the user (AUTH follows): whether it
            // works is known before any connection is released.
            self.reset.set(ResetSupport::Probing);
            d.probing = true;
            d.queue(Bytes::from_static(RESET_FRAME), Some(Dest::ResetProbe));
            d.queue_auth();
        }
        // Known before it connects, so a failed connect reaches the client.
        d.take(owner, db);
        let addr = Dedicated::create(|ctx| {
            // Unbounded: what the owner sends is bounded by the owner (`unsent`, its replies).
            ctx.set_mailbox_capacity(0);
            d
        });
        Some(Handle { addr, gate, unsent })
    }

    fn put_back(&self, h: Handle) {
        self.idle.borrow_mut().push(h);
    }

    /// The connection is closing: nobody may take it any more.
    fn forget(&self, addr: &Addr<Dedicated>) {
        self.idle.borrow_mut().retain(|h| h.addr != *addr);
    }

    fn note_reset_refused(&self, reply: &[u8]) {
        if self.reset.replace(ResetSupport::Refused) != ResetSupport::Refused {
            warn!(self.log, "the backend refused RESET: released dedicated connections are closed instead of reused";
                "error" => error_text(reply));
        }
    }
}

/// Where the reply to a written command goes.
pub enum Dest {
    /// The owner's request `seq`.
    Client(u64),
    /// A command the relayer wrote itself (SELECT, AUTH, CLIENT SETNAME, the parts of a MULTI
    /// block before EXEC): its errors are logged, and an AUTH error ends the connection.
    Swallow(&'static str),
    /// The PUBLISH before a WAIT: refused, WAIT would count replicas too early, so the WAIT's
    /// reply is replaced by an error.
    WaitOffset,
    /// The command that enters push mode (SUBSCRIBE..., MONITOR, HELLO 3): its reply says
    /// whether it did, and everything after it passes through as it comes.
    EnterPush,
    /// In push mode: no reply is matched to it.
    Pass,
    /// RESET on release: replies before it belong to nobody.
    Reset,
    /// RESET first thing on the pool's first connection: does the backend do it?
    ResetProbe,
}

const RESET_FRAME: &[u8] = b"*1\r\n$5\r\nRESET\r\n";

pub struct Dedicated {
    pool: Weak<Pool>,
    _slot: Slot,
    gate: Rc<Gate>,
    unsent: Rc<Cell<usize>>,
    /// `unsent` was reported at or above `BACKLOG_HIGH`: the owner hears when it is below.
    backlogged: bool,
    owner: Option<Recipient<FromDedicated>>,
    out: Option<OutBuf>,
    /// Frames written before the connection is up.
    early: Vec<Bytes>,
    early_len: usize,
    pending: VecDeque<Dest>,
    /// Pub/sub, MONITOR or RESP3: every reply goes to the owner as it comes, until release.
    push: bool,
    /// Push mode: answers of the relayer's own, each waiting for the PING that marks its place
    /// among the replies.
    answers: VecDeque<Bytes>,
    /// That PING's reply, in its two forms (RESP2 pub/sub answers PING with an array); the
    /// argument is random, so no reply of the client's looks like it.
    mark_bulk: Bytes,
    mark_pong: Bytes,
    mark_ping: Bytes,
    /// The PUBLISH before a WAIT was refused: the WAIT gets this error.
    wait_refused: Option<Bytes>,
    /// Its `ResetProbe` has no reply yet.
    probing: bool,
    flush_scheduled: bool,
    write_blocked: bool,
    /// Bumped by each Take and release: a stale idle timer does nothing.
    lease: u64,
    log: Logger,
}

impl Dedicated {
    fn new(pool: Weak<Pool>, slot: Slot, gate: Rc<Gate>, unsent: Rc<Cell<usize>>) -> Self {
        let log = pool
            .upgrade()
            .map(|p| p.log.clone())
            .unwrap_or_else(|| Logger::root(slog::Discard, slog::o!()));
        let token = format!("smart-relayer-order-{:016x}", fastrand::u64(..));
        let mark_bulk = write::bulk(token.as_bytes());
        let mut pong = BytesMut::new();
        write::put_array_header(&mut pong, 2);
        write::put_bulk(&mut pong, b"pong");
        pong.put_slice(&mark_bulk);
        Dedicated {
            pool,
            _slot: slot,
            gate,
            unsent,
            backlogged: false,
            owner: None,
            out: None,
            early: Vec::new(),
            early_len: 0,
            pending: VecDeque::new(),
            push: false,
            answers: VecDeque::new(),
            mark_bulk,
            mark_pong: pong.freeze(),
            mark_ping: Command::from_args(&[&b"PING"[..], token.as_bytes()]).into_frame(),
            wait_refused: None,
            probing: false,
            flush_scheduled: false,
            write_blocked: false,
            lease: 0,
            log,
        }
    }

    fn queue(&mut self, frame: Bytes, dest: Option<Dest>) {
        if let Some(d) = dest {
            self.pending.push_back(d);
        }
        match &mut self.out {
            Some(out) => out.push_bytes(frame),
            None => {
                self.early_len += frame.len();
                self.early.push(frame);
            }
        }
    }

    fn to_owner(&self, msg: FromDedicated) {
        // do_send: never dropped (try_send fails on a full mailbox); what is in flight to the
        // owner is bounded by the owner pausing `gate`.
        if let Some(owner) = &self.owner {
            owner.do_send(msg);
        }
    }

    fn take(&mut self, owner: Recipient<FromDedicated>, db: u32) {
        self.lease += 1;
        self.owner = Some(owner);
        self.gate.resume();
        if db != 0 {
            let select = Command::from_args(&[b"SELECT".to_vec(), db.to_string().into_bytes()]);
            self.queue(select.into_frame(), Some(Dest::Swallow("SELECT")));
        }
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        self.report_backlog();
        if !self.flush_scheduled && !self.write_blocked && self.out.is_some() {
            self.flush_scheduled = true;
            ctx.notify(Flush);
        }
    }

    /// Tells the owner how much waits to be written (and when it fell below the bound).
    fn report_backlog(&mut self) {
        let left = self.out.as_ref().map_or(self.early_len, |o| o.len());
        self.unsent.set(left);
        if left >= BACKLOG_HIGH {
            self.backlogged = true;
        } else if std::mem::take(&mut self.backlogged) {
            self.to_owner(FromDedicated::Writable);
        }
    }

    /// Ends the actor; nobody can take it from the pool any more.
    fn close(&mut self, ctx: &mut Context<Self>) {
        if let Some(pool) = self.pool.upgrade() {
            pool.forget(&ctx.address());
        }
        ctx.stop();
    }

    /// The connection is gone: whoever waits gets `text`, and the actor ends.
    fn fail(&mut self, text: &str, ctx: &mut Context<Self>) {
        if self.owner.is_some() {
            warn!(self.log, "dedicated connection lost"; "error" => text);
        } else {
            debug!(self.log, "idle dedicated connection lost"; "error" => text);
        }
        // Lost after RESET was written and before its answer: closed for it, as some proxies
        // do with commands they do not know.
        if self.probing && self.out.is_some() {
            self.probing = false;
            if let Some(pool) = self.pool.upgrade() {
                pool.note_reset_refused(b"-the connection was lost before RESET was answered\r\n");
            }
        }
        self.to_owner(FromDedicated::Lost(write::error(text)));
        self.owner = None;
        self.close(ctx);
    }

    fn on_reply(&mut self, data: Bytes, ctx: &mut Context<Self>) {
        if self.push {
            if !self.answers.is_empty() && (data == self.mark_bulk || data == self.mark_pong) {
                let answer = self.answers.pop_front().expect("checked above");
                return self.to_owner(FromDedicated::Pushed(answer));
            }
            if is_reset_refusal(&data) {
                if let Some(pool) = self.pool.upgrade() {
                    pool.note_reset_refused(&data);
                }
            }
            return self.to_owner(FromDedicated::Pushed(data));
        }
        let Some(dest) = self.pending.pop_front() else {
            warn!(self.log, "unexpected reply on a dedicated connection, closing it");
            return self.fail("ERR relayer: unexpected reply from the backend", ctx);
        };
        match dest {
            Dest::Client(seq) => {
                let data = self.wait_refused.take().unwrap_or(data);
                self.to_owner(FromDedicated::Reply { seq, data });
            }
            Dest::Swallow(what) => {
                if is_error(&data) {
                    let text = error_text(&data);
                    match what {
                        "AUTH" => self.fail(&format!("ERR relayer: backend refused AUTH: {text}"), ctx),
                        // Reported to the client by EXEC.
                        "MULTI" => debug!(self.log, "command refused inside MULTI"; "error" => &text),
                        // Once per pool: every RESP3 client would log it (an ACL without the
                        // channel, most likely).
                        "PUBLISH" => {
                            if let Some(pool) =
                                self.pool.upgrade().filter(|p| !p.publish_refused.replace(true))
                            {
                                warn!(pool.log, "the backend refused the PUBLISH written before pub/sub, MONITOR or RESP3: a WAIT sent there may count replicas without the client's earlier writes";
                                    "channel" => String::from_utf8_lossy(WAIT_CHANNEL).into_owned(), "error" => &text);
                            }
                        }
                        _ => {
                            warn!(self.log, "backend refused a command on a dedicated connection"; "command" => what, "error" => &text)
                        }
                    }
                }
            }
            Dest::WaitOffset => {
                if is_error(&data) {
                    let text = format!(
                        "ERR relayer: WAIT needs 'PUBLISH {}' on its connection first, and the backend refused it: {}",
                        String::from_utf8_lossy(WAIT_CHANNEL),
                        error_text(&data)
                    );
                    self.wait_refused = Some(write::error(&text));
                }
            }
            Dest::EnterPush => {
                let ok = !is_error(&data);
                self.push = ok;
                self.to_owner(FromDedicated::Entered { data, ok });
            }
            // Never queued (see `Send`).
            Dest::Pass => {}
            Dest::ResetProbe => {
                self.probing = false;
                if let Some(pool) = self.pool.upgrade() {
                    if &data[..] == b"+RESET\r\n" {
                        pool.reset.set(ResetSupport::Works);
                    } else {
                        pool.note_reset_refused(&data);
                    }
                }
            }
            Dest::Reset => {
                if &data[..] == b"+RESET\r\n" {
                    return;
                }
                if is_reset_refusal(&data) {
                    // It worked before (the pool's probe): the backend changed. Whatever was
                    // written behind it ran without the reset, so its owner only gets an error.
                    if let Some(pool) = self.pool.upgrade() {
                        pool.note_reset_refused(&data);
                    }
                    return self.fail(
                        &format!(
                            "ERR relayer: the backend refused RESET ({}) on a reused dedicated connection",
                            error_text(&data)
                        ),
                        ctx,
                    );
                }
                // Something of the previous owner's (a message, a reply nobody waits for)
                // came first; RESET's own reply is still to come.
                self.pending.push_front(Dest::Reset);
            }
        }
    }

    /// AUTH with the url's credentials: RESET logged the connection out.
    fn queue_auth(&mut self) {
        let Some(pool) = self.pool.upgrade() else { return };
        if let Some(pw) = &pool.addr.password {
            let mut args = vec![&b"AUTH"[..]];
            if let Some(user) = &pool.addr.user {
                args.push(user.as_bytes());
            }
            args.push(pw.as_bytes());
            self.queue(
                Command::from_args(&args).into_frame(),
                Some(Dest::Swallow("AUTH")),
            );
        }
    }
}

/// The backend's answer when RESET itself is refused: an unknown command (Redis before 6.2,
/// renamed) or an ACL refusal naming it. Other errors mentioning it (its arity, pub/sub's list
/// of allowed commands) are not.
pub fn is_reset_refusal(reply: &[u8]) -> bool {
    if !is_error(reply) {
        return false;
    }
    let text = String::from_utf8_lossy(reply).to_ascii_lowercase();
    let names_reset = text.contains("'reset'") || text.contains("`reset`");
    names_reset && (text.starts_with("-err unknown command") || text.starts_with("-noperm"))
}

/// An error reply's text, without `-` and CRLF.
fn error_text(reply: &[u8]) -> String {
    let end = reply.len().saturating_sub(2).max(1);
    String::from_utf8_lossy(reply.get(1..end).unwrap_or_default()).into_owned()
}

impl Actor for Dedicated {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(pool) = self.pool.upgrade() else {
            return ctx.stop();
        };
        // Authenticated (and over TLS for rediss://) before it is used.
        let conn = super::connect::open(pool.addr.clone(), pool.tls.clone(), pool.log.clone());
        let limit = pool.connect_timeout;
        let display = pool.addr.display.clone();
        let fut = async move {
            match tokio::time::timeout(limit, conn).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
            }
        };
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok((r, w)) => act.connected(r, OutBuf::new(w), ctx),
            Err(e) => act.fail(&format!("ERR relayer: backend {display} unavailable ({e})"), ctx),
        }));
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        if let Some(pool) = self.pool.upgrade() {
            pool.forget(&ctx.address());
            // Gone before its probe was answered (see `fail`): the next new connection tries.
            if self.probing && pool.reset.get() == ResetSupport::Probing {
                pool.reset.set(ResetSupport::Unknown);
            }
        }
    }
}

impl Dedicated {
    fn connected(&mut self, r: ReadHalf, out: OutBuf, ctx: &mut Context<Self>) {
        let replies = Gated::new(FramedRead::new(r, ReplyScanner::new()), self.gate.clone())
            .map(Some)
            .chain(futures_util::stream::once(futures_util::future::ready(None)));
        ctx.add_stream(replies.map(|item| match item {
            Some(Ok(b)) => Upstream(Ok(Some(b))),
            Some(Err(e)) => Upstream(Err(e)),
            None => Upstream(Ok(None)),
        }));
        // The connection is authenticated already (connect::open).
        let queued = std::mem::take(&mut self.early);
        self.early_len = 0;
        self.out = Some(out);
        if let Some(o) = self.out.as_mut() {
            for f in queued {
                o.push_bytes(f);
            }
        }
        self.schedule_flush(ctx);
    }
}

struct Upstream(io::Result<Option<Bytes>>);

impl StreamHandler<Upstream> for Dedicated {
    fn handle(&mut self, Upstream(item): Upstream, ctx: &mut Context<Self>) {
        match item {
            Ok(Some(data)) => self.on_reply(data, ctx),
            Ok(None) => self.fail("ERR relayer: dedicated connection closed by the backend", ctx),
            Err(e) => self.fail(
                &format!("ERR relayer: dedicated connection to the backend lost ({e})"),
                ctx,
            ),
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for Dedicated {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.flush_scheduled = false;
        let Some(out) = self.out.as_mut() else { return };
        let res = out.flush();
        self.report_backlog();
        match res {
            Ok(true) => {}
            Ok(false) => {
                self.write_blocked = true;
                let w = self.out.as_ref().expect("checked above").writer();
                ctx.spawn(
                    async move { w.writable().await }
                        .into_actor(self)
                        .map(|res, act, ctx| {
                            act.write_blocked = false;
                            match res {
                                Ok(()) => act.schedule_flush(ctx),
                                Err(e) => act.fail(
                                    &format!("ERR relayer: dedicated connection to the backend lost ({e})"),
                                    ctx,
                                ),
                            }
                        }),
                );
            }
            Err(e) => self.fail(
                &format!("ERR relayer: dedicated connection to the backend lost ({e})"),
                ctx,
            ),
        }
    }
}

/// A session takes the connection; it starts on `db`.
#[derive(Message)]
#[rtype(result = "()")]
struct Take {
    owner: Recipient<FromDedicated>,
    db: u32,
}

impl Handler<Take> for Dedicated {
    type Result = ();

    fn handle(&mut self, msg: Take, ctx: &mut Context<Self>) {
        self.take(msg.owner, msg.db);
        self.schedule_flush(ctx);
    }
}

/// Frames from the owner, each with where its reply goes. In push mode nothing is matched.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Send {
    pub frames: Vec<(Bytes, Dest)>,
}

impl Handler<Send> for Dedicated {
    type Result = ();

    fn handle(&mut self, msg: Send, ctx: &mut Context<Self>) {
        for (frame, dest) in msg.frames {
            let dest = match dest {
                _ if self.push => None,
                Dest::Pass => None,
                d => Some(d),
            };
            self.queue(frame, dest);
        }
        self.schedule_flush(ctx);
    }
}

/// Push mode: the relayer's own answer to a command of the client's (a refused CLIENT KILL,
/// AUTH checked against the listener's password), to come after the replies to everything the
/// client sent before it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Answer(pub Bytes);

impl Handler<Answer> for Dedicated {
    type Result = ();

    fn handle(&mut self, Answer(data): Answer, ctx: &mut Context<Self>) {
        if !self.push {
            // Nothing passes through outside push mode: nothing to wait for.
            return self.to_owner(FromDedicated::Pushed(data));
        }
        self.answers.push_back(data);
        let ping = self.mark_ping.clone();
        self.queue(ping, None);
        self.schedule_flush(ctx);
    }
}

/// The owner is done with the connection (or gone). `reuse`: nothing the owner sent can still
/// be running (it stayed with pub/sub commands, or its own RESET came back).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release {
    pub reuse: bool,
}

impl Handler<Release> for Dedicated {
    type Result = ();

    fn handle(&mut self, Release { reuse }: Release, ctx: &mut Context<Self>) {
        self.owner = None;
        self.lease += 1;
        self.answers.clear();
        self.wait_refused = None;
        self.gate.resume();
        let running = self
            .pending
            .iter()
            .any(|d| matches!(d, Dest::Client(_) | Dest::WaitOffset | Dest::ResetProbe));
        let pool = self.pool.upgrade();
        let why_not = if running {
            Some("released while a command was running")
        } else if !reuse {
            Some("its client could have left a command running (RESP3, MONITOR, commands after pub/sub)")
        } else if self.out.is_none() {
            Some("released before it was connected")
        } else {
            match pool.as_ref().map(|p| p.reset.get()) {
                None => Some("its target was replaced"),
                Some(ResetSupport::Works) => None,
                Some(ResetSupport::Refused) => Some("the backend refuses RESET"),
                Some(_) => Some("the backend has not shown yet that it does RESET"),
            }
        };
        if let Some(why) = why_not {
            debug!(self.log, "dedicated connection closed"; "reason" => why);
            return self.close(ctx);
        }
        // Whatever comes before RESET's reply (messages, replies nobody waits for) is dropped.
        self.pending.clear();
        self.push = false;
        self.queue(Bytes::from_static(RESET_FRAME), Some(Dest::Reset));
        self.queue_auth();
        self.schedule_flush(ctx);
        let pool = pool.expect("checked above");
        pool.put_back(Handle {
            addr: ctx.address(),
            gate: self.gate.clone(),
            unsent: self.unsent.clone(),
        });
        let lease = self.lease;
        ctx.run_later(IDLE_CLOSE, move |act, ctx| {
            if act.lease == lease && act.owner.is_none() {
                debug!(act.log, "idle dedicated connection closed");
                act.close(ctx);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_refusals() {
        assert!(is_reset_refusal(
            b"-ERR unknown command 'RESET', with args beginning with: \r\n"
        ));
        assert!(is_reset_refusal(
            b"-ERR unknown command `RESET`, with args beginning with: \r\n"
        ));
        assert!(is_reset_refusal(
            b"-NOPERM this user has no permissions to run the 'reset' command or its subcommand\r\n"
        ));
        assert!(is_reset_refusal(
            b"-NOPERM User app has no permissions to run the 'reset' command\r\n"
        ));
        assert!(!is_reset_refusal(b"+RESET\r\n"));
        assert!(!is_reset_refusal(
            b"-ERR wrong number of arguments for 'reset' command\r\n"
        ));
        assert!(!is_reset_refusal(b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"));
        assert!(!is_reset_refusal(b"-ERR unknown command 'FOO'\r\n"));
    }

    #[test]
    fn live_count_is_bounded_and_given_back() {
        let live = LiveCount::default();
        let a = live.take(2).unwrap();
        let b = live.take(2).unwrap();
        assert!(live.take(2).is_none());
        drop(a);
        assert_eq!(live.get(), 1);
        let c = live.clone().take(2);
        assert!(c.is_some());
        drop((b, c));
        assert_eq!(live.get(), 0);
    }
}
