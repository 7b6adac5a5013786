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
//! commands written after those two. One released in push mode goes back only once push mode
//! ended (see `Ending`): until then what it reads cannot be counted, and belongs to nobody. That needs a backend that does RESET (6.2 and later): the
//! pool's first connection tries it before anything else, and until one worked, released
//! connections are closed. One released while a command may still be running (a blocking
//! command in flight, or a client in push mode that could have sent one) is closed too: Redis
//! unblocks a client that disconnects, while RESET would only run once the command returned,
//! and the command would still take what it waits for.
//!
//! Replies are counted, never recognized by their content, which a client can produce (a
//! script returns any status or error): outside push mode each command written has one entry
//! in `pending`, kept until its reply came, whoever owns the connection by then. Push mode
//! has no count (messages come as they are published); it ends with RESET followed by a PING
//! of a token made for that moment (see `Ending`), so no reply before it can look like its.
//!
//! Buffers: the owner's client not reading pauses the reading of this connection (Redis then
//! holds the backlog, under its client-output-buffer-limit); commands waiting to be written are
//! reported to the owner, which stops reading its client above `BACKLOG_HIGH`.

use super::messages::FromDedicated;
use super::upstream::{when_writable, Flush, Flushed, Upstream, READ_BUFFER};
use crate::endpoint::TargetAddr;
use crate::error::RelayerError;
use crate::io::{Gate, Gated, OutBuf, ReadHalf};
use crate::resp::reply::{error_text, is_error, ReplyScanner, DEFAULT_MAX_LINE};
use crate::resp::request::Command;
use crate::resp::write;
use crate::tls::TlsClient;
use actix::prelude::*;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use slog::{debug, info, warn, Logger};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::codec::FramedRead;

/// A released connection nobody takes within this time is closed.
const IDLE_CLOSE: Duration = Duration::from_secs(60);

/// After RESET was refused (or a connection was lost while trying it), a new connection tries
/// it again after this long: a lost connection proves little, and a backend may be upgraded.
const RESET_RETRY: Duration = Duration::from_secs(60);

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
pub struct LiveCount(Arc<Live>);

#[derive(Default)]
struct Live {
    count: Arc<AtomicUsize>,
    /// The idle connections of every worker's pool: one of them is closed when a worker is
    /// refused a connection for want of a permit (it cannot take another worker's).
    idle: Mutex<Vec<Addr<Dedicated>>>,
}

impl LiveCount {
    pub fn get(&self) -> usize {
        self.0.count.load(Ordering::Relaxed)
    }

    /// One more, unless `max` are live.
    fn take(&self, max: usize) -> Option<Permit> {
        self.0
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit(self.0.count.clone()))
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Addr<Dedicated>>> {
        // Nothing panics while holding it; a poisoned list is still a list.
        self.0.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add_idle(&self, addr: Addr<Dedicated>) {
        self.idle().push(addr);
    }

    fn remove_idle(&self, addr: &Addr<Dedicated>) {
        self.idle().retain(|a| a != addr);
    }

    /// A worker was refused a connection: one idle in another worker's pool (this one has
    /// none, or it would have used it) is closed, so that a permit is free for its next try
    /// instead of after `IDLE_CLOSE`.
    fn close_one_idle(&self) {
        if let Some(addr) = self.idle().pop() {
            addr.do_send(CloseIdle);
        }
    }
}

impl fmt::Debug for LiveCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LiveCount({})", self.get())
    }
}

/// A live connection's place in the count, given back when its actor is dropped.
struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
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
    /// The longest status or error line a reply may have (`maxBulkLength`).
    max_reply_line: usize,
    idle: RefCell<Vec<Handle>>,
    /// Whether the backend does RESET; refused (Redis before 6.2, a renamed command, an ACL),
    /// released connections are closed instead of reused.
    reset: Cell<ResetSupport>,
    /// The refusal was logged as a warning (once: it is tried again every `RESET_RETRY`).
    reset_warned: Cell<bool>,
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
    /// Until `retry`, then `Unknown` again.
    Refused {
        retry: Instant,
    },
}

/// A dedicated connection as its owner holds it.
#[derive(Clone)]
pub struct Handle {
    pub addr: Addr<Dedicated>,
    /// Paused by the owner while its client has too much unsent output (`pause_reading`): the
    /// connection is not read, so the backlog stays in Redis.
    gate: Rc<Gate>,
    /// The owner paused `gate`: the connection waits for the client, not for the backend (see
    /// `Dedicated::watch_ending`).
    paused: Rc<Cell<bool>>,
    /// Bytes waiting to be written to the backend (see `BACKLOG_HIGH`): the owner adds what it
    /// sends, the connection sets what is left after each write.
    pub unsent: Rc<Cell<usize>>,
    /// The backend's id for this connection (its CLIENT ID, asked when it was opened): what
    /// CLIENT UNBLOCK names to unblock the owner's command there. None until it answered.
    pub server_id: Rc<Cell<Option<u64>>>,
}

impl Handle {
    /// Stops (or starts again) the reading of the connection while the owner's client has too
    /// much unsent output.
    pub fn pause_reading(&self, paused: bool) {
        self.paused.set(paused);
        if paused {
            self.gate.pause();
        } else {
            self.gate.resume();
        }
    }
}

impl Pool {
    /// The backend it connects to, as its address reads (`redis://host:port/db`).
    pub fn backend(&self) -> String {
        self.addr.to_string()
    }

    pub fn new(
        addr: TargetAddr,
        tls: Option<TlsClient>,
        connect_timeout: Duration,
        max: usize,
        live: LiveCount,
        max_reply_line: usize,
        log: Logger,
    ) -> Rc<Self> {
        Rc::new(Pool {
            addr,
            tls,
            connect_timeout,
            max,
            live,
            max_reply_line,
            idle: RefCell::new(Vec::new()),
            reset: Cell::new(ResetSupport::Unknown),
            reset_warned: Cell::new(false),
            publish_refused: Cell::new(false),
            log,
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A connection for `owner`, idle or new; None when `max` are live.
    pub fn acquire(self: &Rc<Self>, owner: Recipient<FromDedicated>, db: u32, resp3: bool) -> Option<Handle> {
        let idle = self.idle.borrow_mut().pop();
        if let Some(h) = idle {
            self.live.remove_idle(&h.addr);
            h.addr.do_send(Take { owner, db, resp3 });
            return Some(h);
        }
        let Some(permit) = self.live.take(self.max) else {
            self.live.close_one_idle();
            return None;
        };
        let mut d = Dedicated::new(
            Rc::downgrade(self),
            self.live.clone(),
            permit,
            self.connect_timeout,
        );
        if matches!(self.reset.get(), ResetSupport::Refused { retry } if Instant::now() >= retry) {
            self.reset.set(ResetSupport::Unknown);
        }
        if self.reset.get() == ResetSupport::Unknown {
            // On a new connection RESET changes nothing but the user (AUTH follows): whether it
            // works is known before any connection is released.
            self.reset.set(ResetSupport::Probing);
            d.probing = true;
            d.queue(Bytes::from_static(RESET_FRAME), Some(ReplyFor::ResetProbe));
            d.queue_auth();
        }
        d.queue(Bytes::from_static(CLIENT_ID_FRAME), Some(ReplyFor::ServerId));
        // Known before it connects, so a failed connect reaches the client.
        d.take(owner, db, resp3);
        let (gate, paused, unsent) = (d.gate.clone(), d.paused.clone(), d.unsent.clone());
        let server_id = d.server_id.clone();
        let addr = Dedicated::create(|ctx| {
            // Unbounded: what the owner sends is bounded by the owner (`unsent`, its replies).
            ctx.set_mailbox_capacity(0);
            d
        });
        Some(Handle {
            addr,
            gate,
            paused,
            unsent,
            server_id,
        })
    }

    fn put_back(&self, h: Handle) {
        self.live.add_idle(h.addr.clone());
        self.idle.borrow_mut().push(h);
    }

    /// The connection is closing: nobody may take it any more.
    fn forget(&self, addr: &Addr<Dedicated>) {
        self.live.remove_idle(addr);
        self.idle.borrow_mut().retain(|h| h.addr != *addr);
    }

    /// Takes an idle connection out of the pool, to close it; false when it is not there: it
    /// was taken, and its `Take` may still be on its way (closing it would lose that).
    fn remove_idle(&self, addr: &Addr<Dedicated>) -> bool {
        let mut idle = self.idle.borrow_mut();
        let Some(i) = idle.iter().position(|h| h.addr == *addr) else {
            return false;
        };
        idle.swap_remove(i);
        self.live.remove_idle(addr);
        true
    }

    /// Only ever called with the reply to a RESET of the relayer's own (or for a connection
    /// lost before that reply came).
    fn note_reset_refused(&self, reply: &[u8]) {
        let retry = Instant::now() + RESET_RETRY;
        self.reset.set(ResetSupport::Refused { retry });
        if !self.reset_warned.replace(true) {
            warn!(self.log, "the backend refused RESET: released dedicated connections are closed instead of reused (tried again every minute)";
                "error" => error_text(reply));
        } else {
            debug!(self.log, "the backend refused RESET again"; "error" => error_text(reply));
        }
    }

    fn note_reset_works(&self) {
        if self.reset.replace(ResetSupport::Works) != ResetSupport::Works && self.reset_warned.get() {
            info!(
                self.log,
                "the backend does RESET now: released dedicated connections are reused"
            );
        }
    }
}

/// `HELLO 3`, for the owner that speaks RESP3.
const HELLO3_FRAME: &[u8] = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n";

/// Where the reply to a written command goes.
pub enum ReplyFor {
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
    /// RESET on release: its reply is `+RESET` (or the backend changed and refuses it).
    Reset,
    /// RESET first thing on the pool's first connection: does the backend do it?
    ResetProbe,
    /// CLIENT ID when the connection is opened: kept in `Handle::server_id`.
    ServerId,
}

const CLIENT_ID_FRAME: &[u8] = b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n";

const RESET_FRAME: &[u8] = b"*1\r\n$5\r\nRESET\r\n";
const RESET_REPLY: &[u8] = b"+RESET\r\n";

pub struct Dedicated {
    pool: Weak<Pool>,
    /// Also for its place in the idle list when the pool is gone (a reload replaced it).
    live: LiveCount,
    _permit: Permit,
    gate: Rc<Gate>,
    /// `Handle::paused`.
    paused: Rc<Cell<bool>>,
    unsent: Rc<Cell<usize>>,
    /// `Handle::server_id`.
    server_id: Rc<Cell<Option<u64>>>,
    /// `unsent` was reported at or above `BACKLOG_HIGH`: the owner hears when it is below.
    backlogged: bool,
    owner: Option<Recipient<FromDedicated>>,
    /// What is written and owed on the connection (a dedicated connection is opened once).
    up: Upstream<ReplyFor>,
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
    /// Push mode is ending: RESET was written (see `Ending`).
    ending: Option<Ending>,
    /// Endings started so far, and replies read so far: a stale deadline does nothing, and one
    /// reply is enough to show the backend is still answering (see `watch_ending`).
    endings: u64,
    replies: u64,
    /// How long an ending may go without a reply (the connect timeout).
    patience: Duration,
    /// Its `ResetProbe` has no reply yet.
    probing: bool,
    /// Bumped by each Take and release: a stale idle timer does nothing.
    lease: u64,
    log: Logger,
}

impl Dedicated {
    fn new(pool: Weak<Pool>, live: LiveCount, permit: Permit, patience: Duration) -> Self {
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
            live,
            _permit: permit,
            gate: Gate::new(),
            paused: Rc::new(Cell::new(false)),
            unsent: Rc::new(Cell::new(0)),
            server_id: Rc::new(Cell::new(None)),
            backlogged: false,
            owner: None,
            up: Upstream::default(),
            push: false,
            answers: VecDeque::new(),
            mark_bulk,
            mark_pong: pong.freeze(),
            mark_ping: Command::from_args(&[&b"PING"[..], token.as_bytes()]).into_frame(),
            wait_refused: None,
            ending: None,
            endings: 0,
            replies: 0,
            patience,
            probing: false,
            lease: 0,
            log,
        }
    }

    fn queue(&mut self, frame: Bytes, reply: Option<ReplyFor>) {
        if let Some(d) = reply {
            self.up.pending.push_back(d);
        }
        self.up.write(frame);
    }

    fn to_owner(&self, msg: FromDedicated) {
        // do_send: never dropped (try_send fails on a full mailbox); what is in flight to the
        // owner is bounded by the owner pausing `gate`.
        if let Some(owner) = &self.owner {
            owner.do_send(msg);
        }
    }

    /// `resp3`: the owner speaks RESP3 (its HELLO 3 on the shared connections), so this one
    /// does too while it is the owner's; the RESET that gives it back to the pool ends that.
    fn take(&mut self, owner: Recipient<FromDedicated>, db: u32, resp3: bool) {
        self.lease += 1;
        self.owner = Some(owner);
        self.resume_reading();
        if resp3 {
            self.queue(
                Bytes::from_static(HELLO3_FRAME),
                Some(ReplyFor::Swallow("HELLO 3")),
            );
        }
        if db != 0 {
            self.queue(write::select(db), Some(ReplyFor::Swallow("SELECT")));
        }
    }

    /// Reads again whatever the last owner paused (see `Handle::pause_reading`).
    fn resume_reading(&self) {
        self.paused.set(false);
        self.gate.resume();
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        self.report_backlog();
        if self.up.needs_flush() {
            ctx.notify(Flush(0));
        }
    }

    /// Tells the owner how much waits to be written (and when it fell below the bound).
    fn report_backlog(&mut self) {
        let left = self.up.unsent();
        self.unsent.set(left);
        if left >= BACKLOG_HIGH {
            self.backlogged = true;
        } else if std::mem::take(&mut self.backlogged) {
            self.to_owner(FromDedicated::Writable);
        }
    }

    /// Closes it if it is idle in its pool; false: taken (even if its `Take` is not here yet).
    fn close_idle(&mut self, ctx: &mut Context<Self>) -> bool {
        let idle = match self.pool.upgrade() {
            Some(pool) => pool.remove_idle(&ctx.address()),
            None => self.owner.is_none(),
        };
        if idle {
            self.close(ctx);
        }
        idle
    }

    /// Ends the actor; nobody can take it from the pool any more.
    fn close(&mut self, ctx: &mut Context<Self>) {
        if let Some(pool) = self.pool.upgrade() {
            pool.forget(&ctx.address());
        }
        self.live.remove_idle(&ctx.address());
        ctx.stop();
    }

    /// The connection is gone: whoever waits gets `err`, and the actor ends.
    fn fail(&mut self, err: RelayerError, ctx: &mut Context<Self>) {
        if self.owner.is_some() {
            warn!(self.log, "dedicated connection lost"; "error" => %err);
        } else {
            debug!(self.log, "idle dedicated connection lost"; "error" => %err);
        }
        // Lost after RESET was written and before its answer: closed for it, as some proxies
        // do with commands they do not know.
        if self.probing && self.up.is_open() {
            self.probing = false;
            if let Some(pool) = self.pool.upgrade() {
                pool.note_reset_refused(b"-the connection was lost before RESET was answered\r\n");
            }
        }
        self.to_owner(FromDedicated::Lost(err));
        self.owner = None;
        self.close(ctx);
    }

    fn on_reply(&mut self, data: Bytes, ctx: &mut Context<Self>) {
        self.replies += 1;
        if self.push {
            if let Some(proven) = self.ending.as_ref().and_then(|e| e.ends_at(&data)) {
                let ending = self.ending.take().expect("checked above");
                return self.push_ended(ending, proven, ctx);
            }
            let data = if !self.answers.is_empty() && (data == self.mark_bulk || data == self.mark_pong) {
                self.answers.pop_front().expect("checked above")
            } else {
                data
            };
            // Nothing here says anything about RESET, whatever it looks like: a client's script
            // can return `+RESET` or `-ERR unknown command 'reset'`. While push mode ends, the
            // owner is the one that asked, or nobody (released: see `Release`).
            let Some(ending) = &mut self.ending else {
                return self.to_owner(FromDedicated::Pushed(data));
            };
            for data in ending.hold(data) {
                self.to_owner(FromDedicated::Pushed(data));
            }
            return;
        }
        let Some(dest) = self.up.pending.pop_front() else {
            warn!(self.log, "unexpected reply on a dedicated connection, closing it");
            return self.fail(RelayerError::UnexpectedReply, ctx);
        };
        match dest {
            ReplyFor::Client(seq) => {
                let data = self.wait_refused.take().unwrap_or(data);
                self.to_owner(FromDedicated::Reply { seq, data });
            }
            ReplyFor::Swallow(what) => {
                if is_error(&data) {
                    let text = error_text(&data);
                    match what {
                        "AUTH" => self.fail(RelayerError::AuthRefused(text), ctx),
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
            ReplyFor::WaitOffset => {
                if is_error(&data) {
                    let err = RelayerError::WaitOffsetRefused {
                        channel: String::from_utf8_lossy(WAIT_CHANNEL).into_owned(),
                        error: error_text(&data),
                    };
                    self.wait_refused = Some(err.resp());
                }
            }
            ReplyFor::EnterPush => {
                let ok = !is_error(&data);
                self.push = ok;
                self.to_owner(FromDedicated::Entered { data, ok });
            }
            // Never queued (see `Send`).
            ReplyFor::Pass => {}
            ReplyFor::ServerId => {
                let id = data
                    .strip_prefix(b":")
                    .and_then(|d| d.strip_suffix(b"\r\n"))
                    .and_then(crate::numbers::integer)
                    .and_then(|n| u64::try_from(n).ok());
                if id.is_none() {
                    // CLIENT UNBLOCK cannot reach a command blocked here: it answers 0.
                    debug!(self.log, "the backend did not give a dedicated connection's id"; "reply" => error_text(&data));
                }
                self.server_id.set(id);
            }
            ReplyFor::ResetProbe => {
                self.probing = false;
                if let Some(pool) = self.pool.upgrade() {
                    if data[..] == RESET_REPLY[..] {
                        pool.note_reset_works();
                    } else {
                        pool.note_reset_refused(&data);
                    }
                }
            }
            ReplyFor::Reset => {
                if data[..] == RESET_REPLY[..] {
                    return;
                }
                if is_reset_refusal(&data) {
                    // It worked before (the pool's probe): the backend changed.
                    if let Some(pool) = self.pool.upgrade() {
                        pool.note_reset_refused(&data);
                    }
                }
                // Whatever was written behind it ran without the reset, so its owner only gets
                // an error.
                self.fail(RelayerError::ResetFailed(error_text(&data)), ctx);
            }
        }
    }

    /// Ends push mode: RESET, AUTH, then the PING of a new token (see `Ending`). Until its
    /// reply, the owner (if any) still gets everything as it comes. `asked`: the owner's RESET
    /// or QUIT (it waits for `PushEnded`), with whether it could have a command blocking ahead
    /// of it; None: the connection was released in push mode, and nobody may take it before
    /// push mode ended.
    fn end_push(&mut self, asked: Option<bool>, ctx: &mut Context<Self>) {
        let auth = self.auth_frame();
        let token = format!(
            "smart-relayer-end-{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        );
        let lease = asked.map(|_| self.lease);
        self.ending = Some(Ending::new(token.as_bytes(), auth.is_some(), lease));
        self.endings += 1;
        self.queue(Bytes::from_static(RESET_FRAME), None);
        if let Some(auth) = auth {
            self.queue(auth, None);
        }
        self.queue(
            Command::from_args(&[&b"PING"[..], token.as_bytes()]).into_frame(),
            None,
        );
        // A command the client sent before may block RESET for as long as Redis would
        // (`BLPOP k 0`): its end is awaited as from Redis, without a deadline.
        if asked != Some(true) {
            self.watch_ending(ctx);
        }
        self.schedule_flush(ctx);
    }

    /// An ending that gets no reply at all for `patience` while the connection is read is
    /// given up (the token's reply may never come in a form of its own, see `Ending::ends_at`,
    /// or the backend hangs): the connection is closed, and an owner waiting for it hears
    /// `Lost`, so that its client is answered. Time during which the owner paused the reading
    /// (its client not reading what it was sent) does not count.
    fn watch_ending(&mut self, ctx: &mut Context<Self>) {
        if let Some(e) = &mut self.ending {
            e.watched = true;
        }
        let (ending, replies) = (self.endings, self.replies);
        ctx.run_later(self.patience, move |act, ctx| {
            if act.ending.is_none() || act.endings != ending {
                return;
            }
            if act.replies != replies || act.paused.get() {
                return act.watch_ending(ctx);
            }
            let err = RelayerError::PushNotEnded(act.patience);
            warn!(act.log, "dedicated connection closed"; "reason" => %err);
            act.to_owner(FromDedicated::Lost(err));
            act.owner = None;
            act.close(ctx);
        });
    }

    /// The ending is over: the token's reply came (`proven`), or a reply that can only be its
    /// refusal (see `Ending::ends_at`). The replies held back just before it were RESET's and
    /// AUTH's.
    fn push_ended(&mut self, ending: Ending, proven: bool, ctx: &mut Context<Self>) {
        // The owner that asked, or nobody: a released connection is not taken before this.
        let asked = ending.lease.is_some() && ending.lease == Some(self.lease);
        let (before, outcome) = ending.outcome();
        if asked {
            for data in before {
                self.to_owner(FromDedicated::Pushed(data));
            }
        }
        // Warned about, unless the backend does not do RESET (warned once by the pool).
        let (failed, warn) = match outcome {
            Outcome::Reset if proven => (None, false),
            Outcome::Reset => (Some("the token's PING after RESET was refused".to_string()), true),
            Outcome::ResetRefused(reply) => {
                if let Some(pool) = self.pool.upgrade() {
                    pool.note_reset_refused(&reply);
                }
                (Some(format!("RESET refused ({})", error_text(&reply))), false)
            }
            Outcome::AuthRefused(reply) => (
                Some(format!("backend refused AUTH: {}", error_text(&reply))),
                true,
            ),
            Outcome::Unknown => (Some("RESET did not end push mode".to_string()), false),
        };
        if failed.is_none() {
            // Replies are counted again from here: RESET ended pub/sub, MONITOR and RESP3.
            self.push = false;
        }
        if asked {
            self.to_owner(FromDedicated::PushEnded {
                reset: failed.is_none(),
            });
        }
        match failed {
            // Closed at once: still subscribed (or unsure), it would go on sending the owner
            // messages after the `+RESET` it was told.
            Some(why) => {
                if warn {
                    warn!(self.log, "dedicated connection closed"; "reason" => why);
                } else {
                    debug!(self.log, "dedicated connection closed"; "reason" => why);
                }
                self.owner = None;
                self.close(ctx);
            }
            // Released in push mode: only now can another client have it.
            None if !asked => self.pool_it(ctx),
            // The owner releases it.
            None => {}
        }
    }

    /// Puts the released connection back in its pool (its RESET written), for `IDLE_CLOSE`.
    fn pool_it(&mut self, ctx: &mut Context<Self>) {
        let Some(pool) = self.pool.upgrade() else {
            debug!(self.log, "dedicated connection closed"; "reason" => "its target was replaced");
            return self.close(ctx);
        };
        pool.put_back(Handle {
            addr: ctx.address(),
            gate: self.gate.clone(),
            paused: self.paused.clone(),
            unsent: self.unsent.clone(),
            server_id: self.server_id.clone(),
        });
        // Not cancelled when taken (at most one per release within IDLE_CLOSE).
        let lease = self.lease;
        ctx.run_later(IDLE_CLOSE, move |act, ctx| {
            if act.lease == lease && act.close_idle(ctx) {
                debug!(act.log, "idle dedicated connection closed");
            }
        });
    }

    /// AUTH with the url's credentials: RESET logged the connection out.
    fn queue_auth(&mut self) {
        if let Some(auth) = self.auth_frame() {
            self.queue(auth, Some(ReplyFor::Swallow("AUTH")));
        }
    }

    fn auth_frame(&self) -> Option<Bytes> {
        let pool = self.pool.upgrade()?;
        let pw = pool.addr.password.as_ref()?;
        let mut args = vec![&b"AUTH"[..]];
        if let Some(user) = &pool.addr.user {
            args.push(user.as_bytes());
        }
        args.push(pw.as_bytes());
        Some(Command::from_args(&args).into_frame())
    }
}

/// Leaving push mode, where replies cannot be counted: RESET, AUTH (when the url has
/// credentials; RESET logs out, and PING needs a user), then `PING <token>` with a token made
/// now, which nothing before can have replied. RESET runs after everything the client sent
/// and, once it worked, nothing comes unasked (no subscription, MONITOR or RESP3 any more):
/// the replies just before the token's are RESET's and AUTH's, `+RESET` and `+OK`. So the
/// last of those that could be theirs (`+RESET`, `+OK`, an error) are held back, two at most,
/// until another reply shows they were not; what is held back comes later than it could have,
/// never out of order. RESET runs first because a client's open MULTI would queue the PING.
///
/// The token's PING can fail to echo it: refused (NOAUTH once AUTH was refused after RESET
/// logged the connection out, NOPERM for a url user without PING) or queued (RESET unknown to
/// the backend, inside a client's MULTI). Such a reply, where the token's is due, ends it too,
/// unproven (see `ends_at`): the connection is closed.
struct Ending {
    mark_bulk: Bytes,
    mark_pong: Bytes,
    /// AUTH follows RESET.
    auth: bool,
    held: VecDeque<Bytes>,
    /// Asked by the owner of this lease (the client's RESET or QUIT); None: on release.
    lease: Option<u64>,
    /// It has a deadline (see `Dedicated::watch_ending`).
    watched: bool,
}

/// What ending push mode came to.
enum Outcome {
    /// RESET (and AUTH) worked: the connection is an ordinary one again.
    Reset,
    /// RESET's own reply was this error: the backend does not do it.
    ResetRefused(Bytes),
    /// RESET worked, AUTH did not.
    AuthRefused(Bytes),
    /// Not reset (RESET refused, a message came in between).
    Unknown,
}

impl Ending {
    fn new(token: &[u8], auth: bool, lease: Option<u64>) -> Self {
        let mark_bulk = write::bulk(token);
        let mut pong = BytesMut::new();
        write::put_array_header(&mut pong, 2);
        write::put_bulk(&mut pong, b"pong");
        pong.put_slice(&mark_bulk);
        Ending {
            mark_bulk,
            mark_pong: pong.freeze(),
            auth,
            held: VecDeque::new(),
            lease,
            watched: false,
        }
    }

    /// The token's reply: a bulk, or pub/sub's array when RESET did not end it.
    fn is_mark(&self, data: &[u8]) -> bool {
        data == &self.mark_bulk[..] || data == &self.mark_pong[..]
    }

    /// Whether `data` ends it: Some(true) for the token's own reply, Some(false) for one that
    /// can only be the token's PING (or AUTH) failing. A client's commands can return the same
    /// replies only behind a `+RESET` of a script of theirs (or `RESET x` on a backend without
    /// RESET), and only to its own loss: the connection is then closed, never reused.
    fn ends_at(&self, data: &[u8]) -> Option<bool> {
        if self.is_mark(data) {
            return Some(true);
        }
        let front = self.held.front();
        // RESET unknown inside a MULTI (Redis before 6.2): what follows is queued.
        if data == b"+QUEUED\r\n" && front.is_some_and(|r| is_reset_refusal(r)) {
            return Some(false);
        }
        // Right after the replies of RESET (`+RESET`, or refused) and AUTH.
        let after_reset = front.is_some_and(|r| r[..] == RESET_REPLY[..] || is_reset_refusal(r));
        (is_error(data) && after_reset && self.held.len() == self.tail()).then_some(false)
    }

    fn tail(&self) -> usize {
        1 + usize::from(self.auth)
    }

    /// A reply before the token's; returns what can go to the owner now, in order.
    fn hold(&mut self, data: Bytes) -> Vec<Bytes> {
        let could_be_ours = data[..] == RESET_REPLY[..] || data[..] == b"+OK\r\n"[..] || is_error(&data);
        if !could_be_ours {
            // Neither is what was held back: it all goes, this one last.
            let mut out: Vec<Bytes> = self.held.drain(..).collect();
            out.push(data);
            return out;
        }
        self.held.push_back(data);
        if self.held.len() > self.tail() {
            self.held.pop_front().into_iter().collect()
        } else {
            Vec::new()
        }
    }

    /// At the token: what goes to the owner still, and how it went.
    fn outcome(mut self) -> (VecDeque<Bytes>, Outcome) {
        let n = self.tail();
        if self.held.len() < n {
            // Something that was not theirs came between: RESET did not end push mode.
            return (VecDeque::new(), Outcome::Unknown);
        }
        let tail = self.held.split_off(self.held.len() - n);
        let outcome = match (tail.front(), tail.get(1)) {
            (Some(r), auth) if r[..] == RESET_REPLY[..] => match auth {
                Some(a) if is_error(a) => Outcome::AuthRefused(a.clone()),
                _ => Outcome::Reset,
            },
            (Some(r), _) if is_reset_refusal(r) => Outcome::ResetRefused(r.clone()),
            _ => Outcome::Unknown,
        };
        (self.held, outcome)
    }
}

/// The backend's answer when RESET itself is refused: an unknown command (Redis before 6.2,
/// renamed) or an ACL refusal naming it. Other errors mentioning it (its arity, pub/sub's list
/// of allowed commands) are not.
fn is_reset_refusal(reply: &[u8]) -> bool {
    if !is_error(reply) {
        return false;
    }
    let text = String::from_utf8_lossy(reply).to_ascii_lowercase();
    let names_reset = text.contains("'reset'") || text.contains("`reset`");
    names_reset && (text.starts_with("-err unknown command") || text.starts_with("-noperm"))
}

impl Actor for Dedicated {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(pool) = self.pool.upgrade() else {
            return ctx.stop();
        };
        // Authenticated (and over TLS for rediss://) before it is used.
        let fut = super::connect::open(
            pool.addr.clone(),
            pool.tls.clone(),
            pool.log.clone(),
            pool.connect_timeout,
            false,
        );
        let display = pool.addr.display.clone();
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok((r, w)) => act.connected(r, OutBuf::new(w), ctx),
            Err(e) => act.fail(
                RelayerError::Unavailable {
                    backend: display,
                    reason: e.to_string(),
                },
                ctx,
            ),
        }));
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.live.remove_idle(&ctx.address());
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
        let max_line = self.pool.upgrade().map_or(DEFAULT_MAX_LINE, |p| p.max_reply_line);
        let replies = Gated::new(
            FramedRead::with_capacity(r, ReplyScanner::new(max_line), READ_BUFFER),
            self.gate.clone(),
        )
        .map(Some)
        .chain(futures_util::stream::once(futures_util::future::ready(None)));
        ctx.add_stream(replies.map(|item| match item {
            Some(Ok(b)) => Read(Ok(Some(b))),
            Some(Err(e)) => Read(Err(e)),
            None => Read(Ok(None)),
        }));
        // The connection is authenticated already (connect::open).
        self.up.open(out);
        self.schedule_flush(ctx);
    }
}

struct Read(io::Result<Option<Bytes>>);

impl StreamHandler<Read> for Dedicated {
    fn handle(&mut self, Read(item): Read, ctx: &mut Context<Self>) {
        match item {
            Ok(Some(data)) => self.on_reply(data, ctx),
            Ok(None) => self.fail(RelayerError::DedicatedClosed, ctx),
            Err(e) => self.fail(RelayerError::DedicatedLost(e.to_string()), ctx),
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<Flush> for Dedicated {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        let flushed = self.up.flush();
        self.report_backlog();
        match flushed {
            Flushed::Done => {}
            Flushed::Blocked(w) => when_writable(w, ctx, |act: &mut Self, res, ctx| {
                act.up.writable();
                match res {
                    Ok(()) => act.schedule_flush(ctx),
                    Err(e) => act.fail(RelayerError::DedicatedLost(e.to_string()), ctx),
                }
            }),
            Flushed::Failed(e) => self.fail(RelayerError::DedicatedLost(e.to_string()), ctx),
        }
    }
}

/// A session takes the connection; it starts on `db`.
#[derive(Message)]
#[rtype(result = "()")]
struct Take {
    owner: Recipient<FromDedicated>,
    db: u32,
    resp3: bool,
}

impl Handler<Take> for Dedicated {
    type Result = ();

    fn handle(&mut self, msg: Take, ctx: &mut Context<Self>) {
        self.take(msg.owner, msg.db, msg.resp3);
        self.schedule_flush(ctx);
    }
}

/// Frames from the owner, each with where its reply goes. In push mode nothing is matched.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Send {
    pub frames: Vec<(Bytes, ReplyFor)>,
}

impl Handler<Send> for Dedicated {
    type Result = ();

    fn handle(&mut self, msg: Send, ctx: &mut Context<Self>) {
        for (frame, dest) in msg.frames {
            // Only the owner in push mode sends while `push` (a connection released in push
            // mode is taken once it ended).
            let dest = match dest {
                _ if self.push => None,
                ReplyFor::Pass => None,
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
        self.resume_reading();
        // Replies still owed stay counted in `pending`, whoever gets the connection: a command
        // of the owner's may still be running (it may block: closed, Redis then forgets it), or
        // push mode may be about to start (its replies could not be counted: closed too).
        let running = self.up.pending.iter().any(|d| {
            matches!(
                d,
                ReplyFor::Client(_) | ReplyFor::WaitOffset | ReplyFor::ResetProbe | ReplyFor::EnterPush
            )
        });
        let why_not = if running {
            Some("released while a command was running")
        } else if !reuse {
            Some("its client could have left a command running (RESP3, MONITOR, commands after pub/sub)")
        } else if !self.up.is_open() {
            Some("released before it was connected")
        } else {
            match self.pool.upgrade().map(|p| p.reset.get()) {
                None => Some("its target was replaced"),
                Some(ResetSupport::Works) => None,
                Some(ResetSupport::Refused { .. }) => Some("the backend refuses RESET"),
                Some(_) => Some("the backend has not shown yet that it does RESET"),
            }
        };
        if let Some(why) = why_not {
            debug!(self.log, "dedicated connection closed"; "reason" => why);
            return self.close(ctx);
        }
        if !self.push {
            self.queue(Bytes::from_static(RESET_FRAME), Some(ReplyFor::Reset));
            self.queue_auth();
            self.schedule_flush(ctx);
            return self.pool_it(ctx);
        }
        // A subscriber that left: messages keep coming until RESET, uncounted, so the
        // connection goes back to the pool only once its end was found (`push_ended`); until
        // then what comes goes to nobody. Its own RESET or QUIT may be on its way already:
        // that ending is the release's now.
        match &mut self.ending {
            Some(e) => {
                e.lease = None;
                if !e.watched {
                    self.watch_ending(ctx);
                }
            }
            None => self.end_push(None, ctx),
        }
    }
}

/// Another worker needs the permit of this idle connection (see `LiveCount::close_one_idle`).
#[derive(Message)]
#[rtype(result = "()")]
struct CloseIdle;

impl Handler<CloseIdle> for Dedicated {
    type Result = ();

    fn handle(&mut self, _: CloseIdle, ctx: &mut Context<Self>) {
        // Taken meanwhile by a client of its own worker: that client needed it as much.
        if self.close_idle(ctx) {
            debug!(self.log, "idle dedicated connection closed"; "reason" => "another worker needs its permit");
        }
    }
}

/// Push mode: the owner's RESET or QUIT. Its end is found as on release (see `Ending`), and the
/// owner hears `PushEnded`. `may_block`: the client could have sent a command that blocks
/// (RESP3, MONITOR, commands after pub/sub), which RESET waits for as long as it blocks.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndPush {
    pub may_block: bool,
}

impl Handler<EndPush> for Dedicated {
    type Result = ();

    fn handle(&mut self, EndPush { may_block }: EndPush, ctx: &mut Context<Self>) {
        if !self.push || self.ending.is_some() {
            // Not in push mode after all (the owner would not ask): nothing to count on.
            return self.to_owner(FromDedicated::PushEnded { reset: false });
        }
        self.end_push(Some(may_block), ctx);
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

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// The replies just before the token's are RESET's and AUTH's; what a client's commands
    /// returned before them, however alike, only comes later, in order.
    #[test]
    fn ending_push_mode_finds_resets_own_reply() {
        let msg = "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n";
        // A script's `+RESET`, a blocked pop's reply, then RESET's (no AUTH).
        let mut e = Ending::new(b"t", false, None);
        assert!(e.hold(b("+RESET\r\n")).is_empty());
        let popped = "*2\r\n$1\r\nk\r\n$1\r\nv\r\n";
        assert_eq!(e.hold(b(popped)), vec![b("+RESET\r\n"), b(popped)]);
        assert!(e.hold(b("+RESET\r\n")).is_empty());
        assert!(e.is_mark(&write::bulk(b"t")));
        let (before, outcome) = e.outcome();
        assert!(before.is_empty());
        assert!(matches!(outcome, Outcome::Reset));

        // With AUTH: an error and a `+OK` of the client's come out once it is known.
        let mut e = Ending::new(b"t", true, None);
        assert!(e.hold(b("-ERR x\r\n")).is_empty());
        assert!(e.hold(b("+OK\r\n")).is_empty());
        assert_eq!(e.hold(b("+RESET\r\n")), vec![b("-ERR x\r\n")]);
        assert_eq!(e.hold(b("+OK\r\n")), vec![b("+OK\r\n")]);
        let (before, outcome) = e.outcome();
        assert!(before.is_empty());
        assert!(matches!(outcome, Outcome::Reset));

        // RESET refused, AUTH refused in pub/sub: the token comes as pub/sub's PING reply.
        let refusal = "-ERR unknown command 'reset', with args beginning with: \r\n";
        let mut e = Ending::new(b"t", true, None);
        assert!(e.hold(b(refusal)).is_empty());
        assert!(e.hold(b("-ERR Can't execute 'auth'\r\n")).is_empty());
        assert!(e.is_mark(b"*2\r\n$4\r\npong\r\n$1\r\nt\r\n"));
        assert!(matches!(e.outcome().1, Outcome::ResetRefused(r) if r == b(refusal)));

        // RESET worked, AUTH did not.
        let mut e = Ending::new(b"t", true, None);
        assert!(e.hold(b("+RESET\r\n")).is_empty());
        assert!(e.hold(b("-WRONGPASS x\r\n")).is_empty());
        assert!(matches!(e.outcome().1, Outcome::AuthRefused(_)));

        // A message after RESET's reply: RESET did not end pub/sub, whatever came before.
        let mut e = Ending::new(b"t", false, None);
        assert!(e.hold(b("+RESET\r\n")).is_empty());
        assert_eq!(e.hold(b(msg)), vec![b("+RESET\r\n"), b(msg)]);
        assert!(matches!(e.outcome().1, Outcome::Unknown));
        // A fake refusal of the client's before the real `+RESET` changes nothing.
        let mut e = Ending::new(b"t", false, None);
        assert!(e.hold(b(refusal)).is_empty());
        assert_eq!(e.hold(b("+RESET\r\n")), vec![b(refusal)]);
        assert!(matches!(e.outcome().1, Outcome::Reset));
    }

    /// Where the token's reply is due, its PING refused or queued ends the ending too,
    /// unproven; the same replies anywhere else do not.
    #[test]
    fn ending_push_mode_ends_at_the_tokens_refusal() {
        let noauth = "-NOAUTH Authentication required.\r\n";
        // RESET worked, AUTH was refused (a new password): PING is refused too.
        let mut e = Ending::new(b"t", true, None);
        assert!(e.ends_at(b"-ERR x\r\n").is_none());
        assert!(e.hold(b("+RESET\r\n")).is_empty());
        assert!(e.ends_at(noauth.as_bytes()).is_none());
        assert!(e.hold(b("-WRONGPASS invalid\r\n")).is_empty());
        assert_eq!(e.ends_at(noauth.as_bytes()), Some(false));
        assert!(matches!(e.outcome().1, Outcome::AuthRefused(_)));
        // A url user without PING: the token's reply is NOPERM.
        let mut e = Ending::new(b"t", false, None);
        assert!(e.hold(b("+RESET\r\n")).is_empty());
        assert_eq!(e.ends_at(b"-NOPERM no ping\r\n"), Some(false));
        assert_eq!(e.ends_at(b"+OK\r\n"), None);
        assert_eq!(e.ends_at(&write::bulk(b"t")), Some(true));
        // RESET unknown inside a MULTI: AUTH (or PING) queued.
        let refusal = "-ERR unknown command 'RESET', with args beginning with: \r\n";
        let mut e = Ending::new(b"t", true, None);
        assert!(e.ends_at(b"+QUEUED\r\n").is_none());
        assert!(e.hold(b(refusal)).is_empty());
        assert_eq!(e.ends_at(b"+QUEUED\r\n"), Some(false));
        assert!(matches!(e.outcome().1, Outcome::Unknown));
        // Errors of the client's before RESET's reply end nothing.
        let mut e = Ending::new(b"t", true, None);
        assert!(e.hold(b("+OK\r\n")).is_empty());
        assert!(e.hold(b("-ERR a\r\n")).is_empty());
        assert!(e.ends_at(b"-ERR b\r\n").is_none());
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
